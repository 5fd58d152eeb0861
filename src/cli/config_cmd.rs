//! `futurnal config validate | show | init`.
//!
//! Invariant: `--format json` prints one serialized value, with a state named `state`, paths
//! absolute and the text form's exit status; the book lists the fields of `config validate` in a
//! `| field | type | meaning |` table that `tests/json_shapes.rs` checks against real output.

use clap::{Subcommand, ValueEnum};
use serde_json::json;

use crate::config::{self, Loaded, Overrides};
use std::path::{Path, PathBuf};

use crate::error::{ExitCode, OperatorError, Result};
use crate::home::{Home, create_private_dir, display_path, write_private_atomic};
use crate::runbook::topics;
use crate::security::audit;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration file and overrides; report every problem with file:line:column
    Validate {
        /// `json`: valid or not, and every problem with its file, line, column, key and message
        #[arg(long, value_enum, default_value_t = super::TableOrJson::Table)]
        format: super::TableOrJson,
    },
    /// Print the effective configuration and where each value came from
    Show {
        #[arg(long, value_enum, default_value_t = YamlOrJson::Yaml)]
        format: YamlOrJson,
    },
    /// Write a commented configuration file holding every key at its default
    Init {
        /// Replace an existing file (the old one is kept as orchestrator.yaml.bak)
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub enum YamlOrJson {
    Yaml,
    Json,
}

fn load(home: &Home, overrides: &Overrides) -> Result<Loaded> {
    config::load(home, overrides).map_err(|p| crate::error::config_invalid(&p))
}

/// `config validate --format json`, documented in configuration.md ("Validating"; its field
/// tables are checked by `tests/json_shapes.rs`). Paths are absolute.
#[derive(Debug, serde::Serialize)]
pub struct Validation {
    pub valid: bool,
    pub file: PathBuf,
    pub present: bool,
    /// How many sources the file declares; null when it is invalid.
    pub sources: Option<usize>,
    pub warnings: Vec<String>,
    pub problems: Vec<ProblemJson>,
}

#[derive(Debug, serde::Serialize)]
pub struct ProblemJson {
    /// The configuration file, when the problem is in it; null for `env` and `--set` problems.
    pub file: Option<PathBuf>,
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// Where, as the text form prints it (`FILE:LINE:COLUMN`, `env VAR`, `flag --set`), with
    /// the file's path absolute.
    pub at: String,
    pub key: String,
    pub message: String,
}

/// `config show --format json` with the file's path absolute, in `config_file.path` and in every
/// origin in the file (which name it as the text does, with `~`).
fn absolute_paths(mut json: serde_json::Value, loaded: &Loaded) -> serde_json::Value {
    let given = &loaded.file.path;
    let file = std::path::absolute(given).unwrap_or_else(|_| given.clone());
    json["config_file"]["path"] = json!(file);
    let shown = format!("{}:", display_path(given));
    if let Some(origins) = json["origins"].as_object_mut() {
        for origin in origins.values_mut() {
            let at = origin.as_str().and_then(|o| o.strip_prefix(shown.as_str()));
            if let Some(at) = at {
                *origin = json!(format!("{}:{at}", file.display()));
            }
        }
    }
    json
}

/// `given` is the path as the loader was given it (its problems name it so), `file` absolute.
fn problem_json(p: &config::Problem, given: &Path, file: &Path) -> ProblemJson {
    // Every located problem is in the configuration file (`Problem::in_file` is given no other),
    // and a file problem without a position is `at` the file's displayed path.
    let in_file = p.position().is_some() || p.at == display_path(given);
    let at = match p.position() {
        Some((line, column)) => format!("{}:{line}:{column}", file.display()),
        None if in_file => file.display().to_string(),
        None => p.at.clone(),
    };
    ProblemJson {
        file: in_file.then(|| file.to_path_buf()),
        line: p.position().map(|(l, _)| l),
        column: p.position().map(|(_, c)| c),
        at,
        key: p.key.clone(),
        message: p.message.clone(),
    }
}

fn validate_json(home: &Home, overrides: &Overrides) -> Result<()> {
    let (path, _) = config::config_file(home, overrides);
    let file = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
    match config::load(home, overrides) {
        Ok(loaded) => {
            super::print_json(&Validation {
                valid: true,
                file,
                present: loaded.file.present,
                sources: Some(loaded.config.sources.len()),
                warnings: loaded.warnings.clone(),
                problems: Vec::new(),
            });
            Ok(())
        }
        Err(problems) => {
            super::print_json(&Validation {
                valid: false,
                present: file.exists(),
                sources: None,
                warnings: Vec::new(),
                problems: problems
                    .iter()
                    .map(|p| problem_json(p, &path, &file))
                    .collect(),
                file,
            });
            // The same exit status and stderr as the text form.
            Err(crate::error::config_invalid(&problems))
        }
    }
}

pub fn run(home: &Home, overrides: &Overrides, cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Validate {
            format: super::TableOrJson::Json,
        } => {
            crate::daemon::reload::warn_if_stale(home);
            validate_json(home, overrides)
        }
        ConfigCommand::Validate { .. } => {
            let loaded = load(home, overrides)?;
            crate::daemon::reload::warn_if_stale(home);
            for w in &loaded.warnings {
                println!("warning: {w}");
            }
            let path = display_path(&loaded.file.path);
            if loaded.file.present {
                let n = loaded.config.sources.len();
                println!(
                    "{path}: valid ({n} source{})",
                    if n == 1 { "" } else { "s" }
                );
            } else {
                println!("{path}: not present; the built-in defaults are valid");
            }
            Ok(())
        }
        ConfigCommand::Show { format } => {
            let loaded = load(home, overrides)?;
            crate::daemon::reload::warn_if_stale(home);
            match format {
                YamlOrJson::Json => super::print_json(&absolute_paths(loaded.to_json(), &loaded)),
                YamlOrJson::Yaml => {
                    println!("# effective configuration; each value's origin is on its right");
                    println!(
                        "# config file: {}{}",
                        display_path(&loaded.file.path),
                        if loaded.file.present { "" } else { " (absent)" }
                    );
                    print!("{}", loaded.to_annotated_yaml());
                }
            }
            Ok(())
        }
        ConfigCommand::Init { force } => {
            let path = overrides
                .config_path
                .clone()
                .unwrap_or_else(|| home.default_config());
            if path.exists() && !force {
                return Err(OperatorError::new(
                    ExitCode::Failure,
                    format!("{} already exists", display_path(&path)),
                    "nothing was written; edit the file, or pass --force to replace it (the old \
                     file is kept as .bak)",
                    topics::CONFIG_CREATE,
                ));
            }
            let fail = |e: std::io::Error| {
                OperatorError::failure(
                    format!("cannot write {}: {e}", display_path(&path)),
                    "nothing was changed",
                    topics::CONFIG_CREATE,
                )
            };
            if let Some(parent) = path.parent() {
                create_private_dir(parent).map_err(fail)?;
            }
            if path.exists() {
                let mut bak = path.clone().into_os_string();
                bak.push(".bak");
                std::fs::copy(&path, &bak).map_err(fail)?;
            }
            write_private_atomic(&path, config::template().as_bytes()).map_err(fail)?;
            audit(home, true, "config.init", json!({ "replaced": force }));
            println!("wrote {}", display_path(&path));
            Ok(())
        }
    }
}
