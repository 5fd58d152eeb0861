//! `futurnal orchestrator sources ...`: list, show, pause, resume, trigger.
//!
//! Invariant: `--format json` prints one serialized value, with a state named `state`, paths
//! absolute and the text form's exit status; the book lists the fields of `sources list` and `sources trigger` in a
//! `| field | type | meaning |` table that `tests/json_shapes.rs` checks against real output.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Subcommand;
use serde_json::{Value, json};

use super::{TableOrJson, print_json};
use crate::config::{Loaded, SourceConfig};
use crate::daemon::{self, lock};
use crate::display;
use crate::error::{CommandError, ExitCode, OperatorError, Result};
use crate::home::{Home, display_path};
use crate::jobs::{self, Enqueued};
use crate::queue::{QueueDb, now_ms};
use crate::runbook::topics;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Every configured source: state, schedule, last run, what it has ingested
    List {
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
    /// One source in detail, with its most recent documents
    Show {
        name: String,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
    /// Stop starting new runs of a source (running jobs finish)
    Pause {
        name: String,
        /// Why; shown by `sources list` and kept in the audit log
        #[arg(long)]
        reason: String,
    },
    /// Let a paused source run again
    Resume { name: String },
    /// Queue a run of a source now
    Trigger {
        name: String,
        /// Wait for the run to finish; the exit status reflects its outcome
        #[arg(long)]
        wait: bool,
        /// `json`: the job id, whether it joined a waiting run and, with --wait, the outcome
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
}

/// The configuration file as the running daemon reads it (its file, its `--set` flags, its
/// environment, whatever this command's environment says), or as a start would read it now when
/// no daemon runs. `--config` or `--set` on this command win.
pub fn effective_config(home: &Home, overrides: &crate::config::Overrides) -> Result<Loaded> {
    let own_choice = overrides.config_path.is_some() || !overrides.set.is_empty();
    match daemon::reload::running(home) {
        Some(running) if !own_choice => crate::config::load_recorded(&running.layering)
            .map_err(|problems| crate::error::config_invalid(&problems)),
        _ => daemon::load_config(home, overrides),
    }
}

pub fn find_source<'a>(loaded: &'a Loaded, name: &str) -> Result<&'a SourceConfig> {
    loaded
        .config
        .sources
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = loaded
                .config
                .sources
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            let what = if names.is_empty() {
                format!(
                    "no source named `{name}`: {} declares no sources",
                    display_path(&loaded.file.path)
                )
            } else {
                let hint = crate::config::closest(name, &names)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                format!(
                    "no source named `{name}`{hint}; configured sources: {}",
                    names.join(", ")
                )
            };
            OperatorError::new(
                ExitCode::Usage,
                what,
                "nothing was changed; use one of the names above, or declare the source in the \
                 configuration file",
                topics::SOURCES_DECLARE,
            )
        })
}

/// queue.db for a command that only reads it: opened read-only.
fn read_queue(home: &Home) -> Result<Option<QueueDb>> {
    QueueDb::read_existing(&home.queue_db())
}

/// queue.db for a command that writes: created by a daemon start first.
fn queue_for_write(home: &Home) -> Result<QueueDb> {
    QueueDb::open_existing(&home.queue_db())?.ok_or_else(|| {
        OperatorError::failure(
            format!(
                "there is no queue yet: {} has not been created",
                display_path(&home.queue_db())
            ),
            "nothing was changed; start the orchestrator once (`futurnal orchestrator start`) to \
             create it",
            topics::STARTING,
        )
    })
}

fn sql(home: &Home, e: rusqlite::Error) -> OperatorError {
    crate::error::queue_error(home, e)
}

fn source_json(
    s: &SourceConfig,
    state: Option<&jobs::SourceState>,
    runs: Option<&jobs::LastRuns>,
    stats: Option<&crate::store::SourceStats>,
    open: Option<&(i64, i64)>,
) -> Value {
    let paused = state.and_then(|st| {
        st.paused_at.map(|at| {
            json!({
                "at": display::timestamp(at),
                "reason": st.paused_reason,
                "by": st.paused_by,
            })
        })
    });
    // `state`, as the table's STATE column and every job's `state` say.
    let source_state = if !s.enabled {
        "disabled"
    } else if paused.is_some() {
        "paused"
    } else {
        "active"
    };
    let run = |j: &Option<jobs::Job>| {
        j.as_ref().map(|j| {
            json!({
                "job_id": j.id,
                "state": j.state,
                "finished_at": j.finished_at.map(display::timestamp),
                "documents_new": j.docs_new,
                "documents_changed": j.docs_changed,
                "documents_deleted": j.docs_deleted,
                "items_failed": j.items_failed,
            })
        })
    };
    json!({
        "name": s.name,
        "type": s.source_type,
        "path": s.path,
        "schedule": s.schedule,
        "priority": s.priority,
        "enabled": s.enabled,
        "state": source_state,
        "paused": paused,
        "last_run": runs.and_then(|r| run(&r.0)),
        "last_success": runs.and_then(|r| run(&r.1)),
        "next_run_at": state
            .filter(|_| source_state == "active")
            .and_then(|st| st.next_run_at)
            .map(display::timestamp),
        "documents": stats.map(|x| x.documents).unwrap_or(0),
        "bytes": stats.map(|x| x.bytes).unwrap_or(0),
        "skipped_items": stats.map(|x| x.skipped_items).unwrap_or(0),
        "pending_jobs": open.map(|o| o.0).unwrap_or(0),
        "running_jobs": open.map(|o| o.1).unwrap_or(0),
    })
}

/// The document store, if one was created. A store that exists but cannot be read (damaged,
/// not ours to read) is an error: reporting it as empty would tell the operator nothing was
/// ingested.
fn open_store(home: &Home) -> Result<Option<Store>> {
    let path = home.store_db();
    Store::open_existing(&path).map_err(|f| crate::error::store_unreadable(&path, &f))
}

fn gather(home: &Home, loaded: &Loaded) -> Result<Vec<Value>> {
    let db = read_queue(home)?;
    let (states, runs, open) = match &db {
        Some(db) => (
            jobs::source_states(db.conn()).map_err(|e| sql(home, e))?,
            jobs::last_runs(db.conn()).map_err(|e| sql(home, e))?,
            jobs::open_counts(db.conn()).map_err(|e| sql(home, e))?,
        ),
        None => Default::default(),
    };
    let stats = match open_store(home)? {
        Some(store) => store
            .stats()
            .map_err(|f| crate::error::store_unreadable(&home.store_db(), &f))?,
        None => Default::default(),
    };
    Ok(loaded
        .config
        .sources
        .iter()
        .map(|s| {
            source_json(
                s,
                states.get(&s.name),
                runs.get(&s.name),
                stats.get(&s.name),
                open.get(&s.name),
            )
        })
        .collect())
}

fn last_run_text(v: &Value, now: i64) -> String {
    let Some(run) = v.get("last_run").filter(|r| !r.is_null()) else {
        return "never".into();
    };
    let when = run["finished_at"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| display::relative(t.as_millisecond(), now))
        .unwrap_or_default();
    format!("{} {when}", run["state"].as_str().unwrap_or("?"))
}

pub fn run(
    home: &Home,
    overrides: &crate::config::Overrides,
    cmd: SourcesCommand,
) -> Result<(), CommandError> {
    daemon::reload::warn_if_stale(home);
    let loaded = effective_config(home, overrides)?;
    let now = now_ms();
    match cmd {
        SourcesCommand::List { format } => {
            let sources = gather(home, &loaded)?;
            if format == TableOrJson::Json {
                print_json(&sources);
                return Ok(());
            }
            if sources.is_empty() {
                println!(
                    "no sources are configured; declare them under `sources:` in {}",
                    display_path(&loaded.file.path)
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = sources
                .iter()
                .map(|s| {
                    vec![
                        s["name"].as_str().unwrap_or_default().to_string(),
                        s["type"].as_str().unwrap_or_default().to_string(),
                        s["state"].as_str().unwrap_or_default().to_string(),
                        display::truncate(s["schedule"].as_str().unwrap_or_default(), 12),
                        s["documents"].to_string(),
                        display::size(s["bytes"].as_u64().unwrap_or(0)),
                        last_run_text(s, now),
                    ]
                })
                .collect();
            // The one column whose width changes from minute to minute comes last.
            print!(
                "{}",
                display::columns(
                    &[
                        "NAME", "TYPE", "STATE", "SCHEDULE", "DOCS", "SIZE", "LAST RUN"
                    ],
                    &rows
                )
            );
            for s in &sources {
                if let Some(p) = s.get("paused").filter(|p| !p.is_null()) {
                    println!(
                        "{} paused at {} by {}: {}",
                        s["name"].as_str().unwrap_or_default(),
                        p["at"].as_str().unwrap_or_default(),
                        p["by"].as_str().unwrap_or("?"),
                        p["reason"].as_str().unwrap_or_default()
                    );
                }
            }
            Ok(())
        }
        SourcesCommand::Show { name, format } => {
            let source = find_source(&loaded, &name)?;
            let all = gather(home, &loaded)?;
            let mut info = all
                .into_iter()
                .find(|v| v["name"] == name.as_str())
                .unwrap_or_default();
            let store_error = |f| crate::error::store_unreadable(&home.store_db(), &f);
            let (docs, skipped) = match open_store(home)? {
                Some(store) => (
                    store
                        .recent_documents(&source.name, 10)
                        .map_err(store_error)?,
                    // What was skipped, and why: listed so nothing vanishes unreported.
                    store
                        .skipped_items(&source.name, 1000)
                        .map_err(store_error)?,
                ),
                None => Default::default(),
            };
            info["recent_documents"] = json!(docs);
            info["skipped"] = json!(skipped);
            if format == TableOrJson::Json {
                print_json(&info);
                return Ok(());
            }
            let mut rows: Vec<(&str, String)> = vec![
                ("source", source.name.clone()),
                ("type", info["type"].as_str().unwrap_or_default().into()),
                ("path", display_path(&source.path)),
                ("state", info["state"].as_str().unwrap_or_default().into()),
                ("schedule", source.schedule.clone()),
                (
                    "priority",
                    info["priority"].as_str().unwrap_or_default().into(),
                ),
            ];
            if let Some(p) = info.get("paused").filter(|p| !p.is_null()) {
                rows.push((
                    "paused",
                    format!(
                        "at {} by {}: {}",
                        p["at"].as_str().unwrap_or_default(),
                        p["by"].as_str().unwrap_or("?"),
                        p["reason"].as_str().unwrap_or_default()
                    ),
                ));
            }
            if let Some(next) = info["next_run_at"].as_str() {
                rows.push(("next run", next.to_string()));
            }
            rows.push(("last run", last_run_text(&info, now)));
            let success = info
                .get("last_success")
                .and_then(|r| r["finished_at"].as_str())
                .unwrap_or("never")
                .to_string();
            rows.push(("last success", success));
            rows.push((
                "documents",
                format!(
                    "{} ({}), {} skipped",
                    info["documents"],
                    display::size(info["bytes"].as_u64().unwrap_or(0)),
                    display::plural(info["skipped_items"].as_i64().unwrap_or(0), "item")
                ),
            ));
            rows.push((
                "jobs",
                format!(
                    "{} pending, {} running",
                    info["pending_jobs"], info["running_jobs"]
                ),
            ));
            let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
            for (k, v) in &rows {
                println!("{:<width$} {v}", format!("{k}:"));
            }
            if !docs.is_empty() {
                println!("\nrecent documents:");
                let table: Vec<Vec<String>> = docs
                    .iter()
                    .map(|d| {
                        vec![
                            display::truncate(&d.item, 34),
                            d.kind.clone(),
                            d.chunks.to_string(),
                            display::truncate(&d.title, 28),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    display::columns(&["ITEM", "KIND", "CHUNKS", "TITLE"], &table)
                );
            }
            Ok(())
        }
        SourcesCommand::Pause { name, reason } => {
            let source = find_source(&loaded, &name)?;
            let db = queue_for_write(home)?;
            let reason = reason.trim();
            if reason.is_empty() {
                return Err(OperatorError::new(
                    ExitCode::Usage,
                    "--reason must say why the source is paused",
                    "nothing was changed; pass --reason \"...\"",
                    topics::SOURCES_PAUSE,
                )
                .into());
            }
            let actor = actor();
            if jobs::pause(db.conn(), &source.name, reason, &actor, now)
                .map_err(|e| sql(home, e))?
            {
                crate::security::audit(
                    home,
                    loaded.config.security.audit_logging,
                    "source.pause",
                    json!({"source": source.name, "reason": reason}),
                );
                println!("paused source {}: {reason}", source.name);
            } else {
                println!(
                    "source {} was already paused; its first reason is kept",
                    source.name
                );
            }
            Ok(())
        }
        SourcesCommand::Resume { name } => {
            let source = find_source(&loaded, &name)?;
            let db = queue_for_write(home)?;
            if jobs::resume(db.conn(), &source.name).map_err(|e| sql(home, e))? {
                crate::daemon::wake(home);
                crate::security::audit(
                    home,
                    loaded.config.security.audit_logging,
                    "source.resume",
                    json!({"source": source.name}),
                );
                println!("resumed source {}", source.name);
            } else {
                println!("source {} is not paused; nothing to do", source.name);
            }
            Ok(())
        }
        SourcesCommand::Trigger { name, wait, format } => {
            trigger(home, &loaded, &name, wait, format)
        }
    }
}

/// Who a command-line action is recorded as. futurnal is a personal, single-user tool: the
/// operator.
pub fn actor() -> String {
    "operator".into()
}

/// `sources trigger --format json`: one object, documented in managing-sources.md
/// ("Triggering a run", its field table is checked by `tests/json_shapes.rs`).
#[derive(Debug, serde::Serialize)]
pub struct Triggered {
    pub source: String,
    pub job_id: i64,
    /// The source already had a run waiting: this trigger joined it instead of queueing another.
    pub joined: bool,
    pub orchestrator_running: bool,
    pub paused: bool,
    /// With `--wait`: how the run ended; null without it.
    pub outcome: Option<Outcome>,
}

/// How a waited-for job ended: its state and figures, as `jobs show` has them.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    pub state: jobs::JobState,
    pub duration_ms: Option<i64>,
    pub documents_new: i64,
    pub documents_changed: i64,
    pub documents_deleted: i64,
    pub documents_unchanged: i64,
    pub items_skipped: i64,
    pub items_failed: i64,
    pub error_class: Option<String>,
    pub error: Option<String>,
}

impl Outcome {
    pub fn of(job: &jobs::Job) -> Outcome {
        Outcome {
            state: job.state,
            duration_ms: job.duration_ms(),
            documents_new: job.docs_new,
            documents_changed: job.docs_changed,
            documents_deleted: job.docs_deleted,
            documents_unchanged: job.docs_unchanged,
            items_skipped: job.items_skipped,
            items_failed: job.items_failed,
            error_class: job.error_class.clone(),
            error: job.last_error.clone(),
        }
    }
}

fn trigger(
    home: &Home,
    loaded: &Loaded,
    name: &str,
    wait: bool,
    format: TableOrJson,
) -> Result<(), CommandError> {
    let source = find_source(loaded, name)?;
    if !source.enabled {
        return Err(OperatorError::failure(
            format!("source `{name}` is disabled in the configuration (enabled: false)"),
            "nothing was queued; set `enabled: true`, then run `futurnal orchestrator reload`",
            topics::SOURCES_TRIGGER,
        )
        .into());
    }
    let running = lock::holder(home).is_some();
    // The daemon claims only jobs of sources it runs: a job of a source it does not know would
    // wait forever.
    if let Some(daemon_config) = daemon::reload::running(home) {
        let what = match daemon_config.source(name) {
            None => Some("does not know it"),
            Some(s) if s["enabled"] == false => Some("runs it disabled"),
            Some(_) => None,
        };
        if let Some(what) = what {
            return Err(OperatorError::failure(
                format!(
                    "source `{name}` is in {} but the running orchestrator {what}: the file changed \
                     after it was loaded",
                    display_path(&loaded.file.path)
                ),
                "nothing was queued; apply the file with `futurnal orchestrator reload`, then \
                 trigger again",
                topics::CONFIG_STALE,
            )
            .into());
        }
    }
    if wait && !running {
        return Err(OperatorError::failure(
            "the orchestrator is not running, so the run cannot finish",
            "nothing was queued; start it with `futurnal orchestrator start`, then trigger again",
            topics::SOURCES_TRIGGER,
        )
        .into());
    }
    let db = queue_for_write(home)?;
    let enqueued = jobs::enqueue_run(db.conn(), source, "manual", &actor(), now_ms())
        .map_err(|e| sql(home, e))?;
    if running {
        crate::daemon::wake(home);
    }
    let joined = matches!(enqueued, Enqueued::Coalesced(_));
    crate::security::audit(
        home,
        loaded.config.security.audit_logging,
        "source.trigger",
        json!({"source": source.name, "job": enqueued.id(), "joined": joined}),
    );
    let paused = jobs::source_states(db.conn())
        .ok()
        .and_then(|s| s.get(name).cloned())
        .is_some_and(|st| st.paused_at.is_some());
    if format == TableOrJson::Json {
        let job = if wait {
            Some(await_job(home, &db, enqueued.id(), false)?)
        } else {
            None
        };
        print_json(&Triggered {
            source: source.name.clone(),
            job_id: enqueued.id(),
            joined,
            orchestrator_running: running,
            paused,
            outcome: job.as_ref().map(Outcome::of),
        });
        return match job {
            Some(job) if job.state != jobs::JobState::Succeeded => {
                Err(CommandError::Reported(ExitCode::Failure.code()))
            }
            _ => Ok(()),
        };
    }
    match enqueued {
        Enqueued::New(id) => println!("queued run job {id} for source {name}"),
        Enqueued::Coalesced(id) => {
            println!("source {name} already has run job {id} waiting; joined it")
        }
    }
    if !running {
        println!("the orchestrator is not running: the job runs when it starts");
    }
    if paused {
        println!(
            "source {name} is paused: the job runs after `futurnal orchestrator sources resume {name}`"
        );
    }
    if !wait {
        return Ok(());
    }
    wait_for(home, &db, enqueued.id())
}

/// Wait for each of `ids` in turn (`wait_for`); fails if any did not succeed, after waiting
/// for all of them.
pub fn wait_for_all(home: &Home, ids: &[i64]) -> Result<(), CommandError> {
    let db = read_queue(home)?.ok_or_else(|| {
        OperatorError::failure(
            "the queue database is missing",
            "nothing was changed; start the orchestrator again",
            topics::MANAGING_JOBS,
        )
    })?;
    let mut result = Ok(());
    for &id in ids {
        if let Err(e) = wait_for(home, &db, id) {
            result = Err(e);
        }
    }
    result
}

/// Poll a job until it finishes (or its attempt fails), showing progress on a terminal; print
/// how it ended, and fail unless it succeeded.
pub fn wait_for(home: &Home, db: &QueueDb, id: i64) -> Result<(), CommandError> {
    let job = await_job(home, db, id, true)?;
    println!("{}", super::jobs_cmd::outcome_line(&job));
    if job.state == jobs::JobState::Succeeded {
        Ok(())
    } else {
        Err(CommandError::Reported(ExitCode::Failure.code()))
    }
}

/// Poll a job until it finishes (or its attempt fails), with a progress bar when `progress` and
/// stderr is a terminal; the job as it ended.
fn await_job(
    home: &Home,
    db: &QueueDb,
    id: i64,
    progress: bool,
) -> Result<jobs::Job, CommandError> {
    let bar = (progress && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} job {msg} [{bar:30}] {pos}/{len} items",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(id.to_string());
        bar
    });
    let mut last_alive_check = Instant::now();
    // A job already `failed` and waiting for its retry has not finished yet: only an attempt
    // that fails after we started waiting ends the wait.
    let since = now_ms();
    let job = loop {
        let job = jobs::get(db.conn(), id)
            .map_err(|e| sql(home, e))?
            .ok_or_else(|| {
                OperatorError::failure(
                    format!("job {id} disappeared"),
                    "nothing else changed",
                    topics::MANAGING_JOBS,
                )
            })?;
        if let Some(bar) = &bar {
            bar.set_length(job.items_total.max(0) as u64);
            bar.set_position(job.items_done.max(0) as u64);
        }
        let attempt_failed =
            job.state == jobs::JobState::Failed && job.finished_at.is_some_and(|t| t >= since);
        if job.is_terminal() || attempt_failed {
            break job;
        }
        if last_alive_check.elapsed() > Duration::from_secs(1) {
            if lock::holder(home).is_none() {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                return Err(OperatorError::failure(
                    format!("the orchestrator stopped while job {id} was {}", job.state),
                    "the job stays queued and resumes at the next start",
                    topics::JOBS_INTERRUPTED,
                )
                .into());
            }
            last_alive_check = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    Ok(job)
}
