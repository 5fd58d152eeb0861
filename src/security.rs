//! Security: the tamper-evident audit log of operator actions. (Path redaction is `redact`.)
//!
//! Owns: `logs/audit.log` and its rotated files `logs/audit.log.NNNNNN` (oldest first), one JSON
//! object per line: `seq`, `prev`, `at`, `event`, `pid`, event details, and last `hash`.
//! Invariants:
//! - written only when `security.audit_logging` is true; created 0600 and never opened through a
//!   symlink (a link planted at its name makes the write fail, logged, and its target untouched);
//!   appended, never rewritten; a failure to audit is logged but never stops the action it records.
//! - a chain: `hash` is blake3 of the line's text without its `,"hash":…` suffix; `prev` is the
//!   `hash` of the record before it (across rotated files); `seq` counts up by one. So an edited,
//!   removed, inserted or reordered line breaks the chain at a line `verify` can name.
//! - one writer at a time: an append holds an exclusive flock on the file (the daemon and CLI
//!   commands both audit), and re-opens when the file it locked was rotated meanwhile.
//! - rotation renames the full file to the next `audit.log.NNNNNN` and never deletes one, so the
//!   chain keeps going; lines of the format before the chain (no `seq`) are skipped by `verify`,
//!   which reports where the chain begins. A write cut short (a crash, a full disk) leaves the
//!   start of a record that does not parse: the next append starts on a new line and chains to
//!   the record before it, and `verify` reports the fragment and skips it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::home::{Home, NO_FOLLOW, explain_link};

/// A file larger than this is rotated before the next append.
pub const ROTATE_BYTES: u64 = 8 * 1024 * 1024;
/// `prev` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HASH_KEY: &str = ",\"hash\":\"";

pub fn audit(home: &Home, enabled: bool, event: &str, details: Value) {
    if !enabled {
        return;
    }
    if let Err(e) = append(&home.audit_log(), ROTATE_BYTES, event, details) {
        tracing::warn!("could not write the audit log: {e}");
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .custom_flags(NO_FOLLOW)
        .open(path)
        .map_err(|e| explain_link(path, e))
}

/// Append one record, chained to the last one. `rotate_at` is a parameter so tests rotate small.
pub(crate) fn append(path: &Path, rotate_at: u64, event: &str, details: Value) -> io::Result<()> {
    loop {
        let mut file = open_log(path)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
        // Another writer may have rotated the file between our open and our lock: the name then
        // points at a new file, and appending to the renamed one would fork the chain.
        let locked = file.metadata()?;
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.ino() == locked.ino() && m.dev() == locked.dev() => {}
            _ => continue,
        }
        let size = locked.len();
        let cut = size > 0 && {
            let mut byte = [0u8; 1];
            file.seek(SeekFrom::Start(size - 1))?;
            file.read_exact(&mut byte)?;
            byte[0] != b'\n'
        };
        let mut last = last_line(&mut file, size)?;
        if size >= rotate_at && last.is_some() {
            let next = rotated_files(path)?.last().map_or(1, |(n, _)| n + 1);
            std::fs::rename(path, rotated_name(path, next))?;
            // Start over on the new file like every other writer (waiting ones see the rename
            // and re-open): whoever locks it first appends first, each after the one before.
            continue;
        }
        if size == 0 && last.is_none() {
            // A new or externally rotated file: the chain continues from the newest rotated one.
            if let Some((_, older)) = rotated_files(path)?.last() {
                let mut f = File::open(older)?;
                let len = f.metadata()?.len();
                last = last_line(&mut f, len)?;
            }
        }
        let (seq, prev) = match last.as_deref().map(Link::of) {
            Some(Link::Chained { seq, hash }) => (seq + 1, hash),
            // After lines of the earlier format, the chain starts at 1, anchored to that line.
            Some(Link::Legacy(hash)) => (1, hash),
            None => (1, GENESIS.to_string()),
        };
        let mut record = json!({
            "seq": seq,
            "prev": prev,
            "at": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "event": event,
            "pid": std::process::id(),
        });
        if let (Some(obj), Value::Object(mut extra)) = (record.as_object_mut(), details) {
            // Details never override the chain's own fields.
            for k in ["seq", "prev", "hash"] {
                extra.remove(k);
            }
            obj.extend(extra);
        }
        let line = seal(&record.to_string());
        // One write of the whole line: O_APPEND puts it after everything, under the lock. After
        // a cut write, a newline first keeps that fragment on a line of its own.
        let sep = if cut { "\n" } else { "" };
        return file.write_all(format!("{sep}{line}\n").as_bytes());
    }
}

/// The line for a record's JSON text: the text with its own hash added as the last field.
pub(crate) fn seal(body: &str) -> String {
    let hash = blake3::hash(body.as_bytes()).to_hex();
    match body.strip_suffix('}') {
        Some(open) => format!("{open}{HASH_KEY}{hash}\"}}"),
        None => body.to_string(),
    }
}

/// What a line contributes to the chain.
enum Link {
    Chained {
        seq: u64,
        hash: String,
    },
    /// A line of the format before the chain: its own blake3 anchors the chain after it.
    Legacy(String),
}

impl Link {
    fn of(line: &str) -> Link {
        match parse(line) {
            Parsed::Record { seq, hash, .. } => Link::Chained { seq, hash },
            _ => Link::Legacy(blake3::hash(line.as_bytes()).to_hex().to_string()),
        }
    }
}

/// The last complete line of a file of `len` bytes (read from the end, in growing windows).
/// A window without a newline grows until it has one or covers the file.
fn last_line(file: &mut File, len: u64) -> io::Result<Option<String>> {
    let mut window: u64 = 4096;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        Read::by_ref(file).take(len - start).read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        // A file not ending in a newline ends in a write that was cut (a crash, a full disk):
        // that partial line is no record; chain from the complete line before it.
        let text = match text.rsplit_once('\n') {
            Some((complete, _)) if !text.ends_with('\n') => format!("{complete}\n"),
            None if !text.is_empty() && start == 0 => String::new(),
            _ => text.to_string(),
        };
        let trimmed = text.trim_end_matches('\n');
        if let Some((_, tail)) = trimmed.rsplit_once('\n') {
            return Ok(Some(tail.to_string()));
        }
        if start == 0 {
            return Ok((!trimmed.is_empty()).then(|| trimmed.to_string()));
        }
        window *= 4;
    }
}

fn rotated_name(path: &Path, n: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n:06}"));
    PathBuf::from(name)
}

/// Rotated files of `path`, oldest first.
pub fn rotated_files(path: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{}.", base.to_string_lossy());
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(n) = name
            .strip_prefix(&prefix)
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
        {
            found.push((n, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Every file of the log in chain order: rotated ones oldest first, then the current one.
pub fn log_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = rotated_files(path)?.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        files.push(path.to_path_buf());
    }
    Ok(files)
}

enum Parsed {
    Record {
        seq: u64,
        prev: String,
        hash: String,
        /// The line's hash matches its text.
        intact: bool,
    },
    /// Valid JSON without the chain's fields.
    Unchained,
    NotJson,
}

fn parse(line: &str) -> Parsed {
    let Ok(value) = serde_json::from_str::<Value>(line) else {
        return Parsed::NotJson;
    };
    let seq = value.get("seq").and_then(Value::as_u64);
    let prev = value
        .get("prev")
        .and_then(Value::as_str)
        .map(str::to_string);
    let hash = value
        .get("hash")
        .and_then(Value::as_str)
        .map(str::to_string);
    let (Some(seq), Some(prev), Some(hash)) = (seq, prev, hash) else {
        return Parsed::Unchained;
    };
    // The hash covers the text before its own field, which the writer put last.
    let body = line
        .strip_suffix("\"}")
        .and_then(|l| l.rsplit_once(HASH_KEY))
        .filter(|(_, h)| *h == hash)
        .map(|(open, _)| format!("{open}}}"));
    let intact = body.is_some_and(|b| blake3::hash(b.as_bytes()).to_hex().as_str() == hash);
    Parsed::Record {
        seq,
        prev,
        hash,
        intact,
    }
}

/// Where a chain check found the first problem.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Break {
    pub file: PathBuf,
    /// 1-based line number in `file`.
    pub line: usize,
    pub problem: String,
}

/// The outcome of checking the whole log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verified {
    pub files: usize,
    pub records: u64,
    /// Lines of the format before the chain, skipped.
    pub unchained_lines: usize,
    /// Fragments of writes that were cut (a crash, a full disk) inside the chain, skipped: the
    /// first one's file and line, and how many.
    pub cut_lines: Option<(PathBuf, usize, usize)>,
    /// Where the chain begins: file, line and seq.
    pub chain_begins: Option<(PathBuf, usize, u64)>,
    pub last_seq: Option<u64>,
    pub first_break: Option<Break>,
}

/// Check the chain across every file of the log; stops at the first break.
pub fn verify(path: &Path) -> io::Result<Verified> {
    let mut out = Verified {
        files: 0,
        records: 0,
        unchained_lines: 0,
        cut_lines: None,
        chain_begins: None,
        last_seq: None,
        first_break: None,
    };
    // (seq, hash, where) of the last record seen.
    let mut last: Option<(u64, String)> = None;
    // The hash a legacy line gives the chain after it (writer: `Link::Legacy`).
    let mut legacy_anchor: Option<String> = None;
    for file in log_files(path)? {
        out.files += 1;
        let text = std::fs::read(&file)?;
        let text = String::from_utf8_lossy(&text);
        let complete = text.is_empty() || text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        let count = lines.len();
        for (i, line) in lines.into_iter().enumerate() {
            let n = i + 1;
            let broke = |problem: String| Break {
                file: file.clone(),
                line: n,
                problem,
            };
            // A fragment of a cut write: the start of a record that does not parse. It claims
            // nothing, and the next record must still chain to the one before it.
            let fragment = matches!(parse(line), Parsed::NotJson) && line.starts_with("{\"");
            if fragment {
                match &mut out.cut_lines {
                    Some((_, _, k)) => *k += 1,
                    None => out.cut_lines = Some((file.clone(), n, 1)),
                }
                continue;
            }
            if n == count && !complete {
                out.first_break = Some(broke(
                    "the line is incomplete and is not the start of a record".into(),
                ));
                return Ok(out);
            }
            match parse(line) {
                Parsed::NotJson if last.is_none() => {
                    out.first_break = Some(broke("the line is not a JSON record".into()));
                    return Ok(out);
                }
                Parsed::NotJson => {
                    out.first_break = Some(broke(
                        "the line is not a JSON record: it was edited or inserted".into(),
                    ));
                    return Ok(out);
                }
                Parsed::Unchained if last.is_none() => {
                    out.unchained_lines += 1;
                    legacy_anchor = Some(blake3::hash(line.as_bytes()).to_hex().to_string());
                }
                Parsed::Unchained => {
                    out.first_break = Some(broke(
                        "the line has no seq/prev/hash inside the chain: it was edited or inserted"
                            .into(),
                    ));
                    return Ok(out);
                }
                Parsed::Record {
                    seq,
                    prev,
                    hash,
                    intact,
                } => {
                    if !intact {
                        out.first_break = Some(broke(format!(
                            "record {seq} was edited: its text no longer matches its hash"
                        )));
                        return Ok(out);
                    }
                    match &last {
                        None => {
                            let expected = legacy_anchor.as_deref().unwrap_or(GENESIS);
                            if seq != 1 || prev != expected {
                                out.first_break = Some(broke(format!(
                                    "the chain begins at record {seq}, not at record 1: the \
                                     records before it were removed"
                                )));
                                return Ok(out);
                            }
                            out.chain_begins = Some((file.clone(), n, seq));
                        }
                        Some((last_seq, last_hash)) => {
                            let problem = if seq == last_seq + 1 && prev == *last_hash {
                                None
                            } else if seq > last_seq + 1 {
                                Some(format!(
                                    "record {seq} follows record {last_seq}: {} record(s) before \
                                     this line were removed",
                                    seq - last_seq - 1
                                ))
                            } else if seq <= *last_seq {
                                Some(format!(
                                    "record {seq} comes after record {last_seq}: a line was \
                                     inserted or the lines were reordered"
                                ))
                            } else {
                                Some(format!(
                                    "record {seq} does not follow the line before it (its prev \
                                     is not that line's hash): the line before was edited, or \
                                     this one was inserted"
                                ))
                            };
                            if let Some(problem) = problem {
                                out.first_break = Some(broke(problem));
                                return Ok(out);
                            }
                        }
                    }
                    out.records += 1;
                    out.last_seq = Some(seq);
                    last = Some((seq, hash));
                }
            }
        }
    }
    Ok(out)
}

/// Every chained or unchained record (JSON lines) of the log in order, skipping lines that are
/// not JSON; for `audit list`.
pub fn records(path: &Path) -> io::Result<Vec<Value>> {
    let mut out = Vec::new();
    for file in log_files(path)? {
        let text = std::fs::read(&file)?;
        for line in String::from_utf8_lossy(&text).lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line) {
                out.push(v);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(dir: &Path) -> PathBuf {
        dir.join("audit.log")
    }

    fn write_n(path: &Path, n: usize, rotate_at: u64) {
        for i in 0..n {
            append(path, rotate_at, "test.event", json!({"i": i})).unwrap();
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn put(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    fn broken_line(path: &Path) -> (usize, String) {
        let v = verify(path).unwrap();
        let b = v.first_break.expect("the chain should be broken");
        (b.line, b.problem)
    }

    #[test]
    fn an_untouched_log_verifies_and_each_line_carries_seq_prev_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(dir.path());
        write_n(&path, 5, ROTATE_BYTES);
        let v = verify(&path).unwrap();
        assert_eq!(v.first_break, None);
        assert_eq!((v.records, v.last_seq), (5, Some(5)));
        let first: Value = serde_json::from_str(&lines(&path)[0]).unwrap();
        assert_eq!(first["seq"], 1);
        assert_eq!(first["prev"], GENESIS);
        assert_eq!(first["event"], "test.event");
        assert_eq!(first["i"], 0);
    }

    #[test]
    fn an_edited_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(dir.path());
        write_n(&path, 5, ROTATE_BYTES);
        let mut l = lines(&path);
        l[2] = l[2].replace("\"i\":2", "\"i\":9");
        put(&path, &l);
        let (line, problem) = broken_line(&path);
        assert_eq!(line, 3, "{problem}");
        assert!(problem.contains("edited"), "{problem}");
    }

    #[test]
    fn an_edited_line_whose_hash_was_recomputed_is_caught_at_the_next_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(dir.path());
        write_n(&path, 5, ROTATE_BYTES);
        let mut l = lines(&path);
        let mut v: Value = serde_json::from_str(&l[2]).unwrap();
        v.as_object_mut().unwrap().remove("hash");
        v["i"] = json!(9);
        l[2] = seal(&v.to_string());
        put(&path, &l);
        let (line, problem) = broken_line(&path);
        assert_eq!(line, 4, "{problem}");
        assert!(problem.contains("does not follow"), "{problem}");
    }

    #[test]
    fn a_removed_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(dir.path());
        write_n(&path, 5, ROTATE_BYTES);
        let mut l = lines(&path);
        l.remove(1);
        put(&path, &l);
        let (line, problem) = broken_line(&path);
        assert_eq!(line, 2, "{problem}");
        assert!(problem.contains("removed"), "{problem}");
        // Removing the head is caught too.
        let mut l = lines(&path);
        l.remove(0);
        put(&path, &l);
        let (line, problem) = broken_line(&path);
        assert_eq!(line, 1, "{problem}");
        assert!(problem.contains("removed"), "{problem}");
    }

    #[test]
    fn an_inserted_or_reordered_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(dir.path());
        write_n(&path, 5, ROTATE_BYTES);
        let orig = lines(&path);
        let mut l = orig.clone();
        l.insert(3, orig[1].clone());
        put(&path, &l);
        let (line, problem) = broken_line(&path);
        assert_eq!(line, 4, "{problem}");
        assert!(problem.contains("inserted"), "{problem}");

        let mut l = orig.clone();
        l.insert(2, r#"{"at":"x","event":"orchestrator.start"}"#.into());
        put(&path, &l);
        let (line, problem) = broken_line(&path);
        assert_eq!(line, 3, "{problem}");

        let mut l = orig;
        l.swap(1, 2);
        put(&path, &l);
        let (line, problem) = broken_line(&path);
        assert_eq!(line, 2, "{problem}");
        assert!(problem.contains("removed") || problem.contains("reordered"));
    }

    #[test]
    fn a_cut_write_is_skipped_and_the_chain_goes_on_around_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(dir.path());
        write_n(&path, 2, ROTATE_BYTES);
        // A full disk cut the third record after a few bytes.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"at\":\"2026-").unwrap();
        let v = verify(&path).unwrap();
        assert_eq!(v.first_break, None);
        assert_eq!(v.cut_lines.as_ref().map(|c| (c.1, c.2)), Some((3, 1)));
        write_n(&path, 2, ROTATE_BYTES);
        let l = lines(&path);
        assert_eq!(l.len(), 5, "{l:?}");
        let v = verify(&path).unwrap();
        assert_eq!((v.first_break, v.records), (None, 4));
        assert_eq!(v.cut_lines.map(|c| (c.1, c.2)), Some((3, 1)));
        // Garbage that is no record's start is still a break.
        let mut l = lines(&path);
        l.insert(1, "hello".into());
        put(&path, &l);
        assert_eq!(broken_line(&path).0, 2);
    }

    #[test]
    fn rotation_keeps_the_chain_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(dir.path());
        write_n(&path, 20, 600);
        let rotated = rotated_files(&path).unwrap();
        assert!(rotated.len() >= 2, "{rotated:?}");
        let v = verify(&path).unwrap();
        assert_eq!(v.first_break, None);
        assert_eq!(v.records, 20);
        // An external rotation (the file moved away) continues the chain too.
        std::fs::rename(&path, rotated_name(&path, 999_999)).unwrap();
        write_n(&path, 2, ROTATE_BYTES);
        let v = verify(&path).unwrap();
        assert_eq!((v.first_break, v.records), (None, 22));
        // Removing a rotated file in the middle is a break.
        std::fs::remove_file(&rotated[1].1).unwrap();
        assert!(verify(&path).unwrap().first_break.is_some());
    }

    #[test]
    fn concurrent_writers_with_rotation_keep_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(dir.path());
        std::thread::scope(|scope| {
            for _ in 0..6 {
                scope.spawn(|| write_n(&path, 40, 4000));
            }
        });
        let v = verify(&path).unwrap();
        assert_eq!(v.first_break, None);
        assert_eq!(v.records, 240);
        assert!(rotated_files(&path).unwrap().len() >= 3);
    }

    #[test]
    fn a_log_of_the_earlier_format_is_kept_and_the_chain_begins_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(dir.path());
        std::fs::write(
            &path,
            "{\"at\":\"2026-01-01T00:00:00.000Z\",\"event\":\"orchestrator.start\",\"pid\":1}\n",
        )
        .unwrap();
        write_n(&path, 3, ROTATE_BYTES);
        let v = verify(&path).unwrap();
        assert_eq!(v.first_break, None);
        assert_eq!(v.unchained_lines, 1);
        assert_eq!(v.chain_begins.as_ref().map(|c| (c.1, c.2)), Some((2, 1)));
    }

    #[test]
    fn details_cannot_forge_the_chain_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = log(dir.path());
        append(&path, ROTATE_BYTES, "x", json!({"seq": 99, "hash": "no"})).unwrap();
        assert_eq!(verify(&path).unwrap().first_break, None);
    }
}
