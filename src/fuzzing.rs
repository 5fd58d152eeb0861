//! Fuzz target bodies, shared by the cargo-fuzz crate (`fuzz/`, nightly) and the seed replay test
//! (`tests/fuzz_seeds.rs`, stable), so every seed and every crash found later is a regression test
//! on every `cargo test`.
//!
//! Owns: one function per target taking arbitrary bytes. Each goes through the public entry point
//! the daemon uses and asserts the cheap invariants: no panic; chunk boundaries on char boundaries,
//! in order, covering the text exactly; a loaded configuration holds only finite, in-range numbers.
//! Not part of futurnal's API (hidden from docs); names are the fuzz targets' and the seed folders'.

use std::path::PathBuf;

use crate::config::{self, SourceConfig, SourceType};
use crate::sources::{self, Candidate, ParsedDoc};
use crate::store::{CHUNK_TARGET, Prepared};

/// A fuzz target's body: any bytes in, a panic on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target, by name: `fixtures/fuzz/<name>/` holds its seeds, `fuzz/fuzz_targets/<name>.rs`
/// calls it.
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("markdown", markdown),
    ("obsidian", obsidian),
    ("html", html),
    ("plain", plain),
    ("email", email),
    ("mbox", mbox),
    ("chunks", chunks),
    ("runbook", runbook),
];

/// The chunk invariants every stored body relies on (`store.rs` keeps them as byte offsets).
pub fn check_chunks(text: &str, target: usize) {
    let chunks = sources::chunk_boundaries(text, target);
    if text.is_empty() {
        assert!(chunks.is_empty(), "chunks of empty text: {chunks:?}");
        return;
    }
    let mut at = 0;
    for &(start, end) in &chunks {
        assert_eq!(start, at, "chunks must be contiguous: {chunks:?}");
        assert!(start < end, "empty chunk {start}..{end}");
        assert!(
            text.is_char_boundary(start) && text.is_char_boundary(end),
            "chunk {start}..{end} cuts a character"
        );
        // The documented size bound: at most 1.5 × target, or one character longer than that.
        let max = target.max(1) + target.max(1) / 2;
        assert!(
            end - start <= max || text[start..end].chars().nth(1).is_none(),
            "chunk {start}..{end} is longer than {max} bytes"
        );
        at = end;
    }
    assert_eq!(at, text.len(), "chunks must cover the text: {chunks:?}");
}

fn candidate(key: &str, bytes: &[u8]) -> Candidate {
    Candidate {
        key: key.to_string(),
        path: PathBuf::from("/nonexistent/futurnal-fuzz").join(key),
        size: bytes.len() as u64,
        mtime_ns: 0,
    }
}

/// Parse `bytes` as the item `key` of a source of `kind`, the way a run does, and check what
/// comes out.
fn parse_item(kind: SourceType, key: &str, bytes: &[u8]) {
    let source = SourceConfig::new("fuzz", kind, "/nonexistent/futurnal-fuzz");
    let c = candidate(key, bytes);
    let hash = sources::content_hash(bytes);
    if let Ok(parsed) = sources::parse(&source, &c, bytes.to_vec(), hash) {
        for doc in parsed.docs {
            check_doc(&doc);
        }
    }
}

fn check_doc(doc: &ParsedDoc) {
    check_chunks(&doc.body, CHUNK_TARGET);
    // What the writer stores: chunks and links serialized, metadata as JSON text.
    let prepared = Prepared::from(doc.clone());
    let stored: Vec<[usize; 2]> = serde_json::from_str(&prepared.chunks).expect("chunks JSON");
    for [start, end] in stored {
        assert!(
            doc.body.get(start..end).is_some(),
            "stored chunk {start}..{end}"
        );
    }
    assert!(serde_json::from_str::<serde_json::Value>(&prepared.metadata).is_ok());
}

/// `orchestrator.yaml`: load and validate it as `futurnal` does, then render what `config show`
/// prints. A configuration that loads holds no NaN or out-of-range number.
pub fn config(data: &[u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    // Loading reads a file: one per call, so parallel replay threads never share one.
    let dir = std::env::temp_dir().join(format!(
        "futurnal-fuzz-config-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("orchestrator.yaml");
    std::fs::write(&file, data).expect("write config");
    let home = crate::home::Home::at(dir.join("home"));
    let overrides = config::Overrides {
        config_path: Some(file),
        set: Vec::new(),
    };
    let loaded = config::load(&home, &overrides);
    let _ = std::fs::remove_dir_all(&dir);
    match loaded {
        Ok(loaded) => {
            let c = &loaded.config;
            let retries = std::iter::once(&c.retry).chain(c.sources.iter().map(|s| &s.retry));
            for r in retries {
                assert!(
                    (1.0..=10.0).contains(&r.backoff_multiplier),
                    "backoff_multiplier {} passed validation",
                    r.backoff_multiplier
                );
                assert!(
                    (0.0..=1.0).contains(&r.jitter),
                    "jitter {} passed validation",
                    r.jitter
                );
            }
            let _ = loaded.to_annotated_yaml();
            let _ = loaded.to_json();
        }
        Err(problems) => {
            let _ = crate::error::config_invalid(&problems);
        }
    }
}

/// A markdown file of a `local_files` source (frontmatter, headings, links). The key has a `#`
/// and non-ASCII, as real names do.
pub fn markdown(data: &[u8]) {
    parse_item(SourceType::LocalFiles, "Notes/Café #1.md", data);
}

/// A note of an `obsidian` vault: frontmatter, tags, aliases, wikilinks.
pub fn obsidian(data: &[u8]) {
    parse_item(SourceType::Obsidian, "Vault/日記 2026.md", data);
}

/// An HTML file of a `local_files` source.
pub fn html(data: &[u8]) {
    parse_item(SourceType::LocalFiles, "site/index.html", data);
}

/// The same bytes as a JSON file and as a plain-text file.
pub fn plain(data: &[u8]) {
    parse_item(SourceType::LocalFiles, "data/export.json", data);
    parse_item(SourceType::LocalFiles, "readme.txt", data);
}

/// One maildir message.
pub fn email(data: &[u8]) {
    parse_item(SourceType::Maildir, "cur/1764320000.M1P2.host:2,S", data);
}

/// An mbox file: every message in it.
pub fn mbox(data: &[u8]) {
    parse_item(SourceType::Mbox, "Archive.mbox", data);
}

/// `chunk_boundaries` over any text: the first two bytes choose the target size.
pub fn chunks(data: &[u8]) {
    let (target, rest) = match data {
        [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b]) % 4096), rest),
        _ => (CHUNK_TARGET, data),
    };
    let text = String::from_utf8_lossy(rest);
    check_chunks(&text, target);
    check_chunks(&text, CHUNK_TARGET);
}

/// A runbook chapter: the harness's block parser, the terminal renderer and heading ids.
pub fn runbook(data: &[u8]) {
    let text = String::from_utf8_lossy(data).into_owned();
    let doc = runbook_tests::doc::Document::parse(std::path::Path::new("fuzz.md"), text.clone());
    for step in &doc.steps {
        assert!(step.line >= 1, "line numbers are 1-based");
        if let Some(e) = &step.expected {
            // Bless rewrites exactly this range of the file.
            assert!(
                text.get(e.content.clone()).is_some(),
                "expected block range {:?} is not within the text",
                e.content
            );
            let _ = runbook_tests::matcher::compare(&e.text, &step.visible);
        }
    }
    let _ = crate::runbook::render::render(&text, 80);
    for h in crate::runbook::headings(&text) {
        assert!(text.is_char_boundary(h.start), "heading offset {}", h.start);
    }
}
