//! The futurnal home against a hostile or careless environment, with a real daemon: loose
//! permissions, planted links, a removed lock file, databases futurnal may not read.
//!
//! Every test gets its own temporary HOME and FUTURNAL_HOME; the `Sandbox` guard kills any daemon
//! it started. Permission scenarios run the binary without CAP_DAC_OVERRIDE when the tests run as
//! root (root would read anything), through `setpriv`, as the book harness does.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_futurnal");

struct Sandbox {
    dir: tempfile::TempDir,
    pids: std::cell::RefCell<Vec<i64>>,
}

impl Sandbox {
    fn new() -> Sandbox {
        let s = Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
            pids: Default::default(),
        };
        std::fs::create_dir_all(s.home()).unwrap();
        s
    }
    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    fn fh(&self) -> PathBuf {
        self.home().join(".futurnal")
    }
    fn cmd_with(&self, prefix: &[String], args: &[&str]) -> Command {
        let mut c = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("FUTURNAL_HOME", self.fh())
            .env("NO_COLOR", "1")
            .env("TZ", "UTC")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.run_as(&[], args)
    }
    fn run_as(&self, prefix: &[String], args: &[&str]) -> Output {
        let out = self.cmd_with(prefix, args).output().expect("futurnal runs");
        if let Some(pid) = self.lock_pid() {
            self.pids.borrow_mut().push(pid);
        }
        out
    }
    fn lock_pid(&self) -> Option<i64> {
        let text = std::fs::read_to_string(self.fh().join("orchestrator.lock")).ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()?["pid"].as_i64()
    }
    fn status_json(&self) -> serde_json::Value {
        let out = self.run(&["orchestrator", "status", "--format", "json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).expect("status is JSON")
    }
    fn start(&self) -> i64 {
        let out = self.run(&["orchestrator", "start"]);
        assert!(out.status.success(), "{}", text(&out));
        let pid = self.status_json()["pid"].as_i64().expect("a running pid");
        self.pids.borrow_mut().push(pid);
        pid
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Kill what we saw, not what the daemon says: it may be the thing that is broken.
        for pid in self.pids.borrow().iter() {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn text(out: &Output) -> String {
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

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn alive(pid: i64) -> bool {
    // A zombie is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// `setpriv` without the capabilities that let root ignore file permissions; `None` when running
/// as root without setpriv (the test is then skipped, saying so).
fn unprivileged() -> Option<Vec<String>> {
    if !rustix::process::geteuid().is_root() {
        return Some(Vec::new());
    }
    let ok = Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| {
        [
            "setpriv",
            "--bounding-set",
            "-dac_override,-dac_read_search",
            "--inh-caps",
            "-dac_override,-dac_read_search",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    })
}

/// Issue 7 item 5: `start; rm orchestrator.lock; start` started a second daemon, `stop` stopped
/// only the second one and `status` said "not running".
#[test]
fn removing_the_lock_file_never_lets_a_second_daemon_start() {
    let s = Sandbox::new();
    let first = s.start();
    std::fs::remove_file(s.fh().join("orchestrator.lock")).unwrap();

    let second = s.run(&["orchestrator", "start"]);
    assert_eq!(second.status.code(), Some(4), "{}", text(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains(&format!("pid {first}")),
        "{}",
        text(&second)
    );
    // Even a foreground start, which goes straight for the lock, is refused.
    let fg = s.run(&["orchestrator", "start", "--foreground"]);
    assert_eq!(fg.status.code(), Some(4), "{}", text(&fg));

    let status = s.status_json();
    assert_eq!(status["running"], true);
    assert_eq!(status["pid"].as_i64(), Some(first));
    // The daemon notices and puts its lock file back.
    wait_until(
        "the lock file to come back",
        Duration::from_secs(10),
        || s.lock_pid() == Some(first),
    );
    wait_until("the daemon to log it", Duration::from_secs(10), || {
        std::fs::read_to_string(s.fh().join("logs/orchestrator.log"))
            .is_ok_and(|log| log.contains("was removed; put it back"))
    });

    let stop = s.run(&["orchestrator", "stop"]);
    assert!(stop.status.success(), "{}", text(&stop));
    assert!(
        String::from_utf8_lossy(&stop.stdout).contains(&format!("pid {first}")),
        "{}",
        text(&stop)
    );
    wait_until("the daemon to exit", Duration::from_secs(10), || {
        !alive(first)
    });
    assert_eq!(s.status_json()["running"], false);
}

/// Issue 7 item 3 and deliverable 8: the book's own `mkdir -p ~/.futurnal/config` leaves a 0755
/// home that was never tightened; store.db was created 0644.
#[test]
fn a_loose_home_is_made_private_at_start_and_audited() {
    let s = Sandbox::new();
    std::fs::DirBuilder::new()
        .recursive(true)
        .create(s.fh().join("config"))
        .unwrap();
    for d in [s.fh(), s.fh().join("config")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let config = s.fh().join("config/orchestrator.yaml");
    std::fs::write(&config, "security:\n  audit_logging: true\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();

    s.start();
    assert_eq!(mode(&s.fh()), 0o700);
    assert_eq!(mode(&s.fh().join("config")), 0o700);
    assert_eq!(mode(&config), 0o600);
    let audit = std::fs::read_to_string(s.fh().join("logs/audit.log")).unwrap();
    let tightened: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "home.permissions_tightened")
        .collect();
    let paths: Vec<&str> = tightened
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [".", "config", "config/orchestrator.yaml"],
        "{audit}"
    );
    let log = std::fs::read_to_string(s.fh().join("logs/orchestrator.log")).unwrap();
    assert!(log.contains("made a path in the home private"), "{log}");

    // Every file futurnal created is private, and every directory.
    let stop = s.run(&["orchestrator", "stop"]);
    assert!(stop.status.success(), "{}", text(&stop));
    for entry in walk(&s.fh()) {
        let m = mode(&entry);
        let want = if entry.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(m, want, "{}", entry.display());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Issue 7 item 3: with a writable home, another user could point `logs/audit.log` at any file,
/// and the daemon appended to it.
#[test]
fn a_planted_link_at_the_audit_log_is_refused_and_its_target_untouched() {
    let s = Sandbox::new();
    std::fs::create_dir_all(s.fh().join("logs")).unwrap();
    let victim = s.dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, s.fh().join("logs/audit.log")).unwrap();

    let out = s.run(&["orchestrator", "start"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audit.log is a symbolic link"), "{err}");
    assert!(
        err.contains("futurnal help runbook a-link-or-special-file-in-the-home"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(s.status_json()["running"], false);
}

/// Issue 7 item 9: a queue.db unreadable for permissions was reported as corrupt, with the advice
/// to move it aside; after `chmod 600 queue.db` a leftover 0400 queue.db-shm still blocked start.
#[test]
fn an_unreadable_queue_is_a_permission_problem_not_damage() {
    let Some(prefix) = unprivileged() else {
        eprintln!("skipped: running as root without setpriv, so permissions cannot be tested");
        return;
    };
    let s = Sandbox::new();
    s.start();
    let stop = s.run(&["orchestrator", "stop"]);
    assert!(stop.status.success(), "{}", text(&stop));
    let queue = s.fh().join("queue.db");
    let set = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    set(&queue, 0o000).unwrap();

    let out = s.run_as(&prefix, &["orchestrator", "start"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permission denied on ~/.futurnal/queue.db"),
        "{err}"
    );
    assert!(
        !err.contains("corrupt") && !err.contains("move the file aside"),
        "{err}"
    );
    assert!(
        err.contains("futurnal help runbook a-database-is-not-readable"),
        "{err}"
    );
    let jobs = s.run_as(&prefix, &["orchestrator", "jobs", "list"]);
    assert_eq!(jobs.status.code(), Some(5), "{}", text(&jobs));
    assert!(
        String::from_utf8_lossy(&jobs.stderr).contains("permission denied"),
        "{}",
        text(&jobs)
    );

    // The operator fixes the database; a read-only -shm from the same chmod is left over.
    set(&queue, 0o600).unwrap();
    let shm = s.fh().join("queue.db-shm");
    std::fs::write(&shm, "").unwrap();
    set(&shm, 0o400).unwrap();
    let jobs = s.run_as(&prefix, &["orchestrator", "jobs", "list"]);
    assert_eq!(jobs.status.code(), Some(5), "{}", text(&jobs));
    assert!(
        String::from_utf8_lossy(&jobs.stderr).contains("queue.db-shm"),
        "{}",
        text(&jobs)
    );
    // start gives the leftover its mode back (audited) and runs.
    let out = s.run_as(&prefix, &["orchestrator", "start"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(mode(&shm), 0o600);
    let stop = s.run(&["orchestrator", "stop"]);
    assert!(stop.status.success(), "{}", text(&stop));
}

/// The damaged counterpart keeps its own diagnosis and advice.
#[test]
fn a_corrupt_queue_is_still_called_corrupt() {
    let s = Sandbox::new();
    s.start();
    let stop = s.run(&["orchestrator", "stop"]);
    assert!(stop.status.success(), "{}", text(&stop));
    std::fs::write(s.fh().join("queue.db"), vec![0x5au8; 8192]).unwrap();
    let out = s.run(&["orchestrator", "start"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt"), "{err}");
    assert!(
        err.contains("futurnal help runbook the-queue-database-is-corrupt"),
        "{err}"
    );
}

/// Issue 7 item 9: a corrupt store.db made `sources list` show 0 documents and exit 0.
#[test]
fn a_corrupt_store_fails_commands_that_read_it() {
    let s = Sandbox::new();
    let notes = s.home().join("Notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("a.md"), "# A\n").unwrap();
    std::fs::create_dir_all(s.fh().join("config")).unwrap();
    std::fs::write(
        s.fh().join("config/orchestrator.yaml"),
        "sources:\n  - name: notes\n    type: local_files\n    path: ~/Notes\n",
    )
    .unwrap();
    s.start();
    let run = s.run(&["orchestrator", "sources", "trigger", "notes", "--wait"]);
    assert!(run.status.success(), "{}", text(&run));
    let stop = s.run(&["orchestrator", "stop"]);
    assert!(stop.status.success(), "{}", text(&stop));
    std::fs::write(s.fh().join("store.db"), vec![0x5au8; 16384]).unwrap();
    let list = s.run(&["orchestrator", "sources", "list"]);
    assert_eq!(list.status.code(), Some(5), "{}", text(&list));
    assert!(
        String::from_utf8_lossy(&list.stderr)
            .contains("futurnal help runbook the-document-store-is-corrupt"),
        "{}",
        text(&list)
    );
}
