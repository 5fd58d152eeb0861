//! Sources: finding the items of a declared source and turning each into documents.
//!
//! Owns: enumerating a source's items (files, notes, messages) with their size and mtime, the
//! include/exclude rules, and parsing one item's bytes into normalized documents.
//! Invariants: enumeration never reads file contents (size + mtime only, so a no-change rescan is
//! cheap) and never follows a symlink: symlinks, FIFOs, sockets and devices are recorded as
//! skipped with their reason; item keys are lossless and injective for any file name
//! (`key_from_bytes`, inverted by `path_from_key`); parsing is a pure function of the bytes and
//! never panics; one bad item yields a `Failure` for that item and never affects another; names
//! starting with `.` are ignored; chunk boundaries are char boundaries computed from the text.

pub mod files;
pub mod html;
pub mod mail;
pub mod markdown;

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::failure::{ErrorClass, Failure};

/// Kinds of source futurnal can ingest. It lives here, with the code that reads each kind, so
/// that `config` depends on `sources` and never the other way (config re-exports it).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceType {
    LocalFiles,
    Obsidian,
    Maildir,
    Mbox,
}

/// What this layer needs to know about a declared source, as plain values: `config` converts
/// its `SourceConfig` into this (`From<&SourceConfig>`), so callers pass `&source_config`.
#[derive(Debug, Clone, Copy)]
pub struct SourceSpec<'a> {
    pub kind: SourceType,
    pub root: &'a Path,
    pub include: &'a [String],
    pub exclude: &'a [String],
}

impl<'a> SourceSpec<'a> {
    /// A source with no include/exclude rules.
    pub fn new(kind: SourceType, root: &'a Path) -> SourceSpec<'a> {
        SourceSpec {
            kind,
            root,
            include: &[],
            exclude: &[],
        }
    }
}

/// One thing in a source that can change independently: a file, or an mbox file.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Stable key within the source (a relative path; for maildir the unique name).
    pub key: String,
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
}

/// An item recorded but not ingested, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub key: String,
    pub reason: String,
    pub size: u64,
    pub mtime_ns: i64,
}

/// What parsing one candidate produced: documents, and messages inside it that failed alone.
#[derive(Debug, Default)]
pub struct Parsed {
    pub docs: Vec<ParsedDoc>,
    pub failures: Vec<(String, Failure)>,
}

#[derive(Debug, Default)]
pub struct Enumeration {
    pub candidates: Vec<Candidate>,
    pub skipped: Vec<Skipped>,
    /// Parts of the tree that could not be listed (an unreadable folder, say).
    pub errors: Vec<(String, Failure)>,
}

/// A normalized document ready for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedDoc {
    /// Document key: the candidate key, or `file#message-id` for a message inside an mbox.
    pub item: String,
    pub kind: &'static str,
    pub title: String,
    pub body: String,
    pub metadata: Value,
    /// (target, kind) where kind is `url`, `wikilink` or `embed`.
    pub links: Vec<(String, &'static str)>,
    pub content_hash: String,
    pub size: u64,
}

/// Include/exclude glob rules of a source, matched against the item's relative path.
pub struct Rules {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl Rules {
    pub fn new<'a>(source: impl Into<SourceSpec<'a>>) -> Result<Rules, Failure> {
        let source = source.into();
        let build = |patterns: &[String]| -> Result<GlobSet, Failure> {
            let mut b = GlobSetBuilder::new();
            for p in patterns {
                b.add(Glob::new(p).map_err(|e| {
                    Failure::new(ErrorClass::Internal, format!("bad glob pattern `{p}`: {e}"))
                })?);
            }
            b.build()
                .map_err(|e| Failure::new(ErrorClass::Internal, e.to_string()))
        };
        Ok(Rules {
            include: if source.include.is_empty() {
                None
            } else {
                Some(build(source.include)?)
            },
            exclude: build(source.exclude)?,
        })
    }

    pub fn allows(&self, relative: &str) -> bool {
        if self.exclude.is_match(relative) {
            return false;
        }
        self.include
            .as_ref()
            .is_none_or(|inc| inc.is_match(relative))
    }
}

/// Check the glob patterns of a source (used by config validation).
pub fn check_patterns(patterns: &[String]) -> Result<(), String> {
    for p in patterns {
        Glob::new(p).map_err(|e| format!("`{p}` is not a glob pattern: {e}"))?;
    }
    Ok(())
}

/// A folder that could not be listed: the source's own folder is named by its path (declared,
/// so the message is redacted per `security.path_redaction`), anything below it by its key.
fn list_failure(root: &Path, key: &str, e: &std::io::Error) -> Failure {
    if key.is_empty() {
        Failure::io_at("source path", root, e)
    } else {
        Failure::io(format!("cannot list {key}"), e)
    }
}

/// Find the items of a source. `Err` when the source itself is unusable (missing, unreadable).
pub fn enumerate<'a>(source: impl Into<SourceSpec<'a>>) -> Result<Enumeration, Failure> {
    let found = enumerate_items(source.into())?;
    // A source whose own folder cannot be listed has failed as a whole, not item by item.
    if let Some((_, f)) = found.errors.iter().find(|(k, _)| k.is_empty()) {
        return Err(f.clone());
    }
    Ok(found)
}

fn enumerate_items(source: SourceSpec) -> Result<Enumeration, Failure> {
    let root = source.root;
    let meta = std::fs::metadata(root).map_err(|e| Failure::io_at("source path", root, &e))?;
    let rules = Rules::new(source)?;
    match source.kind {
        SourceType::LocalFiles | SourceType::Obsidian => {
            if !meta.is_dir() {
                return Err(Failure::new(ErrorClass::NotFound, String::new()).with_path(
                    "source path",
                    root,
                    "not a folder",
                ));
            }
            Ok(files::enumerate(root, source.kind, &rules))
        }
        SourceType::Maildir => {
            if !meta.is_dir() {
                return Err(Failure::new(ErrorClass::NotFound, String::new()).with_path(
                    "maildir",
                    root,
                    "not a folder",
                ));
            }
            Ok(mail::enumerate_maildir(root, &rules))
        }
        SourceType::Mbox => Ok(mail::enumerate_mbox(root, meta.is_dir(), &rules)),
    }
}

/// Parse one candidate's bytes (whose content hash is `hash`) into documents. `Err` when the
/// candidate as a whole failed. Takes the bytes by value so a note's text becomes its document
/// body without a copy.
pub fn parse<'a>(
    source: impl Into<SourceSpec<'a>>,
    candidate: &Candidate,
    bytes: Vec<u8>,
    hash: String,
) -> Result<Parsed, Failure> {
    let one = |d: ParsedDoc| Parsed {
        docs: vec![d],
        failures: Vec::new(),
    };
    match source.into().kind {
        SourceType::LocalFiles => files::parse_file(candidate, bytes, hash).map(one),
        SourceType::Obsidian => files::parse_obsidian(candidate, bytes, hash).map(one),
        SourceType::Maildir => Ok(one(mail::parse_email(&candidate.key, &bytes, hash))),
        SourceType::Mbox => Ok(mail::parse_mbox(candidate, &bytes)),
    }
}

pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// What a walk found that is neither a folder nor a regular file, and why it is not ingested.
/// A symlink is never followed, whatever it points to: it could lead out of the source (or into
/// a loop), and following it would ingest what the operator did not declare.
pub fn special_reason(kind: std::fs::FileType) -> &'static str {
    use rustix::fs::FileType as T;
    use std::os::unix::fs::FileTypeExt;
    reason_for(if kind.is_symlink() {
        T::Symlink
    } else if kind.is_fifo() {
        T::Fifo
    } else if kind.is_socket() {
        T::Socket
    } else if kind.is_block_device() {
        T::BlockDevice
    } else if kind.is_char_device() {
        T::CharacterDevice
    } else {
        T::Unknown
    })
}

fn reason_for(kind: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType as T;
    match kind {
        T::Symlink => "symbolic link (futurnal does not follow links)",
        T::Fifo => "named pipe (FIFO)",
        T::Socket => "socket",
        T::BlockDevice => "block device",
        T::CharacterDevice => "character device",
        _ => "not a regular file",
    }
}

/// What a walk reports (see [`walk`]).
pub enum Found {
    /// A regular file: its path, key, size and mtime.
    File(PathBuf, String, u64, i64),
    /// A symlink, FIFO, socket or device, with its own (`lstat`) size and mtime and the reason it
    /// is not ingested: recorded as skipped rather than vanishing.
    Special(Skipped),
    /// Something that could not be listed or stat'ed, by key (`""` for the root).
    Error(String, std::io::Error),
}

/// Size and mtime of a `stat` result. The field types vary by architecture.
#[allow(clippy::useless_conversion)]
fn stat_of(st: &rustix::fs::Stat) -> (u64, i64) {
    let size = u64::try_from(st.st_size).unwrap_or(0);
    let nsec = i64::try_from(st.st_mtime_nsec).unwrap_or(0);
    (size, mtime_ns(i64::from(st.st_mtime), nsec))
}

/// Identity of a folder: (device, inode).
#[allow(clippy::useless_conversion)]
fn identity(st: &rustix::fs::Stat) -> (u64, u64) {
    (u64::from(st.st_dev), u64::from(st.st_ino))
}

/// Every entry under `root`, depth first: regular files, special entries and errors, as
/// [`Found`]. Keys are paths relative to `root`, `/`-separated, each name written by
/// [`key_from_bytes`]. With `skip_hidden`, names starting with `.` are not entered or reported.
///
/// No symlink is followed, even when one replaces a folder during the walk: each entry is
/// `lstat`ed relative to its open folder, and a folder is opened `O_NOFOLLOW` and must be the
/// very folder (device and inode) its parent listed; a folder turned into a link meanwhile is
/// reported as that link, one replaced otherwise as an error (its items are then not taken for
/// deleted). An entry or folder that vanished during the walk is simply gone.
///
/// A hand-rolled walk rather than walkdir: entries are stat'ed relative to the open directory (no
/// path resolution per file) and keys are built by appending, which keeps a no-change rescan of
/// 100,000 files within twice the time of `find`.
pub fn walk(root: &Path, skip_hidden: bool, mut visit: impl FnMut(Found)) {
    use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
    use std::os::unix::ffi::OsStrExt;
    // Folders still to list: path, key prefix, and the identity their parent saw (none for root).
    type Pending = (PathBuf, String, Option<(u64, u64)>);
    let mut stack: Vec<Pending> = vec![(root.to_path_buf(), String::new(), None)];
    while let Some((dir, prefix, expected)) = stack.pop() {
        // The source's own folder may be a link the operator configured; nothing below it is.
        let nofollow = if expected.is_some() {
            OFlags::NOFOLLOW
        } else {
            OFlags::empty()
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = match rustix::fs::open(&dir, flags | nofollow, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) if expected.is_some() => continue,
            Err(e)
                if expected.is_some()
                    && matches!(e, rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) =>
            {
                // Replaced by a link (or a file) since its parent was listed: report what it is now.
                match rustix::fs::lstat(&dir) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
                        let (size, mtime_ns) = stat_of(&st);
                        visit(Found::Special(Skipped {
                            key: prefix,
                            reason: reason_for(FileType::from_raw_mode(st.st_mode)).into(),
                            size,
                            mtime_ns,
                        }));
                    }
                    _ => visit(Found::Error(prefix, e.into())),
                }
                continue;
            }
            Err(e) => {
                visit(Found::Error(prefix, e.into()));
                continue;
            }
        };
        if let Some(expected) = expected {
            match rustix::fs::fstat(&fd) {
                Ok(st) if identity(&st) == expected => {}
                Ok(_) => {
                    visit(Found::Error(
                        prefix,
                        std::io::Error::other("the folder was replaced during the scan"),
                    ));
                    continue;
                }
                Err(e) => {
                    visit(Found::Error(prefix, e.into()));
                    continue;
                }
            }
        }
        let mut entries = match Dir::read_from(&fd) {
            Ok(d) => d,
            Err(e) => {
                visit(Found::Error(prefix, e.into()));
                continue;
            }
        };
        while let Some(entry) = entries.read() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    visit(Found::Error(prefix.clone(), e.into()));
                    break;
                }
            };
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." || (skip_hidden && name.starts_with(b".")) {
                continue;
            }
            let key = if prefix.is_empty() {
                key_from_bytes(name)
            } else {
                format!("{prefix}/{}", key_from_bytes(name))
            };
            let st = match rustix::fs::statat(&fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => {
                    visit(Found::Error(key, e.into()));
                    continue;
                }
            };
            let path = dir.join(std::ffi::OsStr::from_bytes(name));
            let (size, mtime_ns) = stat_of(&st);
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => stack.push((path, key, Some(identity(&st)))),
                FileType::RegularFile => visit(Found::File(path, key, size, mtime_ns)),
                kind => visit(Found::Special(Skipped {
                    key,
                    reason: reason_for(kind).into(),
                    size,
                    mtime_ns,
                })),
            }
        }
    }
}

/// An item key for a file name (or a relative path) given as raw bytes. Keys are text, but Unix
/// names are bytes: valid UTF-8 keeps its text except that a backslash is written `\\`, and each
/// byte that is not part of valid UTF-8 is written `\xHH` (two uppercase hex digits). The mapping
/// is injective and [`bytes_from_key`] inverts it exactly, so two files never share a key and a key
/// always leads back to its file. No normalization: NFC and NFD spellings of a name are two items,
/// as they are two files.
pub fn key_from_bytes(name: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(name.len());
    for chunk in name.utf8_chunks() {
        let valid = chunk.valid();
        if memchr::memchr(b'\\', valid.as_bytes()).is_some() {
            out.push_str(&valid.replace('\\', "\\\\"));
        } else {
            out.push_str(valid);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    out
}

/// [`key_from_bytes`] for an `OsStr` (a file name, or a path relative to a source).
pub fn key_from_os(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    key_from_bytes(name.as_bytes())
}

/// The exact bytes a key was made from; `None` for text that no name produces (a backslash not
/// followed by `\\` or `xHH`).
pub fn bytes_from_key(key: &str) -> Option<Vec<u8>> {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => match bytes.get(i + 1)? {
                b'\\' => {
                    out.push(b'\\');
                    i += 2;
                }
                b'x' => {
                    let hex = bytes.get(i + 2..i + 4)?;
                    let upper = |c: &u8| c.is_ascii_digit() || (b'A'..=b'F').contains(c);
                    if !hex.iter().all(upper) {
                        return None;
                    }
                    let hex = std::str::from_utf8(hex).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 4;
                }
                _ => return None,
            },
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    // A key made by key_from_bytes writes every invalid byte escaped: refuse a key whose escapes
    // spell valid UTF-8 (it would be a second key for the same name).
    (key_from_bytes(&out) == key).then_some(out)
}

/// The file a key of a folder source names: `root` joined with the key's exact bytes. Use this
/// (never the key's text) to go from a stored item key back to the filesystem.
pub fn path_from_key(root: &Path, key: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = bytes_from_key(key)?;
    Some(root.join(std::ffi::OsStr::from_bytes(&bytes)))
}

/// A file's size and modification time in nanoseconds.
pub fn stat(meta: &std::fs::Metadata) -> (u64, i64) {
    use std::os::unix::fs::MetadataExt;
    (meta.len(), mtime_ns(meta.mtime(), meta.mtime_nsec()))
}

/// Seconds and nanoseconds as one nanosecond count, saturating: a file can carry any mtime (a
/// year far in the past or future), and an odd one must not overflow into a panic or wrap.
pub fn mtime_ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Decode text, failing (rather than guessing) on bytes that are not UTF-8. A byte-order mark
/// is dropped.
pub fn utf8(mut bytes: Vec<u8>) -> Result<String, Failure> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|e| {
        Failure::parse(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Byte offsets of chunk boundaries: pieces of at most `target + target / 2` bytes (or one
/// character, if a single character is longer), cut at the last paragraph break after `target / 2`
/// where there is one, else after the last whitespace, else at the size limit. Every offset is
/// computed from the string itself, so each is a char boundary; the chunks cover the text exactly,
/// in order, none empty. Linear time: each window is scanned at most twice.
pub fn chunk_boundaries(text: &str, target: usize) -> Vec<(usize, usize)> {
    let target = target.max(1);
    let max = target.saturating_add(target / 2);
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let rest = &text[start..];
        if rest.len() <= max {
            out.push((start, text.len()));
            break;
        }
        let limit = rest.floor_char_boundary(max);
        let min = rest.ceil_char_boundary(target / 2).min(limit);
        let window = &rest[min..limit];
        let cut = match window.rfind("\n\n") {
            Some(i) => min + i + 2,
            None => window
                .char_indices()
                .rev()
                .find(|(_, c)| c.is_whitespace())
                .map_or(limit, |(i, c)| min + i + c.len_utf8()),
        };
        // A first character longer than the limit is a chunk of its own.
        let cut = if cut == 0 {
            rest.chars().next().map_or(rest.len(), char::len_utf8)
        } else {
            cut
        };
        out.push((start, start + cut));
        start += cut;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::ffi::OsStrExt;

    /// The invariants every stored body relies on.
    fn check_chunks(text: &str, target: usize) -> Result<(), TestCaseError> {
        let chunks = chunk_boundaries(text, target);
        let max = target.max(1) + target.max(1) / 2;
        let mut at = 0;
        for (n, &(start, end)) in chunks.iter().enumerate() {
            // Every chunk but the last is at least half the target (less at most a character):
            // so there are at most about 2 × len / target chunks, each found by scanning one
            // window of at most 1.5 × target bytes, which bounds the time linearly.
            if n + 1 < chunks.len() {
                prop_assert!(end - start >= (target / 2).min(max.saturating_sub(3)));
            }
            prop_assert_eq!(start, at, "contiguous, in order");
            prop_assert!(start < end, "no empty chunk");
            prop_assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
            let piece = &text[start..end];
            prop_assert!(
                piece.len() <= max || piece.chars().count() == 1,
                "chunk of {} bytes over {max}",
                piece.len()
            );
            at = end;
        }
        prop_assert_eq!(at, text.len(), "covers the text");
        Ok(())
    }

    #[test]
    fn chunks_cover_text_exactly_and_respect_targets() {
        let para = "word ".repeat(80); // 400 bytes
        let text = format!("{para}\n\n{para}\n\n{para}\n\n{para}\n\né{para}");
        let chunks = chunk_boundaries(&text, 500);
        assert_eq!(chunks.first().unwrap().0, 0);
        assert_eq!(chunks.last().unwrap().1, text.len());
        for w in chunks.windows(2) {
            assert_eq!(w[0].1, w[1].0);
        }
        for (s, e) in &chunks {
            assert!(text.is_char_boundary(*s) && text.is_char_boundary(*e));
            assert!(e - s <= 750, "{s}..{e}");
        }
        assert!(chunk_boundaries("", 500).is_empty());
        assert_eq!(chunk_boundaries("short", 500), vec![(0, 5)]);
    }

    /// Issue 7: `"a" + "日本語のメモ" × 200` panicked (a window start inside a character), as
    /// did `§` at the window's edge and a multi-byte space (U+3000) as the last whitespace.
    #[test]
    fn chunks_of_multibyte_text_never_cut_a_character() {
        let japanese = format!("a{}", "日本語のメモ".repeat(200));
        check_chunks(&japanese, 1500).unwrap();
        let section = format!("a{}", "§".repeat(2000));
        check_chunks(&section, 1500).unwrap();
        let spaced = "語\u{3000}".repeat(1000);
        check_chunks(&spaced, 1500).unwrap();
        for target in [0, 1, 2, 3, 5] {
            check_chunks("😀👩‍👩‍👧é\u{301}", target).unwrap();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn chunk_invariants_hold_for_any_text(text in any::<String>(), target in 0usize..64) {
            check_chunks(&text, target)?;
        }

        #[test]
        fn chunk_invariants_hold_for_longer_text(
            text in "(\\PC{1,20}[ \\n\u{3000}]{0,3}){0,80}",
            target in 8usize..200,
        ) {
            check_chunks(&text, target)?;
        }

        #[test]
        fn keys_round_trip_any_name(name in proptest::collection::vec(1u8..=255, 0..40)) {
            let name: Vec<u8> = name.into_iter().filter(|b| *b != b'/').collect();
            let key = key_from_bytes(&name);
            prop_assert_eq!(bytes_from_key(&key), Some(name.clone()));
            let path = path_from_key(Path::new("/src"), &key).unwrap();
            prop_assert_eq!(path, Path::new("/src").join(std::ffi::OsStr::from_bytes(&name)));
            prop_assert!(!key.contains('/'));
            prop_assert_eq!(key_from_os(std::ffi::OsStr::from_bytes(&name)), key);
        }

        #[test]
        fn keys_are_injective(
            a in proptest::collection::vec(1u8..=255, 0..12),
            b in proptest::collection::vec(1u8..=255, 0..12),
        ) {
            prop_assert_eq!(key_from_bytes(&a) == key_from_bytes(&b), a == b);
        }
    }

    #[test]
    fn keys_escape_backslashes_and_invalid_bytes_only() {
        assert_eq!(key_from_bytes("café #1 ?%.md".as_bytes()), "café #1 ?%.md");
        assert_eq!(key_from_bytes(b"\xff.md"), "\\xFF.md");
        assert_eq!(key_from_bytes(b"a\\xFF.md"), "a\\\\xFF.md");
        assert_ne!(key_from_bytes(b"\xff"), key_from_bytes(b"\\xFF"));
        // Text that no name produces is refused rather than guessed.
        assert_eq!(bytes_from_key("a\\b"), None);
        assert_eq!(bytes_from_key("\\xff"), None);
        assert_eq!(
            bytes_from_key("\\x41"),
            None,
            "an escaped valid byte is a second key"
        );
        assert_eq!(bytes_from_key("\\x4"), None);
    }

    fn source(kind: SourceType, root: &Path) -> SourceSpec<'_> {
        SourceSpec::new(kind, root)
    }

    /// Issue 7 item 2: `\xff.md` and `\xfe.md` were both `�.md`: one document, "2 changed" on
    /// every run. NFC and NFD spellings of one name are two files, so two items.
    #[test]
    fn names_that_are_not_utf8_or_differ_in_normalization_are_distinct_items() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (name, body) in [
            (&b"\xff.md"[..], "A"),
            (b"\xfe.md", "B"),
            ("café.md".as_bytes(), "nfc"),
            ("cafe\u{301}.md".as_bytes(), "nfd"),
            (b"back\\slash.md", "C"),
        ] {
            std::fs::write(root.join(std::ffi::OsStr::from_bytes(name)), body).unwrap();
        }
        let found = enumerate(source(SourceType::LocalFiles, root)).unwrap();
        let mut keys: Vec<&str> = found.candidates.iter().map(|c| c.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "\\xFE.md",
                "\\xFF.md",
                "back\\\\slash.md",
                "cafe\u{301}.md",
                "café.md"
            ]
        );
        for c in &found.candidates {
            assert_eq!(
                path_from_key(root, &c.key).as_deref(),
                Some(c.path.as_path())
            );
        }
    }

    /// Issue 7 item 14: symlinks (valid, looping, pointing out of the source), FIFOs and
    /// sockets vanished; each is now a skipped item with its reason, and nothing is followed.
    #[test]
    fn special_entries_are_skipped_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.md"), "not in the source").unwrap();
        let root = dir.path();
        std::fs::write(root.join("real.md"), "# Real").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::os::unix::fs::symlink("../real.md", root.join("sub/link.md")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.md"), root.join("out.md")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("outdir")).unwrap();
        std::os::unix::fs::symlink("loop.md", root.join("loop.md")).unwrap();
        std::os::unix::fs::symlink(".", root.join("sub/self")).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, root.join("pipe.md"), 0o600.into()).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
        for kind in [
            SourceType::LocalFiles,
            SourceType::Obsidian,
            SourceType::Mbox,
        ] {
            let found = enumerate(source(kind, root)).unwrap();
            let keys: Vec<&str> = found.candidates.iter().map(|c| c.key.as_str()).collect();
            assert_eq!(keys, ["real.md"], "{kind:?}");
            let mut skipped: Vec<(&str, &str)> = found
                .skipped
                .iter()
                .map(|s| (s.key.as_str(), s.reason.as_str()))
                .collect();
            skipped.sort_unstable();
            let link = "symbolic link (futurnal does not follow links)";
            assert_eq!(
                skipped,
                [
                    ("loop.md", link),
                    ("out.md", link),
                    ("outdir", link),
                    ("pipe.md", "named pipe (FIFO)"),
                    ("sock", "socket"),
                    ("sub/link.md", link),
                    ("sub/self", link),
                ],
                "{kind:?}"
            );
            assert!(found.errors.is_empty());
        }
    }

    fn walked(
        root: &Path,
        mut during: impl FnMut(&str),
    ) -> (Vec<String>, Vec<Skipped>, Vec<String>) {
        let (mut files, mut special, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        walk(root, true, |found| match found {
            Found::File(_, key, _, _) => {
                during(&key);
                files.push(key);
            }
            Found::Special(s) => special.push(s),
            Found::Error(key, _) => errors.push(key),
        });
        files.sort();
        (files, special, errors)
    }

    /// Issue 7 item 4, at the walk: a folder replaced by a symlink after its parent was listed
    /// was followed (`std::fs::read_dir` resolves links), so a walk could leave the source.
    #[test]
    fn a_folder_replaced_by_a_link_during_the_walk_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.md"), "x").unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.md"), "a").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/b.md"), "b").unwrap();
        let mut swapped = false;
        let (files, special, errors) = walked(root, |key| {
            if !swapped && !key.contains('/') {
                swapped = true;
                std::fs::remove_dir_all(root.join("sub")).unwrap();
                std::os::unix::fs::symlink(outside.path(), root.join("sub")).unwrap();
            }
        });
        assert_eq!(files, ["a.md"]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(special.len(), 1);
        assert_eq!(
            (special[0].key.as_str(), special[0].reason.as_str()),
            ("sub", "symbolic link (futurnal does not follow links)")
        );
    }

    /// Files and folders that vanish during the walk are gone, not errors (an error would keep
    /// their documents alive and fail an item that no longer exists).
    #[test]
    fn entries_vanishing_during_the_walk_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for n in 0..20 {
            std::fs::write(root.join(format!("{n}.md")), "x").unwrap();
        }
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/b.md"), "b").unwrap();
        let mut first = None;
        let (files, special, errors) = walked(root, |key| {
            if first.is_none() {
                first = Some(key.to_string());
                for n in 0..20 {
                    let p = root.join(format!("{n}.md"));
                    if format!("{n}.md") != key {
                        std::fs::remove_file(p).unwrap();
                    }
                }
                std::fs::remove_dir_all(root.join("sub")).unwrap();
            }
        });
        assert_eq!(files, [first.unwrap()]);
        assert!(special.is_empty());
        assert!(errors.is_empty(), "{errors:?}");
    }

    /// A failure naming the source's folder declares that path, so it is redacted by policy.
    #[test]
    fn failures_naming_the_source_folder_declare_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("Folder With Spaces: here");
        let f = enumerate(source(SourceType::LocalFiles, &missing)).unwrap_err();
        assert_eq!(f.class, ErrorClass::NotFound);
        let shown = f.redacted().message;
        assert!(!shown.contains("Folder With Spaces"), "{shown}");
        let file = dir.path().join("Spaced: file.md");
        std::fs::write(&file, "x").unwrap();
        for kind in [SourceType::LocalFiles, SourceType::Maildir] {
            let f = enumerate(source(kind, &file)).unwrap_err();
            let shown = f.redacted().message;
            assert!(!shown.contains("Spaced"), "{shown}");
            assert!(shown.ends_with("not a folder"), "{shown}");
        }
    }

    /// Every path message of every source type, for a folder whose name holds spaces, `:`, `(`
    /// and non-ASCII: the path is declared, so redaction leaves no part of it.
    #[test]
    fn every_source_types_path_messages_are_redacted_whole() {
        let dir = tempfile::tempdir().unwrap();
        let hostile = dir.path().join("Folder With Spaces: (ü) x");
        let check = |what: &str, f: Failure, expect: &str| {
            assert!(
                f.message.contains("Folder With Spaces: (ü) x"),
                "{what}: {}",
                f.message
            );
            let shown = f.redacted().message;
            for part in ["Folder", "With", "Spaces", "ü", "(ü)", "tmp"] {
                assert!(!shown.contains(part), "{what}: {part} in {shown}");
            }
            assert!(shown.starts_with(expect), "{what}: {shown}");
        };
        // Missing, for each type.
        for (kind, expect) in [
            (SourceType::LocalFiles, "source path <path "),
            (SourceType::Obsidian, "source path <path "),
            (SourceType::Maildir, "source path <path "),
            (SourceType::Mbox, "source path <path "),
        ] {
            let f = enumerate(source(kind, &hostile)).unwrap_err();
            assert_eq!(f.class, ErrorClass::NotFound, "{kind:?}");
            check(&format!("missing {kind:?}"), f, expect);
        }
        // A file where a folder is expected.
        std::fs::write(&hostile, "x").unwrap();
        for (kind, expect) in [
            (SourceType::LocalFiles, "source path <path "),
            (SourceType::Obsidian, "source path <path "),
            (SourceType::Maildir, "maildir <path "),
        ] {
            let f = enumerate(source(kind, &hostile)).unwrap_err();
            check(&format!("file {kind:?}"), f, expect);
        }
        // An mbox file that vanishes between the source check and its listing.
        let rules = Rules::new(source(SourceType::Mbox, &hostile)).unwrap();
        std::fs::remove_file(&hostile).unwrap();
        let found = mail::enumerate_mbox(&hostile, false, &rules);
        let (_, f) = found.errors.into_iter().next().unwrap();
        check("vanished mbox", f, "mbox <path ");
    }

    /// A tree deeper than PATH_MAX: the walk neither panics nor loses the folder's items; the
    /// folder it cannot open is an error for its key (so nothing under it is taken for deleted).
    #[test]
    fn folders_beyond_path_max_are_errors_not_deletions() {
        use rustix::fs::{Mode, OFlags};
        let dir = tempfile::tempdir().unwrap();
        let name = "d".repeat(200);
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut fd = rustix::fs::open(dir.path(), flags, Mode::empty()).unwrap();
        for _ in 0..25 {
            rustix::fs::mkdirat(&fd, &name, Mode::RWXU).unwrap();
            fd = rustix::fs::openat(&fd, &name, flags, Mode::empty()).unwrap();
        }
        let file = rustix::fs::openat(
            &fd,
            "deep.md",
            OFlags::WRONLY | OFlags::CREATE,
            Mode::RUSR | Mode::WUSR,
        )
        .unwrap();
        drop(file);
        std::fs::write(dir.path().join("top.md"), "x").unwrap();
        let found = enumerate(source(SourceType::LocalFiles, dir.path())).unwrap();
        assert_eq!(found.candidates.len(), 1, "{:?}", found.candidates);
        assert_eq!(found.errors.len(), 1);
        let (key, failure) = &found.errors[0];
        assert!(key.starts_with(&name) && key.len() > 4000, "{}", key.len());
        assert!(
            failure.message.starts_with("cannot list "),
            "{}",
            failure.message
        );
    }

    #[test]
    fn maildir_symlinks_are_skipped_messages() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["cur", "new", "tmp"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        std::fs::write(root.join("cur/1.a:2,S"), "Subject: hi\n\nbody").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("new/2.b")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("tmp/3.c")).unwrap();
        // A Maildir++ sub-folder that is a link: recorded under its path, not dropped.
        std::os::unix::fs::symlink("/tmp", root.join(".Archive")).unwrap();
        let found = enumerate(source(SourceType::Maildir, root)).unwrap();
        assert_eq!(found.candidates.len(), 1);
        assert_eq!(found.candidates[0].key, "1.a");
        let mut skipped: Vec<&str> = found.skipped.iter().map(|s| s.key.as_str()).collect();
        skipped.sort_unstable();
        assert_eq!(skipped, [".Archive", "2.b"]);
        assert!(
            found
                .skipped
                .iter()
                .all(|s| s.reason.starts_with("symbolic link"))
        );
    }

    /// Issue 7 item 13: `mtime * 1e9 + nsec` overflowed for far-off mtimes.
    #[test]
    fn mtime_saturates_instead_of_overflowing() {
        assert_eq!(mtime_ns(1, 5), 1_000_000_005);
        assert_eq!(mtime_ns(-1, 5), -999_999_995);
        assert_eq!(mtime_ns(i64::MAX, 999_999_999), i64::MAX);
        assert_eq!(mtime_ns(i64::MAX / 1_000_000_000, 999_999_999), i64::MAX);
        assert_eq!(mtime_ns(i64::MIN, 0), i64::MIN);
        assert_eq!(mtime_ns(i64::MIN, 999_999_999), i64::MIN + 999_999_999);
    }

    #[test]
    fn utf8_rejects_invalid_bytes_with_offset() {
        let f = utf8(b"ok \xff bad".to_vec()).unwrap_err();
        assert_eq!(f.class, ErrorClass::ParseError);
        assert!(f.message.contains("offset 3"), "{}", f.message);
        assert_eq!(utf8(b"\xEF\xBB\xBFhi".to_vec()).unwrap(), "hi");
    }
}
