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

/// If the previous run ended uncleanly, record the recovery and return it. Handing back the jobs
/// the dead instance left running, marking it crashed and the recovery row commit together:
/// a crash during recovery leaves either all of it or none (the next start does it again).
pub fn recover_if_needed(
    home: &Home,
    db: &QueueDb,
    instance_id: &str,
) -> Result<Option<RecoveryRow>> {
    let failed = |e: rusqlite::Error| {
        OperatorError::new(
            crate::error::ExitCode::Database,
            format!("cannot return interrupted jobs to the queue: {e}"),
            "the orchestrator did not start; run `sqlite3 ~/.futurnal/queue.db \"PRAGMA integrity_check\"`",
            topics::CORRUPT_DB,
        )
    };
    let now = now_ms();
    let marker_path = home.recovery_marker();
    let marker: Option<Option<Marker>> = std::fs::read(&marker_path)
        .ok()
        .map(|bytes| serde_json::from_slice(&bytes).ok());
    let tx = crate::jobs::immediate(db.conn()).map_err(failed)?;
    // Jobs an earlier instance left running go back to the queue, whatever else happened: the
    // home's lock, which this instance holds, proves their instance is gone.
    let left_running = orphaned_ids(&tx, instance_id).map_err(failed)?;
    let orphans = crate::jobs::rescue_orphans(&tx, instance_id, None, now).map_err(failed)?;
    // Each ended attempt has its telemetry row, written with its state change.
    for id in left_running {
        crate::telemetry::record_from_row(&tx, id, now).map_err(failed)?;
    }
    let unfinished = db.latest_instance()?.filter(|i| i.stopped_at.is_none());
    let crashed = match (marker, unfinished) {
        (None, None) if orphans == crate::jobs::Orphans::default() => {
            tx.commit().map_err(failed)?;
            return Ok(None);
        }
        (None, None) => (None, None, None),
        (Some(Some(m)), _) => (Some(m.instance_id), Some(m.pid as i64), Some(m.started_at)),
        (Some(None), Some(i)) | (None, Some(i)) => {
            (Some(i.instance_id), Some(i.pid), Some(i.started_at))
        }
        (Some(None), None) => (None, None, None),
    };
    let row = RecoveryRow {
        recovered_at: now,
        instance_id: instance_id.to_string(),
        crashed_instance_id: crashed.0,
        crashed_pid: crashed.1,
        crashed_started_at: crashed.2,
        jobs_requeued: orphans.requeued,
        jobs_poisoned: orphans.poisoned,
    };
    insert_recovery(&tx, &row)
        .and_then(|_| tx.commit())
        .map_err(failed)?;
    tracing::warn!(
        crashed_pid = row.crashed_pid,
        crashed_instance = row.crashed_instance_id.as_deref().unwrap_or("unknown"),
        jobs_requeued = row.jobs_requeued,
        jobs_poisoned = row.jobs_poisoned,
        "recovered from an unclean shutdown"
    );
    Ok(Some(row))
}

/// Jobs left `running` by other instances (what `rescue_orphans` hands back).
fn orphaned_ids(tx: &rusqlite::Transaction<'_>, instance_id: &str) -> rusqlite::Result<Vec<i64>> {
    tx.prepare("SELECT id FROM jobs WHERE state = ?1 AND COALESCE(instance_id, '') != ?2")?
        .query_map(
            rusqlite::params![crate::jobs::JobState::Running, instance_id],
            |r| r.get(0),
        )?
        .collect()
}

/// The recovery row, and the instances that never stopped marked crashed.
fn insert_recovery(tx: &rusqlite::Transaction<'_>, rec: &RecoveryRow) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO recoveries (recovered_at, instance_id, crashed_instance_id, crashed_pid,
            crashed_started_at, jobs_requeued, jobs_poisoned)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![
            rec.recovered_at,
            rec.instance_id,
            rec.crashed_instance_id,
            rec.crashed_pid,
            rec.crashed_started_at,
            rec.jobs_requeued,
            rec.jobs_poisoned
        ],
    )?;
    tx.execute(
        "UPDATE daemon_instances SET stop_kind = 'crashed', workers_busy = 0,
            stopped_at = COALESCE(stopped_at, heartbeat_at)
         WHERE stopped_at IS NULL AND instance_id != ?1",
        [&rec.instance_id],
    )?;
    Ok(())
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
