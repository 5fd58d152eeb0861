//! The command line: argument parsing and dispatch to the owning modules.
//!
//! Owns: the `futurnal` command tree, output formats and exit codes.
//! Invariants: every failure reaches the operator as an `OperatorError` (what, what is safe, which
//! runbook topic) or as a clap usage error followed by the same two lines; `main` never panics on
//! bad input.

mod audit_cmd;
mod backup_cmd;
mod config_cmd;
mod health_cmd;
mod help;
mod jobs_cmd;
mod quarantine_cmd;
mod quickstart_cmd;
pub mod reference;
mod runbook_cmd;
mod sources_cmd;
mod telemetry_cmd;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Overrides;
use crate::daemon;
use crate::error::{CommandError, ExitCode, OperatorError};
use crate::home::Home;
use crate::runbook::topics;

#[derive(Debug, Parser)]
#[command(
    name = "futurnal",
    version,
    about = "Local-first ingestion orchestrator with an executable operator book",
    disable_help_subcommand = true,
    after_help = "Read the operator book in the terminal: futurnal help runbook"
)]
pub struct Cli {
    /// Configuration file [default: ~/.futurnal/config/orchestrator.yaml; env: FUTURNAL_CONFIG]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Override one configuration key for this command (repeatable)
    #[arg(long = "set", global = true, value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The first minute: a demo home with sample notes, started and ingested, and what to try next
    Quickstart(quickstart_cmd::QuickstartArgs),
    /// Start, stop and inspect the orchestrator daemon
    Orchestrator {
        #[command(subcommand)]
        command: OrchestratorCommand,
    },
    /// Validate, show and create the configuration
    Config {
        #[command(subcommand)]
        command: config_cmd::ConfigCommand,
    },
    /// Help for a command, or the operator book: `futurnal help runbook [TOPIC]`
    Help {
        /// With `runbook`: print straight out, without a pager (also accepted after `runbook`)
        #[arg(long)]
        no_pager: bool,
        /// With `runbook`: list the sections of every chapter that mention all these words
        /// (also accepted after `runbook`)
        #[arg(long)]
        search: bool,
        /// `runbook [TOPIC...]`, or a command such as `orchestrator start`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Check markdown runbooks by running their bash blocks
    Runbook {
        #[command(subcommand)]
        command: runbook_cmd::RunbookCommand,
    },
    /// The specification's spelling of `orchestrator telemetry`
    #[command(hide = true)]
    Telemetry {
        #[command(subcommand)]
        command: telemetry_cmd::TelemetryCommand,
    },
    /// The specification's spelling of `orchestrator health`
    #[command(hide = true)]
    Health(health_cmd::HealthArgs),
    /// Verify and list the tamper-evident audit log of operator actions
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell
    Completions {
        /// The shell to complete in
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page futurnal.1, or write one page per command with --dir
    Man {
        /// Write futurnal.1, futurnal-orchestrator.1, ... into this folder instead
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrchestratorCommand {
    /// Start the orchestrator (in the background unless --foreground)
    Start {
        /// Run in this terminal; stop with Ctrl-C
        #[arg(long)]
        foreground: bool,
        /// Internal: the detached daemon process
        #[arg(long, hide = true)]
        detached_child: bool,
        /// Set the document store aside (kept under backups/) and rebuild it from the sources
        #[arg(long)]
        rebuild_store: bool,
        /// With --rebuild-store: wait until every rebuild run has finished
        #[arg(long, requires = "rebuild_store", conflicts_with = "foreground")]
        wait: bool,
    },
    /// Stop the orchestrator, letting in-flight work finish
    Stop {
        /// Kill it now; interrupted work is recovered at the next start
        #[arg(long)]
        force: bool,
    },
    /// Re-read the configuration file and apply it without a restart (same as SIGHUP)
    Reload,
    /// List, inspect, pause, resume and trigger sources
    Sources {
        #[command(subcommand)]
        command: sources_cmd::SourcesCommand,
    },
    /// List, inspect and cancel jobs
    Jobs {
        #[command(subcommand)]
        command: jobs_cmd::JobsCommand,
    },
    /// Jobs that need an operator: list, show, retry, purge
    Quarantine {
        #[command(subcommand)]
        command: quarantine_cmd::QuarantineCommand,
    },
    /// Check that ingestion is healthy: daemon, queue, disk, quarantine, throughput...
    Health(health_cmd::HealthArgs),
    /// Throughput, failures and retention of what the daemon recorded
    Telemetry {
        #[command(subcommand)]
        command: telemetry_cmd::TelemetryCommand,
    },
    /// Take an online backup of the queue, the store and the configuration; `backup verify PATH`
    Backup(backup_cmd::BackupArgs),
    /// Restore a backup (the orchestrator must be stopped); the replaced files are kept aside
    Restore(backup_cmd::RestoreArgs),
    /// The same as `futurnal audit`
    #[command(hide = true)]
    Audit {
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// Show whether the orchestrator runs, and what is queued
    Status {
        /// Also show instance, heartbeat, database and file details
        #[arg(long, short)]
        verbose: bool,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub enum TableOrJson {
    Table,
    Json,
}

/// Print JSON the way every command does: pretty, with a trailing newline.
pub fn print_json(value: &impl serde::Serialize) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

/// The runbook topic for a usage error: the section that teaches the deepest command the words
/// name (`orchestrator jobs cancel` without `--reason`: managing-jobs), found by walking the real
/// command tree; the operator guide when not even the first word is a command.
fn topic_for_args(args: &[std::ffi::OsString]) -> &'static str {
    let mut command = reference::command();
    let mut path: Vec<String> = Vec::new();
    let mut words = args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    while let Some(word) = words.next() {
        if let Some(long) = word.strip_prefix("--") {
            // An option's separate value is not a command: skip it.
            let takes_value = !long.contains('=')
                && command
                    .get_arguments()
                    .find(|a| a.get_long() == Some(long))
                    .is_some_and(|a| a.get_action().takes_values());
            if takes_value {
                words.next();
            }
            continue;
        }
        if word.starts_with('-') {
            continue;
        }
        let Some(sub) = command.find_subcommand(&word).cloned() else {
            break;
        };
        path.push(sub.get_name().to_string());
        command = sub;
    }
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    match path.as_slice() {
        ["config", "init", ..] => topics::CONFIG_CREATE,
        ["config", "validate", ..] => topics::CONFIG_INVALID,
        ["config", "show", ..] => topics::CONFIG_SHOW,
        ["config", ..] => topics::CONFIGURATION,
        ["runbook", ..] => topics::RUNBOOK_HARNESS,
        ["help", ..] => topics::READING_THE_BOOK,
        ["audit", ..] | ["orchestrator", "audit", ..] => topics::AUDIT_LOG,
        ["completions", ..] | ["man", ..] => topics::COMPLETIONS,
        ["quickstart", ..] => topics::QUICKSTART,
        ["orchestrator", "start", ..] => topics::STARTING,
        ["orchestrator", "stop", ..] => topics::STOPPING,
        ["orchestrator", "status", ..] => topics::CHECKING_STATUS,
        ["orchestrator", "reload", ..] => topics::CONFIG_RELOAD,
        ["orchestrator", "sources", "list" | "show", ..] => topics::SOURCES_LIST,
        ["orchestrator", "sources", "trigger", ..] => topics::SOURCES_TRIGGER,
        ["orchestrator", "sources", "pause" | "resume", ..] => topics::SOURCES_PAUSE,
        ["orchestrator", "sources", ..] => topics::MANAGING_SOURCES,
        ["orchestrator", "jobs", "list", ..] => topics::JOBS_LIST,
        ["orchestrator", "jobs", "show", ..] => topics::JOBS_SHOW,
        ["orchestrator", "jobs", "cancel", ..] => topics::JOBS_CANCEL,
        ["orchestrator", "jobs", ..] => topics::MANAGING_JOBS,
        ["orchestrator", "quarantine", ..] => topics::QUARANTINE,
        ["orchestrator", "health", ..] => topics::HEALTH_CHECKS,
        ["orchestrator", "telemetry", ..] => topics::TELEMETRY,
        ["orchestrator", "backup", ..] => topics::BACKUPS,
        ["orchestrator", "restore", ..] => topics::RESTORE,
        _ => "operator-guide",
    }
}

/// `futurnal ... | head -n 1`: when the reader goes away, a command ends quietly with status 0,
/// as `grep` and `rg` do, instead of a panic message. Rust ignores SIGPIPE, so `println!` fails
/// with EPIPE and panics; restoring SIGPIPE instead would make `cmd | head` fail under
/// `set -o pipefail` (status 141), which scripts and this book's harness use.
fn quiet_on_closed_pipe() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        previous(info);
    }));
}

/// Entry point used by the binary.
pub fn main() -> std::process::ExitCode {
    // args_os: paths need not be UTF-8 (`--config` takes any path), and `std::env::args` panics
    // on one that is not; clap reports any other non-UTF-8 argument as a usage error.
    crate::metrics::set_health_probe(health_cmd::probe);
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    quiet_on_closed_pipe();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let is_error = !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
            let _ = e.print();
            if !is_error {
                return std::process::ExitCode::SUCCESS;
            }
            eprintln!(
                "  safe to do: nothing was run; correct the command and try again\n  runbook: \
                 futurnal help runbook {}",
                topic_for_args(&args)
            );
            return std::process::ExitCode::from(ExitCode::Usage.code());
        }
    };
    match dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(CommandError::Operator(e)) => {
            eprintln!("{e}");
            std::process::ExitCode::from(e.exit.code())
        }
        Err(CommandError::Reported(code)) => std::process::ExitCode::from(code),
    }
}

fn dispatch(cli: Cli) -> Result<(), CommandError> {
    let overrides = Overrides {
        config_path: cli.config.clone(),
        set: cli.set.clone(),
    };
    match cli.command {
        Command::Help {
            args,
            no_pager,
            search,
        } => help::run(&args, help::Options { no_pager, search }).map_err(Into::into),
        Command::Runbook { command } => runbook_cmd::run(command),
        Command::Quickstart(args) => quickstart_cmd::run(args),
        Command::Completions { shell } => {
            reference::completions(shell);
            Ok(())
        }
        Command::Man { dir } => reference::man(dir.as_deref()),
        Command::Telemetry { command } => {
            telemetry_cmd::run(&Home::resolve()?, &overrides, command)
        }
        Command::Health(args) => health_cmd::run(&Home::resolve()?, &overrides, args),
        Command::Audit { command } => audit_cmd::run(&Home::resolve()?, command),
        Command::Config { command } => {
            let home = Home::resolve()?;
            config_cmd::run(&home, &overrides, command).map_err(Into::into)
        }
        Command::Orchestrator { command } => {
            let home = Home::resolve()?;
            match command {
                OrchestratorCommand::Start {
                    foreground,
                    detached_child,
                    rebuild_store,
                    wait,
                } => {
                    if !detached_child {
                        // A restore killed half way is finished before anything opens the home.
                        backup_cmd::finish_before_start(&home)?;
                    }
                    let started = daemon::start(
                        &home,
                        &overrides,
                        foreground,
                        detached_child,
                        rebuild_store,
                    )?;
                    if wait {
                        sources_cmd::wait_for_all(&home, &started.rebuild_jobs)
                    } else {
                        Ok(())
                    }
                }
                OrchestratorCommand::Backup(args) => backup_cmd::backup(&home, &overrides, args),
                OrchestratorCommand::Restore(args) => backup_cmd::restore(&home, &overrides, args),
                OrchestratorCommand::Stop { force } => {
                    // Audit the request even when the configuration is broken: default is on.
                    let audit_on = daemon::load_config(&home, &overrides)
                        .map(|l| l.config.security.audit_logging)
                        .unwrap_or(true);
                    daemon::stop(&home, force, audit_on).map_err(Into::into)
                }
                OrchestratorCommand::Reload => daemon::reload::command(&home, &overrides),
                OrchestratorCommand::Sources { command } => {
                    sources_cmd::run(&home, &overrides, command)
                }
                OrchestratorCommand::Jobs { command } => jobs_cmd::run(&home, command),
                OrchestratorCommand::Audit { command } => audit_cmd::run(&home, command),
                OrchestratorCommand::Quarantine { command } => {
                    quarantine_cmd::run(&home, &overrides, command)
                }
                OrchestratorCommand::Health(args) => health_cmd::run(&home, &overrides, args),
                OrchestratorCommand::Telemetry { command } => {
                    telemetry_cmd::run(&home, &overrides, command)
                }
                OrchestratorCommand::Status { verbose, format } => {
                    let stale = daemon::reload::stale(&home);
                    let loaded = daemon::load_config(&home, &overrides);
                    let config = loaded.as_ref().map_err(|e| {
                        (
                            crate::config::config_file(&home, &overrides).0,
                            e.what.clone(),
                        )
                    });
                    let status = daemon::status::collect(&home, config, verbose);
                    match format {
                        TableOrJson::Json => {
                            // Monitoring reads the drift from the JSON, not from stderr.
                            let mut value = serde_json::to_value(&status).unwrap_or_default();
                            if let Some(map) = value.as_object_mut() {
                                let running = daemon::reload::running(&home);
                                map.insert(
                                    "config_generation".into(),
                                    running.map(|r| r.generation).into(),
                                );
                                map.insert(
                                    "config_stale".into(),
                                    stale.as_ref().map(daemon::reload::Stale::brief).into(),
                                );
                            }
                            print_json(&value)
                        }
                        TableOrJson::Table => {
                            if let Some(s) = &stale {
                                eprintln!("{}", daemon::reload::stale_warning(s));
                            }
                            print!("{}", daemon::status::render_table(&status, &home, verbose))
                        }
                    }
                    // A queue that cannot be read is an error, not an empty queue: scripts see it.
                    match status.queue_unreadable {
                        Some(e) => Err(e.into()),
                        None => Ok(()),
                    }
                }
            }
        }
    }
}

/// Errors for things an operator typed that name nothing that exists.
pub fn unknown(what: impl Into<String>, topic: &'static str) -> OperatorError {
    OperatorError::new(
        ExitCode::Usage,
        what,
        "nothing was run; pick one of the names listed above",
        topic,
    )
}

#[cfg(test)]
mod tests {
    use super::topic_for_args;
    use crate::runbook::topics;

    fn topic(words: &str) -> &'static str {
        let args: Vec<std::ffi::OsString> = std::iter::once("futurnal")
            .chain(words.split_whitespace())
            .map(Into::into)
            .collect();
        topic_for_args(&args)
    }

    /// Issue 12: every usage error under `orchestrator` pointed at the whole operator guide.
    #[test]
    fn a_usage_error_names_the_section_of_the_deepest_command() {
        assert_eq!(topic("orchestrator jobs cancel 3"), topics::JOBS_CANCEL);
        assert_eq!(topic("orchestrator jobs wait"), topics::MANAGING_JOBS);
        assert_eq!(
            topic("--config /tmp/x.yaml orchestrator quarantine retry --all"),
            topics::QUARANTINE
        );
        // An option's value is not taken for a command, even one spelled like one.
        assert_eq!(
            topic("--set workers.max_workers=2 --config jobs orchestrator sources trigger"),
            topics::SOURCES_TRIGGER
        );
        assert_eq!(topic("orchestrator start --bogus"), topics::STARTING);
        assert_eq!(topic("orchestrator backup verify"), topics::BACKUPS);
        assert_eq!(topic("orchestrator restore"), topics::RESTORE);
        assert_eq!(topic("audit verify --bogus"), topics::AUDIT_LOG);
        assert_eq!(topic("completions tcsh"), topics::COMPLETIONS);
        assert_eq!(topic("config validate --bogus"), topics::CONFIG_INVALID);
        assert_eq!(topic("config init --bogus"), topics::CONFIG_CREATE);
        assert_eq!(topic("config bogus"), topics::CONFIGURATION);
        assert_eq!(topic("orchestrator statsu"), "operator-guide");
        assert_eq!(topic("bogus"), "operator-guide");
    }
}
