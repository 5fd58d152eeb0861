//! Source validation: the `sources:` list of the file checked and turned into `SourceConfig`s.
//!
//! Owns: source names, paths (`~/` expansion), schedules, glob patterns, per-source limits and
//! per-source retry overrides (checked with the same rules as the global keys).
//! Invariants: every problem of every source is reported with its own location; a source's
//! defaults are those of `SourceConfig::new`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::problem::Problem;
use super::schema::{Config, FileConfig, FileSource, Origin, Retry, SourceConfig, in_range};
use crate::home::display_path;

pub(super) fn validate_sources(
    list: Vec<FileSource>,
    file: &Path,
    problems: &mut Vec<Problem>,
    global_retry: &Retry,
) -> Vec<SourceConfig> {
    let at = |loc: &serde_saphyr::Location| {
        format!("{}:{}:{}", display_path(file), loc.line(), loc.column())
    };
    let in_file = |loc: &serde_saphyr::Location, key: String, message: String| {
        Problem::in_file(file, loc.line(), loc.column(), key, message)
    };
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, s) in list.into_iter().enumerate() {
        let key = |k: &str| format!("sources[{i}].{k}");
        // What an absent optional field is: one definition, `SourceConfig::new`.
        let defaults = SourceConfig::new("", s.source_type.value, "");
        let name = s.name.value.trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            problems.push(in_file(&s.name.defined, key("name"), format!(
                    "`{name}` is not a valid source name: use lowercase letters, digits, `-` and `_`"
                )));
        } else if let Some(first) = seen.get(&name) {
            problems.push(in_file(
                &s.name.defined,
                key("name"),
                format!("source `{name}` is declared twice (first at {first})"),
            ));
        } else {
            seen.insert(name.clone(), at(&s.name.defined));
        }
        let path = expand_tilde(&s.path.value);
        if !path.is_absolute() {
            problems.push(in_file(
                &s.path.defined,
                key("path"),
                format!(
                    "`{}` is relative; use an absolute path or one starting with ~/",
                    s.path.value
                ),
            ));
        }
        let schedule = s
            .schedule
            .as_ref()
            .map(|v| v.value.trim().to_string())
            .unwrap_or_else(|| defaults.schedule.clone());
        if let Err(message) = check_schedule_shape(&schedule) {
            let loc = s
                .schedule
                .as_ref()
                .map(|v| v.defined)
                .unwrap_or(s.name.defined);
            problems.push(in_file(&loc, key("schedule"), message));
        }
        for (field, patterns) in [("include", &s.include), ("exclude", &s.exclude)] {
            if let Some(p) = patterns
                && let Err(message) = crate::sources::check_patterns(&p.value)
            {
                problems.push(in_file(&p.defined, key(field), message));
            }
        }
        // A numeric limit: its default when absent, its range checked when present.
        let mut limit =
            |field: &str, value: &Option<Spanned<u64>>, default: u64, lo: u64, hi: u64| match value
            {
                None => default,
                Some(v) => {
                    if let Err(message) = in_range(v.value, lo, hi) {
                        problems.push(in_file(&v.defined, key(field), message));
                    }
                    v.value
                }
            };
        let max_item_mb = limit("max_item_mb", &s.max_item_mb, defaults.max_item_mb, 1, 4096);
        let concurrency = limit(
            "concurrency",
            &s.concurrency,
            defaults.concurrency.into(),
            1,
            64,
        ) as u32;
        let items_per_second = limit(
            "items_per_second",
            &s.items_per_second,
            defaults.items_per_second.into(),
            0,
            1_000_000,
        ) as u32;
        let retry = match s.retry {
            None => global_retry.clone(),
            Some(over) => {
                // Apply the overrides to a copy of the global policy and check the result with the
                // same rules as the global keys.
                let mut probe = Config {
                    retry: global_retry.clone(),
                    ..Default::default()
                };
                let mut located = BTreeMap::new();
                probe.apply_file(
                    FileConfig {
                        retry: Some(over),
                        ..Default::default()
                    },
                    &mut located,
                );
                for (k, message) in probe.check_scalars() {
                    if let Some(field) = k.strip_prefix("retry.") {
                        let key = key(&format!("retry.{field}"));
                        problems.push(match located.get(k) {
                            Some(Origin::File { line, column }) => {
                                Problem::in_file(file, *line, *column, key, message)
                            }
                            _ => in_file(&s.name.defined, key, message),
                        });
                    }
                }
                probe.retry
            }
        };
        out.push(SourceConfig {
            name,
            source_type: s.source_type.value,
            path,
            schedule,
            priority: s.priority.map_or(defaults.priority, |p| p.value),
            enabled: s.enabled.map_or(defaults.enabled, |e| e.value),
            include: s.include.map(|v| v.value).unwrap_or_default(),
            exclude: s.exclude.map(|v| v.value).unwrap_or_default(),
            max_item_mb,
            concurrency,
            items_per_second,
            retry,
        });
    }
    out
}

fn check_schedule_shape(s: &str) -> Result<(), String> {
    crate::schedule::Schedule::parse(s).map(|_| ())
}

pub fn expand_tilde(p: &str) -> PathBuf {
    if (p == "~" || p.starts_with("~/"))
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(p.trim_start_matches('~').trim_start_matches('/'));
    }
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_field_takes_the_default_of_source_config_new() {
        let text = "sources:\n  - name: n\n    type: mbox\n    path: /m\n";
        let file = crate::config::load::parse_file(text, Path::new("/x/c.yaml")).unwrap();
        let mut problems = Vec::new();
        let global = Retry {
            max_attempts: 7,
            ..Retry::default()
        };
        let list = file.sources.unwrap().value;
        let found = validate_sources(list, Path::new("/x/c.yaml"), &mut problems, &global);
        assert_eq!(problems, []);
        let expected = SourceConfig {
            retry: global,
            ..SourceConfig::new("n", crate::sources::SourceType::Mbox, "/m")
        };
        assert_eq!(found, [expected]);
    }

    #[test]
    fn schedule_shapes() {
        assert!(check_schedule_shape("manual").is_ok());
        assert!(check_schedule_shape("15m").is_ok());
        assert!(check_schedule_shape("*/30 * * * *").is_ok());
        assert!(check_schedule_shape("sometimes").is_err());
        assert!(check_schedule_shape("0s").is_err());
    }
}
