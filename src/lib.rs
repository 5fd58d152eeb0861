//! futurnal: a local-first ingestion orchestrator and its executable operator book.
//!
//! See ARCHITECTURE.md for the bird's-eye view. One module per concern:
//! - `home`: the futurnal home directory and its private files
//! - `config`: orchestrator.yaml, layering, validation, provenance
//! - `queue`: queue.db (SQLite), schema migrations
//! - `daemon`: start / run / stop, the instance lock, crash recovery, status
//! - `logging`: the daemon log; `security`: the audit log
//! - `runbook`: the embedded book, topic lookup, terminal rendering
//! - `cli`: the command line; `error`: operator-facing errors and exit codes
//! - `display`: one format for times, durations and sizes

pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod db;
pub mod display;
pub mod error;
pub mod failure;
#[doc(hidden)]
pub mod fuzzing;
pub mod home;
pub mod ingest;
pub mod jobs;
pub mod logging;
mod parse_pool;
pub mod queue;
pub mod redact;
pub mod runbook;
pub mod schedule;
pub mod scheduler;
pub mod security;
pub mod sources;
pub mod store;
pub mod workers;
