//! Security: the audit log of operator actions. (Path redaction is `redact`.)
//!
//! Owns: `logs/audit.log`, one JSON object per line: `at`, `event`, `pid` and event details.
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
