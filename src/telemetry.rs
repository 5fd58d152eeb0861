//! Telemetry in queue.db: one row per finished attempt, the daemon's periodic samples, the reads
//! behind `telemetry throughput` and `telemetry failures`, and retention.
//!
//! Owns: `telemetry_attempts` (written by `workers` in the transaction that changes the job's
//! state, so an attempt is recorded exactly when its outcome is), `telemetry_samples`, and the
//! pruning of telemetry and of finished jobs (`prune_step`).
//! Invariants: an attempt's `outcome` is the state the attempt left its job in (`succeeded`,
//! `failed` = will retry, `quarantined`, `cancelled`, `pending` = handed back), bound as a
//! `JobState`; its `error` is the text queue.db keeps for the job (already redacted per
//! `security.path_redaction`); `documents` is new + changed documents. Pruning deletes only
//! `succeeded` and `cancelled` jobs (never pending, running, failed or quarantined ones, nor a run
//! one of whose item jobs is still one of those), their events and item errors with them, in
//! bounded batches, each its own transaction.
//! Throughput (MB = 10^6 bytes): the bytes read by the attempts that finished in the window,
//! divided by the wall-clock time during which at least one of those that read anything was
//! running (the union of their start..finish intervals); for one job alone it is the job's bytes
//! over its duration, as `jobs show` prints it.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use crate::failure::Failure;
use crate::jobs::{Job, JobState, RunNumbers};
use crate::queue::QueueDb;

/// Bytes in a megabyte: futurnal's MB and MB/s are decimal.
pub const MB: f64 = 1_000_000.0;

/// A rate in MB/s for operators: two significant digits below 10 (a slow source still shows),
/// one decimal above.
pub fn mbps_text(mbps: f64) -> String {
    if mbps >= 10.0 || mbps == 0.0 {
        format!("{mbps:.1} MB/s")
    } else if mbps >= 1.0 {
        format!("{mbps:.2} MB/s")
    } else {
        // 0.037 -> "0.037": enough decimals for two significant digits.
        let decimals = (-mbps.log10().floor()) as usize + 1;
        format!("{mbps:.decimals$} MB/s", decimals = decimals.min(9))
    }
}

/// A size in decimal units (B, kB, MB, GB), as throughput is counted.
pub fn decimal_size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b < 1e3 {
        format!("{bytes} B")
    } else if b < 1e6 {
        format!("{:.1} kB", b / 1e3)
    } else if b < 1e9 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} GB", b / 1e9)
    }
}

/// The jobs retention may delete: final, and nobody needs them again.
const PRUNABLE: [JobState; 2] = [JobState::Succeeded, JobState::Cancelled];

/// Record one finished attempt of `job` (as claimed: its source, kind and start), which left it
/// in `ended`. Runs in the caller's transaction, the one that wrote the state change.
pub fn record_attempt(
    tx: &Transaction<'_>,
    job: &Job,
    ended: JobState,
    failure: Option<&Failure>,
    finished_at: i64,
    numbers: &RunNumbers,
) -> rusqlite::Result<()> {
    let started = job.started_at.unwrap_or(finished_at).min(finished_at);
    tx.prepare_cached(
        "INSERT INTO telemetry_attempts (job_id, source, kind, outcome, error_class, error,
            started_at, finished_at, bytes, items, documents)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        job.id,
        job.source,
        job.kind,
        ended,
        failure.map(|f| f.class.as_str()),
        failure.map(|f| f.message.as_str()),
        started,
        finished_at,
        numbers.bytes.max(0),
        numbers.items_seen.max(0),
        (numbers.docs_new + numbers.docs_changed).max(0),
    ])
    .map(|_| ())
}

/// Record the attempt of job `id` from its row, after a change written in `tx` (a job rescued
/// from a lapsed lease: no worker here knows its numbers). `started_at` is the claim's.
pub fn record_from_row(tx: &Transaction<'_>, id: i64, finished_at: i64) -> rusqlite::Result<()> {
    let Some(job) = crate::jobs::get(tx, id)? else {
        return Ok(());
    };
    let failure = match (&job.error_class, &job.last_error, job.state) {
        (Some(class), Some(text), JobState::Quarantined | JobState::Failed) => {
            crate::failure::ErrorClass::parse(class).map(|c| Failure::new(c, text.clone()))
        }
        _ => None,
    };
    record_attempt(
        tx,
        &job,
        job.state,
        failure.as_ref(),
        finished_at,
        &RunNumbers::default(),
    )
}

/// One periodic sample of the queue and the machine.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    pub at: i64,
    pub pending: i64,
    pub running: i64,
    pub failed: i64,
    pub quarantined: i64,
    /// How long the oldest due pending job has waited since it became due.
    pub oldest_pending_ms: Option<i64>,
    /// How long the oldest running job has run.
    pub oldest_running_ms: Option<i64>,
    pub workers_busy: i64,
    pub wal_bytes: i64,
    pub free_disk_bytes: Option<i64>,
}

/// Take a sample now and store it.
pub fn record_sample(
    db: &QueueDb,
    now: i64,
    workers_busy: usize,
    free_disk_bytes: Option<u64>,
) -> Result<Sample, Box<dyn std::error::Error>> {
    let counts = db.job_counts()?;
    let count = |s: JobState| counts.iter().find(|(c, _)| *c == s).map_or(0, |c| c.1);
    let conn = db.conn();
    let sample = Sample {
        at: now,
        pending: count(JobState::Pending),
        running: count(JobState::Running),
        failed: count(JobState::Failed),
        quarantined: count(JobState::Quarantined),
        oldest_pending_ms: oldest_pending_ms(conn, now)?,
        oldest_running_ms: conn
            .query_row(
                "SELECT ?2 - MIN(started_at) FROM jobs WHERE state = ?1",
                params![JobState::Running, now],
                |r| r.get(0),
            )
            .optional()?
            .flatten(),
        workers_busy: workers_busy as i64,
        wal_bytes: db.file_facts()?.wal_bytes as i64,
        free_disk_bytes: free_disk_bytes.map(|b| b.min(i64::MAX as u64) as i64),
    };
    // Two samples in one millisecond (a restart): the later one wins.
    conn.execute(
        "INSERT OR REPLACE INTO telemetry_samples (at, pending, running, failed, quarantined,
            oldest_pending_ms, oldest_running_ms, workers_busy, wal_bytes, free_disk_bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            sample.at,
            sample.pending,
            sample.running,
            sample.failed,
            sample.quarantined,
            sample.oldest_pending_ms,
            sample.oldest_running_ms,
            sample.workers_busy,
            sample.wal_bytes,
            sample.free_disk_bytes
        ],
    )?;
    Ok(sample)
}

/// How long the oldest pending job that is due has waited (a job scheduled for later is not
/// waiting yet). Reads the `(state, scheduled_for)` index: one row.
pub fn oldest_pending_ms(conn: &Connection, now: i64) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT ?2 - MIN(scheduled_for) FROM jobs WHERE state = ?1 AND scheduled_for <= ?2",
        params![JobState::Pending, now],
        |r| r.get(0),
    )
}

/// The samples taken in `since..=until`, oldest first.
pub fn samples(conn: &Connection, since: i64, until: i64) -> rusqlite::Result<Vec<Sample>> {
    let mut stmt = conn.prepare(
        "SELECT at, pending, running, failed, quarantined, oldest_pending_ms, oldest_running_ms,
                workers_busy, wal_bytes, free_disk_bytes
         FROM telemetry_samples WHERE at >= ?1 AND at <= ?2 ORDER BY at",
    )?;
    stmt.query_map(params![since, until], |r| {
        Ok(Sample {
            at: r.get(0)?,
            pending: r.get(1)?,
            running: r.get(2)?,
            failed: r.get(3)?,
            quarantined: r.get(4)?,
            oldest_pending_ms: r.get(5)?,
            oldest_running_ms: r.get(6)?,
            workers_busy: r.get(7)?,
            wal_bytes: r.get(8)?,
            free_disk_bytes: r.get(9)?,
        })
    })?
    .collect()
}

// ---------------------------------------------------------------------------------------------
// Throughput.

/// Totals of a set of attempts.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    /// Attempts that finished in the window.
    pub attempts: i64,
    /// Distinct jobs those attempts belong to.
    pub jobs: i64,
    pub bytes: i64,
    pub items: i64,
    pub documents: i64,
    /// Wall-clock seconds during which at least one attempt that read bytes was running.
    pub busy_seconds: f64,
    /// `bytes / 10^6 / busy_seconds`; null when nothing was read in the window.
    pub throughput_mbps: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourceTotals {
    pub source: String,
    #[serde(flatten)]
    pub totals: Totals,
}

/// Bytes read by attempts that finished in one slice of the window (for the chart).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    pub start: i64,
    pub end: i64,
    pub bytes: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Throughput {
    pub since: i64,
    pub until: i64,
    pub source: Option<String>,
    #[serde(flatten)]
    pub totals: Totals,
    pub sources: Vec<SourceTotals>,
    pub buckets: Vec<Bucket>,
}

struct AttemptRow {
    job_id: i64,
    source: String,
    started_at: i64,
    finished_at: i64,
    bytes: i64,
    items: i64,
    documents: i64,
}

fn totals(rows: &[&AttemptRow]) -> Totals {
    let mut jobs: Vec<i64> = rows.iter().map(|r| r.job_id).collect();
    jobs.sort_unstable();
    jobs.dedup();
    let mut spans: Vec<(i64, i64)> = rows
        .iter()
        .filter(|r| r.bytes > 0)
        .map(|r| (r.started_at, r.finished_at.max(r.started_at)))
        .collect();
    spans.sort_unstable();
    // The union of the intervals: time when something was reading.
    let mut busy_ms = 0i64;
    let mut current: Option<(i64, i64)> = None;
    for (s, e) in spans {
        match &mut current {
            Some((_, ce)) if s <= *ce => *ce = (*ce).max(e),
            _ => {
                if let Some((cs, ce)) = current {
                    busy_ms += ce - cs;
                }
                current = Some((s, e));
            }
        }
    }
    if let Some((cs, ce)) = current {
        busy_ms += ce - cs;
    }
    let bytes: i64 = rows.iter().map(|r| r.bytes).sum();
    let busy_seconds = busy_ms as f64 / 1000.0;
    Totals {
        attempts: rows.len() as i64,
        jobs: jobs.len() as i64,
        bytes,
        items: rows.iter().map(|r| r.items).sum(),
        documents: rows.iter().map(|r| r.documents).sum(),
        busy_seconds,
        throughput_mbps: (bytes > 0 && busy_ms > 0).then(|| bytes as f64 / MB / busy_seconds),
    }
}

/// Throughput of the attempts that finished in `since..=until`, of one source or all, with a
/// per-source breakdown and `buckets` equal slices of the window.
pub fn throughput(
    conn: &Connection,
    since: i64,
    until: i64,
    source: Option<&str>,
    buckets: usize,
) -> rusqlite::Result<Throughput> {
    let mut stmt = conn.prepare(
        "SELECT job_id, source, started_at, finished_at, bytes, items, documents
         FROM telemetry_attempts
         WHERE finished_at >= ?1 AND finished_at <= ?2 AND (?3 IS NULL OR source = ?3)
         ORDER BY finished_at",
    )?;
    let rows: Vec<AttemptRow> = stmt
        .query_map(params![since, until, source], |r| {
            Ok(AttemptRow {
                job_id: r.get(0)?,
                source: r.get(1)?,
                started_at: r.get(2)?,
                finished_at: r.get(3)?,
                bytes: r.get(4)?,
                items: r.get(5)?,
                documents: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let all: Vec<&AttemptRow> = rows.iter().collect();
    let mut names: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let sources = names
        .into_iter()
        .map(|name| SourceTotals {
            source: name.to_string(),
            totals: totals(&rows.iter().filter(|r| r.source == name).collect::<Vec<_>>()),
        })
        .collect();
    let n = buckets.max(1) as i64;
    let span = (until - since).max(1);
    let mut slices: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            start: since + span * i / n,
            end: since + span * (i + 1) / n,
            bytes: 0,
        })
        .collect();
    for r in &rows {
        let i = (((r.finished_at - since) * n) / span).clamp(0, n - 1) as usize;
        slices[i].bytes += r.bytes;
    }
    Ok(Throughput {
        since,
        until,
        source: source.map(str::to_string),
        totals: totals(&all),
        sources,
        buckets: slices,
    })
}

// ---------------------------------------------------------------------------------------------
// Failures.

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Example {
    pub job_id: i64,
    pub at: i64,
    /// The state the attempt left its job in (`failed`: it retries; `quarantined`; `pending`:
    /// deferred without using an attempt).
    pub outcome: JobState,
    /// As queue.db keeps it: redacted per `security.path_redaction`.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FailureGroup {
    pub class: String,
    pub source: String,
    pub count: i64,
    pub latest: Example,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Count {
    pub name: String,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failures {
    pub since: i64,
    pub until: i64,
    /// Attempts that ended with an error in the window.
    pub total: i64,
    pub by_class: Vec<Count>,
    pub by_source: Vec<Count>,
    /// One entry per (class, source), most frequent first, with its latest example.
    pub groups: Vec<FailureGroup>,
}

/// Attempts that ended with an error in `since..=until`, by class and source.
pub fn failures(conn: &Connection, since: i64, until: i64) -> rusqlite::Result<Failures> {
    let mut stmt = conn.prepare(
        "SELECT error_class, source, COUNT(*) FROM telemetry_attempts
         WHERE finished_at >= ?1 AND finished_at <= ?2 AND error_class IS NOT NULL
         GROUP BY error_class, source ORDER BY COUNT(*) DESC, error_class, source",
    )?;
    let counts: Vec<(String, String, i64)> = stmt
        .query_map(params![since, until], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut latest = conn.prepare(
        "SELECT job_id, finished_at, outcome, error FROM telemetry_attempts
         WHERE finished_at >= ?1 AND finished_at <= ?2 AND error_class = ?3 AND source = ?4
         ORDER BY finished_at DESC, id DESC LIMIT 1",
    )?;
    let mut groups = Vec::new();
    for (class, source, count) in counts {
        let example = latest.query_row(params![since, until, class, source], |r| {
            Ok(Example {
                job_id: r.get(0)?,
                at: r.get(1)?,
                outcome: r.get(2)?,
                error: r.get(3)?,
            })
        })?;
        groups.push(FailureGroup {
            class,
            source,
            count,
            latest: example,
        });
    }
    let tally = |key: fn(&FailureGroup) -> &str| {
        let mut out: Vec<Count> = Vec::new();
        for g in &groups {
            match out.iter_mut().find(|c| c.name == key(g)) {
                Some(c) => c.count += g.count,
                None => out.push(Count {
                    name: key(g).to_string(),
                    count: g.count,
                }),
            }
        }
        out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        out
    };
    Ok(Failures {
        since,
        until,
        total: groups.iter().map(|g| g.count).sum(),
        by_class: tally(|g| &g.class),
        by_source: tally(|g| &g.source),
        groups,
    })
}

// ---------------------------------------------------------------------------------------------
// Retention.

/// What a pruning removed (or, for a dry run, would remove).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: i64,
    pub events: i64,
    pub item_errors: i64,
    pub attempts: i64,
    pub samples: i64,
}

impl Pruned {
    pub fn is_empty(&self) -> bool {
        *self == Pruned::default()
    }

    pub fn add(&mut self, other: Pruned) {
        self.jobs += other.jobs;
        self.events += other.events;
        self.item_errors += other.item_errors;
        self.attempts += other.attempts;
        self.samples += other.samples;
    }
}

/// Jobs of at most `limit` that retention may delete: succeeded or cancelled, last changed
/// before `cutoff`, and not a run with an item job still waiting, running or quarantined (its
/// item errors explain that job). A final job was due before it ran, so `scheduled_for <
/// cutoff` lets the `(state, scheduled_for)` index narrow the scan.
fn prunable_jobs(conn: &Connection, cutoff: i64, limit: i64) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM jobs
         WHERE state IN (?1, ?2) AND scheduled_for < ?3 AND updated_at < ?3
           AND id NOT IN (SELECT parent_job_id FROM jobs
                          WHERE state IN (?5, ?6, ?7, ?8) AND parent_job_id IS NOT NULL)
         LIMIT ?4",
    )?;
    stmt.query_map(
        params![
            PRUNABLE[0],
            PRUNABLE[1],
            cutoff,
            limit,
            JobState::Pending,
            JobState::Running,
            JobState::Failed,
            JobState::Quarantined
        ],
        |r| r.get(0),
    )?
    .collect()
}

/// What `prune_step` would remove, all of it, changing nothing (`clean --dry-run`).
pub fn count_prunable(conn: &Connection, cutoff: i64) -> rusqlite::Result<Pruned> {
    let ids = prunable_jobs(conn, cutoff, i64::MAX)?;
    let mut out = Pruned {
        jobs: ids.len() as i64,
        ..Default::default()
    };
    let mut events = conn.prepare_cached("SELECT COUNT(*) FROM job_events WHERE job_id = ?1")?;
    let mut errors =
        conn.prepare_cached("SELECT COUNT(*) FROM job_item_errors WHERE job_id = ?1")?;
    for id in &ids {
        out.events += events.query_row([id], |r| r.get::<_, i64>(0))?;
        out.item_errors += errors.query_row([id], |r| r.get::<_, i64>(0))?;
    }
    out.attempts = conn.query_row(
        "SELECT COUNT(*) FROM telemetry_attempts WHERE finished_at < ?1",
        [cutoff],
        |r| r.get(0),
    )?;
    out.samples = conn.query_row(
        "SELECT COUNT(*) FROM telemetry_samples WHERE at < ?1",
        [cutoff],
        |r| r.get(0),
    )?;
    Ok(out)
}

/// One bounded batch of retention, in one IMMEDIATE transaction: up to `batch` jobs (with their
/// events and item errors, deleted explicitly whether or not foreign keys cascade) and up to
/// `batch` attempts and samples older than `cutoff`. Empty when nothing is left to prune.
pub fn prune_step(conn: &Connection, cutoff: i64, batch: i64) -> rusqlite::Result<Pruned> {
    crate::jobs::in_transaction(conn, |tx| {
        let mut out = Pruned::default();
        for id in prunable_jobs(tx, cutoff, batch)? {
            out.item_errors += tx
                .prepare_cached("DELETE FROM job_item_errors WHERE job_id = ?1")?
                .execute([id])? as i64;
            out.events += tx
                .prepare_cached("DELETE FROM job_events WHERE job_id = ?1")?
                .execute([id])? as i64;
            out.jobs += tx
                .prepare_cached("DELETE FROM jobs WHERE id = ?1")?
                .execute([id])? as i64;
        }
        out.attempts = tx.execute(
            "DELETE FROM telemetry_attempts WHERE id IN
                (SELECT id FROM telemetry_attempts WHERE finished_at < ?1 LIMIT ?2)",
            params![cutoff, batch],
        )? as i64;
        out.samples = tx.execute(
            "DELETE FROM telemetry_samples WHERE at IN
                (SELECT at FROM telemetry_samples WHERE at < ?1 LIMIT ?2)",
            params![cutoff, batch],
        )? as i64;
        Ok(out)
    })
}

/// Everything older than `cutoff`, batch after batch (for `telemetry clean`: each batch is its
/// own transaction, so a running daemon waits at most one batch for queue.db).
pub fn prune_all(conn: &Connection, cutoff: i64, batch: i64) -> rusqlite::Result<Pruned> {
    let mut total = Pruned::default();
    loop {
        let step = prune_step(conn, cutoff, batch)?;
        if step.is_empty() {
            return Ok(total);
        }
        total.add(step);
    }
}

/// The retention cutoff for `days`, from `now`.
pub fn cutoff(now: i64, days: u32) -> i64 {
    now.saturating_sub(i64::from(days).saturating_mul(86_400_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SourceConfig, SourceType};
    use crate::jobs::{self, JobKind};

    fn fresh() -> (tempfile::TempDir, QueueDb) {
        let dir = tempfile::tempdir().unwrap();
        let db =
            QueueDb::open_for_daemon(&dir.path().join("queue.db"), &Default::default()).unwrap();
        (dir, db)
    }

    fn insert(db: &QueueDb, state: JobState, updated_at: i64, parent: Option<i64>) -> i64 {
        db.conn()
            .execute(
                "INSERT INTO jobs (source, kind, state, trigger, scheduled_for, max_attempts,
                    created_at, updated_at, parent_job_id) VALUES ('s', ?1, ?2, 't', ?3, 1, ?3, ?3, ?4)",
                params![
                    if parent.is_some() { JobKind::Item } else { JobKind::SourceRun },
                    state,
                    updated_at,
                    parent
                ],
            )
            .unwrap();
        let id = db.conn().last_insert_rowid();
        db.conn()
            .execute(
                "INSERT INTO job_events (job_id, at, to_state, actor) VALUES (?1, ?2, ?3, 't')",
                params![id, updated_at, state],
            )
            .unwrap();
        id
    }

    fn ids(db: &QueueDb) -> Vec<i64> {
        let mut stmt = db
            .conn()
            .prepare("SELECT id FROM jobs ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// Only old succeeded and cancelled jobs go, with their events and item errors, in batches;
    /// a run whose item job still needs an operator stays; the counts kept by triggers follow.
    #[test]
    fn pruning_removes_only_old_final_jobs_in_batches() {
        let (_d, db) = fresh();
        let old = 1_000;
        let cutoff = 10_000;
        let mut gone = Vec::new();
        for _ in 0..5 {
            gone.push(insert(&db, JobState::Succeeded, old, None));
        }
        gone.push(insert(&db, JobState::Cancelled, old, None));
        let mut kept = Vec::new();
        for state in [
            JobState::Pending,
            JobState::Running,
            JobState::Failed,
            JobState::Quarantined,
        ] {
            kept.push(insert(&db, state, old, None));
        }
        kept.push(insert(&db, JobState::Succeeded, cutoff + 1, None));
        // A run whose item job is quarantined: both stay.
        let parent = insert(&db, JobState::Succeeded, old, None);
        kept.push(parent);
        kept.push(insert(&db, JobState::Quarantined, old, Some(parent)));
        db.conn()
            .execute(
                "INSERT INTO job_item_errors (job_id, item, class, message) VALUES (?1, 'x', 'io', 'm')",
                [gone[0]],
            )
            .unwrap();
        for at in [old, old + 1, cutoff + 5] {
            db.conn()
                .execute(
                    "INSERT INTO telemetry_samples (at, pending, running, failed, quarantined,
                        workers_busy, wal_bytes) VALUES (?1, 0, 0, 0, 0, 0, 0)",
                    [at],
                )
                .unwrap();
        }
        let dry = count_prunable(db.conn(), cutoff).unwrap();
        assert_eq!(
            dry,
            Pruned {
                jobs: 6,
                events: 6,
                item_errors: 1,
                attempts: 0,
                samples: 2
            }
        );
        assert_eq!(ids(&db).len(), 6 + kept.len(), "a dry run changes nothing");
        let first = prune_step(db.conn(), cutoff, 4).unwrap();
        assert_eq!(first.jobs, 4, "bounded by the batch");
        let total = prune_all(db.conn(), cutoff, 4).unwrap();
        let mut all = first;
        all.add(total);
        assert_eq!(all, dry);
        let mut expect = kept.clone();
        expect.sort_unstable();
        assert_eq!(ids(&db), expect);
        let orphans: i64 = db
            .conn()
            .query_row(
                "SELECT (SELECT COUNT(*) FROM job_events WHERE job_id NOT IN (SELECT id FROM jobs))
                      + (SELECT COUNT(*) FROM job_item_errors WHERE job_id NOT IN (SELECT id FROM jobs))",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0);
        let counts = db.job_counts().unwrap();
        let full: i64 = db
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM jobs WHERE state = ?1",
                [JobState::Succeeded],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(counts[2], (JobState::Succeeded, full));
        assert!(prune_step(db.conn(), cutoff, 4).unwrap().is_empty());
    }

    /// Throughput is bytes over the union of reading intervals: one job alone gives its own
    /// bytes over its duration; overlapping jobs count their shared time once.
    #[test]
    fn rates_and_sizes_read_in_decimal_units() {
        assert_eq!(mbps_text(0.0374), "0.037 MB/s");
        assert_eq!(mbps_text(0.5), "0.50 MB/s");
        assert_eq!(mbps_text(2.0), "2.00 MB/s");
        assert_eq!(mbps_text(123.45), "123.5 MB/s");
        assert_eq!(decimal_size(999), "999 B");
        assert_eq!(decimal_size(1_236), "1.2 kB");
        assert_eq!(decimal_size(4_000_000), "4.0 MB");
    }

    #[test]
    fn throughput_is_bytes_over_the_time_something_was_reading() {
        let (_d, db) = fresh();
        let source = SourceConfig::new("s", SourceType::LocalFiles, "/x");
        let record = |start: i64, end: i64, bytes: i64, src: &str| {
            let id = jobs::enqueue_run(db.conn(), &source, "manual", "t", start)
                .unwrap()
                .id();
            let mut job = jobs::get(db.conn(), id).unwrap().unwrap();
            job.started_at = Some(start);
            job.source = src.to_string();
            let tx = jobs::immediate(db.conn()).unwrap();
            let n = RunNumbers {
                bytes,
                items_seen: 2,
                docs_new: 1,
                ..Default::default()
            };
            record_attempt(&tx, &job, JobState::Succeeded, None, end, &n).unwrap();
            tx.commit().unwrap();
            db.conn()
                .execute("DELETE FROM jobs WHERE id = ?1", [id])
                .unwrap();
        };
        record(10_000, 12_000, 4_000_000, "a");
        let t = throughput(db.conn(), 0, 100_000, None, 4).unwrap();
        assert_eq!(t.totals.throughput_mbps, Some(2.0));
        // Overlapping: 11..14 s with 2 MB; union 10..14 s, 6 MB: 1.5 MB/s.
        record(11_000, 14_000, 2_000_000, "b");
        // One that read nothing changes no time.
        record(50_000, 90_000, 0, "b");
        let t = throughput(db.conn(), 0, 100_000, None, 4).unwrap();
        assert_eq!(t.totals.busy_seconds, 4.0);
        assert_eq!(t.totals.throughput_mbps, Some(1.5));
        assert_eq!(
            (t.totals.attempts, t.totals.items, t.totals.documents),
            (3, 6, 3)
        );
        assert_eq!(t.sources.len(), 2);
        assert_eq!(t.sources[1].totals.throughput_mbps, Some(2.0 / 3.0));
        assert_eq!(t.buckets.iter().map(|b| b.bytes).sum::<i64>(), 6_000_000);
        assert_eq!(t.buckets[0].bytes, 6_000_000);
        let only_b = throughput(db.conn(), 0, 100_000, Some("b"), 4).unwrap();
        assert_eq!(only_b.totals.bytes, 2_000_000);
        let none = throughput(db.conn(), 95_000, 100_000, None, 4).unwrap();
        assert_eq!(none.totals.throughput_mbps, None);
    }
}
