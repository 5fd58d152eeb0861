//! The state machine: which change may happen to a job in which state, and the one way a change
//! is written.
//!
//! Owns: `Change` and `JobState::after` (pure: state × change → state, tested without a
//! database); `apply`, the single writer of `jobs.state`, and every operation built on it.
//! Invariants: `apply` runs inside a transaction the caller holds (the type says so: it takes a
//! `Transaction`), writes one guarded UPDATE (`WHERE state = <from>`) and, in that same
//! transaction, one `job_events` row; a change `after` does not allow is an error before anything
//! is written. So a job's state and its history commit together or not at all (the
//! `FUTURNAL_FAILPOINT` hook proves it by aborting between the two).

use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::model::{JobState, RunNumbers};
use crate::failure::Failure;

/// Everything that can happen to an existing job. (Creating one is `enqueue_*`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A daemon took it to run (pending or failed → running).
    Claimed,
    /// Its run finished (running → succeeded).
    Succeeded,
    /// Its attempt failed with retries left (running → failed).
    WillRetry,
    /// Retries are exhausted or the failure is permanent, or it is poison (running → quarantined).
    Quarantined,
    /// It stopped without failing: a shutdown, a crash, a busy store, no thread to run it
    /// (running → pending; the attempt is not counted).
    HandedBack,
    /// An operator cancelled it (waiting or running → cancelled).
    Cancelled,
    /// An operator gave it fresh attempts (quarantined → pending).
    RetriedFromQuarantine,
    /// A later run ingested what it was for (waiting or quarantined → succeeded).
    Resolved,
}

impl Change {
    pub const ALL: &'static [Change] = &[
        Change::Claimed,
        Change::Succeeded,
        Change::WillRetry,
        Change::Quarantined,
        Change::HandedBack,
        Change::Cancelled,
        Change::RetriedFromQuarantine,
        Change::Resolved,
    ];
}

impl JobState {
    /// The state a job in `self` moves to when `change` happens, or `None`: that change cannot
    /// happen in this state. `succeeded` and `cancelled` are final: nothing leaves them.
    pub fn after(self, change: Change) -> Option<JobState> {
        use Change as C;
        use JobState as S;
        match (self, change) {
            (S::Pending | S::Failed, C::Claimed) => Some(S::Running),
            (S::Running, C::Succeeded) => Some(S::Succeeded),
            (S::Running, C::WillRetry) => Some(S::Failed),
            (S::Running, C::Quarantined) => Some(S::Quarantined),
            (S::Running, C::HandedBack) => Some(S::Pending),
            (S::Pending | S::Failed | S::Running, C::Cancelled) => Some(S::Cancelled),
            (S::Quarantined, C::RetriedFromQuarantine) => Some(S::Pending),
            (S::Pending | S::Failed | S::Quarantined, C::Resolved) => Some(S::Succeeded),
            _ => None,
        }
    }
}

/// A transaction that takes the write lock at once: a job is read and changed under one lock,
/// and a busy queue.db is seen at the start, never half way.
pub fn immediate(conn: &Connection) -> rusqlite::Result<Transaction<'_>> {
    Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
}

/// Run `write` in an IMMEDIATE transaction and commit it if it succeeds (rolled back if not).
pub fn in_transaction<T>(
    conn: &Connection,
    write: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let tx = immediate(conn)?;
    let out = write(&tx)?;
    tx.commit()?;
    Ok(out)
}

fn illegal(from: JobState, change: Change) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(
        format!("a {from} job cannot be {change:?} (a bug in futurnal)").into(),
    )
}

/// Change job `id` from `from` by `change`: `set` adds columns to the UPDATE (its parameters
/// are `extra`, numbered from ?5; ?2 is `at`), and the event records who and why. `Ok(false)`:
/// the job was no longer in `from` (someone else changed it first); nothing was written.
#[allow(clippy::too_many_arguments)]
pub(super) fn apply(
    tx: &Transaction<'_>,
    id: i64,
    from: JobState,
    change: Change,
    set: &str,
    extra: &[&dyn ToSql],
    at: i64,
    actor: &str,
    reason: &str,
) -> rusqlite::Result<bool> {
    let to = from.after(change).ok_or_else(|| illegal(from, change))?;
    let sql =
        format!("UPDATE jobs SET state = ?1, updated_at = ?2{set} WHERE id = ?3 AND state = ?4");
    let mut args: Vec<&dyn ToSql> = vec![&to, &at, &id, &from];
    args.extend_from_slice(extra);
    let n = tx.prepare_cached(&sql)?.execute(args.as_slice())?;
    if n != 1 {
        return Ok(false);
    }
    failpoint::after_update(change)?;
    event(tx, id, at, Some(from), to, actor, reason)?;
    Ok(true)
}

/// A history row for a job whose state does not change (a cancel request, a run brought
/// forward): the event says what happened.
pub fn note(
    tx: &Transaction<'_>,
    id: i64,
    state: JobState,
    at: i64,
    actor: &str,
    reason: &str,
) -> rusqlite::Result<()> {
    event(tx, id, at, Some(state), state, actor, reason)
}

pub(super) fn event(
    tx: &Connection,
    job: i64,
    at: i64,
    from: Option<JobState>,
    to: JobState,
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

/// The terminal changes of a running job `finish` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Quarantined,
    Cancelled,
}

impl Outcome {
    /// The state a job ends in.
    pub fn state(self) -> JobState {
        match self {
            Outcome::Succeeded => JobState::Succeeded,
            Outcome::Quarantined => JobState::Quarantined,
            Outcome::Cancelled => JobState::Cancelled,
        }
    }
}

/// Move a running job to a final state, with its numbers and error.
#[allow(clippy::too_many_arguments)]
pub fn finish(
    tx: &Transaction<'_>,
    id: i64,
    outcome: Outcome,
    now: i64,
    actor: &str,
    reason: &str,
    numbers: &RunNumbers,
    failure: Option<&Failure>,
) -> rusqlite::Result<bool> {
    let change = match outcome {
        Outcome::Succeeded => Change::Succeeded,
        Outcome::Quarantined => Change::Quarantined,
        Outcome::Cancelled => Change::Cancelled,
    };
    let class = failure.map(|f| f.class.as_str());
    let message = failure.map(|f| f.message.as_str());
    apply(
        tx,
        id,
        JobState::Running,
        change,
        ", finished_at = ?2, lease_until = NULL, items_seen = ?5, docs_new = ?6,
            docs_changed = ?7, docs_unchanged = ?8, docs_deleted = ?9, items_skipped = ?10,
            items_failed = ?11, bytes = ?12, error_class = COALESCE(?13, error_class),
            last_error = COALESCE(?14, last_error)",
        &[
            &numbers.items_seen,
            &numbers.docs_new,
            &numbers.docs_changed,
            &numbers.docs_unchanged,
            &numbers.docs_deleted,
            &numbers.items_skipped,
            &numbers.items_failed,
            &numbers.bytes,
            &class,
            &message,
        ],
        now,
        actor,
        reason,
    )
}

/// A running job that failed with retries left becomes `failed` and is retried at `retry_at`.
pub fn retry_later(
    tx: &Transaction<'_>,
    id: i64,
    now: i64,
    retry_at: i64,
    failure: &Failure,
    reason: &str,
) -> rusqlite::Result<bool> {
    apply(
        tx,
        id,
        JobState::Running,
        Change::WillRetry,
        ", scheduled_for = ?5, finished_at = ?2, lease_until = NULL, instance_id = NULL,
            error_class = ?6, last_error = ?7",
        &[&retry_at, &failure.class.as_str(), &failure.message],
        now,
        "daemon",
        reason,
    )
}

/// A running job stopped without failing (a shutdown, a crash, a busy store): back to pending at
/// `at_time`, its attempt not counted.
pub fn hand_back(
    tx: &Transaction<'_>,
    id: i64,
    now: i64,
    at_time: i64,
    actor: &str,
    reason: &str,
) -> rusqlite::Result<bool> {
    apply(
        tx,
        id,
        JobState::Running,
        Change::HandedBack,
        ", attempts = MAX(attempts - 1, 0), scheduled_for = ?5, lease_until = NULL,
            instance_id = NULL, items_done = 0",
        &[&at_time],
        now,
        actor,
        reason,
    )
}

/// What `jobs cancel` did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// It was waiting (pending, or failed awaiting its retry) and will never run.
    Cancelled,
    /// It is running; the daemon stops it cooperatively.
    Requested,
    /// It had already finished in this state.
    AlreadyFinished(JobState),
}

/// An operator's cancel: a waiting job is cancelled at once; a running one gets a request the
/// daemon acts on. `None`: no such job.
pub fn request_cancel(
    conn: &Connection,
    id: i64,
    reason: &str,
    actor: &str,
    now: i64,
) -> rusqlite::Result<Option<CancelOutcome>> {
    let tx = immediate(conn)?;
    let state: Option<JobState> = tx
        .query_row("SELECT state FROM jobs WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    let outcome = match state {
        None => None,
        Some(waiting) if waiting.is_waiting() => {
            apply(
                &tx,
                id,
                waiting,
                Change::Cancelled,
                ", finished_at = ?2, cancel_requested_at = ?2, cancel_reason = ?5",
                &[&reason],
                now,
                actor,
                reason,
            )?;
            Some(CancelOutcome::Cancelled)
        }
        Some(JobState::Running) => {
            tx.execute(
                "UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?2),
                    cancel_reason = ?3, updated_at = ?2 WHERE id = ?1",
                params![id, now, reason],
            )?;
            note(
                &tx,
                id,
                JobState::Running,
                now,
                actor,
                &format!("cancel requested: {reason}"),
            )?;
            Some(CancelOutcome::Requested)
        }
        Some(done) => Some(CancelOutcome::AlreadyFinished(done)),
    };
    tx.commit()?;
    Ok(outcome)
}

/// Give a quarantined job a fresh set of attempts, to run at `at`. The note goes into its
/// timeline.
pub fn retry_quarantined(
    tx: &Transaction<'_>,
    id: i64,
    at: i64,
    now: i64,
    actor: &str,
    note: &str,
) -> rusqlite::Result<bool> {
    apply(
        tx,
        id,
        JobState::Quarantined,
        Change::RetriedFromQuarantine,
        ", attempts = 0, crashes = 0, scheduled_for = ?5, finished_at = NULL,
            instance_id = NULL, lease_until = NULL",
        &[&at],
        now,
        actor,
        &format!("retried from quarantine: {note}"),
    )
}

/// Item jobs still open for items a run has now ingested: close them as succeeded.
pub fn resolve_items(
    tx: &Transaction<'_>,
    source: &str,
    items: &[String],
    by_job: i64,
    now: i64,
) -> rusqlite::Result<()> {
    // A run can ingest many thousands of items while only a handful (usually none) have an open
    // item job: look the open ones up once instead of querying per item.
    let open: Vec<(i64, String, JobState)> = tx
        .prepare_cached(
            "SELECT id, item, state FROM jobs WHERE source = ?1 AND kind = ?2
             AND state IN (?3, ?4, ?5)",
        )?
        .query_map(
            params![
                source,
                super::JobKind::Item,
                JobState::Pending,
                JobState::Failed,
                JobState::Quarantined
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    if open.is_empty() {
        return Ok(());
    }
    let ingested: std::collections::HashSet<&str> = items.iter().map(String::as_str).collect();
    for (id, item, state) in open {
        if ingested.contains(item.as_str()) {
            apply(
                tx,
                id,
                state,
                Change::Resolved,
                ", finished_at = ?2",
                &[],
                now,
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
    tx: &Transaction<'_>,
    source: &str,
    by_job: i64,
    now: i64,
) -> rusqlite::Result<usize> {
    let stale: Vec<i64> = tx
        .prepare_cached(
            "SELECT id FROM jobs WHERE source = ?1 AND kind = ?2 AND state = ?3 AND id < ?4",
        )?
        .query_map(
            params![
                source,
                super::JobKind::SourceRun,
                JobState::Quarantined,
                by_job
            ],
            |r| r.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let mut n = 0;
    for id in stale {
        if apply(
            tx,
            id,
            JobState::Quarantined,
            Change::Resolved,
            "",
            &[],
            now,
            "daemon",
            &format!("resolved: a later run of this source (job {by_job}) succeeded"),
        )? {
            n += 1;
        }
    }
    Ok(n)
}

/// Record an item a run could not ingest, with the item job that retries it.
pub fn record_item_error(
    tx: &Transaction<'_>,
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

/// Delete quarantined jobs (their events and item errors go with them).
pub fn purge_quarantined(tx: &Transaction<'_>, ids: &[i64]) -> rusqlite::Result<usize> {
    let mut stmt = tx.prepare_cached("DELETE FROM jobs WHERE id = ?1 AND state = ?2")?;
    let mut n = 0;
    for id in ids {
        n += stmt.execute(params![id, JobState::Quarantined])?;
    }
    Ok(n)
}

/// A test hook, so a test can prove that a state and its event commit together: with
/// `FUTURNAL_FAILPOINT=after-update:<Change>` (say `after-update:Succeeded`) the process aborts
/// right after the UPDATE of that change and before its event row, as a crash or power loss
/// would. Unit tests set the same point per thread, and get an error instead of an abort.
pub mod failpoint {
    use std::cell::Cell;
    use std::sync::OnceLock;

    use super::Change;

    thread_local! {
        static ON_THIS_THREAD: Cell<Option<Change>> = const { Cell::new(None) };
    }

    fn from_env() -> Option<Change> {
        static POINT: OnceLock<Option<Change>> = OnceLock::new();
        *POINT.get_or_init(|| {
            let value = std::env::var("FUTURNAL_FAILPOINT").ok()?;
            let name = value.strip_prefix("after-update:")?;
            Change::ALL
                .iter()
                .copied()
                .find(|c| format!("{c:?}") == name)
        })
    }

    /// Make `change` fail on this thread (an error, not an abort) until set to `None`.
    #[cfg(test)]
    pub fn set_on_this_thread(change: Option<Change>) {
        ON_THIS_THREAD.with(|c| c.set(change));
    }

    pub(super) fn after_update(change: Change) -> rusqlite::Result<()> {
        if ON_THIS_THREAD.with(Cell::get) == Some(change) {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                format!("failpoint after-update:{change:?}").into(),
            ));
        }
        if from_env() == Some(change) {
            // No unwinding, no destructors, no rollback: what a crash leaves.
            std::process::abort();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table, spelled out: a change to this list is a decision, not an accident.
    #[test]
    fn the_transition_table() {
        use Change as C;
        use JobState as S;
        let allowed = [
            (S::Pending, C::Claimed, S::Running),
            (S::Failed, C::Claimed, S::Running),
            (S::Running, C::Succeeded, S::Succeeded),
            (S::Running, C::WillRetry, S::Failed),
            (S::Running, C::Quarantined, S::Quarantined),
            (S::Running, C::HandedBack, S::Pending),
            (S::Pending, C::Cancelled, S::Cancelled),
            (S::Failed, C::Cancelled, S::Cancelled),
            (S::Running, C::Cancelled, S::Cancelled),
            (S::Quarantined, C::RetriedFromQuarantine, S::Pending),
            (S::Pending, C::Resolved, S::Succeeded),
            (S::Failed, C::Resolved, S::Succeeded),
            (S::Quarantined, C::Resolved, S::Succeeded),
        ];
        for from in S::ALL {
            for change in C::ALL {
                let expected = allowed
                    .iter()
                    .find(|(f, c, _)| f == from && c == change)
                    .map(|(_, _, to)| *to);
                assert_eq!(from.after(*change), expected, "{from} + {change:?}");
            }
        }
    }

    #[test]
    fn final_states_have_no_way_out_and_every_state_is_reachable() {
        for state in [JobState::Succeeded, JobState::Cancelled] {
            assert!(Change::ALL.iter().all(|c| state.after(*c).is_none()));
        }
        for target in JobState::ALL {
            let reachable = *target == JobState::Pending
                || JobState::ALL
                    .iter()
                    .any(|s| Change::ALL.iter().any(|c| s.after(*c) == Some(*target)));
            assert!(reachable, "{target}");
        }
    }
}
