//! The layout's rules, checked on the source tree (so a change that breaks one fails here):
//! - the modules of the futurnal crate form no import cycle (each top-level module — a file
//!   `src/x.rs` or a folder `src/x/` — is a node; `crate::x` anywhere outside its tests is an
//!   edge);
//! - job states and kinds are spelled only by their enums (`jobs/model.rs`) and the SQL schema
//!   (`queue.rs`'s migrations): everywhere else code names `JobState` / `JobKind`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &mut out);
    out.into_iter()
        .map(|(p, t)| (p.strip_prefix(&root).unwrap().to_path_buf(), t))
        .collect()
}

/// The code of a file without its unit tests (the `#[cfg(test)]` module at its end).
fn without_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod ") {
        Some(i) => &text[..i],
        None => text,
    }
}

fn top_module(path: &Path) -> String {
    let first = path
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let single = regex::Regex::new(r"crate::([a-z_][a-z0-9_]*)").unwrap();
    let group = regex::Regex::new(r"crate::\{([^}]*)\}").unwrap();
    let word = regex::Regex::new(r"(?:^|[\s,{])([a-z_][a-z0-9_]*)").unwrap();
    for (path, text) in sources() {
        let module = top_module(&path);
        if module == "lib" || module == "main" {
            continue;
        }
        let code = without_tests(&text);
        let mut deps: BTreeSet<String> = single
            .captures_iter(code)
            .map(|c| c[1].to_string())
            .collect();
        for g in group.captures_iter(code) {
            deps.extend(word.captures_iter(&g[1]).map(|c| c[1].to_string()));
        }
        deps.remove(&module);
        graph.entry(module).or_default().extend(deps);
    }
    let names: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| names.contains(d));
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        for w in &s.graph[v] {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.stack.contains(&w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn the_modules_form_no_import_cycle() {
    let graph = import_graph();
    let found = cycles(&graph);
    let edges: Vec<String> = found
        .iter()
        .flatten()
        .map(|m| format!("{m} -> {:?}", graph[m]))
        .collect();
    assert!(
        found.is_empty(),
        "import cycles: {found:?}\n{}",
        edges.join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_string()].into());
    g.insert("b".into(), ["c".to_string()].into());
    g.insert("c".into(), ["a".to_string()].into());
    g.insert("d".into(), ["a".to_string()].into());
    assert_eq!(cycles(&g), vec![vec!["a", "b", "c"]]);
    g.insert("c".into(), BTreeSet::new());
    assert!(cycles(&g).is_empty());
}

/// Where a state's or kind's word may appear in quotes outside the enums and the schema, and why
/// it is not a state or kind there.
const NOT_A_STATE: &[(&str, &str)] = &[
    // A candidate's scan status in store.db (`store::ScanStatus`), not a job state.
    ("store.rs", "status IN ('ok', 'skipped', 'failed')"),
    ("store.rs", "ScanStatus::Failed => \"failed\""),
    // How an input ends in the book's outcome table (tests/book_tables.rs checks it is the job
    // state's word).
    ("ingest.rs", "InputOutcome::Quarantined => \"quarantined\""),
    // The English noun, in counts such as "3 items".
    ("", "\"item\")"),
    // A JSON field holding an item's key.
    ("", "\"item\": "),
];

#[test]
fn job_states_and_kinds_are_spelled_only_by_their_enums() {
    let words = [
        "pending",
        "running",
        "succeeded",
        "failed",
        "quarantined",
        "cancelled",
        "source_run",
        "item",
    ];
    let quoted = regex::Regex::new(&format!(r#"["']({})["']"#, words.join("|"))).unwrap();
    let mut found = Vec::new();
    for (path, text) in sources() {
        if path == Path::new("jobs/model.rs") {
            continue;
        }
        let file = path.to_string_lossy().to_string();
        let code = without_tests(&text);
        // queue.db's schema, `MIGRATIONS` in queue.rs (its CHECK lists are checked against the
        // enums by a unit test).
        let schema = match code.find("const MIGRATIONS") {
            Some(start) if path == Path::new("queue.rs") => {
                start..start + code[start..].find("\n];").unwrap()
            }
            _ => 0..0,
        };
        let mut offset = 0;
        for (n, line) in code.lines().enumerate() {
            let at = offset;
            offset += line.len() + 1;
            if schema.contains(&at) {
                continue;
            }
            if quoted.is_match(line)
                && !NOT_A_STATE
                    .iter()
                    .any(|(f, allowed)| file.ends_with(f) && line.contains(allowed))
            {
                found.push(format!("src/{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "state or kind spelled outside its enum:\n{}",
        found.join("\n")
    );
}

/// Every test ARCHITECTURE.md names as an invariant's guard exists (a renamed or deleted test
/// would leave the invariant unguarded while the document still claims it).
#[test]
fn every_test_architecture_names_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut code = String::new();
    for (_, text) in sources() {
        code.push_str(&text);
    }
    for entry in std::fs::read_dir(root.join("tests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            code.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    // `module::tests::name`, `tests/file.rs::name`, `…::name`: the last segment, when it reads
    // like a test's name (three words or more).
    let named = regex::Regex::new(r"`[^`\s]*::([a-z0-9]+(?:_[a-z0-9]+){2,})`").unwrap();
    let mut missing = Vec::new();
    let mut found = 0;
    for c in named.captures_iter(&doc) {
        let name = &c[1];
        if code.contains(&format!("fn {name}(")) {
            found += 1;
        } else {
            missing.push(name.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names tests that do not exist: {missing:?}"
    );
    assert!(
        found >= 30,
        "only {found} tests named: did the pattern stop matching?"
    );
}
