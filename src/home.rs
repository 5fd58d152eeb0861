//! The futurnal home directory and everything in it.
//!
//! Owns: resolving the home (`FUTURNAL_HOME`, else `~/.futurnal`), the names of the files inside it,
//! and creating them with private permissions.
//! Invariants: the home and its directories are created 0700; files futurnal creates (queue.db,
//! config, logs, lock, recovery marker) are created 0600. Nothing here deletes operator data.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{OperatorError, Result};
use crate::runbook::topics;

pub const HOME_ENV: &str = "FUTURNAL_HOME";

/// Paths inside one futurnal home.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `FUTURNAL_HOME` if set and non-empty, else `$HOME/.futurnal`.
    pub fn resolve() -> Result<Home> {
        if let Some(dir) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
            let dir = PathBuf::from(dir);
            let dir = if dir.is_absolute() {
                dir
            } else {
                std::env::current_dir()
                    .map_err(|e| {
                        OperatorError::failure(
                            format!("cannot resolve relative FUTURNAL_HOME: {e}"),
                            "set FUTURNAL_HOME to an absolute path",
                            topics::HOME_AND_FILES,
                        )
                    })?
                    .join(dir)
            };
            return Ok(Home { root: dir });
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => Ok(Home {
                root: PathBuf::from(h).join(".futurnal"),
            }),
            None => Err(OperatorError::failure(
                "neither FUTURNAL_HOME nor HOME is set, so futurnal cannot find its home directory",
                "set FUTURNAL_HOME to the directory futurnal should use (for example ~/.futurnal)",
                topics::HOME_AND_FILES,
            )),
        }
    }

    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn queue_db(&self) -> PathBuf {
        self.root.join("queue.db")
    }
    pub fn store_db(&self) -> PathBuf {
        self.root.join("store.db")
    }
    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }
    pub fn default_config(&self) -> PathBuf {
        self.config_dir().join("orchestrator.yaml")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn log_file(&self) -> PathBuf {
        self.logs_dir().join("orchestrator.log")
    }
    pub fn audit_log(&self) -> PathBuf {
        self.logs_dir().join("audit.log")
    }
    pub fn backups_dir(&self) -> PathBuf {
        self.root.join("backups")
    }
    pub fn recovery_marker(&self) -> PathBuf {
        self.root.join(".orchestrator_recovery")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("orchestrator.lock")
    }

    /// Create the home and its directories (0700) and prove the home is writable.
    pub fn ensure_layout(&self) -> Result<()> {
        for dir in [
            self.root.clone(),
            self.config_dir(),
            self.logs_dir(),
            self.backups_dir(),
        ] {
            create_private_dir(&dir).map_err(|e| not_writable(&dir, &e))?;
        }
        // A home we can list but not write into fails later in confusing ways; fail here instead.
        let probe = self
            .root
            .join(format!(".write-probe-{}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe)
        {
            Ok(_) => {
                let _ = fs::remove_file(&probe);
                Ok(())
            }
            Err(e) => Err(not_writable(&self.root, &e)),
        }
    }
}

fn not_writable(path: &Path, err: &io::Error) -> OperatorError {
    OperatorError::failure(
        format!(
            "the futurnal home is not writable: {}: {err}",
            display_path(path)
        ),
        "nothing was started or changed; give your user write access (chmod u+rwx) or point \
         FUTURNAL_HOME at a writable directory",
        topics::HOME_AND_FILES,
    )
}

/// `mkdir -p` with mode 0700 for every directory it creates.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Open (creating if needed) a file that must stay private to the user.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Write a whole file atomically (temp file + rename) with mode 0600.
pub fn write_private_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// Bytes available to an unprivileged user on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(path).map_err(io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Permission bits of a path, for status and health output.
pub fn mode_of(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

/// Show a path the way an operator would type it: `~/...` when under `$HOME`.
pub fn display_path(path: &Path) -> String {
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        let home = PathBuf::from(home);
        if let Ok(rest) = path.strip_prefix(&home) {
            return if rest.as_os_str().is_empty() {
                "~".to_string()
            } else {
                format!("~/{}", rest.display())
            };
        }
    }
    path.display().to_string()
}
