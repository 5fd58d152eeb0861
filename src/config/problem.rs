//! Problems: what is wrong with a configuration, where, and how an operator is told.
//!
//! Owns: `Problem` (one finding, located), `Invalid` (all of a load's findings; the error type of
//! `load`), and "did you mean" suggestions. (`error::config_invalid` words them for operators.)
//! Invariants: a problem names where it is (`file:line:col`, `env VAR` or `flag --set`) and the
//! key.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::home::display_path;

/// The typed error a problem wraps (an I/O error reading the file, the YAML parser's error).
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// One problem found while loading or validating configuration.
///
/// `Display` is the whole line an operator reads (`at: key: message`); `source()` gives code the
/// typed error the problem came from, when there is one.
#[derive(Debug, Clone)]
pub struct Problem {
    /// `file:line:col`, `env VAR` or `flag --set`.
    pub at: String,
    /// Key path such as `workers.max_workers`.
    pub key: String,
    pub message: String,
    /// Line and column when the problem is in the file: problems are reported in file order.
    position: Option<(u64, u64)>,
    cause: Option<Cause>,
}

impl Problem {
    pub fn new(at: impl Into<String>, key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            at: at.into(),
            key: key.into(),
            message: message.into(),
            position: None,
            cause: None,
        }
    }

    /// A problem at `line:column` of `file` (shown as `file:line:column`).
    pub fn in_file(
        file: &Path,
        line: u64,
        column: u64,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            position: Some((line, column)),
            ..Problem::new(
                format!("{}:{line}:{column}", display_path(file)),
                key,
                message,
            )
        }
    }

    /// Line and column in the file, if the problem is located there.
    pub fn position(&self) -> Option<(u64, u64)> {
        self.position
    }

    /// The same problem, remembering the error it came from.
    pub fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }
}

/// Two problems are the same when an operator reads the same line; the cause is not compared.
impl PartialEq for Problem {
    fn eq(&self, other: &Self) -> bool {
        (&self.at, &self.key, &self.message) == (&other.at, &other.key, &other.message)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.at, self.message)
        } else {
            write!(f, "{}: {}: {}", self.at, self.key, self.message)
        }
    }
}

impl std::error::Error for Problem {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// Every problem a load found: the error type of `config::load`. Derefs to the list, so callers
/// count, iterate and render the problems directly. It wraps several errors, not one, so
/// `source()` is `None`; each `Problem` has its own.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the configuration is invalid ({})", crate::display::plural(self.0.len() as i64, "problem"))]
pub struct Invalid(pub Vec<Problem>);

impl std::ops::Deref for Invalid {
    type Target = [Problem];
    fn deref(&self) -> &[Problem] {
        &self.0
    }
}

impl<'a> IntoIterator for &'a Invalid {
    type Item = &'a Problem;
    type IntoIter = std::slice::Iter<'a, Problem>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The candidate closest to a misspelled word, if one is close enough.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "; did you mean `x`?" when one candidate is close enough, else a list of valid keys.
pub fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let candidates: Vec<&str> = candidates.collect();
    match closest(word, &candidates) {
        Some(c) => format!("; did you mean `{c}`?"),
        None if candidates.is_empty() => String::new(),
        None => format!("; valid keys here: {}", candidates.join(", ")),
    }
}
