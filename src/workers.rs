//! The worker pool inside the daemon: claiming, running and finishing jobs.
//!
//! Owns: each tick's work (the scheduler's step, cancel requests, leases, and one batch claim
//! for every free worker, `jobs::claim_batch`), running each job on its own OS thread (parsing
//! never blocks the daemon's loop), relaying progress, recording outcomes with the retry
//! decision (`jobs::decide`), operator cancellation and graceful shutdown.
//! Invariants: the pool never runs more than `effective_workers` jobs; all queue.db writes happen
//! on the daemon's main loop (worker threads only send messages), each state change in one
//! transaction with its event and, when an attempt ends, its telemetry row (`telemetry`); a
//! finished job's outcome and the claims for the workers it freed commit together (one durable
//! commit), and a claimed job's thread starts only after its claim is committed; a
//! running job's lease is `last progress + stall_timeout_seconds`, renewed every tick, and a
//! lapsed lease is rescued (ours: a `timeout` failure retried by policy; anyone else's: handed
//! back as after a crash); a job stopped by shutdown goes back to pending
//! without using up an attempt; a cancelled job ends CANCELLED, never FAILED; a job that ends
//! without a report (its thread panicked, it failed, stalled or was force-cancelled) records what
//! its run committed, and a panic's message reaches neither the log nor queue.db.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::config::{Config, SourceConfig};
use crate::failure::{Failure, retry_delay_ms};
use crate::home::Home;
use crate::ingest::{Committed, Report, Run, Tally, failure_summary};
use crate::jobs::{self, Job, RunNumbers};
use crate::jobs::{Decision, JobKind, JobState, Outcome};
use crate::queue::{QueueDb, now_ms};
use crate::scheduler::Scheduler;
use crate::telemetry;
/// Disk space kept allocated beside queue.db and released on a full disk (see `make_reserve`).
pub const RESERVE_BYTES: u64 = 1024 * 1024;
/// How often a missing reserve is made again.
const RESERVE_CHECK: Duration = Duration::from_secs(10);

/// Allocate the reserve file: really allocated (not sparse), private, never through a symlink.
fn create_reserve(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, RESERVE_BYTES)
        .map_err(std::io::Error::from)
        .or_else(|_| {
            // A filesystem without fallocate: write the zeros.
            use std::io::Write;
            (&file).write_all(&vec![0; RESERVE_BYTES as usize])
        })?;
    file.sync_all()
}

/// How often an outcome queue.db refused (a full disk) is offered to it again.
const RECORD_RETRY: Duration = Duration::from_secs(1);

pub enum Message {
    Progress {
        id: i64,
        done: u64,
        total: u64,
    },
    Done {
        id: i64,
        result: Result<Report, Failure>,
    },
}

struct RunningJob {
    job: Job,
    cancel: Arc<AtomicBool>,
    /// What its run has committed so far, shared with its thread: the job's numbers when the
    /// run ends without a report (a panic, a failure, a forced cancel or a stall).
    committed: Arc<Committed>,
    /// When its thread last reported progress (or started), in ms since the epoch: its lease
    /// runs until this plus the stall timeout.
    last_progress: i64,
    /// Why the cancel flag was raised, and when.
    cancel_reason: Option<(CancelReason, Instant)>,
}

#[derive(Clone, PartialEq)]
enum CancelReason {
    Operator(String),
    Shutdown,
}

pub struct Pool {
    config: Config,
    sources: Vec<SourceConfig>,
    /// `jobs::claimable` of `sources`, made once per configuration.
    claimable: String,
    scheduler: Scheduler,
    instance_id: String,
    store: std::path::PathBuf,
    max: usize,
    running: HashMap<i64, RunningJob>,
    /// Finished jobs whose outcome queue.db did not accept yet (a full disk), with the outcome.
    unrecorded: Vec<(RunningJob, Result<Report, Failure>)>,
    record_retry_at: Instant,
    /// The space reserve beside queue.db, and when to check it next.
    reserve: std::path::PathBuf,
    reserve_check_at: Instant,
    /// Set while an outcome is written again: its log lines were written the first time.
    quiet: std::cell::Cell<bool>,
    tx: UnboundedSender<Message>,
    draining: bool,
}

impl Pool {
    pub fn new(
        home: &Home,
        config: &Config,
        instance_id: &str,
        max: usize,
    ) -> (Pool, UnboundedReceiver<Message>) {
        let (tx, rx) = unbounded_channel();
        (
            Pool {
                config: config.clone(),
                sources: config.sources.clone(),
                claimable: jobs::claimable(&config.sources),
                scheduler: Scheduler::new(&config.sources),
                instance_id: instance_id.to_string(),
                store: home.store_db(),
                max: max.max(1),
                running: HashMap::new(),
                unrecorded: Vec::new(),
                record_retry_at: Instant::now(),
                reserve: home.queue_reserve(),
                reserve_check_at: Instant::now(),
                quiet: std::cell::Cell::new(false),
                tx,
                draining: false,
            },
            rx,
        )
    }

    pub fn busy(&self) -> usize {
        self.running.len()
    }

    /// One scheduler tick: due schedules, cancel requests, leases, claims.
    pub fn tick(&mut self, db: &QueueDb) {
        self.record_unrecorded(db, Instant::now());
        self.make_reserve(Instant::now());
        let conn = db.conn();
        let now = now_ms();
        if !self.draining {
            self.scheduler.enqueue_due(conn, &self.sources, now);
        }
        self.watch_cancels(db, now);
        self.keep_leases(db, now);
        self.fill(db, now);
    }

    /// Claim a job for every free worker, all in one transaction (`jobs::claim_batch`: one
    /// durable commit, the same jobs as one claim per worker), then start them: a job starts
    /// only once its claim is committed. Called at every tick and as soon as a job finishes, so
    /// a free worker takes the next due job at once rather than at the next tick.
    fn fill(&mut self, db: &QueueDb, now: i64) {
        let conn = db.conn();
        let free = self.max.saturating_sub(self.running.len());
        if self.draining || free == 0 {
            return;
        }
        if !jobs::any_due(conn, now).unwrap_or(true) {
            return;
        }
        match jobs::claim_batch(
            conn,
            now,
            &self.instance_id,
            self.stall_ms(),
            &self.claimable,
            free,
        ) {
            Ok(claimed) => {
                for job in claimed {
                    self.spawn(db, job);
                }
            }
            Err(e) => tracing::warn!("cannot claim jobs: {e}"),
        }
    }

    fn watch_cancels(&mut self, db: &QueueDb, now: i64) {
        let requests = match jobs::cancel_requests(db.conn()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot read cancel requests: {e}");
                return;
            }
        };
        let grace = Duration::from_secs(self.config.workers.cancel_grace_seconds);
        for (id, _) in requests {
            let Some(r) = self.running.get_mut(&id) else {
                continue;
            };
            if r.cancel_reason.is_none() {
                let reason = jobs::get(db.conn(), id)
                    .ok()
                    .flatten()
                    .and_then(|j| j.cancel_reason)
                    .unwrap_or_default();
                tracing::info!(job = id, "cancelling: {reason}");
                r.cancel.store(true, Ordering::Relaxed);
                r.cancel_reason = Some((CancelReason::Operator(reason), Instant::now()));
            }
        }
        // A job that ignores its cancel flag past the grace is cancelled without it; whatever its
        // thread still does is discarded when it reports.
        let overdue: Vec<i64> = self
            .running
            .iter()
            .filter(|(_, r)| {
                matches!(&r.cancel_reason, Some((CancelReason::Operator(_), at)) if at.elapsed() >= grace)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            if let Some(r) = self.running.remove(&id) {
                let reason = match r.cancel_reason {
                    Some((CancelReason::Operator(why), _)) => why,
                    _ => String::new(),
                };
                let text = format!(
                    "cancelled by operator: {reason} (forced after {}s)",
                    grace.as_secs()
                );
                let numbers = committed_numbers(&r.committed.get());
                let result = jobs::in_transaction(db.conn(), |tx| {
                    finish_attempt(tx, &r.job, Outcome::Cancelled, now, &text, &numbers, None)
                });
                if let Err(e) = result {
                    tracing::warn!(job = id, "cannot record the cancellation: {e}");
                }
            }
        }
    }

    fn stall_ms(&self) -> i64 {
        (self.config.workers.stall_timeout_seconds as i64).saturating_mul(1000)
    }

    /// Renew the leases of our running jobs (each runs until its last progress plus the stall
    /// timeout; an outcome waiting to be recorded keeps its job's lease), then rescue every
    /// running job whose lease has lapsed. One of ours is hung (a read that never returns, say):
    /// it is taken back as a `timeout` failure and retried by the normal policy; its thread is
    /// told to stop and anything it reports later is discarded. A job no worker here runs is an
    /// orphan: it goes back to the queue as after a crash.
    fn keep_leases(&mut self, db: &QueueDb, now: i64) {
        let stall = self.stall_ms();
        let mut leases: Vec<(i64, i64)> = self
            .running
            .iter()
            .map(|(id, r)| (*id, r.last_progress.saturating_add(stall)))
            .collect();
        leases.extend(self.unrecorded.iter().map(|(r, _)| (r.job.id, now + stall)));
        if let Err(e) = jobs::renew_leases(db.conn(), &leases) {
            tracing::warn!("cannot renew job leases: {e}");
        }
        let expired = match jobs::expired_leases(db.conn(), now) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("cannot read job leases: {e}");
                return;
            }
        };
        let mut orphans = Vec::new();
        for (id, _holder) in expired {
            if self.unrecorded.iter().any(|(r, _)| r.job.id == id) {
                continue;
            }
            let Some(r) = self.running.remove(&id) else {
                orphans.push(id);
                continue;
            };
            r.cancel.store(true, Ordering::Relaxed);
            let failure = Failure::new(
                crate::failure::ErrorClass::Timeout,
                format!(
                    "no progress for {}s; the job was taken back from its worker",
                    stall / 1000
                ),
            );
            let result = jobs::in_transaction(db.conn(), |tx| {
                let n = committed_numbers(&r.committed.get());
                self.failed(tx, &r.job, &failure, now, &n)
            });
            if let Err(e) = result {
                tracing::error!(job = id, "cannot reclaim a stalled job: {e}");
            }
        }
        if !orphans.is_empty() {
            let result = jobs::in_transaction(db.conn(), |tx| {
                // Each rescued job's attempt ends here: recorded from its row, as no worker
                // here knows its numbers.
                let mut running = Vec::new();
                for id in &orphans {
                    if jobs::get(tx, *id)?.is_some_and(|j| j.state == JobState::Running) {
                        running.push(*id);
                    }
                }
                let rescued = jobs::rescue_orphans(tx, &self.instance_id, Some(&running), now)?;
                for id in running {
                    telemetry::record_from_row(tx, id, now)?;
                }
                Ok(rescued)
            });
            match result {
                Ok(r) => tracing::warn!(
                    requeued = r.requeued,
                    poisoned = r.poisoned,
                    "rescued running jobs whose lease lapsed with no worker"
                ),
                Err(e) => tracing::error!("cannot rescue jobs whose lease lapsed: {e}"),
            }
        }
    }

    fn spawn(&mut self, db: &QueueDb, job: Job) {
        let Some(source) = self.sources.iter().find(|s| s.name == job.source).cloned() else {
            return;
        };
        let cancel = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(Committed::default());
        let tally = committed.clone();
        let id = job.id;
        let tx = self.tx.clone();
        let store = self.store.clone();
        let flag = cancel.clone();
        let item = job.item.clone();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        tracing::info!(job = id, source = %job.source, kind = %job.kind, attempt = job.attempts, "job started");
        let spawned = std::thread::Builder::new()
            .name(format!("job-{id}"))
            .spawn(move || {
                let progress_tx = tx.clone();
                let progress = move |done: u64, total: u64| {
                    let _ = progress_tx.send(Message::Progress { id, done, total });
                };
                let run = Run {
                    source: &source,
                    store: &store,
                    cancel: &flag,
                    progress: &progress,
                    threads,
                };
                // A panic while handling one item is that item's failure (see `ingest`); one
                // anywhere else fails this job, never the daemon, and the job reports what its
                // run committed before it. Its message is withheld (the panic hook logs only
                // where it happened; the payload is dropped here): it may quote document text.
                let _scope = crate::ingest::PanicScope::enter();
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &item {
                        Some(item) => run.item_run_counted(item, &tally),
                        None => run.source_run_counted(&tally),
                    }))
                    .unwrap_or_else(|_| {
                        let at = crate::ingest::take_panic_location()
                            .map(|l| format!(" at {l}"))
                            .unwrap_or_default();
                        Err(Failure::new(
                            crate::failure::ErrorClass::Internal,
                            crashed(&at, &tally.get()),
                        ))
                    });
                let _ = tx.send(Message::Done { id, result });
            });
        match spawned {
            Ok(_) => {
                self.running.insert(
                    id,
                    RunningJob {
                        job,
                        cancel,
                        committed,
                        last_progress: now_ms(),
                        cancel_reason: None,
                    },
                );
            }
            Err(e) => {
                tracing::error!(job = id, "cannot start a worker thread: {e}");
                let reason = format!("no worker thread could be started: {e}");
                hand_back_now(db, &job, &reason, &RunNumbers::default(), now_ms());
            }
        }
    }

    /// Apply a message from a worker thread.
    pub fn handle(&mut self, db: &QueueDb, msg: Message) {
        match msg {
            Message::Progress { id, done, total } => {
                if let Some(r) = self.running.get_mut(&id) {
                    r.last_progress = now_ms();
                    if let Err(e) = jobs::progress(db.conn(), id, done as i64, total as i64) {
                        tracing::warn!(job = id, "cannot record progress: {e}");
                    }
                }
            }
            Message::Done { id, result } => {
                let Some(r) = self.running.remove(&id) else {
                    tracing::info!(
                        job = id,
                        "a job finished after it was force-cancelled; result discarded"
                    );
                    return;
                };
                // Error texts are stored in queue.db and shown to anyone who can read it: with
                // security.path_redaction, absolute paths in them become fingerprints. Then each
                // failure gets the words of its remedy (`error::failure_text`).
                let result = if self.config.security.path_redaction {
                    let root = self.sources.iter().find(|s| s.name == r.job.source);
                    redact(result, root.map(|s| s.path.as_path()))
                } else {
                    result
                };
                let mut result = worded(result);
                if let Ok(claimed) = self.finish(db, &r, &mut result, true) {
                    for job in claimed {
                        self.spawn(db, job);
                    }
                    return;
                }
                // Nothing of that transaction happened: the outcome alone, as ever (its log
                // lines were written by the first try).
                let was_quiet = self.quiet.replace(true);
                let recorded = self.finish_or_make_room(db, &r, &mut result);
                self.quiet.set(was_quiet);
                if let Err(e) = recorded {
                    // A full disk, say: the outcome is kept and written once queue.db accepts
                    // writes again; the job stays `running` until then.
                    tracing::error!(
                        job = id,
                        "cannot record the job's outcome: {e}; it is kept and recorded when the \
                         queue database accepts writes again"
                    );
                    self.unrecorded.push((r, result));
                    self.record_retry_at = Instant::now() + RECORD_RETRY;
                } else {
                    self.fill(db, now_ms());
                }
            }
        }
    }

    /// Try again to write the outcomes that could not be written, oldest first; stop at the first
    /// that still fails.
    fn record_unrecorded(&mut self, db: &QueueDb, now: Instant) {
        if self.unrecorded.is_empty() || now < self.record_retry_at {
            return;
        }
        self.record_retry_at = now + RECORD_RETRY;
        let mut pending = std::mem::take(&mut self.unrecorded).into_iter();
        for (r, mut result) in pending.by_ref() {
            if self.finish_or_make_room(db, &r, &mut result).is_err() {
                self.unrecorded.push((r, result));
                break;
            }
            tracing::info!(job = r.job.id, "recorded the job's outcome after all");
        }
        self.unrecorded.extend(pending);
    }

    /// `finish`, making room on a full disk: first fold queue.db's write-ahead log into the
    /// database and truncate it, then give up the reserve (see `make_reserve`). Each failed try
    /// after the first is quiet, so a full disk does not repeat the job's log lines.
    fn finish_or_make_room(
        &self,
        db: &QueueDb,
        r: &RunningJob,
        result: &mut Result<Report, Failure>,
    ) -> rusqlite::Result<()> {
        let full =
            |e: &rusqlite::Error| e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull);
        let first = self.finish(db, r, result, false).map(drop);
        let was_quiet = self.quiet.replace(true);
        let outcome = match first {
            Err(e) if full(&e) => {
                let _ = db
                    .conn()
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                match self.finish(db, r, result, false).map(drop) {
                    Err(e) if full(&e) && std::fs::remove_file(&self.reserve).is_ok() => {
                        tracing::warn!(
                            job = r.job.id,
                            "the disk is full: the space reserve was released to record the \
                             job's outcome; free some space (futurnal help runbook {})",
                            crate::runbook::topics::DISK_LOW
                        );
                        self.finish(db, r, result, false).map(drop)
                    }
                    other => other,
                }
            }
            other => other,
        };
        self.quiet.set(was_quiet);
        outcome
    }

    /// Keep `RESERVE_BYTES` allocated beside queue.db, so that when the disk fills up the outcome
    /// of the job that hit it can still be recorded. Made only while the disk has room for it
    /// beyond `queue.min_free_mb`.
    fn make_reserve(&mut self, now: Instant) {
        if now < self.reserve_check_at {
            return;
        }
        self.reserve_check_at = now + RESERVE_CHECK;
        if std::fs::symlink_metadata(&self.reserve).is_ok() {
            return;
        }
        let min = self.config.queue.min_free_mb.saturating_mul(1024 * 1024);
        let dir = self.reserve.parent().unwrap_or(std::path::Path::new("/"));
        if !crate::home::free_bytes(dir).is_ok_and(|free| free > min + 2 * RESERVE_BYTES) {
            return;
        }
        if let Err(e) = create_reserve(&self.reserve) {
            let _ = std::fs::remove_file(&self.reserve);
            tracing::warn!("cannot set aside the disk space reserve: {e}");
        }
    }

    /// Record a finished job's outcome in one transaction; with `claim`, claim jobs for the free
    /// workers in the same one (one durable commit instead of two). The claimed jobs start only
    /// once it commits; if it fails, neither happened.
    fn finish(
        &self,
        db: &QueueDb,
        r: &RunningJob,
        result: &mut Result<Report, Failure>,
        claim: bool,
    ) -> rusqlite::Result<Vec<Job>> {
        let now = now_ms();
        let tx = jobs::immediate(db.conn())?;
        self.finish_in(&tx, r, result, now)?;
        let free = self.max.saturating_sub(self.running.len());
        // Nothing due (an index lookup): the claim query, which reads every configured source,
        // is not run.
        let claimed = if !claim || self.draining || free == 0 || !jobs::any_due(&tx, now)? {
            Vec::new()
        } else {
            jobs::claim_batch_in(
                &tx,
                now,
                &self.instance_id,
                self.stall_ms(),
                &self.claimable,
                free,
            )?
        };
        tx.commit()?;
        Ok(claimed)
    }

    /// A job's outcome, written in `tx`: its state change, its telemetry row, and for a run its
    /// failed items' jobs and the item jobs and runs it resolved.
    fn finish_in(
        &self,
        tx: &rusqlite::Transaction<'_>,
        r: &RunningJob,
        result: &mut Result<Report, Failure>,
        now: i64,
    ) -> rusqlite::Result<()> {
        let job = &r.job;
        let source = self.sources.iter().find(|s| s.name == job.source);
        match result {
            Ok(report) if report.cancelled => {
                let n = numbers(report);
                match &r.cancel_reason {
                    Some((CancelReason::Shutdown, _)) | None => {
                        let applied = jobs::hand_back(
                            tx,
                            job.id,
                            now,
                            now,
                            "daemon",
                            "interrupted by shutdown; resumes at next start",
                        )?;
                        attempt_ended(tx, applied, job, JobState::Pending, None, now, &n)?;
                    }
                    Some((CancelReason::Operator(why), _)) => {
                        let text = format!(
                            "cancelled by operator: {why} ({} of {} items done)",
                            n.docs_new + n.docs_changed + n.items_failed,
                            report.items_seen
                        );
                        finish_attempt(tx, job, Outcome::Cancelled, now, &text, &n, None)?;
                    }
                }
            }
            Ok(report) if job.kind == JobKind::Item && !report.failed.is_empty() => {
                let (_, failure) = report.failed[0].clone();
                self.failed(tx, job, &failure, now, &numbers(report))?;
            }
            Ok(report) => {
                let n = numbers(report);
                // Item jobs are numbered in item order, whatever order the threads finished in.
                report.failed.sort_by(|a, b| a.0.cmp(&b.0));
                if let Some(source) = source {
                    for (item, failure) in &report.failed {
                        // Keyed by the item: a run's failed items retry spread out.
                        let key = jobs::item_key(&source.name, item);
                        let retry_at = now + retry_delay_ms(&source.retry, 1, key);
                        let item_job =
                            jobs::enqueue_item(tx, source, item, job.id, failure, retry_at, now)?;
                        jobs::record_item_error(tx, job.id, item, failure, item_job)?;
                    }
                    jobs::resolve_items(tx, &source.name, &report.succeeded_items, job.id, now)?;
                    if job.kind == JobKind::SourceRun {
                        jobs::resolve_runs(tx, &source.name, job.id, now)?;
                    }
                }
                let text = describe(report);
                finish_attempt(tx, job, Outcome::Succeeded, now, &text, &n, None)?;
                // Counts only: failure texts can name items.
                tracing::info!(
                    job = job.id,
                    source = %job.source,
                    new = n.docs_new,
                    changed = n.docs_changed,
                    deleted = n.docs_deleted,
                    failed = n.items_failed,
                    "job succeeded"
                );
            }
            // No report: the numbers are what the run committed before it failed.
            Err(failure) => {
                let n = committed_numbers(&r.committed.get());
                self.failed(tx, job, failure, now, &n)?
            }
        }
        Ok(())
    }

    /// Record a failed attempt as `jobs::decide` says, with the retry policy of the job's
    /// source in this daemon's configuration.
    fn failed(
        &self,
        tx: &rusqlite::Transaction<'_>,
        job: &Job,
        failure: &Failure,
        now: i64,
        n: &RunNumbers,
    ) -> rusqlite::Result<()> {
        let policy = self
            .sources
            .iter()
            .find(|s| s.name == job.source)
            .map_or(&self.config.retry, |s| &s.retry);
        let key = match &job.item {
            Some(item) => jobs::item_key(&job.source, item),
            None => job.id,
        };
        let quiet = self.quiet.get();
        let redacting = self.config.security.path_redaction;
        match jobs::decide(failure, job.attempts, job.max_attempts, policy, key, now) {
            Decision::Defer { at, text } => {
                tracing::info!(job = job.id, "job deferred: store busy");
                let applied = jobs::hand_back(tx, job.id, now, at, "daemon", &text)?;
                attempt_ended(tx, applied, job, JobState::Pending, Some(failure), now, n)?;
            }
            Decision::Retry { at, text } => {
                if quiet {
                } else if redacting {
                    tracing::warn!(job = job.id, class = %failure.class, attempt = job.attempts, "job failed; retry scheduled");
                } else {
                    tracing::warn!(job = job.id, "job failed: {text}");
                }
                let applied = jobs::retry_later(tx, job.id, now, at, failure, &text)?;
                attempt_ended(tx, applied, job, JobState::Failed, Some(failure), now, n)?;
            }
            Decision::Quarantine { text } => {
                if quiet {
                } else if redacting {
                    tracing::warn!(job = job.id, class = %failure.class, "job quarantined");
                } else {
                    tracing::warn!(job = job.id, "job quarantined: {text}");
                }
                finish_attempt(tx, job, Outcome::Quarantined, now, &text, n, Some(failure))?;
            }
        }
        Ok(())
    }

    /// Stop claiming; from now on only in-flight jobs are finished.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// No job runs and every outcome is recorded (a stop waits for both, up to its grace).
    pub fn idle(&self) -> bool {
        self.running.is_empty() && self.unrecorded.is_empty()
    }

    /// The grace is over: ask every running job to stop.
    pub fn interrupt_all(&mut self) {
        for r in self.running.values_mut() {
            r.cancel.store(true, Ordering::Relaxed);
            if r.cancel_reason.is_none() {
                r.cancel_reason = Some((CancelReason::Shutdown, Instant::now()));
            }
        }
    }

    /// Jobs still running when the daemon must exit go back to pending.
    pub fn abandon(&mut self, db: &QueueDb) {
        let now = now_ms();
        // Outcomes queue.db still refuses: their jobs stay `running` there, and the next start
        // hands them back like those of a daemon that died.
        for (r, _) in self.unrecorded.drain(..) {
            tracing::warn!(
                job = r.job.id,
                "the job's outcome could not be recorded before the stop"
            );
        }
        for (_, r) in self.running.drain() {
            let n = committed_numbers(&r.committed.get());
            let reason = "interrupted by shutdown; resumes at next start";
            hand_back_now(db, &r.job, reason, &n, now);
        }
    }
}

/// Hand a running job back to the queue at once (its attempt not counted), with its telemetry
/// row, in one transaction; a failure to is logged (the next start hands it back then).
fn hand_back_now(db: &QueueDb, job: &Job, reason: &str, numbers: &RunNumbers, now: i64) {
    let result = jobs::in_transaction(db.conn(), |tx| {
        let applied = jobs::hand_back(tx, job.id, now, now, "daemon", reason)?;
        attempt_ended(tx, applied, job, JobState::Pending, None, now, numbers)
    });
    if let Err(e) = result {
        tracing::warn!(job = job.id, "cannot hand the job back: {e}");
    }
}

/// An attempt of `job` ended in `ended`: its telemetry row, in the transaction that wrote the
/// change (`applied`: the change happened; a job someone else changed first records nothing).
fn attempt_ended(
    tx: &rusqlite::Transaction<'_>,
    applied: bool,
    job: &Job,
    ended: JobState,
    failure: Option<&Failure>,
    now: i64,
    n: &RunNumbers,
) -> rusqlite::Result<()> {
    if applied {
        telemetry::record_attempt(tx, job, ended, failure, now, n)?;
    }
    Ok(())
}

/// Move a running job to its final state and record the attempt's telemetry, in the caller's
/// transaction (the telemetry row only when the change happened).
fn finish_attempt(
    tx: &rusqlite::Transaction<'_>,
    job: &Job,
    outcome: Outcome,
    now: i64,
    text: &str,
    n: &RunNumbers,
    failure: Option<&Failure>,
) -> rusqlite::Result<()> {
    let applied = jobs::finish(tx, job.id, outcome, now, "daemon", text, n, failure)?;
    attempt_ended(tx, applied, job, outcome.state(), failure, now, n)
}

/// `change` applied to every failure of a result: the job's, or each failed item's.
fn each_failure(
    result: Result<Report, Failure>,
    change: impl Fn(Failure) -> Failure,
) -> Result<Report, Failure> {
    match result {
        Ok(mut report) => {
            report.failed = report
                .failed
                .into_iter()
                .map(|(item, f)| (item, change(f)))
                .collect();
            Ok(report)
        }
        Err(f) => Err(change(f)),
    }
}

/// Failure texts with paths replaced by fingerprints (`Failure::redacted`): the paths a failure
/// declares and the source's own folder exactly (whatever characters they contain), then any
/// other absolute path.
fn redact(
    result: Result<Report, Failure>,
    root: Option<&std::path::Path>,
) -> Result<Report, Failure> {
    each_failure(result, |f| match root {
        Some(root) => f.naming(root).redacted(),
        None => f.redacted(),
    })
}

/// Failures with their remedies worded for operators, as queue.db keeps them.
fn worded(result: Result<Report, Failure>) -> Result<Report, Failure> {
    each_failure(result, |f| Failure {
        message: crate::error::failure_text(&f),
        remedy: None,
        ..f
    })
}

/// The failure text of a job whose thread panicked outside per-item handling (`at`: " at
/// file:line" or nothing): what it committed before the crash stays in the store, and says so.
fn crashed(at: &str, t: &Tally) -> String {
    let n = t.documents();
    format!(
        "the job crashed (a bug in futurnal{at}); {} committed before the crash ({} new, {} \
         changed, {} deleted) and {} in the store",
        match n {
            1 => "1 document was".to_string(),
            n => format!("{n} documents were"),
        },
        t.counts.new,
        t.counts.changed,
        t.counts.deleted,
        if n == 1 { "stays" } else { "stay" }
    )
}

/// A job's numbers from what its run committed (when it ended without a report).
fn committed_numbers(t: &Tally) -> RunNumbers {
    RunNumbers {
        items_seen: t.items_seen as i64,
        docs_new: t.counts.new as i64,
        docs_changed: t.counts.changed as i64,
        docs_unchanged: t.counts.unchanged as i64,
        docs_deleted: t.counts.deleted as i64,
        items_skipped: t.skipped as i64,
        items_failed: t.failed as i64,
        bytes: t.bytes as i64,
    }
}

fn numbers(r: &Report) -> RunNumbers {
    committed_numbers(&Tally::from(r))
}

fn describe(r: &Report) -> String {
    let mut text = format!(
        "{} new, {} changed, {} deleted, {} unchanged documents; {} skipped",
        r.counts.new,
        r.counts.changed,
        r.counts.deleted,
        r.counts.unchanged,
        crate::display::plural(r.skipped as i64, "item")
    );
    if !r.failed.is_empty() {
        text.push_str(&format!(
            ", {} failed ({})",
            r.failed.len(),
            failure_summary(&r.failed)
        ));
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Live reconfiguration (`futurnal orchestrator reload`, SIGHUP), driven by `daemon::reload`.

impl Pool {
    /// Apply a reloaded configuration. Jobs already running keep the source settings they
    /// started with (their threads hold a copy); from the next tick, schedules, claims, per-source
    /// limits, the retry policy and the pool size follow the new configuration. A smaller pool
    /// stops nothing: it claims nothing until enough running jobs have finished.
    pub fn reconfigure(&mut self, config: &Config, max: usize) {
        self.scheduler = Scheduler::new(&config.sources);
        self.claimable = jobs::claimable(&config.sources);
        self.sources = config.sources.clone();
        self.config = config.clone();
        self.max = max.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceType;

    fn setup() -> (tempfile::TempDir, QueueDb, Pool, SourceConfig) {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let db = QueueDb::open_for_daemon(&home.queue_db(), &Default::default()).unwrap();
        let mut config = Config::default();
        let source = SourceConfig {
            retry: crate::config::Retry {
                jitter: 0.0,
                ..Default::default()
            },
            ..SourceConfig::new("s", SourceType::LocalFiles, dir.path())
        };
        config.sources = vec![source.clone()];
        let (pool, _rx) = Pool::new(&home, &config, "me", 2);
        (dir, db, pool, source)
    }

    /// Claim a job and register it as running without starting a thread.
    fn running(db: &QueueDb, pool: &mut Pool, source: &SourceConfig, now: i64) -> i64 {
        jobs::enqueue_run(db.conn(), source, "manual", "test", now).unwrap();
        let job = jobs::claim(db.conn(), now, "me", pool.stall_ms(), &pool.claimable)
            .unwrap()
            .unwrap();
        let id = job.id;
        pool.running.insert(
            id,
            RunningJob {
                job,
                cancel: Arc::new(AtomicBool::new(false)),
                committed: Default::default(),
                last_progress: now,
                cancel_reason: None,
            },
        );
        id
    }

    /// A finished job's outcome and the claim of the job waiting for its worker commit in one
    /// transaction: a claim that fails takes nothing with it, the outcome is still recorded
    /// (alone, as before batching), and the waiting job is claimed once claims work again.
    #[test]
    fn an_outcome_and_the_next_claim_commit_together_and_a_failed_claim_loses_no_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let db = QueueDb::open_for_daemon(&home.queue_db(), &Default::default()).unwrap();
        let folder = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir(&path).unwrap();
            SourceConfig::new(name, SourceType::LocalFiles, path)
        };
        let (source, other) = (folder("s"), folder("t"));
        let config = Config {
            sources: vec![source.clone(), other.clone()],
            ..Default::default()
        };
        let (mut pool, mut rx) = Pool::new(&home, &config, "me", 1);
        let state = |id: i64| jobs::get(db.conn(), id).unwrap().unwrap().state;
        let finished = |pool: &mut Pool, id: i64| {
            pool.handle(
                &db,
                Message::Done {
                    id,
                    result: Ok(Report::default()),
                },
            )
        };

        // A claim that fails (the failpoint aborts it between its update and its event).
        let first = running(&db, &mut pool, &source, 1_000);
        let waiting = jobs::enqueue_run(db.conn(), &other, "manual", "t", 1_000)
            .unwrap()
            .id();
        jobs::failpoint::set_on_this_thread(Some(jobs::Change::Claimed));
        finished(&mut pool, first);
        jobs::failpoint::set_on_this_thread(None);
        assert_eq!(state(first), JobState::Succeeded, "the outcome is recorded");
        assert_eq!(state(waiting), JobState::Pending, "and nothing was claimed");
        assert_eq!(pool.busy(), 0);

        // Claims work: the next outcome commits with the claim of the waiting job, whose
        // thread starts after that commit.
        let second = {
            pool.fill(&db, now_ms());
            assert_eq!(state(waiting), JobState::Running);
            waiting
        };
        let third = jobs::enqueue_run(db.conn(), &source, "manual", "t", 2_000)
            .unwrap()
            .id();
        let mut commits = None;
        while state(second) != JobState::Succeeded {
            let msg = rx.blocking_recv().expect("the job thread reports");
            if matches!(msg, Message::Done { .. }) {
                // An empty write-ahead log, so what handling the outcome commits can be counted.
                db.conn()
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    .unwrap();
                pool.handle(&db, msg);
                commits = Some(wal_commits(&home.queue_db()));
            } else {
                pool.handle(&db, msg);
            }
        }
        assert_eq!(commits, Some(1), "one commit for the outcome and the claim");
        assert_eq!(
            state(third),
            JobState::Running,
            "claimed as the outcome was recorded"
        );
        let at = |id: i64, to: JobState| {
            jobs::events(db.conn(), id)
                .unwrap()
                .into_iter()
                .rfind(|e| e.to_state == to)
                .unwrap()
                .at
        };
        assert_eq!(
            at(second, JobState::Succeeded),
            at(third, JobState::Running)
        );
        while pool.busy() > 0 {
            let msg = rx.blocking_recv().expect("the job thread reports");
            pool.handle(&db, msg);
        }
        assert_eq!(state(third), JobState::Succeeded);
        assert_eq!(
            jobs::history_violations(db.conn()).unwrap(),
            Vec::<(i64, String)>::new()
        );
    }

    /// How many transactions the write-ahead log beside `db` holds: frames whose header names the
    /// database size after a commit (SQLite's WAL format: a 32-byte header, then frames of a
    /// 24-byte header and a page).
    fn wal_commits(db: &std::path::Path) -> usize {
        let wal = std::fs::read(db.with_extension("db-wal")).unwrap_or_default();
        if wal.len() < 32 {
            return 0;
        }
        let page = u32::from_be_bytes(wal[8..12].try_into().unwrap()) as usize;
        wal[32..]
            .chunks(24 + page)
            .filter(|f| f.len() == 24 + page && f[4..8] != [0, 0, 0, 0])
            .count()
    }

    /// A panic outside per-item handling (a store write on the writer thread) fails the job,
    /// and the job still reports what its run committed before the crash: in its numbers and
    /// in its error, which quotes neither the panic's message nor the document.
    #[test]
    fn a_job_that_panics_after_commits_reports_what_it_committed() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("home"));
        std::fs::create_dir(home.root()).unwrap();
        let db = QueueDb::open_for_daemon(&home.queue_db(), &Default::default()).unwrap();
        let root = dir.path().join("Folder With Spaces: (ü) x");
        std::fs::create_dir_all(root.join("z")).unwrap();
        // Listed before the subfolder: the marked note is the last item, after a full batch.
        for i in 0..600 {
            std::fs::write(root.join(format!("n{i:04}.md")), format!("note {i}")).unwrap();
        }
        let secret = "the private words of the last note";
        let marker = std::str::from_utf8(crate::ingest::TEST_WRITER_PANIC_MARKER).unwrap();
        std::fs::write(root.join("z/last.md"), format!("{secret}\n{marker}")).unwrap();
        let source = SourceConfig::new("s", crate::config::SourceType::LocalFiles, &root);
        let config = Config {
            sources: vec![source.clone()],
            ..Default::default()
        };
        let (mut pool, mut rx) = Pool::new(&home, &config, "me", 2);
        let now = now_ms();
        jobs::enqueue_run(db.conn(), &source, "manual", "test", now).unwrap();
        let job = jobs::claim(db.conn(), now, "me", pool.stall_ms(), &pool.claimable)
            .unwrap()
            .unwrap();
        let id = job.id;
        pool.spawn(&db, job);
        while pool.busy() > 0 {
            let msg = rx.blocking_recv().expect("the job thread reports");
            pool.handle(&db, msg);
        }
        let job = jobs::get(db.conn(), id).unwrap().unwrap();
        assert_eq!(job.state, jobs::JobState::Quarantined);
        assert_eq!(job.error_class.as_deref(), Some("internal"));
        let store = crate::store::Store::open(&home.store_db()).unwrap();
        let live = store.live_documents("s").unwrap() as i64;
        assert!(live >= 512, "{live} documents committed");
        assert_eq!(job.docs_new, live);
        let error = job.last_error.unwrap();
        assert!(
            error.contains(&format!(
                "; {live} documents were committed before the crash ({live} new, 0 changed, 0 \
                 deleted) and stay in the store"
            )),
            "{error}"
        );
        let leaked: i64 = db
            .conn()
            .query_row(
                "SELECT count(*) FROM job_events WHERE reason LIKE '%private%' \
                 OR reason LIKE '%injected%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            !error.contains("private") && !error.contains("injected"),
            "{error}"
        );
        assert_eq!(leaked, 0);
    }

    /// What queue.db receives under `security.path_redaction`: a source folder named with
    /// spaces, `:`, `(` and non-ASCII leaves no part of its name, whether the failure declared
    /// it or formatted it into free text, for the run and for each item.
    #[test]
    fn stored_failures_name_no_part_of_a_hostile_source_folder() {
        let root = std::path::Path::new("/tmp/x/Folder With Spaces: (ü) x");
        let e = std::io::Error::from_raw_os_error(13);
        let declared = Failure::io_at("source path", root, &e);
        let free = Failure::io(format!("cannot open {}/a b.md", root.display()), &e);
        let report = Report {
            failed: vec![("a b.md".into(), free.clone())],
            ..Default::default()
        };
        let mut messages = Vec::new();
        for f in [declared, free] {
            messages.push(redact(Err(f), Some(root)).unwrap_err().message);
        }
        let Ok(report) = redact(Ok(report), Some(root)) else {
            unreachable!()
        };
        messages.push(report.failed[0].1.message.clone());
        for m in &messages {
            for part in ["Folder", "With", "Spaces", "ü", "tmp"] {
                assert!(!m.contains(part), "{part} in {m}");
            }
        }
        assert!(messages[1].ends_with("/a b.md: Permission denied (os error 13)"));
    }

    #[test]
    fn a_stalled_job_is_reclaimed_as_a_timeout_and_retried_by_policy() {
        let (_d, db, mut pool, source) = setup();
        let t0 = now_ms();
        let id = running(&db, &mut pool, &source, t0);
        // Just under the stall timeout: still running, its lease renewed.
        pool.keep_leases(&db, t0 + 299_000);
        assert!(pool.running.contains_key(&id));
        let lease: i64 = db
            .conn()
            .query_row("SELECT lease_until FROM jobs WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(lease, t0 + 300_000);
        // Progress moves the lease on.
        pool.running.get_mut(&id).unwrap().last_progress = t0 + 100_000;
        pool.keep_leases(&db, t0 + 301_000);
        assert!(pool.running.contains_key(&id));
        pool.keep_leases(&db, t0 + 401_000);
        assert!(!pool.running.contains_key(&id));
        let job = jobs::get(db.conn(), id).unwrap().unwrap();
        assert_eq!(job.state, jobs::JobState::Failed);
        assert_eq!(job.error_class.as_deref(), Some("timeout"));
        // Attempt 1 failed: the retry comes base_delay_seconds later (jitter 0 here).
        let delay = job.scheduled_for - job.updated_at;
        assert_eq!(delay, source.retry.base_delay_seconds as i64 * 1000);
    }

    /// A job `running` in queue.db that no worker here runs (its daemon died without this one
    /// noticing at start) is rescued when its lease lapses, and handed back as after a crash;
    /// an outcome waiting to be recorded keeps its job's lease.
    #[test]
    fn a_lapsed_lease_with_no_worker_is_rescued_as_an_orphan() {
        let (_d, db, mut pool, source) = setup();
        let t0 = 1_000_000_000;
        jobs::enqueue_run(db.conn(), &source, "manual", "test", t0).unwrap();
        let ghost = jobs::claim(db.conn(), t0, "ghost", 60_000, &pool.claimable)
            .unwrap()
            .unwrap();
        pool.keep_leases(&db, t0 + 59_000);
        assert_eq!(
            jobs::get(db.conn(), ghost.id).unwrap().unwrap().state,
            jobs::JobState::Running
        );
        pool.keep_leases(&db, t0 + 61_000);
        let job = jobs::get(db.conn(), ghost.id).unwrap().unwrap();
        assert_eq!((job.state, job.attempts), (jobs::JobState::Pending, 0));
        let last = jobs::events(db.conn(), ghost.id).unwrap().pop().unwrap();
        assert_eq!(last.actor, "recovery");

        // Ours, finished but not recorded yet (a full disk): its lease is kept.
        let id = running(&db, &mut pool, &source, t0 + 62_000);
        let r = pool.running.remove(&id).unwrap();
        pool.unrecorded.push((r, Ok(Report::default())));
        pool.keep_leases(&db, t0 + 62_000 + 10 * 300_000);
        assert_eq!(
            jobs::get(db.conn(), id).unwrap().unwrap().state,
            jobs::JobState::Running
        );
    }

    #[test]
    fn a_retry_is_claimed_exactly_when_due_not_a_millisecond_before() {
        let (_d, db, mut pool, source) = setup();
        let t0 = 1_000_000_000;
        let id = running(&db, &mut pool, &source, t0);
        let r = pool.running.remove(&id).unwrap();
        let tx = jobs::immediate(db.conn()).unwrap();
        let failure = Failure::new(crate::failure::ErrorClass::IoError, "disk hiccup");
        pool.failed(&tx, &r.job, &failure, t0, &RunNumbers::default())
            .unwrap();
        tx.commit().unwrap();
        let due = jobs::get(db.conn(), id).unwrap().unwrap().scheduled_for;
        assert_eq!(due, t0 + 30_000);
        assert!(
            jobs::claim(db.conn(), due - 1, "me", 1000, &pool.claimable)
                .unwrap()
                .is_none()
        );
        let again = jobs::claim(db.conn(), due, "me", 1000, &pool.claimable)
            .unwrap()
            .unwrap();
        assert_eq!((again.id, again.attempts), (id, 2));
    }

    /// Every attempt that ends leaves one telemetry row, written in the transaction of its state
    /// change, naming the state it left the job in; a change that did not happen (the job was
    /// changed by someone else first) records nothing.
    #[test]
    fn every_ended_attempt_is_recorded_with_its_state_change() {
        let (_d, db, mut pool, source) = setup();
        let rows = |db: &QueueDb| -> Vec<(i64, JobState, Option<String>, i64)> {
            let mut stmt = db
                .conn()
                .prepare(
                    "SELECT job_id, outcome, error_class, bytes FROM telemetry_attempts ORDER BY id",
                )
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        let n = RunNumbers {
            bytes: 1234,
            ..Default::default()
        };
        let end = |pool: &mut Pool, id: i64, failure: Failure, t: i64| {
            let r = pool.running.remove(&id).unwrap();
            jobs::in_transaction(db.conn(), |tx| pool.failed(tx, &r.job, &failure, t, &n)).unwrap();
        };
        let a = running(&db, &mut pool, &source, 1_000);
        end(
            &mut pool,
            a,
            Failure::new(crate::failure::ErrorClass::Busy, "locked"),
            2_000,
        );
        let b = running(&db, &mut pool, &source, 10_000);
        end(
            &mut pool,
            b,
            Failure::new(crate::failure::ErrorClass::IoError, "hiccup"),
            11_000,
        );
        let c = running(&db, &mut pool, &source, 100_000);
        end(&mut pool, c, Failure::parse("not JSON"), 101_000);
        assert_eq!(
            rows(&db),
            vec![
                (a, JobState::Pending, Some("busy".into()), 1234),
                (b, JobState::Failed, Some("io_error".into()), 1234),
                (c, JobState::Quarantined, Some("parse_error".into()), 1234),
            ]
        );
        // The job is no longer running: nothing is written, no row either.
        let job = jobs::get(db.conn(), c).unwrap().unwrap();
        jobs::in_transaction(db.conn(), |tx| {
            pool.failed(tx, &job, &Failure::parse("again"), 102_000, &n)
        })
        .unwrap();
        assert_eq!(rows(&db).len(), 3);
        // An orphan rescued from a lapsed lease: recorded from its row.
        let t0 = 1_000_000_000;
        jobs::enqueue_run(db.conn(), &source, "manual", "test", t0).unwrap();
        let ghost = jobs::claim(db.conn(), t0, "ghost", 60_000, &pool.claimable)
            .unwrap()
            .unwrap();
        pool.keep_leases(&db, t0 + 61_000);
        assert_eq!(rows(&db)[3], (ghost.id, JobState::Pending, None, 0));
    }

    #[test]
    fn a_busy_store_defers_without_using_an_attempt_and_permanent_failures_quarantine() {
        let (_d, db, mut pool, source) = setup();
        let id = running(&db, &mut pool, &source, 1_000);
        let r = pool.running.remove(&id).unwrap();
        let tx = jobs::immediate(db.conn()).unwrap();
        let busy = Failure::new(crate::failure::ErrorClass::Busy, "database is locked");
        pool.failed(&tx, &r.job, &busy, 1_000, &RunNumbers::default())
            .unwrap();
        tx.commit().unwrap();
        let job = jobs::get(db.conn(), id).unwrap().unwrap();
        assert_eq!(
            (job.state, job.attempts, job.scheduled_for),
            (jobs::JobState::Pending, 0, 6_000)
        );

        let id = running(&db, &mut pool, &source, 10_000);
        let r = pool.running.remove(&id).unwrap();
        let tx = jobs::immediate(db.conn()).unwrap();
        let bad = Failure::parse("not JSON");
        pool.failed(&tx, &r.job, &bad, 10_000, &RunNumbers::default())
            .unwrap();
        tx.commit().unwrap();
        let job = jobs::get(db.conn(), id).unwrap().unwrap();
        assert_eq!(job.state, jobs::JobState::Quarantined);
    }
}
