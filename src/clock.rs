//! The wall clock every table of futurnal's databases records time with.
//!
//! Owns: `now_ms`, milliseconds since the Unix epoch (UTC), and `unique_ms`, the same clock made
//! strictly increasing within the process. A leaf module, so that the store, the queue and the
//! daemon share one clock without depending on each other.

/// Milliseconds since the Unix epoch, as stored in queue.db and store.db.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// `now_ms`, but strictly greater than every earlier `unique_ms` of this process: two store
/// transactions in the same millisecond still get different times, so "inserted by this
/// transaction" can be told from "inserted by an earlier one" by the time alone.
pub fn unique_ms() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = now_ms();
    let previous = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    now.max(previous + 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unique_ms_never_repeats_across_threads() {
        let mut all: Vec<i64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..1000).map(|_| super::unique_ms()).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
