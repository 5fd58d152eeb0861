//! `futurnal config validate | show | init`.

use clap::{Subcommand, ValueEnum};
use serde_json::json;

use crate::config::{self, Loaded, Overrides};
use crate::error::{ExitCode, OperatorError, Result};
use crate::home::{Home, create_private_dir, display_path, write_private_atomic};
use crate::runbook::topics;
use crate::security::audit;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration file and overrides; report every problem with file:line:column
    Validate,
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

pub fn run(home: &Home, overrides: &Overrides, cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Validate => {
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
                YamlOrJson::Json => super::print_json(&loaded.to_json()),
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
                    topics::CONFIGURATION,
                ));
            }
            let fail = |e: std::io::Error| {
                OperatorError::failure(
                    format!("cannot write {}: {e}", display_path(&path)),
                    "nothing was changed",
                    topics::CONFIGURATION,
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
