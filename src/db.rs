//! Shared SQLite plumbing for futurnal's two databases (queue.db and store.db).
//!
//! Invariants: a database file is created 0600 (O_EXCL, never through a link) before SQLite opens
//! it, and SQLite gives its -wal, -shm and -journal the database file's mode; a database at a
//! symlink is refused; `PRAGMA user_version` is the schema version and only moves forward, one
//! transaction per migration; a database newer than this binary is never migrated or written.
//! Diagnosis comes from the file system and SQLite's result codes, never message text: a database
//! (or one of its companion files) the user may not read and write is `NoAccess`, a damaged one is
//! `Corrupt` or `IntegrityCheck`; the two get different advice, worded by `error`.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How long a connection waits for another's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why opening a database failed: what went wrong, not what to do about it (the operator-facing
/// layer, `error`, decides that from the variant and the command that met it).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite refused the file or failed (the error says which; see `class`). The second field
    /// says what futurnal was doing, or is empty.
    #[error("{prefix}{0}", prefix = context_prefix(.1))]
    Sqlite(#[source] rusqlite::Error, &'static str),
    /// The file could not be created.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// A symbolic link stands where the database should be.
    #[error(
        "{} is a symbolic link; futurnal opens its databases only as regular files",
        crate::home::display_path(.0)
    )]
    Link(PathBuf),
    /// SQLite would not switch to the journal mode futurnal needs.
    #[error("could not switch journal_mode to {wanted} (still {applied})")]
    JournalMode {
        wanted: &'static str,
        applied: String,
    },
    /// The schema is newer than this futurnal understands.
    #[error("schema version {found} is newer than this futurnal understands ({supported})")]
    Newer { found: i64, supported: i64 },
    /// These files of the database exist but the user may not read and write them: a permission
    /// problem, not damage.
    #[error("permission denied: {}", shown(.0))]
    NoAccess(Vec<PathBuf>),
    /// The file is damaged: SQLite says so (SQLITE_CORRUPT, SQLITE_NOTADB; the source).
    #[error("{0}")]
    Corrupt(#[source] rusqlite::Error),
    /// The file is damaged: the integrity check lists the problems it found.
    #[error("integrity check failed: {}", .0.join("; "))]
    IntegrityCheck(Vec<String>),
}

fn context_prefix(context: &str) -> String {
    if context.is_empty() {
        String::new()
    } else {
        format!("{context}: ")
    }
}

/// Paths as an operator types them, comma-separated.
fn shown(files: &[PathBuf]) -> String {
    let names: Vec<String> = files.iter().map(|p| crate::home::display_path(p)).collect();
    names.join(", ")
}

impl OpenError {
    /// The error class of the failure, from SQLite's result code.
    pub fn class(&self) -> crate::failure::ErrorClass {
        use crate::failure::ErrorClass;
        match self {
            OpenError::Sqlite(e, _) => sqlite_class(e),
            OpenError::Io(e) => ErrorClass::from_io(e),
            OpenError::NoAccess(_) => ErrorClass::PermissionDenied,
            OpenError::Corrupt(_) | OpenError::IntegrityCheck(_) => ErrorClass::IoError,
            OpenError::Link(_) | OpenError::JournalMode { .. } | OpenError::Newer { .. } => {
                ErrorClass::Internal
            }
        }
    }

    /// Is the database damaged (as opposed to unreadable for permissions, or a bug)?
    pub fn is_corrupt(&self) -> bool {
        match self {
            OpenError::Corrupt(_) | OpenError::IntegrityCheck(_) => true,
            OpenError::Sqlite(e, _) => is_corrupt(e),
            _ => false,
        }
    }
}

/// SQLite's own verdict that a file is damaged or not a database at all.
pub fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// The database file and the files SQLite keeps beside it (`-wal`, `-shm`, `-journal`).
pub fn files_of(path: &Path) -> Vec<PathBuf> {
    let mut out = vec![path.to_path_buf()];
    out.extend(
        crate::home::DB_COMPANIONS
            .iter()
            .map(|s| with_suffix(path, s)),
    );
    out
}

/// Those of the database's files that exist but that this process may not both read and write
/// (checked with the effective ids, as the open will be). A read-only companion blocks the
/// database as surely as a read-only database: SQLite cannot open WAL without writing `-shm`.
pub fn inaccessible(path: &Path) -> Vec<PathBuf> {
    use rustix::fs::{Access, AtFlags, CWD};
    files_of(path)
        .into_iter()
        .filter(|f| {
            f.symlink_metadata().is_ok()
                && matches!(
                    rustix::fs::accessat(
                        CWD,
                        f.as_path(),
                        Access::READ_OK | Access::WRITE_OK,
                        AtFlags::EACCESS
                    ),
                    Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM)
                )
        })
        .collect()
}

/// Whether any of `files` belongs to a user other than this process's (after `sudo futurnal ...`,
/// say): `chmod` alone cannot give such a file back.
pub fn any_foreign(files: &[PathBuf]) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    files
        .iter()
        .any(|f| f.symlink_metadata().is_ok_and(|m| m.uid() != me))
}

/// Refuse, before SQLite touches anything, a database at a symlink or one the user may not use.
/// (SQLITE_OPEN_NOFOLLOW is not used: it also refuses a home reached through a linked directory,
/// which is a legitimate setup.)
pub fn precheck(path: &Path) -> Result<(), OpenError> {
    if path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        return Err(OpenError::Link(path.to_path_buf()));
    }
    let denied = inaccessible(path);
    if denied.is_empty() {
        Ok(())
    } else {
        Err(OpenError::NoAccess(denied))
    }
}

/// Turn an SQLite failure on `path` into a diagnosis: damage, permissions, or something else.
pub fn diagnose(path: &Path, e: rusqlite::Error, context: &'static str) -> OpenError {
    use rusqlite::ErrorCode as C;
    if is_corrupt(&e) {
        return OpenError::Corrupt(e);
    }
    if matches!(
        e.sqlite_error_code(),
        Some(C::CannotOpen | C::ReadOnly | C::PermissionDenied)
    ) {
        let denied = inaccessible(path);
        if !denied.is_empty() {
            return OpenError::NoAccess(denied);
        }
    }
    OpenError::Sqlite(e, context)
}

/// Create `path` as an empty private file (0600, O_EXCL, never through a link), so that SQLite,
/// which gives its journal files the database's mode, never creates anything wider.
pub fn create_private(path: &Path) -> Result<(), OpenError> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(crate::home::NO_FOLLOW)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(OpenError::Io(e)),
    }
}

/// Why a database a command could not read is unusable, from the file itself rather than the
/// failure's message: permissions first (`NoAccess`), then SQLite's integrity check (damage).
/// `Ok` when neither explains it. Opens read-only and changes nothing.
pub fn diagnose_file(path: &Path) -> Result<(), OpenError> {
    precheck(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| diagnose(path, e, ""))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| diagnose(path, e, ""))?;
    quick_check(&conn)
}

/// Open a database so that no statement can change it; `Ok(None)` when it does not exist.
///
/// Never `immutable`, and the file is never opened outside SQLite (not even to read its header):
/// closing any descriptor of a database file drops every POSIX lock the process holds on it, so
/// in the daemon's process the sqlite3 shell then took itself for the last connection and
/// deleted the write-ahead log the daemon went on writing to (found by the book: a reload request
/// the daemon never saw; `tests::a_read_only_open_never_blinds_a_writer_in_the_same_process`).
/// - With a -wal file (a daemon runs, or one was killed), SQLite's read-only mode, which never
///   checkpoints, changes or removes the log and shared memory.
/// - Without one (no connection anywhere), read-write with `query_only`: no statement can
///   write, and the -wal and -shm files a WAL database creates on opening are removed again on
///   close, empty (nothing to checkpoint).
pub fn open_read_only(path: &Path) -> Result<Option<Connection>, OpenError> {
    if !path.exists() {
        return Ok(None);
    }
    precheck(path)?;
    let flags = if with_suffix(path, "-wal").exists() {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| diagnose(path, e, ""))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| diagnose(path, e, ""))?;
    conn.execute_batch("PRAGMA query_only = ON")
        .map_err(|e| diagnose(path, e, ""))?;
    // Reading the schema finds a file that is not a database at all, cheaply.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| diagnose(path, e, ""))?;
    Ok(Some(conn))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Open an existing database read-write for a short-lived reader (no create, no migration).
pub fn open_existing_rw(path: &Path) -> Result<Connection, OpenError> {
    precheck(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| diagnose(path, e, ""))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| diagnose(path, e, ""))?;
    // Reading the header finds a file that is not a database at all, cheaply.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| diagnose(path, e, ""))?;
    Ok(conn)
}

/// Classify an SQLite error by its result code.
pub fn sqlite_class(e: &rusqlite::Error) -> crate::failure::ErrorClass {
    use crate::failure::ErrorClass;
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked) => ErrorClass::Busy,
        Some(C::DiskFull | C::OutOfMemory) => ErrorClass::ResourceExhausted,
        Some(C::PermissionDenied | C::ReadOnly | C::CannotOpen) => ErrorClass::PermissionDenied,
        // Damage is not a bug in futurnal: the disk or a copy returned bytes that are not a valid
        // database. Retrying alone cannot mend it, but the retries that follow the operator's fix
        // (move the file aside; the message names the runbook topic) succeed by themselves.
        Some(C::DatabaseCorrupt | C::NotADatabase) => ErrorClass::IoError,
        Some(C::SystemIoFailure) => ErrorClass::IoError,
        _ => ErrorClass::Internal,
    }
}

fn sql(e: rusqlite::Error) -> OpenError {
    if is_corrupt(&e) {
        OpenError::Corrupt(e)
    } else {
        OpenError::Sqlite(e, "")
    }
}

/// Open (creating if needed) a database, set pragmas, check integrity, apply migrations.
pub fn open_migrated(
    path: &Path,
    wal: bool,
    synchronous: &str,
    migrations: &[&str],
    integrity_check: Check,
    page_size: Option<u32>,
) -> Result<Connection, OpenError> {
    precheck(path)?;
    create_private(path)?;
    let conn = Connection::open(path).map_err(|e| diagnose(path, e, ""))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| diagnose(path, e, ""))?;
    if let Some(size) = page_size {
        // Takes effect only on a database still empty: its first write (the first migration)
        // uses it. No VACUUM, so a process creating the file races with nobody.
        conn.execute_batch(&format!("PRAGMA page_size = {size}"))
            .map_err(sql)?;
    }
    let mode = if wal { "WAL" } else { "DELETE" };
    let applied = set_journal_mode(&conn, mode).map_err(|e| diagnose(path, e, ""))?;
    if !applied.eq_ignore_ascii_case(mode) {
        return Err(OpenError::JournalMode {
            wanted: mode,
            applied,
        });
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;"
    ))
    .map_err(sql)?;
    check(&conn, integrity_check)?;
    migrate(&conn, migrations)?;
    Ok(conn)
}

/// `PRAGMA journal_mode = mode`, returning the mode in effect. Switching a database to WAL
/// takes its exclusive lock without SQLite's busy handler, so processes opening a new database at
/// once (the daemon's first run and a command) get SQLITE_BUSY at once: retried for as long as
/// the busy timeout would have waited.
fn set_journal_mode(conn: &Connection, mode: &str) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row(&format!("PRAGMA journal_mode = {mode}"), [], |r| r.get(0)) {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// How much of a database an open checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Nothing beyond what opening reads (the header and the schema).
    None,
    /// `PRAGMA quick_check` of every table and index except these (large, growing) tables: a
    /// bounded cost, whatever the history. The rest is for a full check.
    Except(&'static [&'static str]),
    /// `PRAGMA quick_check`: every page, a cost that grows with the file.
    Full,
}

/// Run `check` on an open database.
pub fn check(conn: &Connection, check: Check) -> Result<(), OpenError> {
    match check {
        Check::None => Ok(()),
        Check::Full => quick_check(conn),
        Check::Except(large) => {
            let tables: Vec<String> = column(
                conn,
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
            )?;
            for table in tables.iter().filter(|t| !large.contains(&t.as_str())) {
                let pragma = format!("PRAGMA quick_check(\"{}\")", table.replace('"', "\"\""));
                verdict(column(conn, &pragma)?)?;
            }
            Ok(())
        }
    }
}

/// The first column of every row `sql` returns.
fn column(conn: &Connection, sql_text: &str) -> Result<Vec<String>, OpenError> {
    let mut stmt = conn.prepare(sql_text).map_err(sql)?;
    stmt.query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(sql)
}

/// An integrity check's rows: a single `ok`, or the problems it found.
fn verdict(rows: Vec<String>) -> Result<(), OpenError> {
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(OpenError::IntegrityCheck(rows))
    }
}

/// `PRAGMA quick_check`: reads every page, so only worth it where a corrupt file must be refused.
pub fn quick_check(conn: &Connection) -> Result<(), OpenError> {
    verdict(column(conn, "PRAGMA quick_check")?)
}

pub fn user_version(conn: &Connection) -> Result<i64, OpenError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)
}

fn migrate(conn: &Connection, migrations: &[&str]) -> Result<(), OpenError> {
    let supported = migrations.len() as i64;
    // Up to date (every open but the first after an upgrade): no write lock at all, so opening
    // the store for each job never waits for another job's batch.
    if user_version(conn)? == supported {
        return Ok(());
    }
    // Each step reads the version and migrates under one write lock (BEGIN IMMEDIATE): two
    // processes opening a new database at once (the daemon's first run and a CLI command, say)
    // must not both apply the same migration.
    loop {
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| OpenError::Sqlite(e, "migration failed"))?;
        let current = user_version(&tx)?;
        if current > supported {
            return Err(OpenError::Newer {
                found: current,
                supported,
            });
        }
        let Some(migration) = migrations.get(current as usize) else {
            return Ok(());
        };
        tx.execute_batch(migration)
            .and_then(|_| tx.execute_batch(&format!("PRAGMA user_version = {}", current + 1)))
            .and_then(|_| tx.commit())
            .map_err(|e| OpenError::Sqlite(e, "migration failed"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A database with one table `t`, opened as the daemon opens queue.db, fully checked.
    fn one_table(path: &Path, wal: bool) -> Result<Connection, OpenError> {
        open_migrated(
            path,
            wal,
            "FULL",
            &["CREATE TABLE t (x);"],
            Check::Full,
            None,
        )
    }

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Found by the crash soak: the daemon's first run and a CLI command opening a new store at
    /// once both applied its first migration, and one failed with "table already exists".
    #[test]
    fn concurrent_first_opens_all_succeed() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("store.db");
            let barrier = std::sync::Barrier::new(4);
            let errors: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            crate::store::Store::open(&path).err().map(|f| f.message)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .filter_map(|h| h.join().unwrap())
                    .collect()
            });
            assert!(errors.is_empty(), "{errors:?}");
            let conn = Connection::open(&path).unwrap();
            let page: u32 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap();
            assert_eq!(page, crate::store::PAGE_SIZE);
        }
    }

    /// Files SQLite creates beside a database get the database's mode, whatever the umask.
    #[test]
    fn the_store_and_every_journal_file_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store.db");
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let opened = crate::store::Store::open(&store);
        rustix::process::umask(old);
        drop(opened.unwrap());
        assert_eq!(mode(&store), 0o600, "store.db");
        // The store's write-ahead log and shared memory take the database's mode.
        let c = Connection::open(&store).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        for f in files_of(&store).iter().take(3) {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        drop(c);
        // A write transaction in rollback-journal mode creates a -journal.
        let rollback = dir.path().join("rollback.db");
        let r = one_table(&rollback, false).unwrap();
        r.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        assert_eq!(mode(&dir.path().join("rollback.db-journal")), 0o600);
        r.execute_batch("COMMIT").unwrap();

        let queue = dir.path().join("queue.db");
        let q = one_table(&queue, true).unwrap();
        q.execute_batch("INSERT INTO t VALUES (1)").unwrap();
        for f in files_of(&queue).iter().take(3) {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
    }

    #[test]
    fn a_read_only_open_never_writes_nor_creates_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            open_read_only(&dir.path().join("missing.db"))
                .unwrap()
                .is_none()
        );
        for wal in [true, false] {
            let path = dir.path().join(format!("ro-{wal}.db"));
            let w = one_table(&path, wal).unwrap();
            w.execute_batch("INSERT INTO t VALUES (1)").unwrap();
            drop(w);
            let before: Vec<bool> = files_of(&path).iter().map(|f| f.exists()).collect();
            let r = open_read_only(&path).unwrap().unwrap();
            let n: i64 = r
                .query_row("SELECT count(*) FROM t", [], |x| x.get(0))
                .unwrap();
            assert_eq!(n, 1);
            let e = r.execute_batch("INSERT INTO t VALUES (2)").unwrap_err();
            assert_eq!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::ReadOnly),
                "{e}"
            );
            drop(r);
            let after: Vec<bool> = files_of(&path).iter().map(|f| f.exists()).collect();
            assert_eq!(before, after, "wal={wal}");
        }
    }

    #[test]
    fn damage_is_told_apart_from_a_missing_permission() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![0x5au8; 8192]).unwrap();
        let e = open_existing_rw(&garbage).err().unwrap();
        assert!(e.is_corrupt(), "{e:?}");
        // Damage is not "a bug in futurnal".
        assert_eq!(e.class(), crate::failure::ErrorClass::IoError);
        assert!(matches!(precheck(&dir.path().join("missing.db")), Ok(())));
        // A database at a link is refused before SQLite follows it.
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&garbage, &link).unwrap();
        assert!(matches!(precheck(&link), Err(OpenError::Link(_))));
    }

    /// With `immutable`, closing the reader dropped the writer's locks: the sqlite3 shell then
    /// took itself for the last connection and deleted the log the writer went on writing to.
    #[test]
    fn a_read_only_open_never_blinds_a_writer_in_the_same_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let writer = one_table(&path, true).unwrap();
        writer.execute_batch("INSERT INTO t VALUES (1)").unwrap();
        let reader_path = path.clone();
        std::thread::spawn(move || {
            let r = open_read_only(&reader_path).unwrap().unwrap();
            quick_check(&r).unwrap();
        })
        .join()
        .unwrap();
        let shell = |sql: &str| {
            let out = std::process::Command::new("sqlite3")
                .arg(&path)
                .arg(sql)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        shell("INSERT INTO t VALUES (2)");
        writer.execute_batch("INSERT INTO t VALUES (3)").unwrap();
        assert_eq!(shell("SELECT count(*) FROM t"), "3");
    }
}
