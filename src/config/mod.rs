//! Configuration: schema, defaults, layering, validation and provenance.
//!
//! Owns: `orchestrator.yaml` and the documented `FUTURNAL_*` overrides.
//! Layering, lowest to highest: built-in defaults < the file (`--config PATH` or
//! `~/.futurnal/config/orchestrator.yaml`) < `FUTURNAL_<SECTION>_<KEY>` environment variables <
//! `--set section.key=value` flags. A load records its `Layering` so that the daemon's reload (and
//! a command comparing the file with what the daemon runs) can repeat it exactly.
//! Invariants: every scalar key is declared once in `schema!` (type, default, range, env var, doc);
//! unknown keys are errors, never ignored; a missing file means defaults; every effective value
//! remembers where it came from; no number is NaN or infinite, whatever layer set it; YAML
//! problems are classified by the parser's error variants and positions, never its message text.
//!
//! Layout, by concern: `schema` (the key table and types), `load` (reading and layering,
//! provenance, the recorded layering, the fingerprint), `yaml_errors` (parser errors in operator
//! terms), `sources` (the `sources:` list), `render` (`config show`, `config init`), `problem`
//! (the error types and the operator error). This file is the public surface: other modules use
//! `crate::config::X` only.
//! Dependencies go one way: `config` uses `sources` (`SourceType`, `SourceSpec`, glob checks) and
//! `failure` (`Backoff`, path fingerprints); neither uses `config`.

mod load;
mod problem;
mod render;
mod schema;
mod sources;
mod yaml_errors;

/// The kinds of source live with the code that reads them; re-exported for `config::SourceType`.
pub use crate::sources::SourceType;
pub use load::{Layering, Loaded, Overrides, config_file, fingerprint, load, load_recorded};
pub use problem::{Invalid, Problem, closest};
pub use render::template;
pub use schema::{Config, KEYS, Priority, Queue, Retry, SourceConfig};
