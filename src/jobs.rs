//! Jobs: the state machine and every queue operation on jobs and source state.
//!
//! States: `pending` (never attempted, or handed back by a shutdown or crash) → `running` →
//! `succeeded`, `failed` (the attempt failed; the job retries by itself at `scheduled_for`),
//! `quarantined` (retries exhausted, or a permanent failure: an operator must act) or
//! `cancelled` (an operator decided). `failed` jobs are claimed again when their time comes.
//! Invariants: every transition is one guarded UPDATE (`WHERE state = <expected>`) plus one
//! `job_events` row with time, actor and reason, in the same transaction; an attempt is counted
//! when a job is claimed; at most one `source_run` per source is pending (triggers coalesce) and at
//! most one runs; paused sources' jobs are never claimed.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde::Serialize;

use crate::config::{Priority, SourceConfig};
use crate::failure::Failure;

/// One priority level is worth this much waiting: a job gains a level every 5 minutes it waits,
/// so low-priority work never starves.
pub const AGING_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: i64,
    pub source: String,
    pub kind: String,
    pub item: Option<String>,
    pub state: String,
    pub priority: i64,
    pub trigger: String,
    pub scheduled_for: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub instance_id: Option<String>,
    pub parent_job_id: Option<i64>,
    pub cancel_requested_at: Option<i64>,
    pub cancel_reason: Option<String>,
    pub error_class: Option<String>,
    pub last_error: Option<String>,
    pub items_total: i64,
    pub items_done: i64,
    pub items_seen: i64,
    pub docs_new: i64,
    pub docs_changed: i64,
    pub docs_unchanged: i64,
    pub docs_deleted: i64,
    pub items_skipped: i64,
    pub items_failed: i64,
    pub bytes: i64,
}

const COLUMNS: &str = "id, source, kind, item, state, priority, trigger, scheduled_for, attempts,
    max_attempts, created_at, updated_at, started_at, finished_at, instance_id, parent_job_id,
    cancel_requested_at, cancel_reason, error_class, last_error, items_total, items_done,
    items_seen, docs_new, docs_changed, docs_unchanged, docs_deleted, items_skipped, items_failed,
    bytes";

fn job_from_row(r: &Row) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        source: r.get(1)?,
        kind: r.get(2)?,
        item: r.get(3)?,
        state: r.get(4)?,
        priority: r.get(5)?,
        trigger: r.get(6)?,
        scheduled_for: r.get(7)?,
        attempts: r.get(8)?,
        max_attempts: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        started_at: r.get(12)?,
        finished_at: r.get(13)?,
        instance_id: r.get(14)?,
        parent_job_id: r.get(15)?,
        cancel_requested_at: r.get(16)?,
        cancel_reason: r.get(17)?,
        error_class: r.get(18)?,
        last_error: r.get(19)?,
        items_total: r.get(20)?,
        items_done: r.get(21)?,
        items_seen: r.get(22)?,
        docs_new: r.get(23)?,
        docs_changed: r.get(24)?,
        docs_unchanged: r.get(25)?,
        docs_deleted: r.get(26)?,
        items_skipped: r.get(27)?,
        items_failed: r.get(28)?,
        bytes: r.get(29)?,
    })
}

impl Job {
    /// Finished for good. (`failed` is not: the job retries by itself.)
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.state.as_str(),
            "succeeded" | "quarantined" | "cancelled"
        )
    }

    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.finished_at? - self.started_at?)
    }

    pub fn priority_name(&self) -> &'static str {
        match self.priority {
            0 => "low",
            2 => "high",
            _ => "normal",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at: i64,
    pub from_state: Option<String>,
    pub to_state: String,
    pub actor: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemError {
    pub item: String,
    pub class: String,
    pub message: String,
    pub item_job_id: Option<i64>,
}

pub fn priority_value(p: Priority) -> i64 {
    match p {
        Priority::Low => 0,
        Priority::Normal => 1,
        Priority::High => 2,
    }
}

pub fn immediate(conn: &Connection) -> rusqlite::Result<Transaction<'_>> {
    Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
}

pub fn event(
    tx: &Connection,
    job: i64,
    at: i64,
    from: Option<&str>,
    to: &str,
    actor: &str,
    reason: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO job_events (job_id, at, from_state, to_state, actor, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![job, at, from, to, actor, reason])
    .map(|_| ())
}

/// Result of asking for a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Enqueued {
    New(i64),
    /// A run of this source was already waiting; the request joined it.
    Coalesced(i64),
}

impl Enqueued {
    pub fn id(self) -> i64 {
        match self {
            Enqueued::New(i) | Enqueued::Coalesced(i) => i,
        }
    }
}

/// Queue a run of `source`, or join the one already waiting.
pub fn enqueue_run(
    conn: &Connection,
    source: &SourceConfig,
    trigger: &str,
    actor: &str,
    max_attempts: u32,
    now: i64,
) -> rusqlite::Result<Enqueued> {
    let tx = immediate(conn)?;
    let existing: Option<(i64, String, i64)> = tx
        .query_row(
            "SELECT id, state, scheduled_for FROM jobs
             WHERE source = ?1 AND kind = 'source_run' AND state IN ('pending', 'failed')
             ORDER BY id LIMIT 1",
            [&source.name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    if let Some((id, state, scheduled_for)) = existing {
        if scheduled_for > now {
            // An explicit request does not wait for a retry's backoff.
            tx.execute(
                "UPDATE jobs SET scheduled_for = ?2, updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            event(
                &tx,
                id,
                now,
                Some(&state),
                &state,
                actor,
                &format!("brought forward ({trigger})"),
            )?;
        }
        tx.commit()?;
        return Ok(Enqueued::Coalesced(id));
    }
    tx.execute(
        "INSERT INTO jobs (source, kind, state, priority, trigger, scheduled_for, max_attempts,
            created_at, updated_at)
         VALUES (?1, 'source_run', 'pending', ?2, ?3, ?4, ?5, ?4, ?4)",
        params![
            source.name,
            priority_value(source.priority),
            trigger,
            now,
            max_attempts
        ],
    )?;
    let id = tx.last_insert_rowid();
    event(
        &tx,
        id,
        now,
        None,
        "pending",
        actor,
        &format!("queued ({trigger})"),
    )?;
    tx.commit()?;
    Ok(Enqueued::New(id))
}

/// Give a failed item its own job: pending with a retry time if the failure is transient,
/// quarantined at once if it is permanent. Joins an item job already open for the same item.
#[allow(clippy::too_many_arguments)]
pub fn enqueue_item(
    tx: &Connection,
    source: &SourceConfig,
    item: &str,
    parent: i64,
    failure: &Failure,
    retry_at: i64,
    max_attempts: u32,
    now: i64,
) -> rusqlite::Result<i64> {
    let existing: Option<i64> = tx
        .query_row(
            "SELECT id FROM jobs WHERE source = ?1 AND kind = 'item' AND item = ?2
             AND state IN ('pending', 'failed', 'running', 'quarantined') ORDER BY id DESC LIMIT 1",
            params![source.name, item],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let permanent = !failure.class.is_transient() || max_attempts <= 1;
    let state = if permanent { "quarantined" } else { "failed" };
    tx.execute(
        "INSERT INTO jobs (source, kind, item, state, priority, trigger, scheduled_for, attempts,
            max_attempts, created_at, updated_at, finished_at, parent_job_id, error_class, last_error)
         VALUES (?1, 'item', ?2, ?3, ?4, 'retry', ?5, 1, ?6, ?7, ?7, ?8, ?9, ?10, ?11)",
        params![
            source.name,
            item,
            state,
            priority_value(source.priority),
            if permanent { now } else { retry_at },
            max_attempts,
            now,
            if permanent { Some(now) } else { None },
            parent,
            failure.class.as_str(),
            failure.message
        ],
    )?;
    let id = tx.last_insert_rowid();
    let reason = if permanent {
        format!(
            "{} in run job {parent} (permanent): {}",
            failure.class, failure.message
        )
    } else {
        format!(
            "{} in run job {parent}: {}; retry {} of {} at {}",
            failure.class,
            failure.message,
            2,
            max_attempts,
            crate::display::timestamp(retry_at)
        )
    };
    event(tx, id, now, None, state, "daemon", &reason)?;
    Ok(id)
}

/// Is any job waiting and due? A plain read, so an idle scheduler tick never takes the write
/// lock that `claim` needs.
pub fn any_due(conn: &Connection, now: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE state IN ('pending', 'failed')
                          AND scheduled_for <= ?1)",
    )?
    .query_row([now], |r| r.get(0))
}

/// Claim the next runnable job for this instance, honouring pauses, per-source limits and
/// priority with aging.
pub fn claim(
    conn: &Connection,
    now: i64,
    instance_id: &str,
    lease_ms: i64,
    sources: &[SourceConfig],
    paused: &HashSet<String>,
) -> rusqlite::Result<Option<Job>> {
    let tx = immediate(conn)?;
    let mut running: HashMap<(String, String), i64> = HashMap::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT source, kind, COUNT(*) FROM jobs WHERE state = 'running' GROUP BY source, kind",
        )?;
        let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
        for row in rows {
            let (k, n) = row?;
            running.insert(k, n);
        }
    }
    let candidates: Vec<Job> = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE state IN ('pending', 'failed') AND scheduled_for <= ?1
             ORDER BY priority * ?2 + (?1 - created_at) DESC, id LIMIT 64"
        ))?;
        stmt.query_map(params![now, AGING_MS], job_from_row)?
            .collect::<rusqlite::Result<_>>()?
    };
    let chosen = candidates.into_iter().find(|job| {
        let Some(src) = sources.iter().find(|s| s.name == job.source && s.enabled) else {
            return false;
        };
        if paused.contains(&job.source) {
            return false;
        }
        let runs = running
            .get(&(job.source.clone(), "source_run".into()))
            .copied()
            .unwrap_or(0);
        let items = running
            .get(&(job.source.clone(), "item".into()))
            .copied()
            .unwrap_or(0);
        if job.kind == "source_run" && runs > 0 {
            return false;
        }
        runs + items < src.concurrency as i64
    });
    let Some(mut job) = chosen else {
        tx.commit()?;
        return Ok(None);
    };
    let n = tx.execute(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?2,
            finished_at = NULL, updated_at = ?2, instance_id = ?3, lease_until = ?4,
            items_done = 0, items_total = 0
         WHERE id = ?1 AND state = ?5",
        params![job.id, now, instance_id, now + lease_ms, job.state],
    )?;
    if n != 1 {
        tx.commit()?;
        return Ok(None);
    }
    job.attempts += 1;
    let from = std::mem::replace(&mut job.state, "running".into());
    job.started_at = Some(now);
    event(
        &tx,
        job.id,
        now,
        Some(&from),
        "running",
        "daemon",
        &format!("attempt {} of {}", job.attempts, job.max_attempts),
    )?;
    tx.commit()?;
    Ok(Some(job))
}

/// Counts a finished run reports.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunNumbers {
    pub items_seen: i64,
    pub docs_new: i64,
    pub docs_changed: i64,
    pub docs_unchanged: i64,
    pub docs_deleted: i64,
    pub items_skipped: i64,
    pub items_failed: i64,
    pub bytes: i64,
}

/// Move a running job to a terminal state, with its numbers and error.
#[allow(clippy::too_many_arguments)]
pub fn finish(
    tx: &Connection,
    id: i64,
    to: &str,
    now: i64,
    actor: &str,
    reason: &str,
    numbers: &RunNumbers,
    failure: Option<&Failure>,
) -> rusqlite::Result<bool> {
    let n = tx.execute(
        "UPDATE jobs SET state = ?2, finished_at = ?3, updated_at = ?3, lease_until = NULL,
            items_seen = ?4, docs_new = ?5, docs_changed = ?6, docs_unchanged = ?7,
            docs_deleted = ?8, items_skipped = ?9, items_failed = ?10, bytes = ?11,
            error_class = COALESCE(?12, error_class), last_error = COALESCE(?13, last_error)
         WHERE id = ?1 AND state = 'running'",
        params![
            id,
            to,
            now,
            numbers.items_seen,
            numbers.docs_new,
            numbers.docs_changed,
            numbers.docs_unchanged,
            numbers.docs_deleted,
            numbers.items_skipped,
            numbers.items_failed,
            numbers.bytes,
            failure.map(|f| f.class.as_str()),
            failure.map(|f| f.message.as_str())
        ],
    )?;
    if n == 1 {
        event(tx, id, now, Some("running"), to, actor, reason)?;
    }
    Ok(n == 1)
}

/// A running job that failed with retries left becomes `failed` and is retried at `retry_at`.
pub fn retry_later(
    tx: &Connection,
    id: i64,
    now: i64,
    retry_at: i64,
    failure: &Failure,
    reason: &str,
) -> rusqlite::Result<bool> {
    let n = tx.execute(
        "UPDATE jobs SET state = 'failed', scheduled_for = ?3, updated_at = ?2, finished_at = ?2,
            lease_until = NULL, instance_id = NULL, error_class = ?4, last_error = ?5
         WHERE id = ?1 AND state = 'running'",
        params![id, now, retry_at, failure.class.as_str(), failure.message],
    )?;
    if n == 1 {
        event(tx, id, now, Some("running"), "failed", "daemon", reason)?;
    }
    Ok(n == 1)
}

/// A running job stopped without failing (shutdown, crash): back to pending, attempt not counted.
pub fn requeue(
    tx: &Connection,
    id: i64,
    now: i64,
    actor: &str,
    reason: &str,
) -> rusqlite::Result<bool> {
    let n = tx.execute(
        "UPDATE jobs SET state = 'pending', attempts = MAX(attempts - 1, 0), updated_at = ?2,
            scheduled_for = ?2, lease_until = NULL, instance_id = NULL, items_done = 0
         WHERE id = ?1 AND state = 'running'",
        params![id, now],
    )?;
    if n == 1 {
        event(tx, id, now, Some("running"), "pending", actor, reason)?;
    }
    Ok(n == 1)
}

pub fn progress(conn: &Connection, id: i64, done: i64, total: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET items_done = ?2, items_total = ?3 WHERE id = ?1 AND state = 'running'",
    )?
    .execute(params![id, done, total])
    .map(|_| ())
}

/// Extend the leases of running jobs that are making progress.
pub fn renew_leases(
    conn: &Connection,
    ids: &[i64],
    now: i64,
    lease_ms: i64,
) -> rusqlite::Result<()> {
    let mut stmt = conn
        .prepare_cached("UPDATE jobs SET lease_until = ?2 WHERE id = ?1 AND state = 'running'")?;
    for id in ids {
        stmt.execute(params![id, now + lease_ms])?;
    }
    Ok(())
}

/// A job that was running each time the orchestrator died this many times is poison: it is
/// quarantined instead of being run again (it may be what kills the orchestrator).
pub const POISON_AFTER_CRASHES: i64 = 3;

/// What start-up recovery did to jobs an earlier instance left running.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Orphans {
    pub requeued: i64,
    pub poisoned: i64,
}

/// At start: jobs left running by an earlier instance go back to pending, attempt not counted;
/// a job that was running during `POISON_AFTER_CRASHES` crashes is quarantined as `poison`.
pub fn requeue_orphans(
    conn: &Connection,
    instance_id: &str,
    now: i64,
) -> rusqlite::Result<Orphans> {
    let tx = immediate(conn)?;
    let orphans: Vec<(i64, i64)> = {
        let mut stmt = tx.prepare(
            "SELECT id, crashes FROM jobs WHERE state = 'running'
             AND COALESCE(instance_id, '') != ?1",
        )?;
        stmt.query_map([instance_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut out = Orphans::default();
    for (id, crashes) in orphans {
        let crashes = crashes + 1;
        tx.execute(
            "UPDATE jobs SET crashes = ?2 WHERE id = ?1",
            params![id, crashes],
        )?;
        if crashes >= POISON_AFTER_CRASHES {
            let failure = Failure::new(
                crate::failure::ErrorClass::Poison,
                format!("the orchestrator stopped uncleanly {crashes} times while this job ran"),
            );
            finish(
                &tx,
                id,
                "quarantined",
                now,
                "recovery",
                &failure.to_string(),
                &RunNumbers::default(),
                Some(&failure),
            )?;
            out.poisoned += 1;
        } else {
            requeue(
                &tx,
                id,
                now,
                "recovery",
                "the orchestrator stopped uncleanly while this ran",
            )?;
            out.requeued += 1;
        }
    }
    tx.commit()?;
    Ok(out)
}

/// A running job that must wait (its store was busy): back to pending until `retry_at`, without
/// using up the attempt.
pub fn defer(
    tx: &Connection,
    id: i64,
    now: i64,
    retry_at: i64,
    reason: &str,
) -> rusqlite::Result<bool> {
    let n = tx.execute(
        "UPDATE jobs SET state = 'pending', attempts = MAX(attempts - 1, 0), updated_at = ?2,
            scheduled_for = ?3, lease_until = NULL, instance_id = NULL, items_done = 0
         WHERE id = ?1 AND state = 'running'",
        params![id, now, retry_at],
    )?;
    if n == 1 {
        event(tx, id, now, Some("running"), "pending", "daemon", reason)?;
    }
    Ok(n == 1)
}

/// What `jobs cancel` did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// It was waiting (pending, or failed awaiting its retry) and will never run.
    Cancelled,
    /// It is running; the daemon stops it cooperatively.
    Requested,
    /// It had already finished in this state.
    AlreadyFinished(String),
}

pub fn request_cancel(
    conn: &Connection,
    id: i64,
    reason: &str,
    actor: &str,
    now: i64,
) -> rusqlite::Result<Option<CancelOutcome>> {
    let tx = immediate(conn)?;
    let state: Option<String> = tx
        .query_row("SELECT state FROM jobs WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    let outcome = match state.as_deref() {
        None => None,
        Some(waiting @ ("pending" | "failed")) => {
            tx.execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = ?2, updated_at = ?2,
                    cancel_requested_at = ?2, cancel_reason = ?3 WHERE id = ?1 AND state = ?4",
                params![id, now, reason, waiting],
            )?;
            event(&tx, id, now, Some(waiting), "cancelled", actor, reason)?;
            Some(CancelOutcome::Cancelled)
        }
        Some("running") => {
            tx.execute(
                "UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?2),
                    cancel_reason = ?3, updated_at = ?2 WHERE id = ?1",
                params![id, now, reason],
            )?;
            event(
                &tx,
                id,
                now,
                Some("running"),
                "running",
                actor,
                &format!("cancel requested: {reason}"),
            )?;
            Some(CancelOutcome::Requested)
        }
        Some(other) => Some(CancelOutcome::AlreadyFinished(other.to_string())),
    };
    tx.commit()?;
    Ok(outcome)
}

/// Running jobs with a cancel request: (id, requested at).
pub fn cancel_requests(conn: &Connection) -> rusqlite::Result<Vec<(i64, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, cancel_requested_at FROM jobs
         WHERE state = 'running' AND cancel_requested_at IS NOT NULL",
    )?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

pub fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Job>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
        [id],
        job_from_row,
    )
    .optional()
}

pub fn events(conn: &Connection, id: i64) -> rusqlite::Result<Vec<Event>> {
    let mut stmt = conn.prepare(
        "SELECT at, from_state, to_state, actor, reason FROM job_events WHERE job_id = ?1
         ORDER BY at, id",
    )?;
    stmt.query_map([id], |r| {
        Ok(Event {
            at: r.get(0)?,
            from_state: r.get(1)?,
            to_state: r.get(2)?,
            actor: r.get(3)?,
            reason: r.get(4)?,
        })
    })?
    .collect()
}

pub fn item_errors(conn: &Connection, id: i64) -> rusqlite::Result<Vec<ItemError>> {
    let mut stmt = conn.prepare(
        "SELECT item, class, message, item_job_id FROM job_item_errors WHERE job_id = ?1 ORDER BY item",
    )?;
    stmt.query_map([id], |r| {
        Ok(ItemError {
            item: r.get(0)?,
            class: r.get(1)?,
            message: r.get(2)?,
            item_job_id: r.get(3)?,
        })
    })?
    .collect()
}

pub fn record_item_error(
    tx: &Connection,
    job: i64,
    item: &str,
    failure: &Failure,
    item_job: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO job_item_errors (job_id, item, class, message, item_job_id)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        job,
        item,
        failure.class.as_str(),
        failure.message,
        item_job
    ])
    .map(|_| ())
}

/// Item jobs still open for items a run has now ingested: close them as succeeded.
pub fn resolve_items(
    tx: &Connection,
    source: &str,
    items: &[String],
    by_job: i64,
    now: i64,
) -> rusqlite::Result<()> {
    // A run can ingest many thousands of items while only a handful (usually none) have an open
    // item job: look the open ones up once instead of querying per item.
    let open: Vec<(i64, String, String)> = tx
        .prepare_cached(
            "SELECT id, item, state FROM jobs WHERE source = ?1 AND kind = 'item'
             AND state IN ('pending', 'failed', 'quarantined')",
        )?
        .query_map([source], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if open.is_empty() {
        return Ok(());
    }
    let ingested: std::collections::HashSet<&str> = items.iter().map(String::as_str).collect();
    let mut close = tx.prepare_cached(
        "UPDATE jobs SET state = 'succeeded', finished_at = ?2, updated_at = ?2
         WHERE id = ?1 AND state = ?3",
    )?;
    for (id, item, state) in open {
        if ingested.contains(item.as_str()) && close.execute(params![id, now, state])? == 1 {
            event(
                tx,
                id,
                now,
                Some(&state),
                "succeeded",
                "daemon",
                &format!("ingested by run job {by_job}"),
            )?;
        }
    }
    Ok(())
}

/// Earlier runs of a source left in quarantine (a crash, exhausted retries) are done once a later
/// run of the source succeeds: that run did their work. Close them as succeeded, saying which run
/// did, so the quarantine holds only what still needs an operator. Returns how many were closed.
pub fn resolve_runs(
    tx: &Connection,
    source: &str,
    by_job: i64,
    now: i64,
) -> rusqlite::Result<usize> {
    let stale: Vec<i64> = tx
        .prepare_cached(
            "SELECT id FROM jobs WHERE source = ?1 AND kind = 'source_run'
             AND state = 'quarantined' AND id < ?2",
        )?
        .query_map(params![source, by_job], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut close = tx.prepare_cached(
        "UPDATE jobs SET state = 'succeeded', updated_at = ?2
         WHERE id = ?1 AND state = 'quarantined'",
    )?;
    let mut n = 0;
    for id in stale {
        if close.execute(params![id, now])? == 1 {
            event(
                tx,
                id,
                now,
                Some("quarantined"),
                "succeeded",
                "daemon",
                &format!("resolved: a later run of this source (job {by_job}) succeeded"),
            )?;
            n += 1;
        }
    }
    Ok(n)
}

/// Filters for the quarantine commands.
#[derive(Debug, Clone, Default)]
pub struct QuarantineFilter {
    pub reason: Option<String>,
    pub source: Option<String>,
    /// Only jobs quarantined before this time.
    pub before: Option<i64>,
    pub id: Option<i64>,
}

/// Quarantined jobs, oldest first.
pub fn quarantined(conn: &Connection, f: &QuarantineFilter) -> rusqlite::Result<Vec<Job>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE state = 'quarantined'
           AND (?1 IS NULL OR error_class = ?1) AND (?2 IS NULL OR source = ?2)
           AND (?3 IS NULL OR COALESCE(finished_at, updated_at) < ?3)
           AND (?4 IS NULL OR id = ?4)
         ORDER BY id"
    ))?;
    stmt.query_map(params![f.reason, f.source, f.before, f.id], job_from_row)?
        .collect()
}

/// Give a quarantined job a fresh set of attempts, to run at `at`. The note goes into its
/// timeline.
pub fn retry_quarantined(
    tx: &Connection,
    id: i64,
    max_attempts: u32,
    at: i64,
    now: i64,
    actor: &str,
    note: &str,
) -> rusqlite::Result<bool> {
    let n = tx.execute(
        "UPDATE jobs SET state = 'pending', attempts = 0, crashes = 0, max_attempts = ?2,
            scheduled_for = ?3, updated_at = ?4, finished_at = NULL, instance_id = NULL,
            lease_until = NULL
         WHERE id = ?1 AND state = 'quarantined'",
        params![id, max_attempts, at, now],
    )?;
    if n == 1 {
        event(
            tx,
            id,
            now,
            Some("quarantined"),
            "pending",
            actor,
            &format!("retried from quarantine: {note}"),
        )?;
    }
    Ok(n == 1)
}

/// Delete quarantined jobs (their events and item errors go with them).
pub fn purge_quarantined(tx: &Connection, ids: &[i64]) -> rusqlite::Result<usize> {
    let mut stmt = tx.prepare_cached("DELETE FROM jobs WHERE id = ?1 AND state = 'quarantined'")?;
    let mut n = 0;
    for id in ids {
        n += stmt.execute([id])?;
    }
    Ok(n)
}

/// Filters for `jobs list`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: Option<String>,
    pub source: Option<String>,
    pub since: Option<i64>,
    pub limit: usize,
}

pub fn list(conn: &Connection, f: &ListFilter) -> rusqlite::Result<Vec<Job>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM jobs
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR source = ?2)
           AND (?3 IS NULL OR updated_at >= ?3)
         ORDER BY id DESC LIMIT ?4"
    ))?;
    stmt.query_map(
        params![f.state, f.source, f.since, f.limit as i64],
        job_from_row,
    )?
    .collect()
}

/// A source's newest finished run, and its newest successful one.
pub type LastRuns = (Option<Job>, Option<Job>);

/// The newest finished run of each source, and the newest successful one.
pub fn last_runs(conn: &Connection) -> rusqlite::Result<HashMap<String, LastRuns>> {
    let mut out: HashMap<String, LastRuns> = HashMap::new();
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE id IN (
            SELECT MAX(id) FROM jobs WHERE kind = 'source_run'
              AND state IN ('succeeded', 'failed', 'quarantined', 'cancelled') GROUP BY source
            UNION
            SELECT MAX(id) FROM jobs WHERE kind = 'source_run' AND state = 'succeeded' GROUP BY source)"
    ))?;
    let jobs: Vec<Job> = stmt
        .query_map([], job_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    for job in jobs {
        let entry = out.entry(job.source.clone()).or_default();
        if job.state == "succeeded" && entry.1.as_ref().is_none_or(|j| j.id < job.id) {
            entry.1 = Some(job.clone());
        }
        if entry.0.as_ref().is_none_or(|j| j.id < job.id) {
            entry.0 = Some(job);
        }
    }
    Ok(out)
}

/// Pause and schedule bookkeeping of a source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceState {
    pub paused_at: Option<i64>,
    pub paused_reason: Option<String>,
    pub paused_by: Option<String>,
    pub last_scheduled_at: Option<i64>,
    pub next_run_at: Option<i64>,
}

pub fn source_states(conn: &Connection) -> rusqlite::Result<HashMap<String, SourceState>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, paused_at, paused_reason, paused_by, last_scheduled_at, next_run_at
         FROM source_state",
    )?;
    stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            SourceState {
                paused_at: r.get(1)?,
                paused_reason: r.get(2)?,
                paused_by: r.get(3)?,
                last_scheduled_at: r.get(4)?,
                next_run_at: r.get(5)?,
            },
        ))
    })?
    .collect()
}

/// Pause a source. `Ok(false)` if it was already paused (the first reason is kept).
pub fn pause(
    conn: &Connection,
    name: &str,
    reason: &str,
    actor: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "INSERT INTO source_state (name, paused_at, paused_reason, paused_by)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET paused_at = excluded.paused_at,
            paused_reason = excluded.paused_reason, paused_by = excluded.paused_by
         WHERE source_state.paused_at IS NULL",
        params![name, now, reason, actor],
    )?;
    Ok(n == 1)
}

/// Resume a source. `Ok(false)` if it was not paused.
pub fn resume(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE source_state SET paused_at = NULL, paused_reason = NULL, paused_by = NULL
         WHERE name = ?1 AND paused_at IS NOT NULL",
        [name],
    )?;
    Ok(n == 1)
}

pub fn set_schedule_marks(
    conn: &Connection,
    name: &str,
    last: Option<i64>,
    next: Option<i64>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO source_state (name, last_scheduled_at, next_run_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET last_scheduled_at = excluded.last_scheduled_at,
            next_run_at = excluded.next_run_at",
    )?
    .execute(params![name, last, next])
    .map(|_| ())
}

/// Open jobs per source: pending and running counts.
pub fn open_counts(conn: &Connection) -> rusqlite::Result<HashMap<String, (i64, i64)>> {
    let mut out: HashMap<String, (i64, i64)> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT source, state, COUNT(*) FROM jobs WHERE state IN ('pending', 'running')
         GROUP BY source, state",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (source, state, n) = row?;
        let e = out.entry(source).or_default();
        if state == "pending" {
            e.0 = n;
        } else {
            e.1 = n;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceType;

    fn source(name: &str, priority: Priority) -> SourceConfig {
        SourceConfig {
            priority,
            ..SourceConfig::new(name, SourceType::LocalFiles, "/x")
        }
    }

    fn fresh_db() -> (tempfile::TempDir, crate::queue::QueueDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::queue::QueueDb::open_for_daemon(
            &dir.path().join("queue.db"),
            &crate::config::Queue::default(),
        )
        .unwrap();
        (dir, db)
    }

    #[test]
    fn priority_wins_until_waiting_outweighs_it() {
        let (_d, db) = fresh_db();
        let low = source("low", Priority::Low);
        let high = source("high", Priority::High);
        let sources = vec![low.clone(), high.clone()];
        let t0 = 1_000_000_000;
        // The low job waited 3 minutes, the high one just arrived: high goes first.
        enqueue_run(db.conn(), &low, "manual", "test", 3, t0).unwrap();
        enqueue_run(db.conn(), &high, "manual", "test", 3, t0 + 3 * 60_000).unwrap();
        let now = t0 + 3 * 60_000;
        let first = claim(db.conn(), now, "i", 1000, &sources, &HashSet::new())
            .unwrap()
            .unwrap();
        assert_eq!(first.source, "high");

        // Once the low job has waited more than two levels' worth (10 minutes), it goes first.
        let (_d, db) = fresh_db();
        enqueue_run(db.conn(), &low, "manual", "test", 3, t0).unwrap();
        enqueue_run(db.conn(), &high, "manual", "test", 3, t0 + 11 * 60_000).unwrap();
        let now = t0 + 11 * 60_000;
        let first = claim(db.conn(), now, "i", 1000, &sources, &HashSet::new())
            .unwrap()
            .unwrap();
        assert_eq!(first.source, "low");
    }

    #[test]
    fn paused_sources_and_running_runs_are_not_claimed_and_triggers_coalesce() {
        let (_d, db) = fresh_db();
        let a = source("a", Priority::Normal);
        let sources = vec![a.clone()];
        let first = enqueue_run(db.conn(), &a, "manual", "t", 3, 1).unwrap();
        assert_eq!(
            enqueue_run(db.conn(), &a, "manual", "t", 3, 2).unwrap(),
            Enqueued::Coalesced(first.id())
        );
        let paused: HashSet<String> = ["a".to_string()].into();
        assert!(
            claim(db.conn(), 10, "i", 1000, &sources, &paused)
                .unwrap()
                .is_none()
        );
        let job = claim(db.conn(), 10, "i", 1000, &sources, &HashSet::new())
            .unwrap()
            .unwrap();
        assert_eq!(job.attempts, 1, "counted at claim");
        // While it runs, a trigger queues one more run, which waits for the first to finish.
        let second = enqueue_run(db.conn(), &a, "manual", "t", 3, 11).unwrap();
        assert!(matches!(second, Enqueued::New(_)));
        assert!(
            claim(db.conn(), 12, "i", 1000, &sources, &HashSet::new())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn requeue_does_not_use_up_an_attempt_and_events_record_every_step() {
        let (_d, db) = fresh_db();
        let a = source("a", Priority::Normal);
        let id = enqueue_run(db.conn(), &a, "manual", "t", 3, 1)
            .unwrap()
            .id();
        claim(
            db.conn(),
            2,
            "dead",
            1000,
            std::slice::from_ref(&a),
            &HashSet::new(),
        )
        .unwrap();
        assert_eq!(requeue_orphans(db.conn(), "alive", 3).unwrap().requeued, 1);
        let job = get(db.conn(), id).unwrap().unwrap();
        assert_eq!((job.state.as_str(), job.attempts), ("pending", 0));
        let states: Vec<String> = events(db.conn(), id)
            .unwrap()
            .into_iter()
            .map(|e| e.to_state)
            .collect();
        assert_eq!(states, vec!["pending", "running", "pending"]);
    }

    #[test]
    fn a_successful_run_resolves_earlier_quarantined_runs_of_its_source_only() {
        let (_d, db) = fresh_db();
        let a = source("a", Priority::Normal);
        let b = source("b", Priority::Normal);
        let sources = vec![a.clone(), b.clone()];
        let crash = crate::failure::Failure::new(crate::failure::ErrorClass::Internal, "crash");
        let quarantine = |src: &SourceConfig, t: i64| {
            let id = enqueue_run(db.conn(), src, "manual", "t", 1, t)
                .unwrap()
                .id();
            claim(db.conn(), t, "i", 1000, &sources, &HashSet::new())
                .unwrap()
                .unwrap();
            finish(
                db.conn(),
                id,
                "quarantined",
                t,
                "daemon",
                "x",
                &RunNumbers::default(),
                Some(&crash),
            )
            .unwrap();
            id
        };
        let old_a = quarantine(&a, 1);
        let old_b = quarantine(&b, 2);
        let later = enqueue_run(db.conn(), &a, "manual", "t", 1, 3)
            .unwrap()
            .id();
        let tx = immediate(db.conn()).unwrap();
        assert_eq!(resolve_runs(&tx, "a", later, 4).unwrap(), 1);
        tx.commit().unwrap();
        let job = get(db.conn(), old_a).unwrap().unwrap();
        assert_eq!(job.state, "succeeded");
        let last = events(db.conn(), old_a).unwrap().pop().unwrap();
        assert_eq!(
            last.reason.as_deref(),
            Some(format!("resolved: a later run of this source (job {later}) succeeded").as_str())
        );
        assert_eq!(get(db.conn(), old_b).unwrap().unwrap().state, "quarantined");
    }
}
