//! Reading the queue: single jobs, lists, history, per-source summaries, and the history check.
//!
//! Owns: read-only queries over `jobs`, `job_events` and `job_item_errors`.
//! Invariants: nothing here writes; a job's history is in the order it was written (event ids:
//! every write holds queue.db's write lock, while the times come from each writer's clock); `history_violations` is the executable form of the
//! transitions module's promise (a job's state is the `to_state` of its newest event, and its
//! events chain from creation), run by the test suites after they drive real daemons.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::model::{COLUMNS, Event, ItemError, Job, JobKind, JobState, job_from_row};

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
         ORDER BY id",
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

/// Running jobs with a cancel request: (id, requested at).
pub fn cancel_requests(conn: &Connection) -> rusqlite::Result<Vec<(i64, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, cancel_requested_at FROM jobs
         WHERE state = ?1 AND cancel_requested_at IS NOT NULL",
    )?;
    stmt.query_map([JobState::Running], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
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
        "SELECT {COLUMNS} FROM jobs WHERE state = ?5
           AND (?1 IS NULL OR error_class = ?1) AND (?2 IS NULL OR source = ?2)
           AND (?3 IS NULL OR COALESCE(finished_at, updated_at) < ?3)
           AND (?4 IS NULL OR id = ?4)
         ORDER BY id"
    ))?;
    stmt.query_map(
        params![f.reason, f.source, f.before, f.id, JobState::Quarantined],
        job_from_row,
    )?
    .collect()
}

/// Filters for `jobs list`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: Option<JobState>,
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
            SELECT MAX(id) FROM jobs WHERE kind = ?1 AND state IN (?2, ?3, ?4, ?5) GROUP BY source
            UNION
            SELECT MAX(id) FROM jobs WHERE kind = ?1 AND state = ?2 GROUP BY source)"
    ))?;
    let jobs: Vec<Job> = stmt
        .query_map(
            params![
                JobKind::SourceRun,
                JobState::Succeeded,
                JobState::Failed,
                JobState::Quarantined,
                JobState::Cancelled
            ],
            job_from_row,
        )?
        .collect::<rusqlite::Result<_>>()?;
    for job in jobs {
        let entry = out.entry(job.source.clone()).or_default();
        if job.state == JobState::Succeeded && entry.1.as_ref().is_none_or(|j| j.id < job.id) {
            entry.1 = Some(job.clone());
        }
        if entry.0.as_ref().is_none_or(|j| j.id < job.id) {
            entry.0 = Some(job);
        }
    }
    Ok(out)
}

/// Open jobs per source: pending and running counts.
pub fn open_counts(conn: &Connection) -> rusqlite::Result<HashMap<String, (i64, i64)>> {
    let mut out: HashMap<String, (i64, i64)> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT source, state, COUNT(*) FROM jobs WHERE state IN (?1, ?2) GROUP BY source, state",
    )?;
    let rows = stmt.query_map(params![JobState::Pending, JobState::Running], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, JobState>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (source, state, n) = row?;
        let e = out.entry(source).or_default();
        if state == JobState::Pending {
            e.0 = n;
        } else {
            e.1 = n;
        }
    }
    Ok(out)
}

/// Jobs, by source, still waiting or running (for a reload that removes or disables a source).
pub fn open_job_ids(conn: &Connection, source: &str) -> rusqlite::Result<Vec<i64>> {
    conn.prepare_cached(
        "SELECT id FROM jobs WHERE source = ?1 AND state IN (?2, ?3, ?4) ORDER BY id",
    )?
    .query_map(
        params![
            source,
            JobState::Pending,
            JobState::Failed,
            JobState::Running
        ],
        |r| r.get(0),
    )?
    .collect()
}

/// Jobs whose history does not account for their state: the newest event's `to_state` differs
/// from the job's state, the first event does not create the job (`from_state` NULL), or an
/// event does not start where the one before it ended. Empty when every state change was
/// written with its event. Returns `(job id, what is wrong)`.
pub fn history_violations(conn: &Connection) -> rusqlite::Result<Vec<(i64, String)>> {
    let mut out = Vec::new();
    let mut jobs = conn.prepare("SELECT id, state FROM jobs ORDER BY id")?;
    let mut events = conn.prepare_cached(
        "SELECT from_state, to_state FROM job_events WHERE job_id = ?1 ORDER BY id",
    )?;
    let all: Vec<(i64, String)> = jobs
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, state) in all {
        let history: Vec<(Option<String>, String)> = events
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let Some(first) = history.first() else {
            out.push((id, format!("{state} with no history")));
            continue;
        };
        if first.0.is_some() {
            out.push((id, "its history does not start with its creation".into()));
        }
        for pair in history.windows(2) {
            if pair[1].0.as_deref() != Some(pair[0].1.as_str()) {
                out.push((
                    id,
                    format!(
                        "an event from {:?} follows one that ended in {}",
                        pair[1].0, pair[0].1
                    ),
                ));
            }
        }
        let last = &history[history.len() - 1].1;
        if *last != state {
            out.push((
                id,
                format!("state {state} but its newest event says {last}"),
            ));
        }
    }
    Ok(out)
}
