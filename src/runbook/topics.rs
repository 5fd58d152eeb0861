//! Runbook topics that error messages point operators to.
//!
//! Invariant: every constant here resolves to a chapter or section of the embedded book; the test
//! below fails the build's tests the moment a heading is renamed without updating this list.

pub const HOME_AND_FILES: &str = "files-in-the-futurnal-home";
pub const START_REFUSED: &str = "orchestrator-wont-start";
pub const ALREADY_RUNNING: &str = "already-running";
pub const STOPPING: &str = "stopping-the-orchestrator";
pub const CONFIGURATION: &str = "configuration";
pub const CONFIG_CREATE: &str = "creating-the-file";
pub const CONFIG_INVALID: &str = "validating";
pub const CONFIG_SHOW: &str = "showing-the-effective-configuration";
pub const MANAGING_SOURCES: &str = "managing-sources";
pub const SOURCES_DECLARE: &str = "declaring-sources";
pub const SOURCES_LIST: &str = "listing-sources";
pub const SOURCES_TRIGGER: &str = "triggering-a-run";
pub const SOURCES_PAUSE: &str = "pausing-and-resuming";
pub const MANAGING_JOBS: &str = "managing-jobs";
pub const JOBS_LIST: &str = "listing-jobs";
pub const JOBS_SHOW: &str = "job-details";
pub const JOBS_CANCEL: &str = "cancelling-a-job";
pub const JOBS_INTERRUPTED: &str = "when-the-orchestrator-stops-with-jobs-running";
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
// Troubleshooting configuration changes (daemon/reload.rs, health.rs, cli/sources_cmd.rs).
pub const RELOAD_REFUSED: &str = "a-reload-is-refused";
pub const CONFIG_STALE: &str =
    "the-configuration-changed-but-the-orchestrator-still-runs-the-old-one";
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

/// Every topic (the tests below check each resolves, and that no constant above is missing here).
pub const ALL: &[&str] = &[
    HOME_AND_FILES,
    STARTING,
    CHECKING_STATUS,
    COMPLETIONS,
    QUICKSTART,
    START_REFUSED,
    ALREADY_RUNNING,
    STOPPING,
    CONFIGURATION,
    CONFIG_CREATE,
    CONFIG_INVALID,
    CONFIG_SHOW,
    MANAGING_SOURCES,
    SOURCES_DECLARE,
    SOURCES_LIST,
    SOURCES_TRIGGER,
    SOURCES_PAUSE,
    MANAGING_JOBS,
    JOBS_LIST,
    JOBS_SHOW,
    JOBS_CANCEL,
    JOBS_INTERRUPTED,
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
    RELOAD_REFUSED,
    CONFIG_STALE,
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

/// What the harness report says about topics: how many errors and checks name, which of them
/// the book lacks (a failure), and the troubleshooting entries (the H2 sections of the
/// troubleshooting and disaster-recovery chapters) that no error names, neither the entry nor a
/// heading inside it. Those are found by symptom, from the book or `help runbook --search`; the
/// list shows where a new error message could point.
#[derive(Debug)]
pub struct Report {
    pub named: usize,
    pub missing: Vec<String>,
    pub unnamed_entries: Vec<String>,
}

/// `topic` is exactly a chapter's or a heading's slug (not a fuzzy word match: the operator
/// types exactly what the error printed).
fn resolves(topic: &str) -> bool {
    match super::find(topic) {
        Ok(super::Found::Chapter(c)) => c.slug == topic,
        Ok(super::Found::Section { heading, .. }) => heading.slug == topic,
        Err(_) => false,
    }
}

pub fn report() -> Report {
    let missing = ALL
        .iter()
        .filter(|t| !resolves(t))
        .map(|t| t.to_string())
        .collect();
    let mut unnamed_entries = Vec::new();
    for chapter in super::CHAPTERS
        .iter()
        .filter(|c| c.slug.starts_with("troubleshooting") || c.slug == "disaster-recovery")
    {
        let headings = super::headings(chapter.text);
        for (i, entry) in headings.iter().enumerate().filter(|(_, h)| h.level == 2) {
            let inside = headings[i..]
                .iter()
                .take_while(|h| h.start == entry.start || h.level > 2);
            if !inside.into_iter().any(|h| ALL.contains(&h.slug.as_str())) {
                unnamed_entries.push(format!("{}#{}", chapter.slug, entry.slug));
            }
        }
    }
    Report {
        named: ALL.len(),
        missing,
        unnamed_entries,
    }
}

#[cfg(test)]
mod tests {
    /// A constant added above but not to `ALL` would escape every check.
    #[test]
    fn every_topic_constant_is_listed_in_all() {
        let source = include_str!("topics.rs");
        let body = source.split("#[cfg(test)]").next().unwrap();
        let names: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("pub const "))
            .filter_map(|l| l.split_once(": &str = "))
            .map(|(name, _)| name)
            .collect();
        assert!(names.len() > 30, "found only {names:?}");
        let listed = body.split("pub const ALL").nth(1).unwrap();
        for name in names {
            assert!(
                listed.contains(&format!("    {name},")),
                "{name} is not in topics::ALL"
            );
        }
    }

    #[test]
    fn the_report_finds_named_topics_and_lists_unnamed_troubleshooting_entries() {
        let report = super::report();
        assert!(report.missing.is_empty(), "{:?}", report.missing);
        assert_eq!(report.named, super::ALL.len());
        // An entry some error names is not listed; every listed entry exists.
        let named_entry = format!("troubleshooting-home#{}", super::STORE_CORRUPT);
        assert!(!report.unnamed_entries.contains(&named_entry), "{report:?}");
        for entry in &report.unnamed_entries {
            assert!(super::resolves(entry.split_once('#').unwrap().1), "{entry}");
        }
    }

    #[test]
    fn every_topic_named_by_an_error_exists_in_the_book() {
        for topic in super::ALL {
            assert!(
                super::resolves(topic),
                "topic `{topic}` is not exactly a chapter or heading of the book"
            );
        }
    }
}
