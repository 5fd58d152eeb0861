//! The document store (`store.db`): what futurnal has ingested.
//!
//! Owns: documents with their normalized text, metadata, chunk boundaries (`chunks`: a JSON array
//! of `[start, end]` byte offsets into `body`) and links (`links`: a JSON array of
//! `{"target", "kind"}`), the candidate that holds each (`container`: the file itself, or the mbox
//! of a message) and the scan state that makes rescans incremental.
//! Invariants: (source, item) identifies a document, so re-ingesting a source (even after losing
//! queue.db) never duplicates one; a document whose content hash is unchanged is never rewritten;
//! a deleted item is tombstoned (`deleted_at`), never silently kept live; a candidate's documents
//! are found by their `container` column, never by the shape of their names (`#` may be in a file
//! name); store.db is separate
//! from queue.db and is derived data, rebuilt by re-ingesting (`orchestrator start
//! --rebuild-store`), never silently: it uses a write-ahead log with synchronous=NORMAL, which
//! SQLite documents as safe from corruption on power loss (a commit may be lost, never the
//! database), and a running daemon checks it (`PRAGMA quick_check`) at start and keeps one
//! connection open, so the -wal file exists while it runs (`db::open_read_only` relies on it).
//! Commands that only read open it read-only. Writers wait on each other for at most one batch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::failure::{Failure, Remedy};
use crate::sources::{Candidate, ParsedDoc, Skipped, chunk_boundaries};

/// A document serialized for the store, prepared off the writer thread.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub item: String,
    pub kind: &'static str,
    pub title: String,
    pub body: String,
    pub metadata: String,
    pub chunks: String,
    pub links: String,
    pub content_hash: String,
    pub size: u64,
}

impl Prepared {
    pub fn from(doc: ParsedDoc) -> Prepared {
        let chunks: Vec<[usize; 2]> = chunk_boundaries(&doc.body, CHUNK_TARGET)
            .into_iter()
            .map(|(a, b)| [a, b])
            .collect();
        #[derive(serde::Serialize)]
        struct Link<'a> {
            kind: &'a str,
            target: &'a str,
        }
        let links: Vec<Link> = doc
            .links
            .iter()
            .map(|(target, kind)| Link { kind, target })
            .collect();
        let links = serde_json::to_string(&links).unwrap_or_else(|_| "[]".into());
        Prepared {
            item: doc.item,
            kind: doc.kind,
            title: doc.title,
            body: doc.body,
            metadata: doc.metadata.to_string(),
            chunks: serde_json::to_string(&chunks).unwrap_or_else(|_| "[]".into()),
            links,
            content_hash: doc.content_hash,
            size: doc.size,
        }
    }
}

/// The tables that grow with what is ingested: a start's synchronous check leaves them to the
/// background check (`daemon::integrity`).
pub const LARGE_TABLES: &[&str] = &["documents", "scan_state"];

/// store.db's page size, set when the file is created.
pub const PAGE_SIZE: u32 = 16384;

const MIGRATIONS: &[&str] = &["CREATE TABLE documents (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        item TEXT NOT NULL,
        kind TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        metadata TEXT NOT NULL,
        chunks TEXT NOT NULL,
        links TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        size INTEGER NOT NULL,
        ingested_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        deleted_at INTEGER,
        UNIQUE (source, item)
    );
    CREATE TABLE scan_state (
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        content_hash TEXT,
        status TEXT NOT NULL CHECK (status IN ('ok', 'skipped', 'failed')),
        reason TEXT,
        documents INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (source, key)
    ) WITHOUT ROWID;",
    // Which candidate holds each document. Before this, a container's documents were found by the
    // `key#` prefix of their item, so deleting `n.md` also tombstoned a file named `n.md#2.md`.
    // Existing rows: a document whose item is a scanned candidate is its own container; a message
    // belongs to the longest scanned key it extends with `#`. Only documents inside another
    // candidate (messages of an mbox) are indexed by container: a file is found by its item, and
    // bulk ingestion of files pays for no second index.
    "ALTER TABLE documents ADD COLUMN container TEXT;
    UPDATE documents SET container = COALESCE(
        (SELECT s.key FROM scan_state s WHERE s.source = documents.source AND s.key = documents.item),
        (SELECT s.key FROM scan_state s WHERE s.source = documents.source
            AND substr(documents.item, 1, length(s.key) + 1) = s.key || '#'
            ORDER BY length(s.key) DESC LIMIT 1),
        documents.item);
    CREATE INDEX documents_in_container ON documents (source, container) WHERE container != item;",
    // Per-source figures kept by triggers, so `sources list`, metrics and health read one row per
    // source instead of every document (a documents row puts its body before `size`). The
    // triggers see every write, the code's and an operator's `sqlite3` alike.
    "CREATE TABLE source_stats (
        source TEXT PRIMARY KEY,
        documents INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        last_changed_at INTEGER,
        skipped INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    INSERT INTO source_stats (source, documents, bytes, last_changed_at)
        SELECT source, SUM(deleted_at IS NULL),
               COALESCE(SUM(CASE WHEN deleted_at IS NULL THEN size END), 0), MAX(updated_at)
        FROM documents GROUP BY source;
    INSERT INTO source_stats (source, skipped)
        SELECT source, COUNT(*) FROM scan_state WHERE status = 'skipped' GROUP BY source
        ON CONFLICT (source) DO UPDATE SET skipped = excluded.skipped;
    CREATE TRIGGER source_stats_document_in AFTER INSERT ON documents BEGIN
        INSERT INTO source_stats (source, documents, bytes, last_changed_at)
        VALUES (NEW.source, NEW.deleted_at IS NULL,
                CASE WHEN NEW.deleted_at IS NULL THEN NEW.size ELSE 0 END, NEW.updated_at)
        ON CONFLICT (source) DO UPDATE SET
            documents = documents + excluded.documents,
            bytes = bytes + excluded.bytes,
            last_changed_at = max(COALESCE(last_changed_at, 0), excluded.last_changed_at);
    END;
    CREATE TRIGGER source_stats_document_change AFTER UPDATE ON documents BEGIN
        INSERT INTO source_stats (source) VALUES (NEW.source) ON CONFLICT (source) DO NOTHING;
        UPDATE source_stats SET
            documents = documents + (NEW.deleted_at IS NULL) - (OLD.deleted_at IS NULL),
            bytes = bytes + CASE WHEN NEW.deleted_at IS NULL THEN NEW.size ELSE 0 END
                          - CASE WHEN OLD.deleted_at IS NULL THEN OLD.size ELSE 0 END,
            last_changed_at = max(COALESCE(last_changed_at, 0), NEW.updated_at)
        WHERE source = NEW.source;
        UPDATE source_stats SET
            documents = documents - (OLD.deleted_at IS NULL),
            bytes = bytes - CASE WHEN OLD.deleted_at IS NULL THEN OLD.size ELSE 0 END
        WHERE source = OLD.source AND OLD.source != NEW.source;
    END;
    CREATE TRIGGER source_stats_document_out AFTER DELETE ON documents BEGIN
        UPDATE source_stats SET
            documents = documents - (OLD.deleted_at IS NULL),
            bytes = bytes - CASE WHEN OLD.deleted_at IS NULL THEN OLD.size ELSE 0 END
        WHERE source = OLD.source;
    END;
    CREATE TRIGGER source_stats_skip_in AFTER INSERT ON scan_state WHEN NEW.status = 'skipped'
    BEGIN
        INSERT INTO source_stats (source, skipped) VALUES (NEW.source, 1)
        ON CONFLICT (source) DO UPDATE SET skipped = skipped + 1;
    END;
    CREATE TRIGGER source_stats_skip_change AFTER UPDATE OF status, source ON scan_state
    WHEN (OLD.status = 'skipped') != (NEW.status = 'skipped') OR OLD.source != NEW.source
    BEGIN
        UPDATE source_stats SET skipped = skipped - 1
        WHERE source = OLD.source AND OLD.status = 'skipped';
        INSERT INTO source_stats (source, skipped) VALUES (NEW.source, NEW.status = 'skipped')
        ON CONFLICT (source) DO UPDATE SET skipped = skipped + excluded.skipped;
    END;
    CREATE TRIGGER source_stats_skip_out AFTER DELETE ON scan_state WHEN OLD.status = 'skipped'
    BEGIN
        UPDATE source_stats SET skipped = skipped - 1 WHERE source = OLD.source;
    END;"];

/// Target size of a chunk, in bytes of normalized text.
pub const CHUNK_TARGET: usize = 1500;

/// A store error, classified from SQLite's result code (a busy store means "retry later", a full
/// disk `resource_exhausted`). It gets the same diagnosis as a store that fails to open: damage
/// found mid-run (SQLITE_CORRUPT from a query, a page that no longer reads as one) is `io_error`
/// naming the store and the runbook topic; a store made unreadable meanwhile names the permission
/// topic. The store's path is declared, so it is redacted by policy.
fn store_err(path: &Path, e: rusqlite::Error) -> Failure {
    store_failure(path, crate::db::diagnose(path, e, ""))
}

/// A store.db that cannot be used, as a classified failure naming the store, with the remedy its
/// diagnosis calls for (damage: rebuild; permissions: fix access).
fn store_failure(path: &Path, e: crate::db::OpenError) -> Failure {
    let shown = crate::home::display_path(path);
    let (message, remedy) = if e.is_corrupt() {
        (
            format!("document store: {shown} is corrupt ({e})"),
            Some(Remedy::RebuildStore),
        )
    } else if let crate::db::OpenError::NoAccess(_) = e {
        (
            format!("document store: {shown} cannot be opened: {e}"),
            Some(Remedy::StoreAccess),
        )
    } else {
        (format!("document store: {e}"), None)
    };
    // The path is declared so that `security.path_redaction` replaces it exactly.
    let failure = Failure::new(e.class(), message).naming(path);
    match remedy {
        Some(r) => failure.with_remedy(r),
        None => failure,
    }
}

/// What a source run did to the store, per document.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct Counts {
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub deleted: u64,
}

/// What the last scan recorded for a candidate (`scan_state.status`; the schema's CHECK lists
/// the same three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStatus {
    /// Ingested; unchanged size and mtime mean it is not read again.
    Ok,
    /// Not ingested, with a reason (a link, a FIFO, ...).
    Skipped,
    /// Its ingestion failed; the next run tries again.
    Failed,
}

impl ScanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Ok => "ok",
            ScanStatus::Skipped => "skipped",
            ScanStatus::Failed => "failed",
        }
    }
}

/// What the last run saw of a candidate. The content hash is not loaded here: a rescan only
/// needs it for the few candidates whose size or mtime changed (`Store::hash_of`).
#[derive(Debug, Clone)]
pub struct ScanRow {
    pub size: u64,
    pub mtime_ns: i64,
    pub ok: bool,
    pub skipped: bool,
    /// Live documents this candidate holds.
    pub documents: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStats {
    pub documents: u64,
    pub bytes: u64,
    pub last_ingested_at: Option<i64>,
    pub skipped_items: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DocumentRow {
    pub item: String,
    pub kind: String,
    pub title: String,
    pub size: u64,
    pub chunks: u64,
    pub updated_at: i64,
}

/// An item recorded as skipped (see `StoreTx::skip`).
#[derive(Debug, Clone, Serialize)]
pub struct SkippedRow {
    pub item: String,
    pub reason: String,
    pub size: u64,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, Failure> {
        // Created private (by `open_migrated`) before SQLite opens it: SQLite gives the database
        // the umask's mode and its journal the database's. Large pages suit documents of tens of
        // kilobytes: fewer overflow pages per body.
        let conn = crate::db::open_migrated(
            path,
            true,
            "NORMAL",
            MIGRATIONS,
            crate::db::Check::None,
            Some(PAGE_SIZE),
        )
        .map_err(|e| store_failure(path, e))?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Open (creating if needed) for the daemon's start, with SQLite's quick check (`check`: a
    /// start checks all but `LARGE_TABLES`, and those in the background), so a damaged store is
    /// refused before any run writes to it. The error is the diagnosis, worded for the operator
    /// by `error::store_unusable`.
    pub fn open_checked(
        path: &Path,
        check: crate::db::Check,
    ) -> Result<Store, crate::db::OpenError> {
        let conn =
            crate::db::open_migrated(path, true, "NORMAL", MIGRATIONS, check, Some(PAGE_SIZE))?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Open an existing store read-only; `None` if nothing was ever ingested. A file that is
    /// not a database, or one the user may not read, is an error (never an empty store).
    pub fn open_existing(path: &Path) -> Result<Option<Store>, Failure> {
        let Some(conn) = crate::db::open_read_only(path).map_err(|e| store_failure(path, e))?
        else {
            return Ok(None);
        };
        Ok(Some(Store {
            conn,
            path: path.to_path_buf(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn scan_rows(&self, source: &str) -> Result<HashMap<String, ScanRow>, Failure> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key, size, mtime_ns, status, documents FROM scan_state WHERE source = ?1",
            )
            .map_err(|e| store_err(&self.path, e))?;
        let mut rows = stmt.query([source]).map_err(|e| store_err(&self.path, e))?;
        let mut out = HashMap::new();
        while let Some(r) = rows.next().map_err(|e| store_err(&self.path, e))? {
            let status = r
                .get_ref(3)
                .map_err(|e| store_err(&self.path, e))?
                .as_str()
                .unwrap_or("");
            out.insert(
                r.get::<_, String>(0)
                    .map_err(|e| store_err(&self.path, e))?,
                ScanRow {
                    size: r.get::<_, i64>(1).map_err(|e| store_err(&self.path, e))? as u64,
                    mtime_ns: r.get(2).map_err(|e| store_err(&self.path, e))?,
                    ok: status == ScanStatus::Ok.as_str(),
                    skipped: status == ScanStatus::Skipped.as_str(),
                    documents: r.get::<_, i64>(4).map_err(|e| store_err(&self.path, e))? as u64,
                },
            );
        }
        Ok(out)
    }

    /// The content hash recorded for a candidate, if it was ingested.
    pub fn hash_of(&self, source: &str, key: &str) -> Result<Option<String>, Failure> {
        self.conn
            .prepare_cached("SELECT content_hash FROM scan_state WHERE source = ?1 AND key = ?2")
            .and_then(|mut s| s.query_row(params![source, key], |r| r.get(0)).optional())
            .map(Option::flatten)
            .map_err(|e| store_err(&self.path, e))
    }

    /// The candidate that holds document `item` (itself for a file, the mbox for a message), if
    /// the item was ever stored.
    pub fn container_of(&self, source: &str, item: &str) -> Result<Option<String>, Failure> {
        self.conn
            .prepare_cached("SELECT container FROM documents WHERE source = ?1 AND item = ?2")
            .and_then(|mut s| s.query_row(params![source, item], |r| r.get(0)).optional())
            .map(Option::flatten)
            .map_err(|e| store_err(&self.path, e))
    }

    pub fn live_documents(&self, source: &str) -> Result<u64, Failure> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM documents WHERE source = ?1 AND deleted_at IS NULL",
                [source],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| store_err(&self.path, e))
    }

    /// Per-source figures, from the `source_stats` rows the triggers keep (one row per source,
    /// whatever the number of documents). A store not yet migrated to them is counted.
    pub fn stats(&self) -> Result<HashMap<String, SourceStats>, Failure> {
        let version =
            crate::db::user_version(&self.conn).map_err(|e| store_failure(&self.path, e))?;
        let sql = if version >= 3 {
            "SELECT source, documents, bytes, last_changed_at, skipped FROM source_stats"
        } else {
            "SELECT source, SUM(deleted_at IS NULL),
                    COALESCE(SUM(CASE WHEN deleted_at IS NULL THEN size END), 0),
                    MAX(updated_at),
                    (SELECT COUNT(*) FROM scan_state s
                     WHERE s.source = documents.source AND s.status = 'skipped')
             FROM documents GROUP BY source"
        };
        let mut stmt = self
            .conn
            .prepare(sql)
            .map_err(|e| store_err(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    SourceStats {
                        documents: r.get::<_, i64>(1)? as u64,
                        bytes: r.get::<_, i64>(2)? as u64,
                        last_ingested_at: r.get(3)?,
                        skipped_items: r.get::<_, i64>(4)? as u64,
                    },
                ))
            })
            .and_then(|rows| rows.collect::<Result<HashMap<_, _>, _>>())
            .map_err(|e| store_err(&self.path, e))?;
        Ok(rows)
    }

    /// Items of a source recorded as skipped, with why, in key order (at most `limit`).
    pub fn skipped_items(&self, source: &str, limit: usize) -> Result<Vec<SkippedRow>, Failure> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT key, COALESCE(reason, ''), size FROM scan_state
                 WHERE source = ?1 AND status = 'skipped' ORDER BY key LIMIT ?2",
            )
            .map_err(|e| store_err(&self.path, e))?;
        stmt.query_map(params![source, limit as i64], |r| {
            Ok(SkippedRow {
                item: r.get(0)?,
                reason: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| store_err(&self.path, e))
    }

    /// The most recently updated live documents of a source.
    pub fn recent_documents(
        &self,
        source: &str,
        limit: usize,
    ) -> Result<Vec<DocumentRow>, Failure> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT d.item, d.kind, d.title, d.size, json_array_length(d.chunks), d.updated_at
                 FROM documents d WHERE d.source = ?1 AND d.deleted_at IS NULL
                 ORDER BY d.updated_at DESC, d.item LIMIT ?2",
            )
            .map_err(|e| store_err(&self.path, e))?;
        stmt.query_map(params![source, limit as i64], |r| {
            Ok(DocumentRow {
                item: r.get(0)?,
                kind: r.get(1)?,
                title: r.get(2)?,
                size: r.get::<_, i64>(3)? as u64,
                chunks: r.get::<_, i64>(4)? as u64,
                updated_at: r.get(5)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| store_err(&self.path, e))
    }

    pub fn transaction(&mut self) -> Result<StoreTx<'_>, Failure> {
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| store_err(path, e))?;
        Ok(StoreTx {
            tx,
            path,
            // Unique per transaction: `put_document` tells new from changed by it.
            now: crate::clock::unique_ms(),
        })
    }
}

/// One batch of store writes.
pub struct StoreTx<'a> {
    tx: rusqlite::Transaction<'a>,
    path: &'a Path,
    now: i64,
}

impl StoreTx<'_> {
    /// Upsert a scan row, writing nothing when it is unchanged. `documents: None` keeps the count.
    #[allow(clippy::too_many_arguments)]
    fn scan_row(
        &self,
        source: &str,
        key: &str,
        size: u64,
        mtime_ns: i64,
        hash: Option<&str>,
        status: ScanStatus,
        reason: Option<&str>,
        documents: Option<u64>,
    ) -> Result<(), Failure> {
        self.tx
            .prepare_cached(
                "INSERT INTO scan_state (source, key, size, mtime_ns, content_hash, status, reason,
                    documents)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, COALESCE(?8, 0))
                 ON CONFLICT (source, key) DO UPDATE SET size = excluded.size,
                    mtime_ns = excluded.mtime_ns, content_hash = excluded.content_hash,
                    status = excluded.status, reason = excluded.reason,
                    documents = COALESCE(?8, scan_state.documents)
                 WHERE (scan_state.size, scan_state.mtime_ns, scan_state.status)
                        IS NOT (excluded.size, excluded.mtime_ns, excluded.status)
                    OR scan_state.content_hash IS NOT excluded.content_hash
                    OR scan_state.reason IS NOT excluded.reason
                    OR scan_state.documents IS NOT COALESCE(?8, scan_state.documents)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    source,
                    key,
                    size as i64,
                    mtime_ns,
                    hash,
                    status.as_str(),
                    reason,
                    documents.map(|d| d as i64)
                ])
            })
            .map(|_| ())
            .map_err(|e| store_err(self.path, e))
    }

    /// Record a successfully parsed candidate and its documents.
    pub fn put(
        &mut self,
        source: &str,
        candidate: &Candidate,
        hash: &str,
        docs: &[Prepared],
        counts: &mut Counts,
    ) -> Result<(), Failure> {
        for doc in docs {
            self.put_document(source, &candidate.key, doc, counts)?;
        }
        // Documents this candidate no longer contains (messages removed from an mbox). A file is
        // its own single document, so the check is only needed for containers.
        let single_file = docs.len() == 1 && docs[0].item == candidate.key;
        if !single_file {
            let items: Vec<&str> = docs.iter().map(|d| d.item.as_str()).collect();
            let live: Vec<(i64, String)> = {
                let mut stmt = self
                    .tx
                    .prepare_cached(
                        "SELECT id, item FROM documents
                         WHERE source = ?1 AND container = ?2 AND container != item
                           AND deleted_at IS NULL",
                    )
                    .map_err(|e| store_err(self.path, e))?;
                stmt.query_map(params![source, candidate.key], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| store_err(self.path, e))?
            };
            for (id, item) in live {
                if !items.contains(&item.as_str()) {
                    self.tombstone(id)?;
                    counts.deleted += 1;
                }
            }
        }
        self.scan_row(
            source,
            &candidate.key,
            candidate.size,
            candidate.mtime_ns,
            Some(hash),
            ScanStatus::Ok,
            None,
            Some(docs.len() as u64),
        )
    }

    /// One statement per document: insert, or update only when the content changed (or the
    /// document was a tombstone). `RETURNING` tells which happened.
    fn put_document(
        &mut self,
        source: &str,
        container: &str,
        doc: &Prepared,
        counts: &mut Counts,
    ) -> Result<(), Failure> {
        let ingested_at: Option<i64> = self
            .tx
            .prepare_cached(
                "INSERT INTO documents (source, item, kind, title, body, metadata,
                    chunks, links, content_hash, size, ingested_at, updated_at, container)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12)
                 ON CONFLICT (source, item) DO UPDATE SET
                    container = excluded.container, kind = excluded.kind, title = excluded.title, body = excluded.body,
                    metadata = excluded.metadata, chunks = excluded.chunks,
                    links = excluded.links, content_hash = excluded.content_hash,
                    size = excluded.size, updated_at = excluded.updated_at, deleted_at = NULL
                 WHERE documents.content_hash != excluded.content_hash
                    OR documents.deleted_at IS NOT NULL
                    OR documents.container IS NOT excluded.container
                 RETURNING ingested_at",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![
                        source,
                        doc.item,
                        doc.kind,
                        doc.title,
                        doc.body,
                        doc.metadata,
                        doc.chunks,
                        doc.links,
                        doc.content_hash,
                        doc.size as i64,
                        self.now,
                        container
                    ],
                    |r| r.get(0),
                )
                .optional()
            })
            .map_err(|e| store_err(self.path, e))?;
        match ingested_at {
            None => counts.unchanged += 1,
            Some(at) if at == self.now => counts.new += 1,
            Some(_) => counts.changed += 1,
        }
        Ok(())
    }

    fn tombstone(&self, id: i64) -> Result<(), Failure> {
        self.tx
            .prepare_cached("UPDATE documents SET deleted_at = ?2, updated_at = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, self.now]))
            .map(|_| ())
            .map_err(|e| store_err(self.path, e))
    }

    /// Same content under a new size or mtime (a `touch`, a copy): remember the new stat only.
    pub fn touch(
        &mut self,
        source: &str,
        candidate: &Candidate,
        hash: &str,
    ) -> Result<(), Failure> {
        self.scan_row(
            source,
            &candidate.key,
            candidate.size,
            candidate.mtime_ns,
            Some(hash),
            ScanStatus::Ok,
            None,
            None,
        )
    }

    pub fn skip(&mut self, source: &str, s: &Skipped) -> Result<(), Failure> {
        self.scan_row(
            source,
            &s.key,
            s.size,
            s.mtime_ns,
            None,
            ScanStatus::Skipped,
            Some(&s.reason),
            Some(0),
        )
    }

    /// A candidate that failed: its documents stay as they were, and the next run tries again.
    pub fn fail(
        &mut self,
        source: &str,
        candidate: &Candidate,
        reason: &str,
    ) -> Result<(), Failure> {
        self.scan_row(
            source,
            &candidate.key,
            candidate.size,
            candidate.mtime_ns,
            None,
            ScanStatus::Failed,
            Some(reason),
            None,
        )
    }

    /// The candidate disappeared from the source: tombstone its documents (exactly those it
    /// holds, whatever their names), forget its stat.
    pub fn delete(&mut self, source: &str, key: &str, counts: &mut Counts) -> Result<(), Failure> {
        // The candidate's own document (a file), then those inside it (an mbox's messages): two
        // statements, so each uses its index.
        let mut n = 0;
        for sql in [
            "UPDATE documents SET deleted_at = ?3, updated_at = ?3
             WHERE source = ?1 AND item = ?2 AND container = ?2 AND deleted_at IS NULL",
            "UPDATE documents SET deleted_at = ?3, updated_at = ?3
             WHERE source = ?1 AND container = ?2 AND container != item AND deleted_at IS NULL",
        ] {
            n += self
                .tx
                .prepare_cached(sql)
                .and_then(|mut s| s.execute(params![source, key, self.now]))
                .map_err(|e| store_err(self.path, e))?;
        }
        counts.deleted += n as u64;
        self.tx
            .prepare_cached("DELETE FROM scan_state WHERE source = ?1 AND key = ?2")
            .and_then(|mut s| s.execute(params![source, key]))
            .map(|_| ())
            .map_err(|e| store_err(self.path, e))
    }

    pub fn commit(self) -> Result<(), Failure> {
        let path = self.path;
        self.tx.commit().map_err(|e| store_err(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::ErrorClass;
    use serde_json::json;

    fn doc(item: &str, body: &str) -> Prepared {
        Prepared::from(ParsedDoc {
            item: item.into(),
            kind: "text",
            title: item.into(),
            body: body.into(),
            metadata: json!({}),
            links: vec![("https://x".into(), "url")],
            content_hash: crate::sources::content_hash(body.as_bytes()),
            size: body.len() as u64,
        })
    }

    fn cand(key: &str) -> Candidate {
        Candidate {
            key: key.into(),
            path: key.into(),
            size: 1,
            mtime_ns: 1,
        }
    }

    /// The figures in `source_stats`, as a recount of documents and scan state finds them.
    fn recount(store: &Store) -> HashMap<String, (i64, i64, i64)> {
        let mut stmt = store
            .conn
            .prepare(
                "SELECT source, SUM(d), SUM(b), SUM(k) FROM (
                   SELECT source, deleted_at IS NULL AS d,
                          CASE WHEN deleted_at IS NULL THEN size ELSE 0 END AS b, 0 AS k
                   FROM documents
                   UNION ALL
                   SELECT source, 0, 0, status = 'skipped' FROM scan_state)
                 GROUP BY source",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn kept(store: &Store) -> HashMap<String, (i64, i64, i64)> {
        store
            .stats()
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    (v.documents as i64, v.bytes as i64, v.skipped_items as i64),
                )
            })
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Whatever the order of puts, changes, deletions, skips and hand-made deletes, the
        /// per-source figures the triggers keep equal a recount.
        #[test]
        fn source_stats_always_equal_a_recount(
            ops in proptest::collection::vec((0u8..6, 0usize..2, 0usize..6, "[a-zé漢🙂]{0,12}"), 1..40)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut store = Store::open(&dir.path().join("store.db")).unwrap();
            for (op, source, key, body) in ops {
                let source = ["notes", "vault"][source];
                let key = format!("k{key}.md");
                let mut counts = Counts::default();
                let mut tx = store.transaction().unwrap();
                match op {
                    0 | 1 => tx
                        .put(source, &cand(&key), "h", &[doc(&key, &body)], &mut counts)
                        .unwrap(),
                    2 => tx.delete(source, &key, &mut counts).unwrap(),
                    3 => tx
                        .skip(
                            source,
                            &Skipped {
                                key: key.clone(),
                                reason: "too_large".into(),
                                size: 1,
                                mtime_ns: 1,
                            },
                        )
                        .unwrap(),
                    4 => {
                        tx.tx
                            .execute(
                                "DELETE FROM documents WHERE source = ?1 AND item = ?2",
                                params![source, key],
                            )
                            .unwrap();
                    }
                    _ => {
                        tx.tx
                            .execute(
                                "DELETE FROM scan_state WHERE source = ?1 AND key = ?2",
                                params![source, key],
                            )
                            .unwrap();
                    }
                }
                tx.commit().unwrap();
            }
            let want: HashMap<_, _> = recount(&store)
                .into_iter()
                .filter(|(_, v)| *v != (0, 0, 0))
                .collect();
            let got: HashMap<_, _> = kept(&store)
                .into_iter()
                .filter(|(_, v)| *v != (0, 0, 0))
                .collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    /// A store written before the figures were kept gets them from its existing rows.
    #[test]
    fn the_migration_counts_existing_documents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let old = crate::db::open_migrated(
            &path,
            true,
            "NORMAL",
            &MIGRATIONS[..2],
            crate::db::Check::None,
            None,
        )
        .unwrap();
        old.execute_batch(
            "INSERT INTO documents (source, item, kind, title, body, metadata, chunks, links,
                content_hash, size, ingested_at, updated_at, deleted_at, container)
             VALUES ('notes', 'a', 'text', '', '', '{}', '[]', '[]', 'h', 10, 1, 5, NULL, 'a'),
                    ('notes', 'b', 'text', '', '', '{}', '[]', '[]', 'h', 7, 1, 9, 9, 'b'),
                    ('mail', 'm', 'text', '', '', '{}', '[]', '[]', 'h', 3, 1, 2, NULL, 'm');
             INSERT INTO scan_state (source, key, size, mtime_ns, status)
             VALUES ('notes', 'big', 1, 1, 'skipped'), ('notes', 'a', 1, 1, 'ok');",
        )
        .unwrap();
        drop(old);
        let store = Store::open(&path).unwrap();
        assert_eq!(kept(&store), recount(&store));
        assert_eq!(kept(&store)["notes"], (1, 10, 1));
    }

    #[test]
    fn upsert_is_idempotent_and_deletes_tombstone() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("store.db")).unwrap();
        let mut counts = Counts::default();
        let mut tx = store.transaction().unwrap();
        tx.put("s", &cand("a"), "h", &[doc("a", "one")], &mut counts)
            .unwrap();
        tx.put("s", &cand("b"), "h", &[doc("b", "two")], &mut counts)
            .unwrap();
        tx.commit().unwrap();
        assert_eq!(
            counts,
            Counts {
                new: 2,
                ..Default::default()
            }
        );

        let mut counts = Counts::default();
        let mut tx = store.transaction().unwrap();
        tx.put("s", &cand("a"), "h", &[doc("a", "one")], &mut counts)
            .unwrap();
        tx.put("s", &cand("b"), "h", &[doc("b", "TWO")], &mut counts)
            .unwrap();
        tx.delete("s", "a", &mut counts).unwrap();
        tx.commit().unwrap();
        assert_eq!(
            counts,
            Counts {
                changed: 1,
                unchanged: 1,
                deleted: 1,
                new: 0
            }
        );
        assert_eq!(store.live_documents("s").unwrap(), 1);
        let total: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM documents", [], |r| r.get(0))
            .unwrap();
        assert_eq!(total, 2, "the deleted document is a tombstone, not gone");
        let (links, chunks): (String, String) = store
            .conn
            .query_row(
                "SELECT links, chunks FROM documents WHERE item = 'b'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(links, r#"[{"kind":"url","target":"https://x"}]"#);
        assert_eq!(chunks, "[[0,3]]");
    }

    #[test]
    fn mbox_candidate_drops_vanished_messages() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("store.db")).unwrap();
        let mut counts = Counts::default();
        let mut tx = store.transaction().unwrap();
        tx.put(
            "m",
            &cand("box"),
            "h1",
            &[doc("box#1", "x"), doc("box#2", "y")],
            &mut counts,
        )
        .unwrap();
        tx.commit().unwrap();
        let mut counts = Counts::default();
        let mut tx = store.transaction().unwrap();
        tx.put("m", &cand("box"), "h2", &[doc("box#2", "y")], &mut counts)
            .unwrap();
        tx.commit().unwrap();
        assert_eq!(
            counts,
            Counts {
                unchanged: 1,
                deleted: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn deleting_a_file_never_touches_one_whose_name_extends_it_with_a_hash() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("store.db")).unwrap();
        let mut counts = Counts::default();
        let mut tx = store.transaction().unwrap();
        for key in ["n.md", "n.md#2.md", "x#1.md", "x#2.md"] {
            tx.put("s", &cand(key), "h", &[doc(key, key)], &mut counts)
                .unwrap();
        }
        tx.commit().unwrap();
        let mut counts = Counts::default();
        let mut tx = store.transaction().unwrap();
        tx.delete("s", "n.md", &mut counts).unwrap();
        tx.delete("s", "x#1.md", &mut counts).unwrap();
        tx.commit().unwrap();
        assert_eq!(counts.deleted, 2);
        assert_eq!(store.live_documents("s").unwrap(), 2);
        assert_eq!(
            store.container_of("s", "n.md#2.md").unwrap().as_deref(),
            Some("n.md#2.md")
        );
    }

    #[test]
    fn the_container_migration_assigns_existing_documents_to_their_candidates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            // A store written before the container column existed.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "PRAGMA user_version = 1;
                 INSERT INTO scan_state (source, key, size, mtime_ns, status)
                    VALUES ('f', 'n.md', 1, 1, 'ok'), ('f', 'n.md#2.md', 1, 1, 'ok'),
                           ('m', 'box', 1, 1, 'ok'), ('m', 'box#old', 1, 1, 'ok');",
            )
            .unwrap();
            for (source, item) in [
                ("f", "n.md"),
                ("f", "n.md#2.md"),
                ("m", "box#<a@x>"),
                ("m", "box#old#<b@x>"),
            ] {
                conn.execute(
                    "INSERT INTO documents (source, item, kind, title, body, metadata, chunks,
                        links, content_hash, size, ingested_at, updated_at)
                     VALUES (?1, ?2, 'text', '', '', '{}', '[]', '[]', 'h', 0, 1, 1)",
                    params![source, item],
                )
                .unwrap();
            }
        }
        let store = Store::open(&path).unwrap();
        let of = |s: &str, i: &str| store.container_of(s, i).unwrap().unwrap();
        assert_eq!(of("f", "n.md"), "n.md");
        assert_eq!(of("f", "n.md#2.md"), "n.md#2.md");
        assert_eq!(of("m", "box#<a@x>"), "box");
        assert_eq!(of("m", "box#old#<b@x>"), "box#old");
    }

    #[test]
    fn skipped_items_are_listed_with_their_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("store.db")).unwrap();
        let mut tx = store.transaction().unwrap();
        for (key, reason) in [
            ("b.png", "unsupported file type .png"),
            ("a", "named pipe (FIFO)"),
        ] {
            let s = Skipped {
                key: key.into(),
                reason: reason.into(),
                size: 0,
                mtime_ns: 1,
            };
            tx.skip("s", &s).unwrap();
        }
        tx.commit().unwrap();
        let rows = store.skipped_items("s", 10).unwrap();
        let got: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.item.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "named pipe (FIFO)"),
                ("b.png", "unsupported file type .png")
            ]
        );
    }

    /// Damage found mid-run (a page of the store that no longer reads as one: SQLITE_CORRUPT
    /// from a query, long after the open) gets the diagnosis of a store found corrupt at open:
    /// `io_error`, naming the store and the runbook topic, never a bare "malformed".
    #[test]
    fn a_page_damaged_after_open_is_diagnosed_as_a_corrupt_store() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let mut store = Store::open(&path).unwrap();
        let mut counts = Counts::default();
        let mut tx = store.transaction().unwrap();
        for i in 0..400 {
            let key = format!("note-{i:03}.md");
            let body = format!("{key} ").repeat(200);
            let d = doc(&key, &body);
            tx.put("s", &cand(&key), &d.content_hash.clone(), &[d], &mut counts)
                .unwrap();
        }
        tx.commit().unwrap();
        let (root, pages, page_size): (i64, i64, i64) = store
            .conn
            .query_row(
                "SELECT (SELECT rootpage FROM sqlite_master WHERE name = 'scan_state'),
                    (SELECT page_count FROM pragma_page_count),
                    (SELECT page_size FROM pragma_page_size)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert!(
            pages > 10 && root > 1,
            "{pages} pages, scan_state at {root}"
        );
        drop(store);
        // Overwrite the scan state's page (past the header and the schema on page 1).
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(SeekFrom::Start(((root - 1) * page_size) as u64))
            .unwrap();
        file.write_all(&vec![0x5a; page_size as usize]).unwrap();
        drop(file);
        // The open reads only the header and the schema: the damage shows up at the first query.
        let store = Store::open(&path).unwrap();
        let f = store.scan_rows("s").unwrap_err();
        assert_eq!(f.class, ErrorClass::IoError, "{}", f.message);
        assert_eq!(f.remedy, Some(Remedy::RebuildStore), "{}", f.message);
        let shown = crate::home::display_path(&path);
        assert!(f.message.contains(&shown), "{}", f.message);
        // The store's path is declared, so it is redacted by policy.
        let redacted = f.redacted().message;
        assert!(!redacted.contains(&shown), "{redacted}");
    }

    #[test]
    fn container_lookups_use_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.db")).unwrap();
        for sql in [
            "SELECT id FROM documents WHERE source = 's' AND item = 'k' AND container = 'k'",
            "SELECT id FROM documents WHERE source = 's' AND container = 'k' AND container != item",
        ] {
            let plan: String = store
                .conn
                .query_row(&format!("EXPLAIN QUERY PLAN {sql}"), [], |r| r.get(3))
                .unwrap();
            assert!(plan.contains("USING INDEX"), "{sql}: {plan}");
        }
    }
}
