//! The process's one pool of parse threads, shared by every job that runs in it.
//!
//! Owns: the pool (created on first use, `size()` threads named `futurnal-parse-N`) and the
//! count of parse workers alive.
//! Invariants: however many jobs run at once, at most `size()` threads parse (8 jobs on 8 CPUs
//! use 8 parse threads, not 64); `ingest` hands the pool small groups of items from the job's
//! own thread, which stays the only writer of its store; a pool thread never blocks on a job
//! (each job's result channel has room for everything it has in flight), so a job whose writer
//! waits on a locked store cannot hold up the others; a panic in a task is caught (per item in
//! `ingest`, else by the scope that spawned it) and never takes a pool thread down.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::failure::{ErrorClass, Failure};

/// The pool's threads: one per CPU this process may use (cgroup quota and affinity included).
pub fn size() -> usize {
    static SIZE: OnceLock<usize> = OnceLock::new();
    *SIZE.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// The pool, started on first use. A failure to start its threads (a thread limit) is the
/// job's transient failure, and the next job tries again.
pub fn get() -> Result<&'static rayon_core::ThreadPool, Failure> {
    static POOL: OnceLock<rayon_core::ThreadPool> = OnceLock::new();
    if let Some(pool) = POOL.get() {
        return Ok(pool);
    }
    let pool = rayon_core::ThreadPoolBuilder::new()
        .num_threads(size())
        .thread_name(|i| format!("futurnal-parse-{i}"))
        .build()
        .map_err(|e| {
            Failure::new(
                ErrorClass::ResourceExhausted,
                format!("cannot start the parse threads: {e}"),
            )
        })?;
    // Two first runs may race: one pool is kept, the other's threads exit when it drops.
    Ok(POOL.get_or_init(|| pool))
}

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Held by a parse task while it runs: counts parse workers alive.
pub struct Worker(());

impl Worker {
    pub fn enter() -> Worker {
        let now = LIVE.fetch_add(1, Ordering::SeqCst) + 1;
        PEAK.fetch_max(now, Ordering::SeqCst);
        Worker(())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The most parse workers ever alive at once in this process (tests check it against `size()`).
#[cfg(test)]
pub fn peak() -> usize {
    PEAK.load(Ordering::SeqCst)
}
