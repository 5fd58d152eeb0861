//! futurnal's runbook harness: executes the fenced bash blocks of markdown runbooks against a real
//! binary and checks their exit status and output.
//!
//! - `doc`: which blocks run and what they expect (shared with `futurnal help runbook`).
//! - `matcher`: expected-output patterns, diffs and bless.
//! - `runner`: sandboxes, sessions, timeouts, process cleanup.
//! - `report`: the executed / skipped / failed summary.

pub mod doc;
pub mod matcher;
pub mod report;
pub mod runner;

pub use runner::{DEFAULT_JOBS_RULE, Options, Summary, collect_markdown, default_jobs, run};
