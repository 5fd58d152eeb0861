//! futurnal: a local-first ingestion orchestrator and its executable operator book.
//!
//! See ARCHITECTURE.md for the bird's-eye view and the code map. Every module is private; the
//! library's public surface is what the binary (`main`), the tests, the benches and the fuzz
//! targets use, re-exported below, so the compiler reports anything else that goes unused.
//! Layers, bottom up (no module imports one above it; `tests/layout.rs` checks there is no
//! import cycle):
//! - leaves: `clock`, `display`, `schedule`, `runbook` (the embedded book and its topics),
//!   `home` (the home's paths and private files), `redact`;
//! - ingestion: `failure`, `sources`, `parse_pool`, `db`, `store`, `ingest`;
//! - configuration: `config`;
//! - the queue: `jobs`, `queue`, `scheduler`, `telemetry`;
//! - the daemon: `logging`, `security` (the audit log), `workers`, `daemon`, `health` (the checks),
//!   `backup` (backups and restores);
//! - talking to operators: `error` (operator errors, worded for the command), `cli`.

mod backup;
#[doc(hidden)]
pub mod bench_api;
mod cli;
mod clock;
mod config;
mod daemon;
mod db;
mod display;
mod error;
mod failure;
#[doc(hidden)]
pub mod fuzzing;
mod health;
mod home;
mod ingest;
mod jobs;
mod logging;
mod metrics;
mod parse_pool;
mod queue;
mod redact;
mod runbook;
mod schedule;
mod scheduler;
mod security;
pub mod sources;
mod store;
mod telemetry;
mod workers;

pub use cli::main;
#[doc(hidden)]
pub use cli::reference::{command as cli_command, markdown as cli_reference};
pub use config::{KEYS, SourceConfig, SourceType};
pub use daemon::reload::{Running, running};
pub use error::ExitCode;
pub use failure::ErrorClass;
pub use home::{Home, free_bytes};
pub use ingest::{INPUT_OUTCOMES, InputOutcome, Report, Run, input_outcome};
pub use jobs::{JobState, history_violations};
#[doc(hidden)]
pub use runbook::topics::report as topics_report;
pub use store::Store;
