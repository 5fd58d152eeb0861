//! `futurnal orchestrator health`: the checks an operator (or a cron job) asks "is ingestion
//! healthy?" with.
//!
//! Owns: the list of checks (`NAMES`), their levels (ok < warn < fail, the report's level is the
//! worst) and the sinks futurnal does not have (`ABSENT_SINKS`).
//! Invariants: the checks only read: queue.db and store.db are opened read-only
//! (`SQLITE_OPEN_READ_ONLY`), nothing is created, migrated or written; every check names a
//! `help runbook` topic that exists (`runbook::topics` test); each stays cheap with a large queue
//! (counts from `job_state_counts`, the oldest due job through the `(state, scheduled_for)` index,
//! throughput from the last hour's `telemetry_attempts` through their `finished_at` index, and
//! `PRAGMA quick_check` only on a database small enough for it to be quick, or when one check is
//! asked for by name). Thresholds come from `Config` (`health.*`, `queue.min_free_mb`).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use crate::config::{Config, Loaded};
use crate::daemon::{lock, reload};
use crate::db::OpenError;
use crate::display;
use crate::home::{Home, display_path};
use crate::jobs::JobState;
use crate::queue::now_ms;
use crate::runbook::topics;

/// A check's level. The report's level is its worst check's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    Warn,
    Fail,
    /// `neo4j` and `chroma`: a sink futurnal does not have; never part of the full report.
    NotApplicable,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
            Level::NotApplicable => "not_applicable",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Level,
    pub detail: String,
    /// The `futurnal help runbook` topic to read.
    pub runbook: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: Level,
    pub checks: Vec<Check>,
}

/// Every check, in the order the report lists them.
pub const NAMES: &[&str] = &[
    "daemon",
    "scheduler",
    "queue",
    "store",
    "wal",
    "disk",
    "config",
    "quarantine",
    "pending_age",
    "throughput",
];

/// Checks of the specification that belong to sinks futurnal does not have.
pub const ABSENT_SINKS: &[(&str, &str)] = &[("neo4j", "Neo4j"), ("chroma", "Chroma")];

/// A heartbeat older than this means the daemon's loop has stopped (it writes one every 5 s).
pub const HEARTBEAT_STALE_MS: i64 = 15_000;
/// A schedule this far past its next run means the scheduler's tick has stopped (it ticks every
/// 200 ms and moves the mark forward each time).
pub const SCHEDULE_OVERDUE_MS: i64 = 60_000;
/// `PRAGMA quick_check` reads every page: in the full report it runs only on databases up to this
/// size (a few milliseconds); `health check queue|store` always runs it.
pub const QUICK_CHECK_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// The throughput check judges only when the last hour's attempts that read something ran at
/// least this long together: a few small incremental runs say nothing about speed.
pub const THROUGHPUT_MIN_RUN_MS: i64 = 30_000;
const HOUR_MS: i64 = 3_600_000;
const MIB: u64 = 1024 * 1024;

/// Run every check (`only: None`) or one. `config` is the configuration the command loaded, or
/// why it did not load.
pub fn run(home: &Home, config: Result<&Loaded, String>, only: Option<&str>) -> Report {
    let defaults = Config::default();
    let cfg = config.as_ref().map(|l| &l.config).unwrap_or(&defaults);
    let queue = crate::db::open_read_only(&home.queue_db());
    let live = live_daemon(home, queue.as_ref().ok().and_then(Option::as_ref));
    let ctx = Ctx {
        home,
        cfg,
        config_error: config.as_ref().err().cloned(),
        queue: &queue,
        live: live.as_ref(),
        full_check: only.is_some(),
        now: now_ms(),
    };
    let checks: Vec<Check> = NAMES
        .iter()
        .filter(|n| only.is_none_or(|o| o == **n))
        .map(|n| ctx.check(n))
        .collect();
    Report {
        status: overall(checks.iter().map(|c| c.status)),
        checks,
    }
}

/// The answer for a sink futurnal does not have, or `None` for any other name.
pub fn absent_sink(name: &str) -> Option<Report> {
    let (_, product) = ABSENT_SINKS.iter().find(|(n, _)| *n == name)?;
    let check = Check {
        name: ABSENT_SINKS.iter().find(|(n, _)| *n == name)?.0,
        status: Level::NotApplicable,
        detail: format!(
            "futurnal has no {product} sink: documents are kept in store.db (SQLite), which \
             `health check store` checks"
        ),
        runbook: topics::ABSENT_SINKS,
    };
    Some(Report {
        status: Level::NotApplicable,
        checks: vec![check],
    })
}

/// The worst level; an empty report is ok.
pub fn overall(levels: impl IntoIterator<Item = Level>) -> Level {
    levels.into_iter().max().unwrap_or(Level::Ok)
}

/// Free disk: fail below the queue's own minimum (outcomes stop being recorded), warn below
/// health's.
pub fn disk_level(free: u64, warn_below: u64, fail_below: u64) -> Level {
    if free < fail_below {
        Level::Fail
    } else if free < warn_below {
        Level::Warn
    } else {
        Level::Ok
    }
}

/// At most `limit` is ok; more warns.
pub fn limit_level(value: u64, limit: u64) -> Level {
    if value > limit {
        Level::Warn
    } else {
        Level::Ok
    }
}

/// Throughput in MB/s (10^6 bytes) of `bytes` read in `run_ms`, and its level against `floor`
/// (0 turns the check off). `None` when there is too little to judge.
pub fn throughput_level(bytes: i64, run_ms: i64, floor: f64) -> (Level, Option<f64>) {
    if run_ms < THROUGHPUT_MIN_RUN_MS || run_ms <= 0 {
        return (Level::Ok, None);
    }
    let mbps = bytes as f64 / 1e6 / (run_ms as f64 / 1000.0);
    let level = if floor > 0.0 && mbps < floor {
        Level::Warn
    } else {
        Level::Ok
    };
    (level, Some(mbps))
}

/// The live daemon: holds the lock, and its instance row (with its heartbeat) is in queue.db.
struct Live {
    pid: u32,
    instance_id: String,
    heartbeat_at: Option<i64>,
}

fn live_daemon(home: &Home, queue: Option<&Connection>) -> Option<Live> {
    let info = lock::holder(home)??;
    let heartbeat_at = queue.and_then(|c| {
        c.query_row(
            "SELECT heartbeat_at FROM daemon_instances WHERE instance_id = ?1",
            [&info.instance_id],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .ok()
        .flatten()
    });
    Some(Live {
        pid: info.pid,
        instance_id: info.instance_id,
        heartbeat_at,
    })
}

struct Ctx<'a> {
    home: &'a Home,
    cfg: &'a Config,
    config_error: Option<String>,
    queue: &'a Result<Option<Connection>, OpenError>,
    live: Option<&'a Live>,
    full_check: bool,
    now: i64,
}

fn check(
    name: &'static str,
    status: Level,
    detail: impl Into<String>,
    runbook: &'static str,
) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        runbook,
    }
}

impl Ctx<'_> {
    fn check(&self, name: &str) -> Check {
        match name {
            "daemon" => self.daemon(),
            "scheduler" => self.scheduler(),
            "queue" => self.queue_db(),
            "store" => self.store_db(),
            "wal" => self.wal(),
            "disk" => self.disk(),
            "config" => self.config(),
            "quarantine" => self.quarantine(),
            "pending_age" => self.pending_age(),
            _ => self.throughput(),
        }
    }

    /// The queue's connection, or the check that says it cannot be read.
    fn conn(&self, name: &'static str) -> Result<Option<&Connection>, Check> {
        match self.queue {
            Ok(c) => Ok(c.as_ref()),
            Err(e) => Err(check(
                name,
                Level::Fail,
                format!("queue.db cannot be read ({e})"),
                db_topic(e, topics::CORRUPT_DB),
            )),
        }
    }

    fn daemon(&self) -> Check {
        let Some(live) = self.live else {
            return check(
                "daemon",
                Level::Fail,
                "the orchestrator is not running",
                topics::CHECK_DAEMON,
            );
        };
        match live.heartbeat_at {
            Some(at) if self.now - at <= HEARTBEAT_STALE_MS => check(
                "daemon",
                Level::Ok,
                format!(
                    "running (pid {}), heartbeat {} ago",
                    live.pid,
                    display::duration_ms(self.now - at)
                ),
                topics::CHECK_DAEMON,
            ),
            Some(at) => check(
                "daemon",
                Level::Fail,
                format!(
                    "pid {} holds the lock but its last heartbeat is {} old (more than {}): \
                     its main loop is stuck",
                    live.pid,
                    display::duration_ms(self.now - at),
                    display::duration_ms(HEARTBEAT_STALE_MS)
                ),
                topics::CHECK_DAEMON,
            ),
            None => check(
                "daemon",
                Level::Fail,
                format!(
                    "pid {} holds the lock but no heartbeat of it can be read from queue.db",
                    live.pid
                ),
                topics::CHECK_DAEMON,
            ),
        }
    }

    fn scheduler(&self) -> Check {
        const N: &str = "scheduler";
        let Some(live) = self.live else {
            return check(
                N,
                Level::Fail,
                "no orchestrator runs to schedule jobs",
                topics::CHECK_SCHEDULER,
            );
        };
        let conn = match self.conn(N) {
            Ok(Some(c)) => c,
            Ok(None) => {
                return check(
                    N,
                    Level::Fail,
                    "queue.db does not exist",
                    topics::CHECK_SCHEDULER,
                );
            }
            Err(c) => return c,
        };
        // The sources the daemon schedules: enabled, with a schedule, in what it runs now.
        let scheduled: Vec<String> = read_running_sources(conn, &live.instance_id);
        let mut worst: Option<(String, i64)> = None;
        if !scheduled.is_empty() {
            let mut stmt = match conn.prepare(
                "SELECT name, next_run_at FROM source_state
                 WHERE paused_at IS NULL AND next_run_at IS NOT NULL",
            ) {
                Ok(s) => s,
                Err(e) => return self.sql_fail(N, e),
            };
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)));
            let rows = match rows.and_then(|r| r.collect::<Result<Vec<_>, _>>()) {
                Ok(r) => r,
                Err(e) => return self.sql_fail(N, e),
            };
            for (name, next) in rows {
                let late = self.now - next;
                if scheduled.contains(&name)
                    && late > SCHEDULE_OVERDUE_MS
                    && worst.as_ref().is_none_or(|(_, w)| late > *w)
                {
                    worst = Some((name, late));
                }
            }
        }
        match worst {
            Some((name, late)) => check(
                N,
                Level::Fail,
                format!(
                    "the scheduled run of source {name} is {} overdue: the scheduler is not ticking",
                    display::duration_ms(late)
                ),
                topics::CHECK_SCHEDULER,
            ),
            None => check(
                N,
                Level::Ok,
                format!(
                    "ticking; {} on a schedule",
                    display::plural(scheduled.len() as i64, "source")
                ),
                topics::CHECK_SCHEDULER,
            ),
        }
    }

    fn sql_fail(&self, name: &'static str, e: rusqlite::Error) -> Check {
        let e = crate::db::diagnose(&self.home.queue_db(), e, "");
        check(
            name,
            Level::Fail,
            format!("queue.db cannot be read ({e})"),
            db_topic(&e, topics::CORRUPT_DB),
        )
    }

    fn queue_db(&self) -> Check {
        const N: &str = "queue";
        let conn = match self.conn(N) {
            Ok(Some(c)) => c,
            Ok(None) => {
                return check(
                    N,
                    Level::Warn,
                    "queue.db does not exist yet (the first start creates it)",
                    topics::CHECK_QUEUE,
                );
            }
            Err(c) => return c,
        };
        match db_check(conn, &self.home.queue_db(), self.full_check) {
            Ok(detail) => {
                // The counts are what status and the rest of the report read.
                match conn.query_row(
                    "SELECT COALESCE(SUM(n), 0) FROM job_state_counts",
                    [],
                    |r| r.get::<_, i64>(0),
                ) {
                    Ok(n) => check(
                        N,
                        Level::Ok,
                        format!("readable, {detail}; {}", display::plural(n, "job")),
                        topics::CHECK_QUEUE,
                    ),
                    Err(e) => self.sql_fail(N, e),
                }
            }
            Err(e) => check(
                N,
                Level::Fail,
                format!("queue.db is damaged ({e})"),
                db_topic(&e, topics::CORRUPT_DB),
            ),
        }
    }

    fn store_db(&self) -> Check {
        const N: &str = "store";
        let path = self.home.store_db();
        let conn = match crate::db::open_read_only(&path) {
            Ok(Some(c)) => c,
            Ok(None) => {
                return check(
                    N,
                    Level::Ok,
                    "store.db does not exist yet (the first run creates it)",
                    topics::CHECK_STORE,
                );
            }
            Err(e) => {
                return check(
                    N,
                    Level::Fail,
                    format!("store.db cannot be read ({e})"),
                    db_topic(&e, topics::STORE_CORRUPT),
                );
            }
        };
        match db_check(&conn, &path, self.full_check) {
            Ok(detail) => check(
                N,
                Level::Ok,
                format!("readable, {detail}"),
                topics::CHECK_STORE,
            ),
            Err(e) => check(
                N,
                Level::Fail,
                format!("store.db is damaged ({e})"),
                db_topic(&e, topics::STORE_CORRUPT),
            ),
        }
    }

    fn wal(&self) -> Check {
        let wal = std::fs::metadata(format!("{}-wal", self.home.queue_db().display()))
            .map(|m| m.len())
            .unwrap_or(0);
        let max = self.cfg.health.max_wal_mb.saturating_mul(MIB);
        let level = limit_level(wal, max);
        let detail = match level {
            Level::Ok => format!(
                "queue.db-wal is {} (limit health.max_wal_mb = {})",
                display::size(wal),
                self.cfg.health.max_wal_mb
            ),
            _ => format!(
                "queue.db-wal is {}, above health.max_wal_mb = {}: checkpoints are not keeping up \
                 (a long-running reader holds them back)",
                display::size(wal),
                self.cfg.health.max_wal_mb
            ),
        };
        check("wal", level, detail, topics::CHECK_WAL)
    }

    fn disk(&self) -> Check {
        let free = match crate::home::free_bytes(self.home.root()) {
            Ok(f) => f,
            Err(e) => {
                return check(
                    "disk",
                    Level::Fail,
                    format!("the free space of the home's filesystem cannot be read ({e})"),
                    topics::DISK_LOW,
                );
            }
        };
        let warn = self.cfg.health.min_free_mb.saturating_mul(MIB);
        let fail = self.cfg.queue.min_free_mb.saturating_mul(MIB);
        let level = disk_level(free, warn, fail);
        let detail = match level {
            Level::Fail => format!(
                "{} free, below queue.min_free_mb = {}: job outcomes and new jobs are not recorded",
                display::size(free),
                self.cfg.queue.min_free_mb
            ),
            Level::Warn => format!(
                "{} free, below health.min_free_mb = {}",
                display::size(free),
                self.cfg.health.min_free_mb
            ),
            _ => format!(
                "{} free (warn below health.min_free_mb = {}, fail below queue.min_free_mb = {})",
                display::size(free),
                self.cfg.health.min_free_mb,
                self.cfg.queue.min_free_mb
            ),
        };
        let topic = if level == Level::Ok {
            topics::CHECK_DISK
        } else {
            topics::DISK_LOW
        };
        check("disk", level, detail, topic)
    }

    fn config(&self) -> Check {
        const N: &str = "config";
        if let Some(e) = &self.config_error {
            return check(
                N,
                Level::Fail,
                format!("the configuration is invalid: {}", first_line(e)),
                topics::CONFIG_INVALID,
            );
        }
        if let Some(p) = self.unsafe_permissions() {
            return p;
        }
        if self.live.is_some()
            && let Some(stale) = reload::stale(self.home)
        {
            return check(
                N,
                Level::Warn,
                format!(
                    "the file changed after the orchestrator loaded it ({}); it still runs the \
                     previous configuration",
                    stale.brief()
                ),
                topics::CONFIG_STALE,
            );
        }
        check(
            N,
            Level::Ok,
            if self.live.is_some() {
                "valid, and what the orchestrator runs; permissions private"
            } else {
                "valid; permissions private"
            },
            topics::CHECK_CONFIG,
        )
    }

    /// The config file writable by others or owned by someone else fails (anyone could change
    /// what is ingested); a home or database file readable by others warns (the next start
    /// tightens it).
    fn unsafe_permissions(&self) -> Option<Check> {
        let me = rustix::process::geteuid().as_raw();
        let config_file = self.home.config_dir().join("orchestrator.yaml");
        for path in [self.home.config_dir(), config_file] {
            if let Ok(m) = path.symlink_metadata()
                && (m.uid() != me || m.mode() & 0o022 != 0)
            {
                return Some(check(
                    "config",
                    Level::Fail,
                    format!(
                        "{} is writable by other users or owned by another user (mode {:o})",
                        display_path(&path),
                        m.mode() & 0o777
                    ),
                    topics::HOME_NOT_PRIVATE,
                ));
            }
        }
        for path in [
            self.home.root().to_path_buf(),
            self.home.queue_db(),
            self.home.store_db(),
        ] {
            if let Ok(m) = path.symlink_metadata()
                && m.mode() & 0o077 != 0
            {
                return Some(check(
                    "config",
                    Level::Warn,
                    format!(
                        "{} is open to other users (mode {:o}); the next start makes it private",
                        display_path(&path),
                        m.mode() & 0o777
                    ),
                    topics::HOME_NOT_PRIVATE,
                ));
            }
        }
        None
    }

    fn quarantine(&self) -> Check {
        const N: &str = "quarantine";
        let conn = match self.conn(N) {
            Ok(Some(c)) => c,
            Ok(None) => return check(N, Level::Ok, "0 quarantined", topics::QUARANTINE),
            Err(c) => return c,
        };
        let count: i64 = match count_state(conn, JobState::Quarantined) {
            Ok(n) => n,
            Err(e) => return self.sql_fail(N, e),
        };
        // Growth: against the telemetry sample nearest an hour ago, when there is one.
        let hour_ago: Option<i64> = conn
            .query_row(
                "SELECT quarantined FROM telemetry_samples WHERE at <= ?1 ORDER BY at DESC LIMIT 1",
                [self.now - HOUR_MS],
                |r| r.get(0),
            )
            .optional()
            .ok()
            .flatten();
        let growth = hour_ago
            .map(|then| format!(", {:+} in the last hour", count - then))
            .unwrap_or_default();
        let max = self.cfg.health.max_quarantined;
        let level = limit_level(count.max(0) as u64, max);
        let detail = match level {
            Level::Ok => {
                format!("{count} quarantined (limit health.max_quarantined = {max}){growth}")
            }
            _ => format!(
                "{count} quarantined, above health.max_quarantined = {max}{growth}: they wait for \
                 an operator (`futurnal orchestrator quarantine list`)"
            ),
        };
        check(N, level, detail, topics::QUARANTINE)
    }

    fn pending_age(&self) -> Check {
        const N: &str = "pending_age";
        let conn = match self.conn(N) {
            Ok(Some(c)) => c,
            Ok(None) => return check(N, Level::Ok, "no job waits", topics::CHECK_PENDING),
            Err(c) => return c,
        };
        // The (state, scheduled_for) index answers MIN without a scan.
        let oldest: Option<i64> = match conn.query_row(
            "SELECT MIN(scheduled_for) FROM jobs WHERE state = ?1 AND scheduled_for <= ?2",
            rusqlite::params![JobState::Pending, self.now],
            |r| r.get(0),
        ) {
            Ok(v) => v,
            Err(e) => return self.sql_fail(N, e),
        };
        let max_minutes = self.cfg.health.max_pending_age_minutes;
        let Some(oldest) = oldest else {
            return check(N, Level::Ok, "no due job waits", topics::CHECK_PENDING);
        };
        let age = (self.now - oldest).max(0);
        let level = limit_level(age as u64, max_minutes.saturating_mul(60_000));
        let detail = match level {
            Level::Ok => format!(
                "the oldest due job has waited {} (limit health.max_pending_age_minutes = {max_minutes})",
                display::duration_ms(age)
            ),
            _ => format!(
                "the oldest due job has waited {}, longer than health.max_pending_age_minutes = \
                 {max_minutes}: jobs are not being claimed (paused sources, full per-source limits, \
                 or no orchestrator running)",
                display::duration_ms(age)
            ),
        };
        check(N, level, detail, topics::CHECK_PENDING)
    }

    fn throughput(&self) -> Check {
        const N: &str = "throughput";
        let floor = self.cfg.health.min_throughput_mbps;
        let conn = match self.conn(N) {
            Ok(Some(c)) => c,
            Ok(None) => {
                return check(
                    N,
                    Level::Ok,
                    "no jobs ran in the last hour",
                    topics::CHECK_THROUGHPUT,
                );
            }
            Err(c) => return c,
        };
        // The same figure as `telemetry throughput --since 1h`: bytes over the wall-clock time at
        // least one attempt that read something was running (an incremental run that found
        // nothing changed says nothing about speed).
        // A queue.db from before telemetry (schema 3) has nothing to judge.
        let version: i64 = match conn.query_row("PRAGMA user_version", [], |r| r.get(0)) {
            Ok(v) => v,
            Err(e) => return self.sql_fail(N, e),
        };
        let totals = if version < 3 {
            crate::telemetry::Totals::default()
        } else {
            match crate::telemetry::throughput(conn, self.now - HOUR_MS, self.now, None, 1) {
                Ok(t) => t.totals,
                Err(e) => return self.sql_fail(N, e),
            }
        };
        let (n, bytes) = (totals.jobs, totals.bytes);
        let run_ms = (totals.busy_seconds * 1000.0).round() as i64;
        if bytes == 0 {
            return check(
                N,
                Level::Ok,
                "no jobs ran in the last hour",
                topics::CHECK_THROUGHPUT,
            );
        }
        let mb = bytes as f64 / 1e6;
        let (level, mbps) = throughput_level(bytes, run_ms, floor);
        let detail = match (level, mbps) {
            (_, None) => format!(
                "{} read {mb:.1} MB in {} in the last hour: too little to judge (under {})",
                display::plural(n, "job"),
                display::duration_ms(run_ms),
                display::duration_ms(THROUGHPUT_MIN_RUN_MS)
            ),
            (Level::Ok, Some(r)) => format!(
                "{r:.1} MB/s over the last hour ({mb:.1} MB in {}; floor health.min_throughput_mbps = {floor})",
                display::duration_ms(run_ms)
            ),
            (_, Some(r)) => format!(
                "{r:.1} MB/s over the last hour ({mb:.1} MB in {}), below health.min_throughput_mbps = {floor}",
                display::duration_ms(run_ms)
            ),
        };
        check(N, level, detail, topics::CHECK_THROUGHPUT)
    }
}

/// The running daemon's enabled sources that have a schedule (from the configuration it
/// recorded); empty when it recorded none.
fn read_running_sources(conn: &Connection, instance_id: &str) -> Vec<String> {
    let json: Option<String> = conn
        .query_row(
            "SELECT config_json FROM daemon_instances WHERE instance_id = ?1",
            [instance_id],
            |r| r.get(0),
        )
        .optional()
        .ok()
        .flatten()
        .flatten();
    let Some(value) = json.and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok()) else {
        return Vec::new();
    };
    value["sources"]
        .as_array()
        .map(|sources| {
            sources
                .iter()
                .filter(|s| s["enabled"] != false)
                .filter(|s| s["schedule"].as_str().is_some_and(|v| v != "manual"))
                .filter_map(|s| s["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn count_state(conn: &Connection, state: JobState) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT n FROM job_state_counts WHERE state = ?1",
        [state],
        |r| r.get(0),
    )
    .optional()
    .map(|n| n.unwrap_or(0))
}

/// Check a database: `PRAGMA quick_check` when it is small or asked for by name; otherwise its
/// schema and the pages the other checks read (already done by then). The detail says which.
fn db_check(conn: &Connection, path: &Path, full: bool) -> Result<String, OpenError> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if full || size <= QUICK_CHECK_MAX_BYTES {
        crate::db::quick_check(conn).map_err(|e| match e {
            OpenError::Sqlite(e, _) => crate::db::diagnose(path, e, ""),
            other => other,
        })?;
        Ok(format!("quick check ok ({})", display::size(size)))
    } else {
        Ok(format!(
            "{}; quick check skipped in the full report (`health check` with this name runs it)",
            display::size(size)
        ))
    }
}

/// Permissions, or damage.
fn db_topic(e: &OpenError, damaged: &'static str) -> &'static str {
    match e {
        OpenError::NoAccess(_) => topics::DB_NOT_READABLE,
        _ => damaged,
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_is_its_worst_check() {
        assert_eq!(overall([]), Level::Ok);
        assert_eq!(overall([Level::Ok, Level::Ok]), Level::Ok);
        assert_eq!(overall([Level::Ok, Level::Warn, Level::Ok]), Level::Warn);
        assert_eq!(overall([Level::Warn, Level::Fail, Level::Ok]), Level::Fail);
    }

    #[test]
    fn disk_fails_below_the_queue_minimum_and_warns_below_healths() {
        assert_eq!(disk_level(100, 50, 10), Level::Ok);
        assert_eq!(disk_level(50, 50, 10), Level::Ok);
        assert_eq!(disk_level(49, 50, 10), Level::Warn);
        assert_eq!(disk_level(9, 50, 10), Level::Fail);
        // A health minimum below the queue's still fails at the queue's.
        assert_eq!(disk_level(9, 5, 10), Level::Fail);
    }

    #[test]
    fn limits_are_inclusive() {
        assert_eq!(limit_level(0, 0), Level::Ok);
        assert_eq!(limit_level(1, 0), Level::Warn);
        assert_eq!(limit_level(5, 5), Level::Ok);
        assert_eq!(limit_level(6, 5), Level::Warn);
    }

    #[test]
    fn throughput_judges_only_enough_work_and_counts_mb_as_a_million_bytes() {
        // 10 small runs of 1 s: too little to judge.
        assert_eq!(throughput_level(1_000, 10_000, 5.0), (Level::Ok, None));
        // 300 MB in 60 s is 5 MB/s (10^6 bytes), exactly the floor: ok.
        assert_eq!(
            throughput_level(300_000_000, 60_000, 5.0),
            (Level::Ok, Some(5.0))
        );
        let (level, mbps) = throughput_level(240_000_000, 60_000, 5.0);
        assert_eq!((level, mbps), (Level::Warn, Some(4.0)));
        // A floor of 0 turns the check off.
        assert_eq!(throughput_level(1, 60_000, 0.0).0, Level::Ok);
    }

    #[test]
    fn every_check_is_named_once_and_sinks_are_not_checks() {
        let mut names = NAMES.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), NAMES.len());
        for (sink, _) in ABSENT_SINKS {
            assert!(!NAMES.contains(sink));
            let r = absent_sink(sink).unwrap();
            assert_eq!(r.status, Level::NotApplicable);
        }
        assert!(absent_sink("disk").is_none());
    }

    #[test]
    fn the_checks_never_write_either_database() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("h"));
        std::fs::create_dir_all(home.root()).unwrap();
        crate::queue::QueueDb::open_for_daemon(&home.queue_db(), &crate::config::Queue::default())
            .unwrap();
        let before = std::fs::read(home.queue_db()).unwrap();
        let files = |h: &Home| {
            let mut v: Vec<_> = std::fs::read_dir(h.root())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        let listed = files(&home);
        let report = run(&home, Err("x".into()), None);
        assert_eq!(report.checks.len(), NAMES.len());
        for name in NAMES {
            run(&home, Err("x".into()), Some(name));
        }
        assert_eq!(std::fs::read(home.queue_db()).unwrap(), before);
        assert_eq!(
            files(&home),
            listed,
            "no file created (store.db, -wal, -shm)"
        );
    }
}
