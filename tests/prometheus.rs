//! A real Prometheus server (Debian's `prometheus` package; `.ci/run` installs it) scrapes the
//! daemon's `/metrics` listener, and its HTTP API answers with futurnal's series and values.
//!
//! Runs in a `common::Sandbox` (temporary HOME and FUTURNAL_HOME, daemons killed on drop); the
//! Prometheus process is killed by its guard whatever happens; waits poll with deadlines. Without
//! `prometheus` on PATH the test is skipped with a printed reason, except in CI (`CI` set), where
//! it fails: CI must run it.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Sandbox, describe};
use serde_json::Value;

/// Kills Prometheus when dropped, whatever happened.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// A port free on loopback right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port`; the body of a 200 answer.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Prometheus's answer to an instant query: (labels, value) of each series.
fn query(port: u16, promql: &str) -> Vec<(Value, f64)> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let Some(body) = http_get(port, &format!("/api/v1/query?query={encoded}")) else {
        return Vec::new();
    };
    // Prometheus answers chunked when it likes; the JSON object is between the outer braces.
    let (Some(start), Some(end)) = (body.find('{'), body.rfind('}')) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<Value>(&body[start..=end]) else {
        return Vec::new();
    };
    v["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let value = r["value"][1]
                .as_str()
                .unwrap_or("NaN")
                .parse()
                .unwrap_or(f64::NAN);
            (r["metric"].clone(), value)
        })
        .collect()
}

fn start_prometheus(dir: &Path, web_port: u16, target_port: u16) -> Running {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: futurnal\n    static_configs:\n      \
             - targets: ['127.0.0.1:{target_port}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web_port}"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus starts");
    Running(child)
}

#[test]
fn a_real_prometheus_scrapes_the_daemon_and_answers_with_its_series() {
    if !on_path("prometheus") {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus is not installed; CI must run this test (.ci/run installs it)"
        );
        eprintln!(
            "skipped: prometheus is not on PATH (apt-get install prometheus, or run .ci/run)"
        );
        return;
    }
    let s = Sandbox::new();
    s.write_notes("notes", 3);
    let metrics_port = free_port();
    s.write_config(&format!(
        "telemetry:\n  metrics_listen: \"127.0.0.1:{metrics_port}\"\n\
         sources:\n  - name: notes\n    type: local_files\n    path: ~/notes\n"
    ));
    s.start();
    let out = s.run(&["orchestrator", "sources", "trigger", "notes", "--wait"]);
    assert!(out.status.success(), "{}", describe(&out));

    // The listener answers before Prometheus is asked to scrape it.
    let direct = http_get(metrics_port, "/metrics").expect("the daemon serves /metrics");
    assert!(direct.contains("# TYPE futurnal_jobs gauge"), "{direct}");

    let prom_dir = s.root().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let web_port = free_port();
    let _prometheus = start_prometheus(&prom_dir, web_port, metrics_port);

    // Wait for a scrape that saw the finished run.
    let deadline = Instant::now() + Duration::from_secs(60);
    let succeeded = loop {
        let found = query(web_port, "futurnal_jobs{state=\"succeeded\"}");
        if let Some((labels, v)) = found.first()
            && *v >= 1.0
        {
            break (labels.clone(), *v);
        }
        assert!(
            Instant::now() < deadline,
            "no scrape within 60 s; prometheus log:\n{}",
            std::fs::read_to_string(prom_dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(succeeded.0["job"], "futurnal", "{:?}", succeeded.0);
    assert_eq!(succeeded.0["instance"], format!("127.0.0.1:{metrics_port}"));
    assert_eq!(succeeded.1, 1.0, "one source run succeeded");

    // Every state is a series, and the other values are what the daemon did.
    let states = query(web_port, "futurnal_jobs");
    assert_eq!(states.len(), 6, "{states:?}");
    let one = |promql: &str| -> f64 {
        let r = query(web_port, promql);
        assert_eq!(r.len(), 1, "{promql}: {r:?}");
        r[0].1
    };
    assert_eq!(one("up{job=\"futurnal\"}"), 1.0);
    assert_eq!(one("futurnal_source_documents{source=\"notes\"}"), 3.0);
    assert!(one("futurnal_source_bytes{source=\"notes\"}") > 0.0);
    assert_eq!(one("futurnal_database_readable{database=\"queue\"}"), 1.0);
    assert!(one("futurnal_home_free_bytes") > 0.0);
    assert_eq!(
        one("sum(futurnal_job_duration_seconds_count)"),
        one("sum(futurnal_job_attempts_total)")
    );
    // Every health check has its level; the running daemon's is ok.
    assert_eq!(query(web_port, "futurnal_health_check").len(), 10);
    assert_eq!(one("futurnal_health_check{check=\"daemon\"}"), 0.0);
    // No series carries a path: labels are names, states, kinds, outcomes and classes.
    let all = query(web_port, "{job=\"futurnal\"}");
    assert!(!all.is_empty());
    let home = s.home().display().to_string();
    for (labels, _) in &all {
        assert!(!labels.to_string().contains(&home), "{labels}");
        assert!(!labels.to_string().contains("note-"), "{labels}");
    }
}

/// HTTP status line of a request for `path`, or `None` when nothing listens.
fn status_of(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines().next().map(str::to_string)
}

/// Off by default; on, `/metrics` only; the port is released when the daemon stops; a port
/// already taken leaves the daemon running without metrics, and its log says why. Needs no
/// Prometheus.
#[test]
fn the_listener_is_opt_in_serves_only_metrics_and_stops_with_the_daemon() {
    let s = Sandbox::new();
    s.write_notes("notes", 1);
    let port = free_port();
    let source = "sources:\n  - name: notes\n    type: local_files\n    path: ~/notes\n";
    s.write_config(source);
    s.start();
    assert_eq!(
        status_of(port, "/metrics"),
        None,
        "nothing listens by default"
    );
    s.ok(&["orchestrator", "stop"]);

    s.write_config(&format!(
        "telemetry:\n  metrics_listen: \"127.0.0.1:{port}\"\n{source}"
    ));
    s.start();
    assert_eq!(
        status_of(port, "/metrics").as_deref(),
        Some("HTTP/1.1 200 OK")
    );
    assert_eq!(
        status_of(port, "/").as_deref(),
        Some("HTTP/1.1 404 Not Found")
    );
    s.ok(&["orchestrator", "stop"]);
    assert_eq!(
        status_of(port, "/metrics"),
        None,
        "the port is released at stop"
    );

    // The port taken by someone else: the daemon runs, without metrics, and says so.
    let _taken = TcpListener::bind(("127.0.0.1", port)).unwrap();
    s.start();
    let log = std::fs::read_to_string(s.futurnal_home().join("logs/orchestrator.log")).unwrap();
    assert!(
        log.contains(&format!(
            "metrics not served: cannot listen on 127.0.0.1:{port}"
        )),
        "{log}"
    );
    s.ok(&["orchestrator", "stop"]);
}
