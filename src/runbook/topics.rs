//! Runbook topics that error messages point operators to.
//!
//! Invariant: every constant here resolves to a chapter or section of the embedded book; the test
//! below fails the build's tests the moment a heading is renamed without updating this list.

pub const HOME_AND_FILES: &str = "files-in-the-futurnal-home";
pub const START_REFUSED: &str = "orchestrator-wont-start";
pub const ALREADY_RUNNING: &str = "already-running";
pub const STOPPING: &str = "stopping-the-orchestrator";
pub const CONFIGURATION: &str = "configuration";
pub const MANAGING_SOURCES: &str = "managing-sources";
pub const MANAGING_JOBS: &str = "managing-jobs";
pub const QUARANTINE: &str = "managing-quarantine";
pub const DISK_LOW: &str = "disk-space-is-low";
pub const CORRUPT_DB: &str = "the-queue-database-is-corrupt";
pub const HOME_NOT_PRIVATE: &str = "the-home-is-not-private";
pub const HOME_NOT_YOURS: &str = "the-home-belongs-to-another-user";
pub const HOME_ODD_ENTRY: &str = "a-link-or-special-file-in-the-home";
pub const DB_NOT_READABLE: &str = "a-database-is-not-readable";
pub const STORE_CORRUPT: &str = "the-document-store-is-corrupt";
pub const RUNBOOK_HARNESS: &str = "writing-runbooks";
pub const READING_THE_BOOK: &str = "reading-the-book-in-the-terminal";
pub const CONFIG_RELOAD: &str = "reloading-the-configuration";
// Monitoring (telemetry.rs, cli/telemetry_cmd.rs).
pub const TELEMETRY: &str = "telemetry-and-retention";
// Monitoring (health.rs): the list of checks, and one section per check.
pub const HEALTH_CHECKS: &str = "health-checks";
pub const ABSENT_SINKS: &str = "neo4j-and-chroma";
pub const CHECK_DAEMON: &str = "check-daemon";
pub const CHECK_SCHEDULER: &str = "check-scheduler";
pub const CHECK_QUEUE: &str = "check-queue";
pub const CHECK_STORE: &str = "check-store";
pub const CHECK_WAL: &str = "check-wal";
pub const CHECK_DISK: &str = "check-disk";
pub const CHECK_CONFIG: &str = "check-config";
pub const CHECK_PENDING: &str = "check-pending_age";
pub const CHECK_THROUGHPUT: &str = "check-throughput";
pub const BACKUPS: &str = "backups";
pub const RESTORE: &str = "restoring-a-backup";
// Security (security.rs, cli/audit_cmd.rs).
pub const AUDIT_LOG: &str = "the-audit-log";
// The command line (cli/mod.rs usage errors, cli/reference.rs).
pub const STARTING: &str = "starting-the-orchestrator";
pub const CHECKING_STATUS: &str = "checking-status";
pub const COMPLETIONS: &str = "completions-and-the-man-page";
pub const QUICKSTART: &str = "the-first-minute";

/// Every topic (the test below checks each resolves).
#[cfg(test)]
pub(crate) const ALL: &[&str] = &[
    HOME_AND_FILES,
    STARTING,
    CHECKING_STATUS,
    COMPLETIONS,
    QUICKSTART,
    START_REFUSED,
    ALREADY_RUNNING,
    STOPPING,
    CONFIGURATION,
    MANAGING_SOURCES,
    MANAGING_JOBS,
    QUARANTINE,
    DISK_LOW,
    CORRUPT_DB,
    HOME_NOT_PRIVATE,
    HOME_NOT_YOURS,
    HOME_ODD_ENTRY,
    DB_NOT_READABLE,
    STORE_CORRUPT,
    RUNBOOK_HARNESS,
    READING_THE_BOOK,
    CONFIG_RELOAD,
    TELEMETRY,
    HEALTH_CHECKS,
    ABSENT_SINKS,
    CHECK_DAEMON,
    CHECK_SCHEDULER,
    CHECK_QUEUE,
    CHECK_STORE,
    CHECK_WAL,
    CHECK_DISK,
    CHECK_CONFIG,
    CHECK_PENDING,
    CHECK_THROUGHPUT,
    BACKUPS,
    RESTORE,
    AUDIT_LOG,
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_topic_named_by_an_error_exists_in_the_book() {
        for topic in super::ALL {
            let found = super::super::find(topic);
            assert!(
                found.is_ok(),
                "topic `{topic}` is not a chapter or heading of the book"
            );
            // An exact slug, not a fuzzy word match: the operator types exactly this.
            let exact = match found.unwrap() {
                super::super::Found::Chapter(c) => c.slug == *topic,
                super::super::Found::Section { heading, .. } => heading.slug == *topic,
            };
            assert!(exact, "topic `{topic}` only matched loosely");
        }
    }
}
