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

fn topic_for_args(args: &[std::ffi::OsString]) -> &'static str {
    match args
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy())
        .find(|a| !a.starts_with('-'))
        .as_deref()
    {
        Some("config") => topics::CONFIGURATION,
        Some("runbook") => topics::RUNBOOK_HARNESS,
        Some("help") => topics::READING_THE_BOOK,
        Some("telemetry") => topics::TELEMETRY,
        _ => "operator-guide",
    }
}

/// Entry point used by the binary.
pub fn main() -> std::process::ExitCode {
    // args_os: paths need not be UTF-8 (`--config` takes any path), and `std::env::args` panics
    // on one that is not; clap reports any other non-UTF-8 argument as a usage error.
    crate::metrics::set_health_probe(health_cmd::probe);
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
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
