//! The job model: states, kinds, the `jobs` row and its history rows.
//!
//! Owns: `JobState` and `JobKind`, the one list of each (their text form is the only place a state
//! or kind is spelled outside the SQL schema, and a unit test checks the schema's CHECK lists
//! against them); mapping rows to `Job`, `Event` and `ItemError`.
//! Invariants: a state or kind read from queue.db that is not in the list is a row error, never a
//! default; the order of `JobState::ALL` is the order operators see in `status`.

use rusqlite::Row;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::Serialize;

use crate::config::Priority;

/// Declares a text-mapped enum: its variants with their text form, in order, and the trait
/// implementations every layer uses (SQL, serde, clap, Display), so the list exists once.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in the order operators see them.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(text: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| {
                    FromSqlError::Other(
                        format!("`{text}` is not a {}", stringify!($name)).into(),
                    )
                })
            }
        }

        impl clap::ValueEnum for $name {
            fn value_variants<'a>() -> &'a [Self] {
                $name::ALL
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                Some(clap::builder::PossibleValue::new(self.as_str()))
            }
        }
    };
}

text_enum! {
    /// Where a job is in its life. `failed` is not final: the job retries by itself at
    /// `scheduled_for`. The final states are `succeeded`, `quarantined` and `cancelled`.
    JobState {
        /// Never attempted, or handed back by a shutdown, a crash or a busy store.
        Pending => "pending",
        /// Claimed by a daemon instance, which holds its lease.
        Running => "running",
        Succeeded => "succeeded",
        /// The attempt failed; retried by itself when its time comes.
        Failed => "failed",
        /// Retries exhausted, or a permanent failure: an operator must act.
        Quarantined => "quarantined",
        /// An operator decided.
        Cancelled => "cancelled",
    }
}

text_enum! {
    /// What a job does.
    JobKind {
        /// Scan a whole source and ingest what changed.
        SourceRun => "source_run",
        /// Ingest one item a run could not (a retry of that item alone).
        Item => "item",
    }
}

impl JobState {
    /// Finished for good. (`failed` is not: the job retries by itself.)
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Quarantined | JobState::Cancelled
        )
    }

    /// Waiting to be claimed (now or at `scheduled_for`).
    pub fn is_waiting(self) -> bool {
        matches!(self, JobState::Pending | JobState::Failed)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: i64,
    pub source: String,
    pub kind: JobKind,
    pub item: Option<String>,
    pub state: JobState,
    pub priority: i64,
    pub trigger: String,
    pub scheduled_for: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub instance_id: Option<String>,
    pub parent_job_id: Option<i64>,
    pub cancel_requested_at: Option<i64>,
    pub cancel_reason: Option<String>,
    pub error_class: Option<String>,
    pub last_error: Option<String>,
    pub items_total: i64,
    pub items_done: i64,
    pub items_seen: i64,
    pub docs_new: i64,
    pub docs_changed: i64,
    pub docs_unchanged: i64,
    pub docs_deleted: i64,
    pub items_skipped: i64,
    pub items_failed: i64,
    pub bytes: i64,
}

/// The columns `job_from_row` reads, in its order.
pub(super) const COLUMNS: &str = "id, source, kind, item, state, priority, trigger, scheduled_for,
    attempts, max_attempts, created_at, updated_at, started_at, finished_at, instance_id,
    parent_job_id, cancel_requested_at, cancel_reason, error_class, last_error, items_total,
    items_done, items_seen, docs_new, docs_changed, docs_unchanged, docs_deleted, items_skipped,
    items_failed, bytes";

pub(super) fn job_from_row(r: &Row) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        source: r.get(1)?,
        kind: r.get(2)?,
        item: r.get(3)?,
        state: r.get(4)?,
        priority: r.get(5)?,
        trigger: r.get(6)?,
        scheduled_for: r.get(7)?,
        attempts: r.get(8)?,
        max_attempts: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        started_at: r.get(12)?,
        finished_at: r.get(13)?,
        instance_id: r.get(14)?,
        parent_job_id: r.get(15)?,
        cancel_requested_at: r.get(16)?,
        cancel_reason: r.get(17)?,
        error_class: r.get(18)?,
        last_error: r.get(19)?,
        items_total: r.get(20)?,
        items_done: r.get(21)?,
        items_seen: r.get(22)?,
        docs_new: r.get(23)?,
        docs_changed: r.get(24)?,
        docs_unchanged: r.get(25)?,
        docs_deleted: r.get(26)?,
        items_skipped: r.get(27)?,
        items_failed: r.get(28)?,
        bytes: r.get(29)?,
    })
}

impl Job {
    pub fn is_terminal(&self) -> bool {
        self.state.is_terminal()
    }

    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.finished_at? - self.started_at?)
    }

    pub fn priority_name(&self) -> &'static str {
        match self.priority {
            0 => "low",
            2 => "high",
            _ => "normal",
        }
    }
}

pub fn priority_value(p: Priority) -> i64 {
    match p {
        Priority::Low => 0,
        Priority::Normal => 1,
        Priority::High => 2,
    }
}

/// One row of a job's history.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at: i64,
    pub from_state: Option<JobState>,
    pub to_state: JobState,
    pub actor: String,
    pub reason: Option<String>,
}

/// An item a run could not ingest, and the item job that retries it.
#[derive(Debug, Clone, Serialize)]
pub struct ItemError {
    pub item: String,
    pub class: String,
    pub message: String,
    pub item_job_id: Option<i64>,
}

/// Counts a finished run reports.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunNumbers {
    pub items_seen: i64,
    pub docs_new: i64,
    pub docs_changed: i64,
    pub docs_unchanged: i64,
    pub docs_deleted: i64,
    pub items_skipped: i64,
    pub items_failed: i64,
    pub bytes: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema's CHECK constraints name exactly the enums' lists, in the same order.
    #[test]
    fn the_schema_checks_the_same_states_and_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::queue::QueueDb::open_for_daemon(
            &dir.path().join("queue.db"),
            &crate::config::Queue::default(),
        )
        .unwrap();
        let sql: String = db
            .conn()
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'jobs'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let listed = |column: &str| -> Vec<String> {
            let re = regex::Regex::new(&format!(r"{column} IN\s*\(([^)]*)\)")).unwrap();
            re.captures(&sql).unwrap()[1]
                .split(',')
                .map(|v| v.trim().trim_matches('\'').to_string())
                .collect()
        };
        let states: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
        let kinds: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(listed("state"), states);
        assert_eq!(listed("kind"), kinds);
    }

    #[test]
    fn text_forms_round_trip_and_unknown_text_is_an_error() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(*s));
        }
        for k in JobKind::ALL {
            assert_eq!(JobKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(JobState::parse("Pending"), None);
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let bad: rusqlite::Result<JobState> = conn.query_row("SELECT 'paused'", [], |r| r.get(0));
        assert!(bad.is_err());
    }
}
