//! Security: the audit log of operator actions.
//!
//! Owns: `logs/audit.log`, one JSON object per line: `at`, `event`, `pid` and event details; path
//! redaction (`redact_paths`, `redact_known_paths`).
//! Invariants: written only when `security.audit_logging` is true; created 0600 and never opened
//! through a symlink (a link planted at its name makes the write fail, logged, and the link's
//! target is untouched); appended, never rewritten; a failure to audit is logged but never stops
//! the action it records.

use serde_json::{Value, json};

use crate::home::{Home, open_private_append};

pub fn audit(home: &Home, enabled: bool, event: &str, details: Value) {
    if !enabled {
        return;
    }
    let mut record = json!({
        "at": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "event": event,
        "pid": std::process::id(),
    });
    if let (Some(obj), Value::Object(extra)) = (record.as_object_mut(), details) {
        obj.extend(extra);
    }
    let line = format!("{record}\n");
    let result = open_private_append(&home.audit_log()).and_then(|mut f| {
        use std::io::Write;
        f.write_all(line.as_bytes())
    });
    if let Err(e) = result {
        tracing::warn!("could not write the audit log: {e}");
    }
}

/// `redact_paths` for text that may name paths with spaces, `:` or other separators in them
/// (`/home/ada/Folder With Spaces: No such file`): each of `known` (source roots, the home) is
/// replaced exactly wherever it appears, absolute or as `~/...`, longest first so a root inside
/// another never leaves part of the outer one behind; what follows a known root (the item's path
/// relative to its source) stays. Then every other absolute path is redacted as `redact_paths`
/// does. A known root gets the same fingerprint as `redact_paths` gives the bare path.
pub fn redact_known_paths(text: &str, known: &[&std::path::Path]) -> String {
    let mut needles: Vec<(String, String)> = Vec::new();
    for path in known {
        let abs = path.to_string_lossy().trim_end_matches('/').to_string();
        if abs.is_empty() {
            continue;
        }
        let tag = fingerprint(&abs);
        let shown = crate::home::display_path(path);
        if shown != abs && shown != "~" {
            needles.push((shown, tag.clone()));
        }
        needles.push((abs, tag));
    }
    needles.sort_by_key(|n| std::cmp::Reverse(n.0.len()));
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while !rest.is_empty() {
        for (needle, tag) in &needles {
            if let Some(after) = rest.strip_prefix(needle.as_str())
                && ends_path(after)
                && starts_token(&out)
            {
                out.push_str(tag);
                rest = after;
                continue 'scan;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    redact_paths(&out)
}

/// A known path matched only as a whole: what follows must not continue its last name.
fn ends_path(after: &str) -> bool {
    after
        .chars()
        .next()
        .is_none_or(|c| c == '/' || c.is_whitespace() || matches!(c, ':' | ')' | '\'' | '"' | ','))
}

/// A known path matched only where a path can begin (not inside a longer path).
fn starts_token(before: &str) -> bool {
    before
        .chars()
        .next_back()
        .is_none_or(|c| c.is_whitespace() || matches!(c, '(' | '\'' | '"' | '=' | ':' | '>'))
}

use crate::failure::path_fingerprint as fingerprint;

/// Replace absolute paths in a message with a stable fingerprint (`<path 1a2b3c4d>`), for
/// `security.path_redaction`. The same path always gets the same fingerprint, so errors can still
/// be told apart and matched; the item a job concerns is recorded separately, relative to its
/// source.
pub fn redact_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('/') {
        let starts_token = i == 0
            || rest[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_whitespace() || c == '(' || c == '\'' || c == '"');
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if !starts_token {
            out.push('/');
            rest = &rest[1..];
            continue;
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, ':' | ')' | '\'' | '"' | ','))
            .unwrap_or(rest.len());
        out.push_str(&fingerprint(&rest[..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_become_stable_fingerprints() {
        let a = redact_paths("source path /home/ada/Notes: Permission denied (os error 13)");
        assert!(a.starts_with("source path <path "), "{a}");
        assert!(a.ends_with(">: Permission denied (os error 13)"), "{a}");
        assert!(!a.contains("/home"), "{a}");
        assert_eq!(
            a,
            redact_paths("source path /home/ada/Notes: Permission denied (os error 13)")
        );
        // Relative item keys and fractions stay.
        assert_eq!(
            redact_paths("cannot read notes/a.md: 1/2 done"),
            "cannot read notes/a.md: 1/2 done"
        );
    }

    #[test]
    fn known_paths_with_spaces_and_colons_are_redacted_whole() {
        let root = std::path::Path::new("/home/ada/Folder With Spaces");
        let text = "source path /home/ada/Folder With Spaces: No such file or directory";
        // The generic pass cuts at the first space and leaks the rest of the name.
        assert!(redact_paths(text).contains("With Spaces"));
        let a = redact_known_paths(text, &[root]);
        assert!(!a.contains("Folder") && !a.contains("Spaces"), "{a}");
        assert_eq!(
            a,
            format!(
                "source path {}: No such file or directory",
                fingerprint(&root.to_string_lossy())
            )
        );
        // A colon inside a known name, an item under a root, and a root nested in another.
        let colon = std::path::Path::new("/srv/a:b");
        let nested = std::path::Path::new("/srv/a:b/inner dir");
        let b = redact_known_paths(
            "cannot read /srv/a:b/inner dir/x y.md: denied; /srv/a:b: gone",
            &[colon, nested],
        );
        assert!(!b.contains("a:b") && !b.contains("inner"), "{b}");
        assert!(b.contains("/x y.md: denied"), "{b}");
        // A known root is not matched inside a longer name.
        let c = redact_known_paths("see /home/ada/Folder With Spaces2/z", &[root]);
        assert!(!c.contains(&fingerprint(&root.to_string_lossy())), "{c}");
        // Other absolute paths are still redacted; non-ASCII text is kept intact.
        let d = redact_known_paths("日本語 /etc/x: é", &[root]);
        assert!(d.starts_with("日本語 <path ") && d.ends_with(">: é"), "{d}");
    }
}
