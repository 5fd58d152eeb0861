//! The futurnal home against a hostile or careless environment, with a real daemon: loose
//! permissions, planted links, a removed lock file, databases futurnal may not read.
//!
//! Every test runs in its own `common::Sandbox`, which kills any daemon it started. Permission
//! scenarios run the binary without CAP_DAC_OVERRIDE when the tests run as root (root would read
//! anything), through `setpriv` (`common::unprivileged_prefix`), as the book harness does.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Sandbox, describe, stderr, stdout, unprivileged_prefix, wait_until};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn alive(pid: i64) -> bool {
    // A zombie is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Issue 7 item 5: `start; rm orchestrator.lock; start` started a second daemon, `stop` stopped
/// only the second one and `status` said "not running".
#[test]
fn removing_the_lock_file_never_lets_a_second_daemon_start() {
    let s = Sandbox::new();
    let first = s.start();
    std::fs::remove_file(s.futurnal_home().join("orchestrator.lock")).unwrap();

    let second = s.run(&["orchestrator", "start"]);
    assert_eq!(second.status.code(), Some(4), "{}", describe(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains(&format!("pid {first}")),
        "{}",
        describe(&second)
    );
    // Even a foreground start, which goes straight for the lock, is refused.
    let fg = s.run(&["orchestrator", "start", "--foreground"]);
    assert_eq!(fg.status.code(), Some(4), "{}", describe(&fg));

    let status = s.status_json();
    assert_eq!(status["running"], true);
    assert_eq!(status["pid"].as_i64(), Some(first));
    // The daemon notices and puts its lock file back.
    wait_until(
        "the lock file to come back",
        Duration::from_secs(10),
        || s.lock_pid() == Some(first),
    );
    wait_until("the daemon to log it", Duration::from_secs(10), || {
        std::fs::read_to_string(s.futurnal_home().join("logs/orchestrator.log"))
            .is_ok_and(|log| log.contains("was removed; put it back"))
    });

    let stop = s.run(&["orchestrator", "stop"]);
    assert!(stop.status.success(), "{}", describe(&stop));
    assert!(
        String::from_utf8_lossy(&stop.stdout).contains(&format!("pid {first}")),
        "{}",
        describe(&stop)
    );
    wait_until("the daemon to exit", Duration::from_secs(10), || {
        !alive(first)
    });
    assert_eq!(s.status_json()["running"], false);
}

/// Issue 7 item 3 and deliverable 8: the book's own `mkdir -p ~/.futurnal/config` leaves a 0755
/// home that was never tightened; store.db was created 0644.
#[test]
fn a_loose_home_is_made_private_at_start_and_audited() {
    let s = Sandbox::new();
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(s.futurnal_home().join("config"))
        .unwrap();
    for d in [s.futurnal_home(), s.futurnal_home().join("config")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let config = s.futurnal_home().join("config/orchestrator.yaml");
    std::fs::write(&config, "security:\n  audit_logging: true\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

    s.start();
    assert_eq!(mode(&s.futurnal_home()), 0o700);
    assert_eq!(mode(&s.futurnal_home().join("config")), 0o700);
    assert_eq!(mode(&config), 0o600);
    let audit = std::fs::read_to_string(s.futurnal_home().join("logs/audit.log")).unwrap();
    let tightened: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "home.permissions_tightened")
        .collect();
    let paths: Vec<&str> = tightened
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [".", "config", "config/orchestrator.yaml"],
        "{audit}"
    );
    let log = std::fs::read_to_string(s.futurnal_home().join("logs/orchestrator.log")).unwrap();
    assert!(log.contains("made a path in the home private"), "{log}");

    // Every file futurnal created is private, and every directory.
    let stop = s.run(&["orchestrator", "stop"]);
    assert!(stop.status.success(), "{}", describe(&stop));
    for entry in walk(&s.futurnal_home()) {
        let m = mode(&entry);
        let want = if entry.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(m, want, "{}", entry.display());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Issue 7 item 3: with a writable home, another user could point `logs/audit.log` at any file,
/// and the daemon appended to it.
#[test]
fn a_planted_link_at_the_audit_log_is_refused_and_its_target_untouched() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.futurnal_home().join("logs")).unwrap();
    let victim = s.root().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, s.futurnal_home().join("logs/audit.log")).unwrap();

    let out = s.run(&["orchestrator", "start"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audit.log is a symbolic link"), "{err}");
    assert!(
        err.contains("futurnal help runbook a-link-or-special-file-in-the-home"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(s.status_json()["running"], false);
}

/// Issue 7 item 9: a queue.db unreadable for permissions was reported as corrupt, with the advice
/// to move it aside; after `chmod 600 queue.db` a leftover 0400 queue.db-shm still blocked start.
#[test]
fn an_unreadable_queue_is_a_permission_problem_not_damage() {
    let prefix = match unprivileged_prefix() {
        Ok(prefix) => prefix,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let s = Sandbox::new();
    s.start();
    let stop = s.run(&["orchestrator", "stop"]);
    assert!(stop.status.success(), "{}", describe(&stop));
    let queue = s.futurnal_home().join("queue.db");
    let set = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    set(&queue, 0o000).unwrap();

    let out = s.run_as(&prefix, &["orchestrator", "start"]);
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission denied on ~/.futurnal/queue.db"),
        "{err}"
    );
    assert!(
        !err.contains("corrupt") && !err.contains("move the file aside"),
        "{err}"
    );
    assert!(
        err.contains("futurnal help runbook a-database-is-not-readable"),
        "{err}"
    );
    let jobs = s.run_as(&prefix, &["orchestrator", "jobs", "list"]);
    assert_eq!(jobs.status.code(), Some(5), "{}", describe(&jobs));
    assert!(
        String::from_utf8_lossy(&jobs.stderr).contains("permission denied"),
        "{}",
        describe(&jobs)
    );

    // The operator fixes the database; a read-only -shm from the same chmod is left over.
    set(&queue, 0o600).unwrap();
    let shm = s.futurnal_home().join("queue.db-shm");
    std::fs::write(&shm, "").unwrap();
    set(&shm, 0o400).unwrap();
    let jobs = s.run_as(&prefix, &["orchestrator", "jobs", "list"]);
    assert_eq!(jobs.status.code(), Some(5), "{}", describe(&jobs));
    assert!(
        String::from_utf8_lossy(&jobs.stderr).contains("queue.db-shm"),
        "{}",
        describe(&jobs)
    );
    // start gives the leftover its mode back (audited) and runs.
    let out = s.run_as(&prefix, &["orchestrator", "start"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(mode(&shm), 0o600);
    let stop = s.run(&["orchestrator", "stop"]);
    assert!(stop.status.success(), "{}", describe(&stop));
}

/// The damaged counterpart keeps its own diagnosis and advice.
#[test]
fn a_corrupt_queue_is_still_called_corrupt() {
    let s = Sandbox::new();
    s.start();
    let stop = s.run(&["orchestrator", "stop"]);
    assert!(stop.status.success(), "{}", describe(&stop));
    std::fs::write(s.futurnal_home().join("queue.db"), vec![0x5au8; 8192]).unwrap();
    let out = s.run(&["orchestrator", "start"]);
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt"), "{err}");
    assert!(
        err.contains("futurnal help runbook the-queue-database-is-corrupt"),
        "{err}"
    );
}

/// Issue 7 item 9: a corrupt store.db made `sources list` show 0 documents and exit 0.
#[test]
fn a_corrupt_store_fails_commands_that_read_it() {
    let s = Sandbox::new();
    let notes = s.home().join("Notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("a.md"), "# A\n").unwrap();
    std::fs::create_dir_all(s.futurnal_home().join("config")).unwrap();
    std::fs::write(
        s.futurnal_home().join("config/orchestrator.yaml"),
        "sources:\n  - name: notes\n    type: local_files\n    path: ~/Notes\n",
    )
    .unwrap();
    s.start();
    let run = s.run(&["orchestrator", "sources", "trigger", "notes", "--wait"]);
    assert!(run.status.success(), "{}", describe(&run));
    let stop = s.run(&["orchestrator", "stop"]);
    assert!(stop.status.success(), "{}", describe(&stop));
    std::fs::write(s.futurnal_home().join("store.db"), vec![0x5au8; 16384]).unwrap();
    let list = s.run(&["orchestrator", "sources", "list"]);
    assert_eq!(list.status.code(), Some(5), "{}", describe(&list));
    assert!(
        String::from_utf8_lossy(&list.stderr)
            .contains("futurnal help runbook the-document-store-is-corrupt"),
        "{}",
        describe(&list)
    );
}

/// Issue 10: a damaged store.db was opened without a check, and runs failed `internal` one by
/// one. A start now refuses it, names the runbook topic and changes nothing.
#[test]
fn a_start_refuses_a_corrupt_store_and_changes_nothing() {
    let s = Sandbox::new();
    s.write_notes("Notes", 3);
    s.write_config("sources:\n  - name: notes\n    type: local_files\n    path: ~/Notes\n");
    s.start();
    let run = s.run(&["orchestrator", "sources", "trigger", "notes", "--wait"]);
    assert!(run.status.success(), "{}", describe(&run));
    s.ok(&["orchestrator", "stop"]);
    let store = s.futurnal_home().join("store.db");
    // A failing disk overwrites the first pages.
    let mut bytes = std::fs::read(&store).unwrap();
    bytes[..8192].fill(0x5a);
    std::fs::write(&store, &bytes).unwrap();
    let start = s.run(&["orchestrator", "start"]);
    assert_eq!(start.status.code(), Some(5), "{}", describe(&start));
    let err = stderr(&start);
    assert!(err.contains("the document store"), "{err}");
    assert!(err.contains("--rebuild-store"), "{err}");
    assert!(
        err.contains("futurnal help runbook the-document-store-is-corrupt"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&store).unwrap(),
        bytes,
        "the store was changed"
    );
    assert_eq!(s.status_json()["running"], false, "a daemon kept running");
}

/// `start --rebuild-store` sets the store aside (kept, never deleted), creates a fresh one and
/// queues one run per enabled source: every document comes back once, none twice.
#[test]
fn rebuild_store_sets_the_store_aside_and_reingests_every_source_once() {
    let s = Sandbox::new();
    s.write_notes("Notes", 5);
    s.write_notes("Vault", 4);
    s.write_config(
        "sources:\n  - name: notes\n    type: local_files\n    path: ~/Notes\n  \
         - name: vault\n    type: local_files\n    path: ~/Vault\n",
    );
    s.start();
    for source in ["notes", "vault"] {
        let run = s.run(&["orchestrator", "sources", "trigger", source, "--wait"]);
        assert!(run.status.success(), "{}", describe(&run));
    }
    s.ok(&["orchestrator", "stop"]);
    let store = s.futurnal_home().join("store.db");
    std::fs::write(&store, vec![0x5au8; 16384]).unwrap();
    let start = s.run(&["orchestrator", "start", "--rebuild-store"]);
    assert!(start.status.success(), "{}", describe(&start));
    let out = stdout(&start);
    assert!(out.contains("set aside in"), "{out}");
    assert!(out.contains("each of the 2 enabled sources"), "{out}");
    wait_until(
        "both rebuild runs succeeded",
        Duration::from_secs(60),
        || {
            ["notes", "vault"].iter().all(|src| {
                s.jobs_of(src)
                    .iter()
                    .filter(|j| j["trigger"] == "rebuild-store")
                    .any(|j| j["state"] == "succeeded")
            })
        },
    );
    let list = s.json(&["orchestrator", "sources", "list", "--format", "json"]);
    let docs: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|src| src["documents"].as_i64().unwrap())
        .collect();
    assert_eq!(docs, vec![5, 4], "{list}");
    // The damaged file is kept.
    let kept: Vec<_> = std::fs::read_dir(s.futurnal_home().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path().join("store.db"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), vec![0x5au8; 16384]);
    assert_eq!(s.audit_events("store.rebuild").len(), 1);
    s.ok(&["orchestrator", "stop"]);
}

/// store.db is a write-ahead-log database (durable on power loss at synchronous=NORMAL), and
/// commands that only read it create nothing beside it.
#[test]
fn the_store_uses_a_write_ahead_log_and_readers_create_no_files() {
    let s = Sandbox::new();
    s.write_notes("Notes", 2);
    s.write_config("sources:\n  - name: notes\n    type: local_files\n    path: ~/Notes\n");
    s.start();
    let run = s.run(&["orchestrator", "sources", "trigger", "notes", "--wait"]);
    assert!(run.status.success(), "{}", describe(&run));
    let home = s.futurnal_home();
    assert!(
        home.join("store.db-wal").exists(),
        "a running daemon keeps the store's log"
    );
    s.ok(&["orchestrator", "stop"]);
    let mode = std::process::Command::new("sqlite3")
        .arg(home.join("store.db"))
        .arg("PRAGMA journal_mode")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "wal");
    for db in ["queue.db", "store.db"] {
        for side in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(home.join(format!("{db}{side}")));
        }
    }
    for args in [
        &["orchestrator", "sources", "list"][..],
        &["orchestrator", "status"],
        &["orchestrator", "jobs", "list"],
        &["orchestrator", "quarantine", "list"],
        &["orchestrator", "telemetry", "throughput"],
    ] {
        let out = s.run(args);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
    }
    let left: Vec<String> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("-wal") || n.ends_with("-shm"))
        .collect();
    assert!(left.is_empty(), "readers created {left:?}");
}

/// Issue 11: a start read every page of queue.db (1.9 s at 1.1M jobs). It now checks what does
/// not grow with history and leaves the rest to a background check, which must still find damage
/// deep in a large table: the daemon stops itself, and the next start checks every page and
/// refuses, naming the topic.
#[test]
fn damage_deep_in_history_is_found_after_the_start_and_refused_at_the_next() {
    let s = Sandbox::new();
    s.write_config("sources: []\n");
    s.start();
    s.ok(&["orchestrator", "stop"]);
    let queue = s.futurnal_home().join("queue.db");
    let sql = |q: &str| -> String {
        let out = std::process::Command::new("sqlite3")
            .arg(&queue)
            .arg(q)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // History no start reads: enough telemetry samples to fill many pages.
    sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
         INSERT INTO telemetry_samples (at, pending, running, failed, quarantined,
             workers_busy, wal_bytes) SELECT i, 0, 0, 0, 0, 0, 0 FROM n",
    );
    let page: u64 = sql("SELECT pageno FROM dbstat WHERE name = 'telemetry_samples' AND pagetype = 'leaf' ORDER BY pageno DESC LIMIT 1 OFFSET 3").parse().unwrap();
    let size: u64 = sql("PRAGMA page_size").parse().unwrap();
    // A failing disk overwrites that page.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&queue)
            .unwrap();
        f.seek(SeekFrom::Start((page - 1) * size)).unwrap();
        f.write_all(&vec![0x5a; size as usize]).unwrap();
    }
    // The start does not read that page: it starts, then the background check stops it.
    let start = s.run(&["orchestrator", "start"]);
    assert!(start.status.success(), "{}", describe(&start));
    wait_until("the daemon stopped itself", Duration::from_secs(30), || {
        s.status_json()["running"] == false
    });
    let log = std::fs::read_to_string(s.futurnal_home().join("logs/orchestrator.log")).unwrap();
    assert!(
        log.contains("the-queue-database-is-corrupt") && log.contains("every page"),
        "{log}"
    );
    assert!(s.futurnal_home().join(".integrity_check_failed").exists());
    // The next start checks every page, and refuses.
    let again = s.run(&["orchestrator", "start"]);
    assert_eq!(again.status.code(), Some(5), "{}", describe(&again));
    assert!(
        stderr(&again).contains("futurnal help runbook the-queue-database-is-corrupt"),
        "{}",
        describe(&again)
    );
    // A sound queue passes the full check, which clears the marker.
    for f in ["queue.db", "queue.db-wal", "queue.db-shm"] {
        let _ = std::fs::rename(
            s.futurnal_home().join(f),
            s.root().join(format!("{f}.damaged")),
        );
    }
    s.start();
    assert!(!s.futurnal_home().join(".integrity_check_failed").exists());
    s.ok(&["orchestrator", "stop"]);
}
