//! The `futurnal` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    futurnal::main()
}
