//! The sandbox every end-to-end test runs the futurnal binary in (used with `mod common;`).
//!
//! Invariants: each `Sandbox` has its own temporary HOME and FUTURNAL_HOME (never the real home)
//! and runs the binary cargo built with a clean environment; dropping it kills every daemon it
//! started, whatever happened, and makes its tree removable. Waits poll with a deadline
//! (`wait_until`), never sleep a fixed time. Each test file uses a part of this, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

use std::cell::RefCell;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_futurnal");

/// A file or folder under the repository's `fixtures/`.
pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(relative)
}

pub struct Sandbox {
    dir: tempfile::TempDir,
    /// Put before the binary in every command (`setpriv ...`, see `unprivileged_prefix`).
    prefix: Vec<String>,
    /// Set in every command's environment, after the sandbox's own variables.
    env: Vec<(OsString, OsString)>,
    /// Every daemon pid a command left in the lock file: a later test step may remove the file.
    daemons: RefCell<Vec<i64>>,
}

impl Sandbox {
    /// A sandbox whose HOME exists (FUTURNAL_HOME does not yet).
    pub fn new() -> Sandbox {
        let s = Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
            prefix: Vec::new(),
            env: Vec::new(),
            daemons: RefCell::default(),
        };
        std::fs::create_dir_all(s.home()).unwrap();
        s
    }
    /// Run every command behind `prefix` (empty: directly).
    pub fn with_prefix(mut self, prefix: Vec<String>) -> Sandbox {
        self.prefix = prefix;
        self
    }
    /// Set `key` in every command's environment.
    pub fn with_env(mut self, key: &str, value: &str) -> Sandbox {
        self.env.push((key.into(), value.into()));
        self
    }
    /// The temporary directory holding HOME: the working directory of every command.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }
    pub fn futurnal_home(&self) -> PathBuf {
        self.home().join(".futurnal")
    }
    pub fn config_file(&self) -> PathBuf {
        self.futurnal_home().join("config/orchestrator.yaml")
    }
    /// Write the configuration file, creating its folder.
    pub fn write_config(&self, yaml: &str) {
        write_file(&self.config_file(), yaml);
    }
    /// A folder `~/name` of `n` small notes.
    pub fn write_notes(&self, name: &str, n: usize) -> PathBuf {
        let dir = self.home().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            std::fs::write(
                dir.join(format!("note-{i}.md")),
                format!("# Note {i}\n\nText.\n"),
            )
            .unwrap();
        }
        dir
    }

    /// The binary with `args`, in this sandbox's clean environment.
    pub fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        self.cmd_as(&self.prefix, args)
    }
    /// As `cmd`, behind `prefix` instead of the sandbox's.
    pub fn cmd_as<S: AsRef<OsStr>>(&self, prefix: &[String], args: &[S]) -> Command {
        let mut c = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("FUTURNAL_HOME", self.futurnal_home())
            .env("NO_COLOR", "1")
            .env("TZ", "UTC")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.root())
            .stdin(Stdio::null());
        c
    }
    /// Run a command to its end; whatever daemon it left running is remembered for `Drop`.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.output(&mut self.cmd(args))
    }
    /// As `run`, behind `prefix` instead of the sandbox's.
    pub fn run_as<S: AsRef<OsStr>>(&self, prefix: &[String], args: &[S]) -> Output {
        self.output(&mut self.cmd_as(prefix, args))
    }
    /// Run a command made with `cmd` (and changed) to its end, remembering its daemon.
    pub fn output(&self, cmd: &mut Command) -> Output {
        let out = cmd.output().expect("futurnal runs");
        self.remember_daemon();
        out
    }
    /// `run` that must succeed.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
        out
    }
    /// `run` that must succeed and print JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&out)))
    }

    /// The pid in the lock file, if there is one.
    pub fn lock_pid(&self) -> Option<i64> {
        let text = std::fs::read_to_string(self.futurnal_home().join("orchestrator.lock")).ok()?;
        serde_json::from_str::<Value>(&text).ok()?["pid"].as_i64()
    }
    fn remember_daemon(&self) {
        if let Some(pid) = self.lock_pid() {
            let mut daemons = self.daemons.borrow_mut();
            if !daemons.contains(&pid) {
                daemons.push(pid);
            }
        }
    }
    pub fn status_json(&self) -> Value {
        self.json(&["orchestrator", "status", "--format", "json"])
    }
    /// The running daemon's pid, as `status` reports it.
    pub fn daemon_pid(&self) -> Option<i64> {
        self.status_json()["pid"].as_i64()
    }
    /// `orchestrator start`, which must succeed; the daemon's pid.
    pub fn start(&self) -> i64 {
        self.ok(&["orchestrator", "start"]);
        self.daemon_pid().expect("a running pid")
    }
    /// `jobs show ID`: the job and its events.
    pub fn job_show(&self, id: i64) -> Value {
        self.json(&[
            "orchestrator",
            "jobs",
            "show",
            &id.to_string(),
            "--format",
            "json",
        ])
    }
    /// The job row of `jobs show ID`.
    pub fn job(&self, id: i64) -> Value {
        self.job_show(id)["job"].clone()
    }
    /// `jobs list --source SOURCE`.
    pub fn jobs_of(&self, source: &str) -> Vec<Value> {
        self.json(&[
            "orchestrator",
            "jobs",
            "list",
            "--source",
            source,
            "--format",
            "json",
        ])
        .as_array()
        .cloned()
        .unwrap_or_default()
    }
    /// What the daemon records as running.
    pub fn running(&self) -> futurnal::Running {
        futurnal::running(&futurnal::Home::at(self.futurnal_home()))
            .expect("a daemon with a recorded configuration")
    }
    /// The audit log's records of `event` (a line being written is not one yet).
    pub fn audit_events(&self, event: &str) -> Vec<Value> {
        std::fs::read_to_string(self.futurnal_home().join("logs/audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == event)
            .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Kill what the lock files named, not what the daemon says: it may be the thing that is
        // broken. A pid is killed only while it is still one of ours (it may have been reused).
        self.remember_daemon();
        let home = self.home();
        for &pid in self.daemons.borrow().iter() {
            if runs_in(pid, &home) {
                let _ = Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .stderr(Stdio::null())
                    .status();
            }
        }
        // Tests take permissions away; give them back so the temporary tree can be removed.
        let _ = Command::new("chmod")
            .args(["-R", "u+rwx"])
            .arg(self.root())
            .stderr(Stdio::null())
            .status();
        // Whatever the test did, every job's state is accounted for by its history (a state
        // written without its event, or an event without its state, fails the test here).
        if !std::thread::panicking() {
            let violations = history_violations(&self.futurnal_home().join("queue.db"));
            assert!(violations.is_empty(), "queue.db history: {violations:?}");
        }
    }
}

/// `jobs::history_violations` of a queue.db, when there is a readable one.
pub fn history_violations(queue_db: &Path) -> Vec<(i64, String)> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(conn) = rusqlite::Connection::open_with_flags(queue_db, flags) else {
        return Vec::new();
    };
    // A queue.db a test damaged on purpose, or one never migrated, has no history to check.
    futurnal::history_violations(&conn).unwrap_or_default()
}

/// Whether process `pid` runs with HOME set to `home`; true when that cannot be read (a process
/// of another user under `setpriv`, a /proc that hides it), as killing it is then the safe side.
fn runs_in(pid: i64, home: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let mut needle = b"HOME=".to_vec();
    needle.extend_from_slice(home.as_os_str().as_bytes());
    match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(environ) => environ.split(|b| *b == 0).any(|var| var == needle),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// A command's exit status, stdout and stderr, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Poll `f` every 20 ms until it holds; fail the test naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Write a file, creating its folders.
pub fn write_file(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// As root, file permissions are bypassed: the `setpriv` prefix that runs futurnal without
/// CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, the same as the book's harness uses. Empty when not
/// root; `Err(why)` when root has no setpriv, so permission cases cannot be tested.
pub fn unprivileged_prefix() -> Result<Vec<String>, String> {
    if !is_root() {
        return Ok(Vec::new());
    }
    runbook_tests::runner::unprivileged_prefix()
        .ok_or_else(|| "running as root without setpriv, so permissions cannot be enforced".into())
}
