//! Ingestion: one run of a source, or one item, from the filesystem into the document store.
//!
//! Owns: the incremental scan (size + mtime first, content hash to confirm), parsing on the
//! process's shared pool (`parse_pool`), batched store writes, deletions, progress and
//! cooperative cancellation.
//! Invariants: an item whose size and mtime are unchanged is not read; content whose hash is
//! unchanged is not rewritten; a failure of one item is recorded for that item and the run goes
//! on; items under a folder that could not be listed are never treated as deleted; cancellation
//! is checked between items and keeps everything already committed. The run's own thread is its
//! only store writer; it hands the pool groups of items, never more than `IN_FLIGHT_PER_THREAD`
//! × `threads` at once (what the run holds in memory), and the pool never waits for it. A panic
//! outside per-item handling (the writer, the run's bookkeeping, a parse task) unwinds the run,
//! never hangs it or the pool, and leaves in `Committed` the exact numbers of what was committed
//! before it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::config::{SourceConfig, SourceType};
use crate::failure::{ErrorClass, Failure};
use crate::sources::{self, Candidate, Enumeration, Parsed, Skipped};
use crate::store::{Counts, Prepared, ScanRow, Store};

/// How an input ends, as the book's outcome table says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputOutcome {
    /// Its documents are in the store.
    Ingested,
    /// Its item job ends quarantined at once (a permanent class: an operator must act); the
    /// word is the job state's (tests/book_tables.rs checks they agree).
    Quarantined,
    /// Its item job retries by itself (a transient class).
    Retried,
    /// Recorded as skipped, with its reason; not an error.
    Skipped,
    /// Its documents are tombstoned.
    Deleted,
}

impl InputOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            InputOutcome::Ingested => "ingested",
            InputOutcome::Quarantined => "quarantined",
            InputOutcome::Retried => "retried",
            InputOutcome::Skipped => "skipped",
            InputOutcome::Deleted => "deleted",
        }
    }
}

/// What a run does with each kind of awkward input: (input, outcome, class or reason).
///
/// Outcomes: `ingested` (its documents are stored); `skipped` (recorded with the reason, listed by
/// `sources show`, never read); `quarantined` (a permanent failure of that item alone: an item job
/// waits in the quarantine with the class); `retried` (a transient failure of that item alone:
/// its item job retries with backoff and is quarantined when the attempts run out); `deleted`
/// (gone before it could be read: its documents are tombstoned, as the next scan would). No input
/// fails its source's run or stops the daemon. The book's outcome table
/// (book/src/troubleshooting-input.md) equals this list (tests/book_tables.rs), and
/// tests/bad_input.rs and this module's tests check every row against real runs.
pub const INPUT_OUTCOMES: &[(&str, InputOutcome, &str)] = &[
    ("empty file", InputOutcome::Ingested, "-"),
    (
        "names with #, %, ?, quotes or leading spaces",
        InputOutcome::Ingested,
        "-",
    ),
    ("a file name that is not UTF-8", InputOutcome::Ingested, "-"),
    ("NUL bytes in UTF-8 text", InputOutcome::Ingested, "-"),
    ("folders nested 200 deep", InputOutcome::Ingested, "-"),
    (
        "email without the usual headers",
        InputOutcome::Ingested,
        "-",
    ),
    (
        "mbox with text before its first message",
        InputOutcome::Ingested,
        "-",
    ),
    (
        "text that is not UTF-8",
        InputOutcome::Quarantined,
        "parse_error",
    ),
    (
        "binary data named like text",
        InputOutcome::Quarantined,
        "parse_error",
    ),
    (
        "malformed frontmatter",
        InputOutcome::Quarantined,
        "parse_error",
    ),
    (
        "file over max_item_mb",
        InputOutcome::Quarantined,
        "too_large",
    ),
    (
        "file that grows over max_item_mb during a run",
        InputOutcome::Quarantined,
        "too_large",
    ),
    (
        "path longer than PATH_MAX",
        InputOutcome::Quarantined,
        "too_large",
    ),
    (
        "item that crashes a parser",
        InputOutcome::Quarantined,
        "internal",
    ),
    (
        "unreadable file",
        InputOutcome::Retried,
        "permission_denied",
    ),
    (
        "unreadable folder",
        InputOutcome::Retried,
        "permission_denied",
    ),
    (
        "binary file of another type",
        InputOutcome::Skipped,
        "unsupported file type .png",
    ),
    (
        "named pipe (FIFO)",
        InputOutcome::Skipped,
        "named pipe (FIFO)",
    ),
    (
        "symbolic link, inside or out of the source",
        InputOutcome::Skipped,
        "symbolic link (futurnal does not follow links)",
    ),
    (
        "symbolic link loop",
        InputOutcome::Skipped,
        "symbolic link (futurnal does not follow links)",
    ),
    (
        "file replaced by a symbolic link during a run",
        InputOutcome::Skipped,
        "symbolic link (futurnal does not follow links)",
    ),
    (
        "file replaced by a named pipe during a run",
        InputOutcome::Skipped,
        "named pipe (FIFO)",
    ),
    ("file deleted during a run", InputOutcome::Deleted, "-"),
];

/// The catalogue row of `input` (tests use it to check behaviour against what is documented).
pub fn input_outcome(input: &str) -> (&'static str, &'static str) {
    let (_, outcome, detail) = INPUT_OUTCOMES
        .iter()
        .find(|(case, _, _)| *case == input)
        .unwrap_or_else(|| panic!("{input:?} is not in INPUT_OUTCOMES"));
    (outcome.as_str(), detail)
}

/// Store writes are committed in batches of this many candidates (or every `BATCH_TIME`).
const BATCH: usize = 512;
const BATCH_TIME: Duration = Duration::from_millis(250);
/// Items (or bytes) a parse task handles before handing them to the writer.
const GROUP: usize = 16;
const GROUP_BYTES: u64 = 4 * 1024 * 1024;
/// Groups a run may have on the shared pool at once, per thread it asks for: enough that the
/// pool keeps parsing for it while its writer commits.
const IN_FLIGHT_PER_THREAD: usize = 4;

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

/// What a run has committed to the store so far, updated after each commit and kept outside the
/// run (the job's thread holds it in an `Arc`): a panic outside per-item handling unwinds the
/// run and loses its `Report`, but not the account of what it already wrote.
#[derive(Debug, Default)]
pub struct Committed(Mutex<Tally>);

/// The numbers of `Committed`: cumulative for the run, as of its last commit.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Tally {
    pub items_seen: u64,
    pub counts: Counts,
    pub skipped: u64,
    pub failed: u64,
    pub bytes: u64,
}

impl Committed {
    pub fn get(&self) -> Tally {
        // A panic while the lock was held cannot leave half a tally: it is written whole.
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, report: &Report, counts: &Counts) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Tally {
            counts: *counts,
            ..Tally::from(report)
        };
    }
}

impl From<&Report> for Tally {
    fn from(report: &Report) -> Tally {
        Tally {
            items_seen: report.items_seen,
            counts: report.counts,
            skipped: report.skipped,
            failed: report.failed.len() as u64,
            bytes: report.bytes,
        }
    }
}

impl Tally {
    /// Documents written (new, changed or deleted).
    pub fn documents(&self) -> u64 {
        self.counts.new + self.counts.changed + self.counts.deleted
    }
}

/// How a run reports progress: (items done, items to do).
pub type ProgressFn<'a> = &'a (dyn Fn(u64, u64) + Sync);

pub struct Run<'a> {
    pub source: &'a SourceConfig,
    pub store: &'a Path,
    pub cancel: &'a AtomicBool,
    pub progress: ProgressFn<'a>,
    /// The run's share of the shared parse pool: up to `IN_FLIGHT_PER_THREAD` groups of items
    /// per thread asked for (counted up to the pool's size) are queued or parsing at once.
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
    /// Not a regular file when opened (a symlink, FIFO or device swapped in after the scan):
    /// recorded as skipped with the reason, never followed or read.
    Skip(Candidate, String),
    /// Gone between the scan and the read: its documents are tombstoned, as a rescan would.
    Gone(Candidate),
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

/// What opening an item found.
enum Opened {
    /// A regular file's bytes (at most the limit) and its stat from the open descriptor.
    Bytes(Vec<u8>, u64, i64),
    /// Something that is not a regular file; the text says what.
    NotRegular(&'static str),
    /// A regular file that holds more than the limit (it may have grown since the scan).
    TooLarge,
}

/// Open an item without following a symlink anywhere below the source's folder and without
/// blocking on a FIFO, check what it is on the open descriptor (not by path: the path may have
/// been swapped since the scan), and read at most `limit` bytes.
fn open_item(root: Option<&OwnedFd>, source: &Path, path: &Path, limit: u64) -> io::Result<Opened> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let opened = match (root, path.strip_prefix(source)) {
        (Some(root), Ok(rel)) if !rel.as_os_str().is_empty() => {
            let resolve =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(root, rel, flags, Mode::empty(), resolve) {
                // Kernels before 5.6: refuse a symlink in the last component only.
                Err(rustix::io::Errno::NOSYS) => {
                    rustix::fs::openat(root, rel, flags, Mode::empty())
                }
                other => other,
            }
        }
        // The source is this one file (an mbox): the operator named it, so it may be a symlink.
        _ if path == source => rustix::fs::open(path, flags - OFlags::NOFOLLOW, Mode::empty()),
        // No descriptor on the source's folder: refuse a symlink in the last component at least.
        _ => rustix::fs::open(path, flags, Mode::empty()),
    };
    let fd = match opened {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::XDEV) => {
            // The item, or a folder on its way, is a symlink now.
            return Ok(Opened::NotRegular(match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => sources::special_reason(m.file_type()),
                _ => "a folder on its path is a symbolic link (futurnal does not follow links)",
            }));
        }
        Err(rustix::io::Errno::NXIO) => return Ok(Opened::NotRegular("socket")),
        Err(e) => return Err(e.into()),
    };
    let mut file = std::fs::File::from(fd);
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if kind.is_dir() {
        return Ok(Opened::NotRegular("a folder, not a file"));
    }
    if !kind.is_file() {
        return Ok(Opened::NotRegular(sources::special_reason(kind)));
    }
    let (_, mtime_ns) = sources::stat(&meta);
    let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize);
    (&mut file)
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Ok(Opened::TooLarge);
    }
    let size = bytes.len() as u64;
    Ok(Opened::Bytes(bytes, size, mtime_ns))
}

fn too_large(source: &SourceConfig, c: &Candidate, size: u64, at_least: bool) -> Failure {
    Failure::new(
        ErrorClass::TooLarge,
        format!(
            "{} is {}{size} bytes, over the source's max_item_mb of {}",
            c.key,
            if at_least { "more than " } else { "" },
            source.max_item_mb
        ),
    )
}

/// Read and parse one candidate (in a worker thread).
fn process(source: &SourceConfig, root: Option<&OwnedFd>, todo: &Todo) -> Work {
    let mut c = todo.candidate.clone();
    let limit = source.max_item_mb.saturating_mul(1024 * 1024);
    if c.size > limit {
        let f = too_large(source, &c, c.size, false);
        return Work::Fail(c, f);
    }
    let bytes = match open_item(root, &source.path, &c.path, limit) {
        Ok(Opened::Bytes(bytes, size, mtime_ns)) => {
            // The stat of what was read: a later change shows as a new mtime at the next scan.
            (c.size, c.mtime_ns) = (size, mtime_ns);
            bytes
        }
        Ok(Opened::NotRegular(what)) => {
            return Work::Skip(c, what.to_string());
        }
        Ok(Opened::TooLarge) => {
            let f = too_large(source, &c, limit, true);
            return Work::Fail(c, f);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Work::Gone(c),
        Err(e) => {
            let f = Failure::io(format!("cannot read {}", c.key), &e);
            return Work::Fail(c, f);
        }
    };
    debug_panic(Point::Parser, &bytes);
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

/// `process`, with a panic (a bug in a parser, say) turned into this item's `internal` failure.
/// The panic's message is dropped: it may quote the document (a string slice panic prints the
/// string), and it must reach neither the log nor queue.db.
fn process_isolated(source: &SourceConfig, root: Option<&OwnedFd>, todo: &Todo) -> Work {
    let _scope = PanicScope::enter();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| process(source, root, todo))) {
        Ok(work) => work,
        Err(_) => {
            let at = take_panic_location()
                .map(|l| format!(" at {l}"))
                .unwrap_or_default();
            let f = Failure::new(
                ErrorClass::Internal,
                format!(
                    "the parser crashed on this item (a bug in futurnal{at}); the rest of the \
                     source was ingested"
                ),
            );
            Work::Fail(todo.candidate.clone(), f)
        }
    }
}

thread_local! {
    /// Set while this thread works on a job: a panic's message is withheld from every sink.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
    /// Where this thread's last withheld panic happened (`file:line`), for the failure message.
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Marks the current thread as working on a job for as long as it lives.
pub struct PanicScope {
    was: bool,
}

impl PanicScope {
    pub fn enter() -> PanicScope {
        install_panic_hook();
        PanicScope {
            was: IN_JOB.with(|f| f.replace(true)),
        }
    }
}

impl Drop for PanicScope {
    fn drop(&mut self) {
        IN_JOB.with(|f| f.set(self.was));
    }
}

/// The location of the last panic on this thread inside a `PanicScope`, if any.
pub fn take_panic_location() -> Option<String> {
    PANIC_AT.with(|p| p.borrow_mut().take())
}

/// Install (once per process) a panic hook that, on threads inside a `PanicScope`, logs only
/// where the panic happened. Other threads keep the previous hook (tests keep their messages).
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_JOB.with(Cell::get) {
                return previous(info);
            }
            let at = info
                .location()
                .map(|l| {
                    // A dependency's file is an absolute path on the build machine: keep its tail.
                    let parts: Vec<&str> = l.file().rsplit('/').take(3).collect();
                    let file: Vec<&str> = parts.into_iter().rev().collect();
                    format!("{}:{}", file.join("/"), l.line())
                })
                .unwrap_or_else(|| "an unknown place".into());
            tracing::error!(
                "a worker thread panicked at {at} (a bug in futurnal); its message is withheld \
                 because it may quote document text"
            );
            PANIC_AT.with(|p| *p.borrow_mut() = Some(at));
        }));
    });
}

/// Where `debug_panic` can inject a panic.
#[derive(Clone, Copy, PartialEq)]
enum Point {
    /// Parsing an item (a worker thread, inside the item's isolation).
    Parser,
    /// Writing a document on the writer thread, inside a store transaction: outside per-item
    /// isolation, so it fails the run.
    Writer,
}

/// Debug builds only: panic where `point` handles an item whose bytes contain that point's
/// marker, quoting the document in the panic message as a real slicing bug would. The markers
/// are named by `FUTURNAL_DEBUG_PANIC_MARKER` (parser) and `FUTURNAL_DEBUG_WRITER_PANIC_MARKER`
/// (writer); unit tests use `TEST_PANIC_MARKER` and `TEST_WRITER_PANIC_MARKER`. Lets tests prove
/// isolation without a real bug.
#[cfg(debug_assertions)]
fn debug_panic(point: Point, bytes: &[u8]) {
    #[cfg(test)]
    let marker: Option<&[u8]> = Some(match point {
        Point::Parser => TEST_PANIC_MARKER,
        Point::Writer => TEST_WRITER_PANIC_MARKER,
    });
    #[cfg(not(test))]
    let marker = {
        type Marker = std::sync::LazyLock<Option<Vec<u8>>>;
        fn from_env(name: &str) -> Option<Vec<u8>> {
            std::env::var_os(name)
                .filter(|m| !m.is_empty())
                .map(|m| m.into_encoded_bytes())
        }
        static PARSER: Marker = Marker::new(|| from_env("FUTURNAL_DEBUG_PANIC_MARKER"));
        static WRITER: Marker = Marker::new(|| from_env("FUTURNAL_DEBUG_WRITER_PANIC_MARKER"));
        match point {
            Point::Parser => PARSER.as_deref(),
            Point::Writer => WRITER.as_deref(),
        }
    };
    if let Some(marker) = marker
        && memchr::memmem::find(bytes, marker).is_some()
    {
        panic!(
            "injected panic; the document says: {}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[cfg(not(debug_assertions))]
fn debug_panic(_: Point, _: &[u8]) {}

#[cfg(test)]
const TEST_PANIC_MARKER: &[u8] = b"FUTURNAL-TEST-PANIC-7f3a";
#[cfg(test)]
pub(crate) const TEST_WRITER_PANIC_MARKER: &[u8] = b"FUTURNAL-TEST-WRITER-PANIC-7f3a";
/// Tests: a parse task panics outside per-item handling when it reaches the item of this key.
#[cfg(test)]
const TEST_TASK_PANIC_KEY: &str = "task-panic.md";

impl Run<'_> {
    /// One full run: scan the source, ingest what changed, tombstone what disappeared.
    pub fn source_run(&self) -> Result<Report, Failure> {
        self.source_run_counted(&Committed::default())
    }

    /// `source_run`, keeping in `committed` what it has written so far (see `Committed`).
    pub fn source_run_counted(&self, committed: &Committed) -> Result<Report, Failure> {
        let source = self.source;
        // Walking the source and loading what the last run saw are independent: overlap them.
        let (enumeration, opened) = std::thread::scope(|scope| {
            let loader = scope.spawn(|| {
                // Its panic's message (which could name items) is withheld too.
                let _scope = PanicScope::enter();
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
            committed,
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
            committed.record(&report, &counts);
        }
        // Documents of items not read this run are unchanged by definition.
        counts.unchanged += unchanged_docs;
        report.counts = counts;
        (self.progress)(items_done, total);
        Ok(report)
    }

    /// Re-ingest one item (a file, or one message of an mbox) regardless of its stat.
    pub fn item_run(&self, item: &str) -> Result<Report, Failure> {
        self.item_run_counted(item, &Committed::default())
    }

    /// `item_run`, keeping in `committed` what it has written (see `Committed`).
    pub fn item_run_counted(&self, item: &str, committed: &Committed) -> Result<Report, Failure> {
        let source = self.source;
        let mut store = Store::open(self.store)?;
        let mut report = Report::default();
        let found = match source.source_type {
            SourceType::LocalFiles | SourceType::Obsidian => self.find_file(item)?,
            SourceType::Maildir => self.find_message(item)?,
            // A message's mbox is known from the store: only that file is read again.
            SourceType::Mbox if source.path.is_dir() => {
                match store.container_of(&source.name, item)? {
                    Some(container) => self.find_file(&container)?,
                    None => self.find_by_enumeration(&store, item)?,
                }
            }
            SourceType::Mbox => self.find_by_enumeration(&store, item)?,
        };
        let c = match found {
            Ok(c) => c,
            Err(key) => {
                // The item is gone: nothing left to ingest, and its documents are tombstoned.
                let mut counts = Counts::default();
                let mut tx = store.transaction()?;
                tx.delete(&source.name, &key, &mut counts)?;
                tx.commit()?;
                committed.record(&report, &counts);
                report.counts = counts;
                report.succeeded_items.push(item.to_string());
                return Ok(report);
            }
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
            committed,
        )?;
        report.counts = counts;
        Ok(report)
    }

    /// The candidate holding `item`, found by enumerating the source (an mbox message the store
    /// has never seen). `Ok(Err(key))` when it is no longer part of the source.
    fn find_by_enumeration(
        &self,
        store: &Store,
        item: &str,
    ) -> Result<Result<Candidate, String>, Failure> {
        let source = self.source;
        let enumeration = sources::enumerate(source)?;
        let key = candidate_of(store, source, &enumeration, item)?;
        if let Some((_, failure)) = enumeration
            .errors
            .iter()
            .find(|(k, _)| k.is_empty() || *k == key || key.starts_with(&format!("{k}/")))
        {
            // Still unreadable (a folder that cannot be listed, say): never "deleted".
            return Err(failure.clone());
        }
        Ok(enumeration
            .candidates
            .into_iter()
            .find(|c| c.key == key)
            .ok_or(key))
    }

    /// The file of maildir message `item`, found by listing only its folder's `cur/` and `new/`.
    /// `Ok(Err(key))` when it is no longer part of the source.
    fn find_message(&self, item: &str) -> Result<Result<Candidate, String>, Failure> {
        let source = self.source;
        self.source_root()?;
        if !sources::Rules::new(source)?.allows(item) {
            return Ok(Err(item.to_string()));
        }
        match sources::mail::find_maildir_message(&source.path, item) {
            Ok(Some(c)) => Ok(Ok(c)),
            Ok(None) => Ok(Err(item.to_string())),
            // A folder that cannot be listed: the message may well still be there.
            Err(e) => Err(Failure::io(format!("cannot read {item}"), &e)),
        }
    }

    /// The source's folder, checked: a missing or odd root is a failure, never "everything
    /// was deleted".
    fn source_root(&self) -> Result<(), Failure> {
        let source = self.source;
        let root = std::fs::metadata(&source.path)
            .map_err(|e| Failure::io_at("source path", &source.path, &e))?;
        if !root.is_dir() {
            return Err(Failure::new(ErrorClass::NotFound, String::new()).with_path(
                "source path",
                &source.path,
                "not a folder",
            ));
        }
        Ok(())
    }

    /// The file of a folder source's item, found from its key (keys of folder sources are
    /// lossless relative paths) without walking the source. `Ok(Err(key))` when it is no longer
    /// part of the source: gone, hidden or excluded by the rules.
    fn find_file(&self, item: &str) -> Result<Result<Candidate, String>, Failure> {
        let source = self.source;
        self.source_root()?;
        let gone = Ok(Err(item.to_string()));
        let hidden = item.split('/').any(|part| part.starts_with('.'));
        if hidden || !sources::Rules::new(source)?.allows(item) {
            return gone;
        }
        let Some(path) = sources::path_from_key(&source.path, item) else {
            return gone;
        };
        match std::fs::symlink_metadata(&path) {
            // Whatever it is now, `process` opens it safely and records what it found.
            Ok(meta) => {
                let (size, mtime_ns) = sources::stat(&meta);
                Ok(Ok(Candidate {
                    key: item.to_string(),
                    path,
                    size,
                    mtime_ns,
                }))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                gone
            }
            // A folder on the way that cannot be searched: the item may well still be there.
            Err(e) => Err(Failure::io(format!("cannot read {item}"), &e)),
        }
    }

    /// Parse `work` on the shared pool (`parse_pool`) and write it from this thread.
    ///
    /// This thread hands the pool small groups of items, at most `depth` at a time: that bounds
    /// what the run holds in memory and its share of the pool, and the result channel has room
    /// for every group in flight, so a pool thread never waits for this writer. The pool's FIFO
    /// queue interleaves the groups of runs that go on at once.
    #[allow(clippy::too_many_arguments)]
    fn process_all(
        &self,
        work: Vec<Todo>,
        store: &mut Store,
        report: &mut Report,
        counts: &mut Counts,
        items_done: &mut u64,
        total: u64,
        committed: &Committed,
    ) -> Result<(), Failure> {
        if work.is_empty() {
            return Ok(());
        }
        let pool = crate::parse_pool::get()?;
        let source = self.source;
        let cancel = self.cancel;
        let workers = self.threads.clamp(1, crate::parse_pool::size());
        let per_item = (source.items_per_second > 0)
            .then(|| Duration::from_secs_f64(1.0 / source.items_per_second as f64));
        // Throttled, each item is its own group so that it is handed out at its time.
        let groups = groups(
            &work,
            match per_item {
                Some(_) => 1,
                None => GROUP.min(work.len().div_ceil(workers)),
            },
        );
        let depth = workers * IN_FLIGHT_PER_THREAD;
        let (tx, rx) = mpsc::sync_channel::<Result<Vec<Work>, Option<String>>>(depth);
        let work = &work;
        let started = Instant::now();
        // Items are opened relative to the source's folder, so no symlink below it is followed.
        let root = rustix::fs::open(
            &source.path,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .ok();
        let root = root.as_ref();
        // Set once this run stops early (its writer failed or unwinds): groups still queued for
        // it skip their items instead of parsing for nobody.
        let abandon = AtomicBool::new(false);
        let stopped = pool.in_place_scope(|scope| -> Option<Stop> {
            // Unwinding drops the receiver and raises `abandon`; the scope then waits only for
            // groups that no longer parse.
            let rx = rx;
            let _abandon = Raise(&abandon);
            let mut next = 0;
            let mut in_flight = 0;
            let mut pending: Vec<Work> = Vec::with_capacity(BATCH);
            let mut last_commit = Instant::now();
            let mut stop = None;
            loop {
                // Hand out groups up to the depth (throttled: those whose time has come).
                let mut wait = None;
                while stop.is_none()
                    && in_flight < depth
                    && next < groups.len()
                    && !cancel.load(Ordering::Relaxed)
                {
                    let range = groups[next].clone();
                    if let Some(per_item) = per_item {
                        // Item i may start at i × (1 / rate).
                        let due = started + per_item.mul_f64(range.start as f64);
                        let now = Instant::now();
                        if now < due {
                            wait = Some((due - now).min(Duration::from_millis(50)));
                            break;
                        }
                    }
                    next += 1;
                    in_flight += 1;
                    let (tx, abandon, items) = (tx.clone(), &abandon, &work[range]);
                    scope.spawn(move |_| {
                        let _worker = crate::parse_pool::Worker::enter();
                        // Each item is isolated in `process_isolated`; this catches the rest, so
                        // the writer always hears back and the pool thread lives on.
                        let _scope = PanicScope::enter();
                        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let mut parsed = Vec::with_capacity(items.len());
                            for todo in items {
                                if cancel.load(Ordering::Relaxed) || abandon.load(Ordering::Relaxed)
                                {
                                    break;
                                }
                                #[cfg(test)]
                                if todo.candidate.key == TEST_TASK_PANIC_KEY {
                                    panic!("injected panic outside item handling");
                                }
                                parsed.push(process_isolated(source, root, todo));
                            }
                            parsed
                        }))
                        .map_err(|_| take_panic_location());
                        // Never blocks: the channel has room for every group in flight.
                        let _ = tx.send(parsed);
                    });
                }
                if stop.is_none()
                    && !pending.is_empty()
                    && (pending.len() >= BATCH || last_commit.elapsed() >= BATCH_TIME)
                {
                    match self.commit(store, &mut pending, report, counts, items_done, committed) {
                        Ok(()) => (self.progress)(*items_done, total),
                        Err(e) => {
                            stop = Some(Stop::Failed(e));
                            abandon.store(true, Ordering::Relaxed);
                        }
                    }
                    last_commit = Instant::now();
                }
                if in_flight == 0 && wait.is_none() {
                    break;
                }
                let parsed = match wait {
                    // Waiting for the next item's time: notice a cancel meanwhile.
                    Some(wait) => match rx.recv_timeout(wait) {
                        Ok(parsed) => parsed,
                        Err(_) => continue,
                    },
                    // This thread holds a sender, so the channel never closes under it.
                    None => rx.recv().expect("a sender is held"),
                };
                in_flight -= 1;
                match parsed {
                    Ok(parsed) if stop.is_none() => pending.extend(parsed),
                    Ok(_) => {}
                    Err(at) => {
                        stop.get_or_insert(Stop::Crashed(at));
                        abandon.store(true, Ordering::Relaxed);
                    }
                }
            }
            if stop.is_none()
                && let Err(e) =
                    self.commit(store, &mut pending, report, counts, items_done, committed)
            {
                stop = Some(Stop::Failed(e));
            }
            stop
        });
        match stopped {
            None => {}
            Some(Stop::Failed(e)) => return Err(e),
            Some(Stop::Crashed(at)) => {
                // As a panic on this thread would: the job fails as crashed, with where it was.
                PANIC_AT.with(|p| *p.borrow_mut() = at);
                std::panic::resume_unwind(Box::new("a parse task panicked"));
            }
        }
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
        committed: &Committed,
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
                    for d in &docs {
                        debug_panic(Point::Writer, d.body.as_bytes());
                    }
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
                Work::Skip(c, reason) => {
                    tx.skip(
                        name,
                        &Skipped {
                            key: c.key.clone(),
                            reason,
                            size: c.size,
                            mtime_ns: c.mtime_ns,
                        },
                    )?;
                    report.skipped += 1;
                    // Nothing is left to retry: an item job open for it is done.
                    report.succeeded_items.push(c.key);
                }
                Work::Gone(c) => {
                    tx.delete(name, &c.key, counts)?;
                    report.succeeded_items.push(c.key);
                }
            }
        }
        tx.commit()?;
        committed.record(report, counts);
        Ok(())
    }
}

/// Why a run's parsing stopped early.
enum Stop {
    /// Writing to the store failed.
    Failed(Failure),
    /// A parse task panicked outside per-item handling, at this place if known.
    Crashed(Option<String>),
}

/// Raises its flag when dropped, unwinding included.
struct Raise<'a>(&'a AtomicBool);

impl Drop for Raise<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `work` cut into consecutive groups of at most `max_items` items and about `GROUP_BYTES`.
fn groups(work: &[Todo], max_items: usize) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, todo) in work.iter().enumerate() {
        bytes += todo.candidate.size;
        if i + 1 - start >= max_items || bytes >= GROUP_BYTES {
            groups.push(start..i + 1);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < work.len() {
        groups.push(start..work.len());
    }
    groups
}

/// The candidate that holds `item`. Only an mbox holds other items (`file#message-id`), and file
/// names may contain `#`: so the store's record decides, then an exact candidate, then (mbox) the
/// longest candidate the item extends with `#`. Never a cut at the first `#`.
fn candidate_of(
    store: &Store,
    source: &SourceConfig,
    enumeration: &Enumeration,
    item: &str,
) -> Result<String, Failure> {
    if let Some(container) = store.container_of(&source.name, item)? {
        return Ok(container);
    }
    if source.source_type != crate::config::SourceType::Mbox
        || enumeration.candidates.iter().any(|c| c.key == item)
    {
        return Ok(item.to_string());
    }
    Ok(enumeration
        .candidates
        .iter()
        .map(|c| c.key.as_str())
        .filter(|k| {
            item.strip_prefix(k)
                .is_some_and(|rest| rest.starts_with('#'))
        })
        .max_by_key(|k| k.len())
        .unwrap_or(item)
        .to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceType;

    struct Fixture {
        dir: tempfile::TempDir,
        source: SourceConfig,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("src")).unwrap();
            let source = SourceConfig::new("s", SourceType::LocalFiles, dir.path().join("src"));
            Fixture { dir, source }
        }
        fn file(&self, key: &str) -> std::path::PathBuf {
            self.source.path.join(key)
        }
        fn write(&self, key: &str, text: impl AsRef<[u8]>) {
            std::fs::write(self.file(key), text).unwrap();
        }
        fn run<T>(&self, f: impl FnOnce(&Run) -> T) -> T {
            self.run_with(2, f)
        }
        fn run_with<T>(&self, threads: usize, f: impl FnOnce(&Run) -> T) -> T {
            let cancel = AtomicBool::new(false);
            let store = self.dir.path().join("store.db");
            let run = Run {
                source: &self.source,
                store: &store,
                cancel: &cancel,
                progress: &|_, _| {},
                threads,
            };
            f(&run)
        }
        fn live(&self) -> Vec<String> {
            let store = Store::open(&self.dir.path().join("store.db")).unwrap();
            let mut items: Vec<String> = store
                .recent_documents("s", 1000)
                .unwrap()
                .into_iter()
                .map(|d| d.item)
                .collect();
            items.sort();
            items
        }
        /// Enumerate now, then let `change` alter the tree, then read the candidate `key`.
        fn process_after(&self, key: &str, change: impl FnOnce()) -> Work {
            let found = sources::enumerate(&self.source).unwrap();
            let candidate = found.candidates.into_iter().find(|c| c.key == key).unwrap();
            change();
            let root = rustix::fs::open(
                &self.source.path,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
            let todo = Todo {
                candidate,
                hash: None,
                documents: 0,
            };
            process_isolated(&self.source, Some(&root), &todo)
        }
    }

    /// Several runs at once, each asking for more threads than the machine has: parsing never
    /// uses more threads than the one shared pool holds (one per CPU), in this whole process.
    #[test]
    fn concurrent_runs_share_one_parse_pool_sized_to_the_machine() {
        let runs = 3;
        let fixtures: Vec<Fixture> = (0..runs)
            .map(|_| {
                let fx = Fixture::new();
                for i in 0..400 {
                    fx.write(
                        &format!("n{i:03}.md"),
                        format!("# {i}\n\n{}", "word ".repeat(200)),
                    );
                }
                fx
            })
            .collect();
        let start = std::sync::Barrier::new(runs);
        let threads = crate::parse_pool::size() * 2;
        std::thread::scope(|scope| {
            for fx in &fixtures {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    let report = fx.run_with(threads, |r| r.source_run()).unwrap();
                    assert_eq!(report.counts.new, 400);
                });
            }
        });
        let peak = crate::parse_pool::peak();
        assert!(peak >= 1, "no parse worker was counted");
        assert!(
            peak <= crate::parse_pool::size(),
            "{peak} parse workers alive at once; the pool has {}",
            crate::parse_pool::size()
        );
    }

    /// Items that panic, more of them than the pool has threads, in one run while another runs:
    /// each is its own item's failure, the other run is untouched, and the pool still serves a
    /// later run (a panic that took a pool thread down would leave it with none and hang).
    #[test]
    fn panics_in_one_run_do_not_poison_the_shared_pool() {
        let marker = std::str::from_utf8(TEST_PANIC_MARKER).unwrap();
        let bad = Fixture::new();
        let crashes = crate::parse_pool::size() * 3 + 1;
        for i in 0..crashes {
            bad.write(&format!("crash{i}.md"), format!("secret {i}\n{marker}"));
        }
        bad.write("fine.md", "# fine");
        let good = Fixture::new();
        for i in 0..300 {
            good.write(&format!("n{i:03}.md"), format!("# {i}"));
        }
        let start = std::sync::Barrier::new(2);
        let (bad_report, good_report) = std::thread::scope(|scope| {
            let b = scope.spawn(|| {
                start.wait();
                bad.run(|r| r.source_run()).unwrap()
            });
            let g = scope.spawn(|| {
                start.wait();
                good.run(|r| r.source_run()).unwrap()
            });
            (b.join().unwrap(), g.join().unwrap())
        });
        assert_eq!(bad_report.failed.len(), crashes, "{:?}", bad_report.failed);
        assert!(
            bad_report
                .failed
                .iter()
                .all(|(_, f)| f.class == ErrorClass::Internal && !f.message.contains("secret"))
        );
        assert_eq!(bad_report.counts.new, 1);
        assert!(good_report.failed.is_empty(), "{:?}", good_report.failed);
        assert_eq!(good_report.counts.new, 300);

        // Afterwards the pool still parses: a changed source is ingested in full, in time.
        for i in 0..300 {
            good.write(&format!("n{i:03}.md"), format!("# {i} again"));
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(good.run(|r| r.source_run()).map(|r| r.counts.changed));
        });
        let changed = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the pool still runs tasks");
        assert_eq!(changed.unwrap(), 300);
    }

    /// A parse task that panics outside per-item handling (a bug in the pool's plumbing) fails
    /// its run as crashed, with where it happened and an exact account of what was committed;
    /// the run never waits for a group that will not come, and the pool serves the next run.
    #[test]
    fn a_parse_task_panic_fails_its_run_without_hanging_it_or_the_pool() {
        let fx = Fixture::new();
        for i in 0..BATCH * 2 {
            fx.write(&format!("n{i:04}.md"), format!("# {i}"));
        }
        fx.write(TEST_TASK_PANIC_KEY, "# fine text, unlucky task");
        // On a thread of its own, so that a hang fails this test instead of hanging it.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _scope = PanicScope::enter();
            let committed = Committed::default();
            let outcome = fx.run(|r| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    r.source_run_counted(&committed)
                }))
            });
            let _ = tx.send((outcome.is_err(), take_panic_location(), committed.get(), fx));
        });
        let (panicked, at, tally, fx) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the run unwinds within a minute");
        assert!(panicked, "the task's panic fails the run");
        assert!(at.is_some_and(|at| at.contains("ingest.rs")));
        assert_eq!(tally.counts.new, fx.live().len() as u64);

        let other = Fixture::new();
        for i in 0..100 {
            other.write(&format!("n{i:03}.md"), format!("# {i}"));
        }
        let report = other.run(|r| r.source_run()).unwrap();
        assert_eq!(report.counts.new, 100);
    }

    #[test]
    fn a_panic_on_one_item_is_that_items_internal_failure_without_its_text() {
        let fx = Fixture::new();
        fx.write("a.md", "# A\n\nfine");
        fx.write("c.md", "# C\n\nfine");
        let secret = "the private words of b";
        fx.write(
            "b.md",
            format!(
                "{secret}\n{}",
                std::str::from_utf8(TEST_PANIC_MARKER).unwrap()
            ),
        );
        // A real-world trigger: multi-byte text around a chunk edge. Ingested, or at worst this
        // one item's failure; never the run's.
        fx.write("ja.md", format!("a{}", "日本語のメモ".repeat(200)));
        let report = fx.run(|r| r.source_run()).expect("the run itself succeeds");
        let failed: Vec<&str> = report.failed.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            failed.iter().all(|k| *k == "b.md" || *k == "ja.md"),
            "{failed:?}"
        );
        let (_, f) = report.failed.iter().find(|(k, _)| k == "b.md").unwrap();
        assert_eq!(f.class, ErrorClass::Internal);
        assert!(
            f.message.starts_with("the parser crashed on this item"),
            "{}",
            f.message
        );
        assert!(!f.message.contains("private"), "{}", f.message);
        assert!(fx.live().contains(&"a.md".to_string()));
        assert!(fx.live().contains(&"c.md".to_string()));
        assert!(!fx.live().contains(&"b.md".to_string()));

        // The operator fixes the file (here: the crash no longer happens); a retry ingests it.
        fx.write("b.md", secret);
        let report = fx.run(|r| r.item_run("b.md")).unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert!(fx.live().contains(&"b.md".to_string()));
    }

    /// A panic outside per-item handling (here: writing a document, on the writer thread)
    /// unwinds the run, but what it committed before is accounted for in `Committed`, exactly:
    /// the store holds those documents and no others.
    #[test]
    fn a_writer_panic_leaves_an_exact_account_of_what_was_committed() {
        let fx = Fixture::new();
        // The root's files are listed before the subfolder's: the marked file is the last item,
        // and at least one full batch is committed before the writer reaches it.
        for i in 0..BATCH + 88 {
            fx.write(&format!("n{i:04}.md"), format!("# Note {i}\n\nfine"));
        }
        std::fs::create_dir(fx.file("z")).unwrap();
        let secret = "the private words of the last note";
        fx.write(
            "z/last.md",
            format!(
                "{secret}\n{}",
                std::str::from_utf8(TEST_WRITER_PANIC_MARKER).unwrap()
            ),
        );
        let committed = Committed::default();
        let outcome = fx.run(|r| {
            let _scope = PanicScope::enter();
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                r.source_run_counted(&committed)
            }))
        });
        assert!(outcome.is_err(), "the writer's panic fails the run");
        let tally = committed.get();
        let live = fx.live().len() as u64;
        assert!(tally.counts.new >= BATCH as u64, "{tally:?}");
        assert_eq!(tally.counts.new, live, "{tally:?}");
        assert!(!fx.live().contains(&"z/last.md".to_string()));
    }

    /// The writer panics while the workers still have items and the channel to it is full: the
    /// workers stop and the run unwinds, instead of the scope waiting for them forever.
    #[test]
    fn a_writer_panic_with_work_left_does_not_hang_the_run() {
        let mut fx = Fixture::new();
        fx.source.items_per_second = 0;
        fx.write(
            "first.md",
            std::str::from_utf8(TEST_WRITER_PANIC_MARKER).unwrap(),
        );
        std::fs::create_dir(fx.file("many")).unwrap();
        for i in 0..3000 {
            fx.write(&format!("many/{i}.md"), "x");
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let source = fx.source.clone();
        let store = fx.dir.path().join("store.db");
        std::thread::spawn(move || {
            let cancel = AtomicBool::new(false);
            let run = Run {
                source: &source,
                store: &store,
                cancel: &cancel,
                progress: &|_, _| {},
                threads: 2,
            };
            let _scope = PanicScope::enter();
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.source_run()));
            let _ = done_tx.send(outcome.is_err());
        });
        let panicked = done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the run unwinds within a minute");
        assert!(panicked);
    }

    /// A store damaged after the open check (a page the run reads later): the run fails with
    /// the corrupt-store diagnosis with its remedy (worded with the runbook topic), not a bare
    /// "malformed".
    #[test]
    fn a_store_page_damaged_mid_run_names_the_corrupt_store_topic() {
        use std::io::{Seek, SeekFrom, Write};
        let fx = Fixture::new();
        for i in 0..300 {
            fx.write(&format!("n{i:03}.md"), format!("{i} ").repeat(300));
        }
        fx.run(|r| r.source_run()).unwrap();
        let path = fx.dir.path().join("store.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        let (root, page_size): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT rootpage FROM sqlite_master WHERE name = 'scan_state'),
                    (SELECT page_size FROM pragma_page_size)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        drop(conn);
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(SeekFrom::Start(((root - 1) * page_size) as u64))
            .unwrap();
        file.write_all(&vec![0; page_size as usize]).unwrap();
        drop(file);
        let f = fx.run(|r| r.source_run()).unwrap_err();
        assert_eq!(f.class, ErrorClass::IoError, "{}", f.message);
        assert_eq!(
            f.remedy,
            Some(crate::failure::Remedy::RebuildStore),
            "{}",
            f.message
        );
        // As an operator reads it: the corrupt-store topic.
        assert!(
            crate::error::failure_text(&f)
                .contains("futurnal help runbook the-document-store-is-corrupt"),
            "{}",
            f.message
        );
    }

    #[test]
    fn deleting_a_file_spares_one_whose_name_extends_it_with_a_hash() {
        let fx = Fixture::new();
        for key in ["n.md", "n.md#2.md", "x#1.md", "x#2.md"] {
            fx.write(key, key);
        }
        fx.run(|r| r.source_run()).unwrap();
        std::fs::remove_file(fx.file("n.md")).unwrap();
        let report = fx.run(|r| r.source_run()).unwrap();
        assert_eq!(report.counts.deleted, 1);
        assert_eq!(fx.live(), ["n.md#2.md", "x#1.md", "x#2.md"]);
        // A retry of `x#1.md` that finds it gone tombstones it alone.
        std::fs::remove_file(fx.file("x#1.md")).unwrap();
        let report = fx.run(|r| r.item_run("x#1.md")).unwrap();
        assert_eq!(report.counts.deleted, 1);
        assert_eq!(fx.live(), ["n.md#2.md", "x#2.md"]);
        // And a retry of `x#2.md` re-reads that file, not some `x`.
        fx.write("x#2.md", "changed");
        let report = fx.run(|r| r.item_run("x#2.md")).unwrap();
        assert_eq!(report.counts.changed, 1);
    }

    /// A maildir item retry finds its message by listing only its folder's `cur/` and `new/`:
    /// after a flag change moved it from `new/` to `cur/`, it is re-read; once deleted, its
    /// document alone is tombstoned; a missing source folder is a failure, never a deletion.
    #[test]
    fn a_maildir_item_retry_finds_its_own_message() {
        let mut fx = Fixture::new();
        fx.source.source_type = SourceType::Maildir;
        let mail = |subject: &str| {
            format!(
                "From: a@example.org\r\nSubject: {subject}\r\nMessage-ID: <{subject}@x>\r\n\r\nbody\r\n"
            )
        };
        for dir in ["cur", "new", "tmp", ".Work/cur", ".Work/new"] {
            std::fs::create_dir_all(fx.file(dir)).unwrap();
        }
        fx.write("new/1700000000.a.host", mail("one"));
        fx.write(".Work/cur/1700000001.b.host:2,S", mail("two"));
        fx.run(|r| r.source_run()).unwrap();
        assert_eq!(fx.live(), [".Work/1700000001.b.host", "1700000000.a.host"]);

        std::fs::rename(
            fx.file("new/1700000000.a.host"),
            fx.file("cur/1700000000.a.host:2,RS"),
        )
        .unwrap();
        fx.write("cur/1700000000.a.host:2,RS", mail("one, edited"));
        let report = fx.run(|r| r.item_run("1700000000.a.host")).unwrap();
        assert_eq!((report.items_seen, report.counts.changed), (1, 1));

        std::fs::remove_file(fx.file(".Work/cur/1700000001.b.host:2,S")).unwrap();
        let report = fx.run(|r| r.item_run(".Work/1700000001.b.host")).unwrap();
        assert_eq!(report.counts.deleted, 1);
        assert_eq!(fx.live(), ["1700000000.a.host"]);

        let moved = fx.dir.path().join("elsewhere");
        std::fs::rename(&fx.source.path, &moved).unwrap();
        let failure = fx.run(|r| r.item_run("1700000000.a.host")).unwrap_err();
        assert_eq!(failure.class, ErrorClass::NotFound);
        std::fs::rename(&moved, &fx.source.path).unwrap();
        assert_eq!(fx.live(), ["1700000000.a.host"]);
    }

    #[test]
    fn an_item_swapped_for_a_symlink_after_the_scan_is_not_followed() {
        let fx = Fixture::new();
        let outside = fx.dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("passwd.md"), "root:x:0:0").unwrap();
        fx.write("note.md", "mine");
        std::fs::create_dir(fx.file("dir")).unwrap();
        fx.write("dir/passwd.md", "mine too");
        let work = fx.process_after("note.md", || {
            std::fs::remove_file(fx.file("note.md")).unwrap();
            std::os::unix::fs::symlink(outside.join("passwd.md"), fx.file("note.md")).unwrap();
        });
        let Work::Skip(_, reason) = work else {
            panic!("a symlink must be skipped, not read");
        };
        assert_eq!(reason, "symbolic link (futurnal does not follow links)");
        // A folder on the way swapped for a symlink is not followed either.
        let work = fx.process_after("dir/passwd.md", || {
            std::fs::remove_dir_all(fx.file("dir")).unwrap();
            std::os::unix::fs::symlink(&outside, fx.file("dir")).unwrap();
        });
        assert!(
            matches!(work, Work::Skip(..)),
            "the folder symlink was followed"
        );
    }

    #[test]
    fn an_item_swapped_for_a_fifo_does_not_block_and_is_skipped() {
        let fx = Fixture::new();
        fx.write("pipe.md", "was a file");
        let started = Instant::now();
        let work = fx.process_after("pipe.md", || {
            std::fs::remove_file(fx.file("pipe.md")).unwrap();
            rustix::fs::mknodat(
                rustix::fs::CWD,
                fx.file("pipe.md"),
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap();
        });
        assert!(started.elapsed() < Duration::from_secs(5));
        let Work::Skip(_, reason) = work else {
            panic!("a FIFO must be skipped");
        };
        assert_eq!(reason, "named pipe (FIFO)");
    }

    #[test]
    fn an_item_that_grew_past_the_limit_after_the_scan_is_too_large_not_stored() {
        let mut fx = Fixture::new();
        fx.source.max_item_mb = 1;
        fx.write("grows.md", "small");
        let work = fx.process_after("grows.md", || {
            fx.write("grows.md", vec![b'a'; 2 * 1024 * 1024]);
        });
        let Work::Fail(_, f) = work else {
            panic!("a file over the limit must fail too_large");
        };
        assert_eq!(f.class, ErrorClass::TooLarge);
        assert!(
            f.message.contains("more than 1048576 bytes"),
            "{}",
            f.message
        );
        // Vanished between scan and read: treated as deleted, not as a failure.
        fx.write("gone.md", "here");
        let work = fx.process_after("gone.md", || {
            std::fs::remove_file(fx.file("gone.md")).unwrap();
        });
        assert!(matches!(work, Work::Gone(_)));
    }

    /// The rows of `INPUT_OUTCOMES` that only a run caught mid-way can show, checked here at the
    /// function level (scan, change the file, read) so they are deterministic.
    #[test]
    fn mid_run_changes_end_as_the_catalogue_says() {
        let check = |case: &str, work: Work| {
            let (outcome, detail) = input_outcome(case);
            match (&work, outcome) {
                (Work::Skip(_, reason), "skipped") => assert_eq!(reason, detail, "{case}"),
                (Work::Fail(_, f), "quarantined") => {
                    assert_eq!(f.class.as_str(), detail, "{case}");
                    assert!(!f.class.is_transient(), "{case}");
                }
                (Work::Gone(_), "deleted") => {}
                _ => panic!("{case}: the catalogue says {outcome}"),
            }
        };
        let mut fx = Fixture::new();
        fx.source.max_item_mb = 1;
        for key in ["grows.md", "link.md", "pipe.md", "gone.md"] {
            fx.write(key, "small");
        }
        check(
            "file that grows over max_item_mb during a run",
            fx.process_after("grows.md", || {
                fx.write("grows.md", vec![b'a'; 1024 * 1024 + 1])
            }),
        );
        check(
            "file replaced by a symbolic link during a run",
            fx.process_after("link.md", || {
                std::fs::remove_file(fx.file("link.md")).unwrap();
                std::os::unix::fs::symlink("/etc/passwd", fx.file("link.md")).unwrap();
            }),
        );
        check(
            "file replaced by a named pipe during a run",
            fx.process_after("pipe.md", || {
                std::fs::remove_file(fx.file("pipe.md")).unwrap();
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    fx.file("pipe.md"),
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o600),
                    0,
                )
                .unwrap();
            }),
        );
        check(
            "file deleted during a run",
            fx.process_after("gone.md", || {
                std::fs::remove_file(fx.file("gone.md")).unwrap()
            }),
        );
        // A parser crash, at the function level too.
        fx.write("crash.md", TEST_PANIC_MARKER);
        check(
            "item that crashes a parser",
            fx.process_after("crash.md", || {}),
        );
    }
}
