//! The single-instance lock: the home directory itself, plus `orchestrator.lock` in it.
//!
//! Invariants: exactly one daemon per home holds an exclusive advisory lock (flock) on the home
//! directory's own descriptor for its whole life. A directory cannot be removed while it holds
//! futurnal's files and replacing it does not move the lock, so deleting or replacing
//! `orchestrator.lock` can never let a second daemon start. The daemon also locks
//! `orchestrator.lock`, which records its pid and instance id, and checks every
//! `WATCH_INTERVAL` that the path still names the file it holds (dev and inode of its descriptor
//! against the path's): a removed or replaced lock file is logged and put back. The OS releases
//! both locks when the process dies, however it dies, so a stale file never blocks a start.
//! Liveness is "is the directory lock held", never "does a pid exist"; the pid comes from the
//! lock file only while that file is itself locked, else from queue.db's instance row. Every
//! descriptor is close-on-exec and no open follows a symlink at the lock file's name.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::home::{Home, NO_FOLLOW, display_path};

/// How often the daemon checks that `orchestrator.lock` is still its own file.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockInfo {
    pub pid: u32,
    pub instance_id: String,
    pub started_at: i64,
    /// The holder answers SIGUSR1 (`daemon::wake`). Only a daemon does: a restore holding the
    /// lock, or a daemon of a futurnal from before wake-ups (no field: `false`), would be ended
    /// by the signal's default action.
    #[serde(default)]
    pub wakes: bool,
}

/// Held for the daemon's lifetime; dropping it stops the watcher and releases both locks.
#[derive(Debug)]
pub struct InstanceLock {
    _dir: File,
    /// The lock file, shared with the watcher (which may replace it).
    _file: Arc<Mutex<File>>,
    stop: Arc<AtomicBool>,
    watcher: Option<JoinHandle<()>>,
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.watcher.take() {
            w.thread().unpark();
            let _ = w.join();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// Another live process holds the lock (its record, when readable).
    #[error("the home is locked by a running orchestrator{}", .0.as_ref().map(|i| format!(" (pid {})", i.pid)).unwrap_or_default())]
    Held(Option<LockInfo>),
    #[error("cannot take the home's lock: {0}")]
    Io(#[source] std::io::Error),
}

fn open_file(path: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(NO_FOLLOW)
        .open(path)
        .map_err(|e| crate::home::explain_link(path, e))
}

/// The home directory, opened for locking (O_RDONLY on a directory; close-on-exec).
fn open_dir(home: &Home) -> std::io::Result<File> {
    File::open(home.root())
}

/// Take `file`'s exclusive lock, retrying for a moment: `status` and `stop` probe it with a shared
/// lock for an instant, and a probe must never make a start fail. A real holder keeps the lock
/// and still fails us after the deadline.
fn lock_exclusive(file: &File) -> Result<bool, std::io::Error> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(TryLockError::WouldBlock) => return Ok(false),
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Take the lock and record `info` in it.
pub fn acquire(home: &Home, info: &LockInfo) -> Result<InstanceLock, AcquireError> {
    let dir = open_dir(home).map_err(AcquireError::Io)?;
    if !lock_exclusive(&dir).map_err(AcquireError::Io)? {
        return Err(AcquireError::Held(running_info(home)));
    }
    let mut file = open_file(&home.lock_file()).map_err(AcquireError::Io)?;
    // Held by a process that locks only the file: a futurnal from before the directory lock.
    if !lock_exclusive(&file).map_err(AcquireError::Io)? {
        return Err(AcquireError::Held(read_info(&mut file)));
    }
    write_record(&mut file, info).map_err(AcquireError::Io)?;
    let file = Arc::new(Mutex::new(file));
    let stop = Arc::new(AtomicBool::new(false));
    let home_id = dir.metadata().ok().map(|m| (m.dev(), m.ino()));
    let watcher = {
        let (home, info, file, stop) = (home.clone(), info.clone(), file.clone(), stop.clone());
        std::thread::Builder::new()
            .name("futurnal-lock-watch".into())
            .spawn(move || watch(&home, home_id, &info, &file, &stop))
            .map_err(AcquireError::Io)?
    };
    Ok(InstanceLock {
        _dir: dir,
        _file: file,
        stop,
        watcher: Some(watcher),
    })
}

fn write_record(file: &mut File, info: &LockInfo) -> std::io::Result<()> {
    let record = serde_json::to_vec(info).expect("lock info serializes");
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&record)?;
    file.sync_all()
}

fn watch(
    home: &Home,
    home_id: Option<(u64, u64)>,
    info: &LockInfo,
    file: &Mutex<File>,
    stop: &AtomicBool,
) {
    let mut home_reported = false;
    while !stop.load(Ordering::SeqCst) {
        std::thread::park_timeout(WATCH_INTERVAL);
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut held = file.lock().unwrap_or_else(|p| p.into_inner());
        match check_identity(home, &held) {
            Ok(()) => {}
            Err(change) => match recreate(home, info) {
                Ok(new) => {
                    *held = new;
                    tracing::warn!(
                        "the instance lock file {} was {change}; put it back (this daemon \
                         still holds the home's lock, so no second daemon could start)",
                        display_path(&home.lock_file())
                    );
                }
                Err(e) => tracing::error!(
                    "the instance lock file {} was {change} and could not be put back: {e}",
                    display_path(&home.lock_file())
                ),
            },
        }
        drop(held);
        // The home itself moved or was deleted: nothing to repair from here, but say so once.
        let same_home = match (std::fs::metadata(home.root()), home_id) {
            (Ok(now), Some((dev, ino))) => now.dev() == dev && now.ino() == ino,
            _ => false,
        };
        if !same_home && !home_reported {
            home_reported = true;
            tracing::error!(
                "the futurnal home {} was moved or removed while the orchestrator runs; stop it \
                 (`futurnal orchestrator stop`) and put the home back",
                display_path(home.root())
            );
        }
    }
}

/// Does the lock file's path still name the inode we hold? `Err` says what happened to it.
fn check_identity(home: &Home, held: &File) -> Result<(), &'static str> {
    let ours = held.metadata().map_err(|_| "unreadable")?;
    match std::fs::symlink_metadata(home.lock_file()) {
        Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => Ok(()),
        Ok(_) => Err("replaced"),
        Err(_) => Err("removed"),
    }
}

/// A fresh lock file, locked and filled before it is renamed over whatever is at the path (a
/// rename replaces a link itself, never its target).
fn recreate(home: &Home, info: &LockInfo) -> std::io::Result<File> {
    let tmp = {
        let mut s = home.lock_file().into_os_string();
        s.push(format!(".{}.tmp", std::process::id()));
        PathBuf::from(s)
    };
    if let Ok(m) = std::fs::symlink_metadata(&tmp)
        && m.file_type().is_file()
    {
        std::fs::remove_file(&tmp)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(NO_FOLLOW)
        .open(&tmp)?;
    file.try_lock().map_err(|e| match e {
        TryLockError::Error(e) => e,
        TryLockError::WouldBlock => std::io::Error::from(std::io::ErrorKind::ResourceBusy),
    })?;
    write_record(&mut file, info)?;
    std::fs::rename(&tmp, home.lock_file())?;
    Ok(file)
}

#[cfg(test)]
impl InstanceLock {
    /// The inode currently held, for tests of the watcher.
    pub fn held_inode(&self) -> Option<u64> {
        let held = self._file.lock().unwrap_or_else(|p| p.into_inner());
        held.metadata().ok().map(|m| m.ino())
    }
}

fn read_info(file: &mut File) -> Option<LockInfo> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// The running daemon's record: from the lock file while that file is locked by someone (a file
/// nobody holds says nothing), else from queue.db's newest instance not marked stopped.
fn running_info(home: &Home) -> Option<LockInfo> {
    if let Ok(mut file) = OpenOptions::new()
        .read(true)
        .custom_flags(NO_FOLLOW)
        .open(home.lock_file())
        && matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
        && let Some(info) = read_info(&mut file)
    {
        return Some(info);
    }
    let db = crate::queue::QueueDb::read_existing(&home.queue_db())
        .ok()
        .flatten()?;
    let row = db.latest_instance().ok().flatten()?;
    if row.stopped_at.is_some() {
        return None;
    }
    Some(LockInfo {
        pid: u32::try_from(row.pid).ok()?,
        instance_id: row.instance_id,
        started_at: row.started_at,
        wakes: false,
    })
}

/// Is the lock held (by a daemon, or one from before the directory lock)?
fn is_held(home: &Home) -> bool {
    let probe = |file: std::io::Result<File>| match file {
        Ok(f) => matches!(f.try_lock_shared(), Err(TryLockError::WouldBlock)),
        Err(_) => false,
    };
    probe(open_dir(home))
        || probe(
            OpenOptions::new()
                .read(true)
                .custom_flags(NO_FOLLOW)
                .open(home.lock_file()),
        )
}

/// Who holds the lock right now, if anyone. `Some(None)` means held but no record says by whom.
pub fn holder(home: &Home) -> Option<Option<LockInfo>> {
    if !is_held(home) {
        return None;
    }
    // The holder writes its record right after locking (and puts a removed lock file back
    // within `WATCH_INTERVAL`); give it a moment.
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        if let Some(info) = running_info(home) {
            return Some(Some(info));
        }
        if Instant::now() > deadline {
            return Some(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait until nobody holds the lock, up to `timeout`. True when released.
pub fn wait_released(home: &Home, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_held(home) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> LockInfo {
        LockInfo {
            pid: std::process::id(),
            instance_id: "test".into(),
            started_at: 1,
            wakes: false,
        }
    }

    /// A lock record written before wake-ups existed never says its holder answers SIGUSR1.
    #[test]
    fn an_older_lock_record_does_not_claim_wake_ups() {
        let old: LockInfo =
            serde_json::from_str(r#"{"pid":1,"instance_id":"x","started_at":2}"#).unwrap();
        assert!(!old.wakes);
        let new = LockInfo { wakes: true, ..old };
        let again: LockInfo = serde_json::from_slice(&serde_json::to_vec(&new).unwrap()).unwrap();
        assert!(again.wakes);
    }

    #[test]
    fn a_removed_lock_file_still_refuses_a_second_holder_and_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let lock = acquire(&home, &info()).ok().unwrap();
        std::fs::remove_file(home.lock_file()).unwrap();
        assert!(
            matches!(acquire(&home, &info()), Err(AcquireError::Held(_))),
            "a second holder got the lock after the lock file was removed"
        );
        assert!(holder(&home).is_some());
        // The watcher puts the file back, locked and naming us.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let back = std::fs::symlink_metadata(home.lock_file())
                .is_ok_and(|m| Some(m.ino()) == lock.held_inode());
            if back {
                break;
            }
            assert!(Instant::now() < deadline, "the lock file was not put back");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(holder(&home), Some(Some(info())));
        drop(lock);
        assert!(holder(&home).is_none());
        assert!(acquire(&home, &info()).is_ok());
    }

    #[test]
    fn a_planted_link_at_the_lock_file_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("home"));
        std::fs::create_dir(home.root()).unwrap();
        let target = dir.path().join("victim");
        std::fs::write(&target, "keep me").unwrap();
        let lock = acquire(&home, &info()).ok().unwrap();
        std::fs::remove_file(home.lock_file()).unwrap();
        std::os::unix::fs::symlink(&target, home.lock_file()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::symlink_metadata(home.lock_file()).is_ok_and(|m| m.file_type().is_symlink())
        {
            assert!(Instant::now() < deadline, "the planted link stayed");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        drop(lock);
    }
}
