//! What a failed attempt leads to: the retry decision, as a pure function.
//!
//! Owns: `decide`, from a failure, the attempts used and the source's retry policy, to one of
//! defer / retry at a time / quarantine, with the text the job's history records.
//! Invariants: a busy store never uses up an attempt; a permanent class is never retried; a
//! transient one is retried until `attempts` reaches `max_attempts`; the delay is the policy's
//! backoff with jitter keyed by the job (or, for an item, the item), so retries of many jobs or
//! items spread out instead of landing in the same millisecond.

use crate::config::Retry;
use crate::failure::{ErrorClass, Failure, retry_delay_ms};

/// How long a job whose store was busy waits before it tries again.
pub const BUSY_RETRY_MS: i64 = 5_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not the job's fault: back to pending at `at`, the attempt not counted.
    Defer { at: i64, text: String },
    /// Failed; retried by itself at `at`.
    Retry { at: i64, text: String },
    /// No retry: an operator must act.
    Quarantine { text: String },
}

/// The decision for a job that failed with `failure` on attempt `attempts` of `max_attempts`.
/// `jitter_key` spreads retries: the job's id, or for an item the hash of its key.
pub fn decide(
    failure: &Failure,
    attempts: i64,
    max_attempts: i64,
    policy: &Retry,
    jitter_key: i64,
    now: i64,
) -> Decision {
    if failure.class == ErrorClass::Busy {
        let at = now + BUSY_RETRY_MS;
        return Decision::Defer {
            at,
            text: format!(
                "{failure}; retry later at {} (attempt not counted)",
                crate::display::timestamp(at)
            ),
        };
    }
    if failure.class.is_transient() && attempts < max_attempts {
        let at = now + retry_delay_ms(policy, attempts, jitter_key);
        return Decision::Retry {
            at,
            text: format!(
                "{failure}; retry {} of {max_attempts} at {}",
                attempts + 1,
                crate::display::timestamp(at)
            ),
        };
    }
    Decision::Quarantine {
        text: if failure.class.is_transient() {
            format!("{failure}; gave up after {attempts} attempts")
        } else {
            format!("{failure} (permanent: not retried)")
        },
    }
}

/// The jitter key of an item: stable for the item, different between items.
pub fn item_key(source: &str, item: &str) -> i64 {
    let hash = blake3::hash(format!("{source}\0{item}").as_bytes());
    i64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Retry {
        Retry {
            max_attempts: 3,
            base_delay_seconds: 60,
            backoff_multiplier: 2.0,
            max_delay_seconds: 3600,
            jitter: 0.2,
        }
    }

    #[test]
    fn busy_defers_transient_retries_until_the_last_attempt_permanent_never_retries() {
        let busy = Failure::new(ErrorClass::Busy, "locked");
        assert!(matches!(
            decide(&busy, 3, 3, &policy(), 1, 0),
            Decision::Defer {
                at: BUSY_RETRY_MS,
                ..
            }
        ));
        let io = Failure::new(ErrorClass::IoError, "gone");
        assert!(matches!(
            decide(&io, 1, 3, &policy(), 1, 0),
            Decision::Retry { .. }
        ));
        assert!(matches!(
            decide(&io, 2, 3, &policy(), 1, 0),
            Decision::Retry { .. }
        ));
        let Decision::Quarantine { text } = decide(&io, 3, 3, &policy(), 1, 0) else {
            panic!("the last attempt quarantines");
        };
        assert!(text.ends_with("gave up after 3 attempts"), "{text}");
        let parse = Failure::new(ErrorClass::ParseError, "bad");
        let Decision::Quarantine { text } = decide(&parse, 1, 3, &policy(), 1, 0) else {
            panic!("permanent classes are not retried");
        };
        assert!(text.ends_with("(permanent: not retried)"), "{text}");
    }

    #[test]
    fn retries_of_one_runs_items_spread_out() {
        let io = Failure::new(ErrorClass::IoError, "gone");
        let times: std::collections::HashSet<i64> = (0..50)
            .map(|i| {
                let key = item_key("notes", &format!("note {i}.md"));
                match decide(&io, 1, 3, &policy(), key, 0) {
                    Decision::Retry { at, .. } => at,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert!(
            times.len() > 40,
            "only {} distinct retry times",
            times.len()
        );
    }
}
