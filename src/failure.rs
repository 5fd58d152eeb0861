//! Error classes: what kind of failure an item or a job hit, and whether retrying can help.
//!
//! Owns: the classification of typed errors (io::ErrorKind, parser errors, limits) into a small,
//! stable set of classes that operators filter on (`--reason parse_error`).
//! Invariants: classes come from error types, never from message text; each class is either
//! transient (retried with backoff) or permanent (quarantined at once); the book's table of classes
//! is checked against `ErrorClass::ALL`. This module sits below `config`: the retry backoff takes
//! plain values (`Backoff`), never a configuration type.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    PermissionDenied,
    NotFound,
    ParseError,
    TooLarge,
    Timeout,
    IoError,
    ResourceExhausted,
    /// The document store was locked by another process for too long: retried later without
    /// using up an attempt.
    Busy,
    /// The orchestrator died several times while this job ran.
    Poison,
    Internal,
}

impl ErrorClass {
    pub const ALL: &[ErrorClass] = &[
        ErrorClass::PermissionDenied,
        ErrorClass::NotFound,
        ErrorClass::ParseError,
        ErrorClass::TooLarge,
        ErrorClass::Timeout,
        ErrorClass::IoError,
        ErrorClass::ResourceExhausted,
        ErrorClass::Busy,
        ErrorClass::Poison,
        ErrorClass::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::PermissionDenied => "permission_denied",
            ErrorClass::NotFound => "not_found",
            ErrorClass::ParseError => "parse_error",
            ErrorClass::TooLarge => "too_large",
            ErrorClass::Timeout => "timeout",
            ErrorClass::IoError => "io_error",
            ErrorClass::ResourceExhausted => "resource_exhausted",
            ErrorClass::Busy => "busy",
            ErrorClass::Poison => "poison",
            ErrorClass::Internal => "internal",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorClass> {
        ErrorClass::ALL.iter().copied().find(|c| c.as_str() == s)
    }

    /// Transient failures may go away by themselves (a file being written, a full disk, a busy
    /// lock) and are retried with backoff; permanent ones need an operator (fix the file, raise a
    /// limit) and are quarantined at once. Permission errors count as transient: an operator's
    /// `chmod` fixes them without touching the file, and the retries give them time to.
    pub fn is_transient(self) -> bool {
        match self {
            ErrorClass::PermissionDenied
            | ErrorClass::NotFound
            | ErrorClass::Timeout
            | ErrorClass::IoError
            | ErrorClass::ResourceExhausted
            | ErrorClass::Busy => true,
            ErrorClass::ParseError
            | ErrorClass::TooLarge
            | ErrorClass::Poison
            | ErrorClass::Internal => false,
        }
    }

    pub fn from_io(err: &std::io::Error) -> ErrorClass {
        use std::io::ErrorKind as K;
        match err.kind() {
            K::PermissionDenied | K::ReadOnlyFilesystem => ErrorClass::PermissionDenied,
            K::NotFound | K::NotADirectory => ErrorClass::NotFound,
            K::TimedOut | K::WouldBlock => ErrorClass::Timeout,
            K::StorageFull | K::OutOfMemory | K::QuotaExceeded | K::FileTooLarge => {
                ErrorClass::ResourceExhausted
            }
            K::InvalidData => ErrorClass::ParseError,
            // A path longer than the system allows (PATH_MAX, NAME_MAX): retrying cannot help;
            // shortening the folder names does.
            K::InvalidFilename => ErrorClass::TooLarge,
            K::ResourceBusy => ErrorClass::Busy,
            _ => ErrorClass::IoError,
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified failure with a factual message (what happened, to what).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
    /// Absolute paths the message names, exactly as formatted into it: redaction replaces these
    /// strings, so a path with spaces or `:` is redacted whole (guessing where a path ends in free
    /// text cannot be right for every name).
    pub paths: Vec<String>,
    /// What an operator can do about it, when this layer knows (the words and the runbook topic
    /// are chosen where operators are talked to: `error::failure_text`).
    pub remedy: Option<Remedy>,
}

/// A failure's known remedy, named by what is wrong rather than worded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// store.db is damaged; it is derived data and can be rebuilt.
    RebuildStore,
    /// store.db (or a file beside it) may not be read or written by this user.
    StoreAccess,
}

impl Failure {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Failure {
        Failure {
            class,
            message: message.into(),
            paths: Vec::new(),
            remedy: None,
        }
    }

    pub fn with_remedy(mut self, remedy: Remedy) -> Failure {
        self.remedy = Some(remedy);
        self
    }

    pub fn io(context: impl fmt::Display, err: &std::io::Error) -> Failure {
        Failure::new(ErrorClass::from_io(err), format!("{context}: {err}"))
    }

    /// An I/O error about an absolute path: "`what` `path`: `err`", with the path remembered for
    /// redaction.
    pub fn io_at(what: &str, path: &std::path::Path, err: &std::io::Error) -> Failure {
        Failure::new(ErrorClass::from_io(err), String::new()).with_path(
            what,
            path,
            &err.to_string(),
        )
    }

    /// Set the message to "`what` `path`: `detail`" and remember the path for redaction.
    pub fn with_path(mut self, what: &str, path: &std::path::Path, detail: &str) -> Failure {
        let shown = path.display().to_string();
        self.message = format!("{what} {shown}: {detail}");
        self.paths.push(shown);
        self
    }

    /// Also redact `path` wherever the message names it (a path the code that built the message
    /// did not declare, such as the source's own folder).
    pub fn naming(mut self, path: &std::path::Path) -> Failure {
        let shown = path.display().to_string();
        if !shown.is_empty() && !self.paths.contains(&shown) {
            self.paths.push(shown);
        }
        self
    }

    /// The message as `security.path_redaction` shows it: every declared path replaced by its
    /// fingerprint exactly (also in its `~/` form), then any other absolute path the message
    /// names (see `redact::redact_paths`, the one mechanism).
    pub fn redacted(&self) -> Failure {
        let paths: Vec<&std::path::Path> = self.paths.iter().map(std::path::Path::new).collect();
        Failure {
            class: self.class,
            message: crate::redact::redact_paths(&self.message, &paths),
            paths: Vec::new(),
            remedy: self.remedy,
        }
    }

    pub fn parse(message: impl Into<String>) -> Failure {
        Failure::new(ErrorClass::ParseError, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

/// A `Failure` keeps only its class and text (it is stored, compared and sent between threads),
/// so it has no `source()`: the wrapped error's text is in the message.
impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in ErrorClass::ALL {
            assert_eq!(ErrorClass::parse(c.as_str()), Some(*c));
        }
    }

    #[test]
    fn io_errors_classify_by_kind_not_text() {
        let e = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "parse error, really");
        assert_eq!(ErrorClass::from_io(&e), ErrorClass::PermissionDenied);
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(ErrorClass::from_io(&e), ErrorClass::NotFound);
        // ENAMETOOLONG: a path beyond PATH_MAX is permanent, not an I/O hiccup to retry.
        let e = std::io::Error::from_raw_os_error(36);
        assert_eq!(ErrorClass::from_io(&e), ErrorClass::TooLarge);
    }

    #[test]
    fn declared_paths_are_redacted_whole_even_with_spaces_and_colons() {
        let root = std::path::Path::new("/home/ada/Folder With Spaces: x");
        let e = std::io::Error::from_raw_os_error(2);
        let f = Failure::io_at("source path", root, &e).redacted();
        assert_eq!(
            f.message,
            format!(
                "source path {}: No such file or directory (os error 2)",
                crate::redact::path_fingerprint("/home/ada/Folder With Spaces: x")
            )
        );
        // A message built elsewhere: the source's folder is named after the fact.
        let f = Failure::io(format!("source path {}", root.display()), &e)
            .naming(root)
            .naming(std::path::Path::new("/home/ada"))
            .redacted();
        for part in ["home", "ada", "Folder", "Spaces", ": x"] {
            assert!(!f.message.contains(part), "{part} in {}", f.message);
        }
    }

    /// One mechanism: a failure's declared paths are replaced exactly, also where the message
    /// shows them under the home as `~/...`; text that names no declared path still has its
    /// absolute paths redacted (the scan is the last resort, inside `redacted` itself).
    #[test]
    fn redaction_covers_the_home_form_and_undeclared_paths() {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map_or_else(|| std::path::PathBuf::from("/home/ada"), Into::into);
        let store = home.join("Folder With Spaces: (ü) x").join("store.db");
        let shown = crate::home::display_path(&store);
        let f = Failure::new(
            ErrorClass::IoError,
            format!("document store: {shown} is corrupt"),
        )
        .naming(&store)
        .redacted();
        assert_eq!(
            f.message,
            format!(
                "document store: {} is corrupt",
                crate::redact::path_fingerprint(&store.to_string_lossy())
            )
        );
        let f = Failure::new(ErrorClass::IoError, "cannot open /srv/secret-place: gone").redacted();
        assert!(!f.message.contains("secret"), "{}", f.message);
        assert!(f.message.ends_with(">: gone"), "{}", f.message);
    }
}

/// The numbers a retry delay is computed from, as plain values: `config::Retry` converts into
/// this (`From<&Retry>`), so this module does not depend on the configuration layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base_delay_seconds: u64,
    pub backoff_multiplier: f64,
    pub max_delay_seconds: u64,
    pub jitter: f64,
}

/// Delay before retry number `attempts + 1`, in milliseconds: exponential backoff from
/// `retry.base_delay_seconds` by `retry.backoff_multiplier`, capped at `retry.max_delay_seconds`,
/// spread by ±`retry.jitter`. The jitter is derived from the job id and attempt, so it spreads
/// different jobs apart but is reproducible for one job (and testable without a random source).
pub fn retry_delay_ms(policy: impl Into<Backoff>, attempts: i64, job_id: i64) -> i64 {
    let policy = policy.into();
    let exponent = (attempts.max(1) - 1).min(60) as i32;
    let base = policy.base_delay_seconds as f64 * policy.backoff_multiplier.powi(exponent);
    let capped = base.min(policy.max_delay_seconds as f64);
    let hash = blake3::hash(format!("{job_id}:{attempts}").as_bytes());
    let unit = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes")) as f64
        / u64::MAX as f64; // 0..=1
    let spread = capped * policy.jitter * (unit * 2.0 - 1.0);
    ((capped + spread).max(1.0) * 1000.0).round() as i64
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    #[test]
    fn exponential_capped_and_jittered_within_bounds() {
        let p = Backoff {
            base_delay_seconds: 30,
            backoff_multiplier: 2.0,
            max_delay_seconds: 100,
            jitter: 0.0,
        };
        assert_eq!(retry_delay_ms(p, 1, 7), 30_000);
        assert_eq!(retry_delay_ms(p, 2, 7), 60_000);
        assert_eq!(retry_delay_ms(p, 3, 7), 100_000);
        let p = Backoff { jitter: 0.2, ..p };
        for id in 0..200 {
            let d = retry_delay_ms(p, 1, id);
            assert!((24_000..=36_000).contains(&d), "{d}");
            assert_eq!(d, retry_delay_ms(p, 1, id), "reproducible");
        }
    }
}
