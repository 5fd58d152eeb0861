//! Hidden, public: the queue operations `benches/figures.rs` times, forwarded to the real code
//! (`queue::QueueDb`, `jobs::enqueue_run`/`enqueue_runs`, `jobs::claim`/`claim_batch`,
//! `jobs::finish` with the attempt's telemetry row, as `workers` records an ended attempt, one
//! job or several per transaction), so the benchmark measures what the daemon runs.
//!
//! Invariant: nothing here decides or writes anything itself; a change to the queue's code is
//! measured as it is. Not a stable interface: only the benchmark uses it.

use std::path::Path;

use crate::config::{Queue as QueueConfig, SourceConfig};
use crate::jobs::{self, Enqueued, Job, Outcome, RunNumbers};
use crate::queue::QueueDb;

pub use crate::jobs::JobKind;

/// A connection to queue.db opened as the daemon opens it (created and migrated if missing,
/// WAL, `synchronous = FULL`, the default `queue:` settings).
pub struct Queue(QueueDb);

/// A job this connection claimed and has not finished yet.
pub struct Claimed(Job);

impl Claimed {
    pub fn id(&self) -> i64 {
        self.0.id
    }
}

/// The sources a daemon with `sources` configured claims from (`jobs::claimable`).
pub fn claimable(sources: &[SourceConfig]) -> String {
    jobs::claimable(sources)
}

impl Queue {
    pub fn open(path: &Path) -> Result<Queue, String> {
        QueueDb::open_for_daemon(path, &QueueConfig::default())
            .map(Queue)
            .map_err(|e| e.to_string())
    }

    /// Queue a run of `source`; `true` when it is a new job (`false`: it joined a waiting one).
    pub fn enqueue_run(&self, source: &SourceConfig, now: i64) -> rusqlite::Result<bool> {
        jobs::enqueue_run(self.0.conn(), source, "bench", "bench", now)
            .map(|e| matches!(e, Enqueued::New(_)))
    }

    /// Queue a run of each of `sources` in one transaction (`jobs::enqueue_runs`); how many
    /// are new jobs (the rest joined a waiting one).
    pub fn enqueue_runs(&self, sources: &[&SourceConfig], now: i64) -> rusqlite::Result<usize> {
        let all = jobs::enqueue_runs(self.0.conn(), sources, "bench", "bench", now)?;
        Ok(all.iter().filter(|e| matches!(e, Enqueued::New(_))).count())
    }

    /// The daemon's batch claim (`jobs::claim_batch`) of up to `max` jobs for `instance`.
    pub fn claim_batch(
        &self,
        now: i64,
        instance: &str,
        lease_ms: i64,
        claimable: &str,
        max: usize,
    ) -> rusqlite::Result<Vec<Claimed>> {
        jobs::claim_batch(self.0.conn(), now, instance, lease_ms, claimable, max)
            .map(|jobs| jobs.into_iter().map(Claimed).collect())
    }

    /// The daemon's claim (`jobs::claim`) for `instance`.
    pub fn claim(
        &self,
        now: i64,
        instance: &str,
        lease_ms: i64,
        claimable: &str,
    ) -> rusqlite::Result<Option<Claimed>> {
        jobs::claim(self.0.conn(), now, instance, lease_ms, claimable).map(|j| j.map(Claimed))
    }

    /// A no-op job succeeded: its state change and its telemetry row in one transaction, as
    /// the daemon finishes an attempt. `false`: someone else changed the job first.
    pub fn finish_succeeded(&self, job: &Claimed, now: i64) -> rusqlite::Result<bool> {
        jobs::in_transaction(self.0.conn(), |tx| succeeded(tx, job, now))
    }

    /// Several no-op jobs succeeded: each its state change and telemetry row, all in one
    /// transaction. How many were still ours to finish.
    pub fn finish_succeeded_many(&self, done: &[Claimed], now: i64) -> rusqlite::Result<usize> {
        jobs::in_transaction(self.0.conn(), |tx| {
            let mut n = 0;
            for job in done {
                n += usize::from(succeeded(tx, job, now)?);
            }
            Ok(n)
        })
    }
}

/// One attempt's end as the daemon writes it: the state change, and the telemetry row when the
/// change happened.
fn succeeded(tx: &rusqlite::Transaction<'_>, job: &Claimed, now: i64) -> rusqlite::Result<bool> {
    let numbers = RunNumbers::default();
    let applied = jobs::finish(
        tx,
        job.0.id,
        Outcome::Succeeded,
        now,
        "daemon",
        "done",
        &numbers,
        None,
    )?;
    if applied {
        crate::telemetry::record_attempt(
            tx,
            &job.0,
            Outcome::Succeeded.state(),
            None,
            now,
            &numbers,
        )?;
    }
    Ok(applied)
}
