//! The performance table (issue 11): every figure beside a reference measured in the same run,
//! the ratio, the target, and the machine it ran on. Run by `benches/figures.sh` (which can also
//! time the whole book first, `--book`) or `cargo bench --bench figures`.
//!
//! Figures (each a `FUTURNAL_BENCH_ONLY` name):
//! - `ingest`: fresh ingest of ~200 MB / 10,000 generated notes through the daemon (`orchestrator
//!   start` to `sources trigger --wait` done) and through the library's `Run` alone, against the
//!   raw copy of the same files into SQLite by the sqlite3 shell's `fsdir()` (the faster of
//!   rollback journal and WAL);
//! - `rescan`: a no-change rescan of 100,000 files against `find -printf '%s %T@'` (best of 3);
//! - `list`: `sources list` on the fresh-ingest store (10k documents) and on the rescan store
//!   (100k documents), warm, best of 10, beside `futurnal --version` (the process start floor);
//! - `status`: `orchestrator status --format json` on a queue.db of 10k, 100k and 1M finished jobs
//!   (plus 10% pending item jobs, with their events and telemetry rows), made by the real binary
//!   and filled by SQL, against `sqlite3 queue.db "select state, count(*) from jobs group by
//!   state"` (best of 7 each);
//! - `restart`: `orchestrator start` after `kill -9` of the daemon on the same queue.db (best of
//!   3), beside the same on an empty queue;
//! - `queue`: enqueue + claim + finish of no-op jobs through the library's own queue code
//!   (`futurnal::bench_api`, durable: WAL, synchronous FULL) with 1, 2 and 8 threads, each with
//!   its own connection, one job per transaction and in batches of `BATCH` (`enqueue_runs`,
//!   `claim_batch`, one finish transaction per batch): jobs/s and p50/p99 per claim call,
//!   beside one durable commit measured on the same disk just before; other queues' figures
//!   are printed as literature, not measured here; and through the daemon: 200 no-op source
//!   runs (empty folders) queued while it is stopped, run with 1, 2 and 8 workers, the rate
//!   read from the jobs' own timestamps (`FUTURNAL_BENCH_BASELINE_BIN=<an older futurnal>`
//!   adds that build's rows, each measured right after ours);
//! - `book`: the whole book verified by the harness, timed by `benches/figures.sh --book` (cargo
//!   holds the build directory while a bench runs, so a bench cannot run cargo itself).
//!
//! Knobs: `FUTURNAL_BENCH_SCALE=0.05` scales every size (a quick look); `FUTURNAL_BENCH_ONLY=
//! queue,status` runs only those figures. The binary is the one cargo built for this bench
//! (`CARGO_BIN_EXE_futurnal`, the release profile). Every home is a temporary HOME/FUTURNAL_HOME;
//! every daemon started is killed when its home is dropped, whatever happened.

mod common;

use std::cell::RefCell;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{generate, ingest, source, timed};
use futurnal::JobState;
use futurnal::bench_api::{JobKind, Queue, claimable};

const BIN: &str = env!("CARGO_BIN_EXE_futurnal");
const FIGURES: &[&str] = &[
    "ingest", "rescan", "list", "status", "restart", "queue", "book",
];

struct Opts {
    scale: f64,
    only: Option<Vec<String>>,
}

impl Opts {
    fn from_env() -> Opts {
        let scale = std::env::var("FUTURNAL_BENCH_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|s: &f64| s.is_finite() && *s > 0.0)
            .unwrap_or(1.0);
        let only = std::env::var("FUTURNAL_BENCH_ONLY").ok().map(|s| {
            let names: Vec<String> = s
                .split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect();
            for n in &names {
                assert!(
                    FIGURES.contains(&n.as_str()),
                    "FUTURNAL_BENCH_ONLY: unknown figure {n:?}; known: {}",
                    FIGURES.join(",")
                );
            }
            names
        });
        Opts { scale, only }
    }
    fn wants(&self, figure: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|n| n == figure))
    }
    fn n(&self, full: usize, least: usize) -> usize {
        ((full as f64 * self.scale) as usize).max(least)
    }
}

struct Row {
    figure: String,
    ours: String,
    reference: String,
    ratio: String,
    target: String,
    met: String,
}

#[derive(Default)]
struct Table(Vec<Row>);

impl Table {
    fn push(
        &mut self,
        figure: String,
        ours: String,
        reference: String,
        ratio: String,
        target: &str,
        met: Option<bool>,
    ) {
        let row = Row {
            figure,
            ours,
            reference,
            ratio,
            target: target.to_string(),
            met: match met {
                Some(true) => "yes".into(),
                Some(false) => "no".into(),
                None => "—".into(),
            },
        };
        // Progress on stderr, so a long run shows each figure as it lands.
        eprintln!(
            "  {} | {} | {} | {} | {} | {}",
            row.figure, row.ours, row.reference, row.ratio, row.target, row.met
        );
        self.0.push(row);
    }
    fn print(&self) {
        println!("| figure | futurnal | reference (same run) | ratio | target | met? |");
        println!("|---|---|---|---|---|---|");
        for r in &self.0 {
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                r.figure, r.ours, r.reference, r.ratio, r.target, r.met
            );
        }
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// MB/s, MB = 10^6 bytes as futurnal prints it.
fn mbps(bytes: u64, d: Duration) -> f64 {
    mb(bytes) / d.as_secs_f64()
}

fn thousands(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000_000 && n % 100_000 == 0 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n if n >= 1_000 && n % 100 == 0 => format!("{:.1}k", n as f64 / 1_000.0),
        n => n.to_string(),
    }
}

/// A database's size with its WAL: what is on disk now.
fn db_size(db: &Path) -> u64 {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    [db, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn mb_text(bytes: u64) -> String {
    if bytes < 10_000_000 {
        format!("{:.1} MB", mb(bytes))
    } else {
        format!("{:.0} MB", mb(bytes))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Cores, memory, CPU, kernel, sqlite3 and the load average: what the figures depend on.
fn machine_line(opts: &Opts) -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_kb: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let sqlite = Command::new("sqlite3")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "missing".into());
    let load = read("/proc/loadavg");
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "Machine: {cores} cores ({cpu}), {:.1} GiB memory, Linux {}, sqlite3 {sqlite}; futurnal {}; load average at start {}; scale {}",
        mem_kb as f64 / 1_048_576.0,
        read("/proc/sys/kernel/osrelease").trim(),
        revision(),
        load.join(" "),
        opts.scale
    )
}

/// The commit the bench was built from, and whether the tree had changes besides it (cargo
/// builds the working tree).
fn revision() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            format!(
                "{head}{}",
                if dirty { " + uncommitted changes" } else { "" }
            )
        }
        None => "(not a git checkout)".into(),
    }
}

/// The best of `n` runs of `cmd`, which must succeed.
fn best_of(n: usize, mut run: impl FnMut() -> Duration) -> Duration {
    (0..n).map(|_| run()).min().expect("n > 0")
}

/// One `local_files` source of the `sources:` list, run only when triggered.
fn source_yaml(name: &str, path: &Path) -> String {
    format!(
        "  - name: {name}\n    type: local_files\n    path: \"{}\"\n    schedule: manual\n",
        path.display()
    )
}

/// A temporary home for the real binary: HOME and FUTURNAL_HOME under `root`, a clean
/// environment, and every daemon it started killed when dropped.
struct Home {
    root: PathBuf,
    /// The futurnal it runs: the one cargo built, or a baseline (`FUTURNAL_BENCH_BASELINE_BIN`).
    bin: PathBuf,
    daemons: RefCell<Vec<i64>>,
}

impl Home {
    fn new(root: &Path) -> Home {
        Home::running(root, Path::new(BIN))
    }
    fn running(root: &Path, bin: &Path) -> Home {
        let h = Home {
            root: root.to_path_buf(),
            bin: bin.to_path_buf(),
            daemons: RefCell::default(),
        };
        std::fs::create_dir_all(h.futurnal_home().join("config")).unwrap();
        for dir in [
            h.home(),
            h.futurnal_home(),
            h.futurnal_home().join("config"),
        ] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        h
    }
    fn home(&self) -> PathBuf {
        self.root.join("home")
    }
    fn futurnal_home(&self) -> PathBuf {
        self.home().join(".futurnal")
    }
    fn queue_db(&self) -> PathBuf {
        self.futurnal_home().join("queue.db")
    }
    fn store_db(&self) -> PathBuf {
        self.futurnal_home().join("store.db")
    }
    /// One `local_files` source, run only when triggered.
    fn configure(&self, name: &str, path: &Path) {
        self.write_config(&format!("sources:\n{}", source_yaml(name, path)));
    }
    fn write_config(&self, yaml: &str) {
        std::fs::write(self.futurnal_home().join("config/orchestrator.yaml"), yaml).unwrap();
    }
    fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("FUTURNAL_HOME", self.futurnal_home())
            .env("NO_COLOR", "1")
            .env("TZ", "UTC")
            .current_dir(&self.root)
            .stdin(Stdio::null());
        c
    }
    /// Run to its end, which must succeed; a daemon it started is remembered for `Drop`.
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().expect("futurnal runs");
        if let Some(pid) = self.lock_pid() {
            let mut d = self.daemons.borrow_mut();
            if !d.contains(&pid) {
                d.push(pid);
            }
        }
        assert!(
            out.status.success(),
            "futurnal {args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
    fn timed_ok(&self, args: &[&str]) -> Duration {
        let t = Instant::now();
        self.ok(args);
        t.elapsed()
    }
    fn lock_pid(&self) -> Option<i64> {
        let text = std::fs::read_to_string(self.futurnal_home().join("orchestrator.lock")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["pid"].as_i64()
    }
    /// `kill -9` the running daemon and wait until it is gone.
    fn kill9(&self) {
        let pid = self.lock_pid().expect("a running daemon");
        assert!(
            kill9_and_wait(pid),
            "pid {pid} still runs 10 s after kill -9"
        );
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        for pid in self.daemons.borrow().iter() {
            // No panic here: this may run while unwinding.
            if !kill9_and_wait(*pid) {
                eprintln!("warning: pid {pid} still runs 10 s after kill -9");
            }
        }
    }
}

/// SIGKILL `pid` and poll (with a deadline) until it is gone, or a zombie whose other threads
/// have all exited: only then has the kernel closed its files and released its locks (a
/// multi-threaded process's leader turns zombie while its other threads still run).
fn kill9_and_wait(pid: i64) -> bool {
    let alive = || {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0);
        !(zombie && threads <= 1)
    };
    if !alive() {
        return true;
    }
    let _ = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// `futurnal --version`, best of 10: what any command costs before it does anything.
fn process_floor(home: &Home) -> Duration {
    best_of(10, || home.timed_ok(&["--version"]))
}

fn ingest_and_list(opts: &Opts, root: &Path, table: &mut Table) {
    let want_ingest = opts.wants("ingest");
    let want_list = opts.wants("list");
    if !(want_ingest || want_list || opts.wants("rescan")) {
        return;
    }
    let floor = process_floor(&Home::new(&root.join("floor")));
    if want_ingest || want_list {
        let files = opts.n(10_000, 10);
        let corpus = root.join("corpus");
        std::fs::create_dir_all(&corpus).unwrap();
        let bytes = generate(&corpus, files, 20 * 1024);
        // Warm the page cache the same way for every contender.
        timed(
            Command::new("find")
                .arg(&corpus)
                .args(["-type", "f", "-exec", "cat", "{}", "+"]),
        );
        let home = Home::new(&root.join("ingest-home"));
        home.configure("notes", &corpus);
        let t = Instant::now();
        home.ok(&["orchestrator", "start"]);
        home.ok(&["orchestrator", "sources", "trigger", "notes", "--wait"]);
        let daemon = t.elapsed();
        if want_ingest {
            let copy = |db: &str, sql: &str| {
                timed(
                    Command::new("sqlite3")
                        .arg(root.join(db))
                        .arg(sql)
                        .current_dir(root),
                )
            };
            let create =
                "CREATE TABLE files AS SELECT name, mode, mtime, data FROM fsdir('corpus');";
            let rollback = copy("ref-rollback.db", create);
            let wal = copy(
                "ref-wal.db",
                &format!("PRAGMA journal_mode = WAL; {create}"),
            );
            let (reference, which) = if wal < rollback {
                (wal, "WAL")
            } else {
                (rollback, "rollback")
            };
            let theirs = mbps(bytes, reference);
            let what = format!("{} files, {:.0} MB", thousands(files), mb(bytes));
            let ours = mbps(bytes, daemon);
            table.push(
                format!("fresh ingest, {what}, daemon (start → `trigger --wait` done)"),
                format!("{ours:.0} MB/s ({:.2} s)", daemon.as_secs_f64()),
                format!(
                    "sqlite3 `fsdir()` raw copy, {which}: {theirs:.0} MB/s ({:.2} s; rollback {:.2} s, WAL {:.2} s)",
                    reference.as_secs_f64(),
                    rollback.as_secs_f64(),
                    wal.as_secs_f64()
                ),
                format!("{:.2}×", ours / theirs),
                "≥ 1.0×",
                Some(ours >= theirs),
            );
            let (took, report) = ingest(&source("notes", &corpus), &root.join("library-store.db"));
            assert_eq!(
                report.counts.new as usize, files,
                "every note becomes a document"
            );
            let ours = mbps(bytes, took);
            table.push(
                format!("fresh ingest, {what}, library `Run` alone (no daemon)"),
                format!("{ours:.0} MB/s ({:.2} s)", took.as_secs_f64()),
                format!("the same raw copy: {theirs:.0} MB/s"),
                format!("{:.2}×", ours / theirs),
                "≥ 1.0×",
                Some(ours >= theirs),
            );
        }
        if want_list {
            list_row(&home, files, floor, table);
        }
        home.ok(&["orchestrator", "stop"]);
    }
    if opts.wants("rescan") || want_list {
        let many = opts.n(100_000, 100);
        let tree = root.join("many");
        std::fs::create_dir_all(&tree).unwrap();
        generate(&tree, many, 512);
        let home = Home::new(&root.join("rescan-home"));
        home.configure("many", &tree);
        let src = source("many", &tree);
        ingest(&src, &home.store_db());
        if opts.wants("rescan") {
            let find = best_of(3, || {
                timed(
                    Command::new("find")
                        .arg(&tree)
                        .args(["-type", "f", "-printf", "%s %T@\\n"]),
                )
            });
            let rescan = best_of(3, || {
                let (took, report) = ingest(&src, &home.store_db());
                assert_eq!(
                    report.counts.new + report.counts.changed,
                    0,
                    "nothing changed"
                );
                took
            });
            let ratio = rescan.as_secs_f64() / find.as_secs_f64();
            table.push(
                format!("no-change rescan, {} files (best of 3)", thousands(many)),
                ms(rescan),
                format!("`find -printf '%s %T@'`: {}", ms(find)),
                format!("{ratio:.2}×"),
                "≤ 1.0×",
                Some(ratio <= 1.0),
            );
        }
        if want_list {
            list_row(&home, many, floor, table);
        }
    }
}

/// `sources list` on `home`'s store of `docs` documents, warm, best of 10.
fn list_row(home: &Home, docs: usize, floor: Duration, table: &mut Table) {
    let size = db_size(&home.store_db());
    home.ok(&["orchestrator", "sources", "list"]);
    let list = best_of(10, || home.timed_ok(&["orchestrator", "sources", "list"]));
    table.push(
        format!(
            "`sources list`, store of {} documents / {} (warm, best of 10)",
            thousands(docs),
            mb_text(size)
        ),
        ms(list),
        format!("`futurnal --version` (process start): {}", ms(floor)),
        format!("{:.1}×", list.as_secs_f64() / floor.as_secs_f64()),
        "≤ 5 ms",
        Some(list <= Duration::from_millis(5)),
    );
}

/// Fill queue.db (made by the real binary, daemon stopped) with `finished` succeeded source
/// runs and `pending` item jobs, each with the events and telemetry rows the daemon writes; the
/// schema's triggers keep `job_state_counts` true.
fn fill_queue(db: &Path, source: &str, finished: usize, pending: usize) {
    let conn = rusqlite::Connection::open(db).expect("queue.db opens");
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let now = now_ms();
    // Finished recently, one per millisecond, so retention keeps them while the bench runs.
    let t0 = now - finished as i64 - 1_000;
    let (succeeded, pend) = (JobState::Succeeded.as_str(), JobState::Pending.as_str());
    let running = JobState::Running.as_str();
    let (run, item) = (JobKind::SourceRun.as_str(), JobKind::Item.as_str());
    conn.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {finished})
         INSERT INTO jobs (source, kind, state, trigger, scheduled_for, attempts, max_attempts,
             created_at, updated_at, started_at, finished_at, items_seen, docs_unchanged, bytes)
         SELECT '{source}', '{run}', '{succeeded}', 'manual', {t0} + i, 1, 3, {t0} + i, {t0} + i,
             {t0} + i, {t0} + i, 10, 10, 10000 FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {pending})
         INSERT INTO jobs (source, kind, item, state, trigger, scheduled_for, max_attempts,
             created_at, updated_at)
         SELECT '{source}', '{item}', 'item-' || i, '{pend}', 'retry', {now}, 3, {now}, {now} FROM n;
         INSERT INTO job_events (job_id, at, from_state, to_state, actor, reason)
             SELECT id, created_at, NULL, '{pend}', 'cli', 'queued (manual)' FROM jobs;
         INSERT INTO job_events (job_id, at, from_state, to_state, actor, reason)
             SELECT id, started_at, '{pend}', '{running}', 'daemon', 'attempt 1 of 3'
             FROM jobs WHERE state = '{succeeded}';
         INSERT INTO job_events (job_id, at, from_state, to_state, actor, reason)
             SELECT id, finished_at, '{running}', '{succeeded}', 'daemon', '10 items'
             FROM jobs WHERE state = '{succeeded}';
         INSERT INTO telemetry_attempts (job_id, source, kind, outcome, started_at, finished_at,
             bytes, items, documents)
             SELECT id, source, kind, state, started_at, finished_at, bytes, items_seen, 0
             FROM jobs WHERE state = '{succeeded}';
         COMMIT;"
    ))
    .expect("the generated jobs insert");
    let counted: i64 = conn
        .query_row(
            "SELECT n FROM job_state_counts WHERE state = ?1",
            [succeeded],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        counted >= finished as i64,
        "job_state_counts follows the inserts"
    );
}

/// `orchestrator start` after `kill -9`, best of 3 (the first start is untimed).
fn restart_best(home: &Home) -> Duration {
    if home
        .lock_pid()
        .is_none_or(|p| !Path::new(&format!("/proc/{p}")).exists())
    {
        home.ok(&["orchestrator", "start"]);
    }
    best_of(3, || {
        home.kill9();
        home.timed_ok(&["orchestrator", "start"])
    })
}

fn queue_db_figures(opts: &Opts, root: &Path, table: &mut Table) {
    let (status, restart) = (opts.wants("status"), opts.wants("restart"));
    if !(status || restart) {
        return;
    }
    let notes = root.join("queue-notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("a.md"), "# A\n\ntext\n").unwrap();
    let empty_restart = restart.then(|| {
        let home = Home::new(&root.join("queue-empty"));
        home.configure("notes", &notes);
        let d = restart_best(&home);
        home.ok(&["orchestrator", "stop"]);
        d
    });
    for (i, full) in [10_000, 100_000, 1_000_000].into_iter().enumerate() {
        let finished = opts.n(full, 100);
        let pending = finished / 10;
        let home = Home::new(&root.join(format!("queue-{i}")));
        home.configure("notes", &notes);
        // The real binary creates queue.db in the real schema; the source is paused so the
        // daemon leaves the pending jobs waiting while the commands are timed.
        home.ok(&["orchestrator", "start"]);
        home.ok(&["orchestrator", "stop"]);
        home.ok(&[
            "orchestrator",
            "sources",
            "pause",
            "notes",
            "--reason",
            "bench",
        ]);
        let t = Instant::now();
        fill_queue(&home.queue_db(), "notes", finished, pending);
        eprintln!(
            "  (generated {} finished + {} pending jobs in {:.1} s)",
            thousands(finished),
            thousands(pending),
            t.elapsed().as_secs_f64()
        );
        home.ok(&["orchestrator", "start"]);
        let what = format!(
            "{} jobs ({} finished + {} pending; queue.db {})",
            thousands(finished + pending),
            thousands(finished),
            thousands(pending),
            mb_text(db_size(&home.queue_db()))
        );
        if status {
            let ours = best_of(7, || {
                home.timed_ok(&["orchestrator", "status", "--format", "json"])
            });
            let theirs = best_of(7, || {
                timed(
                    Command::new("sqlite3")
                        .arg(home.queue_db())
                        .arg("select state, count(*) from jobs group by state"),
                )
            });
            let ratio = ours.as_secs_f64() / theirs.as_secs_f64();
            table.push(
                format!("`orchestrator status --format json`, {what} (best of 7)"),
                ms(ours),
                format!(
                    "`sqlite3 queue.db \"select state, count(*) … group by state\"`: {}",
                    ms(theirs)
                ),
                format!("{ratio:.2}×"),
                "≤ 0.15×",
                Some(ratio <= 0.15),
            );
        }
        if let Some(empty) = empty_restart {
            let ours = restart_best(&home);
            table.push(
                format!("start to ready after `kill -9`, {what} (best of 3)"),
                ms(ours),
                format!("the same on an empty queue: {}", ms(empty)),
                format!("{:.1}×", ours.as_secs_f64() / empty.as_secs_f64()),
                "≤ 250 ms",
                Some(ours <= Duration::from_millis(250)),
            );
        }
        home.ok(&["orchestrator", "stop"]);
    }
}

/// What one worker thread saw. `claims`: every claim's time, busy ones included.
#[derive(Default)]
struct WorkerTally {
    claims: Vec<Duration>,
    finished: usize,
    coalesced: usize,
    empty_claims: usize,
    busy: usize,
}

#[derive(PartialEq)]
enum Claim {
    Finished,
    Empty,
    Busy,
}

fn busy(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
}

/// What one durable commit costs here: `n` one-row transactions through the same SQLite
/// library in the same settings as queue.db (WAL, synchronous FULL). A job of the queue is three
/// such transactions (enqueue, claim, finish), so this bounds the rate a single writer can reach.
fn durable_commit(dir: &Path, n: usize) -> Duration {
    let conn = rusqlite::Connection::open(dir.join("commit-floor.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE t (x INTEGER);",
    )
    .unwrap();
    let t = Instant::now();
    for i in 0..n {
        conn.execute("INSERT INTO t VALUES (?1)", [i as i64])
            .unwrap();
    }
    t.elapsed() / n as u32
}

/// How many jobs a batched step queues, claims and finishes in one transaction each.
const BATCH: usize = 64;

/// Returns each worker count's rate (jobs/s) of the per-job rows, the daemon's reference.
fn queue_throughput(opts: &Opts, root: &Path, table: &mut Table) -> Vec<(usize, f64)> {
    let mut rates = Vec::new();
    if !opts.wants("queue") {
        return rates;
    }
    for workers in [1usize, 2, 8] {
        for batch in [1, BATCH] {
            let rate = queue_row(opts, root, workers, batch, table);
            if batch == 1 {
                rates.push((workers, rate));
            }
        }
    }
    rates
}

/// One row: `workers` threads, each with its own connection, each step queueing, claiming and
/// finishing `batch` jobs (one transaction each: `batch` 1 is the per-job API, more the batched
/// one). Returns jobs/s.
fn queue_row(opts: &Opts, root: &Path, workers: usize, batch: usize, table: &mut Table) -> f64 {
    let total = opts.n(20_000, 200);
    let dir = root.join(format!("throughput-{workers}-{batch}"));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("queue.db");
    drop(Queue::open(&db).expect("queue.db is created"));
    // Measured just before, on the same disk: its fsync time varies with what else runs.
    let commit = durable_commit(&dir, opts.n(1_000, 100));
    let floor = batch as f64 / (3.0 * commit.as_secs_f64());
    // A source has at most one waiting and one running run: per job, a few sources per worker
    // so each worker cycles through its own; batched, one per job of a step.
    let per_worker_sources = if batch == 1 {
        4.max(16 / workers)
    } else {
        batch
    };
    let sources: Vec<Vec<futurnal::SourceConfig>> = (0..workers)
        .map(|w| {
            (0..per_worker_sources)
                .map(|k| source(&format!("w{w}s{k}"), &dir))
                .collect()
        })
        .collect();
    let all: Vec<futurnal::SourceConfig> = sources.iter().flatten().cloned().collect();
    let claimable = claimable(&all);
    let steps = (total / workers).div_ceil(batch);
    let barrier = Arc::new(Barrier::new(workers + 1));
    let (tallies, elapsed) = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .iter()
            .enumerate()
            .map(|(w, own)| {
                let barrier = barrier.clone();
                let (db, claimable) = (&db, &claimable);
                scope.spawn(move || {
                    let q = Queue::open(db).expect("queue.db opens");
                    let instance = format!("bench-{w}");
                    let mut tally = WorkerTally::default();
                    // A busy queue.db (the 5 s busy timeout ran out) is counted and the step
                    // tried again, as the daemon's next tick would.
                    let claim_step = |tally: &mut WorkerTally| -> Claim {
                        let t = Instant::now();
                        let claimed = if batch == 1 {
                            q.claim(now_ms(), &instance, 60_000, claimable)
                                .map(|j| j.into_iter().collect::<Vec<_>>())
                        } else {
                            q.claim_batch(now_ms(), &instance, 60_000, claimable, batch)
                        };
                        tally.claims.push(t.elapsed());
                        match claimed {
                            Ok(jobs) if jobs.is_empty() => {
                                tally.empty_claims += 1;
                                Claim::Empty
                            }
                            Ok(jobs) => {
                                loop {
                                    let done = if batch == 1 {
                                        q.finish_succeeded(&jobs[0], now_ms()).map(usize::from)
                                    } else {
                                        q.finish_succeeded_many(&jobs, now_ms())
                                    };
                                    match done {
                                        Ok(n) => break assert_eq!(n, jobs.len(), "ours"),
                                        Err(e) if busy(&e) => tally.busy += 1,
                                        Err(e) => panic!("finish: {e}"),
                                    }
                                }
                                tally.finished += jobs.len();
                                Claim::Finished
                            }
                            Err(e) if busy(&e) => {
                                tally.busy += 1;
                                Claim::Busy
                            }
                            Err(e) => panic!("claim: {e}"),
                        }
                    };
                    let refs: Vec<&futurnal::SourceConfig> = own.iter().collect();
                    barrier.wait();
                    for i in 0..steps {
                        let queued = if batch == 1 {
                            q.enqueue_run(&own[i % own.len()], now_ms())
                                .map(usize::from)
                        } else {
                            q.enqueue_runs(&refs, now_ms())
                        };
                        match queued {
                            Ok(new) => tally.coalesced += batch - new,
                            Err(e) if busy(&e) => tally.busy += 1,
                            Err(e) => panic!("enqueue: {e}"),
                        }
                        claim_step(&mut tally);
                    }
                    // Whatever is still waiting (its source was running when claimed).
                    while claim_step(&mut tally) != Claim::Empty {}
                    tally
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        let tallies: Vec<WorkerTally> = handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect();
        (tallies, t.elapsed())
    });
    let conn = rusqlite::Connection::open(&db).unwrap();
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM jobs WHERE state != ?1",
            [JobState::Succeeded.as_str()],
            |r| r.get(0),
        )
        .unwrap();
    let mut claims: Vec<Duration> = tallies.iter().flat_map(|t| t.claims.clone()).collect();
    claims.sort();
    let pct = |p: f64| claims[((claims.len() as f64 - 1.0) * p).round() as usize];
    let finished: usize = tallies.iter().map(|t| t.finished).sum();
    let coalesced: usize = tallies.iter().map(|t| t.coalesced).sum();
    let empty: usize = tallies.iter().map(|t| t.empty_claims).sum();
    let busy: usize = tallies.iter().map(|t| t.busy).sum();
    let rate = finished as f64 / elapsed.as_secs_f64();
    let (p50, p99) = (pct(0.50), pct(0.99));
    let max = claims.last().copied().unwrap_or_default();
    let note = format!(
        ", max {}; {coalesced} enqueues joined a waiting run, {empty} empty claims, {busy} steps refused busy (5 s busy timeout), {left} jobs left unfinished",
        ms(max)
    );
    let (how, per) = if batch == 1 {
        (
            "one job per transaction".to_string(),
            "the 3 commits a job takes",
        )
    } else {
        (
            format!(
                "batches of {batch} jobs per transaction (enqueue_runs, claim_batch, finish of {batch})"
            ),
            "3 commits per batch",
        )
    };
    table.push(
        format!(
            "queue throughput, enqueue + claim + finish of {} no-op jobs, durable, library queue API, {how}, {workers} worker{}",
            thousands(finished),
            if workers == 1 { "" } else { "s" }
        ),
        format!(
            "{rate:.0} jobs/s; p50 {}, p99 {} per claim call{note}",
            ms(p50),
            ms(p99)
        ),
        format!(
            "one durable commit (1-row transaction, WAL, synchronous FULL): {} → {floor:.0} jobs/s at {per} on one writer; literature, not measured here: goqite ~18.5k/s (SQLite), Sidekiq ~23.5k/s, River ~46k/s (PostgreSQL)",
            ms(commit)
        ),
        format!(
            "{:.2}× the commit floor; {:.2}× goqite's",
            rate / floor,
            rate / 18_500.0
        ),
        "≥ 25k jobs/s, p99 claim ≤ 5 ms",
        Some(rate >= 25_000.0 && p99 <= Duration::from_millis(5)),
    );
    rate
}

/// Queue throughput through the daemon: `jobs` runs of sources with empty folders (no-op jobs)
/// queued by SQL while it is stopped, then run by a daemon with `workers` workers (the hardware
/// cap off, so 8 runs on any machine). The rate is read from the jobs' own timestamps: jobs over
/// the time from the first claim to the last finish.
fn daemon_throughput(opts: &Opts, root: &Path, library: &[(usize, f64)], table: &mut Table) {
    if !opts.wants("queue") {
        return;
    }
    let jobs = opts.n(200, 20);
    // A baseline build runs the same figure in the same run, each worker count right after ours.
    let baseline = std::env::var_os("FUTURNAL_BENCH_BASELINE_BIN").map(PathBuf::from);
    let bins: Vec<(PathBuf, &str)> = std::iter::once((PathBuf::from(BIN), ""))
        .chain(baseline.map(|b| (b, ", baseline build (FUTURNAL_BENCH_BASELINE_BIN)")))
        .collect();
    for workers in [1usize, 2, 8] {
        for (k, (bin, label)) in bins.iter().enumerate() {
            let dir = root.join(format!("daemon-throughput-{workers}-{k}"));
            let home = Home::running(&dir, bin);
            let mut yaml = format!(
                "workers:\n  max_workers: {workers}\n  hardware_cap_enabled: false\nsources:\n"
            );
            for i in 0..jobs {
                let folder = dir.join(format!("empty/s{i}"));
                std::fs::create_dir_all(&folder).unwrap();
                yaml.push_str(&source_yaml(&format!("s{i}"), &folder));
            }
            home.write_config(&yaml);
            home.ok(&["orchestrator", "start"]);
            home.ok(&["orchestrator", "stop"]);
            let (pend, run) = (JobState::Pending.as_str(), JobKind::SourceRun.as_str());
            let now = now_ms();
            let conn = rusqlite::Connection::open(home.queue_db()).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            conn.execute_batch(&format!(
                "BEGIN;
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {jobs} - 1)
             INSERT INTO jobs (source, kind, state, trigger, scheduled_for, max_attempts,
                 created_at, updated_at)
             SELECT 's' || i, '{run}', '{pend}', 'manual', {now}, 3, {now}, {now} FROM n;
             INSERT INTO job_events (job_id, at, from_state, to_state, actor, reason)
                 SELECT id, created_at, NULL, '{pend}', 'cli', 'queued (manual)' FROM jobs
                 WHERE state = '{pend}';
             COMMIT;"
            ))
            .expect("the runs are queued");
            home.ok(&["orchestrator", "start"]);
            // A failed run would wait for its retry's backoff: only pending and running count as
            // still to do, and the row says how many succeeded.
            let open = format!(
                "'{}', '{}'",
                JobState::Pending.as_str(),
                JobState::Running.as_str()
            );
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                let waiting: i64 = conn
                    .query_row(
                        &format!("SELECT count(*) FROM jobs WHERE state IN ({open})"),
                        [],
                        |r| r.get(0),
                    )
                    .unwrap();
                if waiting == 0 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{waiting} jobs still open after 600 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            let (done, first, last, ok): (i64, i64, i64, i64) = conn
                .query_row(
                    "SELECT count(*), min(started_at), max(finished_at), sum(state = ?1) FROM jobs",
                    [JobState::Succeeded.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .unwrap();
            let mut runs: Vec<i64> = conn
                .prepare("SELECT finished_at - started_at FROM jobs")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            runs.sort();
            home.ok(&["orchestrator", "stop"]);
            let span = Duration::from_millis((last - first).max(1) as u64);
            let rate = done as f64 / span.as_secs_f64();
            let library_rate = library
                .iter()
                .find(|(w, _)| *w == workers)
                .map_or(f64::NAN, |(_, r)| *r);
            table.push(
            format!(
                "queue throughput through the daemon: {done} no-op source runs (empty folders), {workers} worker{}{label}",
                if workers == 1 { "" } else { "s" }
            ),
            format!(
                "{rate:.1} jobs/s ({} from first claim to last finish); a run takes p50 {} ms, p99 {} ms; {} of {done} succeeded",
                ms(span),
                runs[runs.len() / 2],
                runs[(runs.len() - 1) * 99 / 100],
                ok
            ),
            format!("the library queue API, one job per transaction, {workers} worker{}: {library_rate:.0} jobs/s", if workers == 1 { "" } else { "s" }),
            format!("{:.3}×", rate / library_rate),
            "≥ 25k jobs/s",
            Some(rate >= 25_000.0),
        );
        }
    }
}

/// The book's time comes from `benches/figures.sh --book` ("SECONDS STATUS").
fn book_row(opts: &Opts, table: &mut Table) {
    if !opts.wants("book") {
        return;
    }
    let figure =
        "whole book verified by the harness, warm build (`cargo test --test book`)".to_string();
    match std::env::var("FUTURNAL_BENCH_BOOK") {
        Ok(v) => {
            let mut parts = v.split_whitespace();
            let secs: f64 = parts
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            let ok = parts.next() == Some("0");
            table.push(
                figure,
                format!("{secs:.0} s{}", if ok { "" } else { " (the book FAILED)" }),
                "—".into(),
                "—".into(),
                "≤ 30 s",
                Some(ok && secs <= 30.0),
            );
        }
        Err(_) => table.push(
            figure,
            "not run (`benches/figures.sh --book` times it; long)".into(),
            "—".into(),
            "—".into(),
            "≤ 30 s",
            None,
        ),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` lists.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let opts = Opts::from_env();
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path();
    let machine = machine_line(&opts);
    eprintln!("{machine}");
    let mut table = Table::default();
    let t = Instant::now();
    ingest_and_list(&opts, root, &mut table);
    queue_db_figures(&opts, root, &mut table);
    let library = queue_throughput(&opts, root, &mut table);
    daemon_throughput(&opts, root, &library, &mut table);
    book_row(&opts, &mut table);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!("{machine}");
    println!(
        "Took {:.0} s; load average at the end {}.",
        t.elapsed().as_secs_f64(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    table.print();
}
