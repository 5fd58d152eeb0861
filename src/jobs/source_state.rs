//! Per-source bookkeeping in queue.db: pauses and schedule marks.
//!
//! Owns: the `source_state` table.
//! Invariants: a pause keeps its first reason until a resume; the claim query reads pauses from
//! this table directly (so a pause takes effect at the next claim, in any daemon).

use std::collections::HashMap;

use rusqlite::{Connection, params};
use serde::Serialize;

/// Pause and schedule bookkeeping of a source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceState {
    pub paused_at: Option<i64>,
    pub paused_reason: Option<String>,
    pub paused_by: Option<String>,
    pub last_scheduled_at: Option<i64>,
    pub next_run_at: Option<i64>,
}

pub fn source_states(conn: &Connection) -> rusqlite::Result<HashMap<String, SourceState>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, paused_at, paused_reason, paused_by, last_scheduled_at, next_run_at
         FROM source_state",
    )?;
    stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            SourceState {
                paused_at: r.get(1)?,
                paused_reason: r.get(2)?,
                paused_by: r.get(3)?,
                last_scheduled_at: r.get(4)?,
                next_run_at: r.get(5)?,
            },
        ))
    })?
    .collect()
}

/// Pause a source. `Ok(false)` if it was already paused (the first reason is kept).
pub fn pause(
    conn: &Connection,
    name: &str,
    reason: &str,
    actor: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "INSERT INTO source_state (name, paused_at, paused_reason, paused_by)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET paused_at = excluded.paused_at,
            paused_reason = excluded.paused_reason, paused_by = excluded.paused_by
         WHERE source_state.paused_at IS NULL",
        params![name, now, reason, actor],
    )?;
    Ok(n == 1)
}

/// Resume a source. `Ok(false)` if it was not paused.
pub fn resume(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE source_state SET paused_at = NULL, paused_reason = NULL, paused_by = NULL
         WHERE name = ?1 AND paused_at IS NOT NULL",
        [name],
    )?;
    Ok(n == 1)
}

pub fn set_schedule_marks(
    conn: &Connection,
    name: &str,
    last: Option<i64>,
    next: Option<i64>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO source_state (name, last_scheduled_at, next_run_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET last_scheduled_at = excluded.last_scheduled_at,
            next_run_at = excluded.next_run_at",
    )?
    .execute(params![name, last, next])
    .map(|_| ())
}
