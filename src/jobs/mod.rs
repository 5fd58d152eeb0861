//! Jobs: the queue's state machine and every queue operation on jobs and source state.
//!
//! A job is `pending` (never attempted, or handed back by a shutdown or crash) → `running` →
//! `succeeded`, `failed` (the attempt failed; it retries by itself at `scheduled_for`),
//! `quarantined` (retries exhausted, or a permanent failure: an operator must act) or `cancelled`
//! (an operator decided). The pieces:
//! - `model`: `JobState`, `JobKind` (the one list of each), rows;
//! - `transitions`: which change is legal in which state (pure), and `apply`, the one writer of a
//!   job's state, which writes the change and its event in the caller's transaction;
//! - `claim`: enqueueing (one run, or many in one transaction), the claim query (filters in
//!   SQL; `claim_batch` takes many jobs in one transaction, `claim` is its one-job case),
//!   leases and rescue;
//! - `retry`: the failure decision (pure);
//! - `queries`: reads, and the history check the test suites run;
//! - `source_state`: pauses and schedule marks.
//!
//! Invariants (each enforced where named): a state change and its `job_events` row commit
//! together (`transitions::apply`; test `a_crash_between_update_and_event_leaves_neither`);
//! illegal changes are refused before anything is written (`JobState::after`;
//! `the_transition_table`); no number of blocked jobs hides a runnable one (`claim`;
//! `a_flood_of_blocked_jobs_does_not_starve_another_source`); an attempt is counted when a job is
//! claimed; at most one `source_run` per source is waiting and at most one runs; a batch claim
//! takes exactly what as many single claims would (`a_batch_claims_what_as_many_single_claims_would`).

mod claim;
mod model;
mod queries;
mod retry;
mod source_state;
mod transitions;

pub use claim::{
    Enqueued, Orphans, any_due, claim, claim_batch, claim_batch_in, claimable, enqueue_item,
    enqueue_run, enqueue_runs, expired_leases, progress, renew_leases, rescue_orphans,
};
pub use model::{Event, ItemError, Job, JobKind, JobState, RunNumbers};
pub use queries::{
    LastRuns, ListFilter, QuarantineFilter, cancel_requests, events, get, history_violations,
    item_errors, last_runs, list, open_counts, open_job_ids, quarantined,
};
pub use retry::{Decision, decide, item_key};
pub use source_state::{SourceState, pause, resume, set_schedule_marks, source_states};
pub use transitions::{
    CancelOutcome, Outcome, finish, hand_back, immediate, in_transaction, purge_quarantined,
    record_item_error, request_cancel, resolve_items, resolve_runs, retry_later, retry_quarantined,
};
#[cfg(test)]
pub use transitions::{Change, failpoint};

#[cfg(test)]
mod tests {
    use super::claim::POISON_AFTER_CRASHES;
    use super::transitions::{Change, failpoint};
    use super::*;
    use crate::config::{Priority, SourceConfig, SourceType};

    fn source(name: &str, priority: Priority) -> SourceConfig {
        SourceConfig {
            priority,
            ..SourceConfig::new(name, SourceType::LocalFiles, "/x")
        }
    }

    fn fresh_db() -> (tempfile::TempDir, crate::queue::QueueDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::queue::QueueDb::open_for_daemon(
            &dir.path().join("queue.db"),
            &crate::config::Queue::default(),
        )
        .unwrap();
        (dir, db)
    }

    fn claim_one(db: &crate::queue::QueueDb, sources: &[SourceConfig], now: i64) -> Option<Job> {
        claim(db.conn(), now, "i", 1000, &claimable(sources)).unwrap()
    }

    fn assert_history_whole(db: &crate::queue::QueueDb) {
        assert_eq!(
            history_violations(db.conn()).unwrap(),
            Vec::<(i64, String)>::new()
        );
    }

    /// The book's "one priority level for every N minutes" is `AGING_MS`.
    #[test]
    fn the_book_states_the_aging_the_claim_uses() {
        let chapter = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src/managing-jobs.md"),
        )
        .unwrap();
        let re = regex::Regex::new(r"one priority level for every (\d+) minutes").unwrap();
        let minutes: i64 = re.captures(&chapter).expect("the sentence")[1]
            .parse()
            .unwrap();
        assert_eq!(minutes * 60_000, super::claim::AGING_MS);
    }

    #[test]
    fn priority_wins_until_waiting_outweighs_it() {
        let (_d, db) = fresh_db();
        let low = source("low", Priority::Low);
        let high = source("high", Priority::High);
        let sources = vec![low.clone(), high.clone()];
        let t0 = 1_000_000_000;
        // The low job waited 3 minutes, the high one just arrived: high goes first.
        enqueue_run(db.conn(), &low, "manual", "test", t0).unwrap();
        enqueue_run(db.conn(), &high, "manual", "test", t0 + 3 * 60_000).unwrap();
        let first = claim_one(&db, &sources, t0 + 3 * 60_000).unwrap();
        assert_eq!(first.source, "high");

        // Once the low job has waited more than two levels' worth (10 minutes), it goes first.
        let (_d, db) = fresh_db();
        enqueue_run(db.conn(), &low, "manual", "test", t0).unwrap();
        enqueue_run(db.conn(), &high, "manual", "test", t0 + 11 * 60_000).unwrap();
        let first = claim_one(&db, &sources, t0 + 11 * 60_000).unwrap();
        assert_eq!(first.source, "low");
    }

    #[test]
    fn paused_sources_and_running_runs_are_not_claimed_and_triggers_coalesce() {
        let (_d, db) = fresh_db();
        let a = source("a", Priority::Normal);
        let sources = vec![a.clone()];
        let first = enqueue_run(db.conn(), &a, "manual", "t", 1).unwrap();
        assert_eq!(
            enqueue_run(db.conn(), &a, "manual", "t", 2).unwrap(),
            Enqueued::Coalesced(first.id())
        );
        pause(db.conn(), "a", "why", "t", 3).unwrap();
        assert!(claim_one(&db, &sources, 10).is_none());
        resume(db.conn(), "a").unwrap();
        let job = claim_one(&db, &sources, 10).unwrap();
        assert_eq!(job.attempts, 1, "counted at claim");
        // While it runs, a trigger queues one more run, which waits for the first to finish.
        let second = enqueue_run(db.conn(), &a, "manual", "t", 11).unwrap();
        assert!(matches!(second, Enqueued::New(_)));
        assert!(claim_one(&db, &sources, 12).is_none());
        // A disabled source's jobs are never claimed.
        let off = SourceConfig {
            enabled: false,
            ..source("off", Priority::High)
        };
        enqueue_run(db.conn(), &off, "manual", "t", 13).unwrap();
        assert!(claim_one(&db, &[a.clone(), off], 14).is_none());
        assert_history_whole(&db);
    }

    /// Many due item jobs of one source, each blocked (paused source, or a source whose one
    /// slot is taken): another source's single job is still claimed at once.
    fn flood(blocked: &SourceConfig, db: &crate::queue::QueueDb, n: usize) {
        let run = enqueue_run(db.conn(), blocked, "manual", "t", 1)
            .unwrap()
            .id();
        let tx = immediate(db.conn()).unwrap();
        let io = crate::failure::Failure::new(crate::failure::ErrorClass::IoError, "x");
        for i in 0..n {
            enqueue_item(&tx, blocked, &format!("note {i}.md"), run, &io, 2, 1).unwrap();
        }
        tx.commit().unwrap();
    }

    /// Two triggers at once: the later one read its clock before the first one's insert got
    /// the lock. Joining the run leaves its history starting with its creation.
    #[test]
    fn a_trigger_whose_clock_lags_the_queued_run_joins_it_cleanly() {
        let (_d, db) = fresh_db();
        let a = source("a", Priority::Normal);
        let first = enqueue_run(db.conn(), &a, "manual", "one", 105).unwrap();
        let second = enqueue_run(db.conn(), &a, "manual", "two", 100).unwrap();
        assert_eq!(second, Enqueued::Coalesced(first.id()));
        assert_eq!(
            get(db.conn(), first.id()).unwrap().unwrap().scheduled_for,
            105
        );
        assert_history_whole(&db);
    }

    #[test]
    fn a_flood_of_blocked_jobs_does_not_starve_another_source() {
        // A paused source with 1,000 due item retries.
        let (_d, db) = fresh_db();
        let paused = source("paused", Priority::High);
        let other = source("other", Priority::Low);
        flood(&paused, &db, 1000);
        pause(db.conn(), "paused", "maintenance", "t", 3).unwrap();
        enqueue_run(db.conn(), &other, "manual", "t", 100).unwrap();
        let job = claim_one(&db, &[paused.clone(), other.clone()], 100).unwrap();
        assert_eq!(job.source, "other");

        // A `concurrency: 1` source with one job running and 1,000 due item retries.
        let (_d, db) = fresh_db();
        let single = SourceConfig {
            concurrency: 1,
            ..source("single", Priority::High)
        };
        flood(&single, &db, 1000);
        let sources = [single.clone(), other.clone()];
        let first = claim_one(&db, &sources, 100).unwrap();
        assert_eq!(first.source, "single");
        enqueue_run(db.conn(), &other, "manual", "t", 100).unwrap();
        let next = claim_one(&db, &sources, 100).unwrap();
        assert_eq!(next.source, "other");
        assert!(claim_one(&db, &sources, 100).is_none());
        assert_history_whole(&db);
    }

    /// SQLite's count of virtual-machine steps one claim of `sources` takes.
    fn claim_steps(db: &crate::queue::QueueDb, sources: &[SourceConfig], now: i64) -> i32 {
        let steps = || {
            db.conn()
                .prepare_cached(super::claim::claim_sql())
                .unwrap()
                .get_status(rusqlite::StatementStatus::VmStep)
        };
        let before = steps();
        claim_one(db, sources, now);
        steps() - before
    }

    /// A backlog a source cannot run now (paused, or its `concurrency` full) costs a claim
    /// nothing: the source is dropped before its jobs are read. The claim query once read
    /// every due job once per configured source (measured with 200 sources and 100,000 jobs of
    /// a paused one: 5.7 s a claim).
    #[test]
    fn a_blocked_backlog_costs_a_claim_nothing() {
        let idle: Vec<SourceConfig> = (0..20)
            .map(|i| source(&format!("idle{i}"), Priority::Normal))
            .collect();
        let other = source("other", Priority::Low);
        let with = |blocked: &SourceConfig| {
            let mut all = idle.clone();
            all.extend([blocked.clone(), other.clone()]);
            all
        };
        let paused = source("paused", Priority::High);
        let single = SourceConfig {
            concurrency: 1,
            ..source("single", Priority::High)
        };
        for (blocked, block) in [(&paused, true), (&single, false)] {
            let sources = with(blocked);
            let (_d, small) = fresh_db();
            let (_d, large) = fresh_db();
            for (db, n) in [(&small, 10), (&large, 1_000)] {
                flood(blocked, db, n);
                if block {
                    pause(db.conn(), &blocked.name, "why", "t", 3).unwrap();
                } else {
                    assert_eq!(claim_one(db, &sources, 100).unwrap().source, blocked.name);
                }
                enqueue_run(db.conn(), &other, "manual", "t", 100).unwrap();
            }
            let (a, b) = (
                claim_steps(&small, &sources, 100),
                claim_steps(&large, &sources, 100),
            );
            assert_eq!(a, b, "{}: 10 or 1,000 blocked jobs", blocked.name);
            assert!(claim_one(&large, &sources, 100).is_none());
        }
    }

    #[test]
    fn the_claiming_daemons_policy_sets_the_attempts() {
        let (_d, db) = fresh_db();
        let mut a = source("a", Priority::Normal);
        a.retry.max_attempts = 2;
        enqueue_run(db.conn(), &a, "manual", "cli", 1).unwrap();
        a.retry.max_attempts = 7;
        let job = claim_one(&db, &[a], 2).unwrap();
        assert_eq!(job.max_attempts, 7);
        assert_eq!(get(db.conn(), job.id).unwrap().unwrap().max_attempts, 7);
    }

    #[test]
    fn rescue_hands_back_orphans_without_using_an_attempt_and_poisons_repeat_offenders() {
        let (_d, db) = fresh_db();
        let a = source("a", Priority::Normal);
        let id = enqueue_run(db.conn(), &a, "manual", "t", 1).unwrap().id();
        for round in 0..POISON_AFTER_CRASHES {
            let t = 10 * (round + 1);
            let only_a = claimable(std::slice::from_ref(&a));
            let job = claim(db.conn(), t, "dead", 1000, &only_a).unwrap().unwrap();
            assert_eq!(job.id, id);
            let tx = immediate(db.conn()).unwrap();
            let orphans = rescue_orphans(&tx, "alive", None, t + 1).unwrap();
            tx.commit().unwrap();
            let job = get(db.conn(), id).unwrap().unwrap();
            if round + 1 < POISON_AFTER_CRASHES {
                assert_eq!(orphans.requeued, 1);
                assert_eq!((job.state, job.attempts), (JobState::Pending, 0));
            } else {
                assert_eq!(orphans.poisoned, 1);
                assert_eq!(job.state, JobState::Quarantined);
                assert_eq!(job.error_class.as_deref(), Some("poison"));
            }
        }
        let states: Vec<JobState> = events(db.conn(), id)
            .unwrap()
            .into_iter()
            .map(|e| e.to_state)
            .collect();
        use JobState::*;
        assert_eq!(
            states,
            vec![
                Pending,
                Running,
                Pending,
                Running,
                Pending,
                Running,
                Quarantined
            ]
        );
        assert_history_whole(&db);
    }

    #[test]
    fn a_lapsed_lease_is_found_and_only_that_job_is_rescued() {
        let (_d, db) = fresh_db();
        let a = source("a", Priority::Normal);
        let b = source("b", Priority::Normal);
        let sources = claimable(&[a.clone(), b.clone()]);
        enqueue_run(db.conn(), &a, "manual", "t", 1).unwrap();
        enqueue_run(db.conn(), &b, "manual", "t", 1).unwrap();
        let first = claim(db.conn(), 10, "me", 100, &sources).unwrap().unwrap();
        let second = claim(db.conn(), 10, "me", 100, &sources).unwrap().unwrap();
        renew_leases(db.conn(), &[(second.id, 500)]).unwrap();
        assert!(expired_leases(db.conn(), 109).unwrap().is_empty());
        let expired = expired_leases(db.conn(), 200).unwrap();
        assert_eq!(expired, vec![(first.id, Some("me".to_string()))]);
        let tx = immediate(db.conn()).unwrap();
        rescue_orphans(&tx, "me", Some(&[first.id]), 200).unwrap();
        tx.commit().unwrap();
        assert_eq!(
            get(db.conn(), first.id).unwrap().unwrap().state,
            JobState::Pending
        );
        assert_eq!(
            get(db.conn(), second.id).unwrap().unwrap().state,
            JobState::Running
        );
        assert_history_whole(&db);
    }

    #[test]
    fn a_successful_run_resolves_earlier_quarantined_runs_of_its_source_only() {
        let (_d, db) = fresh_db();
        let mut a = source("a", Priority::Normal);
        let mut b = source("b", Priority::Normal);
        a.retry.max_attempts = 1;
        b.retry.max_attempts = 1;
        let sources = vec![a.clone(), b.clone()];
        let crash = crate::failure::Failure::new(crate::failure::ErrorClass::Internal, "crash");
        let quarantine = |src: &SourceConfig, t: i64| {
            let id = enqueue_run(db.conn(), src, "manual", "t", t).unwrap().id();
            claim_one(&db, &sources, t).unwrap();
            let tx = immediate(db.conn()).unwrap();
            finish(
                &tx,
                id,
                Outcome::Quarantined,
                t,
                "daemon",
                "x",
                &RunNumbers::default(),
                Some(&crash),
            )
            .unwrap();
            tx.commit().unwrap();
            id
        };
        let old_a = quarantine(&a, 1);
        let old_b = quarantine(&b, 2);
        let later = enqueue_run(db.conn(), &a, "manual", "t", 3).unwrap().id();
        let tx = immediate(db.conn()).unwrap();
        assert_eq!(resolve_runs(&tx, "a", later, 4).unwrap(), 1);
        tx.commit().unwrap();
        let job = get(db.conn(), old_a).unwrap().unwrap();
        assert_eq!(job.state, JobState::Succeeded);
        let last = events(db.conn(), old_a).unwrap().pop().unwrap();
        assert_eq!(
            last.reason.as_deref(),
            Some(format!("resolved: a later run of this source (job {later}) succeeded").as_str())
        );
        assert_eq!(
            get(db.conn(), old_b).unwrap().unwrap().state,
            JobState::Quarantined
        );
        assert_history_whole(&db);
    }

    /// A job as the claim proptest writes it straight into `jobs`: any source (5 is one no
    /// daemon configures), kind, state, priority and times, including some not yet due.
    #[derive(Debug, Clone)]
    struct RawJob {
        source: usize,
        run: bool,
        state: JobState,
        priority: i64,
        created_ago: i64,
        due_in: i64,
    }

    /// A source as the claim proptest configures it.
    #[derive(Debug, Clone)]
    struct RawSource {
        concurrency: u32,
        attempts: u32,
        paused: bool,
        enabled: bool,
    }

    fn raw_job() -> impl proptest::strategy::Strategy<Value = RawJob> {
        use proptest::prelude::*;
        let states = prop::sample::select(vec![
            JobState::Pending,
            JobState::Pending,
            JobState::Failed,
            JobState::Running,
            JobState::Succeeded,
            JobState::Quarantined,
        ]);
        (
            0usize..6,
            any::<bool>(),
            states,
            0i64..3,
            // Ages around `AGING_MS`, so waiting can outweigh priority; equal ages tie on id.
            prop::sample::select(vec![0, 1, 60_000, 4 * 60_000, 6 * 60_000, 11 * 60_000]),
            prop::sample::select(vec![-5, 0, 0, 1, 1000]),
        )
            .prop_map(
                |(source, run, state, priority, created_ago, due_in)| RawJob {
                    source,
                    run,
                    state,
                    priority,
                    created_ago,
                    due_in,
                },
            )
    }

    fn raw_source() -> impl proptest::strategy::Strategy<Value = RawSource> {
        use proptest::prelude::*;
        (
            1u32..4,
            1u32..6,
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.9),
        )
            .prop_map(|(concurrency, attempts, paused, enabled)| RawSource {
                concurrency,
                attempts,
                paused,
                enabled,
            })
    }

    const NOW: i64 = 100_000_000;

    /// A queue holding exactly `jobs`, for a daemon configured with `sources` (s0..s4).
    fn raw_queue(
        dir: &std::path::Path,
        name: &str,
        sources: &[RawSource],
        jobs: &[RawJob],
    ) -> (crate::queue::QueueDb, String) {
        let db = crate::queue::QueueDb::open_for_daemon(
            &dir.join(name),
            &crate::config::Queue::default(),
        )
        .unwrap();
        // Durability is not what this test is about: the claims' rules are.
        db.conn().execute_batch("PRAGMA synchronous = OFF").unwrap();
        let configs: Vec<SourceConfig> = sources
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                let mut s = source(&format!("s{i}"), Priority::Normal);
                s.concurrency = raw.concurrency;
                s.retry.max_attempts = raw.attempts;
                s.enabled = raw.enabled;
                if raw.paused {
                    pause(db.conn(), &s.name, "test", "t", 1).unwrap();
                }
                s
            })
            .collect();
        for j in jobs {
            db.conn()
                .execute(
                    "INSERT INTO jobs (source, kind, item, state, priority, trigger,
                        scheduled_for, max_attempts, created_at, updated_at, instance_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'manual', ?6, 3, ?7, ?7, ?8)",
                    rusqlite::params![
                        format!("s{}", j.source),
                        if j.run {
                            JobKind::SourceRun
                        } else {
                            JobKind::Item
                        },
                        (!j.run).then_some("note.md"),
                        j.state,
                        j.priority,
                        NOW + j.due_in,
                        NOW - j.created_ago,
                        (j.state == JobState::Running).then_some("other"),
                    ],
                )
                .unwrap();
        }
        (db, claimable(&configs))
    }

    /// Everything a claim writes, to compare two queues.
    fn claim_effects(db: &crate::queue::QueueDb) -> (Vec<String>, Vec<String>) {
        let rows = |sql: &str| -> Vec<String> {
            let mut stmt = db.conn().prepare(sql).unwrap();
            let n = stmt.column_count();
            stmt.query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
        };
        (
            rows(
                "SELECT id, state, attempts, max_attempts, started_at, instance_id, lease_until,
                    updated_at FROM jobs ORDER BY id",
            ),
            rows(
                "SELECT id, job_id, at, from_state, to_state, actor, reason FROM job_events ORDER BY id",
            ),
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// On any queue (sources with their concurrency, attempts, pauses and enabled flag; jobs
        /// of every kind and state, due or not, of any priority and age), a batch claim of `n`
        /// takes the jobs `n` single claims take, in the same order, and writes the same rows:
        /// never a job twice, never more than a source's free slots, never a second run of a
        /// source, nothing of a paused, disabled or unknown source.
        #[test]
        fn a_batch_claims_what_as_many_single_claims_would(
            sources in proptest::collection::vec(raw_source(), 5),
            jobs in proptest::collection::vec(raw_job(), 0..40),
            n in 1usize..12,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (batch_db, claimable) = raw_queue(dir.path(), "batch.db", &sources, &jobs);
            let (single_db, _) = raw_queue(dir.path(), "single.db", &sources, &jobs);
            let batch = claim_batch(batch_db.conn(), NOW, "me", 1000, &claimable, n).unwrap();
            let mut single = Vec::new();
            for _ in 0..n {
                if let Some(job) = claim(single_db.conn(), NOW, "me", 1000, &claimable).unwrap() {
                    single.push(job);
                }
            }
            let ids = |jobs: &[Job]| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
            proptest::prop_assert_eq!(ids(&batch), ids(&single));
            proptest::prop_assert_eq!(claim_effects(&batch_db), claim_effects(&single_db));
            // The rules, checked from the input rather than from the other claim.
            let mut seen = std::collections::HashSet::new();
            for job in &batch {
                proptest::prop_assert!(seen.insert(job.id), "job {} twice", job.id);
                let i: usize = job.source[1..].parse().unwrap();
                proptest::prop_assert!(i < 5 && sources[i].enabled && !sources[i].paused);
                proptest::prop_assert_eq!(job.max_attempts, i64::from(sources[i].attempts));
                proptest::prop_assert_eq!(job.state, JobState::Running);
            }
            for (i, raw) in sources.iter().enumerate() {
                let name = format!("s{i}");
                let was_running = |run_only: bool| {
                    jobs.iter()
                        .filter(|j| j.source == i && j.state == JobState::Running)
                        .filter(|j| !run_only || j.run)
                        .count()
                };
                let taken = batch.iter().filter(|j| j.source == name);
                let runs = taken.clone().filter(|j| j.kind == JobKind::SourceRun).count();
                let taken = taken.count();
                proptest::prop_assert!(
                    taken <= (raw.concurrency as usize).saturating_sub(was_running(false))
                );
                proptest::prop_assert!(runs + was_running(true).min(1) <= 1);
            }
        }
    }

    #[test]
    fn enqueueing_many_runs_at_once_coalesces_each_as_alone() {
        let (_d, db) = fresh_db();
        let a = source("a", Priority::Normal);
        let b = source("b", Priority::Normal);
        let got = enqueue_runs(db.conn(), &[&a, &b, &a], "manual", "t", 5).unwrap();
        assert!(matches!(got[0], Enqueued::New(_)));
        assert!(matches!(got[1], Enqueued::New(_)));
        assert_eq!(got[2], Enqueued::Coalesced(got[0].id()));
        assert_eq!(
            enqueue_run(db.conn(), &b, "manual", "t", 6).unwrap(),
            Enqueued::Coalesced(got[1].id())
        );
        let claimed = claim_batch(db.conn(), 7, "i", 1000, &claimable(&[a, b]), 8).unwrap();
        assert_eq!(claimed.len(), 2);
        assert_history_whole(&db);
    }

    /// Each change, failed between its UPDATE and its event (the failpoint), leaves the job as
    /// it was and no event: both or neither.
    #[test]
    fn a_crash_between_update_and_event_leaves_neither() {
        let (_d, db) = fresh_db();
        let a = source("a", Priority::Normal);
        let sources = [a.clone()];
        let id = enqueue_run(db.conn(), &a, "manual", "t", 1).unwrap().id();
        // Every job's state and number of events.
        let before = |db: &crate::queue::QueueDb| {
            let filter = ListFilter {
                limit: 10,
                ..Default::default()
            };
            list(db.conn(), &filter)
                .unwrap()
                .iter()
                .map(|j| (j.state, events(db.conn(), j.id).unwrap().len()))
                .collect::<Vec<_>>()
        };
        let attempt = |change: Change, f: &dyn Fn() -> rusqlite::Result<()>| {
            let was = before(&db);
            failpoint::set_on_this_thread(Some(change));
            let result = f();
            failpoint::set_on_this_thread(None);
            assert!(result.is_err(), "{change:?}: the failpoint fired");
            assert_eq!(before(&db), was, "{change:?}: nothing was written");
            f().unwrap();
            assert_ne!(
                before(&db),
                was,
                "{change:?}: without the failpoint it happens"
            );
            assert_history_whole(&db);
        };
        attempt(Change::Claimed, &|| {
            claim(db.conn(), 2, "i", 1000, &claimable(&sources)).map(|_| ())
        });
        let in_tx = |f: &dyn Fn(&rusqlite::Transaction) -> rusqlite::Result<bool>| {
            let tx = immediate(db.conn())?;
            f(&tx)?;
            tx.commit()
        };
        attempt(Change::HandedBack, &|| {
            in_tx(&|tx| hand_back(tx, id, 3, 3, "daemon", "shutdown"))
        });
        claim(db.conn(), 4, "i", 1000, &claimable(&sources)).unwrap();
        let io = crate::failure::Failure::new(crate::failure::ErrorClass::IoError, "x");
        attempt(Change::WillRetry, &|| {
            in_tx(&|tx| retry_later(tx, id, 5, 5, &io, "retry"))
        });
        attempt(Change::Cancelled, &|| {
            request_cancel(db.conn(), id, "no", "op", 6).map(|_| ())
        });
        let id2 = enqueue_run(db.conn(), &a, "manual", "t", 7).unwrap().id();
        claim(db.conn(), 8, "i", 1000, &claimable(&sources)).unwrap();
        let numbers = RunNumbers::default();
        attempt(Change::Quarantined, &|| {
            in_tx(&|tx| {
                finish(
                    tx,
                    id2,
                    Outcome::Quarantined,
                    9,
                    "d",
                    "x",
                    &numbers,
                    Some(&io),
                )
            })
        });
        attempt(Change::RetriedFromQuarantine, &|| {
            in_tx(&|tx| retry_quarantined(tx, id2, 10, 10, "op", "fixed"))
        });
        claim(db.conn(), 11, "i", 1000, &claimable(&sources)).unwrap();
        attempt(Change::Succeeded, &|| {
            in_tx(&|tx| finish(tx, id2, Outcome::Succeeded, 12, "d", "ok", &numbers, None))
        });
    }
}
