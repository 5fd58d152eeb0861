//! `futurnal orchestrator health [check NAME]` (and the hidden top-level `futurnal health`).
//!
//! Owns: the health command's output (a table, or `{"status", "checks": [...]}`) and its exit
//! status: 0 ok, `ExitCode::HealthWarn`, `ExitCode::HealthFail`; 0 for a sink futurnal does not
//! have (`neo4j`, `chroma`: status `not_applicable`); a usage error listing the checks for an
//! unknown name. The checks themselves are `health.rs`.

use clap::Subcommand;

use crate::config::Overrides;
use crate::daemon;
use crate::error::{CommandError, ExitCode, OperatorError};
use crate::health::{self, Level, Report};
use crate::home::Home;
use crate::runbook::topics;

use super::{TableOrJson, print_json};

#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// Also print each check's detail when it is ok
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[arg(long, value_enum, default_value_t = TableOrJson::Table, global = true)]
    pub format: TableOrJson,
    #[command(subcommand)]
    pub command: Option<HealthCommand>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum HealthCommand {
    /// Run one check (daemon, scheduler, queue, store, wal, disk, config, quarantine,
    /// pending_age, throughput)
    Check {
        /// The check's name
        name: String,
    },
}

pub fn run(home: &Home, overrides: &Overrides, args: HealthArgs) -> Result<(), CommandError> {
    let only = args
        .command
        .as_ref()
        .map(|HealthCommand::Check { name }| name.as_str());
    let report = match only {
        Some(name) if !health::NAMES.contains(&name) => match health::absent_sink(name) {
            Some(r) => r,
            None => return Err(unknown_check(name).into()),
        },
        _ => {
            let loaded = daemon::load_config(home, overrides);
            let config = loaded.as_ref().map_err(|e| e.what.clone());
            health::run(home, config, only)
        }
    };
    match args.format {
        TableOrJson::Json => print_json(&report),
        // One check asked for by name always shows its detail.
        TableOrJson::Table => print!("{}", render(&report, args.verbose || only.is_some())),
    }
    match exit_code(report.status) {
        ExitCode::Ok => Ok(()),
        code => Err(CommandError::Reported(code.code())),
    }
}

/// Every health check's level for the metrics (`metrics::HealthProbe`), with the configuration
/// the running orchestrator runs.
pub fn probe(home: &Home) -> Vec<(&'static str, u8)> {
    let loaded = super::sources_cmd::effective_config(home, &Overrides::default());
    let config = loaded.as_ref().map_err(|e| e.what.clone());
    health::run(home, config, None)
        .checks
        .iter()
        .map(|c| {
            let level = match c.status {
                Level::Ok | Level::NotApplicable => 0,
                Level::Warn => 1,
                Level::Fail => 2,
            };
            (c.name, level)
        })
        .collect()
}

/// The exit status for a report's level.
pub fn exit_code(level: Level) -> ExitCode {
    match level {
        Level::Ok | Level::NotApplicable => ExitCode::Ok,
        Level::Warn => ExitCode::HealthWarn,
        Level::Fail => ExitCode::HealthFail,
    }
}

fn unknown_check(name: &str) -> OperatorError {
    let sinks: Vec<&str> = health::ABSENT_SINKS.iter().map(|(n, _)| *n).collect();
    OperatorError::new(
        ExitCode::Usage,
        format!(
            "there is no health check named `{name}`; the checks are: {} (and {}, which futurnal \
             answers as sinks it does not have)",
            health::NAMES.join(", "),
            sinks.join(", ")
        ),
        "nothing was run; pick one of the names listed above",
        topics::HEALTH_CHECKS,
    )
}

/// One line per check: `ok    daemon      running (pid 12), ...`; without `--verbose`, ok checks
/// show no detail.
fn render(report: &Report, verbose: bool) -> String {
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    let lw = report
        .checks
        .iter()
        .map(|c| c.status.as_str().len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!("health: {}\n", report.status.as_str());
    for c in &report.checks {
        let level = c.status.as_str();
        if c.status == Level::Ok && !verbose {
            out.push_str(&format!("  {level:<lw$} {}\n", c.name));
        } else {
            out.push_str(&format!(
                "  {level:<lw$} {:<width$}  {}\n",
                c.name, c.detail
            ));
            if c.status != Level::Ok {
                out.push_str(&format!(
                    "  {:<lw$} {:<width$}  runbook: futurnal help runbook {}\n",
                    "", "", c.runbook
                ));
            }
        }
    }
    out
}
