//! Shared SQLite plumbing for futurnal's two databases (queue.db and store.db).
//!
//! Invariants: a database file is created 0600 before SQLite opens it (its -wal and -shm inherit
//! the mode); `PRAGMA user_version` is the schema version and only moves forward, one transaction
//! per migration; a database newer than this binary is never migrated or written.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// Why opening a database failed.
#[derive(Debug)]
pub enum OpenError {
    /// SQLite refused the file or failed (the error says which; see `class`).
    Sqlite(rusqlite::Error, &'static str),
    /// The file could not be created.
    Io(std::io::Error),
    /// The file opened but is not in a state futurnal can use.
    Invalid(String),
    /// The schema is newer than this futurnal understands.
    Newer { found: i64, supported: i64 },
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Sqlite(e, "") => write!(f, "{e}"),
            OpenError::Sqlite(e, context) => write!(f, "{context}: {e}"),
            OpenError::Io(e) => write!(f, "{e}"),
            OpenError::Invalid(m) => f.write_str(m),
            OpenError::Newer { found, supported } => write!(
                f,
                "schema version {found} is newer than this futurnal understands ({supported})"
            ),
        }
    }
}

impl OpenError {
    /// The error class of the failure, from SQLite's result code.
    pub fn class(&self) -> crate::failure::ErrorClass {
        use crate::failure::ErrorClass;
        match self {
            OpenError::Sqlite(e, _) => sqlite_class(e),
            OpenError::Io(e) => ErrorClass::from_io(e),
            OpenError::Invalid(_) | OpenError::Newer { .. } => ErrorClass::Internal,
        }
    }
}

/// Classify an SQLite error by its result code.
pub fn sqlite_class(e: &rusqlite::Error) -> crate::failure::ErrorClass {
    use crate::failure::ErrorClass;
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked) => ErrorClass::Busy,
        Some(C::DiskFull | C::OutOfMemory) => ErrorClass::ResourceExhausted,
        Some(C::PermissionDenied | C::ReadOnly | C::CannotOpen) => ErrorClass::PermissionDenied,
        Some(C::SystemIoFailure) => ErrorClass::IoError,
        _ => ErrorClass::Internal,
    }
}

fn sql(e: rusqlite::Error) -> OpenError {
    OpenError::Sqlite(e, "")
}

/// Open (creating if needed) a database, set pragmas, check integrity, apply migrations.
pub fn open_migrated(
    path: &Path,
    wal: bool,
    synchronous: &str,
    migrations: &[&str],
    integrity_check: bool,
) -> Result<Connection, OpenError> {
    if !path.exists() {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(OpenError::Io)?;
    }
    let conn = Connection::open(path).map_err(sql)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
    let mode = if wal { "WAL" } else { "DELETE" };
    let applied: String = conn
        .query_row(&format!("PRAGMA journal_mode = {mode}"), [], |r| r.get(0))
        .map_err(sql)?;
    if !applied.eq_ignore_ascii_case(mode) {
        return Err(OpenError::Invalid(format!(
            "could not switch journal_mode to {mode} (still {applied})"
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;"
    ))
    .map_err(sql)?;
    if integrity_check {
        quick_check(&conn)?;
    }
    migrate(&conn, migrations)?;
    Ok(conn)
}

/// `PRAGMA quick_check`: reads every page, so only worth it where a corrupt file must be refused.
pub fn quick_check(conn: &Connection) -> Result<(), OpenError> {
    let rows: Vec<String> = {
        let mut stmt = conn.prepare("PRAGMA quick_check").map_err(sql)?;
        stmt.query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(sql)?
    };
    if !(rows.len() == 1 && rows[0] == "ok") {
        return Err(OpenError::Invalid(format!(
            "integrity check failed: {}",
            rows.join("; ")
        )));
    }
    Ok(())
}

pub fn user_version(conn: &Connection) -> Result<i64, OpenError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)
}

fn migrate(conn: &Connection, migrations: &[&str]) -> Result<(), OpenError> {
    let supported = migrations.len() as i64;
    let current = user_version(conn)?;
    if current > supported {
        return Err(OpenError::Newer {
            found: current,
            supported,
        });
    }
    for (i, migration) in migrations.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        let tx = conn.unchecked_transaction().map_err(sql)?;
        tx.execute_batch(migration)
            .and_then(|_| tx.execute_batch(&format!("PRAGMA user_version = {version}")))
            .and_then(|_| tx.commit())
            .map_err(|e| OpenError::Sqlite(e, "migration failed"))?;
    }
    Ok(())
}
