//! Sources: finding the items of a declared source and turning each into documents.
//!
//! Owns: enumerating a source's items (files, notes, messages) with their size and mtime, the
//! include/exclude rules, and parsing one item's bytes into normalized documents.
//! Invariants: enumeration never reads file contents (size + mtime only, so a no-change rescan is
//! cheap); parsing is a pure function of the bytes; one bad item yields a `Failure` for that item
//! and never affects another; names starting with `.` are ignored.

pub mod files;
pub mod mail;
pub mod markdown;

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde_json::Value;

use crate::config::{SourceConfig, SourceType};
use crate::failure::{ErrorClass, Failure};

/// One thing in a source that can change independently: a file, or an mbox file.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Stable key within the source (a relative path; for maildir the unique name).
    pub key: String,
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
}

/// An item recorded but not ingested, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub key: String,
    pub reason: String,
    pub size: u64,
    pub mtime_ns: i64,
}

/// What parsing one candidate produced: documents, and messages inside it that failed alone.
#[derive(Debug, Default)]
pub struct Parsed {
    pub docs: Vec<ParsedDoc>,
    pub failures: Vec<(String, Failure)>,
}

#[derive(Debug, Default)]
pub struct Enumeration {
    pub candidates: Vec<Candidate>,
    pub skipped: Vec<Skipped>,
    /// Parts of the tree that could not be listed (an unreadable folder, say).
    pub errors: Vec<(String, Failure)>,
}

/// A normalized document ready for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDoc {
    /// Document key: the candidate key, or `file#message-id` for a message inside an mbox.
    pub item: String,
    pub kind: &'static str,
    pub title: String,
    pub body: String,
    pub metadata: Value,
    /// (target, kind) where kind is `url`, `wikilink` or `embed`.
    pub links: Vec<(String, &'static str)>,
    pub content_hash: String,
    pub size: u64,
}

/// Include/exclude glob rules of a source, matched against the item's relative path.
pub struct Rules {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl Rules {
    pub fn new(source: &SourceConfig) -> Result<Rules, Failure> {
        let build = |patterns: &[String]| -> Result<GlobSet, Failure> {
            let mut b = GlobSetBuilder::new();
            for p in patterns {
                b.add(Glob::new(p).map_err(|e| {
                    Failure::new(ErrorClass::Internal, format!("bad glob pattern `{p}`: {e}"))
                })?);
            }
            b.build()
                .map_err(|e| Failure::new(ErrorClass::Internal, e.to_string()))
        };
        Ok(Rules {
            include: if source.include.is_empty() {
                None
            } else {
                Some(build(&source.include)?)
            },
            exclude: build(&source.exclude)?,
        })
    }

    pub fn allows(&self, relative: &str) -> bool {
        if self.exclude.is_match(relative) {
            return false;
        }
        self.include
            .as_ref()
            .is_none_or(|inc| inc.is_match(relative))
    }
}

/// Check the glob patterns of a source (used by config validation).
pub fn check_patterns(patterns: &[String]) -> Result<(), String> {
    for p in patterns {
        Glob::new(p).map_err(|e| format!("`{p}` is not a glob pattern: {e}"))?;
    }
    Ok(())
}

/// A folder that could not be listed: the source's own folder is named by its path.
fn list_failure(root: &Path, key: &str, e: &std::io::Error) -> Failure {
    if key.is_empty() {
        Failure::io(format!("source path {}", root.display()), e)
    } else {
        Failure::io(format!("cannot list {key}"), e)
    }
}

/// Find the items of a source. `Err` when the source itself is unusable (missing, unreadable).
pub fn enumerate(source: &SourceConfig) -> Result<Enumeration, Failure> {
    let found = enumerate_items(source)?;
    // A source whose own folder cannot be listed has failed as a whole, not item by item.
    if let Some((_, f)) = found.errors.iter().find(|(k, _)| k.is_empty()) {
        return Err(f.clone());
    }
    Ok(found)
}

fn enumerate_items(source: &SourceConfig) -> Result<Enumeration, Failure> {
    let root = &source.path;
    let meta = std::fs::metadata(root)
        .map_err(|e| Failure::io(format!("source path {}", root.display()), &e))?;
    let rules = Rules::new(source)?;
    match source.source_type {
        SourceType::LocalFiles | SourceType::Obsidian => {
            if !meta.is_dir() {
                return Err(Failure::new(
                    ErrorClass::NotFound,
                    format!("source path {} is not a folder", root.display()),
                ));
            }
            Ok(files::enumerate(root, source.source_type, &rules))
        }
        SourceType::Maildir => {
            if !meta.is_dir() {
                return Err(Failure::new(
                    ErrorClass::NotFound,
                    format!("maildir {} is not a folder", root.display()),
                ));
            }
            Ok(mail::enumerate_maildir(root, &rules))
        }
        SourceType::Mbox => Ok(mail::enumerate_mbox(root, meta.is_dir(), &rules)),
    }
}

/// Parse one candidate's bytes (whose content hash is `hash`) into documents. `Err` when the
/// candidate as a whole failed. Takes the bytes by value so a note's text becomes its document
/// body without a copy.
pub fn parse(
    source: &SourceConfig,
    candidate: &Candidate,
    bytes: Vec<u8>,
    hash: String,
) -> Result<Parsed, Failure> {
    let one = |d: ParsedDoc| Parsed {
        docs: vec![d],
        failures: Vec::new(),
    };
    match source.source_type {
        SourceType::LocalFiles => files::parse_file(candidate, bytes, hash).map(one),
        SourceType::Obsidian => files::parse_obsidian(candidate, bytes, hash).map(one),
        SourceType::Maildir => mail::parse_email(&candidate.key, &bytes, hash).map(one),
        SourceType::Mbox => Ok(mail::parse_mbox(candidate, &bytes)),
    }
}

pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Every regular file under `root`, depth first, without following symlinks. `on_file` gets the
/// file's path, its key (path relative to `root`, `/`-separated) and metadata; `on_error` gets the
/// key of anything that could not be listed or stat'ed. With `skip_hidden`, names starting with
/// `.` are not entered or reported.
///
/// A hand-rolled walk rather than walkdir: `DirEntry::metadata` stats relative to the open
/// directory (no path resolution per file) and keys are built by appending, which keeps a no-change
/// rescan of 100,000 files within twice the time of `find`.
pub fn walk(
    root: &Path,
    skip_hidden: bool,
    mut on_file: impl FnMut(PathBuf, String, std::fs::Metadata),
    mut on_error: impl FnMut(String, std::io::Error),
) {
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                on_error(prefix, e);
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    on_error(prefix.clone(), e);
                    continue;
                }
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if skip_hidden && name.starts_with('.') {
                continue;
            }
            let key = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push((entry.path(), key));
            } else if kind.is_file() {
                match entry.metadata() {
                    Ok(m) => on_file(entry.path(), key, m),
                    Err(e) => on_error(key, e),
                }
            }
        }
    }
}

/// A file's size and modification time in nanoseconds.
pub fn stat(meta: &std::fs::Metadata) -> (u64, i64) {
    use std::os::unix::fs::MetadataExt;
    (meta.len(), meta.mtime() * 1_000_000_000 + meta.mtime_nsec())
}

/// Decode text, failing (rather than guessing) on bytes that are not UTF-8. A byte-order mark
/// is dropped.
pub fn utf8(mut bytes: Vec<u8>) -> Result<String, Failure> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|e| {
        Failure::parse(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Character offsets of chunk boundaries: pieces of about `target` bytes, cut at paragraph
/// breaks where possible, else at whitespace, never inside a UTF-8 character.
pub fn chunk_boundaries(text: &str, target: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let len = text.len();
    while start < len {
        if len - start <= target + target / 2 {
            out.push((start, len));
            break;
        }
        let window_end = floor_char(text, (start + target + target / 2).min(len));
        let window = &text[start..window_end];
        let min = target / 2;
        let cut = window[min.min(window.len())..]
            .rfind("\n\n")
            .map(|i| i + min + 2)
            .or_else(|| {
                window[min.min(window.len())..]
                    .rfind(char::is_whitespace)
                    .map(|i| i + min + 1)
            })
            .unwrap_or(window.len());
        let end = floor_char(text, start + cut).max(start + 1);
        let end = if end <= start { window_end } else { end };
        out.push((start, end));
        start = end;
    }
    out
}

fn floor_char(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_text_exactly_and_respect_targets() {
        let para = "word ".repeat(80); // 400 bytes
        let text = format!("{para}\n\n{para}\n\n{para}\n\n{para}\n\né{para}");
        let chunks = chunk_boundaries(&text, 500);
        assert_eq!(chunks.first().unwrap().0, 0);
        assert_eq!(chunks.last().unwrap().1, text.len());
        for w in chunks.windows(2) {
            assert_eq!(w[0].1, w[1].0);
        }
        for (s, e) in &chunks {
            assert!(text.is_char_boundary(*s) && text.is_char_boundary(*e));
            assert!(e - s <= 750, "{s}..{e}");
        }
        assert!(chunk_boundaries("", 500).is_empty());
        assert_eq!(chunk_boundaries("short", 500), vec![(0, 5)]);
    }

    #[test]
    fn utf8_rejects_invalid_bytes_with_offset() {
        let f = utf8(b"ok \xff bad".to_vec()).unwrap_err();
        assert_eq!(f.class, ErrorClass::ParseError);
        assert!(f.message.contains("offset 3"), "{}", f.message);
        assert_eq!(utf8(b"\xEF\xBB\xBFhi".to_vec()).unwrap(), "hi");
    }
}
