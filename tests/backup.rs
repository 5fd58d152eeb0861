//! Backups and restores against the binary: a backup taken mid-ingest, kill -9 during backup and
//! restore, the refusal while the daemon runs, a damaged backup.
//!
//! The large-ingest test writes `FUTURNAL_BACKUP_TEST_MB` MB of notes (default 20; the issue's
//! acceptance run uses 200).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rusqlite::{Connection, OpenFlags};

/// A folder `~/Bulk` of `n` notes of about `kb` KiB each.
fn write_big_notes(s: &Sandbox, n: usize, kb: usize) -> PathBuf {
    let dir = s.home().join("Bulk");
    std::fs::create_dir_all(&dir).unwrap();
    let para = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod. ";
    for i in 0..n {
        let mut text = format!("# Note {i}\n\n");
        while text.len() < kb * 1024 {
            text.push_str(para);
            text.push_str(&i.to_string());
            text.push('\n');
        }
        std::fs::write(dir.join(format!("note-{i}.md")), text).unwrap();
    }
    dir
}

fn config(s: &Sandbox, dir: &Path, rate: Option<u32>) {
    let rate = rate
        .map(|r| format!("    items_per_second: {r}\n"))
        .unwrap_or_default();
    s.write_config(&format!(
        "workers:\n  shutdown_grace_seconds: 1\nsources:\n  - name: bulk\n    type: local_files\n    path: {}\n{rate}",
        dir.display()
    ));
}

fn ro(path: &Path) -> Connection {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

fn integrity(path: &Path) -> String {
    ro(path)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// (live documents, distinct items) in a store.
fn documents(store: &Path) -> (i64, i64) {
    ro(store)
        .query_row(
            "SELECT count(*), count(DISTINCT item) FROM documents WHERE deleted_at IS NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

fn jobs(queue: &Path) -> i64 {
    ro(queue)
        .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
        .unwrap()
}

/// Complete-looking backups (named by time, with a manifest), oldest first.
fn backups(s: &Sandbox) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(s.futurnal_home().join("backups"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().unwrap().to_string_lossy().into_owned();
                    name.starts_with("20") && p.join("manifest.json").exists()
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn kill9(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn spawn(s: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut c = s.cmd(args);
    c.envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().unwrap()
}

/// Ingest `n` small notes and stop: a home with something in both databases.
fn ingested_home(s: &Sandbox, n: usize) {
    let dir = s.write_notes("Bulk", n);
    config(s, &dir, None);
    s.start();
    s.ok(&["orchestrator", "sources", "trigger", "bulk", "--wait"]);
}

#[test]
fn a_backup_taken_during_a_large_ingest_restores_everything_committed_at_backup_time() {
    let s = Sandbox::new();
    let mb: usize = std::env::var("FUTURNAL_BACKUP_TEST_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let kb = 8;
    let n = mb * 1024 / kb;
    let dir = write_big_notes(&s, n, kb);
    // Throttled so that the ingest certainly outlasts the backup.
    config(&s, &dir, Some((n / 4).max(200) as u32));
    s.start();
    s.ok(&["orchestrator", "sources", "trigger", "bulk"]);
    let store = s.futurnal_home().join("store.db");
    wait_until("the ingest to be part-way", Duration::from_secs(60), || {
        store.exists() && documents(&store).0 > n as i64 / 2
    });
    let before = documents(&store).0;
    let started = Instant::now();
    let out = s.ok(&["orchestrator", "backup", "--format", "json"]);
    let took = started.elapsed();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let after = documents(&store).0;
    let path = PathBuf::from(report["path"].as_str().unwrap());
    let in_backup = report["manifest"]["documents"].as_i64().unwrap();
    eprintln!(
        "backup of {mb} MB of notes mid-ingest: {} bytes in {took:?}; documents before {before}, in backup {in_backup}, after {after}",
        report["bytes"]
    );
    assert!(
        before <= in_backup && in_backup <= after,
        "the snapshot holds every document committed before it"
    );
    assert!(in_backup < n as i64, "the backup overlapped the ingest");
    assert_eq!(s.job(1)["state"], "running", "the ingest was still running");
    let t = Instant::now();
    s.ok(&["orchestrator", "backup", "verify", path.to_str().unwrap()]);
    eprintln!("verify took {:?}", t.elapsed());
    for db in ["queue.db", "store.db"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(path.join(db)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{db} is private");
    }

    s.ok(&["orchestrator", "stop", "--force"]);
    wait_until("the daemon to be gone", Duration::from_secs(10), || {
        s.status_json()["running"] == false
    });
    let t = Instant::now();
    s.ok(&["orchestrator", "restore", path.to_str().unwrap()]);
    eprintln!("restore took {:?}", t.elapsed());
    let home = s.futurnal_home();
    assert_eq!(integrity(&home.join("queue.db")), "ok");
    assert_eq!(integrity(&home.join("store.db")), "ok");
    assert_eq!(documents(&home.join("store.db")), (in_backup, in_backup));
    assert_eq!(
        jobs(&home.join("queue.db")),
        report["manifest"]["jobs"].as_i64().unwrap()
    );
    assert_eq!(s.job(1)["state"], "running", "as it was at backup time");

    // The next start hands the running job back as after a crash, and it finishes the ingest.
    let out = s.ok(&["orchestrator", "start"]);
    assert!(
        stdout(&out).contains("interrupted job returned to the queue"),
        "{}",
        describe(&out)
    );
    s.ok(&["orchestrator", "jobs", "wait", "1"]);
    assert_eq!(s.job(1)["state"], "succeeded");
    assert_eq!(
        documents(&home.join("store.db")),
        (n as i64, n as i64),
        "every note once, none twice"
    );
    assert_eq!(s.audit_events("backup").len(), 1);
    assert_eq!(s.audit_events("restore").len(), 1);
}

#[test]
fn kill_minus_nine_during_backup_leaves_no_complete_looking_directory() {
    let s = Sandbox::new();
    let dir = write_big_notes(&s, 1500, 8);
    config(&s, &dir, None);
    s.start();
    s.ok(&["orchestrator", "sources", "trigger", "bulk", "--wait"]);
    let backups_dir = s.futurnal_home().join("backups");
    for round in 0..3 {
        let mut child = spawn(&s, &["orchestrator", "backup"], &[]);
        // Kill it once its temporary folder exists, a little later each round.
        wait_until("the backup to begin", Duration::from_secs(20), || {
            entries(&backups_dir).iter().any(|e| e.starts_with(".tmp-"))
                || child.try_wait().unwrap().is_some()
        });
        std::thread::sleep(Duration::from_millis(round * 15));
        kill9(&mut child);
        for b in backups(&s) {
            s.ok(&["orchestrator", "backup", "verify", b.to_str().unwrap()]);
        }
    }
    assert_eq!(integrity(&s.futurnal_home().join("queue.db")), "ok");
    // The next backup completes and clears what the killed ones left.
    s.ok(&["orchestrator", "backup"]);
    assert!(
        !entries(&backups_dir).iter().any(|e| e.starts_with(".tmp-")),
        "{:?}",
        entries(&backups_dir)
    );
    let last = backups(&s).pop().unwrap();
    s.ok(&["orchestrator", "backup", "verify", last.to_str().unwrap()]);
}

#[test]
fn kill_minus_nine_during_restore_is_finished_by_the_next_start() {
    let s = Sandbox::new();
    ingested_home(&s, 40);
    s.ok(&["orchestrator", "backup"]);
    let backup = backups(&s).pop().unwrap();
    // More documents after the backup: the restore must bring back 40.
    for i in 40..60 {
        write_file(
            &s.home().join(format!("Bulk/note-{i}.md")),
            format!("# Note {i}\n"),
        );
    }
    s.ok(&["orchestrator", "sources", "trigger", "bulk", "--wait"]);
    s.ok(&["orchestrator", "stop"]);
    let home = s.futurnal_home();
    assert_eq!(documents(&home.join("store.db")).0, 60);

    let mut child = spawn(
        &s,
        &["orchestrator", "restore", backup.to_str().unwrap()],
        &[("FUTURNAL_TEST_RESTORE_PAUSE", "1")],
    );
    wait_until("the journal", Duration::from_secs(20), || {
        home.join(".restore_journal").exists()
    });
    kill9(&mut child);
    assert!(
        entries(&home).iter().any(|e| e.ends_with(".restore-tmp")),
        "{:?}",
        entries(&home)
    );
    // The next start finishes the restore before the daemon opens anything.
    let out = s.ok(&["orchestrator", "start"]);
    assert!(
        stdout(&out).contains("finished an interrupted restore before starting"),
        "{}",
        describe(&out)
    );
    assert!(!home.join(".restore_journal").exists());
    assert!(
        !entries(&home).iter().any(|e| e.ends_with(".restore-tmp")),
        "{:?}",
        entries(&home)
    );
    s.ok(&["orchestrator", "stop"]);
    assert_eq!(documents(&home.join("store.db")), (40, 40));
    assert_eq!(integrity(&home.join("queue.db")), "ok");
    // Nothing replaced was deleted: both replaced stores are kept.
    let replaced: Vec<String> = entries(&home.join("backups"))
        .into_iter()
        .filter(|e| e.starts_with("replaced-"))
        .collect();
    assert!(!replaced.is_empty());
    let kept: Vec<i64> = replaced
        .iter()
        .map(|r| documents(&home.join("backups").join(r).join("store.db")).0)
        .collect();
    assert!(kept.contains(&60), "{kept:?}");
}

/// A command that queues work while a restore holds the home's lock does not signal the
/// restore: SIGUSR1, which wakes a daemon, would end any other process.
#[test]
fn a_trigger_during_a_restore_does_not_end_the_restore() {
    let s = Sandbox::new();
    ingested_home(&s, 3);
    s.ok(&["orchestrator", "backup"]);
    s.ok(&["orchestrator", "stop"]);
    let backup = backups(&s).pop().unwrap();
    let home = s.futurnal_home();
    let mut child = spawn(
        &s,
        &["orchestrator", "restore", backup.to_str().unwrap()],
        &[("FUTURNAL_TEST_RESTORE_PAUSE", "1")],
    );
    wait_until("the journal", Duration::from_secs(20), || {
        home.join(".restore_journal").exists()
    });
    let out = s.ok(&["orchestrator", "sources", "trigger", "bulk"]);
    assert!(
        stdout(&out).contains("queued run job"),
        "{}",
        describe(&out)
    );
    // A signal's default action ends a process at once; give it a moment to show.
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let ended = child.try_wait().unwrap();
        assert!(ended.is_none(), "the restore ended: {ended:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    kill9(&mut child);
}

#[test]
fn restore_refuses_while_the_daemon_runs_and_a_flipped_byte_fails_verify() {
    let s = Sandbox::new();
    ingested_home(&s, 20);
    s.ok(&["orchestrator", "backup"]);
    let backup = backups(&s).pop().unwrap();
    let out = s.run(&["orchestrator", "restore", backup.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert!(stderr(&out).contains("runbook: futurnal help runbook restoring-a-backup"));
    assert!(
        !entries(&s.futurnal_home().join("backups"))
            .iter()
            .any(|e| e.starts_with("replaced-")),
        "nothing was changed"
    );

    // One flipped byte in the middle of the queue's copy.
    let copy = backup.join("queue.db");
    let mut bytes = std::fs::read(&copy).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&copy, bytes).unwrap();
    let out = s.run(&["orchestrator", "backup", "verify", backup.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("queue.db: checksum differs from the manifest"),
        "{}",
        describe(&out)
    );
    s.ok(&["orchestrator", "stop"]);
    let out = s.run(&["orchestrator", "restore", backup.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        !entries(&s.futurnal_home().join("backups"))
            .iter()
            .any(|e| e.starts_with("replaced-")),
        "a damaged backup is never restored"
    );
}

#[test]
fn a_restore_after_a_crash_moves_the_stale_wal_aside_and_retention_keeps_the_newest() {
    let s = Sandbox::new();
    ingested_home(&s, 20);
    s.write_config(&format!(
        "backup:\n  keep: 2\nsources:\n  - name: bulk\n    type: local_files\n    path: {}\n",
        s.home().join("Bulk").display()
    ));
    for _ in 0..3 {
        s.ok(&["orchestrator", "backup"]);
    }
    assert_eq!(backups(&s).len(), 2, "backup.keep = 2");
    let backup = backups(&s).pop().unwrap();
    let pid = s.daemon_pid().unwrap();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    wait_until("the daemon to be gone", Duration::from_secs(10), || {
        s.status_json()["running"] == false
    });
    let home = s.futurnal_home();
    // Whatever the crash left beside queue.db (a reader may have checkpointed it away), a
    // write-ahead log there must not survive the restore: it would be replayed into the copy.
    // store.db is in WAL mode too: the same holds for its side files.
    let sides = [
        "queue.db-wal",
        "queue.db-shm",
        "store.db-wal",
        "store.db-shm",
    ];
    for side in sides {
        if !home.join(side).exists() {
            write_file(&home.join(side), b"stale side file");
        }
    }
    let out = s.ok(&["orchestrator", "restore", backup.to_str().unwrap()]);
    assert!(stdout(&out).contains("the replaced files are kept in"));
    for side in sides {
        assert!(
            !home.join(side).exists(),
            "{side} was left beside its restored database"
        );
    }
    let replaced = entries(&home.join("backups"))
        .into_iter()
        .find(|e| e.starts_with("replaced-"))
        .unwrap();
    for side in sides {
        assert!(
            home.join("backups").join(&replaced).join(side).exists(),
            "{side} is kept aside"
        );
    }
    assert_eq!(integrity(&home.join("queue.db")), "ok");
    assert_eq!(integrity(&home.join("store.db")), "ok");
    // A second restore (the same second, as a repeated procedure runs it) keeps both sets aside.
    s.ok(&["orchestrator", "restore", backup.to_str().unwrap()]);
    let kept = entries(&home.join("backups"))
        .into_iter()
        .filter(|e| e.starts_with("replaced-"))
        .count();
    assert_eq!(kept, 2, "nothing replaced is overwritten");
    s.ok(&["orchestrator", "start"]);
    assert_eq!(documents(&home.join("store.db")), (20, 20));
}

#[test]
fn a_backup_restores_into_a_home_that_does_not_exist_yet() {
    // Moving to a new machine: the backup is restored before anything created the home there.
    let s = Sandbox::new();
    ingested_home(&s, 15);
    let transfer = s.home().join("transfer");
    s.ok(&["orchestrator", "backup", "--to", transfer.to_str().unwrap()]);
    s.ok(&["orchestrator", "stop"]);
    let home = s.futurnal_home();
    std::fs::rename(&home, s.home().join("old-home")).unwrap();
    let backup = std::fs::read_dir(&transfer)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("manifest.json").exists())
        .unwrap();
    s.ok(&[
        "orchestrator",
        "restore",
        "--with-config",
        backup.to_str().unwrap(),
    ]);
    assert_eq!(documents(&home.join("store.db")), (15, 15));
    assert!(s.config_file().exists());
    s.ok(&["orchestrator", "start"]);
}

/// `backup list --format json`, with its kinds.
fn listed(s: &Sandbox) -> Vec<serde_json::Value> {
    s.json(&["orchestrator", "backup", "list", "--format", "json"])
        .as_array()
        .unwrap()
        .clone()
}

fn of_kind<'a>(list: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    list.iter().filter(|l| l["kind"] == kind).collect()
}

#[test]
fn backup_list_shows_backups_oldest_first_what_restores_kept_and_broken_folders() {
    let s = Sandbox::new();
    ingested_home(&s, 12);
    s.ok(&["orchestrator", "backup"]);
    s.ok(&["orchestrator", "backup"]);
    s.ok(&["orchestrator", "stop"]);
    let good = backups(&s);
    s.ok(&["orchestrator", "restore", good[0].to_str().unwrap()]);
    let dir = s.futurnal_home().join("backups");
    // What an operator's hands (or a crash) can leave there.
    std::fs::create_dir(dir.join("20200101T000000Z")).unwrap(); // no manifest
    std::fs::create_dir(dir.join("20200102T000000Z")).unwrap();
    write_file(&dir.join("20200102T000000Z/manifest.json"), "{ not json");
    let gutted = dir.join("20200103T000000Z");
    std::fs::create_dir(&gutted).unwrap();
    for f in ["manifest.json", "queue.db"] {
        std::fs::copy(good[1].join(f), gutted.join(f)).unwrap();
    }
    std::fs::create_dir(dir.join("my-notes")).unwrap();
    write_file(&dir.join("README.txt"), "mine");
    std::os::unix::fs::symlink("/", dir.join("20200104T000000Z")).unwrap();
    let unreadable = dir.join("20200105T000000Z");
    std::fs::create_dir(&unreadable).unwrap();
    write_file(&unreadable.join("manifest.json"), b"{}");
    std::fs::set_permissions(
        &unreadable,
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();

    let list = listed(&s);
    std::fs::set_permissions(
        &unreadable,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let names = |v: &[&serde_json::Value]| -> Vec<String> {
        v.iter()
            .map(|l| l["name"].as_str().unwrap().to_string())
            .collect()
    };
    let b = of_kind(&list, "backup");
    let mut expected: Vec<String> = [
        "20200101T000000Z",
        "20200102T000000Z",
        "20200103T000000Z",
        "20200105T000000Z",
    ]
    .map(String::from)
    .to_vec();
    expected.extend(
        good.iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned()),
    );
    assert_eq!(names(&b), expected, "backups, oldest first");
    // The good ones say what their manifests say, with nothing wrong.
    for (l, path) in b[4..].iter().zip(&good) {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(l["manifest_readable"], true);
        assert_eq!(l["problem"], serde_json::Value::Null, "{l}");
        for key in [
            "documents",
            "jobs",
            "queue_schema",
            "store_schema",
            "created_at",
        ] {
            assert_eq!(l[key], manifest[key], "{key}");
        }
        assert_eq!(l["documents"], 12);
        let on_disk: u64 = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(l["bytes"], on_disk);
    }
    for l in &b[..2] {
        assert_eq!(l["manifest_readable"], false, "{l}");
        assert!(
            l["problem"]
                .as_str()
                .unwrap()
                .starts_with("not a complete backup")
        );
    }
    assert_eq!(b[2]["manifest_readable"], true);
    assert_eq!(
        b[2]["problem"],
        "store.db is missing; orchestrator.yaml is missing"
    );
    assert!(
        b[3]["problem"].as_str().unwrap().contains("cannot be read") || is_root(),
        "{}",
        b[3]
    );
    let replaced = of_kind(&list, "replaced");
    assert_eq!(replaced.len(), 1);
    assert!(
        replaced[0]["files"]
            .as_array()
            .unwrap()
            .contains(&"store.db".into())
    );
    assert_eq!(
        names(&of_kind(&list, "not_a_backup")),
        ["20200104T000000Z", "README.txt", "my-notes"]
    );
    assert!(
        of_kind(&list, "not_a_backup")[0]["problem"]
            .as_str()
            .unwrap()
            .contains("symbolic link")
    );

    // The table: the same entries, in sections, and it exits 0.
    let out = stdout(&s.ok(&["orchestrator", "backup", "list"]));
    assert!(
        out.starts_with("6 backups in ~/.futurnal/backups, oldest first:\n"),
        "{out}"
    );
    assert!(
        out.contains("\nset aside by restores and rebuilds"),
        "{out}"
    );
    assert!(out.contains("\nnot backups:\n"), "{out}");
    // Another folder (`backup --to`), and one that does not exist.
    let elsewhere = s.home().join("transfer");
    s.ok(&[
        "orchestrator",
        "backup",
        "--to",
        elsewhere.to_str().unwrap(),
    ]);
    let out = stdout(&s.ok(&[
        "orchestrator",
        "backup",
        "list",
        elsewhere.to_str().unwrap(),
    ]));
    assert!(out.starts_with("1 backup in ~/transfer"), "{out}");
    let out = stdout(&s.ok(&["orchestrator", "backup", "list", "nowhere"]));
    assert!(out.starts_with("no backups in nowhere"), "{out}");
}

/// Lines of the daemon's log mentioning scheduled backups.
fn scheduled_log_lines(s: &Sandbox) -> Vec<String> {
    std::fs::read_to_string(s.futurnal_home().join("logs/orchestrator.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("scheduled backup"))
        .map(String::from)
        .collect()
}

#[test]
fn a_backup_schedule_takes_backups_keeps_backup_keep_and_carries_on_when_one_fails() {
    let s = Sandbox::new();
    let dir = s.write_notes("Bulk", 10);
    let yaml = |schedule: &str| {
        format!(
            "backup:\n  schedule: {schedule}\n  keep: 2\nsources:\n  - name: bulk\n    type: local_files\n    path: {}\n",
            dir.display()
        )
    };
    s.write_config(&yaml("1s"));
    s.start();
    s.ok(&["orchestrator", "sources", "trigger", "bulk", "--wait"]);
    // With no backup yet one is due at once, then one a second: keep holds them at 2.
    wait_until("three scheduled backups", Duration::from_secs(30), || {
        s.audit_events("backup").len() >= 3
    });
    let list = listed(&s);
    assert_eq!(
        of_kind(&list, "backup").len(),
        2,
        "backup.keep = 2: {list:?}"
    );
    for event in s.audit_events("backup") {
        assert_eq!(event["scheduled"], true, "{event}");
    }
    // One line each, naming no path (path_redaction is on by default).
    let lines = scheduled_log_lines(&s);
    assert!(!lines.is_empty());
    let home = s.home().display().to_string();
    for l in &lines {
        assert!(!l.contains(&home) && !l.contains("~/"), "{l}");
    }
    let newest = of_kind(&list, "backup")[1]["path"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(&["orchestrator", "backup", "verify", &newest]);

    // A backup that cannot be written (backups/ is a file now) fails, is logged, and the daemon
    // goes on claiming; once the cause is gone, the next period writes one.
    let backups_dir = s.futurnal_home().join("backups");
    std::fs::rename(&backups_dir, s.home().join("backups-aside")).unwrap();
    write_file(&backups_dir, "not a folder");
    wait_until("a failure logged", Duration::from_secs(30), || {
        scheduled_log_lines(&s)
            .iter()
            .any(|l| l.contains("scheduled backup failed"))
    });
    let failure = scheduled_log_lines(&s)
        .into_iter()
        .find(|l| l.contains("scheduled backup failed"))
        .unwrap();
    assert!(failure.contains("WARN"), "{failure}");
    assert!(!failure.contains(&home), "{failure}");
    assert!(
        failure.contains("runbook: futurnal help runbook backups"),
        "{failure}"
    );
    write_file(&dir.join("late.md"), "# Late\n");
    s.ok(&["orchestrator", "sources", "trigger", "bulk", "--wait"]);
    assert_eq!(s.status_json()["running"], true);
    std::fs::remove_file(&backups_dir).unwrap();
    let before = s.audit_events("backup").len();
    wait_until(
        "a backup after the failure",
        Duration::from_secs(30),
        || s.audit_events("backup").len() > before,
    );
    let list = listed(&s);
    let last = of_kind(&list, "backup").last().unwrap()["documents"].clone();
    assert_eq!(last, 11, "{list:?}");

    // `config reload` applies a new schedule (manual: none taken after the reload is answered).
    s.write_config(&yaml("manual"));
    let out = s.ok(&["orchestrator", "reload"]);
    assert!(
        stdout(&out).contains("backup.schedule"),
        "{}",
        describe(&out)
    );
    assert!(!stdout(&out).contains("restart"), "{}", describe(&out));
    s.write_config(&yaml("1s"));
    let before = s.audit_events("backup").len();
    s.ok(&["orchestrator", "reload"]);
    wait_until("a backup after the reload", Duration::from_secs(30), || {
        s.audit_events("backup").len() > before
    });
    s.ok(&["orchestrator", "stop"]);
}

#[test]
fn a_slow_scheduled_backup_never_stalls_claims_or_stop() {
    // The scheduled backup is held for a minute before it starts writing.
    let s = Sandbox::new().with_env("FUTURNAL_TEST_SCHEDULED_BACKUP_DELAY_MS", "60000");
    let dir = s.write_notes("Bulk", 10);
    s.write_config(&format!(
        "backup:\n  schedule: 24h\nsources:\n  - name: bulk\n    type: local_files\n    path: {}\n",
        dir.display()
    ));
    let t = Instant::now();
    s.start();
    s.ok(&["orchestrator", "sources", "trigger", "bulk", "--wait"]);
    assert_eq!(s.job(1)["state"], "succeeded");
    assert!(
        s.audit_events("backup").is_empty(),
        "the backup was still held"
    );
    s.ok(&["orchestrator", "stop"]);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "neither the run nor the stop waited for the backup: {:?}",
        t.elapsed()
    );
    assert!(backups(&s).is_empty());
}

/// The Disaster recovery chapter's table of `backup list --format json` fields names exactly the
/// fields every entry has, whatever it is.
#[test]
fn the_book_documents_every_field_of_backup_list() {
    let s = Sandbox::new();
    let dir = s.futurnal_home().join("backups");
    std::fs::create_dir_all(&dir).unwrap();
    write_file(&dir.join("notes.txt"), "not a backup");
    let list = listed(&s);
    let mut fields: Vec<String> = list[0].as_object().unwrap().keys().cloned().collect();
    fields.sort();

    let chapter = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src/disaster-recovery.md"),
    )
    .unwrap();
    let section = chapter
        .split("### Listing backups")
        .nth(1)
        .expect("the section")
        .split("\n### ")
        .next()
        .unwrap();
    let mut documented: Vec<String> = section
        .lines()
        .skip_while(|l| !l.starts_with("| field | meaning |"))
        .skip(2)
        .take_while(|l| l.starts_with("| `"))
        .map(|l| l.split('`').nth(1).unwrap().to_string())
        .collect();
    documented.sort();
    assert_eq!(documented, fields);
}

/// A scheduled backup and an operator's can start in the same second: both complete, under
/// different names, and neither's retention trips over the other's.
#[test]
fn concurrent_backups_both_complete_under_distinct_names() {
    let s = Sandbox::new();
    ingested_home(&s, 5);
    s.ok(&["orchestrator", "stop"]);
    s.write_config(&format!(
        "backup:\n  keep: 3\nsources:\n  - name: bulk\n    type: local_files\n    path: {}\n",
        s.home().join("Bulk").display()
    ));
    for _ in 0..4 {
        let children: Vec<Child> = (0..3)
            .map(|_| {
                let mut c = s.cmd(&["orchestrator", "backup"]);
                c.stdout(Stdio::null()).stderr(Stdio::piped());
                c.spawn().unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", describe(&out));
        }
    }
    let all = backups(&s);
    assert_eq!(all.len(), 3, "backup.keep = 3: {all:?}");
    for b in all {
        s.ok(&["orchestrator", "backup", "verify", b.to_str().unwrap()]);
    }
    assert_eq!(s.audit_events("backup").len(), 12);
}

/// A backup is due once the folder holds none, however long the schedule: moving the backups to
/// another disk makes the daemon take one at once, not when the old newest would have aged.
#[test]
fn moving_the_backups_away_makes_a_scheduled_backup_due_at_once() {
    let s = Sandbox::new();
    let dir = s.write_notes("Bulk", 5);
    s.write_config(&format!(
        "backup:\n  schedule: 24h\nsources:\n  - name: bulk\n    type: local_files\n    path: {}\n",
        dir.display()
    ));
    s.ok(&["orchestrator", "backup"]);
    s.start();
    // The daemon has ticked (a run was claimed and finished) and found the backup fresh.
    s.ok(&["orchestrator", "sources", "trigger", "bulk", "--wait"]);
    assert!(
        s.audit_events("backup")
            .iter()
            .all(|e| e["scheduled"] == false)
    );
    let offsite = s.home().join("offsite");
    std::fs::create_dir(&offsite).unwrap();
    for b in backups(&s) {
        std::fs::rename(&b, offsite.join(b.file_name().unwrap())).unwrap();
    }
    wait_until("a scheduled backup", Duration::from_secs(20), || {
        s.audit_events("backup")
            .iter()
            .any(|e| e["scheduled"] == true)
    });
    assert_eq!(backups(&s).len(), 1);
}
