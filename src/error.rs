//! Operator-facing errors.
//!
//! Owns: the one error shape every command reports to an operator, and the process exit codes.
//! Invariant: every `OperatorError` says what went wrong, what is safe to do next, and names a
//! `futurnal help runbook` topic that exists in the embedded book (checked by a unit test in
//! `runbook::topics`).

use std::fmt;

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
}

impl ExitCode {
    pub const ALL: &[ExitCode] = &[
        ExitCode::Ok,
        ExitCode::Failure,
        ExitCode::Usage,
        ExitCode::Config,
        ExitCode::AlreadyRunning,
        ExitCode::Database,
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

impl From<OperatorError> for CommandError {
    fn from(e: OperatorError) -> Self {
        CommandError::Operator(e)
    }
}
