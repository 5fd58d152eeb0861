//! The daemon's scheduling step: queueing the runs whose schedules are due.
//!
//! Owns: `Scheduler::enqueue_due`, which queues due runs and records each source's schedule
//! marks in queue.db (what `sources list` shows as next run).
//! Invariants: due times follow `schedule::Schedule` (a missed slot runs once after downtime); a
//! paused or disabled source is never scheduled (after a resume, a slot missed while paused runs
//! once, like after downtime); a due run joins a run already waiting rather than adding one.

use std::collections::HashMap;

use rusqlite::Connection;

use crate::config::SourceConfig;
use crate::jobs;
use crate::schedule::Schedule;

/// The daemon's schedules: one per enabled source whose schedule parses.
#[derive(Debug, Clone, Default)]
pub struct Scheduler {
    schedules: HashMap<String, Schedule>,
}

impl Scheduler {
    pub fn new(sources: &[SourceConfig]) -> Scheduler {
        Scheduler {
            schedules: sources
                .iter()
                .filter_map(|s| {
                    Schedule::parse(&s.schedule)
                        .ok()
                        .map(|p| (s.name.clone(), p))
                })
                .collect(),
        }
    }

    /// One scheduling step at `now`: queue a run of every enabled, unpaused source whose
    /// schedule is due (joining a waiting run if there is one), and record the marks `sources
    /// list` shows. Problems are logged; the next step tries again.
    pub fn enqueue_due(&self, conn: &Connection, sources: &[SourceConfig], now: i64) {
        let states = match jobs::source_states(conn) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot read source state: {e}");
                return;
            }
        };
        for source in sources.iter().filter(|s| s.enabled) {
            let Some(schedule) = self.schedules.get(&source.name) else {
                continue;
            };
            if matches!(schedule, Schedule::Manual) {
                continue;
            }
            let state = states.get(&source.name).cloned().unwrap_or_default();
            let mut last = state.last_scheduled_at;
            if last.is_none() && matches!(schedule, Schedule::Cron(_)) {
                // A cron source's first slot is the first one after futurnal first saw it.
                last = Some(now);
            }
            if state.paused_at.is_none() && schedule.is_due(last, now) {
                match jobs::enqueue_run(conn, source, "schedule", "scheduler", now) {
                    Ok(e) => {
                        tracing::info!(source = %source.name, job = e.id(), "scheduled run");
                        last = Some(now);
                    }
                    Err(e) => tracing::warn!(source = %source.name, "cannot schedule a run: {e}"),
                }
            }
            let next = schedule.next_due(last).map(|t| t.max(now));
            if (last != state.last_scheduled_at || next != state.next_run_at)
                && let Err(e) = jobs::set_schedule_marks(conn, &source.name, last, next)
            {
                tracing::warn!("cannot record the schedule of {}: {e}", source.name);
            }
        }
    }
}
