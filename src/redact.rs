//! Path redaction for `security.path_redaction`: the one mechanism (`Failure::redacted`, the
//! recorded configuration and the daemon's stored errors all use it).
//!
//! Owns: `path_fingerprint` and `redact_paths`.
//! Invariants: redaction replaces known paths exactly (absolute and `~/` forms) and scans for
//! other absolute paths only outside them; a path gets one fingerprint however found; pure
//! functions of their input (and `$HOME`), so they are tested without files.

use std::path::Path;

/// The fingerprint that stands for an absolute path under `security.path_redaction`: the same
/// path always gets the same one, so errors can still be told apart and matched.
pub fn path_fingerprint(path: &str) -> String {
    let hash = blake3::hash(path.as_bytes()).to_hex();
    format!("<path {}>", &hash[..8])
}

/// The one redaction of paths for `security.path_redaction`: each of `known` (the paths a
/// failure declares, the source's folder) is replaced by its fingerprint exactly wherever it
/// appears, absolute or as `~/...`, whatever characters it holds (spaces, `:`, `(`, non-ASCII),
/// longest first so a path inside another never leaves part of the outer one behind; what follows
/// a known folder (an item's path relative to its source) stays. Only then, as a last resort for
/// text that names no known path, absolute paths are found by scanning (`scan_paths`), which can
/// only guess where a name ends. The same path always gets the same fingerprint, whichever way it
/// was found, so errors can still be told apart and matched.
pub fn redact_paths(text: &str, known: &[&Path]) -> String {
    let mut needles: Vec<(String, String)> = Vec::new();
    for path in known {
        let abs = path.to_string_lossy();
        let abs = abs.trim_end_matches('/');
        if abs.is_empty() {
            continue;
        }
        let tag = path_fingerprint(abs);
        let shown = crate::home::display_path(Path::new(abs));
        if shown != abs && shown != "~" {
            needles.push((shown, tag.clone()));
        }
        needles.push((abs.to_string(), tag));
    }
    needles.sort_by_key(|n| std::cmp::Reverse(n.0.len()));
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while !rest.is_empty() {
        if !continues_name(out.chars().next_back()) {
            for (needle, tag) in &needles {
                if let Some(after) = rest.strip_prefix(needle.as_str())
                    && !continues_name_after(after)
                {
                    out.push_str(tag);
                    rest = after;
                    continue 'scan;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    scan_paths(&out)
}

/// A character that belongs to a file name or path (so a known path right after it is part of a
/// longer one).
fn continues_name(c: Option<char>) -> bool {
    c.is_some_and(|c| name_char(c) || matches!(c, '/' | '.' | '~'))
}

fn name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-')
}

/// Does the text after a known path continue its last name? A `.` ending a sentence does not;
/// one before a name character (`.md`) does.
fn continues_name_after(after: &str) -> bool {
    let mut chars = after.chars();
    match chars.next() {
        Some('.') => chars.next().is_some_and(name_char),
        c => c.is_some_and(|c| name_char(c) || c == '~'),
    }
}

/// The last resort of `redact_paths`: an absolute path (`/...`, or `~/...` under the home)
/// starting a token is taken to end at whitespace or `:`, `)`, quotes or `,`, and replaced by
/// the fingerprint of its absolute form. Relative item keys and fractions (`1/2`) stay.
fn scan_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('/') {
        // `~/` starts a path under the home: the `~` belongs to it.
        let tilde = rest[..i].ends_with('~');
        let start = if tilde { i - 1 } else { i };
        let starts_token = start == 0
            || rest[..start].chars().next_back().is_some_and(|c| {
                c.is_whitespace() || matches!(c, '(' | '\'' | '"' | '`' | '=' | '[')
            });
        if !starts_token {
            out.push_str(&rest[..=i]);
            rest = &rest[i + 1..];
            continue;
        }
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, ':' | ')' | '\'' | '"' | ',' | '`'))
            .unwrap_or(rest.len());
        let path = &rest[..end];
        let absolute = match path.strip_prefix("~/") {
            Some(under) => std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| format!("{}/{under}", Path::new(&h).display()))
                .unwrap_or_else(|| path.to_string()),
            None => path.to_string(),
        };
        out.push_str(&path_fingerprint(&absolute));
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
        let text = "source path /home/ada/Notes: Permission denied (os error 13)";
        let a = redact_paths(text, &[]);
        assert!(a.starts_with("source path <path "), "{a}");
        assert!(a.ends_with(">: Permission denied (os error 13)"), "{a}");
        assert!(!a.contains("/home"), "{a}");
        assert_eq!(a, redact_paths(text, &[]));
        // Relative item keys and fractions stay.
        assert_eq!(
            redact_paths("cannot read notes/a.md: 1/2 done", &[]),
            "cannot read notes/a.md: 1/2 done"
        );
        // A path under the home written `~/...` is a path too, with its absolute fingerprint.
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            let abs = format!("{}/Private", Path::new(&home).display());
            assert_eq!(
                redact_paths("cannot open ~/Private: denied", &[]),
                format!("cannot open {}: denied", path_fingerprint(&abs))
            );
        }
    }

    #[test]
    fn known_paths_with_spaces_and_colons_are_redacted_whole() {
        let root = Path::new("/home/ada/Folder With Spaces");
        let text = "source path /home/ada/Folder With Spaces: No such file or directory";
        // The scan alone cuts at the first space and leaks the rest of the name.
        assert!(redact_paths(text, &[]).contains("With Spaces"));
        let a = redact_paths(text, &[root]);
        assert!(!a.contains("Folder") && !a.contains("Spaces"), "{a}");
        assert_eq!(
            a,
            format!(
                "source path {}: No such file or directory",
                path_fingerprint(&root.to_string_lossy())
            )
        );
        // A colon inside a known name, an item under a root, and a root nested in another.
        let colon = Path::new("/srv/a:b");
        let nested = Path::new("/srv/a:b/inner dir");
        let b = redact_paths(
            "cannot read /srv/a:b/inner dir/x y.md: denied; /srv/a:b: gone",
            &[colon, nested],
        );
        assert!(!b.contains("a:b") && !b.contains("inner"), "{b}");
        assert!(b.contains("/x y.md: denied"), "{b}");
        // A known root is not matched inside a longer name; a sentence's full stop ends it.
        let c = redact_paths("see /home/ada/Folder With Spaces2/z", &[root]);
        assert!(
            !c.contains(&path_fingerprint(&root.to_string_lossy())),
            "{c}"
        );
        let c = redact_paths("in `/home/ada/Folder With Spaces`.", &[root]);
        assert_eq!(
            c,
            format!("in `{}`.", path_fingerprint(&root.to_string_lossy()))
        );
        // Other absolute paths are still redacted; non-ASCII text is kept intact.
        let d = redact_paths("日本語 /etc/x: é", &[root]);
        assert!(d.starts_with("日本語 <path ") && d.ends_with(">: é"), "{d}");
    }

    /// Spaces, `:`, `(` and non-ASCII in a known path, absolute and in its `~/` form: no part of
    /// the name survives.
    #[test]
    fn hostile_known_paths_leave_nothing_behind() {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map_or_else(|| std::path::PathBuf::from("/home/ada"), Into::into);
        for root in [
            std::path::PathBuf::from("/tmp/x/Folder With Spaces: (ü) x"),
            home.join("Folder With Spaces: (ü) x"),
        ] {
            let shown = crate::home::display_path(&root);
            for text in [
                format!("source path {}: No such file or directory", root.display()),
                format!("maildir {shown}: not a folder"),
                format!("cannot open ({}/a b.md)", root.display()),
            ] {
                let r = redact_paths(&text, &[&root]);
                for part in ["Folder", "With", "Spaces", "ü", "(ü)", "/tmp", "x/"] {
                    assert!(!r.contains(part), "{part} in {r}");
                }
                assert!(
                    r.contains(&path_fingerprint(&root.to_string_lossy())),
                    "{r}"
                );
            }
        }
    }
}
