//! Live reconfiguration: `futurnal orchestrator reload` and SIGHUP.
//!
//! Owns: the record of what configuration the running daemon uses (its queue.db instance row:
//! the effective configuration as JSON, a hash of it, the layering it was loaded with, a
//! generation counted up by every applied reload), reload requests and the daemon's answers
//! (`config_reloads`), what a reload changed, and the "the file differs from what runs" warning.
//! Invariants: a reload reads the file with the layering the daemon started with (its own
//! `--config`, `--set` and `FUTURNAL_*` values), never with the asking command's; an invalid file
//! never replaces the running configuration; running jobs are never dropped (only a removed
//! source's jobs are cancelled, each with an event); every reload, applied or refused, is one
//! answered `config_reloads` row and one `config_reload` audit record; keys that only take effect
//! at start keep their running value, so the file keeps differing from what runs until a restart.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::lock;
use crate::config::{self, KEYS, Layering, Loaded, Overrides, Problem};
use crate::error::{CommandError, ExitCode, OperatorError, Result};
use crate::home::{Home, display_path};
use crate::jobs::{self, CancelOutcome};
use crate::queue::{QueueDb, now_ms};
use crate::runbook::topics;
use crate::security::audit;
use crate::workers::Pool;

/// How long `orchestrator reload` waits for the daemon's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Keys read only when the daemon starts (SQLite's journal mode is set when queue.db is opened):
/// a reload keeps their running value and says a restart is needed.
const RESTART_ONLY: &[&str] = &["queue.wal_mode", "telemetry.metrics_listen"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceChange {
    pub name: String,
    /// The source's keys whose value changed, such as `schedule`.
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SettingChange {
    pub key: String,
    pub from: String,
    pub to: String,
}

/// What a new configuration changes compared with the running one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Changes {
    pub sources_added: Vec<String>,
    pub sources_removed: Vec<String>,
    pub sources_changed: Vec<SourceChange>,
    pub settings_changed: Vec<SettingChange>,
    /// Changed keys that take effect only at the next start.
    pub restart_needed: Vec<SettingChange>,
    /// Waiting jobs of removed sources, cancelled by the reload.
    pub jobs_cancelled: u64,
    /// Running jobs of removed sources, asked to stop (they end `cancelled`).
    pub jobs_stopping: u64,
}

impl Changes {
    /// Nothing the running daemon applies.
    pub fn is_empty(&self) -> bool {
        self.sources_added.is_empty()
            && self.sources_removed.is_empty()
            && self.sources_changed.is_empty()
            && self.settings_changed.is_empty()
    }

    /// One line per kind of change, for `reload` and the log.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.sources_added.is_empty() {
            out.push(format!(
                "sources added:    {}",
                self.sources_added.join(", ")
            ));
        }
        if !self.sources_removed.is_empty() {
            let mut line = format!("sources removed:  {}", self.sources_removed.join(", "));
            if self.jobs_cancelled + self.jobs_stopping > 0 {
                line.push_str(&format!(
                    " ({} cancelled, {} stopping)",
                    crate::display::plural(self.jobs_cancelled as i64, "waiting job"),
                    crate::display::plural(self.jobs_stopping as i64, "running job"),
                ));
            }
            out.push(line);
        }
        if !self.sources_changed.is_empty() {
            let list: Vec<String> = self
                .sources_changed
                .iter()
                .map(|c| format!("{} ({})", c.name, c.fields.join(", ")))
                .collect();
            out.push(format!("sources changed:  {}", list.join(", ")));
        }
        for s in &self.settings_changed {
            out.push(format!(
                "setting changed:  {} {} -> {}",
                s.key, s.from, s.to
            ));
        }
        for s in &self.restart_needed {
            out.push(format!(
                "needs a restart:  {} {} -> {} (keeps {} until the orchestrator restarts)",
                s.key, s.from, s.to, s.from
            ));
        }
        out
    }

    /// A few words for a warning: "source mail added, 1 setting changed".
    pub fn brief(&self) -> String {
        let mut parts = Vec::new();
        for (names, what) in [
            (&self.sources_added, "added"),
            (&self.sources_removed, "removed"),
        ] {
            for n in names {
                parts.push(format!("source {n} {what}"));
            }
        }
        for c in &self.sources_changed {
            parts.push(format!("source {} changed", c.name));
        }
        let settings = self.settings_changed.len() + self.restart_needed.len();
        if settings > 0 {
            parts.push(format!(
                "{} changed",
                crate::display::plural(settings as i64, "setting")
            ));
        }
        if parts.is_empty() {
            "the effective configuration differs".into()
        } else {
            parts.join(", ")
        }
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// The differences between two configurations, as recorded by `config::fingerprint`.
pub fn diff(old: &Value, new: &Value) -> Changes {
    let mut changes = Changes::default();
    for key in KEYS {
        let (section, name) = key.path.split_once('.').unwrap_or(("", key.path));
        let (a, b) = (&old[section][name], &new[section][name]);
        if a != b {
            let change = SettingChange {
                key: key.path.to_string(),
                from: render(a),
                to: render(b),
            };
            if RESTART_ONLY.contains(&key.path) {
                changes.restart_needed.push(change);
            } else {
                changes.settings_changed.push(change);
            }
        }
    }
    let sources = |v: &Value| -> Vec<(String, Value)> {
        v["sources"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|s| {
                        (
                            s["name"].as_str().unwrap_or_default().to_string(),
                            s.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (before, after) = (sources(old), sources(new));
    for (name, s) in &after {
        match before.iter().find(|(n, _)| n == name) {
            None => changes.sources_added.push(name.clone()),
            Some((_, was)) if was != s => {
                let mut fields: Vec<String> = Vec::new();
                if let (Some(a), Some(b)) = (was.as_object(), s.as_object()) {
                    for k in b.keys().chain(a.keys()) {
                        if a.get(k) != b.get(k) && !fields.contains(k) {
                            fields.push(k.clone());
                        }
                    }
                }
                changes.sources_changed.push(SourceChange {
                    name: name.clone(),
                    fields,
                });
            }
            Some(_) => {}
        }
    }
    for (name, _) in &before {
        if !after.iter().any(|(n, _)| n == name) {
            changes.sources_removed.push(name.clone());
        }
    }
    changes
}

/// What the running daemon runs, as it recorded it.
#[derive(Debug, Clone)]
pub struct Running {
    pub instance_id: String,
    pub pid: i64,
    pub generation: i64,
    pub hash: String,
    pub config: Value,
    pub layering: Layering,
    pub loaded_at: i64,
}

impl Running {
    /// The running configuration's entry for a source.
    pub fn source(&self, name: &str) -> Option<&Value> {
        self.config["sources"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name)
    }
}

/// The running daemon's configuration, when a daemon holds the lock and recorded one (a daemon
/// of an older futurnal records none).
pub fn running(home: &Home) -> Option<Running> {
    let info = lock::holder(home)??;
    let db = QueueDb::read_existing(&home.queue_db()).ok()??;
    read_running(db.conn(), &info.instance_id)
}

fn read_running(conn: &Connection, instance_id: &str) -> Option<Running> {
    let row = conn
        .query_row(
            "SELECT pid, config_generation, config_hash, config_json, config_layering,
                    config_loaded_at
             FROM daemon_instances WHERE instance_id = ?1 AND config_json IS NOT NULL",
            [instance_id],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            },
        )
        .optional()
        .ok()??;
    Some(Running {
        instance_id: instance_id.to_string(),
        pid: row.0,
        generation: row.1,
        hash: row.2,
        config: serde_json::from_str(&row.3).ok()?,
        layering: serde_json::from_str(&row.4).ok()?,
        loaded_at: row.5.unwrap_or_default(),
    })
}

/// Record in the instance row what the daemon runs now.
pub fn record_running(
    db: &QueueDb,
    instance_id: &str,
    loaded: &Loaded,
    workers_max: u32,
    generation: i64,
    now: i64,
) -> rusqlite::Result<()> {
    let (json, hash) = config::fingerprint(&loaded.config);
    let layering = serde_json::to_string(&loaded.layering).unwrap_or_default();
    db.conn().execute(
        "UPDATE daemon_instances SET config_json = ?2, config_hash = ?3, config_layering = ?4,
            config_generation = ?5, config_loaded_at = ?6, workers_max = ?7,
            shutdown_grace_seconds = ?8
         WHERE instance_id = ?1",
        params![
            instance_id,
            json.to_string(),
            hash,
            layering,
            generation,
            now,
            workers_max as i64,
            loaded.config.workers.shutdown_grace_seconds as i64
        ],
    )?;
    Ok(())
}

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    Unchanged,
    Invalid,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Invalid => "invalid",
        }
    }
}

/// The daemon's answer to one reload, stored with its request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub outcome: Outcome,
    /// The generation running after the reload.
    pub generation: i64,
    /// The file, as the operator knows it.
    pub file: String,
    pub changes: Changes,
    /// For an invalid file: each problem as `file:line:col: key: message`.
    pub problems: Vec<String>,
}

/// The daemon's side: the configuration it runs and how to replace it.
pub struct Live {
    pub loaded: Loaded,
    pub generation: i64,
}

impl Live {
    /// Re-read the file with the recorded layering; apply it, or keep the running one when it is
    /// invalid. Answers every waiting request (a bare SIGHUP is recorded as its own request).
    pub fn reload(
        &mut self,
        home: &Home,
        db: &QueueDb,
        instance_id: &str,
        pool: &mut Pool,
    ) -> Answer {
        let now = now_ms();
        // A reload that turns auditing off is itself still audited.
        let audit_before = self.loaded.config.security.audit_logging;
        let file = display_path(&self.loaded.layering.path());
        let answer = match config::load_recorded(&self.loaded.layering) {
            Err(problems) => Answer {
                outcome: Outcome::Invalid,
                generation: self.generation,
                file,
                changes: Changes::default(),
                problems: problems.iter().map(Problem::to_string).collect(),
            },
            Ok(mut new) => {
                let (old_json, _) = config::fingerprint(&self.loaded.config);
                let (new_json, _) = config::fingerprint(&new.config);
                let mut changes = diff(&old_json, &new_json);
                // Start-only keys keep their running value.
                new.config.queue.wal_mode = self.loaded.config.queue.wal_mode;
                if changes.is_empty() {
                    Answer {
                        outcome: Outcome::Unchanged,
                        generation: self.generation,
                        file,
                        changes,
                        problems: Vec::new(),
                    }
                } else {
                    pool.reconfigure(&new.config, new.effective_workers() as usize);
                    for name in &changes.sources_removed {
                        let (cancelled, stopping) = cancel_jobs_of(db.conn(), name, now);
                        changes.jobs_cancelled += cancelled;
                        changes.jobs_stopping += stopping;
                    }
                    if new.config.queue.checkpoint_interval
                        != self.loaded.config.queue.checkpoint_interval
                        && let Err(e) = db.conn().execute_batch(&format!(
                            "PRAGMA wal_autocheckpoint = {};",
                            new.config.queue.checkpoint_interval
                        ))
                    {
                        tracing::warn!("cannot apply queue.checkpoint_interval: {e}");
                    }
                    self.generation += 1;
                    self.loaded = new;
                    if let Err(e) = record_running(
                        db,
                        instance_id,
                        &self.loaded,
                        self.loaded.effective_workers(),
                        self.generation,
                        now,
                    ) {
                        tracing::warn!("cannot record the reloaded configuration: {e}");
                    }
                    Answer {
                        outcome: Outcome::Applied,
                        generation: self.generation,
                        file,
                        changes,
                        problems: Vec::new(),
                    }
                }
            }
        };
        let by = match answer_requests(db.conn(), instance_id, &answer, now) {
            Ok(by) => by,
            Err(e) => {
                tracing::warn!("cannot record the reload's answer: {e}");
                "unknown".into()
            }
        };
        match answer.outcome {
            Outcome::Invalid => tracing::warn!(
                requested_by = %by,
                problems = answer.problems.len(),
                "configuration reload refused: the file is invalid; the running configuration is kept"
            ),
            outcome => tracing::info!(
                requested_by = %by,
                generation = answer.generation,
                "configuration reload {}{}",
                outcome.as_str(),
                answer
                    .changes
                    .lines()
                    .iter()
                    .map(|l| format!("; {l}"))
                    .collect::<String>()
            ),
        }
        audit(
            home,
            audit_before || self.loaded.config.security.audit_logging,
            "config_reload",
            json!({
                "instance_id": instance_id,
                "requested_by": by,
                "outcome": answer.outcome,
                "generation": answer.generation,
                "changes": answer.changes,
                "problems": answer.problems.len(),
            }),
        );
        answer
    }
}

/// Cancel every open job of a source removed from the configuration: waiting ones at once,
/// running ones cooperatively (they stop at the next item and end `cancelled`; what they stored
/// stays). Returns (cancelled, stopping).
fn cancel_jobs_of(conn: &Connection, source: &str, now: i64) -> (u64, u64) {
    let ids: Vec<i64> = crate::jobs::open_job_ids(conn, source).unwrap_or_else(|e| {
        tracing::warn!(source, "cannot list the jobs of a removed source: {e}");
        Vec::new()
    });
    let reason = format!("source {source} was removed from the configuration (reload)");
    let (mut cancelled, mut stopping) = (0, 0);
    for id in ids {
        match jobs::request_cancel(conn, id, &reason, "reload", now) {
            Ok(Some(CancelOutcome::Cancelled)) => cancelled += 1,
            Ok(Some(CancelOutcome::Requested)) => stopping += 1,
            Ok(_) => {}
            Err(e) => tracing::warn!(job = id, "cannot cancel a removed source's job: {e}"),
        }
    }
    (cancelled, stopping)
}

/// Answer the waiting requests; with none waiting (a SIGHUP sent by hand), record one. Returns
/// who asked.
fn answer_requests(
    conn: &Connection,
    instance_id: &str,
    answer: &Answer,
    now: i64,
) -> rusqlite::Result<String> {
    let report = serde_json::to_string(answer).unwrap_or_default();
    let n = conn.execute(
        "UPDATE config_reloads SET handled_at = ?2, outcome = ?3, generation = ?4, report = ?5
         WHERE instance_id = ?1 AND handled_at IS NULL",
        params![
            instance_id,
            now,
            answer.outcome.as_str(),
            answer.generation,
            report
        ],
    )?;
    if n > 0 {
        return Ok("operator".into());
    }
    conn.execute(
        "INSERT INTO config_reloads (instance_id, requested_at, requested_by, handled_at, outcome,
            generation, report)
         VALUES (?1, ?2, 'SIGHUP', ?2, ?3, ?4, ?5)",
        params![
            instance_id,
            now,
            answer.outcome.as_str(),
            answer.generation,
            report
        ],
    )?;
    Ok("SIGHUP".into())
}

/// Is a reload request waiting (its signal lost, say)?
/// How old a waiting request must be before the heartbeat answers it: a fresh one has its SIGHUP
/// on the way, and answering it first would make that signal look like a second, hand-sent reload.
const LOST_SIGNAL_MS: i64 = 1000;

/// A reload request older than `LOST_SIGNAL_MS` that no signal answered.
pub fn has_lost_request(conn: &Connection, instance_id: &str, now: i64) -> bool {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM config_reloads
                         WHERE instance_id = ?1 AND handled_at IS NULL AND requested_at <= ?2)",
        rusqlite::params![instance_id, now - LOST_SIGNAL_MS],
        |r| r.get(0),
    )
    .unwrap_or(false)
}

/// How the file on disk differs from what the daemon runs.
#[derive(Debug)]
pub enum Stale {
    Changed { file: PathBuf, changes: Changes },
    Invalid { file: PathBuf, problems: usize },
}

impl Stale {
    /// A few words for `status --format json`.
    pub fn brief(&self) -> String {
        match self {
            Stale::Changed { changes, .. } => changes.brief(),
            Stale::Invalid { problems, .. } => format!(
                "the file is invalid ({})",
                crate::display::plural(*problems as i64, "problem")
            ),
        }
    }
}

/// Does the configuration file, read the way the daemon reads it, differ from what it runs?
pub fn stale(home: &Home) -> Option<Stale> {
    let running = running(home)?;
    let file = running.layering.path();
    match config::load_recorded(&running.layering) {
        Ok(loaded) => {
            let (json, hash) = config::fingerprint(&loaded.config);
            (hash != running.hash).then(|| Stale::Changed {
                file,
                changes: diff(&running.config, &json),
            })
        }
        Err(problems) => Some(Stale::Invalid {
            file,
            problems: problems.len(),
        }),
    }
}

/// The warning commands that read the configuration print when it is stale.
pub fn stale_warning(stale: &Stale) -> String {
    let next = format!(
        "  to apply the file: futurnal orchestrator reload (see futurnal help runbook {})",
        topics::CONFIG_RELOAD
    );
    match stale {
        Stale::Changed { file, changes } => format!(
            "warning: {} changed after the orchestrator loaded it ({}); the orchestrator still runs \
             the previous configuration\n{next}",
            display_path(file),
            changes.brief()
        ),
        Stale::Invalid { file, problems } => format!(
            "warning: {} is invalid now ({}; `futurnal config validate` lists them); the \
             orchestrator keeps running the configuration it loaded before\n  fix the file, then \
             run futurnal orchestrator reload (see futurnal help runbook {})",
            display_path(file),
            crate::display::plural(*problems as i64, "problem"),
            topics::RELOAD_REFUSED
        ),
    }
}

/// Print the stale-configuration warning on stderr, if there is one.
pub fn warn_if_stale(home: &Home) {
    if let Some(s) = stale(home) {
        eprintln!("{}", stale_warning(&s));
    }
}

fn reload_error(what: impl Into<String>, safe: impl Into<String>) -> OperatorError {
    OperatorError::failure(what, safe, topics::CONFIG_RELOAD)
}

/// `futurnal orchestrator reload`.
pub fn command(home: &Home, overrides: &Overrides) -> std::result::Result<(), CommandError> {
    if overrides.config_path.is_some() || !overrides.set.is_empty() {
        return Err(OperatorError::new(
            ExitCode::Usage,
            "`orchestrator reload` takes no --config or --set: the orchestrator re-reads the file \
             it was started with, with the overrides it was started with",
            "nothing was reloaded; to run with another file or other overrides, stop the \
             orchestrator and start it with them",
            topics::CONFIG_RELOAD,
        )
        .into());
    }
    let Some(info) = lock::holder(home) else {
        // Nothing runs: check what the next start will read.
        let loaded = super::load_config(home, overrides)?;
        println!(
            "orchestrator is not running: nothing to reload; {} is valid ({}) and is read at \
             the next start",
            display_path(&loaded.file.path),
            crate::display::plural(loaded.config.sources.len() as i64, "source")
        );
        return Ok(());
    };
    let Some(info) = info else {
        return Err(reload_error(
            format!(
                "the orchestrator lock {} is held but does not say which process holds it",
                display_path(&home.lock_file())
            ),
            "nothing was reloaded; find the process with `fuser` or `lsof` on the lock file",
        )
        .into());
    };
    let db = QueueDb::open_existing(&home.queue_db())?.ok_or_else(|| {
        reload_error(
            "the orchestrator runs but its queue database is missing",
            "nothing was reloaded; restart the orchestrator",
        )
    })?;
    let id = request(db.conn(), &info.instance_id, now_ms()).map_err(|e| {
        reload_error(
            format!("the running orchestrator cannot take a reload request: {e}"),
            "nothing was reloaded; it may be from an older futurnal: restart it to apply the file",
        )
    })?;
    let pid = rustix::process::Pid::from_raw(info.pid as i32).ok_or_else(|| {
        reload_error(
            format!("the lock records an invalid pid {}", info.pid),
            "nothing was reloaded",
        )
    })?;
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).map_err(|e| {
        reload_error(
            format!("cannot signal the orchestrator (pid {}): {e}", info.pid),
            "nothing was reloaded; are you the user that started it?",
        )
    })?;
    let answer = wait_for_answer(home, db.conn(), id)?;
    match answer.outcome {
        Outcome::Invalid => {
            let n = answer.problems.len();
            let mut what = format!(
                "the configuration is invalid ({}); the orchestrator keeps running its previous \
                 configuration",
                crate::display::plural(n as i64, "problem")
            );
            for p in &answer.problems {
                what.push_str("\n  ");
                what.push_str(p);
            }
            Err(OperatorError::new(
                ExitCode::Config,
                what,
                "nothing changed in the running orchestrator; fix the lines above (`futurnal \
                 config validate` checks them), then run `futurnal orchestrator reload` again",
                topics::RELOAD_REFUSED,
            )
            .into())
        }
        Outcome::Unchanged => {
            println!(
                "configuration unchanged: the orchestrator already runs {} (generation {})",
                answer.file, answer.generation
            );
            for line in answer.changes.lines() {
                println!("  {line}");
            }
            Ok(())
        }
        Outcome::Applied => {
            println!(
                "configuration reloaded from {} (generation {})",
                answer.file, answer.generation
            );
            for line in answer.changes.lines() {
                println!("  {line}");
            }
            Ok(())
        }
    }
}

fn request(conn: &Connection, instance_id: &str, now: i64) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO config_reloads (instance_id, requested_at, requested_by)
         VALUES (?1, ?2, 'operator')",
        params![instance_id, now],
    )?;
    Ok(conn.last_insert_rowid())
}

fn read_answer(conn: &Connection, id: i64) -> rusqlite::Result<Option<Answer>> {
    let report: Option<Option<String>> = conn
        .query_row(
            "SELECT report FROM config_reloads WHERE id = ?1 AND handled_at IS NOT NULL",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(report.flatten().and_then(|r| serde_json::from_str(&r).ok()))
}

fn wait_for_answer(home: &Home, conn: &Connection, id: i64) -> Result<Answer> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let mut last_alive_check = Instant::now();
    loop {
        match read_answer(conn, id) {
            Ok(Some(answer)) => return Ok(answer),
            Ok(None) => {}
            Err(e) => return Err(crate::error::queue_error(home, e)),
        }
        if last_alive_check.elapsed() > Duration::from_secs(1) {
            if lock::holder(home).is_none() {
                return Err(reload_error(
                    "the orchestrator stopped before it answered the reload request",
                    "nothing else changed; the next start reads the configuration file",
                ));
            }
            last_alive_check = Instant::now();
        }
        if Instant::now() >= deadline {
            return Err(reload_error(
                format!(
                    "the orchestrator did not answer the reload request within {}s",
                    ANSWER_TIMEOUT.as_secs()
                ),
                format!(
                    "the request stays queued and is answered when the orchestrator gets to it; \
                     its log {} says what it is doing",
                    display_path(&home.log_file())
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn diff_names_sources_and_settings() {
        let old = cfg(
            r#"{"workers": {"max_workers": 2}, "queue": {"wal_mode": true},
                "sources": [{"name": "a", "schedule": "manual"}, {"name": "b"}]}"#,
        );
        let new = cfg(
            r#"{"workers": {"max_workers": 3}, "queue": {"wal_mode": false},
                "sources": [{"name": "a", "schedule": "15m"}, {"name": "c"}]}"#,
        );
        let d = diff(&old, &new);
        assert_eq!(d.sources_added, vec!["c"]);
        assert_eq!(d.sources_removed, vec!["b"]);
        assert_eq!(
            d.sources_changed,
            vec![SourceChange {
                name: "a".into(),
                fields: vec!["schedule".into()]
            }]
        );
        assert_eq!(d.settings_changed.len(), 1);
        assert_eq!(d.settings_changed[0].key, "workers.max_workers");
        assert_eq!(
            (
                d.restart_needed[0].key.as_str(),
                d.restart_needed[0].to.as_str()
            ),
            ("queue.wal_mode", "false")
        );
        assert!(!d.is_empty());
        assert_eq!(
            d.brief(),
            "source c added, source b removed, source a changed, 2 settings changed"
        );
        assert!(diff(&old, &old).is_empty());
    }

    /// The operator guide's "needs a restart" row names exactly `RESTART_ONLY`.
    #[test]
    fn the_book_lists_the_keys_that_need_a_restart() {
        let guide = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src/operator-guide.md"),
        )
        .unwrap();
        let row = guide
            .lines()
            .find(|l| l.starts_with("| `") && l.contains("| needs a restart"))
            .expect("the row");
        let cell = row.split('|').nth(1).unwrap();
        let keys: Vec<&str> = cell.split('`').skip(1).step_by(2).collect();
        assert_eq!(keys, RESTART_ONLY);
    }

    #[test]
    fn a_restart_only_change_alone_applies_nothing() {
        let old = cfg(r#"{"queue": {"wal_mode": true}, "sources": []}"#);
        let new = cfg(r#"{"queue": {"wal_mode": false}, "sources": []}"#);
        let d = diff(&old, &new);
        assert!(d.is_empty());
        assert_eq!(d.restart_needed.len(), 1);
    }
}
