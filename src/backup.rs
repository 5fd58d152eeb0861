//! Backups and restores of a home: online snapshots of queue.db and store.db, their manifest,
//! retention, verification, and the restore that puts a backup in place.
//!
//! Owns: `backups/<UTC timestamp>/` (queue.db, store.db, orchestrator.yaml, manifest.json) and
//! their listing, the daemon's scheduled backups (`backup.schedule`), the staged files
//! `<name>.restore-tmp`, the restore journal `.restore_journal` and the folders
//! `backups/replaced-<UTC timestamp>/` where a restore keeps what it replaced.
//! Invariants:
//! - a snapshot is `VACUUM INTO` from one read transaction, so it is consistent while the daemon
//!   writes (WAL readers never block it); counts and schema versions are read from the copies;
//! - a backup is built under `backups/.tmp-*` and renamed into place only once every file and the
//!   manifest are written and synced: a directory named like a backup is complete
//!   (`tests/backup.rs::kill_minus_nine_during_backup_leaves_no_complete_looking_directory`);
//!   folders 0700, files 0600;
//! - restore holds the home's instance lock (no daemon can start meanwhile), verifies first,
//!   stages every file beside its target, writes the journal, then moves the old files (with
//!   their -wal/-shm/-journal) aside and renames the staged ones in: an interrupted restore is
//!   rolled forward by the next restore or start (`finish_interrupted`), never half left
//!   (`tests/backup.rs::kill_minus_nine_during_restore_is_finished_by_the_next_start`);
//! - nothing a restore replaces is deleted;
//! - `backup list` (`list_all`) only reads: names, sizes and manifests; whatever it finds in the
//!   folder is listed with what is wrong with it, never an error;
//! - the daemon's `backup.schedule` (`Scheduler`) runs `take`, the command's own code, on a thread
//!   of its own, one at a time; a failure is logged and waits for the schedule's next time.
//!
//! This module does not import the daemon (the daemon's main loop calls `Scheduler`): a restore's
//! caller passes how the home's instance lock is taken.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use serde_json::json;

use crate::config::{Config, Loaded};
use crate::home::{self, DB_COMPANIONS, Home, NO_FOLLOW};
use crate::schedule::Schedule;
use crate::security::audit;

pub const MANIFEST: &str = "manifest.json";
pub const CONFIG_NAME: &str = "orchestrator.yaml";
const JOURNAL: &str = ".restore_journal";
const STAGED: &str = "restore-tmp";
const TMP_PREFIX: &str = ".tmp-";
const REPLACED_PREFIX: &str = "replaced-";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    pub blake3: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub futurnal_version: String,
    pub created_at: String,
    /// `PRAGMA user_version` of each copied database.
    pub queue_schema: Option<i64>,
    pub store_schema: Option<i64>,
    pub files: Vec<FileEntry>,
    pub sources: Vec<String>,
    pub documents: Option<i64>,
    pub jobs: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub manifest: Manifest,
    pub bytes: u64,
    pub duration_ms: u64,
    /// Older backups removed by retention.
    pub removed: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// An I/O failure on a named file.
    #[error("{}: {source}", home::display_path(path))]
    File { path: PathBuf, source: io::Error },
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("the home is locked by a running orchestrator")]
    Running,
}

/// Name the file an I/O error happened on.
fn on(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::File {
        path: path.to_path_buf(),
        source,
    }
}

fn timestamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

fn private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(NO_FOLLOW)
        .open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// blake3 and size of a file, streamed.
pub fn checksum(path: &Path) -> io::Result<FileEntry> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(NO_FOLLOW)
        .open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok(FileEntry {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size,
        blake3: hasher.finalize().to_hex().to_string(),
    })
}

fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    Ok(conn)
}

/// Copy one live database into `dest` (a new 0600 file) from one read transaction.
fn snapshot(src: &Path, dest: &Path) -> Result<(), BackupError> {
    // VACUUM INTO wants an absent or empty file; creating it first makes it private.
    drop(private_file(dest).map_err(on(dest))?);
    let conn = open_read_only(src)?;
    conn.execute("VACUUM INTO ?1", [dest.to_string_lossy()])?;
    drop(conn);
    File::open(dest)?.sync_all()?;
    Ok(())
}

fn count(conn: &Connection, table: &str) -> Option<i64> {
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .ok()
}

fn user_version(conn: &Connection) -> Option<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).ok()
}

/// Take a backup of `home` into a new timestamped folder under `dir`.
pub fn backup(
    home: &Home,
    dir: &Path,
    config_file: Option<&Path>,
    sources: Vec<String>,
    keep: usize,
) -> Result<BackupReport, BackupError> {
    let started = std::time::Instant::now();
    home::create_private_dir(dir).map_err(on(dir))?;
    remove_stale_temporaries(dir);
    let stamp = timestamp();
    let name_for = |n: u32| {
        if n == 1 {
            stamp.clone()
        } else {
            format!("{stamp}-{n}")
        }
    };
    let mut n = 1;
    while dir.join(name_for(n)).exists() {
        n += 1;
    }
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{}-{}",
        name_for(n),
        std::process::id()
    ));
    home::create_private_dir(&tmp).map_err(on(&tmp))?;
    let mut manifest = Manifest {
        futurnal_version: env!("CARGO_PKG_VERSION").into(),
        created_at: jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        queue_schema: None,
        store_schema: None,
        files: Vec::new(),
        sources,
        documents: None,
        jobs: None,
    };
    for db in home::DATABASES {
        let src = home.root().join(db);
        if !src.exists() {
            continue;
        }
        let dest = tmp.join(db);
        snapshot(&src, &dest)?;
        let conn = open_read_only(&dest)?;
        if *db == "queue.db" {
            manifest.queue_schema = user_version(&conn);
            manifest.jobs = count(&conn, "jobs");
        } else {
            manifest.store_schema = user_version(&conn);
            manifest.documents = count(&conn, "documents");
        }
        manifest.files.push(checksum(&dest)?);
    }
    if let Some(cfg) = config_file.filter(|p| p.is_file()) {
        let dest = tmp.join(CONFIG_NAME);
        let mut out = private_file(&dest)?;
        io::copy(&mut File::open(cfg).map_err(on(cfg))?, &mut out).map_err(on(&dest))?;
        out.sync_all()?;
        manifest.files.push(checksum(&dest)?);
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
    let mut m = private_file(&tmp.join(MANIFEST))?;
    io::Write::write_all(&mut m, &json)?;
    m.sync_all()?;
    sync_dir(&tmp)?;
    // Another backup (the daemon's schedule, an operator's command) may have taken the name
    // meanwhile: renaming onto its complete folder fails, and the next free name is used.
    let path = loop {
        let path = dir.join(name_for(n));
        if fs::symlink_metadata(&path).is_err() {
            match fs::rename(&tmp, &path) {
                Ok(()) => break path,
                Err(_) if fs::symlink_metadata(&path).is_ok() => {}
                Err(e) => return Err(on(&path)(e)),
            }
        }
        n += 1;
    };
    sync_dir(dir)?;
    let removed = prune(dir, keep)?;
    let bytes = manifest.files.iter().map(|f| f.size).sum();
    Ok(BackupReport {
        path,
        manifest,
        bytes,
        duration_ms: started.elapsed().as_millis() as u64,
        removed,
    })
}

/// What a backup is asked to do: built from the configuration the same way by the command and by
/// the daemon's schedule, so both write, prune and audit alike.
#[derive(Debug, Clone)]
pub struct Request {
    pub dir: PathBuf,
    pub config_file: Option<PathBuf>,
    pub sources: Vec<String>,
    pub keep: usize,
    pub audit: bool,
    /// Taken by the daemon's `backup.schedule`, not asked for by an operator.
    pub scheduled: bool,
}

impl Request {
    pub fn new(home: &Home, config: &Config, config_file: &Path, scheduled: bool) -> Request {
        Request {
            dir: home.backups_dir(),
            config_file: Some(config_file.to_path_buf()),
            sources: config.sources.iter().map(|s| s.name.clone()).collect(),
            keep: config.backup.keep as usize,
            audit: config.security.audit_logging,
            scheduled,
        }
    }
}

/// Take a backup as `req` says, retention included, and record it in the audit log.
pub fn take(home: &Home, req: &Request) -> Result<BackupReport, BackupError> {
    let report = backup(
        home,
        &req.dir,
        req.config_file.as_deref(),
        req.sources.clone(),
        req.keep,
    )?;
    audit(
        home,
        req.audit,
        "backup",
        json!({
            "path": home::display_path(&report.path),
            "bytes": report.bytes,
            "removed": report.removed.len(),
            "scheduled": req.scheduled,
        }),
    );
    Ok(report)
}

/// Is `name` a complete backup's folder name (a timestamp, maybe with `-N`)?
fn is_backup_name(name: &str) -> bool {
    let stamp = name.split('-').next().unwrap_or("");
    stamp.len() == 16
        && stamp.ends_with('Z')
        && stamp.as_bytes().get(8) == Some(&b'T')
        && stamp
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 8 || i == 15 || b.is_ascii_digit())
}

/// The complete backups in `dir`, oldest first.
pub fn list(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_backup_name(&name)
            && entry.file_type()?.is_dir()
            && entry.path().join(MANIFEST).is_file()
        {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// The time a backup's (or a replaced folder's) name says, as epoch milliseconds, and its `-N`.
fn name_time(stamp_and_n: &str) -> Option<(i64, u32)> {
    let (stamp, n) = match stamp_and_n.split_once('-') {
        Some((stamp, n)) => (stamp, n.parse().ok()?),
        None => (stamp_and_n, 1),
    };
    let at = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", stamp)
        .and_then(|dt| dt.to_zoned_datetime(jiff::tz::TimeZone::UTC))
        .ok()?;
    Some((at.timestamp().as_millisecond(), n))
}

/// When the newest complete backup in `dir` was taken, by its name.
fn newest_backup_ms(dir: &Path) -> Option<i64> {
    list(dir)
        .ok()?
        .iter()
        .filter_map(|p| name_time(&p.file_name()?.to_string_lossy()))
        .map(|(ms, _)| ms)
        .max()
}

/// What an entry of a backups folder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListedKind {
    /// A backup (named by its UTC time), usable or not: see `problem`.
    Backup,
    /// `replaced-<time>`: what a restore (or `start --rebuild-store`) moved out of the way, kept
    /// for the operator to delete.
    Replaced,
    /// `.tmp-*`: a backup being written, or one a kill interrupted (the next backup removes it).
    Incomplete,
    /// Anything else: not written by futurnal.
    NotABackup,
}

/// One entry of a backups folder as `backup list` shows it (the table and the JSON come from it).
#[derive(Debug, Serialize)]
pub struct Listed {
    /// The folder's (or file's) name.
    pub name: String,
    pub path: PathBuf,
    pub kind: ListedKind,
    /// When it was taken (a backup's manifest), or the time its name says.
    pub created_at: Option<String>,
    /// The sizes of the files in it, added up.
    pub bytes: u64,
    /// Its names, sorted.
    pub files: Vec<String>,
    /// Whether its manifest.json could be read and parsed (backups only).
    pub manifest_readable: bool,
    pub queue_schema: Option<i64>,
    pub store_schema: Option<i64>,
    pub documents: Option<i64>,
    pub jobs: Option<i64>,
    /// Why it is not a usable backup; `None` for a backup whose files are all there with the
    /// sizes its manifest says (only `backup verify` reads their contents).
    pub problem: Option<String>,
}

/// Every entry of `dir` (the backups folder, or a `--to` folder): backups oldest first, then the
/// folders restores kept, then incomplete ones, then anything else. Reads names, sizes and
/// manifests only; an entry that cannot be read is listed with its problem, never an error.
pub fn list_all(dir: &Path) -> io::Result<Vec<Listed>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        out.push(describe_entry(&entry.path()));
    }
    // By time for what futurnal named by time (a `-N` after the second), else by name.
    let key = |l: &Listed| {
        let stamp = l.name.strip_prefix(REPLACED_PREFIX).unwrap_or(&l.name);
        let timed = matches!(l.kind, ListedKind::Backup | ListedKind::Replaced);
        (
            l.kind,
            timed.then(|| name_time(stamp)).flatten(),
            l.name.clone(),
        )
    };
    out.sort_by_key(key);
    Ok(out)
}

fn describe_entry(path: &Path) -> Listed {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kind = if is_backup_name(&name) {
        ListedKind::Backup
    } else if name.starts_with(REPLACED_PREFIX) {
        ListedKind::Replaced
    } else if name.starts_with(TMP_PREFIX) {
        ListedKind::Incomplete
    } else {
        ListedKind::NotABackup
    };
    let stamp = name.strip_prefix(REPLACED_PREFIX).unwrap_or(&name);
    let mut listed = Listed {
        path: path.to_path_buf(),
        kind,
        created_at: name_time(stamp).map(|(ms, _)| crate::display::timestamp(ms)),
        bytes: 0,
        files: Vec::new(),
        manifest_readable: false,
        queue_schema: None,
        store_schema: None,
        documents: None,
        jobs: None,
        problem: None,
        name,
    };
    // Never follow a link: a backups folder is the home's, and a link there is not a backup.
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(m) => {
            listed.kind = ListedKind::NotABackup;
            listed.bytes = if m.is_file() { m.len() } else { 0 };
            listed.problem = Some(if m.is_symlink() {
                "a symbolic link, not a backup folder (not followed)".into()
            } else {
                "a file, not a backup folder".into()
            });
            return listed;
        }
        Err(e) => {
            listed.problem = Some(format!("cannot be read: {e}"));
            return listed;
        }
    }
    let sizes = match fs::read_dir(path) {
        Ok(entries) => entries
            .flatten()
            .map(|e| {
                let size = fs::symlink_metadata(e.path())
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| m.len());
                (e.file_name().to_string_lossy().into_owned(), size)
            })
            .collect::<Vec<_>>(),
        Err(e) => {
            listed.problem = Some(format!("cannot be read: {e}"));
            return listed;
        }
    };
    listed.bytes = sizes.iter().filter_map(|(_, s)| *s).sum();
    listed.files = sizes.iter().map(|(n, _)| n.clone()).collect();
    listed.files.sort();
    match kind {
        ListedKind::Backup => check_listed_backup(path, &sizes, &mut listed),
        ListedKind::Replaced => {}
        ListedKind::Incomplete => {
            listed.problem = Some(
                "not a backup: one being written, or one a kill interrupted (the next backup removes it)"
                    .into(),
            )
        }
        ListedKind::NotABackup => {
            listed.problem = Some("not a backup: futurnal did not write this folder".into())
        }
    }
    listed
}

/// Read a backup's manifest and check (by size only) that the files it names are there.
fn check_listed_backup(path: &Path, sizes: &[(String, Option<u64>)], listed: &mut Listed) {
    let manifest = fs::read(path.join(MANIFEST))
        .map_err(|e| format!("no readable {MANIFEST} ({e})"))
        .and_then(|text| {
            serde_json::from_slice::<Manifest>(&text)
                .map_err(|e| format!("{MANIFEST} is not valid ({e})"))
        });
    let m = match manifest {
        Ok(m) => m,
        Err(problem) => {
            listed.problem = Some(format!("not a complete backup: {problem}"));
            return;
        }
    };
    listed.manifest_readable = true;
    listed.created_at = Some(m.created_at.clone());
    listed.queue_schema = m.queue_schema;
    listed.store_schema = m.store_schema;
    listed.documents = m.documents;
    listed.jobs = m.jobs;
    let mut problems = Vec::new();
    for f in &m.files {
        match sizes.iter().find(|(n, _)| *n == f.name) {
            None => problems.push(format!("{} is missing", f.name)),
            Some((_, Some(size))) if *size == f.size => {}
            Some((_, Some(size))) => problems.push(format!(
                "{}: {size} bytes, the manifest says {}",
                f.name, f.size
            )),
            Some((_, None)) => problems.push(format!("{} is not a file", f.name)),
        }
    }
    if !problems.is_empty() {
        listed.problem = Some(problems.join("; "));
    }
}

/// Keep the newest `keep` backups in `dir`; remove the others.
fn prune(dir: &Path, keep: usize) -> io::Result<Vec<PathBuf>> {
    let all = list(dir)?;
    let excess = all.len().saturating_sub(keep.max(1));
    let mut removed = Vec::new();
    for old in all.into_iter().take(excess) {
        match fs::remove_dir_all(&old) {
            Ok(()) => removed.push(old),
            // A concurrent backup's retention removed it first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// The daemon's `backup.schedule`: called every tick of the main loop, it starts a backup on its
/// own thread when the newest backup under backups/ is older than the schedule allows (or there is
/// none), so the loop never waits on one. At most one runs at a time. A failed one is logged and
/// tried again one schedule period after it started, never stopping the daemon. The schedule is
/// read from the running configuration at each tick, so a reload changes it.
/// How often the scheduler looks at the backups folder while nothing is due.
const RECHECK_MS: i64 = 1000;

#[derive(Default)]
pub struct Scheduler {
    running: Option<std::thread::JoinHandle<()>>,
    /// When this daemon last started one (a failure waits a period, like a success).
    last_attempt: Option<i64>,
    /// Nothing to look at before this time under this schedule text: most ticks read nothing.
    not_before: Option<(String, i64)>,
}

impl Scheduler {
    pub fn tick(&mut self, home: &Home, loaded: &Loaded, now: i64) {
        if let Some(thread) = self.running.take() {
            if !thread.is_finished() {
                self.running = Some(thread);
                return;
            }
            if thread.join().is_err() {
                tracing::error!(
                    "scheduled backup: its thread panicked; it tries again when backup.schedule next falls due"
                );
            }
        }
        let text = &loaded.config.backup.schedule;
        if let Some((for_text, at)) = &self.not_before
            && for_text == text
            && now < *at
        {
            return;
        }
        // The configuration was validated when it was loaded.
        let Ok(schedule) = Schedule::parse(text) else {
            return;
        };
        let newest = newest_backup_ms(&home.backups_dir());
        match due_at(&schedule, newest, self.last_attempt, now) {
            Some(at) if at <= now => {
                self.not_before = None;
                self.last_attempt = Some(now);
                let req = Request::new(home, &loaded.config, &loaded.file.path, true);
                let redact = loaded.config.security.path_redaction;
                let home = home.clone();
                let spawned = std::thread::Builder::new()
                    .name("scheduled-backup".into())
                    .spawn(move || scheduled_backup(&home, &req, redact));
                match spawned {
                    Ok(thread) => self.running = Some(thread),
                    Err(e) => tracing::warn!(
                        "scheduled backup: cannot start its thread ({e}); it tries again when backup.schedule next falls due"
                    ),
                }
            }
            // Backups moved away or deleted make one due sooner: look again within a second.
            Some(at) => self.not_before = Some((text.clone(), at.min(now + RECHECK_MS))),
            None => self.not_before = Some((text.clone(), i64::MAX)),
        }
    }
}

/// When the next scheduled backup is due: one period of `schedule` after the newest backup or
/// this daemon's last attempt, whichever is later; now when there is neither; never for `manual`.
/// Pure, so the rule is tested without clocks.
fn due_at(
    schedule: &Schedule,
    newest: Option<i64>,
    last_attempt: Option<i64>,
    now: i64,
) -> Option<i64> {
    match (schedule, newest.max(last_attempt)) {
        (Schedule::Manual, _) => None,
        // No backup yet: take one now, whatever the schedule's shape.
        (_, None) => Some(now),
        (_, last) => schedule.next_due(last),
    }
}

/// One scheduled backup, on its own thread: the command's code, then one log line (with no path
/// under `security.path_redaction`: the backup is named by its folder's name, a time).
fn scheduled_backup(home: &Home, req: &Request, redact: bool) {
    if let Some(ms) = std::env::var("FUTURNAL_TEST_SCHEDULED_BACKUP_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        // Tests hold a scheduled backup here to show that the daemon keeps claiming meanwhile.
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    match take(home, req) {
        Ok(r) => {
            let name = r
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let shown = if redact {
                name
            } else {
                home::display_path(&r.path)
            };
            tracing::info!(
                bytes = r.bytes,
                documents = r.manifest.documents,
                jobs = r.manifest.jobs,
                removed = r.removed.len(),
                "scheduled backup {shown} written in {}",
                crate::display::duration_ms(r.duration_ms as i64)
            );
        }
        Err(e) => {
            let what = e.to_string();
            let what = if redact {
                crate::redact::redact_paths(&what, &[home.root(), &req.dir])
            } else {
                what
            };
            tracing::warn!(
                "scheduled backup failed: {what}; no folder named like a complete backup was left and the orchestrator carries on; it tries again when backup.schedule next falls due; runbook: futurnal help runbook {}",
                crate::runbook::topics::BACKUPS
            );
        }
    }
}

/// Temporary folders of backups whose process died (kill -9): never complete, so removed.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(TMP_PREFIX) else {
            continue;
        };
        let pid = rest.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// What `verify` found.
#[derive(Debug, Serialize)]
pub struct Verified {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// One line per problem; empty when the backup is sound.
    pub problems: Vec<String>,
}

/// Check a backup's checksums and run `PRAGMA integrity_check` on its databases (read-only).
pub fn verify(path: &Path) -> Result<Verified, BackupError> {
    let text = fs::read(path.join(MANIFEST)).map_err(|e| {
        BackupError::Invalid(format!(
            "{} has no readable {MANIFEST} ({e}): it is not a complete futurnal backup",
            home::display_path(path)
        ))
    })?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| {
        BackupError::Invalid(format!(
            "{MANIFEST} in {} is not valid: {e}",
            home::display_path(path)
        ))
    })?;
    let mut problems = Vec::new();
    for entry in &manifest.files {
        // A name from the manifest must stay inside the backup.
        if entry.name.contains('/') || entry.name.starts_with('.') {
            problems.push(format!("{}: not a file name a backup holds", entry.name));
            continue;
        }
        match checksum(&path.join(&entry.name)) {
            Ok(found) if found.size != entry.size => problems.push(format!(
                "{}: {} bytes, the manifest says {}",
                entry.name, found.size, entry.size
            )),
            Ok(found) if found.blake3 != entry.blake3 => problems.push(format!(
                "{}: checksum differs from the manifest",
                entry.name
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!("{}: {e}", entry.name)),
        }
    }
    for entry in manifest.files.iter().filter(|f| f.name.ends_with(".db")) {
        let db = path.join(&entry.name);
        let result = open_read_only(&db).and_then(|c| {
            let mut stmt = c.prepare("PRAGMA integrity_check")?;
            let rows: Vec<String> = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        });
        match result {
            Ok(rows) if rows == ["ok"] => {}
            Ok(rows) => problems.push(format!(
                "{}: integrity check failed ({} problem(s))",
                entry.name,
                rows.len()
            )),
            Err(e) => problems.push(format!("{}: integrity check failed: {e}", entry.name)),
        }
    }
    Ok(Verified {
        path: path.to_path_buf(),
        manifest,
        problems,
    })
}

/// Which parts of a backup a restore puts in place.
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    pub queue: bool,
    pub store: bool,
    pub config: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    /// Where the replaced files go.
    aside: PathBuf,
    /// (staged file, target) pairs, every staged file complete and synced.
    moves: Vec<(PathBuf, PathBuf)>,
}

#[derive(Debug, Serialize)]
pub struct Restored {
    pub from: PathBuf,
    /// The folder holding what was replaced (nothing is deleted).
    pub aside: PathBuf,
    pub restored: Vec<PathBuf>,
    pub moved_aside: Vec<PathBuf>,
}

fn staged(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(format!(".{STAGED}"));
    PathBuf::from(s)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Move `target` and its SQLite side files into `aside` (created on first use).
fn move_aside(target: &Path, aside: &Path, moved: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut files = vec![target.to_path_buf()];
    files.extend(DB_COMPANIONS.iter().map(|s| with_suffix(target, s)));
    for f in files {
        if fs::symlink_metadata(&f).is_err() {
            continue;
        }
        home::create_private_dir(aside)?;
        let dest = aside.join(f.file_name().unwrap_or_default());
        if fs::symlink_metadata(&dest).is_ok() {
            // Only a journal replayed over a folder it already filled gets here: keep both.
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", home::display_path(&dest)),
            ));
        }
        fs::rename(&f, &dest)?;
        moved.push(dest);
    }
    Ok(())
}

/// Apply a journal: idempotent, so a restore killed anywhere after writing it is finished here.
fn apply(home: &Home, journal: &Journal) -> io::Result<Vec<PathBuf>> {
    let mut moved = Vec::new();
    for (stage, target) in &journal.moves {
        if !stage.exists() {
            continue; // already renamed into place
        }
        move_aside(target, &journal.aside, &mut moved)?;
        fs::rename(stage, target)?;
    }
    sync_dir(home.root())?;
    if home.config_dir().is_dir() {
        sync_dir(&home.config_dir())?;
    }
    fs::remove_file(home.root().join(JOURNAL))?;
    sync_dir(home.root())?;
    Ok(moved)
}

/// Finish a restore a kill interrupted after its files were staged; remove staged files of one
/// interrupted before (the home was not touched yet). Called by `restore` and at start, holding
/// the lock. True when it finished one.
fn finish_locked(home: &Home) -> Result<bool, BackupError> {
    let journal_path = home.root().join(JOURNAL);
    let finished = match fs::read(&journal_path) {
        Ok(text) => {
            let journal: Journal = serde_json::from_slice(&text).map_err(io::Error::other)?;
            apply(home, &journal)?;
            true
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e.into()),
    };
    for dir in [home.root().to_path_buf(), home.config_dir()] {
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .ends_with(&format!(".{STAGED}"))
                {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
    Ok(finished)
}

/// At start (before the daemon takes the lock): finish an interrupted restore, if any.
/// `lock` takes the home's instance lock (`BackupError::Running` when a daemon holds it); the
/// caller passes it because this module must not import the daemon, whose schedule calls it.
pub fn finish_interrupted<L>(
    home: &Home,
    lock: impl FnOnce(&Home) -> Result<L, BackupError>,
) -> Result<bool, BackupError> {
    if !home.root().join(JOURNAL).exists() {
        return Ok(false);
    }
    let _lock = lock(home)?;
    finish_locked(home)
}

/// Restore `parts` of the backup at `from` into `home`, after verifying it, holding the home's
/// instance lock that `lock` takes (as for `finish_interrupted`).
pub fn restore<L>(
    home: &Home,
    from: &Path,
    parts: Parts,
    config_target: &Path,
    lock: impl FnOnce(&Home) -> Result<L, BackupError>,
) -> Result<Restored, BackupError> {
    // A new machine's home may not exist yet: restoring is how it begins.
    home.ensure_layout().map_err(io::Error::other)?;
    let _lock = lock(home)?;
    finish_locked(home)?;
    let verified = verify(from)?;
    if !verified.problems.is_empty() {
        return Err(BackupError::Invalid(format!(
            "the backup {} failed verification: {}",
            home::display_path(from),
            verified.problems.join("; ")
        )));
    }
    let has = |name: &str| verified.manifest.files.iter().any(|f| f.name == name);
    let mut wanted: Vec<(&str, PathBuf)> = Vec::new();
    if parts.queue && has("queue.db") {
        wanted.push(("queue.db", home.queue_db()));
    }
    if parts.store && has("store.db") {
        wanted.push(("store.db", home.store_db()));
    }
    if parts.config {
        if !has(CONFIG_NAME) {
            return Err(BackupError::Invalid(format!(
                "the backup {} holds no configuration file",
                home::display_path(from)
            )));
        }
        wanted.push((CONFIG_NAME, config_target.to_path_buf()));
    }
    if wanted.is_empty() {
        return Err(BackupError::Invalid(format!(
            "the backup {} holds none of the files asked for",
            home::display_path(from)
        )));
    }
    let mut moves = Vec::new();
    for (name, target) in &wanted {
        if let Some(parent) = target.parent() {
            home::create_private_dir(parent).map_err(on(parent))?;
        }
        let stage = staged(target);
        let _ = fs::remove_file(&stage);
        let source = from.join(name);
        let mut out = private_file(&stage).map_err(on(&stage))?;
        io::copy(&mut File::open(&source).map_err(on(&source))?, &mut out).map_err(on(&stage))?;
        out.sync_all().map_err(on(&stage))?;
        moves.push((stage, target.clone()));
    }
    // A new folder for every restore: nothing kept is overwritten.
    let journal = Journal {
        aside: new_aside_dir(home),
        moves,
    };
    home::write_private_atomic(
        &home.root().join(JOURNAL),
        &serde_json::to_vec(&journal).map_err(io::Error::other)?,
    )?;
    sync_dir(home.root())?;
    if std::env::var_os("FUTURNAL_TEST_RESTORE_PAUSE").is_some() {
        // Tests kill the process here, with the journal written and nothing moved yet.
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
    let moved_aside = apply(home, &journal)?;
    Ok(Restored {
        from: from.to_path_buf(),
        aside: journal.aside,
        restored: wanted.into_iter().map(|(_, t)| t).collect(),
        moved_aside,
    })
}

/// Set a database and its side files aside, into a new `backups/replaced-<time>/` folder,
/// never deleting anything: `orchestrator start --rebuild-store` does this to the store before
/// the daemon creates a fresh one. `None` when there was nothing to move. The caller holds the
/// home's lock. A kill between two renames leaves side files without their database, which
/// `set_aside_orphans` moves at the next start.
pub fn set_aside(home: &Home, db: &Path) -> io::Result<Option<PathBuf>> {
    let aside = new_aside_dir(home);
    let mut moved = Vec::new();
    move_aside(db, &aside, &mut moved)?;
    sync_dir(home.root())?;
    Ok((!moved.is_empty()).then_some(aside))
}

/// Move `-wal`, `-shm` and `-journal` files whose database is gone (set aside or deleted by
/// hand) out of the way before SQLite creates a new database there: SQLite would otherwise
/// replay a stale write-ahead log into the new, empty file. Returns the folder, if any.
pub fn set_aside_orphans(home: &Home, db: &Path) -> io::Result<Option<PathBuf>> {
    if fs::symlink_metadata(db).is_ok() {
        return Ok(None);
    }
    let orphans: Vec<PathBuf> = DB_COMPANIONS
        .iter()
        .map(|s| with_suffix(db, s))
        .filter(|f| fs::symlink_metadata(f).is_ok())
        .collect();
    if orphans.is_empty() {
        return Ok(None);
    }
    let aside = new_aside_dir(home);
    home::create_private_dir(&aside)?;
    for f in orphans {
        fs::rename(&f, aside.join(f.file_name().unwrap_or_default()))?;
    }
    sync_dir(home.root())?;
    Ok(Some(aside))
}

/// A new `replaced-<time>` folder name under backups/, even for two in the same second: nothing
/// kept is overwritten.
fn new_aside_dir(home: &Home) -> PathBuf {
    let stamp = timestamp();
    let mut aside = home.backups_dir().join(format!("{REPLACED_PREFIX}{stamp}"));
    let mut n = 1;
    while fs::symlink_metadata(&aside).is_ok() {
        n += 1;
        aside = home
            .backups_dir()
            .join(format!("{REPLACED_PREFIX}{stamp}-{n}"));
    }
    aside
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_lock(home: &Home) -> Result<crate::daemon::lock::InstanceLock, BackupError> {
        let info = crate::daemon::lock::LockInfo {
            pid: std::process::id(),
            instance_id: "test".into(),
            started_at: 0,
            wakes: false,
        };
        crate::daemon::lock::acquire(home, &info).map_err(|_| BackupError::Running)
    }

    /// A restore killed in the middle of its swap (one file moved aside, its replacement not yet
    /// renamed in) is finished by replaying the journal, and the replay keeps everything.
    #[test]
    fn a_journal_replayed_after_a_kill_mid_swap_finishes_the_restore() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("home"));
        home.ensure_layout().unwrap();
        for (name, text) in [("queue.db", "old queue"), ("store.db", "old store")] {
            fs::write(home.root().join(name), text).unwrap();
            fs::write(staged(&home.root().join(name)), format!("new {name}")).unwrap();
        }
        fs::write(home.root().join("queue.db-wal"), "stale wal").unwrap();
        let journal = Journal {
            aside: home.backups_dir().join("replaced-x"),
            moves: ["queue.db", "store.db"]
                .iter()
                .map(|n| (staged(&home.root().join(n)), home.root().join(n)))
                .collect(),
        };
        fs::write(
            home.root().join(JOURNAL),
            serde_json::to_vec(&journal).unwrap(),
        )
        .unwrap();
        // The kill: queue.db and its WAL were moved aside, nothing renamed in yet.
        let mut moved = Vec::new();
        move_aside(&home.root().join("queue.db"), &journal.aside, &mut moved).unwrap();

        assert!(finish_interrupted(&home, test_lock).unwrap());
        let read = |p: PathBuf| fs::read_to_string(p).unwrap();
        assert_eq!(read(home.queue_db()), "new queue.db");
        assert_eq!(read(home.store_db()), "new store.db");
        assert!(!home.root().join("queue.db-wal").exists());
        assert_eq!(read(journal.aside.join("queue.db")), "old queue");
        assert_eq!(read(journal.aside.join("queue.db-wal")), "stale wal");
        assert_eq!(read(journal.aside.join("store.db")), "old store");
        assert!(!home.root().join(JOURNAL).exists());
        assert!(
            !finish_interrupted(&home, test_lock).unwrap(),
            "nothing left to finish"
        );
    }

    #[test]
    fn a_scheduled_backup_is_due_one_period_after_the_newest_backup_or_failed_attempt() {
        let hour = 3_600_000;
        let every = Schedule::parse("1h").unwrap();
        let now = 100 * hour;
        assert_eq!(due_at(&every, None, None, now), Some(now), "none yet: now");
        assert_eq!(
            due_at(&every, Some(now - 2 * hour), None, now),
            Some(now - hour)
        );
        assert_eq!(
            due_at(&every, Some(now - hour / 2), None, now),
            Some(now + hour / 2)
        );
        // A failed attempt (no new backup) waits a period too, not one tick.
        assert_eq!(
            due_at(&every, Some(now - 5 * hour), Some(now - 1), now),
            Some(now - 1 + hour)
        );
        let manual = Schedule::parse("manual").unwrap();
        assert_eq!(due_at(&manual, None, None, now), None);
        assert_eq!(due_at(&manual, Some(0), None, now), None);
        let cron = Schedule::parse("0 3 * * *").unwrap();
        assert_eq!(due_at(&cron, None, None, now), Some(now), "none yet: now");
        let next = due_at(&cron, Some(now), None, now).unwrap();
        assert!(next > now && next <= now + 24 * hour);
    }

    #[test]
    fn backup_names_read_as_their_utc_time() {
        assert_eq!(name_time("20261129T105900Z"), Some((1_795_949_940_000, 1)));
        assert_eq!(name_time("20261129T105900Z-12").map(|t| t.1), Some(12));
        assert_eq!(name_time("notes"), None);
        assert_eq!(name_time("20261129T105900Z-x"), None);
    }

    #[test]
    fn backup_names_are_timestamps_and_nothing_else() {
        assert!(is_backup_name("20261129T105900Z"));
        assert!(is_backup_name("20261129T105900Z-2"));
        assert!(!is_backup_name(".tmp-20261129T105900Z-77"));
        assert!(!is_backup_name("replaced-20261129T105900Z"));
        assert!(!is_backup_name("2026112xT105900Z"));
    }
}
