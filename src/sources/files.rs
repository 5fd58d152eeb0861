//! Folder sources: `local_files` (text, markdown, HTML, JSON) and `obsidian` vaults.
//!
//! Invariants: the walk follows no symlinks at all and ignores names starting with `.` (so
//! `.obsidian/`, `.git/` and `.trash/` never count); a file type futurnal does not ingest, and a
//! symlink, FIFO, socket or device, is recorded as skipped with the reason, never silently dropped.

use std::path::Path;

use serde_json::{Value, json};

use super::{Candidate, Enumeration, ParsedDoc, Rules, Skipped, utf8};
use super::{Found, SourceType, html, markdown};
use crate::failure::Failure;

pub fn enumerate(root: &Path, kind: SourceType, rules: &Rules) -> Enumeration {
    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    let mut errors = Vec::new();
    super::walk(root, true, |found| match found {
        Found::File(path, key, size, mtime_ns) => {
            if !rules.allows(&key) {
                return;
            }
            let ext = extension(&key);
            let supported = match kind {
                SourceType::Obsidian => ext == "md",
                _ => matches!(
                    ext.as_str(),
                    "md" | "markdown" | "txt" | "text" | "html" | "htm" | "json"
                ),
            };
            if supported {
                candidates.push(Candidate {
                    key,
                    path,
                    size,
                    mtime_ns,
                });
            } else {
                let reason = match (kind, ext.as_str()) {
                    (SourceType::Obsidian, _) => "attachment, not a note".to_string(),
                    (_, "") => "no file extension".to_string(),
                    (_, e) => format!("unsupported file type .{e}"),
                };
                skipped.push(Skipped {
                    key,
                    reason,
                    size,
                    mtime_ns,
                });
            }
        }
        Found::Special(s) => {
            if rules.allows(&s.key) {
                skipped.push(s);
            }
        }
        Found::Error(key, e) => errors.push((key.clone(), super::list_failure(root, &key, &e))),
    });
    Enumeration {
        candidates,
        skipped,
        errors,
    }
}

fn extension(key: &str) -> String {
    Path::new(key)
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

fn stem(key: &str) -> String {
    Path::new(key)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| key.to_string())
}

fn doc(
    c: &Candidate,
    kind: &'static str,
    title: String,
    body: String,
    metadata: Value,
    links: Vec<(String, &'static str)>,
    hash: String,
) -> ParsedDoc {
    ParsedDoc {
        item: c.key.clone(),
        kind,
        title,
        body,
        metadata,
        links,
        content_hash: hash,
        size: c.size,
    }
}

/// A file of a `local_files` source.
/// The part of `text` from byte `offset` on, reusing the buffer when `offset` is 0.
fn tail(text: String, offset: usize) -> String {
    if offset == 0 {
        text
    } else {
        text[offset..].to_string()
    }
}

pub fn parse_file(c: &Candidate, bytes: Vec<u8>, hash: String) -> Result<ParsedDoc, Failure> {
    let text = utf8(bytes)?;
    let path_meta = json!({ "path": c.key });
    match extension(&c.key).as_str() {
        "md" | "markdown" => {
            let (front, body) = markdown::frontmatter(&text)?;
            let offset = text.len() - body.len();
            let outline = markdown::outline(body);
            let title = front
                .as_ref()
                .and_then(|f| f.get("title"))
                .and_then(Value::as_str)
                .filter(|t| !t.trim().is_empty())
                .map(str::to_string)
                .or(outline.first_heading)
                .unwrap_or_else(|| stem(&c.key));
            let links = outline.urls.into_iter().map(|u| (u, "url")).collect();
            let mut meta = path_meta;
            if let Some(f) = front {
                meta["frontmatter"] = f;
            }
            let body = markdown::normalize(tail(text, offset));
            Ok(doc(c, "markdown", title, body, meta, links, hash))
        }
        "html" | "htm" => {
            let page = html::page(&text);
            let title = page.title.unwrap_or_else(|| stem(&c.key));
            Ok(doc(
                c,
                "html",
                title,
                page.text,
                path_meta,
                Vec::new(),
                hash,
            ))
        }
        "json" => {
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| Failure::parse(format!("not valid JSON: {e}")))?;
            let title = value
                .get("title")
                .and_then(Value::as_str)
                .filter(|t| !t.trim().is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| stem(&c.key));
            let body = serde_json::to_string_pretty(&value).unwrap_or_default();
            Ok(doc(c, "json", title, body, path_meta, Vec::new(), hash))
        }
        _ => {
            let title = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(|l| l.chars().take(120).collect())
                .unwrap_or_else(|| stem(&c.key));
            let body = markdown::normalize(text);
            Ok(doc(c, "text", title, body, path_meta, Vec::new(), hash))
        }
    }
}

/// A note of an `obsidian` vault.
pub fn parse_obsidian(c: &Candidate, bytes: Vec<u8>, hash: String) -> Result<ParsedDoc, Failure> {
    let text = utf8(bytes)?;
    let (front, body) = markdown::frontmatter(&text)?;
    let offset = text.len() - body.len();
    let tags = markdown::tags(front.as_ref(), body);
    let mut links = markdown::wikilinks(body);
    links.extend(markdown::outline(body).urls.into_iter().map(|u| (u, "url")));
    // Obsidian names a note by its file; a frontmatter title overrides it.
    let title = front
        .as_ref()
        .and_then(|f| f.get("title"))
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| stem(&c.key));
    let aliases: Vec<Value> = match front.as_ref().and_then(|f| f.get("aliases")) {
        Some(Value::Array(a)) => a.clone(),
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        _ => Vec::new(),
    };
    let mut meta = json!({ "path": c.key, "tags": tags, "aliases": aliases });
    if let Some(f) = front {
        meta["frontmatter"] = f;
    }
    let body = markdown::normalize(tail(text, offset));
    Ok(doc(c, "note", title, body, meta, links, hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::ErrorClass;

    fn cand(key: &str, size: usize) -> Candidate {
        Candidate {
            key: key.into(),
            path: key.into(),
            size: size as u64,
            mtime_ns: 0,
        }
    }

    #[test]
    fn markdown_html_json_text() {
        let md = b"---\ntitle: From front\n---\n# Heading\n\nBody with [x](https://a.example).\n";
        let d = parse_file(&cand("a/note.md", md.len()), md.to_vec(), "h".into()).unwrap();
        assert_eq!(d.title, "From front");
        assert_eq!(d.body, "# Heading\n\nBody with [x](https://a.example).");
        assert_eq!(d.links, vec![("https://a.example".to_string(), "url")]);

        let html = b"<html><head><title> My\n page </title><style>p{}</style></head><body><p>Hello &amp; bye</p></body></html>";
        let d = parse_file(&cand("p.html", html.len()), html.to_vec(), "h".into()).unwrap();
        assert_eq!(d.title, "My page");
        assert_eq!(d.body, "Hello & bye");

        // An empty title in frontmatter or JSON does not hide the file's name.
        let d = parse_file(
            &cand("e.md", 0),
            b"---\ntitle: ''\n---\nx".to_vec(),
            "h".into(),
        )
        .unwrap();
        assert_eq!(d.title, "e");
        let d = parse_file(
            &cand("e.json", 0),
            br#"{"title": " "}"#.to_vec(),
            "h".into(),
        )
        .unwrap();
        assert_eq!(d.title, "e");
        let d = parse_obsidian(
            &cand("v/e.md", 0),
            b"---\ntitle: ''\n---\nx".to_vec(),
            "h".into(),
        )
        .unwrap();
        assert_eq!(d.title, "e");

        let bad = b"{ not json";
        let f = parse_file(&cand("x.json", bad.len()), bad.to_vec(), "h".into()).unwrap_err();
        assert_eq!(f.class, ErrorClass::ParseError);

        let d = parse_file(
            &cand("t.txt", 12),
            b"\n  First line\nmore".to_vec(),
            "h".into(),
        )
        .unwrap();
        assert_eq!(d.title, "First line");
    }

    #[test]
    fn obsidian_note() {
        let note = b"---\ntags: [project]\naliases: Plan\n---\nSee [[Other Note|other]] #idea\n![[pic.png]]\n";
        let d = parse_obsidian(
            &cand("Plans/Plan A.md", note.len()),
            note.to_vec(),
            "h".into(),
        )
        .unwrap();
        assert_eq!(d.title, "Plan A");
        assert_eq!(d.metadata["tags"], json!(["project", "idea"]));
        assert_eq!(d.metadata["aliases"], json!(["Plan"]));
        assert_eq!(d.links.len(), 2);
        assert!(
            d.body.starts_with("See [[Other Note|other]] #idea"),
            "{}",
            d.body
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn check(key: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
            let c = cand(key, bytes.len());
            let parsed = if key.ends_with(".md") && key.starts_with("vault/") {
                parse_obsidian(&c, bytes.to_vec(), "h".into())
            } else {
                parse_file(&c, bytes.to_vec(), "h".into())
            };
            let Ok(d) = parsed else { return Ok(()) };
            prop_assert!(!d.title.trim().is_empty(), "empty title");
            prop_assert!(!d.body.contains("\r\n"));
            crate::sources::chunk_boundaries(&d.body, 64);
            // Text, markdown and notes hold only their own characters (plus nothing).
            if !key.ends_with(".json") && !key.ends_with(".html") {
                let input = String::from_utf8_lossy(bytes);
                for ch in d.body.chars() {
                    prop_assert!(input.contains(ch), "{ch:?}");
                }
            }
            Ok(())
        }

        const KEYS: &[&str] = &["n.md", "vault/n.md", "t.txt", "p.html", "d.json"];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_text_in_every_format(text in any::<String>()) {
                for key in KEYS {
                    check(key, text.as_bytes())?;
                }
            }

            #[test]
            fn any_bytes_in_every_format(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                for key in KEYS {
                    check(key, &bytes)?;
                }
            }

            #[test]
            fn json_documents(
                value in proptest::collection::btree_map("(title|\\PC{0,8})", "\\PC{0,16}", 0..5)
            ) {
                let text = serde_json::to_string(&value).unwrap();
                let d = parse_file(&cand("d.json", text.len()), text.into_bytes(), "h".into()).unwrap();
                let expected = value
                    .get("title")
                    .filter(|t| !t.trim().is_empty())
                    .cloned()
                    .unwrap_or_else(|| "d".to_string());
                prop_assert_eq!(d.title, expected);
            }
        }
    }
}
