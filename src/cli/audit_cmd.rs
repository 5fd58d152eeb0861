//! `futurnal audit ...` (also `futurnal orchestrator audit ...`): verify and list the audit log
//! (the chain and its files are `security`'s).
//!
//! Invariants: both commands only read the log (never repair, rewrite or lock it), with or
//! without a daemon; `verify` exits 0 only on an intact chain and otherwise names the file and
//! line of the first break.

use clap::Subcommand;
use serde_json::{Value, json};

use super::{TableOrJson, print_json};
use crate::display;
use crate::error::{CommandError, ExitCode, OperatorError};
use crate::home::{Home, display_path};
use crate::queue::now_ms;
use crate::runbook::topics;
use crate::security;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain: exit 0 when intact, else name the first bad line
    Verify {
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
    /// Show the recorded operator actions, oldest first
    List {
        /// Only records since: a duration back from now (30m, 24h, 7d) or a date
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
}

fn unreadable(home: &Home, e: std::io::Error) -> OperatorError {
    OperatorError::failure(
        format!(
            "the audit log {} cannot be read: {e}",
            display_path(&home.audit_log())
        ),
        "nothing was changed; check the permissions of the logs folder",
        topics::AUDIT_LOG,
    )
}

pub fn run(home: &Home, command: AuditCommand) -> Result<(), CommandError> {
    let path = home.audit_log();
    match command {
        AuditCommand::Verify { format } => {
            let v = security::verify(&path).map_err(|e| unreadable(home, e))?;
            if format == TableOrJson::Json {
                print_json(&json!({
                    "intact": v.first_break.is_none(),
                    "files": v.files,
                    "records": v.records,
                    "unchained_lines": v.unchained_lines,
                    "cut_lines": v.cut_lines.as_ref().map(|(f, line, count)| json!({
                        "file": display_path(f), "first_line": line, "count": count,
                    })),
                    "last_seq": v.last_seq,
                    "chain_begins": v.chain_begins.as_ref().map(|(f, line, seq)| json!({
                        "file": display_path(f), "line": line, "seq": seq,
                    })),
                    "first_break": v.first_break.as_ref().map(|b| json!({
                        "file": display_path(&b.file), "line": b.line, "problem": b.problem,
                    })),
                }));
            }
            if let Some(b) = v.first_break {
                return Err(OperatorError::failure(
                    format!(
                        "the audit log is not intact: {} line {}: {}",
                        display_path(&b.file),
                        b.line,
                        b.problem
                    ),
                    "nothing was changed; keep the log as it is (it is the evidence), compare it \
                     with a backup, and find out who could write to the home; futurnal keeps \
                     appending after the break",
                    topics::AUDIT_LOG,
                )
                .into());
            }
            if format == TableOrJson::Table {
                match &v.chain_begins {
                    None => println!(
                        "the audit log {} has no chained records yet: nothing to verify",
                        display_path(&path)
                    ),
                    Some((file, line, seq)) => {
                        println!(
                            "audit log intact: {} record(s) in {} file(s), records {seq} to {}",
                            v.records,
                            v.files,
                            v.last_seq.unwrap_or(*seq)
                        );
                        if let Some((file, line, count)) = &v.cut_lines {
                            println!(
                                "{count} line(s) from {} line {line} on are the start of a \
                                 record whose write was cut (a crash or a full disk): skipped",
                                display_path(file)
                            );
                        }
                        if v.unchained_lines > 0 {
                            println!(
                                "the chain begins at {} line {line}; the {} line(s) before it \
                                 predate the chain and are not checked",
                                display_path(file),
                                v.unchained_lines
                            );
                        }
                    }
                }
            }
            Ok(())
        }
        AuditCommand::List { since, format } => {
            let from = match since {
                None => None,
                Some(text) => Some(display::parse_since(&text, now_ms()).map_err(|e| {
                    OperatorError::new(ExitCode::Usage, e, "nothing was shown", topics::AUDIT_LOG)
                })?),
            };
            let records: Vec<Value> = security::records(&path)
                .map_err(|e| unreadable(home, e))?
                .into_iter()
                .filter(|r| {
                    let Some(from) = from else { return true };
                    r["at"]
                        .as_str()
                        .and_then(|at| at.parse::<jiff::Timestamp>().ok())
                        .is_some_and(|at| at.as_millisecond() >= from)
                })
                .collect();
            match format {
                TableOrJson::Json => print_json(&records),
                TableOrJson::Table => {
                    let rows: Vec<Vec<String>> = records
                        .iter()
                        .map(|r| {
                            let mut details = r.as_object().cloned().unwrap_or_default();
                            for k in ["seq", "prev", "hash", "at", "event", "pid"] {
                                details.remove(k);
                            }
                            vec![
                                r["seq"].as_u64().map_or("-".into(), |s| s.to_string()),
                                r["at"].as_str().unwrap_or("").to_string(),
                                r["event"].as_str().unwrap_or("").to_string(),
                                display::truncate(&Value::Object(details).to_string(), 80),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        display::columns(&["SEQ", "AT", "EVENT", "DETAILS"], &rows)
                    );
                }
            }
            Ok(())
        }
    }
}
