//! `futurnal orchestrator quarantine ...`: jobs an operator must look at.
//!
//! Invariant: `--format json` prints one serialized value, with a state named `state`, paths
//! absolute and the text form's exit status; the book lists the fields of `quarantine retry` and `quarantine purge` in a
//! `| field | type | meaning |` table that `tests/json_shapes.rs` checks against real output.

use clap::Subcommand;
use serde_json::json;

use super::{TableOrJson, print_json};
use crate::daemon;
use crate::display;
use crate::error::{CommandError, ExitCode, OperatorError, Result};
use crate::failure::ErrorClass;
use crate::home::Home;
use crate::jobs::{self, Job, QuarantineFilter};
use crate::queue::{QueueDb, now_ms};
use crate::runbook::topics;
use crate::security::audit;

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Quarantined jobs, oldest first
    List {
        /// Only this error class, such as parse_error or permission_denied
        #[arg(long)]
        reason: Option<String>,
        /// Only jobs of this source
        #[arg(long)]
        source: Option<String>,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
    /// One quarantined job: why, and its history
    Show { job_id: i64 },
    /// Run quarantined jobs again with fresh attempts
    Retry {
        /// The job to retry (or use --all with filters)
        job_id: Option<i64>,
        /// Every quarantined job matching --reason and --source
        #[arg(long, conflicts_with = "job_id")]
        all: bool,
        /// With --all: only jobs of this error class, such as parse_error
        #[arg(long, requires = "all")]
        reason: Option<String>,
        /// With --all: only jobs of this source
        #[arg(long, requires = "all")]
        source: Option<String>,
        /// What was done about it; kept in the job's timeline
        #[arg(long, default_value = "retried by operator")]
        note: String,
        /// With --all: time between retried jobs, so they do not all start at once
        #[arg(long, default_value = "1s", requires = "all")]
        pace: String,
        /// `json`: every retried job and when it runs
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
    /// Delete quarantined jobs for good
    Purge {
        /// Only jobs quarantined more than this many days ago
        #[arg(long, value_name = "DAYS")]
        older_than_days: Option<u32>,
        /// Only jobs of this error class, such as parse_error
        #[arg(long)]
        reason: Option<String>,
        /// Only jobs of this source
        #[arg(long)]
        source: Option<String>,
        /// Purge every quarantined job (needed when no filter is given)
        #[arg(long)]
        all: bool,
        /// Show exactly what would be purged, and purge nothing
        #[arg(long)]
        dry_run: bool,
        /// `json`: whether it was a dry run, and every job purged (or that would be)
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
}

/// `quarantine retry --format json`, documented in managing-jobs.md ("Retrying quarantined
/// jobs"; its field tables are checked by `tests/json_shapes.rs`).
#[derive(Debug, serde::Serialize)]
pub struct Retried {
    pub retried: Vec<RetriedJob>,
    pub orchestrator_running: bool,
}

#[derive(Debug, serde::Serialize)]
pub struct RetriedJob {
    pub job_id: i64,
    pub source: String,
    /// The item it retries; null for a source run.
    pub item: Option<String>,
    /// When it may run: now, or later by `--pace`.
    pub runs_at: String,
}

/// `quarantine purge --format json`: the jobs as `quarantine list --format json` shows them.
#[derive(Debug, serde::Serialize)]
pub struct Purged {
    pub dry_run: bool,
    pub jobs: Vec<serde_json::Value>,
}

fn sql(home: &Home, e: rusqlite::Error) -> OperatorError {
    crate::error::queue_error(home, e)
}

fn check_reason(reason: &Option<String>) -> Result<()> {
    match reason {
        Some(r) if ErrorClass::parse(r).is_none() => {
            let names: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
            Err(OperatorError::new(
                ExitCode::Usage,
                format!("`{r}` is not an error class; classes: {}", names.join(", ")),
                "nothing was changed",
                topics::QUARANTINE,
            ))
        }
        _ => Ok(()),
    }
}

fn entry(job: &Job) -> serde_json::Value {
    json!({
        "job_id": job.id,
        "source": job.source,
        "kind": job.kind,
        "item": job.item,
        "reason": job.error_class,
        "error": job.last_error,
        "attempts": job.attempts,
        "quarantined_at": display::timestamp(job.finished_at.unwrap_or(job.updated_at)),
    })
}

fn line(job: &Job) -> Vec<String> {
    vec![
        job.id.to_string(),
        display::truncate(&job.source, 12),
        display::truncate(job.item.as_deref().unwrap_or("(source run)"), 28),
        job.error_class.clone().unwrap_or_default(),
        display::timestamp(job.finished_at.unwrap_or(job.updated_at)),
    ]
}

const HEADERS: [&str; 5] = ["ID", "SOURCE", "ITEM", "REASON", "QUARANTINED"];

pub fn run(
    home: &Home,
    overrides: &crate::config::Overrides,
    cmd: QuarantineCommand,
) -> Result<(), CommandError> {
    // Read-only unless the command changes jobs.
    let db = match cmd {
        QuarantineCommand::List { .. } | QuarantineCommand::Show { .. } => {
            QueueDb::read_existing(&home.queue_db())?
        }
        _ => QueueDb::open_existing(&home.queue_db())?,
    };
    let list = |f: &QuarantineFilter| -> Result<Vec<Job>> {
        match &db {
            Some(db) => jobs::quarantined(db.conn(), f).map_err(|e| sql(home, e)),
            None => Ok(Vec::new()),
        }
    };
    match cmd {
        QuarantineCommand::List {
            reason,
            source,
            format,
        } => {
            check_reason(&reason)?;
            let jobs = list(&QuarantineFilter {
                reason,
                source,
                ..Default::default()
            })?;
            if format == TableOrJson::Json {
                print_json(&jobs.iter().map(entry).collect::<Vec<_>>());
            } else if jobs.is_empty() {
                println!("no quarantined jobs match");
            } else {
                let rows: Vec<Vec<String>> = jobs.iter().map(line).collect();
                print!("{}", display::columns(&HEADERS, &rows));
            }
            Ok(())
        }
        QuarantineCommand::Show { job_id } => {
            let job = list(&QuarantineFilter {
                id: Some(job_id),
                ..Default::default()
            })?
            .pop()
            .ok_or_else(|| {
                OperatorError::new(
                    ExitCode::Usage,
                    format!("job {job_id} is not quarantined"),
                    "nothing was changed; `futurnal orchestrator quarantine list` shows the quarantined jobs",
                    topics::QUARANTINE,
                )
            })?;
            let conn = db.as_ref().expect("a job was found").conn();
            let events = jobs::events(conn, job_id).map_err(|e| sql(home, e))?;
            let items = jobs::item_errors(conn, job_id).map_err(|e| sql(home, e))?;
            print!("{}", super::jobs_cmd::render_job(&job, &events, &items));
            println!(
                "\nonce the cause is fixed: futurnal orchestrator quarantine retry {job_id} --note \"what you did\""
            );
            Ok(())
        }
        QuarantineCommand::Retry {
            job_id,
            all,
            reason,
            source,
            note,
            pace,
            format,
        } => {
            check_reason(&reason)?;
            if job_id.is_none() && !all {
                return Err(OperatorError::new(
                    ExitCode::Usage,
                    "say which job to retry, or --all",
                    "nothing was changed",
                    topics::QUARANTINE,
                )
                .into());
            }
            let pace_ms = pace
                .parse::<jiff::SignedDuration>()
                .map(|d| d.as_millis().max(0) as i64)
                .map_err(|_| {
                    OperatorError::new(
                        ExitCode::Usage,
                        format!("`{pace}` is not a duration such as 500ms or 2s"),
                        "nothing was changed",
                        topics::QUARANTINE,
                    )
                })?;
            let jobs = list(&QuarantineFilter {
                reason,
                source,
                id: job_id,
                ..Default::default()
            })?;
            if let Some(id) = job_id
                && jobs.is_empty()
            {
                return Err(OperatorError::new(
                    ExitCode::Usage,
                    format!("job {id} is not quarantined"),
                    "nothing was changed; `futurnal orchestrator quarantine list` shows the quarantined jobs",
                    topics::QUARANTINE,
                )
                .into());
            }
            let running = daemon::lock::holder(home).is_some();
            if jobs.is_empty() {
                if format == TableOrJson::Json {
                    print_json(&Retried {
                        retried: Vec::new(),
                        orchestrator_running: running,
                    });
                } else {
                    println!("no quarantined jobs match; nothing to retry");
                }
                return Ok(());
            }
            let loaded = super::sources_cmd::effective_config(home, overrides).ok();
            let db = db.as_ref().expect("jobs were found");
            let now = now_ms();
            let tx = jobs::immediate(db.conn()).map_err(|e| sql(home, e))?;
            // The attempts each gets are its source's retry policy in the daemon that claims it.
            for (i, job) in jobs.iter().enumerate() {
                let at = now + pace_ms * i as i64;
                jobs::retry_quarantined(&tx, job.id, at, now, "operator", &note)
                    .map_err(|e| sql(home, e))?;
            }
            tx.commit().map_err(|e| sql(home, e))?;
            crate::daemon::wake(home);
            audit(
                home,
                loaded
                    .as_ref()
                    .is_none_or(|l| l.config.security.audit_logging),
                "quarantine.retry",
                json!({"jobs": jobs.iter().map(|j| j.id).collect::<Vec<_>>(), "note": note}),
            );
            if format == TableOrJson::Json {
                print_json(&Retried {
                    retried: jobs
                        .iter()
                        .enumerate()
                        .map(|(i, job)| RetriedJob {
                            job_id: job.id,
                            source: job.source.clone(),
                            item: job.item.clone(),
                            runs_at: display::timestamp(now + pace_ms * i as i64),
                        })
                        .collect(),
                    orchestrator_running: running,
                });
                return Ok(());
            }
            for (i, job) in jobs.iter().enumerate() {
                let when = if i == 0 || pace_ms == 0 {
                    "now".to_string()
                } else {
                    format!("in {}", display::duration_ms(pace_ms * i as i64))
                };
                println!(
                    "retrying job {} ({}: {}): runs {when}",
                    job.id,
                    job.source,
                    job.item.as_deref().unwrap_or("source run")
                );
            }
            if !running {
                println!("the orchestrator is not running: they run when it starts");
            }
            Ok(())
        }
        QuarantineCommand::Purge {
            older_than_days,
            reason,
            source,
            all,
            dry_run,
            format,
        } => {
            check_reason(&reason)?;
            if older_than_days.is_none() && reason.is_none() && source.is_none() && !all {
                return Err(OperatorError::new(
                    ExitCode::Usage,
                    "purge needs a filter (--older-than-days, --reason, --source) or --all",
                    "nothing was purged",
                    topics::QUARANTINE,
                )
                .into());
            }
            let before = older_than_days.map(|d| now_ms() - d as i64 * 86_400_000);
            let jobs = list(&QuarantineFilter {
                reason,
                source,
                before,
                id: None,
            })?;
            let json = format == TableOrJson::Json;
            let report = |jobs: &[Job]| {
                print_json(&Purged {
                    dry_run,
                    jobs: jobs.iter().map(entry).collect(),
                })
            };
            if jobs.is_empty() {
                if json {
                    report(&jobs);
                } else {
                    println!("no quarantined jobs match; nothing to purge");
                }
                return Ok(());
            }
            let rows: Vec<Vec<String>> = jobs.iter().map(line).collect();
            let count = display::plural(jobs.len() as i64, "quarantined job");
            if dry_run {
                if json {
                    report(&jobs);
                    return Ok(());
                }
                println!("would purge {count}:");
                print!("{}", display::columns(&HEADERS, &rows));
                return Ok(());
            }
            let db = db.as_ref().expect("jobs were found");
            let tx = jobs::immediate(db.conn()).map_err(|e| sql(home, e))?;
            let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
            jobs::purge_quarantined(&tx, &ids).map_err(|e| sql(home, e))?;
            tx.commit().map_err(|e| sql(home, e))?;
            let audit_on = super::sources_cmd::effective_config(home, overrides)
                .map(|l| l.config.security.audit_logging)
                .unwrap_or(true);
            audit(home, audit_on, "quarantine.purge", json!({ "jobs": ids }));
            if json {
                report(&jobs);
                return Ok(());
            }
            println!("purged {count}:");
            print!("{}", display::columns(&HEADERS, &rows));
            Ok(())
        }
    }
}
