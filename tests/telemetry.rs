//! Telemetry against the real binary: throughput after ingesting fixtures agrees with the jobs'
//! own figures; failures are counted by class and source with a redacted example; retention
//! (the daemon's pass, and `telemetry clean`) removes old finished jobs and telemetry and never
//! a waiting, running, failed or quarantined job.

mod common;

use std::time::Duration;

use common::{Sandbox, describe, stdout, wait_until};
use rusqlite::{Connection, params};
use serde_json::Value;

const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn queue(s: &Sandbox) -> Connection {
    Connection::open(s.futurnal_home().join("queue.db")).unwrap()
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A job written straight into queue.db, `days` old, with a history that accounts for `state`.
fn old_job(conn: &Connection, state: &str, at: i64, parent: Option<i64>) -> i64 {
    conn.execute(
        "INSERT INTO jobs (source, kind, state, trigger, scheduled_for, max_attempts, created_at,
            updated_at, started_at, finished_at, instance_id, parent_job_id)
         VALUES ('notes', ?1, ?2, 'manual', ?3, 3, ?3, ?3, ?3, ?3, 'ghost', ?4)",
        params![
            if parent.is_some() {
                "item"
            } else {
                "source_run"
            },
            state,
            at,
            parent
        ],
    )
    .unwrap();
    let id = conn.last_insert_rowid();
    let mut chain: Vec<(Option<&str>, &str)> = vec![(None, "pending")];
    if state != "pending" {
        chain.push((Some("pending"), "running"));
    }
    if state != "pending" && state != "running" {
        chain.push((Some("running"), state));
    }
    for (i, (from, to)) in chain.into_iter().enumerate() {
        conn.execute(
            "INSERT INTO job_events (job_id, at, from_state, to_state, actor, reason)
             VALUES (?1, ?2, ?3, ?4, 'test', 'written by the test')",
            params![id, at + i as i64, from, to],
        )
        .unwrap();
    }
    id
}

fn sample(conn: &Connection, at: i64) {
    conn.execute(
        "INSERT INTO telemetry_samples (at, pending, running, failed, quarantined, workers_busy,
            wal_bytes) VALUES (?1, 0, 0, 0, 0, 0, 0)",
        [at],
    )
    .unwrap();
}

fn ids(conn: &Connection) -> Vec<i64> {
    let mut stmt = conn.prepare("SELECT id FROM jobs ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// Jobs of every state, two days old, plus recent rows, in a queue.db whose daemon keeps one
/// day: what must go, and what must stay.
struct Planted {
    gone: Vec<i64>,
    kept: Vec<i64>,
}

fn plant(s: &Sandbox, conn: &Connection) -> Planted {
    let old = now_ms() - 2 * DAY_MS;
    // The run the daemon really did, moved two days back with its history and telemetry.
    let real = s.jobs_of("notes")[0]["id"].as_i64().unwrap();
    conn.execute_batch(&format!(
        "UPDATE jobs SET created_at = created_at - {d}, updated_at = updated_at - {d},
            scheduled_for = scheduled_for - {d}, started_at = started_at - {d},
            finished_at = finished_at - {d} WHERE id = {real};
         UPDATE job_events SET at = at - {d} WHERE job_id = {real};
         UPDATE telemetry_attempts SET started_at = started_at - {d},
            finished_at = finished_at - {d};
         INSERT INTO job_item_errors (job_id, item, class, message)
            VALUES ({real}, 'x.md', 'parse_error', 'planted');",
        d = 2 * DAY_MS
    ))
    .unwrap();
    let cancelled = old_job(conn, "cancelled", old, None);
    let mut kept = Vec::new();
    for state in ["pending", "running", "failed", "quarantined"] {
        kept.push(old_job(conn, state, old, None));
    }
    // A finished run one of whose item jobs still needs an operator: both stay.
    let parent = old_job(conn, "succeeded", old, None);
    kept.push(parent);
    kept.push(old_job(conn, "quarantined", old, Some(parent)));
    kept.push(old_job(conn, "succeeded", now_ms() - 1000, None));
    sample(conn, old);
    sample(conn, old + 1);
    sample(conn, now_ms() - 1000);
    Planted {
        gone: vec![real, cancelled],
        kept,
    }
}

fn assert_pruned(conn: &Connection, planted: &Planted) {
    assert_eq!(
        ids(conn),
        planted.kept,
        "only the old finished jobs are gone"
    );
    for id in &planted.gone {
        let events: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM job_events WHERE job_id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(events, 0, "job {id}'s events went with it");
    }
    assert_eq!(count(conn, "SELECT COUNT(*) FROM job_item_errors"), 0);
    // Old attempts are gone; the start's recovery recorded the attempt it ended (the planted
    // running job's), which is new.
    assert_eq!(
        count(
            conn,
            "SELECT COUNT(*) FROM telemetry_attempts WHERE finished_at < strftime('%s','now') * 1000 - 86400000"
        ),
        0
    );
    assert_eq!(
        count(
            conn,
            "SELECT COUNT(*) FROM telemetry_samples WHERE at < strftime('%s','now') * 1000 - 86400000"
        ),
        0
    );
    // The counts kept by triggers still equal a full count.
    let kept: i64 = count(conn, "SELECT SUM(n) FROM job_state_counts");
    assert_eq!(kept, planted.kept.len() as i64);
}

fn config(s: &Sandbox, extra: &str) {
    let notes = s.write_notes("notes", 5);
    s.write_config(&format!(
        "telemetry:\n  retention_days: 1\n  sample_interval_seconds: 1\nworkers:\n  shutdown_grace_seconds: 1\nsources:\n  - name: notes\n    type: local_files\n    path: {}\n{extra}",
        notes.display()
    ));
}

/// `retention_days: 1`: at its next pass (a start) the daemon removes the succeeded and
/// cancelled jobs older than a day, with their events and item errors, and telemetry older than a
/// day; pending, running, failed and quarantined jobs, a run whose item job is quarantined, and
/// anything recent stay. Before retention existed, nothing was ever removed.
#[test]
fn the_daemons_retention_pass_removes_old_finished_jobs_and_telemetry_and_nothing_else() {
    let s = Sandbox::new();
    config(&s, "");
    s.start();
    s.ok(&["orchestrator", "sources", "trigger", "notes", "--wait"]);
    wait_until("a telemetry sample", Duration::from_secs(10), || {
        count(&queue(&s), "SELECT COUNT(*) FROM telemetry_samples") > 0
    });
    s.ok(&["orchestrator", "stop"]);
    let conn = queue(&s);
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM telemetry_attempts"), 1);
    conn.execute("DELETE FROM telemetry_samples", []).unwrap();
    let planted = plant(&s, &conn);
    // Paused: the planted waiting jobs are not claimed, so their states can be checked after.
    s.ok(&[
        "orchestrator",
        "sources",
        "pause",
        "notes",
        "--reason",
        "test",
    ]);
    let states = |conn: &Connection| -> Vec<String> {
        let mut stmt = conn.prepare("SELECT state FROM jobs ORDER BY id").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };

    s.start();
    wait_until("the retention pass", Duration::from_secs(20), || {
        ids(&queue(&s)) == planted.kept
    });
    assert_pruned(&queue(&s), &planted);
    // The running job of a dead instance was handed back at start, as always; nothing else moved.
    assert_eq!(
        states(&queue(&s)),
        [
            "pending",
            "pending",
            "failed",
            "quarantined",
            "succeeded",
            "quarantined",
            "succeeded"
        ]
    );
    // The pass logs what it removed once a step finds nothing more.
    wait_until(
        "the retention pass's log line",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(s.futurnal_home().join("logs/orchestrator.log"))
                .unwrap()
                .contains("retention: removed finished jobs and telemetry older than")
        },
    );
    // The daemon keeps sampling: a sample newer than the planted recent one appears.
    wait_until("a new sample", Duration::from_secs(10), || {
        count(
            &queue(&s),
            "SELECT COUNT(*) FROM telemetry_samples WHERE at > strftime('%s','now') * 1000 - 900",
        ) > 0
    });
}

/// `telemetry clean` without a daemon: a dry run counts and changes nothing (and is not
/// audited); the real one removes the same rows, is audited with its counts, and a second one
/// finds nothing.
#[test]
fn telemetry_clean_removes_what_its_dry_run_counted_and_is_audited() {
    let s = Sandbox::new();
    config(&s, "");
    s.start();
    s.ok(&["orchestrator", "sources", "trigger", "notes", "--wait"]);
    s.ok(&["orchestrator", "stop"]);
    let conn = queue(&s);
    conn.execute("DELETE FROM telemetry_samples", []).unwrap();
    let planted = plant(&s, &conn);
    let clean = |extra: &[&str]| -> Value {
        let mut args = vec![
            "orchestrator",
            "telemetry",
            "clean",
            "--older-than-days",
            "1",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        s.json(&args)
    };
    let dry = clean(&["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["removed"]["jobs"], 2, "{dry}");
    assert_eq!(dry["removed"]["samples"], 2, "{dry}");
    assert_eq!(dry["removed"]["attempts"], 1, "{dry}");
    assert_eq!(dry["removed"]["item_errors"], 1, "{dry}");
    assert!(
        ids(&conn).len() > planted.kept.len(),
        "a dry run removes nothing"
    );
    assert!(s.audit_events("telemetry.clean").is_empty());

    let done = clean(&[]);
    assert_eq!(done["removed"], dry["removed"]);
    assert_pruned(&conn, &planted);
    let audited = s.audit_events("telemetry.clean");
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["removed"], dry["removed"]);
    assert_eq!(audited[0]["older_than_days"], 1);
    // The top-level spelling works too.
    let again = s.json(&[
        "telemetry",
        "clean",
        "--older-than-days",
        "1",
        "--format",
        "json",
    ]);
    assert_eq!(again["removed"]["jobs"], 0);
}

fn job_seconds(job: &Value) -> f64 {
    (job["finished_at"].as_i64().unwrap() - job["started_at"].as_i64().unwrap()) as f64 / 1000.0
}

/// After ingesting two fixture sources one after the other, throughput is positive and equals
/// the jobs' bytes over their durations, overall and per source; `jobs show` prints the same
/// rate in the same unit (MB = 10^6 bytes). A source that fails shows in `failures` by class and
/// source, its example redacted.
#[test]
fn throughput_after_ingesting_fixtures_matches_the_jobs_own_figures() {
    let s = Sandbox::new();
    s.write_config(&format!(
        "sources:\n  - name: multi\n    type: local_files\n    path: {}\n  - name: vault\n    type: obsidian\n    path: {}\n  - name: gone\n    type: local_files\n    path: \"/nonexistent/futurnal telemetry: secret\"\n",
        common::fixture("sources/multilingual").display(),
        common::fixture("sources/vault").display(),
    ));
    s.start();
    for source in ["multi", "vault"] {
        s.ok(&["orchestrator", "sources", "trigger", source, "--wait"]);
    }
    let out = s.run(&["orchestrator", "sources", "trigger", "gone", "--wait"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));

    let t = s.json(&[
        "orchestrator",
        "telemetry",
        "throughput",
        "--since",
        "1h",
        "--format",
        "json",
    ]);
    let runs: Vec<Value> = ["multi", "vault"]
        .iter()
        .map(|name| s.jobs_of(name)[0].clone())
        .collect();
    let bytes: i64 = runs.iter().map(|j| j["bytes"].as_i64().unwrap()).sum();
    let seconds: f64 = runs.iter().map(job_seconds).sum();
    assert!(bytes > 0);
    assert_eq!(t["bytes"], bytes, "{t}");
    assert_eq!(t["jobs"], 3, "{t}");
    let mbps = t["throughput_mbps"].as_f64().expect("a rate");
    assert!(mbps > 0.0, "{t}");
    let expected = bytes as f64 / 1e6 / seconds;
    assert!(
        (mbps - expected).abs() <= expected * 1e-9,
        "{mbps} vs {expected}: {t}"
    );
    for run in &runs {
        let source = run["source"].as_str().unwrap();
        let one = s.json(&[
            "orchestrator",
            "telemetry",
            "throughput",
            "--source",
            source,
            "--format",
            "json",
        ]);
        let own = run["bytes"].as_i64().unwrap() as f64 / 1e6 / job_seconds(run);
        let got = one["throughput_mbps"].as_f64().unwrap();
        assert!((got - own).abs() <= own * 1e-9, "{source}: {got} vs {own}");
        assert_eq!(one["sources"].as_array().unwrap().len(), 1);
        // `jobs show` says the same, in MB/s of 10^6 bytes.
        let show = stdout(&s.ok(&[
            "orchestrator",
            "jobs",
            "show",
            &run["id"].as_i64().unwrap().to_string(),
        ]));
        let line = show.lines().find(|l| l.starts_with("read:")).unwrap();
        let shown: f64 = line
            .split(" at ")
            .nth(1)
            .and_then(|r| r.strip_suffix(" MB/s"))
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!((shown - own).abs() <= own * 0.051, "{line} vs {own}");
    }
    // Telemetry lives in queue.db: a restart changes nothing of it.
    s.ok(&["orchestrator", "stop"]);
    s.start();
    let again = s.json(&[
        "orchestrator",
        "telemetry",
        "throughput",
        "--since",
        "1h",
        "--format",
        "json",
    ]);
    assert_eq!(
        (&again["bytes"], &again["busy_seconds"], &again["jobs"]),
        (&t["bytes"], &t["busy_seconds"], &t["jobs"])
    );
    let table = stdout(&s.ok(&["telemetry", "throughput", "--since", "1h", "--chart"]));
    assert!(table.contains("read per slice of the window"), "{table}");

    let f = s.json(&[
        "orchestrator",
        "telemetry",
        "failures",
        "--since",
        "24h",
        "--format",
        "json",
    ]);
    assert_eq!(f["total"], 1, "{f}");
    let group = &f["groups"][0];
    assert_eq!(
        (&group["class"], &group["source"], &group["count"]),
        (
            &Value::from("not_found"),
            &Value::from("gone"),
            &Value::from(1)
        ),
        "{f}"
    );
    assert_eq!(group["latest"]["outcome"], "failed");
    let error = group["latest"]["error"].as_str().unwrap();
    assert!(
        !error.contains("secret") && !error.contains("nonexistent"),
        "{error}"
    );
}
