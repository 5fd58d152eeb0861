//! Crash soak: kill the daemon with SIGKILL at random points while it ingests a generated corpus,
//! restart it each time, and prove that nothing was lost, duplicated or corrupted.
//!
//! The default `cargo test` runs a quick version (5 kills, 500 files). The full soak:
//!
//! ```text
//! FUTURNAL_SOAK_KILLS=100 cargo test --release --test soak -- --nocapture
//! ```
//!
//! Knobs (environment): `FUTURNAL_SOAK_KILLS` (default 5), `FUTURNAL_SOAK_FILES` (default 500, or
//! 10,000 with 50 kills or more), `FUTURNAL_SOAK_SEED` (printed at the start: the corpus and every
//! random choice follow from it; kill timing still depends on the machine),
//! `FUTURNAL_SOAK_MAX_DELAY_MS` (longest wait before a kill), `FUTURNAL_SOAK_KEEP` (keep the temporary
//! folder, with both databases and the daemon's logs, for a post-mortem).
//!
//! Each cycle starts the daemon (which recovers the previous crash), changes part of the corpus
//! (rewrites, a twelfth of it or a third, additions, deletions, bad files repaired), then
//! triggers ingestion, or a `quarantine retry --all`, or a `jobs cancel` of a running job, and
//! kills the daemon: one time in ten at once (during start-up recovery), three in ten after a
//! random delay within the length of recent runs, the others once the running job has done a
//! random share of its items. After the last kill a final
//! clean run ingests what is left and the daemon is stopped. Then:
//! - every file the parser accepts is a live document of store.db exactly once, with the content
//!   hash of the file's bytes and exactly the body, title and kind the parser gives for them;
//! - no live document exists for a file that is gone or does not parse (`duplicated` counts those:
//!   ghosts of deleted files and second copies under another key);
//! - both databases pass `PRAGMA integrity_check`, every job's history accounts for its state,
//!   and no job is left `running`.
//!
//! Synchronization is by polling with deadlines; the only sleeps are the random pre-kill delays.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use futurnal::sources;
use futurnal::{SourceConfig, SourceType};

const BIN: &str = env!("CARGO_BIN_EXE_futurnal");

/// splitmix64: small, seedable, good enough to pick files and delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize].clone()
    }
}

fn env_num(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
    )
}

// ---------------------------------------------------------------- the corpus

const SNIPPETS: &[&str] = &[
    "The quick brown fox jumps over the lazy dog while the orchestrator keeps its queue.",
    "日本語のメモです。漢字とひらがなとカタカナが混ざった段落で、句読点もあります。",
    "中文段落：简体字和繁體字，标点符号，还有数字 12345。",
    "한국어 문장입니다. 띄어쓰기가 있는 텍스트.",
    "مرحبا بالعالم، هذه فقرة باللغة العربية مع أرقام ١٢٣ وعلامات ترقيم.",
    "שלום עולם, זוהי פסקה בעברית עם ניקוד: שָׁלוֹם.",
    "नमस्ते दुनिया, यह देवनागरी में एक अनुच्छेद है। क्षत्रिय ज्ञान",
    "สวัสดีชาวโลก นี่คือย่อหน้าภาษาไทยที่ไม่มีช่องว่างระหว่างคำ",
    "Family 👨\u{200d}👩\u{200d}👧\u{200d}👦, flag 🏳\u{fe0f}\u{200d}🌈, thumbs 👍🏽, keycap 1\u{fe0f}\u{20e3}.",
    "Combining: e\u{301}te\u{301}, n\u{303}, a\u{308}, Z\u{351}\u{352}\u{353}\u{354}, Hangul jamo \u{1100}\u{1161}\u{11a8}.",
    "Ελληνικά και Кириллица: съешь же ещё этих мягких французских булок.",
    "Zero-width joiners\u{200b}and\u{200c}non\u{200d}joiners, NBSP\u{a0}here, ideographic\u{3000}space.",
    "Math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and music 𝄞𝄢, astral plane text that is four bytes a character.",
];

const NAME_STEMS: &[&str] = &[
    "note",
    "ノート",
    "ملاحظة",
    "הערה",
    "नोट",
    "บันทึก",
    "café",
    "cafe\u{301}",
    "a#b",
    "100% done",
    "why?",
    "it's \"quoted\"",
    " leading space",
    "emoji 📝",
    "semi;colon",
];

/// One paragraph-structured text of roughly `paras` paragraphs.
fn text(rng: &mut Rng, paras: usize) -> String {
    let mut out = String::new();
    for p in 0..paras {
        if p > 0 {
            out.push_str("\n\n");
        }
        let sentences = 1 + rng.below(6);
        for s in 0..sentences {
            if s > 0 {
                out.push(' ');
            }
            out.push_str(rng.pick(SNIPPETS));
        }
    }
    out
}

/// What a generated file is meant to be (bad ones fail to parse until repaired).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Markdown,
    Text,
    Json,
    Html,
    Note,
    Bad,
}

fn contents(rng: &mut Rng, kind: Kind, version: u64) -> Vec<u8> {
    let paras = match rng.below(20) {
        0 => 40 + rng.below(60) as usize, // a long note: tens of kilobytes
        n => 1 + (n as usize % 8),
    };
    let body = text(rng, paras);
    let mut s = match kind {
        Kind::Markdown | Kind::Note => {
            let mut s = String::new();
            if rng.chance(50) {
                s.push_str(&format!(
                    "---\ntitle: \"{} v{version}\"\ntags: [soak, {}]\n---\n",
                    rng.pick(NAME_STEMS).replace('"', ""),
                    rng.below(5)
                ));
            }
            s.push_str(&format!("# {}\n\n{body}\n", rng.pick(SNIPPETS)));
            if kind == Kind::Note {
                s.push_str("\nSee [[Other note]] and ![[diagram.png]] #tag\n");
            }
            s
        }
        Kind::Text => format!("{body}\n(version {version})\n"),
        Kind::Json => serde_json::json!({
            "title": rng.pick(SNIPPETS),
            "version": version,
            "body": body,
        })
        .to_string(),
        Kind::Html => format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head>\
             <body><h1>v{version}</h1><p>{}</p></body></html>",
            rng.pick(SNIPPETS),
            body.replace("\n\n", "</p><p>")
        ),
        Kind::Bad => unreachable!("bad files are made by bad_contents"),
    };
    if rng.chance(15) {
        s = s.replace('\n', "\r\n");
    }
    let mut bytes = s.into_bytes();
    if rng.chance(10) {
        bytes.splice(0..0, *b"\xEF\xBB\xBF");
    }
    bytes
}

/// A file that does not parse: invalid UTF-8, truncated JSON, frontmatter that never ends or is
/// not YAML.
fn bad_contents(rng: &mut Rng, ext: &str) -> Vec<u8> {
    match (ext, rng.below(3)) {
        ("json", _) => b"{\"title\": \"truncated".to_vec(),
        ("md", 1) => b"---\ntitle: never closed\n\nbody\n".to_vec(),
        ("md", 2) => b"---\ntitle: [unclosed\n---\nbody\n".to_vec(),
        _ => b"# Latin-1\n\ncaf\xe9 cr\xe8me\n".to_vec(),
    }
}

struct File {
    source: &'static str,
    kind: Kind,
    /// Extension of a bad file (its good kind when repaired).
    ext: &'static str,
    version: u64,
}

struct Corpus {
    root: PathBuf,
    files: BTreeMap<String, File>,
    next_id: u64,
}

impl Corpus {
    fn source_dir(&self, source: &str) -> PathBuf {
        self.root.join(source)
    }

    fn path(&self, source: &str, key: &str) -> PathBuf {
        self.source_dir(source).join(key)
    }

    fn new_key(&mut self, rng: &mut Rng, source: &str, ext: &str) -> String {
        self.next_id += 1;
        let dir = format!("d{:02}/{}", self.next_id % 37, rng.pick(NAME_STEMS).trim());
        let key = format!("{dir}/{} {}.{ext}", rng.pick(NAME_STEMS), self.next_id);
        format!("{source}/{key}")
    }

    fn write(&mut self, rng: &mut Rng, id: &str) {
        let f = &self.files[id];
        let bytes = if f.kind == Kind::Bad {
            bad_contents(rng, f.ext)
        } else {
            contents(rng, f.kind, f.version)
        };
        let path = self.root.join(id);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }

    fn add(&mut self, rng: &mut Rng) {
        let (source, kind, ext) = match rng.below(100) {
            0..=34 => ("notes", Kind::Markdown, "md"),
            35..=59 => ("notes", Kind::Text, "txt"),
            60..=74 => ("notes", Kind::Json, "json"),
            75..=84 => ("notes", Kind::Html, "html"),
            _ => ("vault", Kind::Note, "md"),
        };
        // About two files in a hundred does not parse (quarantined) until a cycle repairs it.
        let kind = if rng.chance(2) { Kind::Bad } else { kind };
        let id = self.new_key(rng, source, ext);
        self.files.insert(
            id.clone(),
            File {
                source,
                kind,
                ext,
                version: 0,
            },
        );
        self.write(rng, &id);
    }

    fn generate(root: &Path, rng: &mut Rng, n: usize) -> Corpus {
        let mut c = Corpus {
            root: root.to_path_buf(),
            files: BTreeMap::new(),
            next_id: 0,
        };
        std::fs::create_dir_all(c.source_dir("notes")).unwrap();
        std::fs::create_dir_all(c.source_dir("vault")).unwrap();
        for _ in 0..n {
            c.add(rng);
        }
        // NFC and NFD twins side by side, and files no source ingests.
        for (name, text) in [("café.md", "NFC twin\n"), ("cafe\u{301}.md", "NFD twin\n")] {
            let id = format!("notes/twins/{name}");
            c.files.insert(
                id.clone(),
                File {
                    source: "notes",
                    kind: Kind::Markdown,
                    ext: "md",
                    version: 0,
                },
            );
            let p = c.root.join(&id);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::write(c.path("notes", "photo.jpg"), b"\xFF\xD8\xFF\xE0 not really").unwrap();
        std::fs::write(c.path("vault", "diagram.png"), b"\x89PNG\r\n").unwrap();
        c
    }

    /// Change part of the corpus as a user would between (and during) runs.
    /// `share`: one file in `share` is rewritten.
    fn mutate(&mut self, rng: &mut Rng, share: usize) -> (usize, usize, usize, usize) {
        let ids: Vec<String> = self.files.keys().cloned().collect();
        let n = ids.len().max(1);
        let (mut changed, mut added, mut deleted, mut repaired) = (0, 0, 0, 0);
        for _ in 0..(n / share).max(1) {
            let id = rng.pick(&ids);
            let Some(f) = self.files.get_mut(&id) else {
                continue;
            };
            if f.kind == Kind::Bad {
                continue;
            }
            f.version += 1;
            self.write(rng, &id);
            changed += 1;
        }
        for _ in 0..(n / 200).max(1) {
            self.add(rng);
            added += 1;
        }
        for _ in 0..(n / 300).max(1) {
            let id = rng.pick(&ids);
            if self.files.remove(&id).is_some() {
                std::fs::remove_file(self.root.join(&id)).unwrap();
                deleted += 1;
            }
        }
        // Repair some bad files, so that `quarantine retry` has something to succeed at.
        let bad: Vec<String> = self
            .files
            .iter()
            .filter(|(_, f)| f.kind == Kind::Bad)
            .map(|(id, _)| id.clone())
            .collect();
        for id in bad {
            if rng.chance(20) {
                let f = self.files.get_mut(&id).unwrap();
                f.kind = match (f.source, f.ext) {
                    ("vault", _) => Kind::Note,
                    (_, "json") => Kind::Json,
                    (_, "txt") => Kind::Text,
                    (_, "html") => Kind::Html,
                    _ => Kind::Markdown,
                };
                f.version += 1;
                self.write(rng, &id);
                repaired += 1;
            }
        }
        (changed, added, deleted, repaired)
    }
}

// ---------------------------------------------------------------- the daemon

/// The sandbox: its own HOME and FUTURNAL_HOME; kills the daemon and any CLI child it started.
struct Soak {
    dir: tempfile::TempDir,
    daemon: Option<i32>,
    children: Vec<Child>,
}

impl Drop for Soak {
    fn drop(&mut self) {
        if std::env::var_os("FUTURNAL_SOAK_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("soak: kept {}", self.dir.path().display());
        }
        if let Some(pid) = self.daemon.take() {
            sigkill(pid);
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sigkill(pid: i32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Soak {
    fn new() -> Soak {
        let s = Soak {
            dir: tempfile::tempdir().expect("tempdir"),
            daemon: None,
            children: Vec::new(),
        };
        std::fs::create_dir_all(s.home()).unwrap();
        s
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    fn futurnal_home(&self) -> PathBuf {
        self.home().join(".futurnal")
    }
    fn corpus_root(&self) -> PathBuf {
        self.dir.path().join("corpus")
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("FUTURNAL_HOME", self.futurnal_home())
            .env("NO_COLOR", "1")
            .env("TZ", "UTC")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("futurnal runs")
    }
    /// Start a CLI command in the background (its output is not needed).
    fn spawn(&mut self, args: &[&str]) {
        let child = self
            .cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("futurnal runs");
        self.children.push(child);
    }
    /// Wait for background commands: they end on their own once the daemon is gone (`jobs
    /// cancel` gives up after its grace); past the deadline they are killed.
    fn reap(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for mut c in self.children.drain(..) {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
    }
    fn status(&self) -> serde_json::Value {
        let out = self.run(&["orchestrator", "status", "--format", "json"]);
        assert!(out.status.success(), "{}", show(&out));
        serde_json::from_slice(&out.stdout).expect("status is JSON")
    }
    fn write_config(&self) {
        let cfg = self.futurnal_home().join("config");
        std::fs::create_dir_all(&cfg).unwrap();
        let root = self.corpus_root();
        let text = format!(
            "workers:\n  cancel_grace_seconds: 2\nretry:\n  base_delay_seconds: 1\n  max_delay_seconds: 2\n\
             queue:\n  min_free_mb: 0\n\
             sources:\n  - name: notes\n    type: local_files\n    path: {}\n\
             \x20 - name: vault\n    type: obsidian\n    path: {}\n",
            root.join("notes").display(),
            root.join("vault").display()
        );
        std::fs::write(cfg.join("orchestrator.yaml"), text).unwrap();
    }
    fn start(&mut self) {
        let out = self.run(&["orchestrator", "start"]);
        assert!(out.status.success(), "start after a crash: {}", show(&out));
        let pid = self.status()["pid"]
            .as_i64()
            .expect("a running daemon has a pid") as i32;
        self.daemon = Some(pid);
    }
    /// SIGKILL the daemon; true when it died with a job running.
    fn kill(&mut self) -> bool {
        let pid = self.daemon.take().expect("a daemon to kill");
        sigkill(pid);
        wait_until(
            "the killed daemon's lock to be released",
            Duration::from_secs(20),
            || self.status()["running"] == false,
        );
        self.count_jobs("state = 'running'") > 0
    }
    /// Items done and total of the oldest running job, read from queue.db (cheaper than the CLI,
    /// so the poll is fine-grained).
    fn progress(&self) -> Option<(u64, u64)> {
        self.queue()
            .query_row(
                "SELECT items_done, items_total FROM jobs WHERE state = 'running' \
                 ORDER BY id LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .ok()
    }
    /// The longest of the last three source runs that completed, in milliseconds.
    fn recent_run_ms(&self) -> Option<u64> {
        self.queue()
            .query_row(
                "SELECT MAX(d) FROM (SELECT finished_at - started_at AS d FROM jobs \
                 WHERE kind = 'source_run' AND state = 'succeeded' AND started_at IS NOT NULL \
                 ORDER BY finished_at DESC LIMIT 3)",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .ok()
            .flatten()
            .map(|ms| ms.max(0) as u64)
    }
    fn count_jobs(&self, filter: &str) -> i64 {
        self.queue()
            .query_row(
                &format!("SELECT COUNT(*) FROM jobs WHERE {filter}"),
                [],
                |r| r.get(0),
            )
            .expect("count jobs")
    }
    fn running_job(&self) -> Option<i64> {
        let out = self.run(&[
            "orchestrator",
            "jobs",
            "list",
            "--status",
            "running",
            "--format",
            "json",
        ]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        list.as_array()?.first()?["id"].as_i64()
    }
    fn queue(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.futurnal_home().join("queue.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("queue.db opens")
    }
    /// Jobs that are pending (due within a minute) or running.
    fn active_jobs(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let horizon = now + 60_000;
        self.queue()
            .query_row(
                "SELECT COUNT(*) FROM jobs WHERE state = 'running' \
                 OR (state = 'pending' AND scheduled_for < ?1)",
                [horizon],
                |r| r.get(0),
            )
            .unwrap_or(1)
    }
}

// ---------------------------------------------------------------- checks

#[derive(Default, Debug)]
struct Verdict {
    expected: usize,
    lost: Vec<String>,
    duplicated: Vec<String>,
    corrupt: Vec<String>,
    running_jobs: i64,
    quarantined: i64,
    internal: i64,
    integrity: Vec<String>,
}

fn integrity(path: &Path) -> Result<(), String> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| e.to_string())?;
    let rows: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| e.to_string())?;
    if rows == ["ok"] {
        Ok(())
    } else {
        Err(rows.join("; "))
    }
}

/// What store.db must hold: for every file on disk that a source ingests, the parser's documents.
fn expected_documents(
    corpus: &Corpus,
) -> HashMap<(String, String), (String, String, String, String)> {
    let mut out = HashMap::new();
    for (source, kind) in [
        ("notes", SourceType::LocalFiles),
        ("vault", SourceType::Obsidian),
    ] {
        let root = corpus.source_dir(source);
        let config = SourceConfig::new(source, kind, &root);
        let found = sources::enumerate(&config).expect("the corpus enumerates");
        for c in found.candidates {
            let bytes = std::fs::read(&c.path).unwrap();
            let hash = sources::content_hash(&bytes);
            if let Ok(parsed) = sources::parse(&config, &c, bytes, hash.clone()) {
                for d in parsed.docs {
                    out.insert(
                        (source.to_string(), d.item),
                        (hash.clone(), d.body, d.title, d.kind.to_string()),
                    );
                }
            }
        }
    }
    out
}

fn verify(soak: &Soak, corpus: &Corpus) -> Verdict {
    let mut v = Verdict::default();
    let fh = soak.futurnal_home();
    for db in ["queue.db", "store.db"] {
        if let Err(e) = integrity(&fh.join(db)) {
            v.integrity.push(format!("{db}: {e}"));
        }
    }
    // Every state change was written with its event, whatever instant the kills hit.
    for (job, what) in futurnal::history_violations(&soak.queue()).expect("read the history") {
        v.integrity.push(format!("queue.db: job {job}: {what}"));
    }
    v.running_jobs = soak.count_jobs("state = 'running'");
    v.quarantined = soak.count_jobs("state = 'quarantined'");
    // A bug in futurnal (class `internal`) at any point of the soak, even if a retry hid it.
    v.internal = soak
        .queue()
        .query_row(
            "SELECT COUNT(*) FROM job_events WHERE reason LIKE 'internal:%'",
            [],
            |r| r.get(0),
        )
        .expect("count internal failures");

    let expected = expected_documents(corpus);
    v.expected = expected.len();
    let store = rusqlite::Connection::open_with_flags(
        fh.join("store.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("store.db opens");
    let mut st = store
        .prepare(
            "SELECT source, item, content_hash, body, title, kind, chunks FROM documents \
             WHERE deleted_at IS NULL",
        )
        .unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        })
        .unwrap();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for row in rows {
        let (source, item, hash, body, title, kind, chunks) = row.expect("a document row");
        let key = (source, item);
        *seen.entry(key.clone()).or_default() += 1;
        let name = format!("{}:{}", key.0, key.1);
        match expected.get(&key) {
            None => v.duplicated.push(name),
            Some((h, b, t, k)) => {
                let chunks_ok = serde_json::from_str::<Vec<[usize; 2]>>(&chunks)
                    .is_ok_and(|c| c.iter().all(|[s, e]| body.get(*s..*e).is_some()));
                if *h != hash || *b != body || *t != title || *k != kind || !chunks_ok {
                    v.corrupt.push(name);
                }
            }
        }
    }
    for (key, n) in &seen {
        if *n > 1 {
            v.duplicated
                .push(format!("{}:{} ({n} live rows)", key.0, key.1));
        }
    }
    for key in expected.keys() {
        if !seen.contains_key(key) {
            v.lost.push(format!("{}:{}", key.0, key.1));
        }
    }
    // A good file the enumeration does not even see is lost too.
    for (id, f) in &corpus.files {
        let item = id.strip_prefix(f.source).and_then(|r| r.strip_prefix('/'));
        let key = (f.source.to_string(), item.unwrap_or(id).to_string());
        if f.kind != Kind::Bad && !expected.contains_key(&key) {
            v.lost.push(format!("{}:{} (not parsed)", key.0, key.1));
        }
    }
    v
}

// ---------------------------------------------------------------- the soak

/// When a cycle kills the daemon.
enum KillAt {
    /// At once: during start-up recovery.
    Start,
    /// After a random delay within the length of recent runs.
    Delay,
    /// Once the running job has done this percentage of its items.
    Progress(u64),
}

#[test]
fn sigkill_at_random_points_loses_duplicates_and_corrupts_nothing() {
    let started = Instant::now();
    let kills = env_num("FUTURNAL_SOAK_KILLS").unwrap_or(5);
    let files =
        env_num("FUTURNAL_SOAK_FILES").unwrap_or(if kills >= 50 { 10_000 } else { 500 }) as usize;
    let max_delay =
        env_num("FUTURNAL_SOAK_MAX_DELAY_MS").unwrap_or(if files >= 5_000 { 3_000 } else { 1_000 });
    let seed = env_num("FUTURNAL_SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let mut log = std::io::stderr();
    let _ = writeln!(
        log,
        "soak: seed {seed} (FUTURNAL_SOAK_SEED={seed} repeats the corpus and choices), \
         {files} files, {kills} kills, delays up to {max_delay} ms"
    );
    let mut rng = Rng(seed);
    let mut soak = Soak::new();
    let mut corpus = Corpus::generate(&soak.corpus_root(), &mut rng, files);
    soak.write_config();

    let mut actions: BTreeMap<&str, u32> = BTreeMap::new();
    let mut mid_job = 0;
    // How long a source run takes, from the last ones that completed.
    let mut run_ms = max_delay;
    for k in 0..kills {
        soak.start();
        if k > 0 && rng.chance(70) {
            // Now and then a big change, so that a run has thousands of documents to write.
            let share = if rng.chance(30) { 3 } else { 12 };
            corpus.mutate(&mut rng, share);
        }
        let action = match rng.below(10) {
            _ if k == 0 => "ingest",
            0..=5 => "ingest",
            6..=7 => "quarantine retry",
            _ => "jobs cancel",
        };
        *actions.entry(action).or_default() += 1;
        let kill_at = match rng.below(10) {
            0 => KillAt::Start,
            1..=3 => KillAt::Delay,
            _ => KillAt::Progress(rng.below(100)),
        };
        match action {
            "ingest" => {
                soak.spawn(&["orchestrator", "sources", "trigger", "notes"]);
                soak.spawn(&["orchestrator", "sources", "trigger", "vault"]);
            }
            "quarantine retry" => {
                soak.spawn(&[
                    "orchestrator",
                    "quarantine",
                    "retry",
                    "--all",
                    "--pace",
                    "0s",
                    "--note",
                    "soak",
                ]);
                soak.spawn(&["orchestrator", "sources", "trigger", "notes"]);
            }
            _ => {
                let out = soak.run(&["orchestrator", "sources", "trigger", "notes"]);
                assert!(out.status.success(), "{}", show(&out));
                // Cancel whatever runs once something does (a short run may be over already).
                let deadline = Instant::now() + Duration::from_millis(max_delay);
                while Instant::now() < deadline {
                    if let Some(id) = soak.running_job() {
                        soak.spawn(&[
                            "orchestrator",
                            "jobs",
                            "cancel",
                            &id.to_string(),
                            "--reason",
                            "soak",
                        ]);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        match kill_at {
            KillAt::Start => {}
            KillAt::Delay => {
                // The random delay before the kill is the point of the soak, not synchronization.
                std::thread::sleep(Duration::from_millis(rng.below(run_ms + run_ms / 4 + 1)));
            }
            KillAt::Progress(percent) => {
                // Kill once the running job has done `percent` of its items (0: during its scan),
                // or when it ends first.
                let start_by = Instant::now() + Duration::from_secs(3);
                let give_up = Instant::now() + Duration::from_secs(120);
                let mut seen = false;
                while Instant::now() < give_up {
                    match soak.progress() {
                        Some((done, total)) => {
                            seen = true;
                            if done * 100 >= percent * total {
                                break;
                            }
                        }
                        None if seen || Instant::now() > start_by => break,
                        None => {}
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        if soak.kill() {
            mid_job += 1;
        }
        soak.reap();
        if let Some(ms) = soak.recent_run_ms() {
            run_ms = ms.clamp(20, max_delay);
        }
        if kills >= 20 && (k + 1) % 10 == 0 {
            let _ = writeln!(log, "soak: {} kills after {:.0?}", k + 1, started.elapsed());
        }
    }

    // A final clean run: recover, let retries settle, ingest what is left, stop cleanly.
    soak.start();
    let settle = Duration::from_secs(if files >= 5_000 { 600 } else { 120 });
    wait_until("recovered jobs to finish", settle, || {
        soak.active_jobs() == 0
    });
    for source in ["notes", "vault"] {
        let out = soak.run(&["orchestrator", "sources", "trigger", source, "--wait"]);
        assert!(
            out.status.success(),
            "final run of {source}: {}",
            show(&out)
        );
    }
    wait_until("the final runs to settle", settle, || {
        soak.active_jobs() == 0
    });
    let out = soak.run(&["orchestrator", "stop"]);
    assert!(out.status.success(), "{}", show(&out));
    soak.daemon = None;

    let v = verify(&soak, &corpus);
    let summary = format!(
        "soak: kills {kills} ({mid_job} with a job running), lost {}, duplicated {}, corrupt {}, \
         running jobs {}, integrity {}, {} documents checked, {} files ({} bad, {} jobs \
         quarantined), internal failures {}, seed {seed}, actions {actions:?}, duration {:.1?}",
        v.lost.len(),
        v.duplicated.len(),
        v.corrupt.len() + v.integrity.len(),
        v.running_jobs,
        if v.integrity.is_empty() {
            "ok"
        } else {
            "FAILED"
        },
        v.expected,
        corpus.files.len(),
        corpus
            .files
            .values()
            .filter(|f| f.kind == Kind::Bad)
            .count(),
        v.quarantined,
        v.internal,
        started.elapsed(),
    );
    let _ = writeln!(log, "{summary}");
    let sample = |l: &[String]| l.iter().take(10).cloned().collect::<Vec<_>>();
    assert!(
        v.lost.is_empty()
            && v.duplicated.is_empty()
            && v.corrupt.is_empty()
            && v.integrity.is_empty()
            && v.running_jobs == 0
            && v.internal == 0,
        "{summary}\nlost: {:?}\nduplicated: {:?}\ncorrupt: {:?}\nintegrity: {:?}",
        sample(&v.lost),
        sample(&v.duplicated),
        sample(&v.corrupt),
        v.integrity
    );
}
