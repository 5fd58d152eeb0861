//! The queue's promises, checked against the real binary: a state change and its history row
//! commit together even when the process dies between them.
//!
//! Every test runs in its own `common::Sandbox` (temporary HOME and FUTURNAL_HOME, every daemon
//! it started killed whatever happens; its drop also checks every job's history). Waits poll
//! with deadlines.

mod common;

use std::time::Duration;

use common::{Sandbox, describe, wait_until};

/// The daemon dies (abort: no unwinding, no rollback) right after the UPDATE that makes a run
/// `succeeded` and before its event is written. queue.db then holds neither: the job is still
/// `running` with a whole history; the next start hands it back and it succeeds.
#[test]
fn a_crash_between_a_state_update_and_its_event_leaves_neither() {
    let s = Sandbox::new();
    s.write_notes("notes", 3);
    s.write_config("sources:\n  - name: notes\n    type: local_files\n    path: ~/notes\n");
    let out = s.output(
        s.cmd(&["orchestrator", "start"])
            .env("FUTURNAL_FAILPOINT", "after-update:Succeeded"),
    );
    assert!(out.status.success(), "{}", describe(&out));
    let pid = s.daemon_pid().expect("a running daemon");
    let out = s.run(&["orchestrator", "sources", "trigger", "notes"]);
    assert!(out.status.success(), "{}", describe(&out));
    wait_until("the daemon to abort", Duration::from_secs(30), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    let queue = s.futurnal_home().join("queue.db");
    let conn = rusqlite::Connection::open(&queue).unwrap();
    let (state, last): (String, String) = conn
        .query_row(
            "SELECT state, (SELECT to_state FROM job_events WHERE job_id = jobs.id
                            ORDER BY at DESC, id DESC LIMIT 1) FROM jobs WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((state.as_str(), last.as_str()), ("running", "running"));
    assert_eq!(common::history_violations(&queue), Vec::new());
    drop(conn);

    // Without the failpoint, the next start recovers the job and it runs to the end.
    s.start();
    let out = s.run(&["orchestrator", "jobs", "wait", "1"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(s.job(1)["state"], "succeeded");
    // Both attempts have their telemetry: the one the crash ended (handed back at the start
    // that recovered it) and the one that succeeded.
    let conn = rusqlite::Connection::open(&queue).unwrap();
    let outcomes: Vec<String> = conn
        .prepare("SELECT outcome FROM telemetry_attempts WHERE job_id = 1 ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(outcomes, ["pending", "succeeded"]);
}

/// A job runs with the retry policy of the daemon that claims it, not of the command that
/// queued it: the daemon started with `--set retry.max_attempts=5`; a trigger whose own
/// configuration says 2 does not shorten the job's attempts.
#[test]
fn the_daemons_retry_policy_decides_a_jobs_attempts_not_the_triggering_command() {
    let s = Sandbox::new();
    s.write_notes("notes", 2);
    s.write_config("sources:\n  - name: notes\n    type: local_files\n    path: ~/notes\n");
    s.ok(&["--set", "retry.max_attempts=5", "orchestrator", "start"]);
    s.ok(&[
        "--set",
        "retry.max_attempts=2",
        "orchestrator",
        "sources",
        "trigger",
        "notes",
        "--wait",
    ]);
    let job = s.job(1);
    assert_eq!(job["state"], "succeeded");
    assert_eq!(job["max_attempts"], 5, "{job}");
}
