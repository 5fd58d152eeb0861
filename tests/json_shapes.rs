//! Scripting conventions: every `--format json` the book documents with a field table has exactly
//! the fields the table lists, each of the type it says, checked against real command output;
//! the vocabulary is `state` everywhere, and JSON carries absolute paths.
//!
//! A table is `| field | type | meaning |`; nested fields are `parent.child`, fields of an array's
//! objects `parent[].child`; a type is `string`, `integer`, `boolean`, `array` or `object`,
//! optionally `or null`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn chapter(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("book/src")
            .join(name),
    )
    .unwrap()
}

/// The `| field | type | meaning |` table of `chapter` whose first field is `first`: each field
/// with the JSON types it allows.
fn documented(chapter_name: &str, first: &str) -> BTreeMap<String, BTreeSet<String>> {
    let text = chapter(chapter_name);
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "| field | type | meaning |" {
            continue;
        }
        let rows: Vec<&str> = lines[i + 2..]
            .iter()
            .take_while(|l| l.starts_with("| `"))
            .copied()
            .collect();
        let field = |row: &str| row.split('`').nth(1).unwrap().to_string();
        if rows.first().map(|r| field(r)) == Some(first.to_string()) {
            found.push(
                rows.iter()
                    .map(|row| {
                        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                        let types = cells[2]
                            .split(" or ")
                            .map(|t| t.trim().to_string())
                            .collect();
                        (field(row), types)
                    })
                    .collect(),
            );
        }
    }
    assert_eq!(
        found.len(),
        1,
        "{chapter_name}: expected one field table starting with `{first}`"
    );
    found.pop().unwrap()
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every field of `value` (objects descended into as `a.b`, arrays of objects as `a[].b`, except
/// under `opaque`) with the types seen, added to `seen`.
fn observe(
    value: &Value,
    prefix: &str,
    opaque: &[&str],
    seen: &mut BTreeMap<String, BTreeSet<String>>,
) {
    let Value::Object(map) = value else {
        panic!("`{prefix}` is not an object: {value}");
    };
    for (k, v) in map {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        seen.entry(name.clone())
            .or_default()
            .insert(type_of(v).to_string());
        if opaque.contains(&name.as_str()) {
            continue;
        }
        match v {
            Value::Object(_) => observe(v, &name, opaque, seen),
            Value::Array(items) => {
                for item in items.iter().filter(|i| i.is_object()) {
                    observe(item, &format!("{name}[]"), opaque, seen);
                }
            }
            _ => {}
        }
    }
}

/// The fields seen in `outputs` are exactly the table's, each only of the types it allows.
fn check_shape(chapter_name: &str, first: &str, outputs: &[&Value], opaque: &[&str]) {
    let table = documented(chapter_name, first);
    let mut seen = BTreeMap::new();
    for out in outputs {
        observe(out, "", opaque, &mut seen);
    }
    let doc_fields: BTreeSet<&String> = table.keys().collect();
    let seen_fields: BTreeSet<&String> = seen.keys().collect();
    assert_eq!(
        doc_fields, seen_fields,
        "{chapter_name}: the table starting with `{first}` against the real JSON: {outputs:#?}"
    );
    for (field, types) in &seen {
        for t in types {
            assert!(
                table[field].contains(t),
                "{chapter_name}: `{field}` is {t}, the table says {:?}",
                table[field]
            );
        }
    }
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(out)))
}

/// A started orchestrator with `notes` (a good note and a JSON file that does not parse, which
/// ends in the quarantine) and `gone` (a folder that does not exist).
fn home_with_sources(s: &Sandbox) {
    let notes = s.home().join("Notes");
    write_file(&notes.join("good.md"), "# Good\n\nfine\n");
    write_file(&notes.join("broken.json"), "{\"broken\": ");
    s.write_config(&format!(
        "sources:\n  - name: notes\n    type: local_files\n    path: {}\n  - name: gone\n    type: local_files\n    path: {}\n",
        notes.display(),
        s.home().join("Gone").display()
    ));
    s.start();
}

fn quarantined(s: &Sandbox) -> Vec<Value> {
    s.json(&["orchestrator", "quarantine", "list", "--format", "json"])
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn trigger_and_sources_list_json_are_as_documented_with_state_and_absolute_paths() {
    let s = Sandbox::new();
    home_with_sources(&s);

    let queued = s.json(&[
        "orchestrator",
        "sources",
        "trigger",
        "notes",
        "--format",
        "json",
    ]);
    assert_eq!(queued["source"], "notes");
    assert!(queued["outcome"].is_null(), "{queued}");
    let id = queued["job_id"].as_i64().expect("a job id");
    s.ok(&["orchestrator", "jobs", "wait", &id.to_string()]);

    let waited = s.json(&[
        "orchestrator",
        "sources",
        "trigger",
        "notes",
        "--wait",
        "--format",
        "json",
    ]);
    assert_eq!(waited["joined"], false, "{waited}");
    assert_eq!(waited["orchestrator_running"], true, "{waited}");
    assert_eq!(waited["outcome"]["state"], "succeeded", "{waited}");
    assert_ne!(waited["job_id"], queued["job_id"]);

    // A run that fails: the exit status is the one without --format json, the JSON says why.
    let failed = s.run(&[
        "orchestrator",
        "sources",
        "trigger",
        "gone",
        "--wait",
        "--format",
        "json",
    ]);
    assert_eq!(failed.status.code(), Some(1), "{}", describe(&failed));
    let failed = json_of(&failed);
    // `not_found` is transient: the job waits for its retry (`failed`), unless attempts ran out.
    assert_ne!(failed["outcome"]["state"], "succeeded", "{failed}");
    assert!(failed["outcome"]["error_class"].is_string(), "{failed}");

    s.ok(&[
        "orchestrator",
        "sources",
        "pause",
        "notes",
        "--reason",
        "testing",
    ]);
    let paused = s.json(&[
        "orchestrator",
        "sources",
        "trigger",
        "notes",
        "--format",
        "json",
    ]);
    assert_eq!(paused["paused"], true, "{paused}");
    // The waiting run is joined, not doubled.
    let joined = s.json(&[
        "orchestrator",
        "sources",
        "trigger",
        "notes",
        "--format",
        "json",
    ]);
    assert_eq!(joined["joined"], true, "{joined}");
    assert_eq!(joined["job_id"], paused["job_id"]);
    check_shape(
        "managing-sources.md",
        "source",
        &[&queued, &waited, &failed, &paused],
        &[],
    );

    let list = s.json(&["orchestrator", "sources", "list", "--format", "json"]);
    let list = list.as_array().unwrap();
    let notes = list.iter().find(|v| v["name"] == "notes").unwrap();
    // One vocabulary: the table's STATE, every job's `state`; nothing under the old name.
    assert_eq!(notes["state"], "paused", "{notes}");
    assert!(notes.get("status").is_none(), "{notes}");
    assert_eq!(
        notes["path"].as_str().unwrap(),
        s.home().join("Notes").to_str().unwrap()
    );
    assert_eq!(
        list.iter().find(|v| v["name"] == "gone").unwrap()["state"],
        "active"
    );
    let table = s.ok(&["orchestrator", "sources", "list"]);
    assert!(
        stdout(&table).contains("notes  local_files  paused"),
        "{}",
        describe(&table)
    );
    for source in list {
        let (run, success) = (&source["last_run"], &source["last_success"]);
        if let (Some(run), Some(success)) = (run.as_object(), success.as_object()) {
            let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
            assert_eq!(
                keys(run),
                keys(success),
                "last_success has the fields of last_run"
            );
        }
    }
    let items: Vec<&Value> = list.iter().collect();
    check_shape("managing-sources.md", "name", &items, &["last_success"]);
}

#[test]
fn cancel_and_quarantine_retry_and_purge_json_are_as_documented() {
    let s = Sandbox::new();
    home_with_sources(&s);
    s.ok(&["orchestrator", "sources", "trigger", "notes", "--wait"]);
    wait_until(
        "the broken item quarantined",
        Duration::from_secs(30),
        || quarantined(&s).len() == 1,
    );
    let job = quarantined(&s)[0]["job_id"].as_i64().unwrap().to_string();

    let retried = s.json(&[
        "orchestrator",
        "quarantine",
        "retry",
        &job,
        "--format",
        "json",
    ]);
    assert_eq!(
        retried["retried"][0]["job_id"]
            .as_i64()
            .unwrap()
            .to_string(),
        job
    );
    assert_eq!(retried["retried"][0]["item"], "broken.json", "{retried}");
    assert_eq!(retried["orchestrator_running"], true);
    wait_until(
        "the item back in quarantine",
        Duration::from_secs(30),
        || quarantined(&s).len() == 1,
    );
    let none = s.json(&[
        "orchestrator",
        "quarantine",
        "retry",
        "--all",
        "--source",
        "gone",
        "--format",
        "json",
    ]);
    assert_eq!(none["retried"], Value::Array(vec![]), "{none}");
    check_shape("managing-jobs.md", "retried", &[&retried, &none], &[]);

    let dry = s.json(&[
        "orchestrator",
        "quarantine",
        "purge",
        "--all",
        "--dry-run",
        "--format",
        "json",
    ]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["jobs"].as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(
        dry["jobs"][0],
        quarantined(&s)[0],
        "as quarantine list shows it"
    );
    let purged = s.json(&[
        "orchestrator",
        "quarantine",
        "purge",
        "--all",
        "--format",
        "json",
    ]);
    assert_eq!(purged["dry_run"], false);
    assert_eq!(purged["jobs"], dry["jobs"]);
    assert!(quarantined(&s).is_empty());
    check_shape("managing-jobs.md", "dry_run", &[&dry, &purged], &[]);

    s.ok(&[
        "orchestrator",
        "sources",
        "pause",
        "notes",
        "--reason",
        "testing",
    ]);
    let waiting = s.json(&[
        "orchestrator",
        "sources",
        "trigger",
        "notes",
        "--format",
        "json",
    ]);
    let id = waiting["job_id"].as_i64().unwrap().to_string();
    let cancelled = s.json(&[
        "orchestrator",
        "jobs",
        "cancel",
        &id,
        "--reason",
        "not now",
        "--format",
        "json",
    ]);
    assert_eq!(cancelled["job_id"].as_i64().unwrap().to_string(), id);
    assert_eq!(cancelled["was_running"], false);
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["reason"], "not now");
    check_shape("managing-jobs.md", "job_id", &[&cancelled], &[]);
    // An already finished job is an error, as without --format json, and prints no JSON.
    let again = s.run(&[
        "orchestrator",
        "jobs",
        "cancel",
        &id,
        "--reason",
        "again",
        "--format",
        "json",
    ]);
    assert_eq!(again.status.code(), Some(1), "{}", describe(&again));
    assert!(again.stdout.is_empty(), "{}", describe(&again));
    s.ok(&["orchestrator", "stop"]);
}

#[test]
fn config_validate_json_names_every_problem_with_an_absolute_file() {
    let s = Sandbox::new();
    // A relative --config: the JSON still names the file absolutely.
    write_file(
        &s.root().join("bad.yaml"),
        "workers:\n  max_workers: 4\nretry:\n  max_attempts: 0\n  jitter: 1.5\n",
    );
    let out = s.run(&[
        "--config",
        "bad.yaml",
        "--set",
        "workers.max_wokers=3",
        "config",
        "validate",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        stderr(&out).contains("the configuration is invalid"),
        "{}",
        describe(&out)
    );
    let invalid = json_of(&out);
    let file = s.root().join("bad.yaml");
    assert_eq!(invalid["valid"], false);
    assert_eq!(invalid["file"], file.to_str().unwrap());
    let problems = invalid["problems"].as_array().unwrap();
    let in_file: Vec<&Value> = problems.iter().filter(|p| !p["file"].is_null()).collect();
    assert_eq!(in_file.len(), 2, "{invalid}");
    assert_eq!(in_file[0]["file"], file.to_str().unwrap());
    assert_eq!(in_file[0]["line"], 4);
    assert_eq!(in_file[0]["column"], 17);
    assert_eq!(in_file[0]["key"], "retry.max_attempts");
    assert_eq!(
        in_file[0]["at"],
        format!("{}:4:17", file.display()).as_str()
    );
    let flag = problems
        .iter()
        .find(|p| p["at"] == "flag --set")
        .expect("the --set problem");
    assert!(flag["line"].is_null() && flag["file"].is_null(), "{flag}");

    s.write_config("workers:\n  max_workers: 64\nsources: []\n");
    let valid = s.json(&["config", "validate", "--format", "json"]);
    assert_eq!(valid["valid"], true);
    assert_eq!(valid["sources"], 0);
    assert_eq!(valid["file"], s.config_file().to_str().unwrap());
    assert!(!valid["warnings"].as_array().unwrap().is_empty(), "{valid}");
    check_shape("configuration.md", "valid", &[&invalid, &valid], &[]);
}

#[test]
fn status_json_carries_absolute_paths_and_every_field_monitoring_documents() {
    let s = Sandbox::new();
    s.start();
    let status = s.status_json();
    assert_eq!(
        status["home"],
        s.futurnal_home().to_str().unwrap(),
        "{status}"
    );
    assert_eq!(status["config_path"], s.config_file().to_str().unwrap());
    // The table may shorten them.
    let table = s.ok(&["orchestrator", "status"]);
    assert!(
        stdout(&table).contains("home:         ~/.futurnal"),
        "{}",
        describe(&table)
    );

    // Every field "What scripts read from status" names exists in the real JSON.
    let text = chapter("monitoring.md");
    let section = text
        .split("## What scripts read from status")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let fields: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("| `."))
        .flat_map(|l| l.split('|').nth(1).unwrap().split(','))
        .map(|f| f.trim().trim_matches('`').trim_start_matches('.'))
        .collect();
    assert!(fields.contains(&"home") && fields.contains(&"config_path"));
    for field in fields {
        let mut v = &status;
        for part in field.split('.') {
            assert!(
                v.get(part).is_some(),
                "monitoring.md documents `.{field}`, which status --format json lacks: {status}"
            );
            v = &v[part];
        }
    }
    s.ok(&["orchestrator", "stop"]);
}

#[test]
fn config_show_json_names_the_file_absolutely_in_its_origins() {
    let s = Sandbox::new();
    write_file(&s.root().join("mine.yaml"), "workers:\n  max_workers: 1\n");
    let shown = s.json(&[
        "--config",
        "mine.yaml",
        "config",
        "show",
        "--format",
        "json",
    ]);
    let file = s.root().join("mine.yaml");
    assert_eq!(
        shown["config_file"]["path"],
        file.to_str().unwrap(),
        "{shown}"
    );
    assert_eq!(
        shown["origins"]["workers.max_workers"],
        format!("{}:2:16", file.display()).as_str()
    );
    assert_eq!(shown["origins"]["retry.jitter"], "default");
    // The text form keeps the path as given.
    let text = stdout(&s.ok(&["--config", "mine.yaml", "config", "show"]));
    assert!(text.contains("# config file: mine.yaml"), "{text}");
}
