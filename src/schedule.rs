//! Schedules: when a source's next run is due.
//!
//! Owns: parsing `manual`, intervals (`15m`, `1h30m`) and five-field cron expressions (local
//! time), and the due-time rule. A leaf: configuration validation and the scheduler both use it.
//! Invariants: a due time is computed from the last time the source was scheduled, so after any
//! downtime a missed schedule runs once, not once per missed slot; the rule is a pure function of
//! (schedule, last scheduled, now) so it is tested without clocks or sleeps; an interval is
//! between 1s and `MAX_INTERVAL`, never truncated.

use std::str::FromStr;

use chrono::TimeZone;

/// The longest interval schedule: a year and a day. Longer ones are typos (or overflows), and
/// `manual` says "never" better.
pub const MAX_INTERVAL: jiff::SignedDuration = jiff::SignedDuration::from_hours(366 * 24);

#[derive(Debug, Clone)]
pub enum Schedule {
    Manual,
    /// Every so many milliseconds.
    Every(i64),
    Cron(Box<croner::Cron>),
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        if t == "manual" {
            return Ok(Schedule::Manual);
        }
        if let Ok(d) = t.parse::<jiff::SignedDuration>() {
            if d.as_secs() < 1 {
                return Err(format!("interval `{t}` is too short: use at least 1s"));
            }
            if d > MAX_INTERVAL {
                return Err(format!(
                    "interval `{t}` is too long: use at most {}h (366 days)",
                    MAX_INTERVAL.as_hours()
                ));
            }
            // In range, so the milliseconds fit an i64 with room for any due time.
            return Ok(Schedule::Every(d.as_millis() as i64));
        }
        if t.split_whitespace().count() == 5 {
            return croner::Cron::from_str(t)
                .map(|c| Schedule::Cron(Box::new(c)))
                .map_err(|e| format!("`{t}` is not a valid cron expression: {e}"));
        }
        Err(format!(
            "`{t}` is not a schedule: use `manual`, an interval such as `15m`, or a five-field cron \
             expression such as `*/30 * * * *`"
        ))
    }

    /// When the next run is due. `last` is when the source was last scheduled (or, for a cron
    /// schedule never run, when futurnal first saw it); `None` for an interval means "now".
    pub fn next_due(&self, last: Option<i64>) -> Option<i64> {
        match self {
            Schedule::Manual => None,
            Schedule::Every(ms) => Some(last.map_or(i64::MIN, |l| l.saturating_add(*ms))),
            Schedule::Cron(cron) => {
                let base = chrono::Local.timestamp_millis_opt(last?).single()?;
                cron.find_next_occurrence(&base, false)
                    .ok()
                    .map(|t| t.timestamp_millis())
            }
        }
    }

    /// Is a run due at `now`?
    pub fn is_due(&self, last: Option<i64>, now: i64) -> bool {
        self.next_due(last).is_some_and(|t| t <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn parses_the_three_forms() {
        assert!(matches!(Schedule::parse("manual"), Ok(Schedule::Manual)));
        assert!(matches!(Schedule::parse("15m"), Ok(Schedule::Every(ms)) if ms == 15 * MIN));
        assert!(matches!(Schedule::parse("1h30m"), Ok(Schedule::Every(ms)) if ms == 90 * MIN));
        assert!(matches!(
            Schedule::parse("*/30 * * * *"),
            Ok(Schedule::Cron(_))
        ));
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("0s").is_err());
        assert!(Schedule::parse("sometimes").is_err());
    }

    #[test]
    fn intervals_are_bounded_instead_of_truncated() {
        assert!(
            matches!(Schedule::parse("8784h"), Ok(Schedule::Every(ms)) if ms == 8784 * 60 * MIN)
        );
        let err = Schedule::parse("8785h").unwrap_err();
        assert_eq!(
            err,
            "interval `8785h` is too long: use at most 8784h (366 days)"
        );
        // Once truncated by `as i64` into a nonsense (even negative) interval.
        assert!(Schedule::parse("2562047788015215h").is_err());
        assert!(Schedule::parse("999999999999h").is_err());
    }

    #[test]
    fn interval_runs_at_first_sight_then_every_interval() {
        let s = Schedule::parse("15m").unwrap();
        assert!(s.is_due(None, 0));
        assert!(!s.is_due(Some(1_000_000), 1_000_000 + 14 * MIN));
        assert!(s.is_due(Some(1_000_000), 1_000_000 + 15 * MIN));
    }

    #[test]
    fn missed_runs_collapse_into_one() {
        // Down for ten intervals: one run is due; once it is scheduled, the next is a full
        // interval away, not nine more immediately.
        let s = Schedule::parse("15m").unwrap();
        let last = 0;
        let now = 150 * MIN;
        assert!(s.is_due(Some(last), now));
        assert!(!s.is_due(Some(now), now + MIN));
        let c = Schedule::parse("*/10 * * * *").unwrap();
        assert!(c.is_due(Some(0), 150 * MIN));
        assert!(!c.is_due(Some(150 * MIN), 150 * MIN + MIN));
    }

    #[test]
    fn cron_uses_wall_clock_slots() {
        let c = Schedule::parse("0 * * * *").unwrap();
        // Whatever the local offset, the next hourly slot is within the hour.
        let next = c.next_due(Some(0)).unwrap();
        assert!(next > 0 && next <= 60 * MIN, "{next}");
        assert!(Schedule::Manual.next_due(Some(0)).is_none());
    }
}
