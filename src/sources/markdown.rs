//! Markdown and Obsidian notes: frontmatter, plain text, titles, links, tags.
//!
//! Invariants: frontmatter that does not parse is a `parse_error`, never silently dropped;
//! wikilinks and embeds are links, and their display text stays in the body.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::failure::Failure;

/// Split `---` frontmatter from the body and parse it as YAML.
pub fn frontmatter(text: &str) -> Result<(Option<Value>, &str), Failure> {
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return Ok((None, text));
    };
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        let t = line.trim_end();
        if t == "---" || t == "..." {
            let yaml = &rest[..offset];
            let body = &rest[offset + line.len()..];
            if yaml.trim().is_empty() {
                return Ok((Some(Value::Object(Default::default())), body));
            }
            let value: Value = serde_saphyr::from_str_with_options(yaml, frontmatter_limits())
                .map_err(|e| {
                    Failure::parse(format!(
                        "frontmatter is not valid YAML: {}",
                        e.to_string().lines().next().unwrap_or_default()
                    ))
                })?;
            return Ok((Some(value), body));
        }
        offset += line.len();
    }
    Err(Failure::parse(
        "frontmatter starts with `---` but never ends",
    ))
}

/// Frontmatter is a few lines of metadata: limits far below a configuration file's keep a note
/// of YAML alias bombs (`&a [*b, *b, ...]`) cheap to refuse.
fn frontmatter_limits() -> serde_saphyr::Options {
    serde_saphyr::options! {
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 10_000,
        },
        budget: serde_saphyr::budget! {
            max_events: 100_000,
            max_recorded_anchor_events: 10_000,
        },
    }
}

static WIKILINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(!?)\[\[([^\[\]|#^]*)(#[^\[\]|]*)?(?:\|([^\[\]]*))?\]\]").expect("valid regex")
});
static INLINE_TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[\s(])#([\p{L}\p{N}_/-]*[\p{L}_/-][\p{L}\p{N}_/-]*)").expect("valid regex")
});

/// What ingestion keeps of a markdown note besides its text.
pub struct Outline {
    pub first_heading: Option<String>,
    pub urls: Vec<String>,
}

/// Markdown is stored as markdown: it is already plain text with structure that chunking and
/// downstream readers use. Only line endings are normalized. This scan finds the title (the
/// first ATX heading outside code) and the external links, in one cheap pass.
pub fn outline(markdown: &str) -> Outline {
    let mut first_heading = None;
    let mut in_code = false;
    for line in markdown.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if let Some(rest) = t.strip_prefix('#') {
            let rest = rest.trim_start_matches('#');
            if rest.starts_with(' ') || rest.is_empty() {
                let h = strip_inline_markup(rest.trim().trim_end_matches('#').trim());
                let h = h.trim();
                if !h.is_empty() {
                    first_heading = Some(h.to_string());
                    break;
                }
            }
        }
    }
    Outline {
        first_heading,
        urls: external_links(markdown),
    }
}

/// Targets of `[text](url)` and `<url>` links to http(s) or mailto addresses. A memchr scan:
/// notes can hold a link per line, and this runs on every ingested byte.
pub fn external_links(text: &str) -> Vec<String> {
    fn scheme(rest: &str) -> bool {
        rest.starts_with("https://") || rest.starts_with("http://") || rest.starts_with("mailto:")
    }
    let bytes = text.as_bytes();
    let mut found: Vec<(usize, String)> = Vec::new();
    for at in memchr::memmem::find_iter(bytes, b"](") {
        let rest = text[at + 2..].trim_start_matches('<');
        if scheme(rest) {
            let end = rest
                .find(|c: char| c == ')' || c == '>' || c.is_whitespace())
                .unwrap_or(rest.len());
            found.push((at, rest[..end].to_string()));
        }
    }
    for at in memchr::memchr_iter(b'<', bytes) {
        let rest = &text[at + 1..];
        if scheme(rest)
            && let Some(end) = rest.find(|c: char| c == '>' || c.is_whitespace())
            && rest.as_bytes()[end] == b'>'
            && !(at >= 2 && &bytes[at - 2..at] == b"](")
        {
            found.push((at, rest[..end].to_string()));
        }
    }
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, u)| u).collect()
}

fn strip_inline_markup(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '*' | '_' | '`'))
        .collect()
}

/// `\r\n` to `\n`, and no leading or trailing blank lines; reuses the string's buffer.
pub fn normalize(mut text: String) -> String {
    let end = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(end);
    let start = text.len() - text.trim_start_matches(['\n', '\r']).len();
    if start > 0 {
        text.drain(..start);
    }
    if memchr::memchr(b'\r', text.as_bytes()).is_some() {
        text = text.replace("\r\n", "\n");
    }
    text
}

/// Obsidian links in a note: (target, kind) with kind `wikilink` or `embed`. Headings stay in
/// the target (`Note#Heading`); display aliases (`[[Note|shown]]`) are not part of it.
pub fn wikilinks(body: &str) -> Vec<(String, &'static str)> {
    WIKILINK
        .captures_iter(body)
        .filter_map(|c| {
            let embed = !c[1].is_empty();
            let target = c[2].trim();
            let heading = c.get(3).map(|m| m.as_str()).unwrap_or("");
            (!target.is_empty() || !heading.is_empty()).then(|| {
                (
                    format!("{target}{heading}"),
                    if embed { "embed" } else { "wikilink" },
                )
            })
        })
        .collect()
}

/// Tags from frontmatter (`tags:` list or string) and inline `#tags`, deduplicated, in order.
pub fn tags(front: Option<&Value>, text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |t: &str| {
        let t = t.trim().trim_start_matches('#').to_string();
        if !t.is_empty() && !out.contains(&t) {
            out.push(t);
        }
    };
    match front.and_then(|f| f.get("tags")) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).for_each(&mut add),
        Some(Value::String(s)) => s.split([',', ' ']).for_each(&mut add),
        _ => {}
    }
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        for c in INLINE_TAG.captures_iter(line) {
            add(&c[1]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontmatter_split_and_errors() {
        let (fm, body) = frontmatter("---\ntitle: Hi\ntags: [a, b]\n---\nBody\n").unwrap();
        assert_eq!(fm.unwrap()["title"], "Hi");
        assert_eq!(body, "Body\n");
        let (fm, body) = frontmatter("No frontmatter\n").unwrap();
        assert!(fm.is_none());
        assert_eq!(body, "No frontmatter\n");
        assert!(frontmatter("---\ntitle: [unclosed\n---\nx").is_err());
        assert!(frontmatter("---\ntitle: x\nno end").is_err());
    }

    /// YAML aliases expand: a "billion laughs" frontmatter must be refused quickly, not expanded.
    #[test]
    fn frontmatter_alias_bombs_are_bounded() {
        let mut yaml = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, prev) in ('b'..='j').zip('a'..='i') {
            yaml.push_str(&format!("{i}: &{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let text = format!("---\n{yaml}---\nbody\n");
        let f = frontmatter(&text).unwrap_err();
        assert!(
            f.message.starts_with("frontmatter is not valid YAML"),
            "{}",
            f.message
        );
        // Refused within the frontmatter limits (10,000 replayed events), not the parser's
        // defaults (a million), which cost seconds of CPU per note.
        let small = format!(
            "---\n{}---\nbody\n",
            yaml.lines().take(3).collect::<Vec<_>>().join("\n") + "\n"
        );
        assert!(frontmatter(&small).is_ok(), "1,000 nodes are fine");
    }

    #[test]
    fn outline_title_and_urls() {
        let o = outline(
            "```\n# not a title\n```\n# Title *here*\n\nSome [link](https://example.org) and <mailto:a@b.c>.\n",
        );
        assert_eq!(o.first_heading.as_deref(), Some("Title here"));
        assert_eq!(o.urls, vec!["https://example.org", "mailto:a@b.c"]);
        assert!(outline("#hashtag only\n").first_heading.is_none());
        assert_eq!(
            outline("# * _ *\n## Real\n").first_heading.as_deref(),
            Some("Real")
        );
        assert_eq!(normalize("\r\n\r\na\r\nb\r\n".into()), "a\nb");
    }

    #[test]
    fn obsidian_links_and_tags() {
        let links =
            wikilinks("See [[Project Plan|the plan]] and [[Daily#Morning]] ![[diagram.png]].");
        assert_eq!(
            links,
            vec![
                ("Project Plan".to_string(), "wikilink"),
                ("Daily#Morning".to_string(), "wikilink"),
                ("diagram.png".to_string(), "embed"),
            ]
        );
        let fm: Value = serde_json::json!({"tags": ["work", "#plans"]});
        assert_eq!(
            tags(
                Some(&fm),
                "text #idea and #2024 and #work\n```\n#not-a-tag\n"
            ),
            vec!["work", "plans", "idea"]
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn chars_from(output: &str, input: &str) -> Result<(), TestCaseError> {
            for c in output.chars() {
                prop_assert!(input.contains(c), "{c:?} is not in the input");
            }
            Ok(())
        }

        fn check_all(text: &str) -> Result<(), TestCaseError> {
            if let Ok((front, body)) = frontmatter(text) {
                // The body is a suffix of the text, starting on a char boundary.
                prop_assert!(text.ends_with(body));
                prop_assert!(text.is_char_boundary(text.len() - body.len()));
                let t = tags(front.as_ref(), body);
                for tag in &t {
                    prop_assert!(!tag.is_empty());
                }
                if front.is_none() {
                    for tag in &t {
                        chars_from(tag, body)?;
                    }
                }
            }
            let o = outline(text);
            if let Some(h) = &o.first_heading {
                chars_from(h, text)?;
            }
            for u in external_links(text) {
                prop_assert!(text.contains(u.as_str()), "{u:?}");
            }
            for (target, kind) in wikilinks(text) {
                prop_assert!(kind == "wikilink" || kind == "embed");
                chars_from(&target, text)?;
            }
            let n = normalize(text.to_string());
            prop_assert_eq!(n, text.trim_matches(['\n', '\r']).replace("\r\n", "\n"));
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_text(text in any::<String>()) {
                check_all(&text)?;
            }

            #[test]
            fn markdown_shaped_text(
                text in "(---\r?\n)?(\\PC|[#\\[\\]()<>|!:\n\r -]|https://|\\]\\(|\\[\\[|---\n|```\n){0,120}"
            ) {
                check_all(&text)?;
            }

            #[test]
            fn frontmatter_of_any_yaml(yaml in "\\PC{0,60}", body in "\\PC{0,60}") {
                let text = format!("---\n{yaml}\n---\n{body}");
                check_all(&text)?;
            }
        }
    }
}
