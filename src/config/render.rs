//! Rendering: `config show` (annotated YAML with each value's origin, or JSON) and the commented
//! file `config init` writes.
//!
//! Owns: how values are spelled as YAML scalars for operators.
//! Invariants: the template parses back to exactly the defaults (tested); every key of `KEYS`
//! appears in both forms, in documentation order.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::load::Loaded;
use super::schema::{Config, KEYS};

pub(super) fn yaml_scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        serde_json::Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            if f.fract() == 0.0 {
                format!("{f:.1}")
            } else {
                f.to_string()
            }
        }
        other => other.to_string(),
    }
}

impl Loaded {
    /// `config show` as annotated YAML.
    pub fn to_annotated_yaml(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut section = "";
        for key in KEYS {
            let (sec, name) = key.path.split_once('.').unwrap_or(("", key.path));
            if sec != section {
                rows.push((format!("{sec}:"), String::new()));
                section = sec;
            }
            let value = self.config.value_yaml(key.path).unwrap_or_default();
            rows.push((
                format!("  {name}: {value}"),
                self.origin(key.path).describe(&self.file.path),
            ));
        }
        if self.config.sources.is_empty() {
            rows.push((
                "sources: []".into(),
                self.sources_origin().describe(&self.file.path),
            ));
        } else {
            rows.push((
                "sources:".into(),
                self.sources_origin().describe(&self.file.path),
            ));
            for s in &self.config.sources {
                let json = serde_json::to_value(s).unwrap_or_default();
                let mut first = true;
                for field in [
                    "name", "type", "path", "schedule", "priority", "enabled", "include", "exclude",
                ] {
                    let v = &json[field];
                    let text = match v {
                        serde_json::Value::Array(items) => format!(
                            "[{}]",
                            items.iter().map(yaml_scalar).collect::<Vec<_>>().join(", ")
                        ),
                        other => yaml_scalar(other),
                    };
                    let lead = if first { "  - " } else { "    " };
                    first = false;
                    rows.push((format!("{lead}{field}: {text}"), String::new()));
                }
            }
        }
        let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (line, origin) in rows {
            if origin.is_empty() {
                let _ = writeln!(out, "{line}");
            } else {
                let _ = writeln!(out, "{line:<width$}  # {origin}");
            }
        }
        out
    }

    /// `config show --format json`.
    pub fn to_json(&self) -> serde_json::Value {
        let origins: BTreeMap<&str, String> = KEYS
            .iter()
            .map(|k| (k.path, self.origin(k.path).describe(&self.file.path)))
            .collect();
        serde_json::json!({
            "config_file": {
                "path": self.file.path,
                "present": self.file.present,
            },
            "config": self.config,
            "origins": origins,
            "warnings": self.warnings,
        })
    }
}

/// A commented configuration file holding every key at its default, for `config init`.
pub fn template() -> String {
    let mut out = String::from(
        "# futurnal orchestrator configuration.\n\
         # Every key is optional: a commented-out key keeps its built-in default.\n\
         # Check your edits with `futurnal config validate`; see `futurnal help runbook configuration`.\n",
    );
    let defaults = Config::default();
    let mut section = "";
    for key in KEYS {
        let (sec, name) = key.path.split_once('.').unwrap_or(("", key.path));
        if sec != section {
            let _ = write!(out, "\n{sec}:\n");
            section = sec;
        }
        let value = if key.path == "workers.max_workers" {
            "8".to_string()
        } else {
            defaults.value_yaml(key.path).unwrap_or_default()
        };
        let _ = writeln!(out, "  # {} Default: {}.", key.doc, key.default_doc);
        let _ = writeln!(out, "  # {name}: {value}");
    }
    out.push_str(
        "\n# Sources to ingest. Example:\n\
         # - name: notes\n\
         #   type: local_files        # local_files | obsidian | maildir | mbox\n\
         #   path: ~/Notes\n\
         #   schedule: 15m            # manual | an interval such as 15m | a cron expression\n\
         sources: []\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load::parse_file;
    use crate::config::schema::Origins;

    #[test]
    fn template_parses_to_defaults() {
        let file = parse_file(&template(), Path::new("t.yaml")).unwrap();
        let mut cfg = Config::default();
        let mut origins = Origins::new();
        cfg.apply_file(file, &mut origins);
        assert!(origins.is_empty());
        assert_eq!(cfg, Config::default());
    }
}
