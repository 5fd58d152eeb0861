//! `futurnal orchestrator status`: what is running and what is queued.
//!
//! Invariants: status never starts, stops or migrates anything and works with the daemon down
//! (it reads the lock and queue.db); its JSON keys are stable (`.running`, `.pid`,
//! `.queue.pending`, ...) because operators script against them. When queue.db cannot be read,
//! `.queue` is null and `.queue_error` says why (no count that reads as an empty, healthy queue),
//! and the command exits `ExitCode::Database` (`tests/health.rs::status_*`). It reads a few rows
//! (`job_state_counts`, the latest instance and recovery), never the whole job table.
//! The config row is the running daemon's file, unless the command names another one with
//! `--config` or `FUTURNAL_CONFIG`: then it is that file, as the command reads it
//! (`tests/config_gate.rs::status_with_another_config_reports_that_file`). Paths in the JSON
//! (`.home`, `.config_path`, `.database.path`) are absolute; only the table shortens them to `~`
//! (`tests/json_shapes.rs`).

use serde::Serialize;
use serde_json::{Map, Value, json};

use std::path::PathBuf;

use crate::config::Loaded;
use crate::display;
use crate::home::{Home, display_path, mode_of};
use crate::jobs::JobState;
use crate::queue::{DbFacts, QueueDb, now_ms};

use super::lock;

#[derive(Debug, Serialize)]
pub struct Status {
    pub running: bool,
    pub pid: Option<u32>,
    pub instance_id: Option<String>,
    pub started_at: Option<String>,
    pub uptime_seconds: Option<i64>,
    pub version: String,
    /// Absolute; the table shows it with `~`.
    pub home: PathBuf,
    /// Absolute; the table shows it with `~`.
    pub config_path: PathBuf,
    pub config_present: bool,
    pub config_error: Option<String>,
    pub workers: Workers,
    /// Jobs per state; `None` when queue.db cannot be read.
    pub queue: Option<Map<String, Value>>,
    /// Why queue.db cannot be read.
    pub queue_error: Option<QueueProblem>,
    /// The same, for the command's exit status and stderr.
    #[serde(skip)]
    pub queue_unreadable: Option<crate::error::OperatorError>,
    pub last_stop: Option<LastStop>,
    pub last_recovery: Option<Recovery>,
    pub database: Option<DbFacts>,
    pub heartbeat_age_seconds: Option<i64>,
    /// Free space on the home's filesystem (issue 7: a full disk is reported, not fatal).
    pub disk: Option<Disk>,
    /// What the last background integrity check found, while its marker says the next start
    /// must check every page (`daemon::integrity`); `None` otherwise.
    pub integrity_problem: Option<String>,
}

/// Free space of the home's filesystem against `queue.min_free_mb`.
#[derive(Debug, Serialize)]
pub struct Disk {
    pub free_bytes: u64,
    pub min_free_bytes: u64,
    /// Below the minimum: job outcomes and new jobs may not be recorded until space is freed.
    pub low: bool,
}

/// queue.db cannot be read: what, what is safe, which topic.
#[derive(Debug, Serialize)]
pub struct QueueProblem {
    pub what: String,
    pub safe: String,
    pub runbook: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Workers {
    pub busy: i64,
    pub max: i64,
}

#[derive(Debug, Serialize)]
pub struct LastStop {
    pub at: String,
    pub kind: String,
    pub pid: i64,
}

#[derive(Debug, Serialize)]
pub struct Recovery {
    pub at: String,
    pub crashed_pid: Option<i64>,
    pub crashed_started_at: Option<String>,
    pub jobs_requeued: i64,
    pub jobs_poisoned: i64,
}

/// Gather the status. `config` is `Err(message)` when the configuration does not load.
pub fn collect(home: &Home, config: Result<&Loaded, (PathBuf, String)>, verbose: bool) -> Status {
    let holder = lock::holder(home);
    let db = QueueDb::read_existing(&home.queue_db());
    let mut queue = Map::new();
    let mut instance = None;
    let mut recovery = None;
    let mut database = None;
    let mut db_error = None;
    match &db {
        Ok(Some(db)) => {
            match db.job_counts() {
                Ok(counts) => {
                    for (state, n) in counts {
                        queue.insert(state.to_string(), json!(n));
                    }
                }
                Err(e) => {
                    db_error = Some(crate::error::queue_unusable(
                        &e,
                        crate::error::Doing::Command,
                    ));
                }
            }
            instance = db.latest_instance().ok().flatten();
            recovery = db.latest_recovery().ok().flatten();
            if verbose {
                database = db.file_facts().ok();
            }
        }
        Ok(None) => {}
        Err(e) => db_error = Some(e.clone()),
    }
    // No queue.db yet: nothing was ever queued, so zeros are true.
    if queue.is_empty() && db_error.is_none() {
        for state in JobState::ALL {
            queue.insert(state.to_string(), json!(0));
        }
    }
    let running = holder.is_some();
    let lock_info = holder.flatten();
    // The instance row belongs to the running daemon only if the ids agree.
    let live = instance.as_ref().filter(|i| {
        running
            && lock_info
                .as_ref()
                .is_some_and(|l| l.instance_id == i.instance_id)
    });
    let now = now_ms();
    let min_free_mb = config
        .as_ref()
        .map(|l| l.config.queue.min_free_mb)
        .unwrap_or_else(|_| crate::config::Queue::default().min_free_mb);
    // A file named with --config or FUTURNAL_CONFIG that is not the one the daemon runs is what
    // the operator asked about: report it (absent, invalid) rather than the daemon's.
    let (asked, explicit) = match &config {
        Ok(l) => (l.file.path.clone(), l.file.explicit),
        Err((path, _)) => (path.clone(), *path != home.default_config()),
    };
    let live_config = live.filter(|i| {
        !explicit
            || std::path::absolute(&asked).ok()
                == std::path::absolute(std::path::Path::new(&i.config_path)).ok()
    });
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (config_path, config_present, config_error, workers_max) = match config {
        Ok(l) => (
            absolute(&l.file.path),
            l.file.present,
            None,
            l.effective_workers() as i64,
        ),
        Err((path, e)) => (absolute(&path), path.exists(), Some(e), 0),
    };
    Status {
        running,
        pid: lock_info.as_ref().map(|l| l.pid),
        instance_id: lock_info.as_ref().map(|l| l.instance_id.clone()),
        started_at: lock_info.as_ref().map(|l| display::timestamp(l.started_at)),
        uptime_seconds: lock_info.as_ref().map(|l| (now - l.started_at) / 1000),
        version: env!("CARGO_PKG_VERSION").to_string(),
        home: absolute(home.root()),
        config_path: live_config
            .map(|i| absolute(std::path::Path::new(&i.config_path)))
            .unwrap_or(config_path),
        config_present: live_config
            .map(|i| std::path::Path::new(&i.config_path).exists())
            .unwrap_or(config_present),
        // The running daemon validated its own file at start; the CLI's view does not apply.
        config_error: if live_config.is_some() {
            None
        } else {
            config_error
        },
        workers: Workers {
            // Every running job belongs to the live daemon (recovery requeues the others).
            busy: live.map(|_| count(&queue, JobState::Running)).unwrap_or(0),
            max: live.map(|i| i.workers_max).unwrap_or(workers_max),
        },
        queue_error: db_error.as_ref().map(|e| QueueProblem {
            what: e.what.clone(),
            safe: e.safe.clone(),
            runbook: e.topic,
        }),
        queue: db_error.is_none().then_some(queue),
        queue_unreadable: db_error,
        last_stop: instance.as_ref().filter(|_| !running).map(|i| LastStop {
            at: display::timestamp(i.stopped_at.unwrap_or(i.heartbeat_at)),
            kind: i.stop_kind.clone().unwrap_or_else(|| "unclean".into()),
            pid: i.pid,
        }),
        last_recovery: recovery.map(|r| Recovery {
            at: display::timestamp(r.recovered_at),
            crashed_pid: r.crashed_pid,
            crashed_started_at: r.crashed_started_at.map(display::timestamp),
            jobs_requeued: r.jobs_requeued,
            jobs_poisoned: r.jobs_poisoned,
        }),
        database,
        heartbeat_age_seconds: live.map(|i| (now - i.heartbeat_at) / 1000),
        disk: crate::home::free_bytes(home.root()).ok().map(|free| {
            let min = min_free_mb.saturating_mul(1024 * 1024);
            Disk {
                free_bytes: free,
                min_free_bytes: min,
                low: free < min,
            }
        }),
        integrity_problem: std::fs::read_to_string(home.integrity_marker())
            .ok()
            .map(|text| text.trim().to_string()),
    }
}

fn count(queue: &Map<String, Value>, state: JobState) -> i64 {
    queue
        .get(state.as_str())
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// The human-readable form.
pub fn render_table(s: &Status, home: &Home, verbose: bool) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    let state = if s.running {
        format!(
            "running (pid {}, up {})",
            s.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            display::duration_ms(s.uptime_seconds.unwrap_or(0) * 1000)
        )
    } else {
        match &s.last_stop {
            Some(stop) if stop.kind == "clean" => {
                format!("not running (stopped cleanly at {})", stop.at)
            }
            Some(stop) => format!("not running (pid {} stopped uncleanly)", stop.pid),
            None => "not running (never started with this home)".to_string(),
        }
    };
    rows.push(("orchestrator", state));
    rows.push(("version", s.version.clone()));
    rows.push(("home", display_path(&s.home)));
    let config_path = display_path(&s.config_path);
    let config = match (&s.config_error, s.config_present) {
        (Some(_), _) => format!("{config_path} (invalid: run `futurnal config validate`)"),
        (None, true) => config_path,
        (None, false) => format!("{config_path} (absent: built-in defaults)"),
    };
    rows.push(("config", config));
    rows.push((
        "workers",
        format!("{} busy / {} max", s.workers.busy, s.workers.max),
    ));
    match &s.queue {
        Some(q) => {
            rows.push((
                "queue",
                format!(
                    "{} pending, {} running, {} failed, {} quarantined",
                    count(q, JobState::Pending),
                    count(q, JobState::Running),
                    count(q, JobState::Failed),
                    count(q, JobState::Quarantined)
                ),
            ));
            rows.push((
                "finished",
                format!(
                    "{} succeeded, {} cancelled",
                    count(q, JobState::Succeeded),
                    count(q, JobState::Cancelled)
                ),
            ));
        }
        None => rows.push(("queue", "unknown: queue.db cannot be read".into())),
    }
    if let Some(d) = s.disk.as_ref().filter(|d| d.low) {
        rows.push((
            "disk",
            format!(
                "only {} free, below queue.min_free_mb ({}): job outcomes and new jobs are not \
                 recorded until space is freed (futurnal help runbook {})",
                display::size(d.free_bytes),
                display::size(d.min_free_bytes),
                crate::runbook::topics::DISK_LOW
            ),
        ));
    }
    if let Some(problem) = &s.integrity_problem {
        rows.push(("integrity", problem.clone()));
    }
    if let Some(r) = &s.last_recovery {
        rows.push((
            "last recovery",
            format!(
                "{} after pid {} stopped uncleanly",
                r.at,
                r.crashed_pid
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "?".into())
            ),
        ));
    }
    if verbose {
        if let Some(id) = &s.instance_id {
            rows.push(("instance", id.clone()));
        }
        if let Some(at) = &s.started_at {
            rows.push(("started", at.clone()));
        }
        if let Some(age) = s.heartbeat_age_seconds {
            rows.push((
                "heartbeat",
                format!("{} ago", display::duration_ms(age * 1000)),
            ));
        }
        match &s.database {
            Some(db) => rows.push((
                "queue.db",
                format!(
                    "{} (schema {}, {}, {}, wal {}, mode {})",
                    display_path(&db.path),
                    db.schema_version,
                    db.journal_mode.to_uppercase(),
                    display::size(db.size_bytes),
                    display::size(db.wal_bytes),
                    mode_of(&db.path)
                        .map(|m| format!("{m:o}"))
                        .unwrap_or_else(|| "?".into())
                ),
            )),
            None => rows.push((
                "queue.db",
                format!("{} (not created yet)", display_path(&home.queue_db())),
            )),
        }
        rows.push(("log", display_path(&home.log_file())));
        rows.push(("lock", display_path(&home.lock_file())));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    rows.iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}
