//! Rendering: `config show` (annotated YAML with each value's origin, or JSON) and the commented
//! file `config init` writes.
//!
//! Owns: how values are spelled as YAML scalars for operators.
//! Invariants: the template parses back to exactly the defaults (tested) and shows the value
//! this machine uses; every key of `KEYS` appears in both forms, in documentation order, and
//! every field of a source (`SOURCE_FIELDS`, its effective `retry` included) in `config show`.

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

/// Every field of a source, in the order `config show` prints them: all of `SourceConfig`
/// (tested), the effective `retry` included.
pub(super) const SOURCE_FIELDS: &[&str] = &[
    "name",
    "type",
    "path",
    "schedule",
    "priority",
    "enabled",
    "include",
    "exclude",
    "max_item_mb",
    "concurrency",
    "items_per_second",
    "retry",
];

/// A value on one line: scalars as YAML scalars, lists and maps in flow style.
fn yaml_flow(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Array(items) => format!(
            "[{}]",
            items.iter().map(yaml_flow).collect::<Vec<_>>().join(", ")
        ),
        // Only a source's `retry` is a map: its keys in the `retry` section's order.
        serde_json::Value::Object(map) => format!(
            "{{{}}}",
            KEYS.iter()
                .filter_map(|k| k.path.strip_prefix("retry."))
                .filter_map(|k| map.get(k).map(|v| format!("{k}: {}", yaml_flow(v))))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => yaml_scalar(other),
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
                for field in SOURCE_FIELDS {
                    let text = yaml_flow(&json[*field]);
                    let lead = if first { "  - " } else { "    " };
                    first = false;
                    rows.push((format!("{lead}{field}: {text}"), String::new()));
                }
            }
        }
        // Only lines with an origin are aligned: a long source line must not push them all right.
        let width = rows
            .iter()
            .filter(|(_, origin)| !origin.is_empty())
            .map(|(l, _)| l.len())
            .max()
            .unwrap_or(0);
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
        // The value this machine really uses; a machine-dependent default also states its rule,
        // so the file still explains itself when copied to another machine.
        let value = defaults.value_yaml(key.path).unwrap_or_default();
        let default = key.default_doc();
        let default = if default == value {
            default
        } else {
            format!("{default} ({value} on this machine)")
        };
        let _ = writeln!(out, "  # {} Default: {default}.", key.doc);
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
    fn template_shows_the_value_this_machine_uses() {
        let text = template();
        let expected = format!(
            "  # max_workers: {}\n",
            Config::default().workers.max_workers
        );
        assert!(text.contains(&expected), "{text}");
    }

    #[test]
    fn show_prints_every_field_of_a_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.yaml");
        std::fs::write(
            &path,
            "sources:\n  - name: notes\n    type: local_files\n    path: /n\n    retry: {max_attempts: 5}\n",
        )
        .unwrap();
        let layering = crate::config::Layering {
            path: std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec(),
            explicit: true,
            ..Default::default()
        };
        let loaded = crate::config::load_recorded(&layering).unwrap();
        let shown = loaded.to_annotated_yaml();
        for line in [
            "    max_item_mb: 64\n",
            "    concurrency: 1\n",
            "    items_per_second: 0\n",
            "    retry: {max_attempts: 5, base_delay_seconds: 30, backoff_multiplier: 2.0, max_delay_seconds: 3600, jitter: 0.2}\n",
        ] {
            assert!(shown.contains(line), "{line:?} missing from\n{shown}");
        }
        // Every field `SourceConfig` has is listed.
        let json = serde_json::to_value(&loaded.config.sources[0]).unwrap();
        let mut fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut listed = SOURCE_FIELDS.to_vec();
        fields.sort();
        listed.sort();
        assert_eq!(fields, listed);
    }

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
