//! `futurnal orchestrator jobs ...`: list, show, wait, cancel.
//!
//! Invariant: `--format json` prints one serialized value, with a state named `state`, paths
//! absolute and the text form's exit status; the book lists the fields of `jobs cancel` in a
//! `| field | type | meaning |` table that `tests/json_shapes.rs` checks against real output.

use std::time::{Duration, Instant};

use clap::Subcommand;
use serde_json::json;

use super::{TableOrJson, print_json};
use crate::daemon::lock;
use crate::display;
use crate::error::{CommandError, ExitCode, OperatorError, Result};
use crate::home::{Home, display_path};
use crate::jobs::{self, CancelOutcome, Job, JobKind, JobState, ListFilter};
use crate::queue::{QueueDb, now_ms};
use crate::runbook::topics;

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Recent jobs, newest first
    List {
        /// How many jobs to show
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only jobs in this state
        #[arg(long, value_enum)]
        status: Option<JobState>,
        /// Only jobs of this source
        #[arg(long)]
        source: Option<String>,
        /// Only jobs updated since: a duration back from now (30m, 24h, 7d) or a date
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
    /// One job: its numbers, failed items and the timeline of its states
    Show {
        job_id: i64,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
    /// Wait until a job finishes (or its attempt fails); the exit status reflects its outcome
    Wait { job_id: i64 },
    /// Cancel a job: a waiting job never runs; a running job stops at its next item
    Cancel {
        job_id: i64,
        /// Why; kept in the job's timeline
        #[arg(long)]
        reason: String,
        /// `json`: the job id, whether it was running, and its state after the request
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
}

/// `jobs cancel --format json`: one object, documented in managing-jobs.md ("Cancelling a
/// job", its field table is checked by `tests/json_shapes.rs`).
#[derive(Debug, serde::Serialize)]
pub struct CancelReport {
    pub job_id: i64,
    /// It was running: the daemon stops it at its next item.
    pub was_running: bool,
    /// The job's state when the command returned: `cancelled`, or `running` while it finishes
    /// its current item (or until the orchestrator starts), or how it ended meanwhile.
    pub state: JobState,
    pub reason: String,
}

/// queue.db, read-only unless the command changes a job.
fn open(home: &Home, cmd: &JobsCommand) -> Result<Option<QueueDb>> {
    match cmd {
        JobsCommand::Cancel { .. } => QueueDb::open_existing(&home.queue_db()),
        _ => QueueDb::read_existing(&home.queue_db()),
    }
}

fn sql(home: &Home, e: rusqlite::Error) -> OperatorError {
    crate::error::queue_error(home, e)
}

fn no_such_job(home: &Home, db: Option<&QueueDb>, id: i64) -> OperatorError {
    let newest = db.and_then(|db| {
        db.conn()
            .query_row("SELECT MAX(id) FROM jobs", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .ok()
            .flatten()
    });
    let what = match newest {
        Some(n) => format!("no job {id}; job ids run from 1 to {n}"),
        None => format!(
            "no job {id}: there are no jobs yet in {}",
            display_path(&home.queue_db())
        ),
    };
    OperatorError::new(
        ExitCode::Usage,
        what,
        "nothing was changed; `futurnal orchestrator jobs list` shows the recent jobs",
        topics::JOBS_LIST,
    )
}

/// What a job is about, for tables: `run` or the item it retries.
fn what(job: &Job) -> String {
    match &job.item {
        Some(item) => format!("item {}", display::truncate(item, 24)),
        None => "run".into(),
    }
}

/// One line on how a job ended, for `trigger --wait` and `cancel`.
pub fn outcome_line(job: &Job) -> String {
    let took = job
        .duration_ms()
        .map(|d| format!(" in {}", display::duration_ms(d)))
        .unwrap_or_default();
    match job.state {
        JobState::Succeeded if job.kind == JobKind::SourceRun => {
            let mut line = format!(
                "job {} succeeded{took}: {} new, {} changed, {} deleted, {} unchanged documents; {} skipped",
                job.id,
                job.docs_new,
                job.docs_changed,
                job.docs_deleted,
                job.docs_unchanged,
                display::plural(job.items_skipped, "item")
            );
            if job.items_failed > 0 {
                line.push_str(&format!(
                    ", {} failed (see `futurnal orchestrator jobs show {}`)",
                    job.items_failed, job.id
                ));
            }
            line
        }
        JobState::Succeeded => format!("job {} succeeded{took}", job.id),
        JobState::Failed => format!(
            "job {} failed: {}: {}; it retries at {}",
            job.id,
            job.error_class.as_deref().unwrap_or("?"),
            job.last_error.as_deref().unwrap_or(""),
            display::timestamp(job.scheduled_for)
        ),
        JobState::Quarantined => format!(
            "job {} quarantined: {}: {}",
            job.id,
            job.error_class.as_deref().unwrap_or("?"),
            job.last_error.as_deref().unwrap_or("")
        ),
        JobState::Cancelled => format!(
            "job {} cancelled{}: {} documents ingested before it stopped; reason: {}",
            job.id,
            job.duration_ms()
                .map(|d| format!(" after {}", display::duration_ms(d)))
                .unwrap_or_default(),
            job.docs_new + job.docs_changed,
            job.cancel_reason.as_deref().unwrap_or("none given")
        ),
        other => format!("job {} {other}", job.id),
    }
}

pub fn run(home: &Home, cmd: JobsCommand) -> Result<(), CommandError> {
    let db = open(home, &cmd)?;
    match cmd {
        JobsCommand::List {
            limit,
            status,
            source,
            since,
            format,
        } => {
            let since = since
                .as_deref()
                .map(|t| display::parse_since(t, now_ms()))
                .transpose()
                .map_err(|e| {
                    OperatorError::new(ExitCode::Usage, e, "nothing was shown", topics::JOBS_LIST)
                })?;
            let list = match &db {
                Some(db) => jobs::list(
                    db.conn(),
                    &ListFilter {
                        state: status,
                        source,
                        since,
                        limit: limit.max(1),
                    },
                )
                .map_err(|e| sql(home, e))?,
                None => Vec::new(),
            };
            if format == TableOrJson::Json {
                print_json(&list);
                return Ok(());
            }
            if list.is_empty() {
                println!("no jobs match");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|j| {
                    vec![
                        j.id.to_string(),
                        display::truncate(&j.source, 12),
                        what(j),
                        j.state.to_string(),
                        display::timestamp(j.updated_at),
                        j.duration_ms()
                            .map(display::duration_ms)
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            print!(
                "{}",
                display::columns(&["ID", "SOURCE", "WHAT", "STATE", "UPDATED", "TOOK"], &rows)
            );
            Ok(())
        }
        JobsCommand::Show { job_id, format } => {
            let Some(job) = db
                .as_ref()
                .map(|db| jobs::get(db.conn(), job_id))
                .transpose()
                .map_err(|e| sql(home, e))?
                .flatten()
            else {
                return Err(no_such_job(home, db.as_ref(), job_id).into());
            };
            let conn = db.as_ref().expect("a job was found").conn();
            let events = jobs::events(conn, job_id).map_err(|e| sql(home, e))?;
            let items = jobs::item_errors(conn, job_id).map_err(|e| sql(home, e))?;
            if format == TableOrJson::Json {
                print_json(&json!({ "job": job, "events": events, "failed_items": items }));
                return Ok(());
            }
            print!("{}", render_job(&job, &events, &items));
            Ok(())
        }
        JobsCommand::Wait { job_id } => {
            let Some(db) = db else {
                return Err(no_such_job(home, None, job_id).into());
            };
            let job = jobs::get(db.conn(), job_id)
                .map_err(|e| sql(home, e))?
                .ok_or_else(|| no_such_job(home, Some(&db), job_id))?;
            if !job.is_terminal() && lock::holder(home).is_none() {
                return Err(OperatorError::failure(
                    format!(
                        "job {job_id} is {} but the orchestrator is not running",
                        job.state
                    ),
                    "nothing was changed; start the orchestrator, then wait again",
                    topics::JOBS_INTERRUPTED,
                )
                .into());
            }
            super::sources_cmd::wait_for(home, &db, job_id)
        }
        JobsCommand::Cancel {
            job_id,
            reason,
            format,
        } => {
            let reason = reason.trim().to_string();
            if reason.is_empty() {
                return Err(OperatorError::new(
                    ExitCode::Usage,
                    "--reason must say why the job is cancelled",
                    "nothing was changed; pass --reason \"...\"",
                    topics::JOBS_CANCEL,
                )
                .into());
            }
            let Some(db) = db else {
                return Err(no_such_job(home, None, job_id).into());
            };
            let actor = super::sources_cmd::actor();
            let outcome = jobs::request_cancel(db.conn(), job_id, &reason, &actor, now_ms())
                .map_err(|e| sql(home, e))?;
            if let Some(o @ (CancelOutcome::Cancelled | CancelOutcome::Requested)) = &outcome {
                // Audited like every operator action; a broken configuration audits (default on).
                let audit_on = crate::daemon::load_config(home, &Default::default())
                    .map(|l| l.config.security.audit_logging)
                    .unwrap_or(true);
                crate::security::audit(
                    home,
                    audit_on,
                    "job.cancel",
                    serde_json::json!({"job": job_id, "reason": reason,
                        "was_running": matches!(o, CancelOutcome::Requested)}),
                );
            }
            let json = format == TableOrJson::Json;
            let report = |state: JobState, was_running: bool| {
                print_json(&CancelReport {
                    job_id,
                    was_running,
                    state,
                    reason: reason.clone(),
                })
            };
            match outcome {
                None => Err(no_such_job(home, Some(&db), job_id).into()),
                Some(CancelOutcome::Cancelled) => {
                    if json {
                        report(JobState::Cancelled, false);
                    } else {
                        println!("cancelled job {job_id}: it was waiting and will not run");
                    }
                    Ok(())
                }
                Some(CancelOutcome::AlreadyFinished(state)) => Err(OperatorError::failure(
                    format!("job {job_id} already finished ({state}); there is nothing to cancel"),
                    "nothing was changed",
                    topics::JOBS_CANCEL,
                )
                .into()),
                Some(CancelOutcome::Requested) => {
                    if lock::holder(home).is_none() {
                        if json {
                            report(JobState::Running, true);
                            return Ok(());
                        }
                        println!(
                            "cancel requested for job {job_id}; the orchestrator is not running, so it \
                             is cancelled when it starts"
                        );
                        return Ok(());
                    }
                    // The daemon stops the job at its next item, or marks it cancelled after its
                    // grace; wait for that (with a margin) so the operator sees the outcome.
                    // The grace of the configuration the daemon runs, not of the file.
                    let grace = crate::daemon::reload::running(home)
                        .and_then(|r| r.config["workers"]["cancel_grace_seconds"].as_u64())
                        .unwrap_or(10);
                    let deadline = Instant::now() + Duration::from_secs(grace + 5);
                    loop {
                        let job = jobs::get(db.conn(), job_id)
                            .map_err(|e| sql(home, e))?
                            .ok_or_else(|| no_such_job(home, Some(&db), job_id))?;
                        if job.state != JobState::Running {
                            if json {
                                report(job.state, true);
                            } else {
                                println!("{}", outcome_line(&job));
                            }
                            return Ok(());
                        }
                        if Instant::now() > deadline {
                            if json {
                                report(job.state, true);
                                return Ok(());
                            }
                            println!(
                                "cancel requested for job {job_id}; it is still finishing its current item"
                            );
                            return Ok(());
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
    }
}

pub fn render_job(job: &Job, events: &[jobs::Event], items: &[jobs::ItemError]) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    let kind = match &job.item {
        Some(item) => format!("retry of item {item}"),
        None => "source run".into(),
    };
    rows.push(("source", job.source.clone()));
    rows.push(("kind", kind));
    rows.push(("state", job.state.to_string()));
    rows.push(("trigger", job.trigger.clone()));
    rows.push(("priority", job.priority_name().into()));
    rows.push((
        "attempts",
        format!("{} of {}", job.attempts, job.max_attempts),
    ));
    rows.push(("created", display::timestamp(job.created_at)));
    if job.state.is_waiting() {
        rows.push(("scheduled for", display::timestamp(job.scheduled_for)));
    }
    if let Some(at) = job.started_at {
        rows.push(("started", display::timestamp(at)));
    }
    if let Some(at) = job.finished_at {
        rows.push(("finished", display::timestamp(at)));
    }
    if let Some(d) = job.duration_ms() {
        rows.push(("duration", display::duration_ms(d)));
    }
    if job.state == JobState::Running && job.items_total > 0 {
        rows.push((
            "progress",
            format!("{} of {} items", job.items_done, job.items_total),
        ));
    }
    if job.kind == JobKind::SourceRun && job.finished_at.is_some() {
        rows.push((
            "documents",
            format!(
                "{} new, {} changed, {} deleted, {} unchanged",
                job.docs_new, job.docs_changed, job.docs_deleted, job.docs_unchanged
            ),
        ));
        rows.push((
            "items",
            format!(
                "{} seen, {} skipped, {} failed",
                job.items_seen, job.items_skipped, job.items_failed
            ),
        ));
    }
    if job.bytes > 0 || (job.kind == JobKind::SourceRun && job.finished_at.is_some()) {
        let rate = job
            .duration_ms()
            .filter(|d| *d > 0)
            // MB = 10^6 bytes, as everywhere (`telemetry throughput` agrees for a lone job).
            .map(|d| {
                let mbps = job.bytes as f64 / crate::telemetry::MB / (d as f64 / 1000.0);
                format!(" at {}", crate::telemetry::mbps_text(mbps))
            })
            .unwrap_or_default();
        rows.push(("read", format!("{}{rate}", display::size(job.bytes as u64))));
    }
    if let (Some(class), Some(err)) = (&job.error_class, &job.last_error) {
        rows.push(("last error", format!("{class}: {err}")));
    }
    if let Some(reason) = &job.cancel_reason {
        rows.push(("cancel reason", reason.clone()));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = format!("job {}\n", job.id);
    for (k, v) in &rows {
        out.push_str(&format!("{:<width$} {v}\n", format!("{k}:")));
    }
    if !items.is_empty() {
        out.push_str("\nfailed items:\n");
        let table: Vec<Vec<String>> = items
            .iter()
            .map(|i| {
                vec![
                    i.item.clone(),
                    i.class.clone(),
                    i.item_job_id
                        .map(|j| format!("job {j}"))
                        .unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&display::columns(&["ITEM", "CLASS", "RETRIED AS"], &table));
    }
    out.push_str("\ntimeline:\n");
    for e in events {
        let who = &e.actor;
        let change = match e.from_state {
            Some(from) if from != e.to_state => format!("{from} -> {}", e.to_state),
            _ => e.to_state.to_string(),
        };
        out.push_str(&format!(
            "  {}  {change}  by {who}: {}\n",
            display::timestamp(e.at),
            e.reason.as_deref().unwrap_or("")
        ));
    }
    out
}
