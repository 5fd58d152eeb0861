//! YAML errors: turning what serde-saphyr reports into a located, operator-worded `Problem`.
//!
//! Owns: the mapping from the parser's error variants (and the position and key path they occur
//! at) to messages in YAML terms.
//! Invariants: classification is by error variant, structured fields and position, never by the
//! parser's message text; a problem's location is the parser's, its key the path serde was at.

use std::path::Path;

use super::problem::{Problem, did_you_mean};
use crate::home::display_path;

pub(super) fn problem_from_yaml(err: serde_saphyr::Error, key_path: &str, file: &Path) -> Problem {
    let at = match err.location() {
        Some(loc) if loc.line() > 0 => {
            format!("{}:{}:{}", display_path(file), loc.line(), loc.column())
        }
        _ => display_path(file),
    };
    // Spanned<T> adds a `.value` segment and unknown positions show as `?`; operators never
    // typed either.
    let cleaned = key_path
        .replace(".value", "")
        .replace(".?", "")
        .replace('?', "");
    let key_path = if cleaned == "." { "" } else { cleaned.as_str() };
    match &err {
        serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } => {
            // serde_path_to_error's path already ends at the unknown key.
            let key = if key_path.is_empty() || key_path.ends_with(field.as_str()) {
                key_path.to_string()
            } else {
                format!("{key_path}.{field}")
            };
            let key = if key.is_empty() { field.clone() } else { key };
            Problem::new(
                at,
                key,
                format!(
                    "unknown key{}",
                    did_you_mean(field, expected.iter().copied())
                ),
            )
        }
        serde_saphyr::Error::SerdeUnknownVariant {
            variant, expected, ..
        } => Problem::new(
            at,
            key_path.to_string(),
            format!(
                "unknown value `{variant}`; expected one of {}",
                expected.join(", ")
            ),
        ),
        _ => Problem::new(
            at,
            key_path.to_string(),
            plain_message(&first_line(&err.to_string())),
        ),
    }
}

/// serde-saphyr speaks in Rust types; operators read YAML.
fn plain_message(msg: &str) -> String {
    let replaced = match msg {
        m if m.starts_with("invalid u") || m.starts_with("invalid i") => "expected a whole number",
        "invalid floating point" => "expected a number",
        "invalid boolean" => "expected true or false",
        "expected mapping start" => "expected a section of `key: value` lines",
        "expected sequence start" => "expected a list (lines starting with `- `)",
        "expected string scalar" => "expected a text value",
        m if m.starts_with("duplicate mapping key") => {
            return format!(
                "{}; each key may appear once",
                m.split(", set DuplicateKeyPolicy").next().unwrap_or(m)
            );
        }
        m if m.starts_with("cannot deserialize null") => "a value is missing here",
        m if m.starts_with("missing field") => {
            return m.replacen("missing field", "missing key", 1);
        }
        m => m,
    };
    replaced.to_string()
}

fn first_line(s: &str) -> String {
    // serde-saphyr appends " at line N column M"; the location is already in `at`.
    let line = s.lines().next().unwrap_or(s);
    match line.find(" at line ") {
        Some(i) => line[..i].to_string(),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::load::parse_file;

    #[test]
    fn unknown_key_reports_location_and_suggestion() {
        let text = "workers:\n  max_worker: 4\n";
        let p = parse_file(text, Path::new("/x/orchestrator.yaml")).unwrap_err();
        assert_eq!(p.at, "/x/orchestrator.yaml:2:3");
        assert_eq!(p.key, "workers.max_worker");
        assert_eq!(p.message, "unknown key; did you mean `max_workers`?");
    }

    #[test]
    fn wrong_type_reports_key_path() {
        let text = "retry:\n  max_attempts: many\n";
        let p = parse_file(text, Path::new("/x/c.yaml")).unwrap_err();
        assert_eq!(p.key, "retry.max_attempts");
        assert!(p.at.starts_with("/x/c.yaml:2:"), "{}", p.at);
    }
}
