//! Reference tables in the book are checked against the code, in both directions: a key, exit
//! code, placeholder or directive the code has and the book lacks fails, and so does the reverse.

use std::path::Path;

fn chapter(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("book/src")
            .join(name),
    )
    .unwrap()
}

/// Rows of the first table after `heading`, cells trimmed and without backticks.
fn table_after(text: &str, heading: &str, first_header_cell: &str) -> Vec<Vec<String>> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("heading {heading:?} not found"));
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text[start..].lines() {
        let t = line.trim();
        if t.starts_with('|') {
            let cells: Vec<String> = t
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect();
            if !in_table {
                if cells.first().map(String::as_str) != Some(first_header_cell) {
                    continue;
                }
                in_table = true;
                continue;
            }
            if cells
                .iter()
                .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
            {
                continue;
            }
            rows.push(cells);
        } else if in_table {
            break;
        }
    }
    assert!(!rows.is_empty(), "no table under {heading:?}");
    rows
}

#[test]
fn exit_code_table_matches_the_code() {
    let rows = table_after(&chapter("operator-guide.md"), "## Exit codes", "status");
    let book: Vec<(String, String)> = rows
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let code: Vec<(String, String)> = futurnal::ExitCode::ALL
        .iter()
        .map(|c| (c.code().to_string(), c.meaning().to_string()))
        .collect();
    assert_eq!(book, code);
}

#[test]
fn configuration_reference_matches_the_schema() {
    let rows = table_after(&chapter("configuration.md"), "## Reference", "key");
    let book: Vec<Vec<String>> = rows;
    let code: Vec<Vec<String>> = futurnal::KEYS
        .iter()
        .map(|k| {
            vec![
                k.path.to_string(),
                k.kind.to_string(),
                // The value `Config::default()` holds (or a machine-dependent rule, itself
                // checked against its function): never a hand-written copy.
                k.default_doc(),
                k.env.to_string(),
                k.doc.to_string(),
            ]
        })
        .collect();
    assert_eq!(book, code);
}

/// The sources table lists exactly the fields a source has, and each optional scalar field's
/// default is the one `SourceConfig::new` (what an absent field takes) really holds.
#[test]
fn sources_table_matches_the_source_fields() {
    let rows = table_after(&chapter("configuration.md"), "### Sources", "field");
    let source = futurnal::SourceConfig::new("n", futurnal::SourceType::LocalFiles, "/n");
    let json = serde_json::to_value(&source).unwrap();
    let fields = json.as_object().unwrap();
    let mut book: Vec<String> = Vec::new();
    for row in &rows {
        for name in row[0].split(',') {
            let name = name.trim().trim_matches('`').to_string();
            let Some(value) = fields.get(&name) else {
                panic!("the sources table documents `{name}`, which a source does not have");
            };
            let what = &row[2];
            let default = match value {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                // Lists default to empty and `retry` to the global section: said in prose.
                _ => None,
            };
            if row[1] == "no"
                && let Some(d) = default
            {
                assert!(
                    what.contains(&format!("(default {d}"))
                        || what.contains(&format!("{d}` (default)")),
                    "`{name}`: the reference does not give its default {d}: {what}"
                );
            }
            book.push(name);
        }
    }
    let mut code: Vec<String> = fields.keys().cloned().collect();
    book.sort();
    code.sort();
    assert_eq!(
        book, code,
        "the sources table and the fields of a source differ"
    );
}

#[test]
fn placeholder_and_stand_in_tables_match_the_matcher() {
    let text = chapter("writing-runbooks.md");
    let book: Vec<(String, String)> = table_after(&text, "## Expected output", "placeholder")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let code: Vec<(String, String)> = runbook_tests::matcher::PLACEHOLDERS
        .iter()
        .map(|(p, _, d)| (p.to_string(), d.to_string()))
        .collect();
    assert_eq!(book, code);

    let book: Vec<(String, String)> = table_after(&text, "## Expected output", "stand-in")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let code: Vec<(String, String)> = runbook_tests::matcher::STAND_INS
        .iter()
        .map(|(p, d)| (p.to_string(), d.to_string()))
        .collect();
    assert_eq!(book, code);
}

#[test]
fn directive_table_lists_every_directive() {
    let rows = table_after(
        &chapter("writing-runbooks.md"),
        "## Directives",
        "directive",
    );
    let mut book: Vec<String> = rows
        .iter()
        .map(|r| {
            r[0].split(['=', ' '])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let mut code: Vec<String> = runbook_tests::doc::DIRECTIVE_KEYS
        .iter()
        .map(|s| s.to_string())
        .collect();
    book.sort();
    code.sort();
    assert_eq!(book, code);
}

#[test]
fn job_state_table_matches_the_queue() {
    let rows = table_after(&chapter("managing-jobs.md"), "## Job states", "state");
    let book: Vec<String> = rows.into_iter().map(|r| r[0].clone()).collect();
    let code: Vec<String> = futurnal::JobState::ALL
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(book, code);
}

#[test]
fn error_class_table_matches_the_classes() {
    let rows = table_after(&chapter("managing-jobs.md"), "## Error classes", "class");
    let book: Vec<(String, bool)> = rows
        .iter()
        .map(|r| (r[0].clone(), r[1].starts_with("yes")))
        .collect();
    let code: Vec<(String, bool)> = futurnal::ErrorClass::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), c.is_transient()))
        .collect();
    assert_eq!(book, code);
}

#[test]
fn bad_input_outcome_table_matches_the_catalogue() {
    let rows = table_after(
        &chapter("troubleshooting-input.md"),
        "## What happens to awkward input",
        "input",
    );
    let code: Vec<Vec<String>> = futurnal::INPUT_OUTCOMES
        .iter()
        .map(|(input, outcome, detail)| {
            vec![
                input.to_string(),
                outcome.as_str().to_string(),
                detail.to_string(),
            ]
        })
        .collect();
    assert_eq!(rows, code);
}

/// The outcome table's "quarantined" is the job state an item job ends in: the same word.
#[test]
fn the_quarantined_outcome_is_the_job_state() {
    assert_eq!(
        futurnal::InputOutcome::Quarantined.as_str(),
        futurnal::JobState::Quarantined.as_str()
    );
}
