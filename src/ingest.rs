//! Ingestion: one run of a source, or one item, from the filesystem into the document store.
//!
//! Owns: the incremental scan (size + mtime first, content hash to confirm), parallel parsing,
//! batched store writes, deletions, progress and cooperative cancellation.
//! Invariants: an item whose size and mtime are unchanged is not read; content whose hash is
//! unchanged is not rewritten; a failure of one item is recorded for that item and the run goes
//! on; items under a folder that could not be listed are never treated as deleted; cancellation
//! is checked between items and keeps everything already committed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::SourceConfig;
use crate::failure::{ErrorClass, Failure};
use crate::sources::{self, Candidate, Enumeration, Parsed};
use crate::store::{Counts, Prepared, ScanRow, Store};

/// Store writes are committed in batches of this many candidates (or every `BATCH_TIME`).
const BATCH: usize = 512;
const BATCH_TIME: Duration = Duration::from_millis(250);
/// Items (or bytes) a worker thread parses before handing them to the writer.
const GROUP: usize = 16;
const GROUP_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct Report {
    /// Items found in the source (ingestable candidates).
    pub items_seen: u64,
    pub counts: Counts,
    pub skipped: u64,
    pub failed: Vec<(String, Failure)>,
    /// Items ingested (read, parsed and written or confirmed unchanged).
    pub succeeded_items: Vec<String>,
    /// Bytes of items read and parsed.
    pub bytes: u64,
    pub cancelled: bool,
}

/// How a run reports progress: (items done, items to do).
pub type ProgressFn<'a> = &'a (dyn Fn(u64, u64) + Sync);

pub struct Run<'a> {
    pub source: &'a SourceConfig,
    pub store: &'a Path,
    pub cancel: &'a AtomicBool,
    pub progress: ProgressFn<'a>,
    pub threads: usize,
}

enum Work {
    /// Same content, new stat; carries the candidate's live document count.
    Touch(Candidate, String, u64),
    Put(
        Candidate,
        String,
        Vec<Prepared>,
        Vec<(String, Failure)>,
        u64,
    ),
    Fail(Candidate, Failure),
}

fn unchanged(row: Option<&ScanRow>, c: &Candidate) -> bool {
    row.is_some_and(|r| r.ok && r.size == c.size && r.mtime_ns == c.mtime_ns)
}

/// A candidate to read: its previous content hash and live document count, if known.
struct Todo {
    candidate: Candidate,
    hash: Option<String>,
    documents: u64,
}

/// Read and parse one candidate (in a worker thread).
fn process(source: &SourceConfig, todo: &Todo) -> Work {
    let c = todo.candidate.clone();
    let limit = source.max_item_mb.saturating_mul(1024 * 1024);
    if c.size > limit {
        let f = Failure::new(
            ErrorClass::TooLarge,
            format!(
                "{} is {} bytes, over the source's max_item_mb of {}",
                c.key, c.size, source.max_item_mb
            ),
        );
        return Work::Fail(c, f);
    }
    let bytes = match std::fs::read(&c.path) {
        Ok(b) => b,
        Err(e) => {
            let f = Failure::io(format!("cannot read {}", c.key), &e);
            return Work::Fail(c, f);
        }
    };
    let hash = sources::content_hash(&bytes);
    if todo.hash.as_deref() == Some(hash.as_str()) {
        return Work::Touch(c, hash, todo.documents);
    }
    let n = bytes.len() as u64;
    match sources::parse(source, &c, bytes, hash.clone()) {
        Ok(Parsed { docs, failures }) => {
            let prepared = docs.into_iter().map(Prepared::from).collect();
            Work::Put(c, hash, prepared, failures, n)
        }
        Err(f) => Work::Fail(c, f),
    }
}

impl Run<'_> {
    /// One full run: scan the source, ingest what changed, tombstone what disappeared.
    pub fn source_run(&self) -> Result<Report, Failure> {
        let source = self.source;
        // Walking the source and loading what the last run saw are independent: overlap them.
        let (enumeration, opened) = std::thread::scope(|scope| {
            let loader = scope.spawn(|| {
                let store = Store::open(self.store)?;
                let rows = store.scan_rows(&source.name)?;
                Ok::<_, Failure>((store, rows))
            });
            let enumeration = sources::enumerate(source);
            let opened = loader.join().unwrap_or_else(|_| {
                Err(Failure::new(
                    ErrorClass::Internal,
                    "loading the scan state panicked",
                ))
            });
            (enumeration, opened)
        });
        let enumeration = enumeration?;
        let (mut store, mut rows) = opened?;
        let mut report = Report {
            items_seen: enumeration.candidates.len() as u64,
            ..Default::default()
        };
        let Enumeration {
            candidates,
            skipped,
            errors,
        } = enumeration;

        // Rows seen this time are taken out of `rows`; what is left afterwards has disappeared.
        let mut work = Vec::new();
        let mut unchanged_docs = 0u64;
        for c in candidates {
            let row = rows.remove(&c.key);
            if unchanged(row.as_ref(), &c) {
                unchanged_docs += row.map_or(0, |r| r.documents);
            } else {
                let hash = match &row {
                    Some(r) if r.ok => store.hash_of(&source.name, &c.key)?,
                    _ => None,
                };
                work.push(Todo {
                    candidate: c,
                    hash,
                    documents: row.map_or(0, |r| r.documents),
                });
            }
        }
        let mut skip_writes = Vec::new();
        for s in &skipped {
            let same = rows
                .remove(&s.key)
                .is_some_and(|r| r.skipped && r.size == s.size && r.mtime_ns == s.mtime_ns);
            if !same {
                skip_writes.push(s.clone());
            }
        }
        report.skipped = skipped.len() as u64;
        // Never delete what we merely could not see.
        let unlisted: Vec<String> = errors.iter().map(|(k, _)| k.clone()).collect();
        let deleted: Vec<String> = rows
            .keys()
            .filter(|k| {
                !unlisted
                    .iter()
                    .any(|d| d.is_empty() || *k == d || k.starts_with(&format!("{d}/")))
            })
            .cloned()
            .collect();
        report.failed.extend(errors);

        let total = work.len() as u64;
        (self.progress)(0, total);
        let mut counts = Counts::default();
        let mut items_done = 0u64;
        self.process_all(
            work,
            &mut store,
            &mut report,
            &mut counts,
            &mut items_done,
            total,
        )?;

        if !report.cancelled {
            let mut tx = store.transaction()?;
            for s in &skip_writes {
                tx.skip(&source.name, s)?;
            }
            for key in &deleted {
                tx.delete(&source.name, key, &mut counts)?;
            }
            tx.commit()?;
        }
        // Documents of items not read this run are unchanged by definition.
        counts.unchanged += unchanged_docs;
        report.counts = counts;
        (self.progress)(items_done, total);
        Ok(report)
    }

    /// Re-ingest one item (a file, or one message of an mbox) regardless of its stat.
    pub fn item_run(&self, item: &str) -> Result<Report, Failure> {
        let source = self.source;
        let enumeration = sources::enumerate(source)?;
        let candidate_key = item.split('#').next().unwrap_or(item);
        let mut store = Store::open(self.store)?;
        let mut report = Report::default();
        if let Some((_, failure)) = enumeration.errors.iter().find(|(k, _)| k == candidate_key) {
            // Still unreadable (a folder that cannot be listed, say).
            return Err(failure.clone());
        }
        let Some(c) = enumeration
            .candidates
            .into_iter()
            .find(|c| c.key == candidate_key)
        else {
            // The item is gone: nothing left to ingest, and its documents are tombstoned.
            let mut counts = Counts::default();
            let mut tx = store.transaction()?;
            tx.delete(&source.name, candidate_key, &mut counts)?;
            tx.commit()?;
            report.counts = counts;
            report.succeeded_items.push(item.to_string());
            return Ok(report);
        };
        report.items_seen = 1;
        let mut counts = Counts::default();
        let mut done = 0;
        let todo = Todo {
            candidate: c,
            hash: None,
            documents: 0,
        };
        self.process_all(
            vec![todo],
            &mut store,
            &mut report,
            &mut counts,
            &mut done,
            1,
        )?;
        report.counts = counts;
        Ok(report)
    }

    fn process_all(
        &self,
        work: Vec<Todo>,
        store: &mut Store,
        report: &mut Report,
        counts: &mut Counts,
        items_done: &mut u64,
        total: u64,
    ) -> Result<(), Failure> {
        if work.is_empty() {
            return Ok(());
        }
        let source = self.source;
        let next = AtomicUsize::new(0);
        let threads = self.threads.clamp(1, work.len());
        // Workers hand items to the writer in small groups: one wake-up per group, not per item.
        let (tx, rx) = mpsc::sync_channel::<Vec<Work>>(threads * 4);
        let work = &work;
        let cancel = self.cancel;
        let started = Instant::now();
        let per_item = (source.items_per_second > 0)
            .then(|| Duration::from_secs_f64(1.0 / source.items_per_second as f64));
        std::thread::scope(|scope| -> Result<(), Failure> {
            for _ in 0..threads {
                let tx = tx.clone();
                let next = &next;
                scope.spawn(move || {
                    let mut group = Vec::with_capacity(GROUP);
                    let mut group_bytes = 0u64;
                    loop {
                        if cancel.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(todo) = work.get(i) else { break };
                        if let Some(per_item) = per_item {
                            // Throttled: item i may start at i × (1 / rate). Hand over what is
                            // done first, and keep noticing a cancel while waiting.
                            if !group.is_empty() && tx.send(std::mem::take(&mut group)).is_err() {
                                return;
                            }
                            group_bytes = 0;
                            let due = started + per_item.mul_f64(i as f64);
                            while Instant::now() < due {
                                if cancel.load(Ordering::Relaxed) {
                                    return;
                                }
                                std::thread::sleep(
                                    (due - Instant::now()).min(Duration::from_millis(50)),
                                );
                            }
                        }
                        group_bytes += todo.candidate.size;
                        group.push(process(source, todo));
                        if (group.len() >= GROUP || group_bytes >= GROUP_BYTES)
                            && tx.send(std::mem::take(&mut group)).is_err()
                        {
                            return;
                        }
                        if group.is_empty() {
                            group_bytes = 0;
                        }
                    }
                    if !group.is_empty() {
                        let _ = tx.send(group);
                    }
                });
            }
            drop(tx);
            let mut pending: Vec<Work> = Vec::with_capacity(BATCH);
            let mut last_commit = Instant::now();
            let mut first_error = None;
            for group in rx.iter() {
                pending.extend(group);
                if pending.len() >= BATCH || last_commit.elapsed() >= BATCH_TIME {
                    if let Err(e) = self.commit(store, &mut pending, report, counts, items_done) {
                        first_error = Some(e);
                        cancel.store(true, Ordering::Relaxed);
                        break;
                    }
                    (self.progress)(*items_done, total);
                    last_commit = Instant::now();
                }
            }
            // Drain so worker threads can finish.
            for _ in rx.iter() {}
            if let Some(e) = first_error {
                return Err(e);
            }
            self.commit(store, &mut pending, report, counts, items_done)
        })?;
        if self.cancel.load(Ordering::Relaxed) && (*items_done as usize) < work.len() {
            report.cancelled = true;
        }
        Ok(())
    }

    fn commit(
        &self,
        store: &mut Store,
        pending: &mut Vec<Work>,
        report: &mut Report,
        counts: &mut Counts,
        items_done: &mut u64,
    ) -> Result<(), Failure> {
        if pending.is_empty() {
            return Ok(());
        }
        let name = &self.source.name;
        let mut tx = store.transaction()?;
        for w in pending.drain(..) {
            *items_done += 1;
            match w {
                Work::Touch(c, hash, documents) => {
                    tx.touch(name, &c, &hash)?;
                    counts.unchanged += documents;
                    report.succeeded_items.push(c.key);
                }
                Work::Put(c, hash, docs, failures, bytes) => {
                    report.bytes += bytes;
                    tx.put(name, &c, &hash, &docs, counts)?;
                    report
                        .succeeded_items
                        .extend(docs.into_iter().map(|d| d.item));
                    report.failed.extend(failures);
                }
                Work::Fail(c, f) => {
                    tx.fail(name, &c, f.class.as_str())?;
                    report.failed.push((c.key, f));
                }
            }
        }
        tx.commit()
    }
}

/// Summaries by failure class, for job reasons and logs.
pub fn failure_summary(failed: &[(String, Failure)]) -> String {
    let mut by: HashMap<ErrorClass, usize> = HashMap::new();
    for (_, f) in failed {
        *by.entry(f.class).or_default() += 1;
    }
    let mut parts: Vec<(ErrorClass, usize)> = by.into_iter().collect();
    parts.sort();
    parts
        .iter()
        .map(|(c, n)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
