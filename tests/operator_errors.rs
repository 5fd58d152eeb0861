//! What an operator is told when a lower layer fails, per command: for queue.db, a start says
//! the orchestrator did not start; a command that only reads or changes the queue says it could
//! not read the queue and that nothing was changed (issue 8: `jobs list` on a corrupt queue.db
//! said "the orchestrator did not start", because the queue layer wrote the operator's prose
//! itself). The lower layers return typed errors; `futurnal::error` words them.
//!
//! Every test runs in its own `common::Sandbox`, which kills any daemon it started.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Sandbox, describe, stderr, unprivileged_prefix};

/// A home whose queue.db exists (one start and stop), with no daemon running.
fn stopped_home() -> Sandbox {
    let s = Sandbox::new();
    s.start();
    let stop = s.run(&["orchestrator", "stop"]);
    assert!(stop.status.success(), "{}", describe(&stop));
    s
}

/// The prose a command other than `start` gives: never the start's, always "nothing was changed".
fn assert_said_by_a_command(err: &str, topic: &str) {
    assert!(!err.contains("did not start"), "{err}");
    assert!(
        err.contains("could not read the queue") && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(
        err.contains(&format!("futurnal help runbook {topic}")),
        "{err}"
    );
}

#[test]
fn a_command_on_a_corrupt_queue_says_it_could_not_read_it_not_that_nothing_started() {
    let s = stopped_home();
    std::fs::write(s.futurnal_home().join("queue.db"), vec![0x5au8; 8192]).unwrap();
    for args in [
        &["orchestrator", "jobs", "list"][..],
        &["orchestrator", "quarantine", "list"][..],
        &["orchestrator", "jobs", "cancel", "1", "--reason", "x"][..],
    ] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {}", describe(&out));
        let err = stderr(&out);
        assert!(err.contains("corrupt"), "{args:?}: {err}");
        assert_said_by_a_command(&err, "the-queue-database-is-corrupt");
    }
    // The start keeps its own words, and the file is left as it was.
    let out = s.run(&["orchestrator", "start"]);
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
    assert!(
        stderr(&out).contains("the orchestrator did not start"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        std::fs::read(s.futurnal_home().join("queue.db")).unwrap(),
        vec![0x5au8; 8192]
    );
}

#[test]
fn a_command_on_a_queue_from_a_newer_futurnal_does_not_claim_a_start() {
    let s = stopped_home();
    let conn = rusqlite::Connection::open(s.futurnal_home().join("queue.db")).unwrap();
    conn.execute_batch("PRAGMA user_version = 999").unwrap();
    drop(conn);
    let out = s.run(&["orchestrator", "jobs", "list"]);
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("schema version 999"), "{err}");
    assert_said_by_a_command(&err, "the-queue-database-is-corrupt");
}

#[test]
fn a_command_on_an_unreadable_queue_says_so_and_that_nothing_was_changed() {
    let prefix = match unprivileged_prefix() {
        Ok(prefix) => prefix,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let s = stopped_home();
    let queue = s.futurnal_home().join("queue.db");
    std::fs::set_permissions(&queue, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = s.run_as(&prefix, &["orchestrator", "jobs", "list"]);
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.contains("permission denied on"), "{err}");
    assert!(err.contains("do not move it aside"), "{err}");
    assert_said_by_a_command(&err, "a-database-is-not-readable");
}

/// A link planted where the daemon writes its log refuses the start with the link's own advice
/// and topic (the home layer reports a typed `LinkRefused`; the wording is the operator layer's).
#[test]
fn a_link_at_the_log_refuses_the_start_and_names_the_link_topic() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.futurnal_home().join("logs")).unwrap();
    let victim = s.root().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, s.futurnal_home().join("logs/orchestrator.log")).unwrap();
    let out = s.run(&["orchestrator", "start"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("orchestrator.log is a symbolic link and futurnal never writes through one"),
        "{err}"
    );
    assert!(err.contains("remove it"), "{err}");
    assert!(
        err.contains("futurnal help runbook a-link-or-special-file-in-the-home"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}
