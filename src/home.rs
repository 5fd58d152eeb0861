//! The futurnal home directory and everything in it.
//!
//! Owns: resolving the home (`FUTURNAL_HOME`, else `~/.futurnal`), the names of the files inside it,
//! creating them with private permissions, and checking an existing home at start (`secure`).
//! Invariants: the home and its directories are created 0700; files futurnal creates (queue.db,
//! config, logs, lock, recovery marker) are created 0600 and opened without following a symlink
//! (O_NOFOLLOW), so a link planted at one of those names is never written through. At every start
//! `secure` makes the whole home private again: anything looser than 0700/0600 is tightened
//! (logged here, audited by the start that called it); anything owned by another user, or a link
//! or odd file where futurnal writes, refuses the start. Nothing here deletes operator data, and no
//! check follows a symlink. Failures are `HomeError`s (and `LinkRefused`): facts only; what is
//! safe to do and which runbook topic is the operator-facing layer's (`error`).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const HOME_ENV: &str = "FUTURNAL_HOME";

/// Why the home cannot be found or used: the facts, for `error` to word (what is safe to do and
/// which runbook topic) for the operator.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// `FUTURNAL_HOME` is relative and the working directory cannot be read.
    #[error("cannot resolve relative FUTURNAL_HOME: {0}")]
    RelativeHome(#[source] io::Error),
    /// Neither `FUTURNAL_HOME` nor `HOME` is set.
    #[error("neither FUTURNAL_HOME nor HOME is set, so futurnal cannot find its home directory")]
    Unset,
    /// A directory of the home cannot be created, listed or written.
    #[error("the futurnal home is not writable: {}: {source}", display_path(path))]
    NotWritable { path: PathBuf, source: io::Error },
    /// `secure` could not take group and other permissions away from a path.
    #[error("cannot make {} private (mode {from:o}): {source}", display_path(path))]
    CannotTighten {
        path: PathBuf,
        from: u32,
        source: io::Error,
    },
    /// The home (`is_root`) or a path in it is owned by another user.
    #[error(
        "{}{} belongs to another user (uid {uid}; you are uid {me})",
        if *is_root { "the futurnal home " } else { "" },
        if *is_root { display_path(path) } else { format!("{} in the futurnal home", display_path(path)) }
    )]
    NotYours {
        path: PathBuf,
        is_root: bool,
        uid: u32,
        me: u32,
    },
    /// A link, special file or the wrong kind of file stands where futurnal writes.
    #[error("{} is {found}, where futurnal keeps {expected}", display_path(path))]
    OddEntry {
        path: PathBuf,
        found: &'static str,
        expected: &'static str,
    },
    /// `FUTURNAL_HOME` names `/` or the user's own home, which `secure` would make private whole.
    #[error(
        "FUTURNAL_HOME is {}, a directory futurnal does not own: at start futurnal makes \
         everything in its home private",
        .0.display()
    )]
    NotOwnDirectory(PathBuf),
}

type Result<T, E = HomeError> = std::result::Result<T, E>;

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
                    .map_err(HomeError::RelativeHome)?
                    .join(dir)
            };
            return Ok(Home { root: dir });
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => Ok(Home {
                root: PathBuf::from(h).join(".futurnal"),
            }),
            None => Err(HomeError::Unset),
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
    /// Written when a running daemon's background integrity check failed: the next start checks
    /// every page before it accepts work (see `daemon::integrity`).
    pub fn integrity_marker(&self) -> PathBuf {
        self.root.join(".integrity_check_failed")
    }
    /// Space kept allocated beside queue.db and released on a full disk, so a job's outcome can
    /// still be recorded there (see `workers`).
    pub fn queue_reserve(&self) -> PathBuf {
        self.root.join("queue.db-reserve")
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
            create_private_dir(&dir).map_err(|e| not_writable(&dir, e))?;
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
            Err(e) => Err(not_writable(&self.root, e)),
        }
    }
}

fn not_writable(path: &Path, source: io::Error) -> HomeError {
    HomeError::NotWritable {
        path: path.to_path_buf(),
        source,
    }
}

/// `mkdir -p` with mode 0700 for every directory it creates.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Open (creating if needed) a file that must stay private to the user. Never follows a symlink
/// at `path` (ELOOP instead): a link planted at a log's name must not redirect futurnal's writes.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(NO_FOLLOW)
        .open(path)
        .map_err(|e| explain_link(path, e))
}

/// ELOOP from an O_NOFOLLOW open means "this name is a link": say that, not "too many levels".
/// The returned error wraps a `LinkRefused`, so the operator-facing layer can tell it apart
/// (`LinkRefused::within`) and point to the runbook topic for it.
pub fn explain_link(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
        io::Error::new(e.kind(), LinkRefused(path.to_path_buf()))
    } else {
        e
    }
}

/// A symbolic link stood where futurnal writes a file, and the O_NOFOLLOW open refused it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{} is a symbolic link and futurnal never writes through one",
    display_path(.0)
)]
pub struct LinkRefused(pub PathBuf);

impl LinkRefused {
    /// The `LinkRefused` an `io::Error` from `explain_link` carries, if any.
    pub fn within(e: &io::Error) -> Option<&LinkRefused> {
        e.get_ref().and_then(|inner| inner.downcast_ref())
    }
}

/// `O_NOFOLLOW | O_CLOEXEC` for `OpenOptions::custom_flags` (std adds O_CLOEXEC itself; saying it
/// keeps the intent visible).
pub const NO_FOLLOW: i32 =
    (rustix::fs::OFlags::NOFOLLOW.bits() | rustix::fs::OFlags::CLOEXEC.bits()) as i32;

/// Write a whole file atomically (temp file + rename) with mode 0600.
pub fn write_private_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    {
        // A leftover temp file from a crashed writer is ours to replace; a link there is not.
        match fs::symlink_metadata(&tmp) {
            Ok(m) if m.file_type().is_file() => fs::remove_file(&tmp)?,
            _ => {}
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(NO_FOLLOW)
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

/// One path `secure` changed: its permission bits before and after.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tightened {
    /// Relative to the home; `.` is the home itself.
    pub path: String,
    pub from: u32,
    pub to: u32,
}

impl Tightened {
    /// The details of its `home.permissions_tightened` audit record (modes in octal).
    pub fn audit_details(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.path,
            "from": format!("{:o}", self.from),
            "to": format!("{:o}", self.to),
        })
    }
}

impl std::fmt::Display for Tightened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "made {} private: mode {:o} -> {:o}",
            self.path, self.from, self.to
        )
    }
}

/// What futurnal does with a name in the home, which decides what may stand there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// futurnal writes this file: it must be a regular file, never a link.
    WrittenFile,
    /// futurnal creates files in this directory: it must be a real directory, never a link.
    WrittenDir,
    /// Not written by futurnal (the configuration, an operator's own file): checked and made
    /// private, but a link here is left alone and never followed.
    Other,
}

/// The databases and the files SQLite keeps next to them.
pub const DATABASES: &[&str] = &["queue.db", "store.db"];
pub const DB_COMPANIONS: &[&str] = &["-wal", "-shm", "-journal"];

fn role(rel: &Path) -> Role {
    let mut parts = rel.components().map(|c| c.as_os_str().to_string_lossy());
    let (Some(first), second, None) = (parts.next(), parts.next(), parts.next()) else {
        return Role::Other;
    };
    match (first.as_ref(), second.as_deref()) {
        ("logs" | "backups", None) => Role::WrittenDir,
        (
            "orchestrator.lock"
            | ".orchestrator_recovery"
            | ".integrity_check_failed"
            | "queue.db-reserve",
            None,
        ) => Role::WrittenFile,
        (name, None)
            if DATABASES.iter().any(|db| {
                name == *db
                    || DB_COMPANIONS
                        .iter()
                        .any(|c| name.strip_prefix(db) == Some(c))
            }) =>
        {
            Role::WrittenFile
        }
        // The log, its rotated copies and the audit log.
        ("logs", Some(name))
            if name.starts_with("orchestrator.log") || name.starts_with("audit.log") =>
        {
            Role::WrittenFile
        }
        _ => Role::Other,
    }
}

/// Make the home private, at every start, before anything in it is written. Walks the home
/// without following a symlink: every directory must end up 0700 (or tighter) and every file 0600
/// (or tighter); anything looser has its group and other bits removed (the caller records a
/// `home.permissions_tightened` audit record per path). A database's -wal/-shm/-journal that its owner cannot
/// read and write while the database itself can be (a leftover of a `chmod 400`, say) gets 0600
/// back too, since SQLite cannot open the database without it. Refuses, changing nothing, when
/// anything in the home belongs to another user, or a link or special file stands where futurnal
/// writes. Logs what it changed (call it once the daemon's log is open) and returns it; the caller
/// audits each (`Tightened::audit_details`), so the home does not depend on the audit log.
pub fn secure(home: &Home) -> Result<Vec<Tightened>> {
    let result = secure_quietly(home);
    match &result {
        Ok(done) => log_tightened(done),
        Err(e) => tracing::error!("{e}"),
    }
    result
}

fn secure_quietly(home: &Home) -> Result<Vec<Tightened>> {
    use rustix::fs::{Mode, OFlags};
    refuse_whole_home_dir(home)?;
    let root = rustix::fs::open(
        home.root(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| not_writable(home.root(), e.into()))?;
    let mut plan = Vec::new();
    let st = rustix::fs::fstat(&root).map_err(|e| not_writable(home.root(), e.into()))?;
    check_owner(home, Path::new("."), st.st_uid)?;
    plan_mode(Path::new("."), &st, &mut plan);
    walk(home, &root, Path::new(""), 0, &mut plan)?;
    plan_companions(&root, &mut plan);
    // Only a home that passed every check is changed at all.
    let mut done = Vec::new();
    for p in plan {
        let result = if p.rel == Path::new(".") {
            rustix::fs::fchmod(&root, Mode::from_raw_mode(p.to)).map_err(io::Error::from)
        } else {
            chmod_no_follow(&root, &p.rel, p.ino, p.to)
        };
        match result {
            Ok(()) => done.push(Tightened {
                path: p.rel.display().to_string(),
                from: p.from,
                to: p.to,
            }),
            Err(source) => {
                return Err(HomeError::CannotTighten {
                    path: home.root().join(&p.rel),
                    from: p.from,
                    source,
                });
            }
        }
    }
    Ok(done)
}

/// Log what `secure` changed.
pub fn log_tightened(done: &[Tightened]) {
    for t in done {
        tracing::warn!(
            path = %t.path,
            from = %format!("{:o}", t.from),
            to = %format!("{:o}", t.to),
            "made a path in the home private"
        );
    }
}

struct Planned {
    rel: PathBuf,
    ino: u64,
    from: u32,
    to: u32,
}

fn plan_mode(rel: &Path, st: &rustix::fs::Stat, plan: &mut Vec<Planned>) {
    let from = st.st_mode & 0o7777;
    // Group and other bits, and setuid/setgid/sticky: none belongs in a private home.
    if from & 0o7077 != 0 {
        plan.push(Planned {
            rel: rel.to_path_buf(),
            ino: st.st_ino,
            from,
            to: from & 0o700,
        });
    }
}

fn walk(
    home: &Home,
    dir: &std::os::fd::OwnedFd,
    rel: &Path,
    depth: usize,
    plan: &mut Vec<Planned>,
) -> Result<()> {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    // Far deeper than anything futurnal creates; stops a pathological tree from recursing forever.
    const MAX_DEPTH: usize = 64;
    let listing_failed = |e: rustix::io::Errno| not_writable(&home.root().join(rel), e.into());
    let entries = rustix::fs::Dir::read_from(dir).map_err(listing_failed)?;
    for entry in entries {
        let entry = entry.map_err(listing_failed)?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let child = rel.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(not_writable(&home.root().join(&child), e.into())),
        };
        check_owner(home, &child, st.st_uid)?;
        let kind = FileType::from_raw_mode(st.st_mode);
        match (kind, role(&child)) {
            (FileType::Directory, Role::WrittenFile)
            | (FileType::RegularFile, Role::WrittenDir) => {
                return Err(odd_entry(home, &child, kind));
            }
            (FileType::Directory, _) => {
                plan_mode(&child, &st, plan);
                if depth < MAX_DEPTH {
                    let sub = rustix::fs::openat(
                        dir,
                        name,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    );
                    match sub {
                        Ok(sub) => walk(home, &sub, &child, depth + 1, plan)?,
                        // A directory without owner read/execute (mode 0o0xx): nothing in it
                        // can be listed, but its own bits were still checked above.
                        Err(rustix::io::Errno::ACCESS) => {}
                        Err(e) => {
                            return Err(not_writable(&home.root().join(&child), e.into()));
                        }
                    }
                }
            }
            (FileType::RegularFile, _) => plan_mode(&child, &st, plan),
            // Links and special files are never followed or changed; where futurnal writes, they
            // refuse the start.
            (_, Role::WrittenFile | Role::WrittenDir) => {
                return Err(odd_entry(home, &child, kind));
            }
            (_, Role::Other) => {}
        }
    }
    Ok(())
}

/// A database's companion files the owner cannot read and write, while the database itself can
/// be: SQLite would refuse the database for them, so they get 0600 back.
fn plan_companions(root: &std::os::fd::OwnedFd, plan: &mut Vec<Planned>) {
    use rustix::fs::{AtFlags, FileType};
    let stat = |name: &str| {
        rustix::fs::statat(root, name, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .filter(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
    };
    for db in DATABASES {
        let Some(main) = stat(db) else { continue };
        if main.st_mode & 0o600 != 0o600 {
            continue;
        }
        for suffix in DB_COMPANIONS {
            let name = format!("{db}{suffix}");
            let Some(st) = stat(&name) else { continue };
            let from = st.st_mode & 0o7777;
            if from & 0o600 == 0o600 {
                continue;
            }
            let to = (from & 0o700) | 0o600;
            match plan.iter_mut().find(|p| p.rel == Path::new(&name)) {
                Some(p) => p.to = to,
                None => plan.push(Planned {
                    rel: PathBuf::from(name),
                    ino: st.st_ino,
                    from,
                    to,
                }),
            }
        }
    }
}

/// chmod a path under `root` without following a link, and only if it is still the inode that
/// was checked (a path swapped since is left alone).
fn chmod_no_follow(root: &std::os::fd::OwnedFd, rel: &Path, ino: u64, mode: u32) -> io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    // O_PATH opens any file type without reading it (no FIFO can block, no read permission
    // needed); fchmod does not accept such a descriptor, so the change goes through the
    // descriptor's /proc entry, which names that inode and no other.
    let fd = rustix::fs::openat(
        root,
        rel,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if st.st_ino != ino {
        return Ok(());
    }
    use std::os::fd::AsRawFd;
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    match rustix::fs::chmod(proc_path.as_str(), Mode::from_raw_mode(mode)) {
        Ok(()) => Ok(()),
        // No /proc: open the file itself (regular files and directories only reach here).
        Err(_) => {
            let fd = rustix::fs::openat(
                root,
                rel,
                OFlags::RDONLY
                    | OFlags::NOFOLLOW
                    | OFlags::NONBLOCK
                    | OFlags::NOCTTY
                    | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            if rustix::fs::fstat(&fd)?.st_ino != ino {
                return Ok(());
            }
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(io::Error::from)
        }
    }
}

fn check_owner(home: &Home, rel: &Path, uid: u32) -> Result<()> {
    let me = rustix::process::geteuid().as_raw();
    if uid == me {
        return Ok(());
    }
    let is_root = rel == Path::new(".");
    Err(HomeError::NotYours {
        path: if is_root {
            home.root().to_path_buf()
        } else {
            home.root().join(rel)
        },
        is_root,
        uid,
        me,
    })
}

fn odd_entry(home: &Home, rel: &Path, kind: rustix::fs::FileType) -> HomeError {
    use rustix::fs::FileType;
    let found = match kind {
        FileType::Symlink => "a symbolic link",
        FileType::Directory => "a directory",
        FileType::RegularFile => "a regular file",
        FileType::Fifo => "a named pipe",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        FileType::Unknown => "an unknown kind of file",
    };
    let expected = match role(rel) {
        Role::WrittenDir => "a directory",
        _ => "a regular file",
    };
    HomeError::OddEntry {
        path: home.root().join(rel),
        found,
        expected,
    }
}

/// `FUTURNAL_HOME` set to the user's own home (or `/`) would make `secure` chmod everything in
/// it: refuse instead.
fn refuse_whole_home_dir(home: &Home) -> Result<()> {
    let Ok(root) = fs::canonicalize(home.root()) else {
        return Ok(());
    };
    let user_home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .and_then(|h| fs::canonicalize(h).ok());
    if root == Path::new("/") || user_home.as_deref() == Some(root.as_path()) {
        return Err(HomeError::NotOwnDirectory(root));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// The audit records of what was tightened are checked end to end in `tests/home_safety.rs`.
    #[test]
    fn a_loose_home_is_tightened_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("f"));
        // What `mkdir -p ~/.futurnal/config` and an ordinary umask leave behind.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(home.config_dir())
            .unwrap();
        fs::set_permissions(home.root(), fs::Permissions::from_mode(0o755)).unwrap();
        home.ensure_layout().unwrap();
        fs::write(home.default_config(), "workers: {}\n").unwrap();
        fs::set_permissions(home.default_config(), fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(home.queue_db(), "").unwrap();
        fs::set_permissions(home.queue_db(), fs::Permissions::from_mode(0o666)).unwrap();
        // A leftover read-only -shm beside a usable database blocks SQLite: it gets 0600 back.
        let shm = home.root().join("queue.db-shm");
        fs::write(&shm, "").unwrap();
        fs::set_permissions(&shm, fs::Permissions::from_mode(0o400)).unwrap();

        let done = secure(&home).unwrap();
        assert_eq!(mode(home.root()), 0o700);
        assert_eq!(mode(&home.config_dir()), 0o700);
        assert_eq!(mode(&home.default_config()), 0o600);
        assert_eq!(mode(&home.queue_db()), 0o600);
        assert_eq!(mode(&shm), 0o600);
        let paths: Vec<&str> = done.iter().map(|t| t.path.as_str()).collect();
        for p in [
            ".",
            "config",
            "config/orchestrator.yaml",
            "queue.db",
            "queue.db-shm",
        ] {
            assert!(paths.contains(&p), "{p} not reported in {paths:?}");
        }
        let root = done.iter().find(|t| t.path == ".").unwrap();
        assert_eq!(
            root.audit_details(),
            serde_json::json!({"path": ".", "from": "755", "to": "700"})
        );
        // A private home is left alone.
        assert_eq!(secure(&home).unwrap(), Vec::new());
    }

    #[test]
    fn a_link_where_futurnal_writes_is_refused_and_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("f"));
        home.ensure_layout().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious\n").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&victim, home.audit_log()).unwrap();

        let err = secure(&home).unwrap_err();
        assert!(matches!(err, HomeError::OddEntry { .. }), "{err:?}");
        assert!(
            err.to_string().contains("audit.log is a symbolic link"),
            "{err}"
        );
        // The writers refuse the link too, whoever calls them.
        crate::security::audit(&home, true, "test", serde_json::json!({}));
        assert!(open_private_append(&home.log_file().with_file_name("audit.log")).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(mode(&victim), 0o644, "the link's target was changed");
    }

    #[test]
    fn links_elsewhere_are_left_alone_and_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("f"));
        home.ensure_layout().unwrap();
        let dotfile = dir.path().join("dotfiles.yaml");
        fs::write(&dotfile, "").unwrap();
        fs::set_permissions(&dotfile, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&dotfile, home.default_config()).unwrap();
        secure(&home).unwrap();
        assert_eq!(mode(&dotfile), 0o644);
    }

    #[test]
    fn a_home_owned_by_someone_else_is_refused() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: giving a file to another user needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("f"));
        home.ensure_layout().unwrap();
        fs::write(home.queue_db(), "").unwrap();
        fs::set_permissions(home.queue_db(), fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::chown(home.queue_db(), Some(65534), Some(65534)).unwrap();
        let err = secure(&home).unwrap_err();
        assert!(matches!(err, HomeError::NotYours { .. }), "{err:?}");
        assert!(err.to_string().contains("queue.db"), "{err}");
        // Refused means unchanged: nothing was tightened.
        assert_eq!(mode(&home.queue_db()), 0o644);
        // The book's scenario "The home belongs to another user" shows this message from a real
        // start (as root, where the harness can give a file away).
    }

    #[test]
    fn names_futurnal_writes_are_told_from_the_rest() {
        for written in [
            "queue.db",
            "queue.db-wal",
            "store.db-journal",
            "orchestrator.lock",
            ".orchestrator_recovery",
            "logs/orchestrator.log",
            "logs/orchestrator.log.3",
            "logs/audit.log",
        ] {
            assert!(role(Path::new(written)) == Role::WrittenFile, "{written}");
        }
        assert!(role(Path::new("logs")) == Role::WrittenDir);
        assert!(role(Path::new("backups")) == Role::WrittenDir);
        for other in [
            "config",
            "config/orchestrator.yaml",
            "queue.dbx",
            "logs/x/audit.log",
        ] {
            assert!(role(Path::new(other)) == Role::Other, "{other}");
        }
    }

    #[test]
    fn a_home_that_is_the_users_own_home_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let Some(user_home) = std::env::var_os("HOME").filter(|h| Path::new(h).is_dir()) else {
            eprintln!("skipped: HOME is not set to a directory");
            return;
        };
        let err = refuse_whole_home_dir(&Home::at(PathBuf::from(&user_home))).unwrap_err();
        assert!(err.to_string().contains("does not own"), "{err}");
        assert!(refuse_whole_home_dir(&Home::at(dir.path())).is_ok());
    }
}
