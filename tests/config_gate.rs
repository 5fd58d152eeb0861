//! The configuration gate: every futurnal configuration the book writes validates with the real
//! loader (the binary's `config validate`, not a copy of the schema), unknown keys included; the
//! book exercises every key and every source field in an executed block, or an allowlist says why
//! not; and what `status --config` reports is the file the operator named.
//!
//! A book configuration is a heredoc into a file whose name ends in `orchestrator.yaml`, in any
//! block, skipped or hidden ones included. `cat >` starts the file over and `cat >>` appends to
//! what the same chapter last wrote there, so a fragment is validated with what precedes it.
//! Edits made with `sed` between blocks are not replayed: the gate checks what the book shows.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::{Sandbox, describe};
use runbook_tests::doc::Document;

/// Configurations the book writes wrong on purpose, to show an error: (chapter, a line of the
/// heredoc, a text the validation must print). Each must still fail, with that problem.
const INVALID_ON_PURPOSE: &[(&str, &str, &str)] = &[
    (
        "configuration.md",
        "max_wokers: 16",
        "workers.max_wokers: unknown key",
    ),
    (
        "configuration.md",
        "type: local_folder",
        "unknown value `local_folder`",
    ),
    (
        "configuration.md",
        "backoff_multiplier: .nan",
        "must be a finite number, found NaN",
    ),
];

/// Keys no executed block sets, each with the reason.
const KEY_ALLOWLIST: &[(&str, &str)] = &[];

/// Source fields no executed block sets, each with the reason.
const FIELD_ALLOWLIST: &[(&str, &str)] = &[];

/// One configuration file as a chapter leaves it after a heredoc.
struct BookConfig {
    chapter: String,
    line: usize,
    /// The heredoc's own lines (for matching `INVALID_ON_PURPOSE`).
    body: String,
    /// The whole file: the body, after what the chapter wrote before when appended.
    text: String,
    executed: bool,
}

fn chapters() -> Vec<Document> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    paths.sort();
    paths.iter().map(|p| Document::load(p).unwrap()).collect()
}

/// `cat > TARGET <<'END'` or `cat >> TARGET <<END`: (append, target, terminator).
fn heredoc_start(line: &str) -> Option<(bool, String, String)> {
    let rest = line.trim().strip_prefix("cat ")?;
    let (append, rest) = match rest.strip_prefix(">>") {
        Some(r) => (true, r),
        None => (false, rest.strip_prefix('>')?),
    };
    let (target, end) = rest.trim().split_once("<<")?;
    let end = end.trim().trim_matches(['\'', '"']).to_string();
    Some((append, target.trim().to_string(), end))
}

/// `printf 'A\nB\n' > TARGET` or `echo 'A' > TARGET` (one line; `>>` too): (append, target,
/// text). Only single-quoted text without other escapes than `\n`.
fn one_line_write(line: &str) -> Option<(bool, String, String)> {
    let line = line.trim();
    let (newline, rest) = match line.strip_prefix("printf '") {
        Some(rest) => (false, rest),
        None => (true, line.strip_prefix("echo '")?),
    };
    let (text, redirect) = rest.rsplit_once('\'')?;
    let redirect = redirect.trim();
    let (append, target) = match redirect.strip_prefix(">>") {
        Some(t) => (true, t),
        None => (false, redirect.strip_prefix('>')?),
    };
    let mut text = text.replace("\\n", "\n");
    if newline {
        text.push('\n');
    }
    Some((append, target.trim().to_string(), text))
}

/// A file the gate treats as a futurnal configuration: `orchestrator.yaml`, or any `.yaml` whose
/// top-level keys are all the schema's sections (or `sources`).
fn is_futurnal_config(target: &str, text: &str) -> bool {
    if target.ends_with("orchestrator.yaml") {
        return true;
    }
    if !target.ends_with(".yaml") {
        return false;
    }
    let sections: BTreeSet<&str> = futurnal::KEYS
        .iter()
        .filter_map(|k| k.path.split_once('.').map(|(s, _)| s))
        .chain(["sources"])
        .collect();
    let top: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with([' ', '#', '-']) && !l.trim().is_empty())
        .filter_map(|l| l.split_once(':').map(|(k, _)| k))
        .collect();
    !top.is_empty() && top.iter().all(|k| sections.contains(k))
}

/// One-line appends the gate does not validate: each follows `sed` edits it does not replay, or
/// is a fragment only valid in the file the chapter has built by then. The chapter's own
/// `config validate` or `reload` output checks them. (chapter, the appended text's first line).
const APPENDS_NOT_VALIDATED: &[(&str, &str)] = &[
    ("monitoring.md", "health:"),
    ("operator-guide.md", "    schedule: 30m"),
    ("troubleshooting-config.md", "    schedule: every hour"),
];

fn book_configs(docs: &[Document]) -> Vec<BookConfig> {
    let mut out = Vec::new();
    for doc in docs {
        let chapter = doc.path.file_name().unwrap().to_string_lossy().to_string();
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        for step in &doc.steps {
            let mut lines = step.script.lines().enumerate();
            while let Some((i, line)) = lines.next() {
                if let Some((append, target, text)) = one_line_write(line) {
                    if !is_futurnal_config(&target, &text) && !append {
                        continue;
                    }
                    if append {
                        let first = text.lines().next().unwrap_or_default();
                        let listed = APPENDS_NOT_VALIDATED
                            .iter()
                            .any(|(ch, l)| *ch == chapter && *l == first);
                        assert!(
                            listed || !target.ends_with("orchestrator.yaml"),
                            "{chapter}:{}: a one-line append to {target} the gate neither \
                             validates nor lists in APPENDS_NOT_VALIDATED",
                            step.line + i
                        );
                        continue;
                    }
                    files.insert(target, text.clone());
                    out.push(BookConfig {
                        chapter: chapter.clone(),
                        line: step.line + i,
                        body: text.clone(),
                        text,
                        executed: step.directives.skip.is_none(),
                    });
                    continue;
                }
                let Some((append, target, end)) = heredoc_start(line) else {
                    continue;
                };
                let mut body = String::new();
                for (_, l) in lines.by_ref() {
                    if l.trim() == end {
                        break;
                    }
                    body.push_str(l);
                    body.push('\n');
                }
                let text = files.entry(target.clone()).or_default();
                let whole = if append {
                    format!("{text}{body}")
                } else {
                    body.clone()
                };
                if !is_futurnal_config(&target, &whole) {
                    continue;
                }
                if !append {
                    text.clear();
                }
                text.push_str(&body);
                out.push(BookConfig {
                    chapter: chapter.clone(),
                    line: step.line + i,
                    body,
                    text: text.clone(),
                    executed: step.directives.skip.is_none(),
                });
            }
        }
    }
    out
}

/// `config validate` on `text` in a fresh sandbox: (success, what it printed).
fn validate(text: &str) -> (bool, String) {
    let sandbox = Sandbox::new();
    sandbox.write_config(text);
    let out = sandbox.run(&["config", "validate"]);
    (out.status.success(), describe(&out))
}

#[test]
fn every_book_configuration_validates_with_the_real_schema() {
    let configs = book_configs(&chapters());
    assert!(
        configs.len() >= 20,
        "found only {} configurations",
        configs.len()
    );
    let mut failures = Vec::new();
    let mut on_purpose_seen = BTreeSet::new();
    for c in &configs {
        let (ok, printed) = validate(&c.text);
        let on_purpose = INVALID_ON_PURPOSE
            .iter()
            .find(|(ch, line, _)| *ch == c.chapter && c.body.lines().any(|l| l.trim() == *line));
        match on_purpose {
            Some((_, line, problem)) => {
                on_purpose_seen.insert(*line);
                if ok || !printed.contains(problem) {
                    failures.push(format!(
                        "{}:{}: written wrong on purpose, but validation did not report `{problem}`:\n{printed}",
                        c.chapter, c.line
                    ));
                }
            }
            None if !ok => failures.push(format!("{}:{}: {printed}", c.chapter, c.line)),
            None => {}
        }
    }
    for (chapter, line, _) in INVALID_ON_PURPOSE {
        if !on_purpose_seen.contains(line) {
            failures.push(format!(
                "INVALID_ON_PURPOSE names `{line}` in {chapter}, which no configuration holds"
            ));
        }
    }
    for (chapter, first) in APPENDS_NOT_VALIDATED {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("book/src")
                .join(chapter),
        )
        .unwrap();
        if !text.contains(&format!("echo '{first}' >>"))
            && !text.contains(&format!("printf '{first}\\n"))
        {
            failures.push(format!(
                "APPENDS_NOT_VALIDATED names `{first}` in {chapter}, which appends no such line"
            ));
        }
    }
    println!("{} book configurations validated", configs.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Keys and source fields a YAML configuration sets.
fn keys_set(text: &str, keys: &mut BTreeSet<String>, fields: &mut BTreeSet<String>) {
    let Ok(value) = serde_saphyr::from_str::<serde_json::Value>(text) else {
        return;
    };
    let Some(map) = value.as_object() else { return };
    for (section, v) in map {
        match (section.as_str(), v) {
            ("sources", serde_json::Value::Array(list)) => {
                for s in list.iter().filter_map(|s| s.as_object()) {
                    fields.extend(s.keys().cloned());
                }
            }
            (_, serde_json::Value::Object(inner)) => {
                keys.extend(inner.keys().map(|k| format!("{section}.{k}")));
            }
            _ => {}
        }
    }
}

#[test]
fn every_key_and_source_field_is_exercised_or_allowlisted() {
    let docs = chapters();
    let mut keys = BTreeSet::new();
    let mut fields = BTreeSet::new();
    // The same, outside the configuration chapter (whose complete example sets everything once):
    // how many keys a chapter also uses for what they do.
    let mut keys_elsewhere = BTreeSet::new();
    let mut fields_elsewhere = BTreeSet::new();
    for c in book_configs(&docs).iter().filter(|c| c.executed) {
        if !INVALID_ON_PURPOSE
            .iter()
            .any(|(ch, line, _)| *ch == c.chapter && c.body.lines().any(|l| l.trim() == *line))
        {
            keys_set(&c.text, &mut keys, &mut fields);
            if c.chapter != "configuration.md" {
                keys_set(&c.text, &mut keys_elsewhere, &mut fields_elsewhere);
            }
        }
    }
    // Overrides in executed commands: `--set key=value` and `FUTURNAL_<KEY>=value`.
    for step in docs
        .iter()
        .flat_map(|d| &d.steps)
        .filter(|s| s.directives.skip.is_none())
    {
        for key in futurnal::KEYS {
            if step.script.contains(&format!("--set {}=", key.path))
                || step.script.contains(&format!("{}=", key.env))
            {
                keys.insert(key.path.to_string());
            }
        }
    }
    let all_keys: Vec<&str> = futurnal::KEYS.iter().map(|k| k.path).collect();
    let source = futurnal::SourceConfig::new("n", futurnal::SourceType::LocalFiles, "/n");
    let json = serde_json::to_value(&source).unwrap();
    let all_fields: Vec<String> = json.as_object().unwrap().keys().cloned().collect();

    let mut problems = Vec::new();
    let covered_keys = all_keys.iter().filter(|k| keys.contains(**k)).count();
    let covered_fields = all_fields.iter().filter(|f| fields.contains(*f)).count();
    println!(
        "config coverage: {covered_keys} of {} keys, {covered_fields} of {} source fields set by executed blocks",
        all_keys.len(),
        all_fields.len()
    );
    println!(
        "  in YAML outside configuration.md: {} of {} keys, {} of {} source fields",
        all_keys
            .iter()
            .filter(|k| keys_elsewhere.contains(**k))
            .count(),
        all_keys.len(),
        all_fields
            .iter()
            .filter(|f| fields_elsewhere.contains(*f))
            .count(),
        all_fields.len()
    );
    for k in &all_keys {
        let allowed = KEY_ALLOWLIST.iter().find(|(a, _)| a == k);
        match (keys.contains(*k), allowed) {
            (false, None) => problems.push(format!("key {k}: set by no executed block")),
            (true, Some(_)) => {
                problems.push(format!("key {k}: exercised, drop it from the allowlist"))
            }
            (false, Some((_, why))) => println!("  allowlisted key {k}: {why}"),
            (true, None) => {}
        }
    }
    for f in &all_fields {
        let allowed = FIELD_ALLOWLIST.iter().find(|(a, _)| a == f);
        match (fields.contains(f), allowed) {
            (false, None) => problems.push(format!("source field {f}: set by no executed block")),
            (true, Some(_)) => problems.push(format!(
                "source field {f}: exercised, drop it from the allowlist"
            )),
            (false, Some((_, why))) => println!("  allowlisted source field {f}: {why}"),
            (true, None) => {}
        }
    }
    for (k, _) in KEY_ALLOWLIST {
        if !all_keys.contains(k) {
            problems.push(format!("allowlisted key {k} is not in the schema"));
        }
    }
    for (f, _) in FIELD_ALLOWLIST {
        if !all_fields.iter().any(|a| a == f) {
            problems.push(format!(
                "allowlisted source field {f} is not a field of a source"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `status --config FILE` with a daemon running from another file reports FILE and what is wrong
/// with it, not the daemon's file as if FILE had been read: the operator asked about FILE.
#[test]
fn status_with_another_config_reports_that_file() {
    let sandbox = Sandbox::new();
    sandbox.start();
    let missing = sandbox.home().join("missing.yaml");
    let status = sandbox.json(&[
        "--config",
        missing.to_str().unwrap(),
        "orchestrator",
        "status",
        "--format",
        "json",
    ]);
    // JSON carries absolute paths (the table shortens them to `~`).
    assert_eq!(status["config_path"], missing.to_str().unwrap(), "{status}");
    assert_eq!(status["config_present"], false, "{status}");
    assert!(
        status["config_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot read the configuration file")),
        "{status}"
    );
    // Without --config, status still shows the file the daemon runs.
    let status = sandbox.status_json();
    assert_eq!(
        status["config_path"],
        sandbox.config_file().to_str().unwrap()
    );
    assert!(status["config_error"].is_null(), "{status}");
    sandbox.ok(&["orchestrator", "stop"]);
}
