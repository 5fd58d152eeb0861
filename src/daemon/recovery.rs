//! Crash detection and recovery at start.
//!
//! Owns: the `.orchestrator_recovery` marker (written at start, removed at clean stop) and the
//! `recoveries` rows in queue.db.
//! Invariants: a start that finds the marker, or a previous instance never marked stopped, records
//! exactly one recovery before it accepts work; the marker is written atomically (0600).

use serde::{Deserialize, Serialize};

use crate::error::{OperatorError, Result};
use crate::home::{Home, display_path, write_private_atomic};
use crate::queue::{QueueDb, RecoveryRow, now_ms};
use crate::runbook::topics;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Marker {
    pub instance_id: String,
    pub pid: u32,
    pub started_at: i64,
}

pub fn write_marker(home: &Home, marker: &Marker) -> Result<()> {
    let text = serde_json::to_vec_pretty(marker).expect("marker serializes");
    write_private_atomic(&home.recovery_marker(), &text).map_err(|e| {
        OperatorError::failure(
            format!(
                "cannot write the recovery marker {}: {e}",
                display_path(&home.recovery_marker())
            ),
            "the orchestrator did not start; check free space and permissions of the home",
            topics::START_REFUSED,
        )
    })
}

pub fn remove_marker(home: &Home) {
    if let Err(e) = std::fs::remove_file(home.recovery_marker())
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("could not remove the recovery marker: {e}");
    }
}

/// If the previous run ended uncleanly, record the recovery and return it.
pub fn recover_if_needed(
    home: &Home,
    db: &QueueDb,
    instance_id: &str,
) -> Result<Option<RecoveryRow>> {
    // Jobs an earlier instance left running go back to the queue, whatever else happened.
    let orphans = crate::jobs::requeue_orphans(db.conn(), instance_id, now_ms()).map_err(|e| {
        OperatorError::new(
            crate::error::ExitCode::Database,
            format!("cannot return interrupted jobs to the queue: {e}"),
            "the orchestrator did not start; run `sqlite3 ~/.futurnal/queue.db \"PRAGMA integrity_check\"`",
            topics::CORRUPT_DB,
        )
    })?;
    let marker_path = home.recovery_marker();
    let marker: Option<Option<Marker>> = std::fs::read(&marker_path)
        .ok()
        .map(|bytes| serde_json::from_slice(&bytes).ok());
    let unfinished = db.latest_instance()?.filter(|i| i.stopped_at.is_none());
    let crashed = match (marker, unfinished) {
        (None, None) if orphans == crate::jobs::Orphans::default() => return Ok(None),
        (None, None) => (None, None, None),
        (Some(Some(m)), _) => (Some(m.instance_id), Some(m.pid as i64), Some(m.started_at)),
        (Some(None), Some(i)) | (None, Some(i)) => {
            (Some(i.instance_id), Some(i.pid), Some(i.started_at))
        }
        (Some(None), None) => (None, None, None),
    };
    let row = RecoveryRow {
        recovered_at: now_ms(),
        instance_id: instance_id.to_string(),
        crashed_instance_id: crashed.0,
        crashed_pid: crashed.1,
        crashed_started_at: crashed.2,
        jobs_requeued: orphans.requeued,
        jobs_poisoned: orphans.poisoned,
    };
    db.record_recovery(&row)?;
    tracing::warn!(
        crashed_pid = row.crashed_pid,
        crashed_instance = row.crashed_instance_id.as_deref().unwrap_or("unknown"),
        jobs_requeued = row.jobs_requeued,
        jobs_poisoned = row.jobs_poisoned,
        "recovered from an unclean shutdown"
    );
    Ok(Some(row))
}

/// One line an operator reads after a recovery.
pub fn describe(row: &RecoveryRow) -> String {
    let who = match (row.crashed_pid, row.crashed_started_at) {
        (Some(pid), Some(at)) => format!(
            "recovered from an unclean shutdown of pid {pid} (started {})",
            crate::display::timestamp(at)
        ),
        _ => "recovered from an unclean shutdown (previous instance unknown)".to_string(),
    };
    let mut text = who;
    match row.jobs_requeued {
        0 => {}
        1 => text.push_str("; 1 interrupted job returned to the queue"),
        n => text.push_str(&format!("; {n} interrupted jobs returned to the queue")),
    }
    match row.jobs_poisoned {
        0 => {}
        1 => text.push_str("; 1 job quarantined as poison"),
        n => text.push_str(&format!("; {n} jobs quarantined as poison")),
    }
    text
}
