//! Security: the audit log of operator actions.
//!
//! Owns: `logs/audit.log`, one JSON object per line: `at`, `event`, `pid` and event details.
//! Invariants: written only when `security.audit_logging` is true; created 0600; appended, never
//! rewritten; a failure to audit is logged but never stops the action it records.

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
        let path = &rest[..end];
        let hash = blake3::hash(path.as_bytes()).to_hex();
        out.push_str(&format!("<path {}>", &hash[..8]));
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
}
