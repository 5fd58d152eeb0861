//! The wall clock every table of futurnal's databases records time with.
//!
//! Owns: `now_ms`, milliseconds since the Unix epoch (UTC). A leaf module, so that the store, the
//! queue and the daemon share one clock without depending on each other.

/// Milliseconds since the Unix epoch, as stored in queue.db and store.db.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
