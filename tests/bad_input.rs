//! The bad-input matrix (issue 7): sources holding every awkward input futurnal documents, run by
//! a real daemon. Each case must end exactly as `futurnal::INPUT_OUTCOMES` says (the book's
//! outcome table equals that list, see tests/book_tables.rs); no run fails because of one item, and
//! the daemon is still running at the end. The rows only a run caught mid-way can show are checked
//! at the function level in `ingest`'s unit tests.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Sandbox, describe, unprivileged_prefix, wait_until, write_file};
use futurnal::{INPUT_OUTCOMES, input_outcome};

/// Rows checked in `ingest`'s unit tests instead (a file changed between scan and read).
const MID_RUN: &[&str] = &[
    "file that grows over max_item_mb during a run",
    "file replaced by a symbolic link during a run",
    "file replaced by a named pipe during a run",
    "file deleted during a run",
];

const MARKER: &str = "CRASH-ME-bad-input";

fn sh(script: &str, dir: &Path) {
    let ok = Command::new("bash")
        .args(["-c", script])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(ok.success(), "{script}");
}

/// What became of one item, in the catalogue's words.
fn actual(s: &Sandbox, jobs: &[serde_json::Value], source: &str, key: &str) -> (String, String) {
    if let Some(j) = jobs
        .iter()
        .find(|j| j["kind"] == "item" && j["source"] == source && j["item"] == key)
    {
        let class = j["error_class"].as_str().unwrap_or("?").to_string();
        return match j["state"].as_str().unwrap_or("") {
            "quarantined" => ("quarantined".into(), class),
            "failed" | "pending" => ("retried".into(), class),
            other => (format!("item job {other}"), class),
        };
    }
    let store = futurnal::Store::open_existing(&s.futurnal_home().join("store.db"))
        .unwrap()
        .unwrap();
    if let Some(row) = store
        .skipped_items(source, 100_000)
        .unwrap()
        .into_iter()
        .find(|r| r.item == key)
    {
        return ("skipped".into(), row.reason);
    }
    let ingested = store
        .recent_documents(source, 100_000)
        .unwrap()
        .iter()
        .any(|d| d.item == key || d.item.starts_with(&format!("{key}#")));
    if ingested {
        ("ingested".into(), "-".into())
    } else {
        ("nothing recorded".into(), String::new())
    }
}

#[test]
fn every_bad_input_ends_as_documented_and_the_daemon_keeps_running() {
    let (prefix, perms_skipped) = match unprivileged_prefix() {
        Ok(p) => (p, None),
        Err(why) => (Vec::new(), Some(why)),
    };
    let s = Sandbox::new()
        .with_prefix(prefix)
        .with_env("FUTURNAL_DEBUG_PANIC_MARKER", MARKER);
    let src = s.home().join("S");
    let outside = s.home().join("Outside");
    let maildir = s.home().join("Mail");
    let mbox = s.home().join("box.mbox");

    // (catalogue row, source, keys it covers)
    let mut cases: Vec<(&str, &str, Vec<String>)> = Vec::new();
    let mut case = |row: &'static str, source: &'static str, keys: &[&str]| {
        cases.push((row, source, keys.iter().map(|k| k.to_string()).collect()));
    };

    write_file(&src.join("empty.md"), "");
    case("empty file", "s", &["empty.md"]);
    let names = [
        "hash#1.md",
        "pct%20.md",
        "q?.md",
        "quote'1.md",
        "dq\"1.md",
        " lead.md",
    ];
    for n in names {
        write_file(&src.join(n), n);
    }
    case("names with #, %, ?, quotes or leading spaces", "s", &names);
    {
        use std::os::unix::ffi::OsStrExt;
        write_file(&src.join(std::ffi::OsStr::from_bytes(b"\xff.md")), "x");
    }
    let non_utf8 = futurnal::sources::key_from_bytes(b"\xff.md");
    case("a file name that is not UTF-8", "s", &[&non_utf8]);
    write_file(&src.join("nul.txt"), "before\0after\n");
    case("NUL bytes in UTF-8 text", "s", &["nul.txt"]);
    let deep = format!("{}deep.md", "d/".repeat(200));
    write_file(&src.join(&deep), "deep");
    case("folders nested 200 deep", "s", &[&deep]);
    write_file(&src.join("latin1.txt"), b"caf\xe9\n");
    case("text that is not UTF-8", "s", &["latin1.txt"]);
    let binary: Vec<u8> = (0..2048u32).map(|i| (i * 131 % 256) as u8).collect();
    write_file(&src.join("binary.md"), &binary);
    case("binary data named like text", "s", &["binary.md"]);
    write_file(&src.join("photo.png"), &binary);
    case("binary file of another type", "s", &["photo.png"]);
    write_file(
        &src.join("bad-front.md"),
        "---\ntitle: [unclosed\n---\nbody\n",
    );
    case("malformed frontmatter", "s", &["bad-front.md"]);
    write_file(&src.join("huge.txt"), vec![b'a'; 1024 * 1024 + 1]);
    case("file over max_item_mb", "s", &["huge.txt"]);
    write_file(&src.join("crash.md"), format!("private text\n{MARKER}\n"));
    if cfg!(debug_assertions) {
        case("item that crashes a parser", "s", &["crash.md"]);
    } else {
        eprintln!(
            "skipped case `item that crashes a parser`: panics are injected in debug builds only"
        );
    }
    sh("mkfifo fifo.md", &src);
    case("named pipe (FIFO)", "s", &["fifo.md"]);
    write_file(&outside.join("secret.md"), "not yours");
    std::os::unix::fs::symlink(outside.join("secret.md"), src.join("link-out.md")).unwrap();
    std::os::unix::fs::symlink("empty.md", src.join("link-in.md")).unwrap();
    case(
        "symbolic link, inside or out of the source",
        "s",
        &["link-out.md", "link-in.md"],
    );
    std::os::unix::fs::symlink("loop-b.md", src.join("loop-a.md")).unwrap();
    std::os::unix::fs::symlink("loop-a.md", src.join("loop-b.md")).unwrap();
    case("symbolic link loop", "s", &["loop-a.md", "loop-b.md"]);
    // Beyond PATH_MAX (4096): built with relative steps, as no absolute path can reach it.
    let long = "x".repeat(250);
    sh(
        &format!(
            "for i in $(seq 1 20); do mkdir {long} && cd {long} || exit 1; done; echo far > far.md"
        ),
        &src,
    );
    write_file(&src.join("locked/in.md"), "readable at first");
    write_file(&src.join("unreadable.md"), "no");
    if perms_skipped.is_none() {
        sh("chmod 000 unreadable.md", &src);
        case("unreadable file", "s", &["unreadable.md"]);
        case("unreadable folder", "s", &["locked"]);
    }
    write_file(
        &maildir.join("cur/garbage:2,S"),
        b"garbage \x00\x01 not mail at all",
    );
    write_file(&maildir.join("new/.keep"), "");
    write_file(&maildir.join("tmp/.keep"), "");
    case("email without the usual headers", "m", &["garbage"]);
    write_file(
        &mbox,
        "text before any message\nFrom a@b Mon Jan  1 00:00:00 2024\nFrom: a@b\nSubject: one\n\nbody one\n\nFrom b@c Mon Jan  1 00:00:00 2024\n\nno headers here\n",
    );
    case(
        "mbox with text before its first message",
        "b",
        &["box.mbox"],
    );

    s.write_config(&format!(
        "sources:\n  - name: s\n    type: local_files\n    path: {}\n    max_item_mb: 1\n  \
         - name: m\n    type: maildir\n    path: {}\n  - name: b\n    type: mbox\n    path: {}\n",
        src.display(),
        maildir.display(),
        mbox.display()
    ));
    let out = s.run(&["orchestrator", "start"]);
    assert!(out.status.success(), "{}", describe(&out));
    let pid = s.json(&["orchestrator", "status", "--format", "json"])["pid"].clone();

    // First run with everything readable, so that the folder locked afterwards holds a document
    // that must survive the run that cannot list it.
    for source in ["s", "m", "b"] {
        s.run(&["orchestrator", "sources", "trigger", source, "--wait"]);
    }
    if perms_skipped.is_none() {
        sh("chmod 000 locked", &src);
        std::fs::write(src.join("touch.md"), "a change, so the run has work").unwrap();
        s.run(&["orchestrator", "sources", "trigger", "s", "--wait"]);
    } else {
        eprintln!(
            "skipped cases `unreadable file` and `unreadable folder`: {}",
            perms_skipped.as_deref().unwrap_or_default()
        );
    }
    let jobs = s.json(&[
        "orchestrator",
        "jobs",
        "list",
        "--limit",
        "1000",
        "--format",
        "json",
    ]);
    let jobs = jobs.as_array().unwrap().clone();
    for run in jobs.iter().filter(|j| j["kind"] == "source_run") {
        assert_eq!(
            run["state"], "succeeded",
            "one bad item never fails its run: {run}"
        );
    }

    let mut mismatches = Vec::new();
    for (row, source, keys) in &cases {
        let (outcome, detail) = input_outcome(row);
        for key in keys {
            let got = actual(&s, &jobs, source, key);
            if (got.0.as_str(), got.1.as_str()) != (outcome, detail) {
                mismatches.push(format!(
                    "{row} ({source}:{key}): documented {outcome} {detail}, got {} {}",
                    got.0, got.1
                ));
            }
        }
    }
    // The folder beyond PATH_MAX is found by its prefix: which depth fails depends on where the
    // sandbox lives.
    let (outcome, detail) = input_outcome("path longer than PATH_MAX");
    let far = jobs
        .iter()
        .find(|j| j["kind"] == "item" && j["item"].as_str().is_some_and(|i| i.starts_with(&long)));
    match far {
        Some(j) if j["state"] == outcome && j["error_class"] == detail => {}
        other => mismatches.push(format!(
            "path longer than PATH_MAX: documented {outcome} {detail}, got {other:?}"
        )),
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    if perms_skipped.is_none() {
        // Nothing under a folder that could not be listed is taken for deleted.
        let store = futurnal::Store::open_existing(&s.futurnal_home().join("store.db"))
            .unwrap()
            .unwrap();
        let live = store.recent_documents("s", 100_000).unwrap();
        assert!(
            live.iter().any(|d| d.item == "locked/in.md"),
            "locked/in.md was deleted"
        );
    }

    // Every row is checked here or in `ingest`'s unit tests.
    for (row, _, _) in INPUT_OUTCOMES {
        let here = cases.iter().any(|(r, _, _)| r == row)
            || *row == "path longer than PATH_MAX"
            || MID_RUN.contains(row)
            || (perms_skipped.is_some() && row.starts_with("unreadable"))
            || (!cfg!(debug_assertions) && *row == "item that crashes a parser");
        assert!(here, "catalogue row {row:?} is not checked");
    }

    // The crash left no text of the note in the daemon's log.
    let log = std::fs::read_to_string(s.futurnal_home().join("logs/orchestrator.log")).unwrap();
    assert!(
        !log.contains("private text"),
        "the note's text reached the log"
    );
    wait_until("the status", Duration::from_secs(30), || {
        s.json(&["orchestrator", "status", "--format", "json"])["pid"] == pid
    });
    let status = s.json(&["orchestrator", "status", "--format", "json"]);
    assert_eq!(status["running"], true, "the daemon never exits: {status}");
}
