//! Operator-facing errors.
//!
//! Owns: the one error shape every command reports to an operator, the process exit codes, and
//! the wording of the lower layers' typed errors (`home::HomeError`, `queue::QueueError`,
//! `db::OpenError` of store.db) for the command that met them.
//! Invariants: every `OperatorError` says what went wrong, what is safe to do next, and names a
//! `futurnal help runbook` topic that exists in the embedded book (checked by a unit test in
//! `runbook::topics`). The layers below return typed errors with no advice and no topic; the
//! prose is chosen here, so a command that only reads the queue never says that the orchestrator
//! did not start.

use std::fmt;
use std::path::Path;

use crate::db::OpenError;
use crate::home::{HomeError, display_path};
use crate::queue::{QueueDb, QueueError};
use crate::runbook::topics;

/// Process exit codes. The Operator Guide's "Exit codes" table is checked against `ALL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// The command did what was asked.
    Ok = 0,
    /// The command failed; the message says why.
    Failure = 1,
    /// The command line could not be parsed (unknown subcommand or flag, bad value).
    Usage = 2,
    /// The configuration is invalid.
    Config = 3,
    /// Another orchestrator holds this home's lock.
    AlreadyRunning = 4,
    /// The queue database is unreadable, corrupt or from a newer futurnal.
    Database = 5,
    /// `health`: at least one check warns, none fails.
    HealthWarn = 6,
    /// `health`: at least one check fails.
    HealthFail = 7,
}

impl ExitCode {
    pub const ALL: &[ExitCode] = &[
        ExitCode::Ok,
        ExitCode::Failure,
        ExitCode::Usage,
        ExitCode::Config,
        ExitCode::AlreadyRunning,
        ExitCode::Database,
        ExitCode::HealthWarn,
        ExitCode::HealthFail,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    /// What the status means, as the Operator Guide's table says it.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitCode::Ok => "the command did what was asked",
            ExitCode::Failure => "the command failed; the message says why",
            ExitCode::Usage => {
                "the command line could not be parsed (unknown subcommand or flag, bad value)"
            }
            ExitCode::Config => "the configuration is invalid",
            ExitCode::AlreadyRunning => "another orchestrator holds this home's lock",
            ExitCode::Database => {
                "the queue database is unreadable, corrupt or from a newer futurnal"
            }
            ExitCode::HealthWarn => "health: at least one check warns, none fails",
            ExitCode::HealthFail => "health: at least one check fails",
        }
    }
}

/// An error an operator can act on.
#[derive(Debug, Clone)]
pub struct OperatorError {
    /// What went wrong, in one or more lines.
    pub what: String,
    /// What is safe to do now (and what the failed command did not change).
    pub safe: String,
    /// A `futurnal help runbook` topic that covers the situation.
    pub topic: &'static str,
    pub exit: ExitCode,
}

impl OperatorError {
    pub fn new(
        exit: ExitCode,
        what: impl Into<String>,
        safe: impl Into<String>,
        topic: &'static str,
    ) -> Self {
        OperatorError {
            what: what.into(),
            safe: safe.into(),
            topic,
            exit,
        }
    }

    pub fn failure(what: impl Into<String>, safe: impl Into<String>, topic: &'static str) -> Self {
        Self::new(ExitCode::Failure, what, safe, topic)
    }
}

impl fmt::Display for OperatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.what)?;
        writeln!(f, "  safe to do: {}", self.safe)?;
        write!(f, "  runbook: futurnal help runbook {}", self.topic)
    }
}

impl std::error::Error for OperatorError {}

pub type Result<T, E = OperatorError> = std::result::Result<T, E>;

/// How a command failed, as far as `main` is concerned.
#[derive(Debug)]
pub enum CommandError {
    /// Print this error and exit with its code.
    Operator(OperatorError),
    /// The message was already printed (for example relayed from the daemon); just exit.
    Reported(u8),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Operator(e) => e.fmt(f),
            CommandError::Reported(code) => write!(f, "already reported (exit status {code})"),
        }
    }
}

/// Transparent: an `Operator` error displays as the `OperatorError` it holds, so it is not listed
/// again as its own source.
impl std::error::Error for CommandError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CommandError::Operator(e) => std::error::Error::source(e),
            CommandError::Reported(_) => None,
        }
    }
}

impl From<OperatorError> for CommandError {
    fn from(e: OperatorError) -> Self {
        CommandError::Operator(e)
    }
}

impl From<HomeError> for CommandError {
    fn from(e: HomeError) -> Self {
        CommandError::Operator(e.into())
    }
}

/// What the command that met an error was doing: the advice depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doing {
    /// Starting the orchestrator (`orchestrator start`, the daemon's own start).
    Start,
    /// Any other command: it reads the queue, or changes it through its rows.
    Command,
}

impl Doing {
    /// What the failure cost, first in every "safe to do".
    fn outcome(self) -> &'static str {
        match self {
            Doing::Start => "the orchestrator did not start and nothing was changed",
            Doing::Command => "the command could not read the queue and nothing was changed",
        }
    }
}

/// The operator's view of a queue.db that cannot be used, for the command that met it. A
/// permission problem and damage get different advice: moving a merely unreadable queue aside
/// would throw it away.
pub fn queue_unusable(e: &QueueError, doing: Doing) -> OperatorError {
    let shown = display_path(&e.path);
    let outcome = doing.outcome();
    let (what, safe, topic) = match &e.source {
        OpenError::Newer { found, supported } => (
            format!(
                "the queue database {shown} has schema version {found}, newer than this \
                 futurnal understands ({supported})"
            ),
            format!("{outcome}; run the futurnal version that wrote this database, or upgrade"),
            topics::CORRUPT_DB,
        ),
        OpenError::NoAccess(files) => (
            format!(
                "the queue database {shown} cannot be opened: permission denied on {}",
                files
                    .iter()
                    .map(|f| display_path(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "{outcome}; the queue is not damaged, so do not move it aside; {}, then try again",
                access_advice(files)
            ),
            topics::DB_NOT_READABLE,
        ),
        other if other.is_corrupt() => (
            format!("the queue database {shown} is unreadable or corrupt: {other}"),
            match doing {
                // The start's words are the troubleshooting chapter's.
                Doing::Start => format!(
                    "the orchestrator did not start and nothing was written; restore the \
                     latest backup (futurnal help runbook {}), or move the file aside (keep it \
                     for inspection) and start again to create a fresh queue",
                    topics::RESTORE
                ),
                Doing::Command => format!(
                    "{outcome}; stop the orchestrator, then restore the latest backup (futurnal \
                     help runbook {}), or move the file aside (keep it for inspection) and start \
                     again to create a fresh queue",
                    topics::RESTORE
                ),
            },
            topics::CORRUPT_DB,
        ),
        other => (
            format!("the queue database {shown} could not be used: {other}"),
            format!(
                "{outcome}; try again, and if it persists check the file with \
                 `sqlite3 {shown} \"PRAGMA integrity_check\"`"
            ),
            topics::CORRUPT_DB,
        ),
    };
    OperatorError::new(ExitCode::Database, what, safe, topic)
}

/// What gives the user access back to `files`: `chmod u+rw` for their own files, and first a
/// `chown` for files another user owns, which chmod cannot fix.
fn access_advice(files: &[std::path::PathBuf]) -> String {
    let names: Vec<String> = files.iter().map(|f| display_path(f)).collect();
    if crate::db::any_foreign(files) {
        format!(
            "give the files back to your user and make them readable and writable \
             (`sudo chown \"$(id -un)\" {0}` then `chmod u+rw {0}`)",
            names.join(" ")
        )
    } else {
        format!(
            "give your user read and write access (`chmod u+rw {}`)",
            names.join(" ")
        )
    }
}

/// `?` on a `QueueError` is the daemon's start path (opening, recovering, registering the
/// instance); a command words its error with `queue_unusable(.., Doing::Command)`.
impl From<QueueError> for OperatorError {
    fn from(e: QueueError) -> Self {
        queue_unusable(&e, Doing::Start)
    }
}

/// `QueueDb::connect` with the error in a command's words. Defined here, in the layer that talks
/// to operators, so that `queue` never depends on it.
impl QueueDb {
    pub fn open_existing(path: &Path) -> Result<Option<QueueDb>> {
        QueueDb::connect(path).map_err(|e| queue_unusable(&e, Doing::Command))
    }

    /// The read-only open (`connect_read_only`) for commands that only read.
    pub fn read_existing(path: &Path) -> Result<Option<QueueDb>> {
        QueueDb::connect_read_only(path).map_err(|e| queue_unusable(&e, Doing::Command))
    }
}

/// The operator's view of a home that cannot be found or used. Only a start checks and writes
/// the home (`ensure_layout`, `secure`); finding it (`resolve`) is every command's first step.
impl From<HomeError> for OperatorError {
    fn from(e: HomeError) -> Self {
        let (safe, topic) = match &e {
            HomeError::RelativeHome(_) => (
                "set FUTURNAL_HOME to an absolute path",
                topics::HOME_AND_FILES,
            ),
            HomeError::Unset => (
                "set FUTURNAL_HOME to the directory futurnal should use (for example \
                 ~/.futurnal)",
                topics::HOME_AND_FILES,
            ),
            HomeError::NotWritable { .. } => (
                "nothing was started or changed; give your user write access (chmod u+rwx) or \
                 point FUTURNAL_HOME at a writable directory",
                topics::HOME_AND_FILES,
            ),
            HomeError::CannotTighten { .. } => (
                "nothing was started; run `chmod -R go-rwx` on the futurnal home yourself, then \
                 start again",
                topics::HOME_NOT_PRIVATE,
            ),
            HomeError::NotYours { .. } => (
                "nothing was started or changed; if the home is yours, give it back \
                 (`sudo chown -R \"$(id -un)\" ~/.futurnal`), otherwise set FUTURNAL_HOME to a \
                 directory of your own",
                topics::HOME_NOT_YOURS,
            ),
            HomeError::OddEntry { .. } => (
                "nothing was started or changed, and nothing it points to was touched; find out \
                 who put it there, then remove it (futurnal creates the file again)",
                topics::HOME_ODD_ENTRY,
            ),
            HomeError::NotOwnDirectory(_) => (
                "nothing was started or changed; set FUTURNAL_HOME to a directory of its own, \
                 such as ~/.futurnal",
                topics::HOME_AND_FILES,
            ),
        };
        let what = match &e {
            HomeError::OddEntry { .. } => {
                format!("{e}; futurnal never writes through a link or into a special file")
            }
            _ => e.to_string(),
        };
        OperatorError::failure(what, safe, topic)
    }
}

/// A queue.db failure in a command: what is safe, and where to look.
pub fn queue_error(home: &crate::home::Home, e: rusqlite::Error) -> OperatorError {
    OperatorError::new(
        ExitCode::Database,
        format!("queue database {}: {e}", display_path(&home.queue_db())),
        "nothing was changed; check it with `sqlite3 ~/.futurnal/queue.db \"PRAGMA integrity_check\"`",
        topics::CORRUPT_DB,
    )
}

/// A configuration that did not load or validate, as one operator error: every problem on its
/// own line, nothing started or changed, the topic on validating a configuration.
pub fn config_invalid(problems: &[crate::config::Problem]) -> OperatorError {
    use std::fmt::Write as _;
    let mut what = format!(
        "the configuration is invalid ({})",
        crate::display::plural(problems.len() as i64, "problem")
    );
    for p in problems {
        let _ = write!(what, "\n  {p}");
    }
    OperatorError::new(
        ExitCode::Config,
        what,
        "nothing was started or changed; fix the lines above, then run `futurnal config validate`",
        topics::CONFIG_INVALID,
    )
}

/// A job's failure as an operator reads it (in `jobs show`, the log): its message, then what to
/// do and the runbook topic when the failure knows its remedy.
pub fn failure_text(failure: &crate::failure::Failure) -> String {
    use crate::failure::Remedy;
    match failure.remedy {
        None => failure.message.clone(),
        Some(Remedy::RebuildStore) => format!(
            "{}; restore it from a backup or rebuild it from the sources (`futurnal \
             orchestrator start --rebuild-store`): see `futurnal help runbook {}`",
            failure.message,
            topics::STORE_CORRUPT
        ),
        Some(Remedy::StoreAccess) => format!(
            "{}; see `futurnal help runbook {}`",
            failure.message,
            topics::DB_NOT_READABLE
        ),
    }
}

/// The operator's view of a store.db that a command could not read (`failure` is what the store
/// returned). The diagnosis comes from the file itself (`db::diagnose_file`), not the message. A
/// command that reads the store must fail with this, never show an empty store.
pub fn store_unreadable(path: &Path, failure: &crate::failure::Failure) -> OperatorError {
    let shown = display_path(path);
    match crate::db::diagnose_file(path) {
        Err(OpenError::NoAccess(files)) => OperatorError::new(
            ExitCode::Database,
            format!(
                "the document store {shown} cannot be opened: {}",
                OpenError::NoAccess(files.clone())
            ),
            format!(
                "nothing was changed and the store is not damaged, so do not move it aside; {}, \
                 then try again",
                access_advice(&files)
            ),
            topics::DB_NOT_READABLE,
        ),
        Err(e) if e.is_corrupt() => OperatorError::new(
            ExitCode::Database,
            format!("the document store {shown} is corrupt: {e}"),
            "nothing was changed; stop the orchestrator, then restore the store from the latest \
             backup, or rebuild it from your sources with `futurnal orchestrator start \
             --rebuild-store`",
            topics::STORE_CORRUPT,
        ),
        _ => OperatorError::new(
            ExitCode::Database,
            format!(
                "the document store {shown} could not be read: {}",
                failure.message
            ),
            "nothing was changed; try again, and if it persists check the store with \
             `sqlite3 ~/.futurnal/store.db \"PRAGMA integrity_check\"`",
            topics::STORE_CORRUPT,
        ),
    }
}

/// The operator's view of a store.db a start refused (`Store::open_checked` failed). Damage is
/// never repaired silently: the operator chooses between restoring a backup and rebuilding
/// from the sources; permissions get the same advice as for the queue.
pub fn store_unusable(path: &Path, e: &OpenError) -> OperatorError {
    let shown = display_path(path);
    match e {
        OpenError::NoAccess(files) => OperatorError::new(
            ExitCode::Database,
            format!("the document store {shown} cannot be opened: {e}"),
            format!(
                "the orchestrator did not start and nothing was changed; the store is not \
                 damaged, so do not move it aside; {}, then start again",
                access_advice(files)
            ),
            topics::DB_NOT_READABLE,
        ),
        e if e.is_corrupt() => OperatorError::new(
            ExitCode::Database,
            format!("the document store {shown} is corrupt: {e}"),
            format!(
                "the orchestrator did not start and nothing was written; restore the store \
                 from the latest backup (`futurnal orchestrator restore --store-only BACKUP`, \
                 futurnal help runbook {}), or rebuild it from your sources with `futurnal \
                 orchestrator start --rebuild-store` (the damaged file is kept)",
                topics::RESTORE
            ),
            topics::STORE_CORRUPT,
        ),
        e => OperatorError::new(
            ExitCode::Database,
            format!("the document store {shown} could not be opened: {e}"),
            format!(
                "the orchestrator did not start and nothing was changed; try again, and if it \
                 persists check the store with `sqlite3 {shown} \"PRAGMA integrity_check\"`"
            ),
            topics::STORE_CORRUPT,
        ),
    }
}

/// A file of the home a start could not open (`what` says which and why). A link where futurnal
/// writes (`home::LinkRefused`) has its own advice and topic; anything else gets `safe`.
pub fn start_cannot_open(what: String, e: &std::io::Error, safe: &'static str) -> OperatorError {
    if crate::home::LinkRefused::within(e).is_some() {
        OperatorError::failure(
            what,
            "nothing was started or changed, and nothing it points to was touched; find out who \
             put it there, then remove it (futurnal creates the file again)",
            topics::HOME_ODD_ENTRY,
        )
    } else {
        OperatorError::failure(what, safe, topics::START_REFUSED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;
    use std::path::PathBuf;

    fn sqlite(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    fn every_open_error() -> Vec<OpenError> {
        let path = PathBuf::from("/nonexistent/queue.db");
        vec![
            OpenError::Sqlite(sqlite(rusqlite::ffi::SQLITE_BUSY), ""),
            OpenError::Io(std::io::Error::other("no space")),
            OpenError::Link(path.clone()),
            OpenError::JournalMode {
                wanted: "WAL",
                applied: "delete".into(),
            },
            OpenError::Newer {
                found: 999,
                supported: 2,
            },
            OpenError::NoAccess(vec![path]),
            OpenError::Corrupt(sqlite(rusqlite::ffi::SQLITE_NOTADB)),
            OpenError::IntegrityCheck(vec!["page 2 is never used".into()]),
        ]
    }

    /// Issue 8: the queue layer wrote the start's words, so `jobs list` on a bad queue.db said
    /// "the orchestrator did not start". Each diagnosis is now worded for the command.
    #[test]
    fn a_queue_error_is_worded_for_the_command_that_met_it() {
        for source in every_open_error() {
            // Newer schema and permissions are worded whole here; the others quote the diagnosis.
            let shown = match source {
                OpenError::Newer { found, .. } => format!("schema version {found}"),
                OpenError::NoAccess(_) => "permission denied on /nonexistent/queue.db".into(),
                _ => source.to_string(),
            };
            let e = QueueError {
                path: PathBuf::from("/nonexistent/queue.db"),
                source,
            };
            let start = queue_unusable(&e, Doing::Start);
            let command = queue_unusable(&e, Doing::Command);
            for (op, doing) in [(&start, Doing::Start), (&command, Doing::Command)] {
                assert_eq!(op.exit, ExitCode::Database, "{op}");
                assert!(topics::ALL.contains(&op.topic), "{op}");
                assert!(op.what.contains(&shown), "{op}");
                let started = op.safe.contains("did not start");
                assert_eq!(started, doing == Doing::Start, "{op}");
                assert!(op.safe.contains("nothing was"), "{op}");
            }
            assert!(
                command.safe.contains("could not read the queue"),
                "{command}"
            );
            assert_eq!(start.topic, command.topic);
        }
    }

    #[test]
    fn wrapped_errors_keep_their_source() {
        for e in every_open_error() {
            let wraps = matches!(
                e,
                OpenError::Sqlite(..) | OpenError::Io(_) | OpenError::Corrupt(_)
            );
            assert_eq!(e.source().is_some(), wraps, "{e:?}");
        }
        let e = QueueError {
            path: PathBuf::from("q.db"),
            source: OpenError::Corrupt(sqlite(rusqlite::ffi::SQLITE_CORRUPT)),
        };
        let inner = e.source().and_then(|s| s.downcast_ref::<OpenError>());
        assert!(inner.is_some_and(|i| i.source().is_some()), "{e:?}");
        let home = HomeError::NotWritable {
            path: PathBuf::from("/h"),
            source: std::io::Error::other("read-only file system"),
        };
        assert!(home.source().is_some());
    }

    #[test]
    fn every_home_error_says_what_is_safe_and_names_a_topic() {
        let path = PathBuf::from("/h/x");
        let io = || std::io::Error::other("denied");
        for e in [
            HomeError::RelativeHome(io()),
            HomeError::Unset,
            HomeError::NotWritable {
                path: path.clone(),
                source: io(),
            },
            HomeError::CannotTighten {
                path: path.clone(),
                from: 0o755,
                source: io(),
            },
            HomeError::NotYours {
                path: path.clone(),
                is_root: false,
                uid: 1,
                me: 2,
            },
            HomeError::OddEntry {
                path: path.clone(),
                found: "a symbolic link",
                expected: "a regular file",
            },
            HomeError::NotOwnDirectory(path.clone()),
        ] {
            let what = e.to_string();
            let op = OperatorError::from(e);
            assert!(op.what.starts_with(&what), "{op}");
            assert!(
                !op.safe.is_empty() && topics::ALL.contains(&op.topic),
                "{op}"
            );
        }
    }
}
