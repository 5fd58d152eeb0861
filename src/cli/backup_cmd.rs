//! `futurnal orchestrator backup [--to DIR]`, `backup list [DIR]`, `backup verify PATH` and
//! `orchestrator restore PATH` (the work is `backup`'s; this words it for the operator).
//!
//! Invariants: every backup and restore is audited (`backup` with `scheduled: false`, as the
//! daemon's schedule records its own with `true`; `restore`, with the backup's folder); `list`
//! and `verify` change nothing; `list` exits 0 whatever it finds; a failed verification exits 1
//! and names each problem; a restore while the orchestrator runs is refused with exit 4 and
//! changes nothing.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use super::{TableOrJson, print_json};
use crate::backup::{self, BackupError, Listed, ListedKind, Parts};
use crate::config::Overrides;
use crate::daemon::lock::{self, AcquireError, InstanceLock, LockInfo};
use crate::display;
use crate::error::{CommandError, ExitCode, OperatorError, Result};
use crate::home::{Home, display_path};
use crate::runbook::topics;
use crate::security::audit;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// Folder to write the backup under [default: ~/.futurnal/backups]
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
    pub format: TableOrJson,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// List the backups (oldest first), what restores kept aside, and anything else in the folder
    List {
        /// The folder to list [default: ~/.futurnal/backups]
        dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
    /// Check a backup's checksums and the integrity of its databases; changes nothing
    Verify {
        /// The backup's folder
        path: PathBuf,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup's folder (as `orchestrator backup` printed it)
    pub path: PathBuf,
    /// Restore queue.db only (jobs, pauses, history)
    #[arg(long, conflicts_with = "store_only")]
    pub queue_only: bool,
    /// Restore store.db only (the documents)
    #[arg(long, conflicts_with = "config_only")]
    pub store_only: bool,
    /// Restore the configuration file only
    #[arg(long, conflicts_with_all = ["queue_only", "with_config"])]
    pub config_only: bool,
    /// Also restore the configuration file from the backup
    #[arg(long)]
    pub with_config: bool,
    #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
    pub format: TableOrJson,
}

/// Messages and the audit log name the backup the same way however it was typed.
fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What a backup is asked to do, as the daemon's schedule builds it; a broken configuration file
/// still gets backed up, with the defaults.
fn request(home: &Home, overrides: &Overrides) -> backup::Request {
    let config_file = crate::config::config_file(home, overrides).0;
    let config = crate::daemon::load_config(home, overrides)
        .map(|l| l.config)
        .unwrap_or_default();
    backup::Request::new(home, &config, &config_file, false)
}

/// The home's instance lock, for a restore: refused while a daemon holds it.
fn take_lock(home: &Home) -> std::result::Result<InstanceLock, BackupError> {
    let info = LockInfo {
        pid: std::process::id(),
        instance_id: "restore".into(),
        started_at: crate::clock::now_ms(),
        // A restore does not answer SIGUSR1: `wake` must never signal it.
        wakes: false,
    };
    match lock::acquire(home, &info) {
        Ok(l) => Ok(l),
        Err(AcquireError::Held(_)) => Err(BackupError::Running),
        Err(AcquireError::Io(e)) => Err(e.into()),
    }
}

fn failed(e: BackupError, doing: &str, topic: &'static str) -> OperatorError {
    match e {
        BackupError::Running => OperatorError::new(
            ExitCode::AlreadyRunning,
            format!("cannot {doing} while the orchestrator runs: it holds the home's lock"),
            "nothing was changed; stop it (`futurnal orchestrator stop`) and run the restore again",
            topic,
        ),
        BackupError::Invalid(what) => OperatorError::failure(
            what,
            format!(
                "nothing was changed; pick another backup (`ls ~/.futurnal/backups`) and {doing} again"
            ),
            topic,
        ),
        e => OperatorError::failure(
            format!("could not {doing}: {e}"),
            if topic == topics::RESTORE {
                "fix the cause and run the restore again: it finishes one that was interrupted, and what it replaced stays under ~/.futurnal/backups/replaced-*"
            } else {
                "the home was not changed and no folder named like a complete backup was left; fix the cause and run it again"
            },
            topic,
        ),
    }
}

pub fn backup(home: &Home, overrides: &Overrides, args: BackupArgs) -> Result<(), CommandError> {
    match args.command {
        Some(BackupCommand::Verify { path, format }) => return verify(&path, format),
        Some(BackupCommand::List { dir, format }) => {
            return list(&dir.unwrap_or_else(|| home.backups_dir()), format);
        }
        None => {}
    }
    let mut req = request(home, overrides);
    if let Some(dir) = args.to {
        req.dir = dir;
    }
    let report =
        backup::take(home, &req).map_err(|e| failed(e, "take the backup", topics::BACKUPS))?;
    match args.format {
        TableOrJson::Json => print_json(&report),
        TableOrJson::Table => {
            println!("backup written to {}", display_path(&report.path));
            let m = &report.manifest;
            for f in &m.files {
                let what = match f.name.as_str() {
                    "queue.db" => m.jobs.map(|n| display::plural(n, "job")),
                    "store.db" => m.documents.map(|n| display::plural(n, "document")),
                    _ => None,
                };
                println!(
                    "  {:<18} {:>10}{}",
                    f.name,
                    display::size(f.size),
                    what.map(|w| format!("  {w}")).unwrap_or_default()
                );
            }
            println!(
                "{} in {}",
                display::size(report.bytes),
                display::duration_ms(report.duration_ms as i64)
            );
            for r in &report.removed {
                println!(
                    "removed old backup {} (backup.keep = {})",
                    display_path(r),
                    req.keep
                );
            }
        }
    }
    Ok(())
}

/// `backup list [DIR]`: reads names, sizes and manifests, changes nothing, and lists what it
/// cannot read with the reason (exit 0: verifying is `backup verify`'s).
fn list(dir: &Path, format: TableOrJson) -> Result<(), CommandError> {
    let all = backup::list_all(dir).map_err(|e| {
        OperatorError::failure(
            format!("cannot list {}: {e}", display_path(dir)),
            "nothing was changed; check that the folder exists and is readable",
            topics::BACKUPS,
        )
    })?;
    if format == TableOrJson::Json {
        print_json(&all);
        return Ok(());
    }
    let of = |kind: ListedKind| all.iter().filter(move |l| l.kind == kind);
    let backups: Vec<&Listed> = of(ListedKind::Backup).collect();
    if backups.is_empty() {
        println!(
            "no backups in {}; take one with `futurnal orchestrator backup`",
            display_path(dir)
        );
    } else {
        println!(
            "{} in {}, oldest first:",
            display::plural(backups.len() as i64, "backup"),
            display_path(dir)
        );
        println!(
            "{:<18}  {:<20}  {:>10}  {:>9}  {:>6}  SCHEMA",
            "NAME", "TAKEN", "SIZE", "DOCUMENTS", "JOBS"
        );
        let count = |n: Option<i64>| n.map_or("-".to_string(), |n| n.to_string());
        for b in backups {
            let schema = match (b.queue_schema, b.store_schema) {
                (None, None) => "-".to_string(),
                (q, s) => format!("{}/{}", count(q), count(s)),
            };
            println!(
                "{:<18}  {:<20}  {:>10}  {:>9}  {:>6}  {schema}",
                b.name,
                b.created_at.as_deref().unwrap_or("-"),
                display::size(b.bytes),
                count(b.documents),
                count(b.jobs),
            );
            if let Some(problem) = &b.problem {
                println!("  ^ {problem}");
            }
        }
    }
    let replaced: Vec<&Listed> = of(ListedKind::Replaced).collect();
    if !replaced.is_empty() {
        println!(
            "set aside by restores and rebuilds (not backups; delete them once you are sure):"
        );
        for r in replaced {
            println!(
                "{}  {}  {}  {}",
                r.name,
                r.created_at.as_deref().unwrap_or("-"),
                display::size(r.bytes),
                r.files.join(", ")
            );
        }
    }
    let others: Vec<&Listed> = all
        .iter()
        .filter(|l| matches!(l.kind, ListedKind::Incomplete | ListedKind::NotABackup))
        .collect();
    if !others.is_empty() {
        println!("not backups:");
        for o in others {
            println!("{}  {}", o.name, o.problem.as_deref().unwrap_or("-"));
        }
    }
    Ok(())
}

fn verify(path: &Path, format: TableOrJson) -> Result<(), CommandError> {
    let path = &absolute(path);
    let v = backup::verify(path).map_err(|e| failed(e, "verify the backup", topics::BACKUPS))?;
    match format {
        TableOrJson::Json => print_json(&v),
        TableOrJson::Table => {
            for f in &v.manifest.files {
                let bad = v
                    .problems
                    .iter()
                    .any(|p| p.starts_with(&format!("{}:", f.name)));
                println!("{:<18} {}", f.name, if bad { "BAD" } else { "ok" });
            }
        }
    }
    if v.problems.is_empty() {
        return Ok(());
    }
    Err(OperatorError::failure(
        format!(
            "the backup {} is damaged: {}",
            display_path(path),
            v.problems.join("; ")
        ),
        "nothing was changed; do not restore this backup, verify an older one",
        topics::BACKUPS,
    )
    .into())
}

pub fn restore(home: &Home, overrides: &Overrides, args: RestoreArgs) -> Result<(), CommandError> {
    let config_file = crate::config::config_file(home, overrides).0;
    let parts = Parts {
        queue: !args.store_only && !args.config_only,
        store: !args.queue_only && !args.config_only,
        config: args.with_config || args.config_only,
    };
    let done = backup::restore(home, &absolute(&args.path), parts, &config_file, take_lock)
        .map_err(|e| failed(e, "restore", topics::RESTORE))?;
    // The configuration may have just come back: audit as it says.
    let audit_on = crate::daemon::load_config(home, overrides)
        .map(|l| l.config.security.audit_logging)
        .unwrap_or(true);
    audit(
        home,
        audit_on,
        "restore",
        json!({
            "from": display_path(&done.from),
            "aside": display_path(&done.aside),
            "restored": done.restored.iter().map(|p| display_path(p)).collect::<Vec<_>>(),
        }),
    );
    match args.format {
        TableOrJson::Json => print_json(&done),
        TableOrJson::Table => {
            for p in &done.restored {
                println!("restored {}", display_path(p));
            }
            if done.moved_aside.is_empty() {
                println!("nothing was replaced");
            } else {
                println!(
                    "the replaced files are kept in {} (delete them yourself once you are sure)",
                    display_path(&done.aside)
                );
            }
            if done.restored.iter().any(|p| p == &home.queue_db()) {
                println!(
                    "start the orchestrator: jobs running at backup time are recovered as after a crash"
                );
            }
        }
    }
    Ok(())
}

/// Before a start: finish a restore a kill interrupted, or refuse to start on a half-restored home
/// (a start there could create an empty queue where the restored one belongs).
pub fn finish_before_start(home: &Home) -> Result<(), OperatorError> {
    match backup::finish_interrupted(home, take_lock) {
        Ok(true) => {
            println!("finished an interrupted restore before starting");
            Ok(())
        }
        Ok(false) | Err(BackupError::Running) => Ok(()),
        Err(e) => Err(OperatorError::failure(
            format!("an interrupted restore could not be finished: {e}"),
            "the orchestrator did not start and the replaced files are kept under ~/.futurnal/backups/replaced-*; run the restore again",
            topics::RESTORE,
        )),
    }
}
