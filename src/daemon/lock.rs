//! The single-instance lock: `orchestrator.lock` in the home.
//!
//! Invariants: exactly one daemon per home holds an exclusive advisory lock on this file for its
//! whole life; the OS releases it when the process dies, however it dies, so a stale file never
//! blocks a start. The file records the holder's pid and instance id; only a held lock makes that
//! record meaningful. The descriptor is close-on-exec, so child processes never inherit the lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::home::Home;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockInfo {
    pub pid: u32,
    pub instance_id: String,
    pub started_at: i64,
}

/// Held for the daemon's lifetime; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

pub enum AcquireError {
    /// Another live process holds the lock (its record, when readable).
    Held(Option<LockInfo>),
    Io(std::io::Error),
}

fn open(home: &Home) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(home.lock_file())
}

/// Take the lock and record `info` in it.
pub fn acquire(home: &Home, info: &LockInfo) -> Result<InstanceLock, AcquireError> {
    let mut file = open(home).map_err(AcquireError::Io)?;
    // `status` and `stop` probe the lock for an instant; retry briefly so a probe never makes a
    // start fail. A real holder keeps the lock for good and still fails us after the deadline.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(TryLockError::WouldBlock) => return Err(AcquireError::Held(read_info(&mut file))),
            Err(TryLockError::Error(e)) => return Err(AcquireError::Io(e)),
        }
    }
    let record = serde_json::to_vec(info).expect("lock info serializes");
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(&record))
        .and_then(|_| file.sync_all())
        .map_err(AcquireError::Io)?;
    Ok(InstanceLock { _file: file })
}

fn read_info(file: &mut File) -> Option<LockInfo> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// Who holds the lock right now, if anyone. `Some(None)` means held but the record is unreadable.
pub fn holder(home: &Home) -> Option<Option<LockInfo>> {
    let mut file = match OpenOptions::new().read(true).open(home.lock_file()) {
        Ok(f) => f,
        Err(_) => return None,
    };
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => {
            // The holder writes its record right after locking; give it a moment.
            let deadline = Instant::now() + Duration::from_millis(500);
            loop {
                if let Some(info) = read_info(&mut file) {
                    return Some(Some(info));
                }
                if Instant::now() > deadline {
                    return Some(None);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Err(TryLockError::Error(_)) => None,
    }
}

/// Wait until nobody holds the lock, up to `timeout`. True when released.
pub fn wait_released(home: &Home, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if holder(home).is_none() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
