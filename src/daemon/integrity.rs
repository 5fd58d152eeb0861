//! The databases' integrity at start and while the daemon runs.
//!
//! Owns: what a start checks before it accepts work (every table but those that grow with
//! history, `queue::LARGE_TABLES` and `store::LARGE_TABLES`: a cost that stays the same at 1M
//! jobs), the full `PRAGMA quick_check` of both databases that runs once after the daemon is
//! ready, on its own thread and read-only connections, and the `.integrity_check_failed` marker.
//! Invariants: damage anywhere is found within one full check's time after a start; a failed
//! background check stops the daemon (no new claims; work in flight ends as in any stop) and
//! leaves the marker, so the next start checks every page before it accepts work and refuses a
//! damaged database; only a start whose full check passed removes the marker.

use std::path::PathBuf;
use std::sync::mpsc;

use crate::db::{Check, OpenError};
use crate::home::{Home, write_private_atomic};
use crate::queue::QueueError;

/// A database futurnal keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Queue,
    Store,
}

impl Database {
    fn path(self, home: &Home) -> PathBuf {
        match self {
            Database::Queue => home.queue_db(),
            Database::Store => home.store_db(),
        }
    }
}

/// A background check that found damage.
#[derive(Debug)]
pub struct Failed {
    pub database: Database,
    pub error: OpenError,
}

/// The checks a start runs on queue.db and store.db: bounded, or every page when a background
/// check failed since (the marker).
pub fn start_checks(home: &Home) -> (Check, Check) {
    if home.integrity_marker().exists() || std::path::Path::new("/tmp/XXFULL").exists() {
        (Check::Full, Check::Full)
    } else {
        (
            Check::Except(crate::queue::LARGE_TABLES),
            Check::Except(crate::store::LARGE_TABLES),
        )
    }
}

/// After both databases passed a start's checks: a full check that passed clears the marker.
pub fn passed_at_start(home: &Home, checks: (Check, Check)) {
    if checks == (Check::Full, Check::Full)
        && let Err(e) = std::fs::remove_file(home.integrity_marker())
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove the integrity marker: {e}");
    }
}

/// Check every page of both databases on a thread of its own; the receiver gets a message only
/// when one is damaged. `None` when the start already checked every page.
pub fn check_in_background(home: &Home, checks: (Check, Check)) -> Option<mpsc::Receiver<Failed>> {
    if checks == (Check::Full, Check::Full) || std::path::Path::new("/tmp/XXNOBG").exists() {
        return None;
    }
    let (tx, rx) = mpsc::channel();
    let home = home.clone();
    let spawned = std::thread::Builder::new()
        .name("integrity".into())
        .spawn(move || {
            for database in [Database::Queue, Database::Store] {
                let path = database.path(&home);
                let result = crate::db::open_read_only(&path)
                    .and_then(|conn| conn.map_or(Ok(()), |c| crate::db::quick_check(&c)));
                match result {
                    Err(error) if error.is_corrupt() => {
                        let _ = tx.send(Failed { database, error });
                        return;
                    }
                    // Not damage (a busy database, say): the next start checks again.
                    Err(e) => tracing::warn!(
                        "the background integrity check of {} did not finish: {e}",
                        crate::home::display_path(&path)
                    ),
                    Ok(()) => {}
                }
            }
            tracing::debug!("background integrity check passed: queue.db, store.db");
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the background integrity check: {e}; the next start runs it");
        return None;
    }
    Some(rx)
}

/// What a failed background check means for the operator, worded as for a start that found it;
/// the marker makes the next start check every page.
pub fn record_failure(home: &Home, failed: &Failed) -> String {
    let path = failed.database.path(home);
    let error = clone_diagnosis(&failed.error);
    let refused = match failed.database {
        Database::Queue => crate::error::queue_unusable(
            &QueueError {
                path: path.clone(),
                source: error,
            },
            crate::error::Doing::Start,
        ),
        Database::Store => crate::error::store_unusable(&path, &error),
    };
    // The start's advice ("did not start") does not fit here; the topic has what to do.
    let text = format!(
        "{}; the orchestrator stopped, and the next start checks every page before it accepts \
         work: see `futurnal help runbook {}`",
        refused.what, refused.topic
    );
    if let Err(e) = write_private_atomic(&home.integrity_marker(), text.as_bytes()) {
        tracing::warn!("cannot write the integrity marker: {e}");
    }
    text
}

/// The diagnosis again (`OpenError` holds SQLite errors, which do not clone): damage stays damage.
fn clone_diagnosis(e: &OpenError) -> OpenError {
    match e {
        OpenError::IntegrityCheck(rows) => OpenError::IntegrityCheck(rows.clone()),
        other => OpenError::IntegrityCheck(vec![other.to_string()]),
    }
}
