//! The durable queue database (`queue.db`).
//!
//! Owns: opening queue.db with the right pragmas, schema migrations, and the rows that describe
//! daemon instances, recoveries and job counts.
//! Invariants: the schema version lives in `PRAGMA user_version` and only moves forward, one
//! transaction per migration; a database from a newer futurnal is refused, never modified; the
//! daemon is the only long-lived writer (CLI commands open short-lived connections); queue.db is
//! created 0600 before SQLite touches it, so its -wal and -shm files inherit that mode; a queue.db
//! the user may not read and write is diagnosed as a permission problem, never as damage.
//! Failures are `QueueError`s (the file and `db::OpenError`'s diagnosis); no operator prose or
//! runbook topic here: `error::queue_unusable` words them for the command that met them.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::config::Queue as QueueConfig;
use crate::db::OpenError;
use crate::home::display_path;
use crate::jobs::JobState;

/// Migrations, applied in order; index + 1 is the resulting `user_version`. Never edit a landed
/// migration: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: daemon bookkeeping and the job table.
    "CREATE TABLE daemon_instances (
        instance_id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        version TEXT NOT NULL,
        config_path TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL,
        stopped_at INTEGER,
        stop_kind TEXT CHECK (stop_kind IN ('clean', 'crashed')),
        workers_max INTEGER NOT NULL,
        workers_busy INTEGER NOT NULL DEFAULT 0,
        shutdown_grace_seconds INTEGER NOT NULL
    );
    CREATE TABLE recoveries (
        id INTEGER PRIMARY KEY,
        recovered_at INTEGER NOT NULL,
        instance_id TEXT NOT NULL,
        crashed_instance_id TEXT,
        crashed_pid INTEGER,
        crashed_started_at INTEGER,
        jobs_requeued INTEGER NOT NULL DEFAULT 0,
        jobs_poisoned INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('source_run', 'item')),
        item TEXT,
        state TEXT NOT NULL CHECK (state IN
            ('pending', 'running', 'succeeded', 'failed', 'quarantined', 'cancelled')),
        priority INTEGER NOT NULL DEFAULT 1,
        trigger TEXT NOT NULL,
        scheduled_for INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        crashes INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        instance_id TEXT,
        lease_until INTEGER,
        parent_job_id INTEGER,
        cancel_requested_at INTEGER,
        cancel_reason TEXT,
        error_class TEXT,
        last_error TEXT,
        items_total INTEGER NOT NULL DEFAULT 0,
        items_done INTEGER NOT NULL DEFAULT 0,
        items_seen INTEGER NOT NULL DEFAULT 0,
        docs_new INTEGER NOT NULL DEFAULT 0,
        docs_changed INTEGER NOT NULL DEFAULT 0,
        docs_unchanged INTEGER NOT NULL DEFAULT 0,
        docs_deleted INTEGER NOT NULL DEFAULT 0,
        items_skipped INTEGER NOT NULL DEFAULT 0,
        items_failed INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX jobs_by_state ON jobs (state, scheduled_for);
    CREATE INDEX jobs_by_source ON jobs (source, state);
    CREATE TABLE job_events (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT
    );
    CREATE TABLE job_item_errors (
        job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        item TEXT NOT NULL,
        class TEXT NOT NULL,
        message TEXT NOT NULL,
        item_job_id INTEGER,
        PRIMARY KEY (job_id, item)
    );
    CREATE TABLE source_state (
        name TEXT PRIMARY KEY,
        paused_at INTEGER,
        paused_reason TEXT,
        paused_by TEXT,
        last_scheduled_at INTEGER,
        next_run_at INTEGER
    );
    CREATE INDEX job_events_by_job ON job_events (job_id, at);",
    // 2 (configuration reload; read and written by daemon::reload): what configuration each
    // daemon instance runs (canonical JSON, its hash, how it was layered, a generation counted
    // up by every applied reload), and reload requests with the daemon's answers.
    "ALTER TABLE daemon_instances ADD COLUMN config_json TEXT;
    ALTER TABLE daemon_instances ADD COLUMN config_hash TEXT;
    ALTER TABLE daemon_instances ADD COLUMN config_layering TEXT;
    ALTER TABLE daemon_instances ADD COLUMN config_generation INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE daemon_instances ADD COLUMN config_loaded_at INTEGER;
    CREATE TABLE config_reloads (
        id INTEGER PRIMARY KEY,
        instance_id TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        requested_by TEXT NOT NULL,
        handled_at INTEGER,
        outcome TEXT CHECK (outcome IN ('applied', 'unchanged', 'invalid')),
        generation INTEGER,
        report TEXT
    );
    CREATE INDEX config_reloads_open ON config_reloads (instance_id, handled_at);",
    // 3: job counts per state kept by triggers, so `status` and `health` read six rows instead
    // of counting the whole table; and telemetry (telemetry.rs): one row per finished attempt,
    // kept when its job is pruned, and the daemon's periodic samples.
    "CREATE TABLE job_state_counts (
        state TEXT PRIMARY KEY,
        n INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO job_state_counts (state, n)
        SELECT column1, (SELECT COUNT(*) FROM jobs WHERE state = column1)
        FROM (VALUES ('pending'), ('running'), ('succeeded'), ('failed'), ('quarantined'),
                     ('cancelled'));
    CREATE TRIGGER job_state_counts_insert AFTER INSERT ON jobs BEGIN
        UPDATE job_state_counts SET n = n + 1 WHERE state = NEW.state;
    END;
    CREATE TRIGGER job_state_counts_delete AFTER DELETE ON jobs BEGIN
        UPDATE job_state_counts SET n = n - 1 WHERE state = OLD.state;
    END;
    CREATE TRIGGER job_state_counts_update AFTER UPDATE OF state ON jobs
        WHEN OLD.state IS NOT NEW.state BEGIN
        UPDATE job_state_counts SET n = n - 1 WHERE state = OLD.state;
        UPDATE job_state_counts SET n = n + 1 WHERE state = NEW.state;
    END;
    CREATE TABLE telemetry_attempts (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL,
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        outcome TEXT NOT NULL,
        error_class TEXT,
        error TEXT,
        started_at INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,
        bytes INTEGER NOT NULL DEFAULT 0,
        items INTEGER NOT NULL DEFAULT 0,
        documents INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX telemetry_attempts_by_time ON telemetry_attempts (finished_at);
    CREATE TABLE telemetry_samples (
        at INTEGER PRIMARY KEY,
        pending INTEGER NOT NULL,
        running INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        quarantined INTEGER NOT NULL,
        oldest_pending_ms INTEGER,
        oldest_running_ms INTEGER,
        workers_busy INTEGER NOT NULL,
        wal_bytes INTEGER NOT NULL,
        free_disk_bytes INTEGER
    );",
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Kept while callers still name the clock through the queue; it lives in `clock`.
pub use crate::clock::now_ms;

/// The tables that grow with history: a start's synchronous check leaves them to the full check
/// that runs in the background (`daemon::integrity`), so a start costs the same at 1M jobs.
pub const LARGE_TABLES: &[&str] = &[
    "jobs",
    "job_events",
    "job_item_errors",
    "telemetry_attempts",
    "telemetry_samples",
    "daemon_instances",
    "recoveries",
    "config_reloads",
];

/// A connection to queue.db.
pub struct QueueDb {
    conn: Connection,
    path: PathBuf,
}

/// queue.db could not be used: which file, and why. What the operator is told depends on the
/// command that met it (a start, a command reading the queue), so it is decided by the
/// operator-facing layer (`error::queue_unusable`), not here.
#[derive(Debug, thiserror::Error)]
#[error("queue database {}: {source}", display_path(path))]
pub struct QueueError {
    pub path: PathBuf,
    /// The diagnosis: permissions (`NoAccess`), damage (`is_corrupt`), a newer schema, or else.
    pub source: OpenError,
}

type Result<T, E = QueueError> = std::result::Result<T, E>;

fn db_error(path: &Path, err: rusqlite::Error) -> QueueError {
    open_error(path, crate::db::diagnose(path, err, ""))
}

fn open_error(path: &Path, err: OpenError) -> QueueError {
    QueueError {
        path: path.to_path_buf(),
        source: err,
    }
}

impl QueueDb {
    /// Open as the daemon does, checking every page: create if missing, set pragmas, check
    /// integrity, migrate.
    pub fn open_for_daemon(path: &Path, cfg: &QueueConfig) -> Result<QueueDb> {
        QueueDb::open_for_start(path, cfg, crate::db::Check::Full)
    }

    /// `open_for_daemon` with the start's `check`: all but `LARGE_TABLES`, whose pages the
    /// daemon checks in the background (`daemon::integrity`), unless a check failed before.
    pub fn open_for_start(
        path: &Path,
        cfg: &QueueConfig,
        check: crate::db::Check,
    ) -> Result<QueueDb> {
        let conn = crate::db::open_migrated(path, cfg.wal_mode, "FULL", MIGRATIONS, check, None)
            .map_err(|e| open_error(path, e))?;
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = {};",
            cfg.checkpoint_interval
        ))
        .map_err(|e| db_error(path, e))?;
        Ok(QueueDb {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Open an existing queue.db for a short-lived CLI command. `None` when it does not exist.
    pub fn connect(path: &Path) -> Result<Option<QueueDb>> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = crate::db::open_existing_rw(path).map_err(|e| open_error(path, e))?;
        // Deleting a job removes its events and item errors too.
        conn.execute_batch("PRAGMA foreign_keys = ON")
            .map_err(|e| db_error(path, e))?;
        let db = QueueDb {
            conn,
            path: path.to_path_buf(),
        };
        let version = db.user_version()?;
        if version > SCHEMA_VERSION {
            return Err(newer_schema(path, version));
        }
        Ok(Some(db))
    }

    /// Open an existing queue.db read-only, for a command that only reads: it never writes,
    /// checkpoints or creates anything. `None` when it does not exist.
    pub fn connect_read_only(path: &Path) -> Result<Option<QueueDb>> {
        let Some(conn) = crate::db::open_read_only(path).map_err(|e| open_error(path, e))? else {
            return Ok(None);
        };
        let db = QueueDb {
            conn,
            path: path.to_path_buf(),
        };
        let version = db.user_version()?;
        if version > SCHEMA_VERSION {
            return Err(newer_schema(path, version));
        }
        Ok(Some(db))
    }

    // `open_existing` and `read_existing`, the same opens with the error already in a command's
    // words, are defined in `error` (the operator-facing layer), so this module never depends
    // on it.

    pub fn user_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| db_error(&self.path, e))
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Job counts for every state, zero-filled, in `JobState::ALL` order.
    pub fn job_counts(&self) -> Result<Vec<(JobState, i64)>> {
        let mut counts: Vec<(JobState, i64)> = JobState::ALL.iter().map(|s| (*s, 0)).collect();
        if self.user_version()? == 0 {
            return Ok(counts);
        }
        // From migration 3 on, triggers keep the counts; an older queue.db (a command run before
        // the daemon migrated it) is counted.
        let sql = if self.user_version()? >= 3 {
            "SELECT state, n FROM job_state_counts"
        } else {
            "SELECT state, COUNT(*) FROM jobs GROUP BY state"
        };
        let mut stmt = self
            .conn
            .prepare(sql)
            .map_err(|e| db_error(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, JobState>(0)?, r.get::<_, i64>(1)?)))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| db_error(&self.path, e))?;
        for (state, n) in rows {
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == state) {
                slot.1 = n;
            }
        }
        Ok(counts)
    }

    pub fn insert_instance(&self, inst: &InstanceRow) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO daemon_instances (instance_id, pid, version, config_path, started_at,
                    heartbeat_at, workers_max, workers_busy, shutdown_grace_seconds)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, 0, ?7)",
                params![
                    inst.instance_id,
                    inst.pid,
                    inst.version,
                    inst.config_path,
                    inst.started_at,
                    inst.workers_max,
                    inst.shutdown_grace_seconds
                ],
            )
            .map(|_| ())
            .map_err(|e| db_error(&self.path, e))
    }

    pub fn heartbeat(&self, instance_id: &str, workers_busy: u32) -> Result<()> {
        self.conn
            .execute(
                "UPDATE daemon_instances SET heartbeat_at = ?2, workers_busy = ?3
                 WHERE instance_id = ?1",
                params![instance_id, now_ms(), workers_busy],
            )
            .map(|_| ())
            .map_err(|e| db_error(&self.path, e))
    }

    pub fn mark_stopped(&self, instance_id: &str, kind: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE daemon_instances SET stopped_at = ?2, stop_kind = ?3, workers_busy = 0
                 WHERE instance_id = ?1",
                params![instance_id, now_ms(), kind],
            )
            .map(|_| ())
            .map_err(|e| db_error(&self.path, e))
    }

    /// The most recently started daemon instance, if any.
    pub fn latest_instance(&self) -> Result<Option<InstanceRow>> {
        if self.user_version()? == 0 {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT instance_id, pid, version, config_path, started_at, heartbeat_at,
                        stopped_at, stop_kind, workers_max, workers_busy, shutdown_grace_seconds
                 FROM daemon_instances ORDER BY started_at DESC, rowid DESC LIMIT 1",
                [],
                |r| {
                    Ok(InstanceRow {
                        instance_id: r.get(0)?,
                        pid: r.get(1)?,
                        version: r.get(2)?,
                        config_path: r.get(3)?,
                        started_at: r.get(4)?,
                        heartbeat_at: r.get(5)?,
                        stopped_at: r.get(6)?,
                        stop_kind: r.get(7)?,
                        workers_max: r.get(8)?,
                        workers_busy: r.get(9)?,
                        shutdown_grace_seconds: r.get(10)?,
                    })
                },
            )
            .optional()
            .map_err(|e| db_error(&self.path, e))
    }

    pub fn latest_recovery(&self) -> Result<Option<RecoveryRow>> {
        if self.user_version()? == 0 {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT recovered_at, instance_id, crashed_instance_id, crashed_pid,
                        crashed_started_at, jobs_requeued, jobs_poisoned
                 FROM recoveries ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(RecoveryRow {
                        recovered_at: r.get(0)?,
                        instance_id: r.get(1)?,
                        crashed_instance_id: r.get(2)?,
                        crashed_pid: r.get(3)?,
                        crashed_started_at: r.get(4)?,
                        jobs_requeued: r.get(5)?,
                        jobs_poisoned: r.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(|e| db_error(&self.path, e))
    }

    /// Facts about the database file for `status --verbose`.
    pub fn file_facts(&self) -> Result<DbFacts> {
        let q = |sql: &str| -> Result<String> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| match v {
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                })
                .map_err(|e| db_error(&self.path, e))
        };
        let size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        let wal = std::fs::metadata(wal_path(&self.path))
            .map(|m| m.len())
            .unwrap_or(0);
        Ok(DbFacts {
            path: self.path.clone(),
            schema_version: self.user_version()?,
            journal_mode: q("PRAGMA journal_mode")?,
            size_bytes: size,
            wal_bytes: wal,
        })
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

fn newer_schema(path: &Path, version: i64) -> QueueError {
    open_error(
        path,
        OpenError::Newer {
            found: version,
            supported: SCHEMA_VERSION,
        },
    )
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceRow {
    pub instance_id: String,
    pub pid: i64,
    pub version: String,
    pub config_path: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub stopped_at: Option<i64>,
    pub stop_kind: Option<String>,
    pub workers_max: i64,
    pub workers_busy: i64,
    pub shutdown_grace_seconds: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecoveryRow {
    pub recovered_at: i64,
    pub instance_id: String,
    pub crashed_instance_id: Option<String>,
    pub crashed_pid: Option<i64>,
    pub crashed_started_at: Option<i64>,
    pub jobs_requeued: i64,
    pub jobs_poisoned: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DbFacts {
    pub path: PathBuf,
    pub schema_version: i64,
    pub journal_mode: String,
    pub size_bytes: u64,
    pub wal_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_fresh_db_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let cfg = QueueConfig::default();
        let db = QueueDb::open_for_daemon(&path, &cfg).unwrap();
        assert_eq!(db.user_version().unwrap(), SCHEMA_VERSION);
        drop(db);
        let db = QueueDb::open_for_daemon(&path, &cfg).unwrap();
        assert_eq!(db.user_version().unwrap(), SCHEMA_VERSION);
        let counts = db.job_counts().unwrap();
        assert_eq!(counts.len(), JobState::ALL.len());
        assert!(counts.iter().all(|(_, n)| *n == 0));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    /// The counts the triggers keep equal a full count after inserts, state changes and
    /// deletes, and a queue.db migrated with jobs in it starts from the right numbers.
    #[test]
    fn state_counts_kept_by_triggers_equal_a_full_count() {
        use crate::jobs::JobKind;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let db = QueueDb::open_for_daemon(&path, &QueueConfig::default()).unwrap();
        // Back to schema 2, with jobs in it.
        db.conn()
            .execute_batch(
                "DROP TRIGGER job_state_counts_insert; DROP TRIGGER job_state_counts_delete;
                 DROP TRIGGER job_state_counts_update; DROP TABLE job_state_counts;
                 DROP TABLE telemetry_attempts; DROP TABLE telemetry_samples;
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        let insert = |db: &QueueDb, kind: JobKind, state: JobState| {
            db.conn()
                .execute(
                    "INSERT INTO jobs (source, kind, state, trigger, scheduled_for, max_attempts,
                        created_at, updated_at) VALUES ('s', ?1, ?2, 't', 0, 1, 0, 0)",
                    rusqlite::params![kind, state],
                )
                .unwrap();
        };
        for state in [JobState::Pending, JobState::Pending, JobState::Quarantined] {
            insert(&db, JobKind::SourceRun, state);
        }
        drop(db);
        let db = QueueDb::open_for_daemon(&path, &QueueConfig::default()).unwrap();
        let full = |db: &QueueDb| -> Vec<(JobState, i64)> {
            JobState::ALL
                .iter()
                .map(|s| {
                    let n = db
                        .conn()
                        .query_row("SELECT COUNT(*) FROM jobs WHERE state = ?1", [s], |r| {
                            r.get(0)
                        })
                        .unwrap();
                    (*s, n)
                })
                .collect()
        };
        assert_eq!(db.job_counts().unwrap(), full(&db));
        let conn = db.conn();
        for _ in 0..2 {
            conn.execute(
                "UPDATE jobs SET state = ?1 WHERE id = 1",
                [JobState::Running],
            )
            .unwrap();
        }
        conn.execute("UPDATE jobs SET attempts = 2 WHERE id = 2", [])
            .unwrap();
        conn.execute("DELETE FROM jobs WHERE id = 3", []).unwrap();
        insert(&db, JobKind::Item, JobState::Failed);
        assert_eq!(db.job_counts().unwrap(), full(&db));
        assert_eq!(db.job_counts().unwrap()[1], (JobState::Running, 1));
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch("PRAGMA user_version = 999").unwrap();
        }
        let err = QueueDb::open_for_daemon(&path, &QueueConfig::default())
            .err()
            .unwrap();
        assert!(
            matches!(err.source, OpenError::Newer { found: 999, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("schema version 999"), "{err}");
    }

    #[test]
    fn refuses_garbage_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        std::fs::write(&path, vec![0x5au8; 8192]).unwrap();
        let err = QueueDb::open_for_daemon(&path, &QueueConfig::default())
            .err()
            .unwrap();
        assert!(err.source.is_corrupt(), "{err:?}");
        // The file must not have been modified.
        assert_eq!(std::fs::read(&path).unwrap(), vec![0x5au8; 8192]);
    }
}
