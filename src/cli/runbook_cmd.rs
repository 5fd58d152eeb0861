//! `futurnal runbook check`: the book's harness, pointed at any markdown an operator keeps.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use crate::error::{CommandError, ExitCode, OperatorError};
use crate::runbook::topics;

#[derive(Debug, Subcommand)]
pub enum RunbookCommand {
    /// Run the bash blocks of markdown runbooks and check their exit status and output
    Check {
        /// Markdown files or directories (searched for *.md)
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Rewrite expected-output blocks from real output [env: RUNBOOK_BLESS=1]
        #[arg(long)]
        bless: bool,
        #[arg(long, value_name = "N", help = format!("Chapters run at once [default: {}]", runbook_tests::DEFAULT_JOBS_RULE))]
        jobs: Option<usize>,
        /// Per-block timeout in seconds, unless a block sets timeout=
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        timeout: u64,
        /// Directory exported to blocks as RUNBOOK_FIXTURES
        #[arg(long, value_name = "DIR")]
        fixtures: Option<PathBuf>,
        /// Keep each chapter's sandbox directory and print where it is
        #[arg(long)]
        keep: bool,
    },
}

pub fn run(cmd: RunbookCommand) -> Result<(), CommandError> {
    let RunbookCommand::Check {
        paths,
        bless,
        jobs,
        timeout,
        fixtures,
        keep,
    } = cmd;
    let files = runbook_tests::collect_markdown(&paths).map_err(|e| {
        OperatorError::new(
            ExitCode::Usage,
            e.to_string(),
            "nothing was run; pass markdown files or directories that exist",
            topics::RUNBOOK_HARNESS,
        )
    })?;
    // The runbooks exercise this very futurnal, whatever else is on PATH.
    let bin_dirs = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .into_iter()
        .collect();
    let mut opts = runbook_tests::Options {
        bin_dirs,
        fixtures,
        default_timeout: Duration::from_secs(timeout),
        bless: bless || std::env::var("RUNBOOK_BLESS").is_ok_and(|v| v == "1"),
        keep_temp: keep,
        bless_hint: "futurnal runbook check --bless FILE".into(),
        ..Default::default()
    };
    if let Some(j) = jobs {
        opts.jobs = j.max(1);
    }
    let summary = runbook_tests::run(&files, &opts);
    print!("{}", runbook_tests::report::render(&summary, &opts));
    if summary.passed() {
        Ok(())
    } else {
        Err(CommandError::Reported(ExitCode::Failure.code()))
    }
}
