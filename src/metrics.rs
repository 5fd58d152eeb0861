//! Prometheus metrics: the text exposition format (0.0.4) computed from queue.db and store.db, and
//! the daemon's opt-in loopback listener that serves it at `/metrics`.
//!
//! Owns: `render_prometheus` (what `telemetry export --format prometheus` prints; the listener
//! serves the same text), and `serve`, the listener thread.
//! Invariants: metrics only read (queue.db through a `query_only` connection, store.db through
//! `Store::stats`); a database that cannot be read is `futurnal_database_readable 0` with its
//! figures left out, never a healthy-looking zero; labels are source names, states, kinds,
//! outcomes, error classes and database names, never a path or an item. Counters count the
//! attempts finished since the latest daemon instance started, so they start again exactly when
//! the daemon restarts (as a process's own counters do); the listener adds only attempts it has
//! not counted, so retention never makes one go down
//! (`tests::counters_never_go_down_when_old_attempts_are_pruned`). store.db's figures are read at
//! every scrape: one `source_stats` row per source, and (WAL) its readers never block writers.
//! The listener binds loopback only (the configuration refuses anything else), runs on its own
//! thread with its own connections (queue.db is WAL: its readers never block the daemon), answers
//! one client at a time, reading at most `MAX_REQUEST` bytes within `CLIENT_DEADLINE` in all
//! (`tests::a_silent_or_dribbling_client_holds_the_listener_only_until_its_deadline`), and stops
//! when its `Listener` is dropped (waiting at most for the client it is answering).
//! `tests/prometheus.rs`: a real Prometheus scrapes it.
//! Health check states come from the probe the operator layer registers (`set_health_probe`,
//! `health::run` underneath): `health` reads the daemon's lock and recorded configuration, and the
//! daemon starts this listener, so importing `health` here would make an import cycle.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use crate::clock::now_ms;
use crate::home::Home;
use crate::jobs::JobState;
use crate::queue::QueueDb;
use crate::store::Store;

/// Upper bounds of the job duration histogram, in seconds.
const DURATION_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];

/// The request head a client may send (a scraper sends a few hundred bytes).
const MAX_REQUEST: usize = 8 * 1024;
/// How long one client may take to send its request and read the answer, in all.
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);

/// One metric family being written: HELP and TYPE once, then its samples.
struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// The metrics of this home, in Prometheus text exposition format 0.0.4. Reads only; a database
/// that cannot be read leaves its metrics out and says so in `futurnal_database_readable`.
/// Each health check's name and level (0 ok, 1 warn, 2 fail), for `futurnal_health_check`.
pub type HealthProbe = fn(&Home) -> Vec<(&'static str, u8)>;

static HEALTH_PROBE: OnceLock<HealthProbe> = OnceLock::new();

/// Register how health is checked (once per process, by the command line before it dispatches).
pub fn set_health_probe(probe: HealthProbe) {
    let _ = HEALTH_PROBE.set(probe);
}

pub fn render_prometheus(home: &Home) -> String {
    render(home, &mut Kept::default())
}

/// `render_prometheus`, adding to counters kept from earlier calls (the listener's).
fn render(home: &Home, kept: &mut Kept) -> String {
    let now = now_ms();
    let mut out = Out {
        text: String::new(),
    };
    let queue = QueueDb::connect_read_only(&home.queue_db())
        .map_err(|e| e.to_string())
        .and_then(|db| {
            let db = db.ok_or_else(|| "no queue.db yet".to_string())?;
            // Belt and braces: nothing here writes, and SQLite now refuses it if it ever did.
            db.conn()
                .pragma_update(None, "query_only", true)
                .map_err(|e| e.to_string())?;
            Ok(db)
        });
    // Written aside and kept only whole: a read that fails halfway shows no figure of it.
    let mut queue_out = Out {
        text: String::new(),
    };
    let queue_ok = match &queue {
        Ok(db) => queue_metrics(&mut queue_out, db, kept, now),
        Err(e) => Err(e.clone()),
    };
    if queue_ok.is_ok() {
        out.text.push_str(&queue_out.text);
    }
    drop(queue);
    if let Err(e) = &queue_ok {
        tracing::debug!("metrics: queue.db not read: {e}");
    }

    let figures = store_figures(home);
    if let Some(rows) = &figures {
        out.family(
            "futurnal_source_documents",
            "gauge",
            "Documents in store.db per source (deleted ones excluded).",
        );
        for (source, documents, _) in rows {
            out.sample(
                "futurnal_source_documents",
                &[("source", source)],
                *documents as f64,
            );
        }
        out.family(
            "futurnal_source_bytes",
            "gauge",
            "Bytes of the items behind the documents in store.db, per source.",
        );
        for (source, _, bytes) in rows {
            out.sample(
                "futurnal_source_bytes",
                &[("source", source)],
                *bytes as f64,
            );
        }
    }
    let store_ok = figures.is_some();

    if let Some(probe) = HEALTH_PROBE.get() {
        out.family(
            "futurnal_health_check",
            "gauge",
            "Each health check's level, as `futurnal orchestrator health` reports it: 0 ok, 1 warn, 2 fail.",
        );
        for (check, level) in probe(home) {
            out.sample(
                "futurnal_health_check",
                &[("check", check)],
                f64::from(level),
            );
        }
    }

    out.family(
        "futurnal_home_free_bytes",
        "gauge",
        "Free disk space on the filesystem of the futurnal home, in bytes.",
    );
    if let Ok(free) = crate::home::free_bytes(home.root()) {
        out.sample("futurnal_home_free_bytes", &[], free as f64);
    }

    out.family(
        "futurnal_database_readable",
        "gauge",
        "1 when the database could be read for these metrics, 0 when it could not (missing, damaged, or not permitted).",
    );
    out.sample(
        "futurnal_database_readable",
        &[("database", "queue")],
        f64::from(u8::from(queue_ok.is_ok())),
    );
    out.sample(
        "futurnal_database_readable",
        &[("database", "store")],
        f64::from(u8::from(store_ok)),
    );
    out.text
}

fn queue_metrics(out: &mut Out, db: &QueueDb, kept: &mut Kept, now: i64) -> Result<(), String> {
    let conn = db.conn();
    let counts = db.job_counts().map_err(|e| e.to_string())?;
    out.family("futurnal_jobs", "gauge", "Jobs in queue.db by state.");
    for (state, n) in &counts {
        out.sample("futurnal_jobs", &[("state", state.as_str())], *n as f64);
    }

    let instance = db.latest_instance().map_err(|e| e.to_string())?;
    // Counters count what finished since this instance started (see the header).
    let since = instance.as_ref().map_or(0, |i| i.started_at);
    if let Some(i) = &instance {
        out.family(
            "futurnal_daemon_start_time_seconds",
            "gauge",
            "When the latest daemon instance started (Unix time); the counters start there.",
        );
        out.sample(
            "futurnal_daemon_start_time_seconds",
            &[],
            seconds(i.started_at),
        );
        out.family(
            "futurnal_daemon_heartbeat_timestamp_seconds",
            "gauge",
            "The latest daemon instance's last heartbeat (Unix time; every 5 s while it runs).",
        );
        out.sample(
            "futurnal_daemon_heartbeat_timestamp_seconds",
            &[],
            seconds(i.heartbeat_at),
        );
        let running = i.stopped_at.is_none();
        out.family(
            "futurnal_workers_busy",
            "gauge",
            "Jobs the daemon is running now (as of its last heartbeat).",
        );
        out.sample(
            "futurnal_workers_busy",
            &[],
            if running { i.workers_busy as f64 } else { 0.0 },
        );
        out.family(
            "futurnal_workers_max",
            "gauge",
            "Jobs the daemon may run at once.",
        );
        out.sample("futurnal_workers_max", &[], i.workers_max as f64);
    }

    let oldest_due: Option<i64> = conn
        .query_row(
            "SELECT MIN(scheduled_for) FROM jobs WHERE state = ?1 AND scheduled_for <= ?2",
            rusqlite::params![JobState::Pending, now],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    out.family(
        "futurnal_oldest_pending_job_age_seconds",
        "gauge",
        "How long the longest-waiting due job has waited to be claimed (0 when none waits).",
    );
    out.sample(
        "futurnal_oldest_pending_job_age_seconds",
        &[],
        oldest_due.map_or(0.0, |t| seconds(now.saturating_sub(t).max(0))),
    );
    let oldest_running: Option<i64> = conn
        .query_row(
            "SELECT MIN(started_at) FROM jobs WHERE state = ?1",
            [JobState::Running],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    out.family(
        "futurnal_oldest_running_job_age_seconds",
        "gauge",
        "How long the longest-running job has run (0 when none runs).",
    );
    out.sample(
        "futurnal_oldest_running_job_age_seconds",
        &[],
        oldest_running.map_or(0.0, |t| seconds(now.saturating_sub(t).max(0))),
    );

    if db.user_version().map_err(|e| e.to_string())? >= 3 {
        kept.advance(
            conn,
            instance.as_ref().map(|i| i.instance_id.as_str()),
            since,
        )
        .map_err(|e| e.to_string())?;
        kept.write(out);
    }
    if let Ok(facts) = db.file_facts() {
        out.family(
            "futurnal_queue_wal_bytes",
            "gauge",
            "Size of queue.db's write-ahead log, in bytes.",
        );
        out.sample("futurnal_queue_wal_bytes", &[], facts.wal_bytes as f64);
    }
    Ok(())
}

/// (source, documents, bytes) per source.
type StoreFigures = Vec<(String, u64, u64)>;

/// Documents and bytes per source from store.db, in source order; `None` when it cannot be read
/// (nothing ingested yet is an empty list).
fn store_figures(home: &Home) -> Option<StoreFigures> {
    let stats = match Store::open_existing(&home.store_db()) {
        Ok(Some(store)) => store.stats().ok()?,
        Ok(None) => return Some(Vec::new()),
        Err(_) => return None,
    };
    let mut rows: Vec<_> = stats
        .into_iter()
        .map(|(source, s)| (source, s.documents, s.bytes))
        .collect();
    rows.sort();
    Some(rows)
}

/// What the listener keeps between scrapes: the counters and the duration histogram summed from
/// `telemetry_attempts`, to which it adds only the rows it has not seen (by id), so retention
/// pruning old rows never makes a counter go down.
/// `render_prometheus` starts from an empty one.
#[derive(Default)]
struct Kept {
    /// The daemon instance these count for; another one starts them again.
    instance: Option<String>,
    /// The highest `telemetry_attempts.id` counted.
    cursor: i64,
    /// (source, kind, outcome) -> attempts.
    attempts: BTreeMap<(String, String, String), i64>,
    /// source -> bytes, items, documents, milliseconds run by attempts that read something.
    per_source: BTreeMap<String, [i64; 4]>,
    /// (source, class) -> failed attempts.
    failures: BTreeMap<(String, String), i64>,
    /// kind -> count, sum of milliseconds, count at or under each of `DURATION_BUCKETS`.
    durations: BTreeMap<String, (i64, i64, Vec<i64>)>,
}

impl Kept {
    /// Add the attempts finished since `since` (the instance's start) that are not counted yet,
    /// read in one snapshot.
    fn advance(
        &mut self,
        conn: &rusqlite::Connection,
        instance: Option<&str>,
        since: i64,
    ) -> rusqlite::Result<()> {
        if self.instance.as_deref() != instance {
            *self = Kept {
                instance: instance.map(str::to_string),
                ..Kept::default()
            };
        }
        let tx = conn.unchecked_transaction()?;
        let max: i64 = tx.query_row(
            "SELECT COALESCE(MAX(id), 0) FROM telemetry_attempts",
            [],
            |r| r.get(0),
        )?;
        if max < self.cursor {
            // Emptied by retention and written again: every row there is new.
            self.cursor = 0;
        }
        let range = rusqlite::params![self.cursor, max, since];
        {
            let mut stmt = tx.prepare(
                "SELECT source, kind, outcome, COUNT(*), COALESCE(SUM(bytes), 0),
                    COALESCE(SUM(items), 0), COALESCE(SUM(documents), 0),
                    COALESCE(SUM(CASE WHEN bytes > 0 THEN MAX(finished_at - started_at, 0) END), 0)
             FROM telemetry_attempts WHERE id > ?1 AND id <= ?2 AND finished_at >= ?3
             GROUP BY source, kind, outcome",
            )?;
            let mut rows = stmt.query(range)?;
            while let Some(r) = rows.next()? {
                let (source, kind, outcome): (String, String, String) =
                    (r.get(0)?, r.get(1)?, r.get(2)?);
                let sums = self.per_source.entry(source.clone()).or_default();
                for (k, sum) in sums.iter_mut().enumerate() {
                    *sum += r.get::<_, i64>(4 + k)?;
                }
                *self.attempts.entry((source, kind, outcome)).or_default() += r.get::<_, i64>(3)?;
            }
        }
        {
            let mut stmt = tx.prepare(
                "SELECT source, error_class, COUNT(*) FROM telemetry_attempts
             WHERE id > ?1 AND id <= ?2 AND finished_at >= ?3 AND error_class IS NOT NULL
             GROUP BY source, error_class",
            )?;
            let mut rows = stmt.query(range)?;
            while let Some(r) = rows.next()? {
                *self.failures.entry((r.get(0)?, r.get(1)?)).or_default() += r.get::<_, i64>(2)?;
            }
        }
        // One pass: each bucket is a SUM over the same rows.
        let buckets: String = DURATION_BUCKETS
            .iter()
            .map(|b| format!(", SUM(finished_at - started_at <= {})", (b * 1000.0) as i64))
            .collect();
        {
            let mut stmt = tx.prepare(&format!(
                "SELECT kind, COUNT(*), COALESCE(SUM(finished_at - started_at), 0){buckets}
             FROM telemetry_attempts WHERE id > ?1 AND id <= ?2 AND finished_at >= ?3
             GROUP BY kind"
            ))?;
            let mut rows = stmt.query(range)?;
            while let Some(r) = rows.next()? {
                let entry = self
                    .durations
                    .entry(r.get(0)?)
                    .or_insert_with(|| (0, 0, vec![0; DURATION_BUCKETS.len()]));
                entry.0 += r.get::<_, i64>(1)?;
                entry.1 += r.get::<_, i64>(2)?;
                for (i, n) in entry.2.iter_mut().enumerate() {
                    *n += r.get::<_, Option<i64>>(3 + i)?.unwrap_or(0);
                }
            }
        }
        tx.finish()?;
        self.cursor = max;
        Ok(())
    }

    fn write(&self, out: &mut Out) {
        out.family(
            "futurnal_job_attempts_total",
            "counter",
            "Job attempts finished since the daemon started, by source, kind and outcome.",
        );
        for ((source, kind, outcome), n) in &self.attempts {
            out.sample(
                "futurnal_job_attempts_total",
                &[("source", source), ("kind", kind), ("outcome", outcome)],
                *n as f64,
            );
        }
        for (i, (name, help)) in [
            (
                "futurnal_ingested_bytes_total",
                "Bytes read by jobs finished since the daemon started, per source.",
            ),
            (
                "futurnal_ingested_items_total",
                "Items processed by jobs finished since the daemon started, per source.",
            ),
            (
                "futurnal_ingested_documents_total",
                "Documents written by jobs finished since the daemon started, per source.",
            ),
            (
                "futurnal_ingest_seconds_total",
                "Seconds run by the jobs that read something, finished since the daemon started, per source (throughput is bytes over these).",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            out.family(name, "counter", help);
            for (source, sums) in &self.per_source {
                let value = if i == 3 {
                    seconds(sums[i])
                } else {
                    sums[i] as f64
                };
                out.sample(name, &[("source", source)], value);
            }
        }
        out.family(
            "futurnal_job_failures_total",
            "counter",
            "Failed job attempts since the daemon started, by source and error class.",
        );
        for ((source, class), n) in &self.failures {
            out.sample(
                "futurnal_job_failures_total",
                &[("source", source), ("class", class)],
                *n as f64,
            );
        }
        let name = "futurnal_job_duration_seconds";
        out.family(
            name,
            "histogram",
            "Duration of job attempts finished since the daemon started, by kind.",
        );
        for (kind, (count, sum_ms, le)) in &self.durations {
            for (bound, n) in DURATION_BUCKETS.iter().zip(le) {
                let bound = number(*bound);
                out.sample(
                    &format!("{name}_bucket"),
                    &[("kind", kind), ("le", &bound)],
                    *n as f64,
                );
            }
            out.sample(
                &format!("{name}_bucket"),
                &[("kind", kind), ("le", "+Inf")],
                *count as f64,
            );
            out.sample(&format!("{name}_sum"), &[("kind", kind)], seconds(*sum_ms));
            out.sample(&format!("{name}_count"), &[("kind", kind)], *count as f64);
        }
    }
}

/// The running listener; dropping it stops the thread.
pub struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; it sees the flag and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start the `/metrics` listener when `telemetry.metrics_listen` is set (loopback only; the
/// configuration refuses anything else). A listener that cannot bind is logged and the daemon
/// runs without it: metrics are an add-on, never a reason to stop ingesting.
pub fn serve(home: &Home, listen: &str) -> Option<Listener> {
    serve_with(home, listen, CLIENT_DEADLINE)
}

/// `serve`, giving each client `deadline` (tests use a short one).
fn serve_with(home: &Home, listen: &str, deadline: Duration) -> Option<Listener> {
    if listen.is_empty() {
        return None;
    }
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("metrics not served: telemetry.metrics_listen = {listen}: {e}");
            return None;
        }
    };
    if !addr.ip().is_loopback() {
        tracing::error!(
            "metrics not served: telemetry.metrics_listen = {listen} is not a loopback address"
        );
        return None;
    }
    let socket = match TcpListener::bind(addr) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(
                "metrics not served: cannot listen on {addr}: {e}; the orchestrator runs without them (choose another telemetry.metrics_listen and restart)"
            );
            return None;
        }
    };
    let addr = socket.local_addr().unwrap_or(addr);
    let stop = Arc::new(AtomicBool::new(false));
    let home = home.clone();
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let mut kept = Kept::default();
            for conn in socket.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                match conn {
                    Ok(stream) => answer(stream, &home, &mut kept, deadline),
                    // Out of file descriptors, say: wait a little rather than spin.
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
    match thread {
        Ok(t) => {
            tracing::info!("metrics served at http://{addr}/metrics");
            Some(Listener {
                addr,
                stop,
                thread: Some(t),
            })
        }
        Err(e) => {
            tracing::error!("metrics not served: cannot start their thread: {e}");
            None
        }
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq)]
enum Request {
    Metrics,
    NotFound,
    Bad,
}

/// Parse a request head: only `GET /metrics` (with any query string) is served.
fn route(head: &[u8]) -> Request {
    let Some(line) = head.split(|b| *b == b'\n').next() else {
        return Request::Bad;
    };
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Request::Bad;
    }
    let path = target.split('?').next().unwrap_or(target);
    if method == "GET" && path == "/metrics" {
        Request::Metrics
    } else {
        Request::NotFound
    }
}

/// Answer one client within `deadline`, reading at most `MAX_REQUEST` bytes.
fn answer(mut stream: TcpStream, home: &Home, kept: &mut Kept, deadline: Duration) {
    let deadline = Instant::now() + deadline;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let request = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break route(&head);
        }
        if head.len() > MAX_REQUEST {
            break Request::Bad;
        }
    };
    let (status, body) = match request {
        Request::Metrics => ("200 OK", render(home, kept)),
        Request::NotFound => (
            "404 Not Found",
            "not found: metrics are at /metrics\n".into(),
        ),
        Request::Bad => ("400 Bad Request", "bad request\n".into()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() || stream.set_write_timeout(Some(left)).is_err() {
        return;
    }
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_other_than_get_metrics_are_not_found_or_bad() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\n\r\n"), Request::Metrics);
        assert_eq!(
            route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics
        );
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(
            route(b"GET /metrics/../x HTTP/1.1\r\n\r\n"),
            Request::NotFound
        );
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Request::Bad);
        assert_eq!(route(b"\xff\xfe HTTP/9\r\n\r\n"), Request::Bad);
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut out = Out {
            text: String::new(),
        };
        out.family("futurnal_x", "gauge", "a \\ b\nc");
        out.sample("futurnal_x", &[("source", "a\"b\\c\nd")], 1.5);
        out.sample("futurnal_x", &[], f64::INFINITY);
        assert_eq!(
            out.text,
            "# HELP futurnal_x a \\\\ b\\nc\n# TYPE futurnal_x gauge\n\
             futurnal_x{source=\"a\\\"b\\\\c\\nd\"} 1.5\nfuturnal_x +Inf\n"
        );
    }

    /// Every family is declared once with HELP and TYPE before its samples, names follow the
    /// conventions, and the figures equal what queue.db holds; no label carries a path or item.
    #[test]
    fn the_exposition_is_well_formed_and_counts_what_queue_db_holds() {
        use crate::config::Queue as QueueConfig;
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let db = QueueDb::open_for_daemon(&home.queue_db(), &QueueConfig::default()).unwrap();
        let now = now_ms();
        let conn = db.conn();
        for (state, due) in [
            (JobState::Pending, now - 90_000),
            (JobState::Pending, now + 60_000),
            (JobState::Quarantined, now),
        ] {
            conn.execute(
                "INSERT INTO jobs (source, kind, item, state, trigger, scheduled_for, max_attempts,
                    created_at, updated_at)
                 VALUES ('notes', ?1, '/secret/path/item.md', ?2, 't', ?3, 1, 0, 0)",
                rusqlite::params![crate::jobs::JobKind::Item, state, due],
            )
            .unwrap();
        }
        let (run, ok, failed) = (
            crate::jobs::JobKind::SourceRun,
            JobState::Succeeded,
            JobState::Failed,
        );
        for (dur_ms, outcome, class) in [
            (50, ok, None),
            (2_000, failed, Some("io_error")),
            (7_000, failed, Some("io_error")),
        ] {
            conn.execute(
                "INSERT INTO telemetry_attempts (job_id, source, kind, outcome, error_class,
                    started_at, finished_at, bytes, items, documents)
                 VALUES (1, 'notes', ?1, ?2, ?3, ?4, ?5, 1000, 2, 1)",
                rusqlite::params![run, outcome, class, now - dur_ms, now],
            )
            .unwrap();
        }
        let text = render_prometheus(&home);
        assert!(!text.contains("/secret"), "{text}");
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!declared.contains(&name.to_string()), "{name} twice");
                declared.push(name.to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(name.starts_with("futurnal_"), "{line}");
                let family = declared.last().expect("a sample before any TYPE");
                assert!(name.starts_with(family.as_str()), "{line} under {family}");
            }
        }
        // States and kinds by their enums (tests/layout.rs): P pending, Q quarantined, R running,
        // F failed, K source_run.
        for expected in [
            "futurnal_jobs{state=\"P\"} 2",
            "futurnal_jobs{state=\"Q\"} 1",
            "futurnal_jobs{state=\"R\"} 0",
            "futurnal_job_attempts_total{source=\"notes\",kind=\"K\",outcome=\"F\"} 2",
            "futurnal_job_failures_total{source=\"notes\",class=\"io_error\"} 2",
            "futurnal_ingested_bytes_total{source=\"notes\"} 3000",
            "futurnal_ingest_seconds_total{source=\"notes\"} 9.05",
            "futurnal_job_duration_seconds_bucket{kind=\"K\",le=\"0.1\"} 1",
            "futurnal_job_duration_seconds_bucket{kind=\"K\",le=\"5\"} 2",
            "futurnal_job_duration_seconds_bucket{kind=\"K\",le=\"15\"} 3",
            "futurnal_job_duration_seconds_bucket{kind=\"K\",le=\"+Inf\"} 3",
            "futurnal_job_duration_seconds_sum{kind=\"K\"} 9.05",
            "futurnal_job_duration_seconds_count{kind=\"K\"} 3",
            "futurnal_database_readable{database=\"queue\"} 1",
            "futurnal_database_readable{database=\"store\"} 1",
        ] {
            let expected = expected
                .replace("\"P\"", &format!("\"{}\"", JobState::Pending))
                .replace("\"Q\"", &format!("\"{}\"", JobState::Quarantined))
                .replace("\"R\"", &format!("\"{}\"", JobState::Running))
                .replace("\"F\"", &format!("\"{failed}\""))
                .replace("\"K\"", &format!("\"{run}\""));
            assert!(text.lines().any(|l| l == expected), "{expected} in\n{text}");
        }
        // Only the job due 90 s ago counts as waiting, not the one due in a minute.
        let age: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("futurnal_oldest_pending_job_age_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((90.0..120.0).contains(&age), "{age}");
    }

    /// A damaged queue.db reads as unreadable, never as an empty, healthy queue.
    #[test]
    fn a_corrupt_queue_is_unreadable_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        std::fs::write(home.queue_db(), vec![0x5a; 8192]).unwrap();
        let text = render_prometheus(&home);
        assert!(
            text.lines()
                .any(|l| l == "futurnal_database_readable{database=\"queue\"} 0"),
            "{text}"
        );
        assert!(!text.contains("futurnal_jobs{"), "{text}");
        assert_eq!(std::fs::read(home.queue_db()).unwrap(), vec![0x5a; 8192]);
    }

    /// The listener answers /metrics and 404 otherwise, a client that sends nothing does not
    /// keep it from the next one past the deadline, and dropping it frees the port.
    #[test]
    fn the_listener_serves_metrics_and_stops_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let listener = serve(&home, "127.0.0.1:0").expect("listening");
        let addr = listener.addr;
        let get = |path: &str| -> String {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            text
        };
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        assert!(
            ok.contains("# TYPE futurnal_database_readable gauge"),
            "{ok}"
        );
        assert!(get("/").starts_with("HTTP/1.1 404 "));
        // An oversized head is refused, not buffered.
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(&vec![b'a'; MAX_REQUEST + 2048]);
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
        drop(listener);
        // The port is free again: the thread is gone.
        TcpListener::bind(addr).expect("the port is released");
    }

    /// The listener's counters never go down when retention prunes old attempts, nor when it
    /// empties the table and ids start again; a stateless export counts what is there.
    #[test]
    fn counters_never_go_down_when_old_attempts_are_pruned() {
        use crate::config::Queue as QueueConfig;
        use crate::queue::InstanceRow;
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let db = QueueDb::open_for_daemon(&home.queue_db(), &QueueConfig::default()).unwrap();
        let start = now_ms() - 10_000;
        db.insert_instance(&InstanceRow {
            instance_id: "i".into(),
            pid: 1,
            version: "0".into(),
            config_path: String::new(),
            started_at: start,
            heartbeat_at: start,
            stopped_at: None,
            stop_kind: None,
            workers_max: 1,
            workers_busy: 0,
            shutdown_grace_seconds: 1,
        })
        .unwrap();
        let add = |n: usize| {
            for _ in 0..n {
                db.conn()
                    .execute(
                        "INSERT INTO telemetry_attempts (job_id, source, kind, outcome,
                            started_at, finished_at, bytes) VALUES (1, 'notes', ?1, ?2, ?3, ?3, 10)",
                        rusqlite::params![crate::jobs::JobKind::SourceRun, JobState::Succeeded, start + 1],
                    )
                    .unwrap();
            }
        };
        let count = |text: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix("futurnal_ingested_bytes_total{source=\"notes\"} "))
                .map_or(0.0, |v| v.parse().unwrap())
        };
        let mut kept = Kept::default();
        add(3);
        assert_eq!(count(&render(&home, &mut kept)), 30.0);
        // Retention prunes the two oldest; one more finishes.
        db.conn()
            .execute("DELETE FROM telemetry_attempts WHERE id <= 2", [])
            .unwrap();
        add(1);
        assert_eq!(count(&render(&home, &mut kept)), 40.0);
        assert_eq!(count(&render_prometheus(&home)), 20.0);
        // Everything pruned, then two more: ids start again at 1.
        db.conn()
            .execute("DELETE FROM telemetry_attempts", [])
            .unwrap();
        add(2);
        assert_eq!(count(&render(&home, &mut kept)), 60.0);
        // Attempts of an earlier instance are not this one's.
        db.conn()
            .execute(
                "UPDATE telemetry_attempts SET finished_at = ?1 WHERE id = 1",
                [start - 1],
            )
            .unwrap();
        assert_eq!(count(&render_prometheus(&home)), 10.0);
    }

    /// Every scrape reads store.db's figures afresh (kept by triggers, so it costs a row per
    /// source), including a document written by hand.
    #[test]
    fn every_scrape_shows_the_stores_current_figures() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        drop(Store::open(&home.store_db()).unwrap());
        let conn = rusqlite::Connection::open(home.store_db()).unwrap();
        let add = |item: &str| {
            conn.execute(
                "INSERT INTO documents (source, item, kind, title, body, metadata, chunks, links,
                    content_hash, size, ingested_at, updated_at)
                 VALUES ('notes', ?1, 'md', 't', 'b', '{}', '[]', '[]', 'h', 7, 0, 0)",
                [item],
            )
            .unwrap();
        };
        let docs = |text: &str| -> Option<String> {
            text.lines()
                .find_map(|l| l.strip_prefix("futurnal_source_documents{source=\"notes\"} "))
                .map(str::to_string)
        };
        add("a");
        let mut kept = Kept::default();
        assert_eq!(docs(&render(&home, &mut kept)).as_deref(), Some("1"));
        add("b");
        assert_eq!(docs(&render(&home, &mut kept)).as_deref(), Some("2"));
        assert_eq!(docs(&render_prometheus(&home)).as_deref(), Some("2"));
    }

    /// A client that sends nothing, or dribbles its request, holds the listener for at most the
    /// deadline: the next scrape is answered.
    #[test]
    fn a_silent_or_dribbling_client_holds_the_listener_only_until_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let deadline = Duration::from_millis(300);
        let listener = serve_with(&home, "127.0.0.1:0", deadline).expect("listening");
        let addr = listener.addr;
        let _silent = TcpStream::connect(addr).unwrap();
        let mut dribbling = TcpStream::connect(addr).unwrap();
        let dribbler = std::thread::spawn(move || {
            // One byte at a time, never finishing the head, until the listener hangs up.
            while dribbling.write_all(b"G").is_ok() {
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let started = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        // Fails the test rather than hanging it when a client is never cut off.
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        // Two clients ahead of it, each cut at the deadline.
        assert!(
            started.elapsed() < deadline * 2 + Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        drop(listener);
        dribbler.join().unwrap();
    }
}
