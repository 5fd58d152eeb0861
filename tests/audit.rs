//! Issue 10 deliverable 4: the audit log is a hash chain that `futurnal audit verify` checks, every
//! operator action is in it, and concurrent writers (the daemon and CLI commands) never break it.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Sandbox, describe, stderr, stdout, wait_until};
use serde_json::Value;

fn audit_lines(s: &Sandbox) -> Vec<String> {
    std::fs::read_to_string(s.futurnal_home().join("logs/audit.log"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn put_lines(s: &Sandbox, lines: &[String]) {
    std::fs::write(
        s.futurnal_home().join("logs/audit.log"),
        lines.join("\n") + "\n",
    )
    .unwrap();
}

fn events(s: &Sandbox) -> Vec<String> {
    s.json(&["audit", "list", "--format", "json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"].as_str().unwrap_or("").to_string())
        .collect()
}

fn notes_config(s: &Sandbox, folder: &str) {
    s.write_config(&format!(
        "retry:\n  max_attempts: 1\nsources:\n  - name: notes\n    type: local_files\n    \
         path: \"{folder}\"\n"
    ));
}

/// Records: a start and stop (which create the queue), then `notes` paused and resumed `n` times
/// without a daemon.
fn some_records(s: &Sandbox, n: usize) {
    notes_config(s, &s.write_notes("notes", 1).display().to_string());
    s.start();
    s.ok(&["orchestrator", "stop"]);
    wait_until("the daemon to stop", Duration::from_secs(30), || {
        s.daemon_pid().is_none()
    });
    for _ in 0..n {
        s.ok(&[
            "orchestrator",
            "sources",
            "pause",
            "notes",
            "--reason",
            "test",
        ]);
        s.ok(&["orchestrator", "sources", "resume", "notes"]);
    }
}

#[test]
fn every_operator_action_is_audited_and_the_untouched_log_verifies() {
    let s = Sandbox::new();
    notes_config(&s, &s_missing(&s));
    // A loose home: start tightens it (a permission repair).
    std::fs::set_permissions(
        s.futurnal_home(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    s.start();
    // The run of a missing folder is quarantined at its first attempt.
    s.run(&["orchestrator", "sources", "trigger", "notes", "--wait"]);
    wait_until("job 1 quarantined", Duration::from_secs(30), || {
        s.job(1)["state"] == "quarantined"
    });
    s.ok(&["orchestrator", "quarantine", "retry", "1"]);
    wait_until("job 1 quarantined again", Duration::from_secs(30), || {
        s.job(1)["state"] == "quarantined"
    });
    s.ok(&["orchestrator", "quarantine", "purge", "--all"]);
    s.ok(&[
        "orchestrator",
        "sources",
        "pause",
        "notes",
        "--reason",
        "maintenance",
    ]);
    // A waiting job of a paused source, cancelled.
    let out = s.ok(&["orchestrator", "sources", "trigger", "notes"]);
    let id: String = stdout(&out)
        .split_whitespace()
        .nth(3)
        .unwrap_or_default()
        .to_string();
    s.ok(&["orchestrator", "jobs", "cancel", &id, "--reason", "not now"]);
    s.ok(&["orchestrator", "sources", "resume", "notes"]);
    s.ok(&["orchestrator", "reload"]);
    s.ok(&[
        "orchestrator",
        "telemetry",
        "clean",
        "--older-than-days",
        "30",
    ]);
    s.ok(&["orchestrator", "backup"]);
    s.ok(&["orchestrator", "stop"]);
    wait_until("the daemon to stop", Duration::from_secs(30), || {
        s.daemon_pid().is_none()
    });
    let backup = std::fs::read_dir(s.futurnal_home().join("backups"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("a backup");
    s.ok(&["orchestrator", "restore", &backup.display().to_string()]);

    let seen = events(&s);
    for event in [
        "home.permissions_tightened",
        "orchestrator.start",
        "source.trigger",
        "quarantine.retry",
        "quarantine.purge",
        "source.pause",
        "job.cancel",
        "source.resume",
        "config_reload",
        "telemetry.clean",
        "backup",
        "restore",
        "orchestrator.stop_requested",
        "orchestrator.stop",
    ] {
        assert!(seen.iter().any(|e| e == event), "{event} not in {seen:?}");
    }
    let cancel = s.audit_events("job.cancel");
    assert_eq!(cancel[0]["job"].to_string(), id, "{cancel:?}");

    let out = s.run(&["audit", "verify"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout(&out).contains("audit log intact"),
        "{}",
        describe(&out)
    );
    // The hidden alias reaches the same command.
    let v = s.json(&["orchestrator", "audit", "verify", "--format", "json"]);
    assert_eq!(v["intact"], true, "{v}");
    assert_eq!(v["records"].as_u64(), Some(seen.len() as u64));
}

/// The folder of the source: missing, so its run is quarantined.
fn s_missing(s: &Sandbox) -> String {
    s.home().join("gone").display().to_string()
}

/// Each tampering is reported as a failure naming the first bad line, with what is safe and a
/// runbook topic; the untouched copy still verifies.
#[test]
fn each_kind_of_tampering_is_named_at_its_first_bad_line() {
    let s = Sandbox::new();
    some_records(&s, 3);
    let orig = audit_lines(&s);
    assert!(s.run(&["audit", "verify"]).status.success());
    // The last six lines are pause, resume, pause, ...: `b + i` is the i-th of them (0-based),
    // on line `b + i + 1`.
    let b = orig.len() - 6;
    assert!(orig[b].contains("source.pause"), "{orig:?}");

    let mut edited = orig.clone();
    edited[b + 2] = edited[b + 2].replace("\"reason\":\"test\"", "\"reason\":\"tset\"");
    let mut removed = orig.clone();
    removed.remove(b + 3);
    let mut inserted = orig.clone();
    inserted.insert(b + 4, orig[b + 1].clone());
    let mut reordered = orig.clone();
    reordered.swap(b + 1, b + 2);
    for (what, lines, line, word) in [
        ("edit", edited, b + 3, "edited"),
        ("remove", removed, b + 4, "removed"),
        ("insert", inserted, b + 5, "inserted"),
        ("reorder", reordered, b + 2, "removed"),
    ] {
        put_lines(&s, &lines);
        let out = s.run(&["audit", "verify"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", describe(&out));
        assert!(
            err.contains(&format!("audit.log line {line}:")),
            "{what}: {err}"
        );
        assert!(err.contains(word), "{what}: {err}");
        assert!(err.contains("safe to do"), "{what}: {err}");
        assert!(
            err.contains("futurnal help runbook the-audit-log"),
            "{what}: {err}"
        );
    }
    put_lines(&s, &orig);
    assert!(s.run(&["audit", "verify"]).status.success());
}

/// A log of the format before the chain (no seq/prev/hash) keeps working: new records chain after
/// it, and verify says where the chain begins.
#[test]
fn a_log_from_before_the_chain_verifies_from_where_the_chain_begins() {
    let s = Sandbox::new();
    common::write_file(
        &s.futurnal_home().join("logs/audit.log"),
        "{\"at\":\"2026-01-01T00:00:00.000Z\",\"event\":\"orchestrator.start\",\"pid\":1}\n",
    );
    some_records(&s, 1);
    let out = s.ok(&["audit", "verify"]);
    assert!(
        stdout(&out).contains("audit.log line 2; the 1 line(s) before it predate the chain"),
        "{}",
        describe(&out)
    );
    let all = audit_lines(&s).len();
    let listed = s.json(&["audit", "list", "--format", "json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(all), "{listed}");
    let recent = s.json(&["audit", "list", "--since", "1h", "--format", "json"]);
    assert_eq!(recent.as_array().map(Vec::len), Some(all - 1), "{recent}");
}

/// A running daemon (which audits its own events) and several CLI commands at once, each taking
/// the log's lock: the chain stays whole and no record is lost.
#[test]
fn concurrent_writers_never_break_the_chain() {
    let s = Sandbox::new();
    let folder = s.write_notes("notes", 3).display().to_string();
    let sources: String = (0..4)
        .map(|i| format!("  - name: n{i}\n    type: local_files\n    path: \"{folder}\"\n"))
        .collect();
    s.write_config(&format!("sources:\n{sources}"));
    s.start();
    let before = audit_lines(&s).len();
    // Separate processes, all started before any is waited for: four sources paused (then
    // resumed) at once while a reload makes the daemon write its own record.
    for round in 0..4 {
        let mut children = Vec::new();
        for i in 0..4 {
            let name = format!("n{i}");
            let mut c = if round % 2 == 0 {
                s.cmd(&[
                    "orchestrator",
                    "sources",
                    "pause",
                    &name,
                    "--reason",
                    "test",
                ])
            } else {
                s.cmd(&["orchestrator", "sources", "resume", &name])
            };
            children.push(c.stdout(Stdio::null()).spawn().unwrap());
        }
        let mut c = s.cmd(&["orchestrator", "reload"]);
        children.push(c.stdout(Stdio::null()).spawn().unwrap());
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
    }
    s.ok(&["orchestrator", "stop"]);
    wait_until("the daemon to stop", Duration::from_secs(30), || {
        s.daemon_pid().is_none()
    });
    let after = audit_lines(&s);
    assert_eq!(s.audit_events("source.pause").len(), 8);
    assert_eq!(s.audit_events("source.resume").len(), 8);
    assert_eq!(s.audit_events("config_reload").len(), 4);
    assert!(after.len() >= before + 20);
    let v: Value = s.json(&["audit", "verify", "--format", "json"]);
    assert_eq!(v["intact"], true, "{v}");
    assert_eq!(v["records"].as_u64(), Some(after.len() as u64));
}
