#![no_main]
// Body and invariants: futurnal::fuzzing::email (replayed on stable by tests/fuzz_seeds.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| futurnal::fuzzing::email(data));
