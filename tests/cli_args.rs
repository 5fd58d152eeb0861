//! Odd command-line arguments and values: non-finite numbers, non-UTF-8 arguments, values that
//! overflow. Each must end in a clean, located error (or work), never a panic.
//!
//! Every test gets its own temporary HOME and FUTURNAL_HOME and a clean environment; none starts
//! a daemon.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_futurnal");

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let s = Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::create_dir_all(s.home()).unwrap();
        s
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("FUTURNAL_HOME", self.home().join(".futurnal"))
            .env("NO_COLOR", "1")
            .env("TZ", "UTC")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }
    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.cmd(args).output().expect("futurnal runs")
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A clean operator error: the expected exit status, no panic, the two guidance lines.
fn assert_clean_error(out: &Output, code: i32) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
    assert!(!err.contains("panicked"), "{}", text(out));
    assert!(err.contains("safe to do:"), "{}", text(out));
    assert!(
        err.contains("runbook: futurnal help runbook "),
        "{}",
        text(out)
    );
}

#[test]
fn non_finite_numbers_in_the_file_are_rejected_at_their_position() {
    let s = Sandbox::new();
    let cfg = s.write(
        "c.yaml",
        "retry:\n  jitter: .nan\n  backoff_multiplier: .inf\n",
    );
    let out = s.run(&[
        OsStr::new("--config"),
        cfg.as_os_str(),
        "config".as_ref(),
        "validate".as_ref(),
    ]);
    assert_clean_error(&out, 3);
    let err = stderr(&out);
    assert!(err.contains("(2 problems)"), "{err}");
    assert!(
        err.contains("c.yaml:2:11: retry.jitter: must be a finite number, found NaN"),
        "{err}"
    );
    assert!(
        err.contains("c.yaml:3:23: retry.backoff_multiplier: must be a finite number, found inf"),
        "{err}"
    );
}

#[test]
fn non_finite_numbers_in_a_source_retry_override_are_rejected() {
    let s = Sandbox::new();
    let cfg = s.write(
        "c.yaml",
        "sources:\n  - name: n\n    type: local_files\n    path: /tmp\n    retry: {jitter: .nan}\n",
    );
    let out = s.run(&[
        OsStr::new("--config"),
        cfg.as_os_str(),
        "config".as_ref(),
        "validate".as_ref(),
    ]);
    assert_clean_error(&out, 3);
    let err = stderr(&out);
    assert!(
        err.contains("sources[0].retry.jitter: must be a finite number, found NaN"),
        "{err}"
    );
}

#[test]
fn non_finite_numbers_from_set_and_env_are_rejected() {
    let s = Sandbox::new();
    let out = s.run(&[
        "--set",
        "retry.backoff_multiplier=nan",
        "config",
        "validate",
    ]);
    assert_clean_error(&out, 3);
    assert!(
        stderr(&out)
            .contains("flag --set: retry.backoff_multiplier: must be a finite number, found NaN"),
        "{}",
        text(&out)
    );
    let out = s.run(&["--set", "retry.jitter=-inf", "config", "validate"]);
    assert_clean_error(&out, 3);
    assert!(
        stderr(&out).contains("flag --set: retry.jitter: must be a finite number, found -inf"),
        "{}",
        text(&out)
    );

    let out = s
        .cmd(&["config", "validate"])
        .env("FUTURNAL_RETRY_JITTER", "NaN")
        .output()
        .unwrap();
    assert_clean_error(&out, 3);
    assert!(
        stderr(&out).contains(
            "env FUTURNAL_RETRY_JITTER: retry.jitter: must be a finite number, found NaN"
        ),
        "{}",
        text(&out)
    );
    let out = s
        .cmd(&["config", "validate"])
        .env("FUTURNAL_RETRY_BACKOFF_MULTIPLIER", "infinity")
        .output()
        .unwrap();
    assert_clean_error(&out, 3);
}

#[test]
fn a_non_utf8_environment_value_is_reported_not_ignored() {
    let s = Sandbox::new();
    let out = s
        .cmd(&["config", "validate"])
        .env("FUTURNAL_RETRY_JITTER", OsStr::from_bytes(b"0.\xff"))
        .output()
        .unwrap();
    assert_clean_error(&out, 3);
    assert!(
        stderr(&out)
            .contains("env FUTURNAL_RETRY_JITTER: retry.jitter: the value is not valid UTF-8"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_non_utf8_config_path_works() {
    let s = Sandbox::new();
    let name = OsStr::from_bytes(b"conf-\xff.yaml");
    let path = s.dir.path().join(name);
    std::fs::write(&path, "workers:\n  max_workers: 1\n").unwrap();
    let out = s.run(&[
        OsStr::new("--config"),
        path.as_os_str(),
        "config".as_ref(),
        "validate".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("valid (0 sources)"),
        "{}",
        text(&out)
    );
    // A missing non-UTF-8 path is a located configuration error, not a crash.
    let out = s.run(&[
        OsStr::new("--config"),
        OsStr::from_bytes(b"\xff"),
        "config".as_ref(),
        "validate".as_ref(),
    ]);
    assert_clean_error(&out, 3);
    assert!(
        stderr(&out).contains("cannot read the configuration file"),
        "{}",
        text(&out)
    );
}

#[test]
fn other_non_utf8_arguments_are_usage_errors() {
    let s = Sandbox::new();
    for args in [
        vec![
            OsStr::new("--set"),
            OsStr::from_bytes(b"retry.jitter=\xff"),
            "config".as_ref(),
            "validate".as_ref(),
        ],
        vec![
            OsStr::new("orchestrator"),
            "sources".as_ref(),
            "show".as_ref(),
            OsStr::from_bytes(b"n\xffx"),
        ],
    ] {
        let out = s.run(&args);
        assert_clean_error(&out, 2);
        assert!(stderr(&out).contains("invalid UTF-8"), "{}", text(&out));
    }
    // Not a command at all: the usual "unrecognized subcommand".
    let out = s.run(&[OsStr::from_bytes(b"\xfe\xff")]);
    assert_clean_error(&out, 2);
}

#[test]
fn a_huge_since_is_a_clean_usage_error() {
    let s = Sandbox::new();
    for since in [
        "99999999999999999d",
        "9223372036854775807d",
        "2562047788015215h",
    ] {
        let out = s.run(&["orchestrator", "jobs", "list", "--since", since]);
        assert_clean_error(&out, 2);
        assert!(
            stderr(&out).contains("too far back"),
            "{since}: {}",
            text(&out)
        );
    }
    // An ordinary value still works.
    let out = s.run(&["orchestrator", "jobs", "list", "--since", "7d"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_huge_schedule_interval_is_rejected_with_its_range() {
    let s = Sandbox::new();
    let cfg = s.write(
        "c.yaml",
        "sources:\n  - name: n\n    type: local_files\n    path: /tmp\n    schedule: 999999999999h\n",
    );
    let out = s.run(&[
        OsStr::new("--config"),
        cfg.as_os_str(),
        "config".as_ref(),
        "validate".as_ref(),
    ]);
    assert_clean_error(&out, 3);
    assert!(
        stderr(&out).contains(
            "c.yaml:5:15: sources[0].schedule: interval `999999999999h` is too long: use at most 8784h (366 days)"
        ),
        "{}",
        text(&out)
    );
}
