//! Odd command-line arguments and values: non-finite numbers, non-UTF-8 arguments, values that
//! overflow. Each must end in a clean, located error (or work), never a panic.
//!
//! Every test runs in its own `common::Sandbox` (temporary HOME and FUTURNAL_HOME, clean
//! environment); none starts a daemon.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::Output;

use common::{Sandbox, describe, stderr, write_file};

/// A configuration file `name` beside the sandbox's HOME.
fn config_at(s: &Sandbox, name: &str, yaml: &str) -> PathBuf {
    let path = s.root().join(name);
    write_file(&path, yaml);
    path
}

/// `futurnal --config CONFIG config validate`.
fn validate(s: &Sandbox, config: &OsStr) -> Output {
    s.run(&[
        OsStr::new("--config"),
        config,
        "config".as_ref(),
        "validate".as_ref(),
    ])
}

/// A clean operator error: the expected exit status, no panic, the two guidance lines.
fn assert_clean_error(out: &Output, code: i32) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
    assert!(!err.contains("panicked"), "{}", describe(out));
    assert!(err.contains("safe to do:"), "{}", describe(out));
    assert!(
        err.contains("runbook: futurnal help runbook "),
        "{}",
        describe(out)
    );
}

#[test]
fn non_finite_numbers_in_the_file_are_rejected_at_their_position() {
    let s = Sandbox::new();
    let cfg = config_at(
        &s,
        "c.yaml",
        "retry:\n  jitter: .nan\n  backoff_multiplier: .inf\n",
    );
    let out = validate(&s, cfg.as_os_str());
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
    let cfg = config_at(
        &s,
        "c.yaml",
        "sources:\n  - name: n\n    type: local_files\n    path: /tmp\n    retry: {jitter: .nan}\n",
    );
    let out = validate(&s, cfg.as_os_str());
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
        describe(&out)
    );
    let out = s.run(&["--set", "retry.jitter=-inf", "config", "validate"]);
    assert_clean_error(&out, 3);
    assert!(
        stderr(&out).contains("flag --set: retry.jitter: must be a finite number, found -inf"),
        "{}",
        describe(&out)
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
        describe(&out)
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
        describe(&out)
    );
}

#[test]
fn a_non_utf8_config_path_works() {
    let s = Sandbox::new();
    let name = OsStr::from_bytes(b"conf-\xff.yaml");
    let path = s.root().join(name);
    std::fs::write(&path, "workers:\n  max_workers: 1\n").unwrap();
    let out = validate(&s, path.as_os_str());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("valid (0 sources)"),
        "{}",
        describe(&out)
    );
    // A missing non-UTF-8 path is a located configuration error, not a crash.
    let out = validate(&s, OsStr::from_bytes(b"\xff"));
    assert_clean_error(&out, 3);
    assert!(
        stderr(&out).contains("cannot read the configuration file"),
        "{}",
        describe(&out)
    );
}

/// `status --config PATH` with a file that does not load names that file, not the default one.
#[test]
fn status_names_the_configuration_file_it_was_given() {
    let s = Sandbox::new();
    let path = s.root().join("elsewhere.yaml");
    std::fs::write(&path, "workers:\n  max_worker: 1\n").unwrap();
    let out = s.run(&[
        OsStr::new("orchestrator"),
        OsStr::new("status"),
        OsStr::new("--config"),
        path.as_os_str(),
    ]);
    let shown = common::stdout(&out);
    let line = shown
        .lines()
        .find(|l| l.starts_with("config:"))
        .unwrap_or_default();
    assert!(
        line.contains("elsewhere.yaml") && line.contains("invalid"),
        "{}",
        describe(&out)
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
        assert!(stderr(&out).contains("invalid UTF-8"), "{}", describe(&out));
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
            describe(&out)
        );
    }
    // An ordinary value still works.
    let out = s.run(&["orchestrator", "jobs", "list", "--since", "7d"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn a_huge_schedule_interval_is_rejected_with_its_range() {
    let s = Sandbox::new();
    let cfg = config_at(
        &s,
        "c.yaml",
        "sources:\n  - name: n\n    type: local_files\n    path: /tmp\n    schedule: 999999999999h\n",
    );
    let out = validate(&s, cfg.as_os_str());
    assert_clean_error(&out, 3);
    assert!(
        stderr(&out).contains(
            "c.yaml:5:15: sources[0].schedule: interval `999999999999h` is too long: use at most 8784h (366 days)"
        ),
        "{}",
        describe(&out)
    );
}

/// `futurnal ... | head -n 1` panicked with "failed printing to stdout: Broken pipe" (found by
/// the checklists chapter). A command whose reader has gone away now ends quietly.
#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let s = Sandbox::new();
    let mut child = s
        .cmd(&["orchestrator", "status"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the command writes, as `head -n 1` does after its line.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // Status 0, not 141: `cmd | head` must not fail a script running with `set -o pipefail`.
    assert!(out.status.success(), "{:?}", out.status);
}
