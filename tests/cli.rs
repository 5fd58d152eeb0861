//! End-to-end tests of the futurnal binary: lifecycle edge cases the book does not walk through.
//!
//! Every test runs in its own `common::Sandbox` (temporary HOME and FUTURNAL_HOME, clean
//! environment, every daemon it started killed whatever happens).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Sandbox, describe, fixture, wait_until};

#[test]
fn start_status_second_start_stop() {
    let s = Sandbox::new();
    let out = s.run(&["orchestrator", "start"]);
    assert!(out.status.success(), "{}", describe(&out));
    let status = s.status_json();
    assert_eq!(status["running"], true);
    let pid = status["pid"].as_i64().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("pid {pid}")));

    let second = s.run(&["orchestrator", "start"]);
    assert_eq!(second.status.code(), Some(4), "{}", describe(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already running"), "{err}");
    assert!(
        err.contains("futurnal help runbook already-running"),
        "{err}"
    );

    let stop = s.run(&["orchestrator", "stop"]);
    assert!(stop.status.success(), "{}", describe(&stop));
    let status = s.status_json();
    assert_eq!(status["running"], false);
    assert_eq!(status["last_stop"]["kind"], "clean");
    assert!(!s.futurnal_home().join(".orchestrator_recovery").exists());
}

#[test]
fn concurrent_starts_leave_exactly_one_daemon() {
    let s = Sandbox::new();
    let children: Vec<_> = (0..3)
        .map(|_| {
            s.cmd(&["orchestrator", "start"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let ok = outputs.iter().filter(|o| o.status.success()).count();
    let refused = outputs
        .iter()
        .filter(|o| o.status.code() == Some(4))
        .count();
    assert_eq!(
        (ok, refused),
        (1, 2),
        "{}",
        outputs.iter().map(describe).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(s.status_json()["running"], true);
}

#[test]
fn a_stale_lock_file_never_blocks_a_start() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.futurnal_home()).unwrap();
    // A record naming a live process (this test) that does not hold the lock.
    std::fs::write(
        s.futurnal_home().join("orchestrator.lock"),
        format!(
            r#"{{"pid":{},"instance_id":"stale","started_at":0}}"#,
            std::process::id()
        ),
    )
    .unwrap();
    assert_eq!(s.status_json()["running"], false);
    let out = s.run(&["orchestrator", "start"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_ne!(s.daemon_pid(), Some(std::process::id() as i64));
}

#[test]
fn kill_minus_nine_then_start_reports_recovery() {
    let s = Sandbox::new();
    assert!(s.run(&["orchestrator", "start"]).status.success());
    let pid = s.daemon_pid().expect("running");
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_until("the lock to be released", Duration::from_secs(10), || {
        s.status_json()["running"] == false
    });
    assert!(s.futurnal_home().join(".orchestrator_recovery").exists());

    let out = s.run(&["orchestrator", "start"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("recovered from an unclean shutdown of pid {pid}")),
        "{stdout}"
    );
    let status = s.status_json();
    assert_eq!(status["last_recovery"]["crashed_pid"], pid);
    // A clean stop afterwards leaves nothing to recover.
    assert!(s.run(&["orchestrator", "stop"]).status.success());
    let again = s.run(&["orchestrator", "start"]);
    assert!(
        !String::from_utf8_lossy(&again.stdout).contains("recovered"),
        "{}",
        describe(&again)
    );
}

#[test]
fn foreground_stops_cleanly_on_sigterm() {
    let s = Sandbox::new();
    let child = s
        .cmd(&["orchestrator", "start", "--foreground"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the foreground daemon", Duration::from_secs(10), || {
        s.status_json()["running"] == true
    });
    let stop = s.run(&["orchestrator", "stop"]);
    assert!(stop.status.success(), "{}", describe(&stop));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIGTERM received"));
    assert_eq!(s.status_json()["last_stop"]["kind"], "clean");
}

#[test]
fn start_with_a_home_that_cannot_exist_fails_clearly() {
    let s = Sandbox::new();
    let blocker = s.home().join("not-a-dir");
    std::fs::write(&blocker, "a file where the home should be").unwrap();
    let out = s
        .cmd(&["orchestrator", "start"])
        .env("FUTURNAL_HOME", blocker.join("home"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not writable"), "{err}");
    assert!(
        err.contains("futurnal help runbook files-in-the-futurnal-home"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&blocker).unwrap(),
        "a file where the home should be"
    );
}

#[test]
fn invalid_config_fixture_names_file_line_column_and_suggestion() {
    let s = Sandbox::new();
    let fixture = fixture("configs/misspelled-key.yaml");
    let out = s.run(&["config", "validate", "--config", fixture.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "misspelled-key.yaml:3:3: workers.max_wrokers: unknown key; did you mean `max_workers`?"
        ),
        "{err}"
    );
    // The daemon refuses the same file before anything starts.
    let start = s.run(&[
        "orchestrator",
        "start",
        "--config",
        fixture.to_str().unwrap(),
    ]);
    assert_eq!(start.status.code(), Some(3), "{}", describe(&start));
    assert!(!s.futurnal_home().join("queue.db").exists());
}

#[test]
fn every_config_fixture_is_classified_correctly() {
    let s = Sandbox::new();
    let dir = fixture("configs");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let out = s.run(&["config", "validate", "--config", path.to_str().unwrap()]);
        let expect_valid = name.starts_with("valid-");
        assert_eq!(
            out.status.success(),
            expect_valid,
            "{name}: {}",
            describe(&out)
        );
        if !expect_valid {
            assert_eq!(out.status.code(), Some(3), "{name}: {}", describe(&out));
        }
    }
}

#[test]
fn help_runbook_topics_sections_and_unknown() {
    let s = Sandbox::new();
    let list = s.run(&["help", "runbook"]);
    assert!(list.status.success());
    let list = String::from_utf8_lossy(&list.stdout);
    for topic in [
        "introduction",
        "operator-guide",
        "configuration",
        "writing-runbooks",
    ] {
        assert!(list.contains(topic), "{list}");
    }

    let section = s.run(&["help", "runbook", "force", "stop"]);
    assert!(section.status.success());
    let section = String::from_utf8_lossy(&section.stdout);
    assert!(section.starts_with("Force stop\n"), "{section}");

    let unknown = s.run(&["help", "runbook", "orchestratr-guide"]);
    assert_eq!(unknown.status.code(), Some(2));
    let err = String::from_utf8_lossy(&unknown.stderr);
    let closest = err.split("closest: ").nth(1).unwrap_or_default();
    assert!(closest.contains("operator-guide"), "{err}");
}

#[test]
fn help_runbook_is_styled_when_forced_and_plain_when_piped() {
    let s = Sandbox::new();
    let plain = s.run(&["help", "runbook", "operator-guide"]);
    assert!(!plain.stdout.contains(&0x1b));
    let styled = s
        .cmd(&["help", "runbook", "operator-guide"])
        .env_remove("NO_COLOR")
        .env("CLICOLOR_FORCE", "1")
        .output()
        .unwrap();
    assert!(styled.stdout.contains(&0x1b), "expected escape codes");
    let stripped = anstream::adapter::strip_bytes(&styled.stdout).into_vec();
    assert_eq!(stripped, plain.stdout, "styling must not change the text");
}

#[test]
fn usage_errors_name_a_runbook_topic() {
    let s = Sandbox::new();
    let out = s.run(&["config", "valdate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("futurnal help runbook configuration"), "{err}");
}

/// A source whose run lasts a few seconds: `n` notes read at `rate` items a second.
fn throttled_source(s: &Sandbox, n: usize, rate: u32) {
    let bulk = s.write_notes("Bulk", n);
    s.write_config(&format!(
        "sources:\n  - name: bulk\n    type: local_files\n    path: {}\n    items_per_second: {rate}\n",
        bulk.display()
    ));
}

/// Wait until job `id` runs and has committed some of its items.
fn wait_part_way(s: &Sandbox, id: i64) {
    wait_until("the run to be part-way", Duration::from_secs(20), || {
        let j = s.job(id);
        j["state"] == "running" && j["items_done"].as_i64().unwrap_or(0) > 0
    });
}

fn live_documents(s: &Sandbox) -> (i64, i64) {
    let out = Command::new("sqlite3")
        .arg(s.futurnal_home().join("store.db"))
        .arg("SELECT COUNT(*), COUNT(DISTINCT item) FROM documents WHERE deleted_at IS NULL")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (a, b) = text.trim().split_once('|').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

#[test]
fn kill_minus_nine_mid_ingest_loses_nothing_and_duplicates_nothing() {
    let s = Sandbox::new();
    throttled_source(&s, 200, 100);
    assert!(s.run(&["orchestrator", "start"]).status.success());
    assert!(
        s.run(&["orchestrator", "sources", "trigger", "bulk"])
            .status
            .success()
    );
    wait_part_way(&s, 1);
    let pid = s.daemon_pid().unwrap();
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    wait_until("the lock to be released", Duration::from_secs(10), || {
        s.status_json()["running"] == false
    });
    assert_eq!(
        s.job(1)["state"],
        "running",
        "the dead daemon left it running"
    );

    let out = s.run(&["orchestrator", "start"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 interrupted job returned to the queue"),
        "{}",
        describe(&out)
    );
    let out = s.run(&["orchestrator", "jobs", "wait", "1"]);
    assert!(out.status.success(), "{}", describe(&out));
    let j = s.job(1);
    assert_eq!(j["state"], "succeeded");
    assert_eq!(j["attempts"], 1, "the crash did not use up an attempt");
    assert_eq!(
        live_documents(&s),
        (200, 200),
        "every note once, none twice"
    );
}

#[test]
fn cancelling_a_running_job_ends_it_cancelled_and_the_daemon_keeps_running() {
    let s = Sandbox::new();
    throttled_source(&s, 300, 100);
    assert!(s.run(&["orchestrator", "start"]).status.success());
    assert!(
        s.run(&["orchestrator", "sources", "trigger", "bulk"])
            .status
            .success()
    );
    wait_part_way(&s, 1);
    let started = Instant::now();
    let out = s.run(&["orchestrator", "jobs", "cancel", "1", "--reason", "test"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "within the cancel grace"
    );
    let j = s.job(1);
    assert_eq!(j["state"], "cancelled");
    assert_eq!(j["cancel_reason"], "test");
    assert!(j["docs_new"].as_i64().unwrap() < 300);
    assert_eq!(s.status_json()["running"], true);
    // The daemon still works: a new run finishes the rest.
    let out = s.run(&["orchestrator", "sources", "trigger", "bulk", "--wait"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(live_documents(&s), (300, 300));
}

#[test]
fn trigger_wait_exit_status_reflects_a_failed_run() {
    let s = Sandbox::new();
    s.write_config(
        "sources:\n  - name: gone\n    type: local_files\n    path: /nonexistent/futurnal-test\n",
    );
    assert!(s.run(&["orchestrator", "start"]).status.success());
    let out = s.run(&["orchestrator", "sources", "trigger", "gone", "--wait"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("job 1 failed: not_found"), "{stdout}");
    assert!(stdout.contains("it retries at"), "{stdout}");
}

#[test]
fn losing_queue_db_and_re_ingesting_duplicates_nothing() {
    let s = Sandbox::new();
    throttled_source(&s, 50, 0);
    assert!(s.run(&["orchestrator", "start"]).status.success());
    let out = s.run(&["orchestrator", "sources", "trigger", "bulk", "--wait"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(s.run(&["orchestrator", "stop"]).status.success());
    for f in ["queue.db", "queue.db-wal", "queue.db-shm"] {
        let _ = std::fs::remove_file(s.futurnal_home().join(f));
    }
    assert!(s.run(&["orchestrator", "start"]).status.success());
    let out = s.run(&["orchestrator", "sources", "trigger", "bulk", "--wait"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 new, 0 changed, 0 deleted, 50 unchanged"),
        "{}",
        describe(&out)
    );
    assert_eq!(live_documents(&s), (50, 50));
}

fn check_runbook(s: &Sandbox, name: &str, markdown: &str) -> Output {
    let path = s.home().join(name);
    std::fs::write(&path, markdown).unwrap();
    s.run(&["runbook", "check", path.to_str().unwrap()])
}

#[test]
fn scenarios_need_a_check_that_fails_before_the_fix_and_a_fix_safe_to_repeat() {
    let s = Sandbox::new();
    let good = "# S\n\n<!-- runbook: hidden\nrm -f ~/flag\n-->\n\n<!-- runbook: fix -->\n```bash\ntouch ~/flag\n```\n\n<!-- runbook: hidden check\ntest -e ~/flag\n-->\n";
    let out = check_runbook(&s, "good.md", good);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 scenario proven"),
        "{}",
        describe(&out)
    );

    // A check that cannot fail proves nothing.
    let vacuous = good.replace("test -e ~/flag", "true");
    let out = check_runbook(&s, "vacuous.md", &vacuous);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("vacuous.md:12 (hidden step)"), "{stdout}");
    assert!(stdout.contains("negative control"), "{stdout}");

    // A fix that only works once is a trap.
    let once = good.replace("touch ~/flag", "mkdir ~/flag");
    let out = check_runbook(&s, "once.md", &once);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("not safe to repeat"),
        "{}",
        describe(&out)
    );
}

// ---- Ingest, store and workers (issue 7): panic isolation, exact redaction, stale quarantine,
// full disk. Helpers are prefixed `ingest_` so other blocks in this file cannot collide. ----

fn ingest_quarantine(s: &Sandbox) -> Vec<serde_json::Value> {
    s.json(&["orchestrator", "quarantine", "list", "--format", "json"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Everything futurnal wrote under its home (queue.db with its WAL, store.db, logs, lock and
/// markers; not the operator's configuration), as bytes, except the files named in `except`.
fn ingest_home_bytes(s: &Sandbox, except: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![s.futurnal_home()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "config") {
                    stack.push(path);
                }
            } else if path
                .file_name()
                .is_some_and(|n| !except.iter().any(|e| n == *e))
            {
                out.extend(std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    out
}

fn ingest_contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn ingest_wait_job(s: &Sandbox, id: i64, state: &str) {
    wait_until(
        &format!("job {id} to be {state}"),
        Duration::from_secs(30),
        || s.job(id)["state"] == state,
    );
}

#[test]
fn a_panic_on_one_item_quarantines_that_item_alone_and_no_log_or_database_gets_its_text() {
    let s = Sandbox::new();
    let notes = s.home().join("Notes");
    std::fs::create_dir_all(&notes).unwrap();
    let marker = "CRASH-ME-0b1d";
    let secret = "PRIVATE-NOTE-TEXT-5e2a";
    std::fs::write(notes.join("a.md"), "# A\n\nfine\n").unwrap();
    std::fs::write(notes.join("b.md"), format!("{secret}\n{marker}\n")).unwrap();
    std::fs::write(notes.join("c.md"), "# C\n\nfine\n").unwrap();
    s.write_config(&format!(
        "sources:\n  - name: notes\n    type: local_files\n    path: {}\n",
        notes.display()
    ));
    // Debug builds only: the marker makes the parser panic, quoting the note, as a real slicing
    // bug would.
    let out = s.output(
        s.cmd(&["orchestrator", "start"])
            .env("FUTURNAL_DEBUG_PANIC_MARKER", marker),
    );
    assert!(out.status.success(), "{}", describe(&out));
    s.run(&["orchestrator", "sources", "trigger", "notes", "--wait"]);
    let run = s.job(1);
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(
        run["docs_new"], 2,
        "a.md and c.md are reported by the run: {run}"
    );
    let q = ingest_quarantine(&s);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["item"], "b.md");
    assert_eq!(q[0]["reason"], "internal");
    let error = q[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("the parser crashed on this item (a bug in futurnal"),
        "{error}"
    );
    // Not the store: it holds the notes by design.
    let all = ingest_home_bytes(&s, &["store.db"]);
    assert!(
        !ingest_contains(&all, secret),
        "the note's text leaked into the home's files"
    );
    assert!(
        !ingest_contains(&all, marker),
        "the note's text leaked into the home's files"
    );
    let log = std::fs::read_to_string(s.futurnal_home().join("logs/orchestrator.log")).unwrap();
    assert!(log.contains("message is withheld"), "{log}");
    assert_eq!(s.status_json()["running"], true, "the daemon survived");

    // Once the cause is gone (here: the marker), `quarantine retry` ingests the item.
    std::fs::write(notes.join("b.md"), format!("{secret}\n")).unwrap();
    let item_job = q[0]["job_id"].as_i64().unwrap();
    let out = s.run(&["orchestrator", "quarantine", "retry", &item_job.to_string()]);
    assert!(out.status.success(), "{}", describe(&out));
    ingest_wait_job(&s, item_job, "succeeded");
    assert_eq!(live_documents(&s), (3, 3));
    assert!(ingest_quarantine(&s).is_empty());
}

/// Start a daemon whose source `notes` is `folder`, which is missing, and run it once: job 1 ends
/// quarantined at its first attempt.
fn ingest_quarantine_missing_folder(s: &Sandbox, folder: &Path) {
    s.write_config(&format!(
        "retry:\n  max_attempts: 1\nsources:\n  - name: notes\n    type: local_files\n    \
         path: \"{}\"\n",
        folder.display()
    ));
    let out = s.run(&["orchestrator", "start"]);
    assert!(out.status.success(), "{}", describe(&out));
    s.run(&["orchestrator", "sources", "trigger", "notes", "--wait"]);
    ingest_wait_job(s, 1, "quarantined");
}

#[test]
fn a_missing_source_folder_with_spaces_and_colons_is_redacted_whole_everywhere() {
    let s = Sandbox::new();
    ingest_quarantine_missing_folder(&s, &s.home().join("Folder With Spaces: x"));
    let shown = s.run(&["orchestrator", "jobs", "show", "1"]);
    let json = s.run(&["orchestrator", "jobs", "show", "1", "--format", "json"]);
    let listed = s.run(&["orchestrator", "quarantine", "list", "--format", "json"]);
    // No file futurnal keeps names any part of the folder: not queue.db (its error texts, and the
    // configuration the daemon records as running, whose source paths are fingerprints under
    // `security.path_redaction`) nor its WAL, not the logs, and not store.db either (documents
    // are keyed by their path inside their source, never by the source's own path). Only the
    // operator's configuration file names it. Raw bytes, and the decoded text columns of queue.db
    // in case a value spans pages.
    let mut everything = ingest_home_bytes(&s, &[]);
    let stored = Command::new("sqlite3")
        .arg(s.futurnal_home().join("queue.db"))
        .arg(
            "SELECT last_error FROM jobs UNION ALL SELECT reason FROM job_events
             UNION ALL SELECT message FROM job_item_errors
             UNION ALL SELECT config_json FROM daemon_instances
             UNION ALL SELECT config_layering FROM daemon_instances",
        )
        .output()
        .unwrap();
    assert!(stored.status.success(), "{}", describe(&stored));
    assert!(
        String::from_utf8_lossy(&stored.stdout).contains("\"sources\""),
        "the recorded configuration is read: {}",
        describe(&stored)
    );
    everything.extend_from_slice(&stored.stdout);
    for out in [&shown, &json, &listed] {
        everything.extend_from_slice(&out.stdout);
        everything.extend_from_slice(&out.stderr);
    }
    for part in ["Folder", "Spaces", ": x", "With"] {
        assert!(
            !ingest_contains(&everything, part),
            "`{part}` of the path leaked:\n{}",
            describe(&shown)
        );
    }
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("source path <path "),
        "{}",
        describe(&shown)
    );
}

#[test]
fn a_quarantined_run_is_resolved_when_a_later_run_of_its_source_succeeds() {
    let s = Sandbox::new();
    let notes = s.home().join("Notes");
    ingest_quarantine_missing_folder(&s, &notes);
    assert_eq!(ingest_quarantine(&s).len(), 1);
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("a.md"), "# A\n").unwrap();
    let out = s.run(&["orchestrator", "sources", "trigger", "notes", "--wait"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        ingest_quarantine(&s).is_empty(),
        "{:?}",
        ingest_quarantine(&s)
    );
    let shown = s.job_show(1);
    assert_eq!(shown["job"]["state"], "succeeded");
    let reasons: Vec<String> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r == "resolved: a later run of this source (job 2) succeeded"),
        "{reasons:?}"
    );
}

/// A tmpfs mounted for one test; unmounted (lazily, in case a process still uses it) however the
/// test ends.
struct IngestTmpfs(PathBuf);

impl Drop for IngestTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mount a tmpfs of `size_mb` at `dir`; `Err(why)` when this test cannot (not root, no mount).
fn ingest_mount_tmpfs(dir: &Path, size_mb: u32) -> Result<IngestTmpfs, String> {
    if !common::is_root() {
        return Err("not running as root, so no tmpfs can be mounted".into());
    }
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size_mb}m,mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .output()
        .map_err(|e| format!("mount cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mount failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(IngestTmpfs(dir.to_path_buf()))
}

#[test]
fn a_full_disk_fails_the_run_resource_exhausted_recorded_and_the_daemon_stays_up_until_space_is_freed()
 {
    let s = Sandbox::new();
    let tmpfs = match ingest_mount_tmpfs(&s.futurnal_home(), 8) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipped: the disk-full test needs a small tmpfs as the home: {why}");
            return;
        }
    };
    let notes = s.home().join("Notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("first.md"), "# First\n").unwrap();
    s.write_config(&format!(
        "queue:\n  min_free_mb: 1\nretry:\n  max_attempts: 20\n  base_delay_seconds: 1\n  \
         max_delay_seconds: 2\n  jitter: 0\nsources:\n  - name: notes\n    type: local_files\n    \
         path: {}\n",
        notes.display()
    ));
    let out = s.run(&["orchestrator", "start"]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = s.run(&["orchestrator", "sources", "trigger", "notes", "--wait"]);
    assert!(out.status.success(), "{}", describe(&out));
    let reserve = s.futurnal_home().join("queue.db-reserve");
    wait_until("the space reserve", Duration::from_secs(20), || {
        reserve.exists()
    });

    // Fill the disk, leaving room for the trigger but not for the run's 2 MB of notes.
    let free = || futurnal::free_bytes(&s.futurnal_home()).unwrap();
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(s.futurnal_home().join("filler")).unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        while free() > 256 * 1024 && filler.write_all(&chunk).is_ok() {}
        let _ = filler.sync_all();
    }
    let line = "a line of a note that is long enough to fill some space quickly\n".repeat(1600);
    for i in 0..20 {
        std::fs::write(notes.join(format!("n{i}.md")), &line).unwrap();
    }
    let out = s.run(&["orchestrator", "sources", "trigger", "notes"]);
    assert!(out.status.success(), "{}", describe(&out));
    wait_until(
        "the run to fail resource_exhausted, recorded",
        Duration::from_secs(30),
        || {
            let j = s.job(2);
            j["state"] != "running" && j["error_class"] == "resource_exhausted"
        },
    );
    let status = s.status_json();
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["disk"]["low"], true, "{status}");
    let shown = s.run(&["orchestrator", "status"]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("futurnal help runbook disk-space-is-low"),
        "{}",
        describe(&shown)
    );

    // Completely full: log lines and heartbeats can no longer be written. The daemon lives on
    // (it used to die at the first log line it could not write, about a minute after the disk
    // filled): its heartbeat gets older while it keeps running.
    {
        use std::io::Write;
        let mut filler = std::fs::OpenOptions::new()
            .append(true)
            .open(s.futurnal_home().join("filler"))
            .unwrap();
        while filler.write_all(&[b'x'; 4096]).is_ok() {}
        let _ = filler.sync_all();
        // The log's last page may still have room for a few lines: use it up too.
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(s.futurnal_home().join("logs/orchestrator.log"))
            .unwrap();
        while log.write_all(b"(test: filling the disk)\n").is_ok() {}
    }
    wait_until(
        "a heartbeat to be missed while the disk is full",
        Duration::from_secs(20),
        || {
            let status = s.status_json();
            assert_eq!(status["running"], true, "the daemon died: {status}");
            status["heartbeat_age_seconds"].as_i64().unwrap_or(0) >= 6
        },
    );

    // Space comes back: the retry completes the run.
    std::fs::remove_file(s.futurnal_home().join("filler")).unwrap();
    ingest_wait_job(&s, 2, "succeeded");
    assert_eq!(live_documents(&s), (21, 21));
    let status = s.status_json();
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["disk"]["low"], false, "{status}");
    let out = s.run(&["orchestrator", "stop"]);
    assert!(out.status.success(), "{}", describe(&out));
    drop(tmpfs);
}

/// A command that queues work wakes the orchestrator (SIGUSR1), which claims it at once rather
/// than at its next tick: with a tick of ten minutes, a trigger and a resume each get their job
/// run well within the deadline.
#[test]
fn queued_work_runs_at_once_not_at_the_next_tick() {
    let s = Sandbox::new().with_env("FUTURNAL_TEST_TICK_MS", "600000");
    let notes = s.write_notes("notes", 3);
    s.write_config(&format!(
        "sources:\n  - name: notes\n    type: local_files\n    path: {}\n",
        notes.display()
    ));
    s.start();
    let trigger = || {
        s.json(&[
            "orchestrator",
            "sources",
            "trigger",
            "notes",
            "--format",
            "json",
        ])["job_id"]
            .as_i64()
            .expect("job_id")
    };
    let succeeds = |id: i64, what: &str| {
        wait_until(what, Duration::from_secs(20), || {
            s.job(id)["state"] == "succeeded"
        })
    };
    // The first run may be claimed by the tick every loop starts with; later ones cannot.
    succeeds(trigger(), "the first run");
    succeeds(trigger(), "a run triggered after the first tick");
    s.ok(&[
        "orchestrator",
        "sources",
        "pause",
        "notes",
        "--reason",
        "test",
    ]);
    let waiting = trigger();
    assert_eq!(s.job(waiting)["state"], "pending");
    s.ok(&["orchestrator", "sources", "resume", "notes"]);
    succeeds(waiting, "the run of a resumed source");
    assert!(
        s.daemon_pid().is_some(),
        "SIGUSR1 never ends the orchestrator"
    );
}
