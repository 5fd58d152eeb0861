//! Runs every chapter of the operator book (book/src) against the futurnal binary cargo just
//! built, and prints executed / skipped / failed counts. `harness = false`: this is the whole test.
//!
//! Filters: `cargo test --test book -- WORD` runs chapters whose file name contains WORD.
//! Bless: `RUNBOOK_BLESS=1 cargo test --test book -- WORD` rewrites expected-output blocks.
//! `RUNBOOK_JOBS=N` runs N chapters at once (default: `runbook_tests::default_jobs()`).
//! A whole-book run also applies the CLI-surface gate (tests/cli_surface.rs) and prints its
//! coverage after the harness report, then the topics errors name (all must exist) and the
//! troubleshooting entries no error names.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

// The gate's own tests run in its test target; here only `gate` is used.
#[path = "cli_surface.rs"]
#[allow(dead_code)]
mod cli_surface;

/// Every queue.db a chapter left behind: each job's history accounts for its state
/// (`futurnal::history_violations`). A database a chapter damaged on purpose is skipped.
fn queue_histories(sandbox: &Path) -> Vec<String> {
    fn find(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                find(&path, out);
            } else if kind.is_file() && path.file_name().is_some_and(|n| n == "queue.db") {
                out.push(path);
            }
        }
    }
    let mut found = Vec::new();
    find(sandbox, &mut found);
    let mut problems = Vec::new();
    for db in found {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let Ok(conn) = rusqlite::Connection::open_with_flags(&db, flags) else {
            continue;
        };
        for (job, what) in futurnal::history_violations(&conn).unwrap_or_default() {
            problems.push(format!(
                "{}: job {job}: {what} (a state written without its event)",
                db.display()
            ));
        }
    }
    problems
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        // libtest protocol, so `cargo test -- --list` keeps working.
        println!("book: test");
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_futurnal"));
    let files: Vec<PathBuf> = runbook_tests::collect_markdown(&[root.join("book").join("src")])
        .expect("book/src is readable")
        .into_iter()
        .filter(|f| {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            filters.is_empty() || filters.iter().any(|w| name.contains(w.as_str()))
        })
        .collect();
    let opts = runbook_tests::Options {
        bin_dirs: vec![bin.parent().expect("binary has a directory").to_path_buf()],
        fixtures: Some(root.join("fixtures")),
        bless: std::env::var("RUNBOOK_BLESS").is_ok_and(|v| v == "1"),
        bless_hint: "RUNBOOK_BLESS=1 cargo test --test book -- CHAPTER".into(),
        chapter_check: Some(queue_histories),
        ..Default::default()
    };
    let opts = match std::env::var("RUNBOOK_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
    {
        Some(jobs) => runbook_tests::Options { jobs, ..opts },
        None => opts,
    };
    let summary = runbook_tests::run(&files, &opts);
    print!("{}", runbook_tests::report::render(&summary, &opts));
    // The surface is the whole book's: a run of some chapters cannot judge it.
    let surface_ok = if filters.is_empty() {
        let gate = cli_surface::gate(root);
        print!("{}", gate.report());
        let topics = futurnal::topics_report();
        println!(
            "topics: {} named by errors and health checks, {} missing from the book{}",
            topics.named,
            topics.missing.len(),
            if topics.missing.is_empty() {
                String::new()
            } else {
                format!(": {}", topics.missing.join(", "))
            }
        );
        println!(
            "troubleshooting entries no error names ({}, found by symptom or `help runbook --search`): {}",
            topics.unnamed_entries.len(),
            topics.unnamed_entries.join(", ")
        );
        gate.problems.is_empty() && topics.missing.is_empty()
    } else {
        true
    };
    if summary.passed() && surface_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
