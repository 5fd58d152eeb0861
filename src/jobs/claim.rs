//! Putting work in the queue and taking it out: enqueueing runs and item jobs, claiming, leases
//! and the rescue of jobs whose lease lapsed.
//!
//! Owns: the claim query and its policy (which due job runs next), the lease columns.
//! Invariants: the claim filters in SQL, so no number of blocked jobs hides a runnable one: a
//! paused or disabled source's jobs, and those of a source already running `concurrency` jobs
//! (or already running its one `source_run`), are never candidates; among the rest the highest
//! priority wins, a job gaining one level per `AGING_MS` it waits; an attempt is counted when a
//! job is claimed. `claim` is `claim_batch` of one: a batch takes, in one transaction, exactly
//! the jobs as many single claims would. At most one `source_run` per source is waiting
//! (triggers coalesce), and enqueueing many runs at once coalesces each as alone. A running
//! job's lease (`lease_until`) is renewed while its worker reports progress; a job whose lease
//! has lapsed is rescued by whichever daemon holds the home (see `expired_leases`).

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::model::{COLUMNS, Job, JobKind, JobState, job_from_row, priority_value};
use super::transitions::{self, Change, apply, event, in_transaction, note};
use crate::config::SourceConfig;
use crate::failure::{ErrorClass, Failure};

/// One priority level is worth this much waiting: a job gains a level every 5 minutes it waits,
/// so low-priority work never starves.
pub const AGING_MS: i64 = 5 * 60 * 1000;

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

/// Queue a run of `source`, or join the one already waiting. The attempts it gets are the
/// retry policy of the daemon that claims it (see `claim`); `max_attempts` is only what `jobs
/// show` says until then.
pub fn enqueue_run(
    conn: &Connection,
    source: &SourceConfig,
    trigger: &str,
    actor: &str,
    now: i64,
) -> rusqlite::Result<Enqueued> {
    in_transaction(conn, |tx| enqueue_run_in(tx, source, trigger, actor, now))
}

/// `enqueue_run` for each of `sources`, in order, in one transaction: one durable commit for
/// all of them, each request coalescing exactly as it would alone (a source named twice joins
/// the run its first request queued).
pub fn enqueue_runs(
    conn: &Connection,
    sources: &[&SourceConfig],
    trigger: &str,
    actor: &str,
    now: i64,
) -> rusqlite::Result<Vec<Enqueued>> {
    in_transaction(conn, |tx| {
        sources
            .iter()
            .map(|source| enqueue_run_in(tx, source, trigger, actor, now))
            .collect()
    })
}

fn enqueue_run_in(
    tx: &Transaction<'_>,
    source: &SourceConfig,
    trigger: &str,
    actor: &str,
    now: i64,
) -> rusqlite::Result<Enqueued> {
    let existing: Option<(i64, JobState, i64, i64)> = tx
        // MIN rather than ORDER BY id LIMIT 1: the IN over two states would sort in a temporary
        // b-tree, which cost five times the lookup (measured: 32 µs against 6).
        .prepare_cached(
            "SELECT id, state, scheduled_for, updated_at FROM jobs WHERE id = (
                 SELECT MIN(id) FROM jobs WHERE source = ?1 AND kind = ?2 AND state IN (?3, ?4))",
        )?
        .query_row(
            params![
                source.name,
                JobKind::SourceRun,
                JobState::Pending,
                JobState::Failed
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    if let Some((id, state, scheduled_for, updated_at)) = existing {
        // `now` was read before this transaction got the lock: another command may have queued
        // the run since. Nothing is brought forward to before the job's last change.
        let now = now.max(updated_at);
        if scheduled_for > now {
            // An explicit request does not wait for a retry's backoff.
            tx.execute(
                "UPDATE jobs SET scheduled_for = ?2, updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            note(
                tx,
                id,
                state,
                now,
                actor,
                &format!("brought forward ({trigger})"),
            )?;
        }
        return Ok(Enqueued::Coalesced(id));
    }
    tx.prepare_cached(
        "INSERT INTO jobs (source, kind, state, priority, trigger, scheduled_for, max_attempts,
            created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, ?6)",
    )?
    .execute(params![
        source.name,
        JobKind::SourceRun,
        JobState::Pending,
        priority_value(source.priority),
        trigger,
        now,
        source.retry.max_attempts
    ])?;
    let id = tx.last_insert_rowid();
    event(
        tx,
        id,
        now,
        None,
        JobState::Pending,
        actor,
        &format!("queued ({trigger})"),
    )?;
    Ok(Enqueued::New(id))
}

/// Give a failed item its own job: failed with a retry time if the failure is transient,
/// quarantined at once if it is permanent. Joins an item job already open for the same item.
#[allow(clippy::too_many_arguments)]
pub fn enqueue_item(
    tx: &Transaction<'_>,
    source: &SourceConfig,
    item: &str,
    parent: i64,
    failure: &Failure,
    retry_at: i64,
    now: i64,
) -> rusqlite::Result<i64> {
    let existing: Option<i64> = tx
        .query_row(
            "SELECT id FROM jobs WHERE source = ?1 AND kind = ?2 AND item = ?3
             AND state IN (?4, ?5, ?6, ?7) ORDER BY id DESC LIMIT 1",
            params![
                source.name,
                JobKind::Item,
                item,
                JobState::Pending,
                JobState::Failed,
                JobState::Running,
                JobState::Quarantined
            ],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let max_attempts = source.retry.max_attempts;
    let permanent = !failure.class.is_transient() || max_attempts <= 1;
    let state = if permanent {
        JobState::Quarantined
    } else {
        JobState::Failed
    };
    tx.execute(
        "INSERT INTO jobs (source, kind, item, state, priority, trigger, scheduled_for, attempts,
            max_attempts, created_at, updated_at, finished_at, parent_job_id, error_class, last_error)
         VALUES (?1, ?2, ?3, ?4, ?5, 'retry', ?6, 1, ?7, ?8, ?8, ?9, ?10, ?11, ?12)",
        params![
            source.name,
            JobKind::Item,
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
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE state IN (?2, ?3) AND scheduled_for <= ?1)",
    )?
    .query_row(params![now, JobState::Pending, JobState::Failed], |r| {
        r.get(0)
    })
}

/// The sources a daemon runs, as the claim query reads them: enabled ones only, with their
/// concurrency and the attempts their retry policy allows.
pub fn claimable(sources: &[SourceConfig]) -> String {
    let list: Vec<serde_json::Value> = sources
        .iter()
        .filter(|s| s.enabled)
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "concurrency": s.concurrency,
                "attempts": s.retry.max_attempts,
            })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

/// Claim the next runnable job for this instance (see the module's invariants): `claim_batch`
/// of one.
pub fn claim(
    conn: &Connection,
    now: i64,
    instance_id: &str,
    lease_ms: i64,
    sources: &str,
) -> rusqlite::Result<Option<Job>> {
    Ok(claim_batch(conn, now, instance_id, lease_ms, sources, 1)?.pop())
}

/// Claim up to `max` runnable jobs for this instance in one IMMEDIATE transaction (one durable
/// commit): the same jobs, in the same order, as `max` calls of `claim` at the same `now`
/// (`jobs::tests::a_batch_claims_what_as_many_single_claims_would`). `sources` is
/// `claimable(..)` of the daemon's configuration; each job's `max_attempts` becomes its
/// source's policy now, so the daemon's configuration decides, not whoever queued the job.
///
/// How one query takes what `max` single claims would: a single claim takes the first job, in
/// claim order, that its source can still run. Taking a job only ever blocks later jobs of the
/// same source, so the jobs taken one by one come in claim order, and a source's share is: its
/// first waiting `source_run` (none while one of its runs is running) and its item jobs, in
/// claim order, up to its free slots (`concurrency` minus its running jobs). The query computes
/// that share per source with window functions and takes the first `max` in claim order.
pub fn claim_batch(
    conn: &Connection,
    now: i64,
    instance_id: &str,
    lease_ms: i64,
    sources: &str,
    max: usize,
) -> rusqlite::Result<Vec<Job>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    in_transaction(conn, |tx| {
        claim_batch_in(tx, now, instance_id, lease_ms, sources, max)
    })
}

/// The claim query (see `claim_batch`). Parameters: ?1 now, ?2 `AGING_MS`, ?3 the sources
/// (`claimable`), ?4 the `source_run` kind, ?5 running, ?6 pending, ?7 failed, ?8 at most how
/// many.
///
/// The configured sources drive the join (`CROSS JOIN` keeps that order), each
/// reading only its own waiting jobs by `jobs_by_source`: the planner's own choice
/// scanned every due job once per source. A paused or full source is dropped before
/// its jobs are read (its terms name only `src` and `busy`). The windows sort narrow
/// rows; the chosen jobs' columns are read last, by id.
pub(super) fn claim_sql() -> &'static str {
    // Built once: it runs on every claim, and `prepare_cached` finds it by its text.
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH src (src_name, src_concurrency, src_attempts) AS MATERIALIZED (
             SELECT json_extract(value, '$.name'), json_extract(value, '$.concurrency'),
                    json_extract(value, '$.attempts')
             FROM json_each(?3)),
         busy (busy_source, busy_runs, busy_all) AS (
             SELECT source, SUM(kind = ?4), COUNT(*) FROM jobs WHERE state = ?5
             GROUP BY source),
         candidate AS (
             SELECT id AS cand_id, source AS cand_source, kind AS cand_kind, src_attempts,
                    src_concurrency - COALESCE(busy_all, 0) AS free_slots,
                    priority * ?2 + (?1 - created_at) AS claim_rank
             FROM src LEFT JOIN busy ON busy_source = src_name
             CROSS JOIN jobs INDEXED BY jobs_by_source ON source = src_name
             WHERE state IN (?6, ?7) AND scheduled_for <= ?1
               AND NOT EXISTS (SELECT 1 FROM source_state
                               WHERE name = src_name AND paused_at IS NOT NULL)
               AND COALESCE(busy_all, 0) < src_concurrency
               AND NOT (kind = ?4 AND COALESCE(busy_runs, 0) > 0)),
         numbered AS (
             SELECT *, CASE WHEN cand_kind = ?4 THEN ROW_NUMBER() OVER (
                        PARTITION BY cand_source, cand_kind
                        ORDER BY claim_rank DESC, cand_id) END AS run_no
             FROM candidate),
         share AS (
             SELECT *, ROW_NUMBER() OVER (
                        PARTITION BY cand_source ORDER BY claim_rank DESC, cand_id) AS slot
             FROM numbered WHERE run_no IS NULL OR run_no = 1),
         chosen AS (
             SELECT cand_id, src_attempts, claim_rank FROM share
             WHERE slot <= free_slots
             ORDER BY claim_rank DESC, cand_id
             LIMIT ?8)
         SELECT {COLUMNS}, src_attempts FROM chosen JOIN jobs ON id = cand_id
         ORDER BY claim_rank DESC, id"
        )
    });
    &SQL
}

/// `claim_batch` in the caller's transaction, which must hold the write lock (`immediate`):
/// the daemon claims for the workers a finished job freed in the transaction that records its
/// outcome. The jobs are claimed only once that transaction commits.
pub fn claim_batch_in(
    tx: &Transaction<'_>,
    now: i64,
    instance_id: &str,
    lease_ms: i64,
    sources: &str,
    max: usize,
) -> rusqlite::Result<Vec<Job>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    let found: Vec<(Job, i64)> = tx
        .prepare_cached(claim_sql())?
        .query_map(
            params![
                now,
                AGING_MS,
                sources,
                JobKind::SourceRun,
                JobState::Running,
                JobState::Pending,
                JobState::Failed,
                i64::try_from(max).unwrap_or(i64::MAX)
            ],
            |r| Ok((job_from_row(r)?, r.get(30)?)),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let lease_until = now + lease_ms;
    let mut claimed = Vec::with_capacity(found.len());
    for (mut job, attempts) in found {
        let reason = format!("attempt {} of {}", job.attempts + 1, attempts);
        // Under the write lock taken above nobody else changes the job; `false` is kept as a
        // guard all the same.
        if !apply(
            tx,
            job.id,
            job.state,
            Change::Claimed,
            ", attempts = attempts + 1, started_at = ?2, finished_at = NULL, instance_id = ?5,
                lease_until = ?6, items_done = 0, items_total = 0, max_attempts = ?7",
            &[&instance_id, &lease_until, &attempts],
            now,
            "daemon",
            &reason,
        )? {
            continue;
        }
        job.attempts += 1;
        job.max_attempts = attempts;
        job.state = JobState::Running;
        job.started_at = Some(now);
        job.instance_id = Some(instance_id.to_string());
        claimed.push(job);
    }
    Ok(claimed)
}

pub fn progress(conn: &Connection, id: i64, done: i64, total: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET items_done = ?2, items_total = ?3 WHERE id = ?1 AND state = ?4",
    )?
    .execute(params![id, done, total, JobState::Running])
    .map(|_| ())
}

/// Set the leases of running jobs: `(id, lease_until)`. A daemon extends a job's lease while its
/// worker reports progress; one that reports nothing lets it lapse.
pub fn renew_leases(conn: &Connection, leases: &[(i64, i64)]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE jobs SET lease_until = ?2 WHERE id = ?1 AND state = ?3 AND lease_until != ?2",
    )?;
    for (id, until) in leases {
        stmt.execute(params![id, until, JobState::Running])?;
    }
    Ok(())
}

/// Running jobs whose lease lapsed before `now`, with the instance that held each.
pub fn expired_leases(conn: &Connection, now: i64) -> rusqlite::Result<Vec<(i64, Option<String>)>> {
    conn.prepare_cached(
        "SELECT id, instance_id FROM jobs WHERE state = ?1 AND COALESCE(lease_until, 0) < ?2
         ORDER BY id",
    )?
    .query_map(params![JobState::Running, now], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?
    .collect()
}

/// A job that was running each time the orchestrator died this many times is poison: it is
/// quarantined instead of being run again (it may be what kills the orchestrator).
pub const POISON_AFTER_CRASHES: i64 = 3;

/// What rescuing orphaned jobs did.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Orphans {
    pub requeued: i64,
    pub poisoned: i64,
}

/// Jobs `running` in queue.db that no live worker runs (their daemon died, or nobody renewed the
/// lease) go back to pending, the attempt not counted; a job that was running during
/// `POISON_AFTER_CRASHES` such deaths is quarantined as `poison`. `which`: `None` for every
/// running job not held by `instance_id` (at start: the home's lock proves their holder is
/// gone), or exactly these ids (a lapsed lease).
pub fn rescue_orphans(
    tx: &Transaction<'_>,
    instance_id: &str,
    which: Option<&[i64]>,
    now: i64,
) -> rusqlite::Result<Orphans> {
    let orphans: Vec<(i64, i64)> = match which {
        None => tx
            .prepare_cached(
                "SELECT id, crashes FROM jobs WHERE state = ?1
                 AND COALESCE(instance_id, '') != ?2",
            )?
            .query_map(params![JobState::Running, instance_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?,
        Some(ids) => {
            let mut stmt =
                tx.prepare_cached("SELECT id, crashes FROM jobs WHERE id = ?1 AND state = ?2")?;
            let mut out = Vec::new();
            for id in ids {
                if let Some(row) = stmt
                    .query_row(params![id, JobState::Running], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?
                {
                    out.push(row);
                }
            }
            out
        }
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
                ErrorClass::Poison,
                format!("the orchestrator stopped uncleanly {crashes} times while this job ran"),
            );
            transitions::finish(
                tx,
                id,
                transitions::Outcome::Quarantined,
                now,
                "recovery",
                &failure.to_string(),
                &super::RunNumbers::default(),
                Some(&failure),
            )?;
            out.poisoned += 1;
        } else {
            transitions::hand_back(
                tx,
                id,
                now,
                now,
                "recovery",
                "the orchestrator stopped uncleanly while this ran",
            )?;
            out.requeued += 1;
        }
    }
    Ok(out)
}
