//! Running a chapter: one bash session per chapter, one process per block, hermetic directories.
//!
//! Owns: the per-chapter sandbox (temp HOME, TMPDIR, clean environment), carrying shell state
//! (variables, functions, cwd) from block to block, per-block timeouts, preconditions (`needs=`)
//! and killing every process a chapter started when it ends.
//! Invariants: a chapter never sees the invoking user's HOME or environment; every process it
//! starts (including daemons that detach into their own session) carries the chapter's
//! `RUNBOOK_SESSION` token and is killed by it, whatever happened; nothing a chapter mounted
//! under its sandbox outlives it (lazily unmounted, after its processes are killed); a step
//! whose precondition fails is counted skipped with the reason, never run; no fixed sleeps.

use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::doc::{Document, Precondition, Step};
use crate::matcher::{Comparison, Normalizer, compare};

/// `--jobs`'s default, as `--help` states it.
pub const DEFAULT_JOBS_RULE: &str = "twice the CPU count";

/// Chapters run at once by default: twice the CPU count, because a chapter spends most of its
/// time waiting for daemons, not computing. Measured on 2 cores: the whole book used 30 s of CPU
/// and took 42 s with 2 chapters at a time, 28 s with 4.
pub fn default_jobs() -> usize {
    2 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How to run runbooks.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directories put first on PATH (the futurnal under test).
    pub bin_dirs: Vec<PathBuf>,
    /// Exported to blocks as `RUNBOOK_FIXTURES`.
    pub fixtures: Option<PathBuf>,
    /// Chapters run at once.
    pub jobs: usize,
    /// Per-block timeout unless a block sets `timeout=`.
    pub default_timeout: Duration,
    /// Rewrite expected-output blocks from real output.
    pub bless: bool,
    /// Keep each chapter's temp directory (printed in the report) for debugging.
    pub keep_temp: bool,
    /// The command a reader should run to bless, shown in failure reports.
    pub bless_hint: String,
    /// What the machine offers, for `needs=` preconditions.
    pub host: Host,
    /// Run on each chapter's sandbox once its processes are gone: each string returned is a
    /// failure of the chapter (the book test checks the queue's history with it).
    pub chapter_check: Option<fn(&Path) -> Vec<String>>,
}

/// Facts about the machine that decide `needs=` preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// The effective user id; 0 is root.
    pub uid: u32,
}

impl Host {
    pub fn detect() -> Host {
        Host {
            uid: rustix::process::geteuid().as_raw(),
        }
    }

    fn holds(&self, condition: Precondition) -> bool {
        match condition {
            Precondition::Root => self.uid == 0,
        }
    }
}

/// Why this step does not run here (`skip=`, or a `needs=` precondition that fails), if so.
pub fn skip_reason(step: &Step, host: &Host) -> Option<String> {
    if let Some(reason) = &step.directives.skip {
        return Some(reason.clone());
    }
    let need = step.directives.needs.as_ref()?;
    if host.holds(need.condition) {
        return None;
    }
    let what = match need.condition {
        Precondition::Root => format!("the harness runs as uid {}", host.uid),
    };
    Some(match &need.why {
        Some(why) => format!("needs {} ({why}); {what}", need.condition.word()),
        None => format!("needs {}; {what}", need.condition.word()),
    })
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bin_dirs: Vec::new(),
            fixtures: None,
            jobs: default_jobs(),
            default_timeout: Duration::from_secs(60),
            bless: false,
            keep_temp: false,
            bless_hint: "futurnal runbook check --bless FILE".into(),
            host: Host::detect(),
            chapter_check: None,
        }
    }
}

/// What went wrong with one block (or one document).
#[derive(Debug, Clone)]
pub struct Failure {
    pub file: PathBuf,
    pub line: usize,
    pub hidden: bool,
    pub command: String,
    pub problems: Vec<String>,
    pub diff: Option<String>,
    pub output: String,
}

#[derive(Debug, Clone)]
pub struct Skipped {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct ChapterResult {
    pub file: PathBuf,
    pub executed: usize,
    pub skipped: Vec<Skipped>,
    pub failures: Vec<Failure>,
    /// Blocks not run because an earlier block of the chapter failed.
    pub not_run: usize,
    pub blessed: usize,
    /// Troubleshooting scenarios proven: negative control, fix, check, fix again, check again.
    pub scenarios: usize,
    pub kept_dir: Option<PathBuf>,
    pub elapsed: Duration,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub chapters: Vec<ChapterResult>,
}

impl Summary {
    pub fn executed(&self) -> usize {
        self.chapters.iter().map(|c| c.executed).sum()
    }
    pub fn skipped(&self) -> impl Iterator<Item = &Skipped> {
        self.chapters.iter().flat_map(|c| c.skipped.iter())
    }
    pub fn failures(&self) -> impl Iterator<Item = &Failure> {
        self.chapters.iter().flat_map(|c| c.failures.iter())
    }
    pub fn not_run(&self) -> usize {
        self.chapters.iter().map(|c| c.not_run).sum()
    }
    pub fn blessed(&self) -> usize {
        self.chapters.iter().map(|c| c.blessed).sum()
    }
    pub fn scenarios(&self) -> usize {
        self.chapters.iter().map(|c| c.scenarios).sum()
    }
    pub fn passed(&self) -> bool {
        self.failures().next().is_none()
    }
}

/// Every markdown file under the given files and directories, sorted, deduplicated.
pub fn collect_markdown(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                for entry in fs::read_dir(&dir)? {
                    let path = entry?.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if path.extension().is_some_and(|e| e == "md") {
                        out.push(path);
                    }
                }
            }
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{}: no such file or directory", p.display()),
            ));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Run every chapter, `opts.jobs` at a time, the longest first (by size, which follows its
/// number of blocks): a long chapter started last would run alone at the end. Results keep the
/// order of `files`.
pub fn run(files: &[PathBuf], opts: &Options) -> Summary {
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_cached_key(|&i| {
        std::cmp::Reverse(std::fs::metadata(&files[i]).map(|m| m.len()).unwrap_or(0))
    });
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    let workers = opts.jobs.clamp(1, files.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, order) = (&next, &order);
            scope.spawn(move || {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let result = run_chapter(&files[i], opts);
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
    });
    drop(tx);
    let mut results: Vec<(usize, ChapterResult)> = rx.into_iter().collect();
    results.sort_by_key(|(i, _)| *i);
    Summary {
        chapters: results.into_iter().map(|(_, r)| r).collect(),
    }
}

static SESSION_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Runs one chapter in its own sandbox.
pub fn run_chapter(file: &Path, opts: &Options) -> ChapterResult {
    let started = Instant::now();
    let mut result = ChapterResult {
        file: file.to_path_buf(),
        ..Default::default()
    };
    let doc = match Document::load(file) {
        Ok(d) => d,
        Err(e) => {
            result
                .failures
                .push(doc_failure(file, 0, format!("cannot read: {e}")));
            return result;
        }
    };
    if !doc.errors.is_empty() {
        for e in &doc.errors {
            result
                .failures
                .push(doc_failure(file, e.line, e.message.clone()));
        }
        result.not_run = doc.steps.len();
        return result;
    }
    if doc.steps.is_empty() {
        return result;
    }
    let sandbox = match Sandbox::new(opts, file) {
        Ok(s) => s,
        Err(e) => {
            result.failures.push(doc_failure(
                file,
                0,
                format!("cannot create the chapter sandbox: {e}"),
            ));
            return result;
        }
    };

    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut failed = false;
    let timeout_of = |step: &Step| {
        step.directives
            .timeout_secs
            .map(Duration::from_secs)
            .unwrap_or(opts.default_timeout)
    };
    let fail = |result: &mut ChapterResult, step: &Step, problems: Vec<String>, diff, output| {
        result.failures.push(Failure {
            file: file.to_path_buf(),
            line: step.line,
            hidden: step.hidden,
            command: step.script.clone(),
            problems,
            diff,
            output,
        });
    };
    // The fix whose check has not run yet, for the scenario protocol.
    let mut open_fix: Option<usize> = None;
    for (index, step) in doc.steps.iter().enumerate() {
        // The parser gives a fix and its check the same precondition, so a scenario is skipped
        // whole or runs whole.
        if let Some(reason) = skip_reason(step, &opts.host) {
            result.skipped.push(Skipped {
                file: file.to_path_buf(),
                line: step.line,
                reason,
            });
            continue;
        }
        if failed {
            result.not_run += 1;
            continue;
        }
        if step.directives.fresh_session {
            sandbox.reset_session();
        }
        if step.directives.fix {
            // Negative control: before the fix, the scenario's check must fail; otherwise it
            // could not tell a working fix from a broken one.
            let check_index = doc.steps[index..]
                .iter()
                .position(|s| s.directives.check)
                .map(|p| index + p)
                .expect("the parser pairs every fix with a check");
            let check = &doc.steps[check_index];
            let control = sandbox.run_step(check_index, check, timeout_of(check));
            result.executed += 1;
            if !control.timed_out && control.status == check.directives.exit {
                failed = true;
                fail(
                    &mut result,
                    check,
                    vec![format!(
                        "negative control: this check passed before the fix at line {} ran, so it \
                         cannot prove the fix works; make it test the symptom",
                        step.line
                    )],
                    None,
                    sandbox.normalizer.apply(&control.output),
                );
                continue;
            }
            open_fix = Some(index);
        }
        let outcome = sandbox.run_step(index, step, timeout_of(step));
        result.executed += 1;
        let output = sandbox.normalizer.apply(&outcome.output);
        let mut problems = Vec::new();
        if outcome.timed_out {
            problems.push(format!(
                "timed out after {}s and was killed; if it legitimately needs longer, put \
                 <!-- runbook: timeout=SECONDS --> before it",
                timeout_of(step).as_secs()
            ));
        } else if outcome.status != step.directives.exit {
            problems.push(format!(
                "exit status {} (expected {}{})",
                outcome.status,
                step.directives.exit,
                if step.directives.exit == 0 {
                    ""
                } else {
                    ", from exit="
                }
            ));
        }
        let mut diff = None;
        if let Some(expected) = &step.expected {
            let cmp: Comparison = compare(&expected.text, &output);
            if !cmp.matched {
                if opts.bless && problems.is_empty() {
                    edits.push((
                        expected.content.clone(),
                        indent_lines(&cmp.blessed(), &expected.indent),
                    ));
                    result.blessed += 1;
                } else {
                    problems.push(format!(
                        "output differs from the expected block at line {}",
                        expected.line
                    ));
                    diff = Some(cmp.render("    "));
                }
            }
        }
        if !problems.is_empty() {
            failed = true;
            fail(&mut result, step, problems, diff, output);
            continue;
        }
        if step.directives.check
            && let Some(fix_index) = open_fix.take()
        {
            // The fix must be safe to repeat: run it again (its exit status must not change),
            // then the check once more.
            let fix = &doc.steps[fix_index];
            let again = sandbox.run_step(fix_index, fix, timeout_of(fix));
            result.executed += 1;
            if again.timed_out || again.status != fix.directives.exit {
                failed = true;
                fail(
                    &mut result,
                    fix,
                    vec![format!(
                        "not safe to repeat: run a second time, this fix exited {} (expected {})",
                        again.status, fix.directives.exit
                    )],
                    None,
                    sandbox.normalizer.apply(&again.output),
                );
                continue;
            }
            let recheck = sandbox.run_step(index, step, timeout_of(step));
            result.executed += 1;
            if recheck.timed_out || recheck.status != step.directives.exit {
                failed = true;
                fail(
                    &mut result,
                    step,
                    vec![format!(
                        "after the fix at line {} ran a second time, this check failed (exit {})",
                        fix.line, recheck.status
                    )],
                    None,
                    sandbox.normalizer.apply(&recheck.output),
                );
                continue;
            }
            result.scenarios += 1;
        }
    }
    sandbox.kill_session_processes();
    for problem in sandbox.unmount_all() {
        result.failures.push(doc_failure(file, 0, problem));
    }
    if let Some(check) = opts.chapter_check {
        for problem in check(&sandbox.root) {
            result.failures.push(doc_failure(file, 0, problem));
        }
    }
    if !edits.is_empty() {
        let mut text = doc.text.clone();
        edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
        for (range, replacement) in edits {
            text.replace_range(range, &replacement);
        }
        if let Err(e) = fs::write(file, text) {
            result.failures.push(doc_failure(
                file,
                0,
                format!("cannot write blessed output: {e}"),
            ));
        }
    }
    if opts.keep_temp {
        result.kept_dir = Some(sandbox.keep());
    }
    result.elapsed = started.elapsed();
    result
}

fn indent_lines(text: &str, indent: &str) -> String {
    text.lines().map(|l| format!("{indent}{l}\n")).collect()
}

fn doc_failure(file: &Path, line: usize, message: String) -> Failure {
    Failure {
        file: file.to_path_buf(),
        line,
        hidden: false,
        command: String::new(),
        problems: vec![message],
        diff: None,
        output: String::new(),
    }
}

struct StepOutcome {
    status: i32,
    output: String,
    timed_out: bool,
}

/// A chapter's temporary world.
struct Sandbox {
    dir: Option<tempfile::TempDir>,
    /// When the harness runs as root: the command that runs bash without the capabilities that
    /// let root ignore file permissions, so runbooks see permissions as an operator's account does.
    unprivileged: Option<Vec<String>>,
    root: PathBuf,
    home: PathBuf,
    state: PathBuf,
    token: String,
    env: Vec<(String, String)>,
    normalizer: Normalizer,
}

/// Bash sourced before every block: restore the previous block's state, save it on exit, then
/// switch on strict mode for the block itself.
const PRELUDE: &str = r#"
if [[ -f "$__RB_STATE/vars.sh" ]]; then source "$__RB_STATE/vars.sh"; fi
cd -- "$(<"$__RB_STATE/cwd")"
__rb_save() {
  local __rb_rc=$?
  set +eu
  pwd > "$__RB_STATE/cwd"
  {
    local __rb_n __rb_d __rb_f
    for __rb_n in $(compgen -v); do
      case $__rb_n in
        BASH*|EUID|PPID|UID|SHELLOPTS|FUNCNAME|GROUPS|PIPESTATUS|RANDOM|SRANDOM|SECONDS|LINENO|\
        HISTCMD|EPOCHSECONDS|EPOCHREALTIME|DIRSTACK|COMP_*|OPTIND|OPTARG|OPTERR|PWD|OLDPWD|SHLVL|\
        _|__rb_*|__RB_*|RUNBOOK_SESSION|PS1|PS2|PS3|PS4|IFS|HOSTNAME|HOSTTYPE|MACHTYPE|OSTYPE|\
        COLUMNS|LINES) continue ;;
      esac
      __rb_d=$(declare -p "$__rb_n" 2>/dev/null) || continue
      # `declare -p` prints "declare FLAGS NAME=..."; readonly variables cannot be restored.
      __rb_f=${__rb_d#declare }
      case ${__rb_f%% *} in *r*) continue ;; esac
      printf '%s\n' "$__rb_d"
    done
    declare -f
  } > "$__RB_STATE/vars.sh.new" 2>/dev/null
  mv -f "$__RB_STATE/vars.sh.new" "$__RB_STATE/vars.sh"
  return $__rb_rc
}
trap __rb_save EXIT
set -euo pipefail
"#;

impl Sandbox {
    fn new(opts: &Options, chapter: &Path) -> std::io::Result<Sandbox> {
        let dir = tempfile::Builder::new().prefix("runbook-").tempdir()?;
        let root = dir.path().canonicalize()?;
        let home = root.join("home");
        let tmp = root.join("tmp");
        let state = root.join("state");
        for d in [&home, &tmp, &state] {
            fs::create_dir_all(d)?;
        }
        fs::write(state.join("cwd"), home.as_os_str().as_encoded_bytes())?;
        fs::write(state.join("prelude.sh"), PRELUDE)?;
        let token = format!(
            "{}-{}-{}",
            std::process::id(),
            SESSION_COUNTER.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let mut path_parts: Vec<String> = opts
            .bin_dirs
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        path_parts
            .push(std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()));
        let mut env = vec![
            ("PATH".to_string(), path_parts.join(":")),
            ("HOME".into(), home.display().to_string()),
            (
                "FUTURNAL_HOME".into(),
                home.join(".futurnal").display().to_string(),
            ),
            ("TMPDIR".into(), tmp.display().to_string()),
            (
                "USER".into(),
                std::env::var("USER").unwrap_or_else(|_| "operator".into()),
            ),
            (
                "LOGNAME".into(),
                std::env::var("USER").unwrap_or_else(|_| "operator".into()),
            ),
            ("SHELL".into(), "/bin/bash".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("LC_ALL".into(), "C.UTF-8".into()),
            ("TZ".into(), "UTC".into()),
            ("NO_COLOR".into(), "1".into()),
            ("TERM".into(), "dumb".into()),
            ("COLUMNS".into(), "80".into()),
            ("LINES".into(), "24".into()),
            ("RUNBOOK_SESSION".into(), token.clone()),
            (
                "RUNBOOK_DIR".into(),
                chapter
                    .canonicalize()
                    .ok()
                    .and_then(|p| p.parent().map(|d| d.display().to_string()))
                    .unwrap_or_default(),
            ),
            ("__RB_STATE".into(), state.display().to_string()),
        ];
        let mut pairs = vec![
            (home.display().to_string(), "[HOME]"),
            (tmp.display().to_string(), "[TMP]"),
        ];
        if let Some(f) = &opts.fixtures {
            let f = f.canonicalize().unwrap_or_else(|_| f.clone());
            env.push(("RUNBOOK_FIXTURES".into(), f.display().to_string()));
            pairs.push((f.display().to_string(), "[FIXTURES]"));
        }
        Ok(Sandbox {
            dir: Some(dir),
            unprivileged: unprivileged_prefix(),
            root,
            home,
            state,
            token,
            env,
            normalizer: Normalizer::new(pairs),
        })
    }

    fn reset_session(&self) {
        let _ = fs::remove_file(self.state.join("vars.sh"));
        let _ = fs::write(
            self.state.join("cwd"),
            self.home.as_os_str().as_encoded_bytes(),
        );
    }

    fn run_step(&self, index: usize, step: &Step, timeout: Duration) -> StepOutcome {
        let script = self
            .state
            .join(format!("block-{index}-line-{}.sh", step.line));
        let out_path = self.state.join(format!("block-{index}.out"));
        let spawn = || -> std::io::Result<std::process::Child> {
            fs::write(&script, &step.script)?;
            let out = fs::File::create(&out_path)?;
            let mut cmd = match &self.unprivileged {
                Some(prefix) => {
                    let mut c = Command::new(&prefix[0]);
                    c.args(&prefix[1..]).arg("bash");
                    c
                }
                None => Command::new("bash"),
            };
            cmd.args(["--noprofile", "--norc", "-c"])
                .arg("source \"$1\" || exit 97; source \"$2\"")
                .arg("runbook")
                .arg(self.state.join("prelude.sh"))
                .arg(&script)
                .env_clear()
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .current_dir(&self.home)
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .process_group(0)
                .spawn()
        };
        let mut child = match spawn() {
            Ok(c) => c,
            Err(e) => {
                return StepOutcome {
                    status: -1,
                    output: format!("runbook harness: cannot start bash: {e}\n"),
                    timed_out: false,
                };
            }
        };
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(());
            status
        });
        let timed_out = rx.recv_timeout(timeout).is_err();
        if timed_out {
            kill_group(pid);
        }
        let status = waiter
            .join()
            .ok()
            .and_then(|s| s.ok())
            .map(|s| {
                use std::os::unix::process::ExitStatusExt;
                s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
            })
            .unwrap_or(-1);
        let mut output = String::new();
        if let Ok(mut f) = fs::File::open(&out_path) {
            let mut bytes = Vec::new();
            let _ = f.read_to_end(&mut bytes);
            output = String::from_utf8_lossy(&bytes).into_owned();
        }
        StepOutcome {
            status,
            output,
            timed_out,
        }
    }

    /// Kill every process carrying this chapter's token, until none is left.
    fn kill_session_processes(&self) {
        let needle = format!("RUNBOOK_SESSION={}", self.token);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = processes_with_env(&needle);
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            // Killed processes take a moment to disappear; poll again, bounded by the deadline.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Lazily unmount everything mounted at or under the sandbox, deepest first (a scenario that
    /// mounts a small filesystem and fails halfway must not leave it behind). Returns what could
    /// not be unmounted.
    fn unmount_all(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // Mounts can be stacked on one point; each round removes the top of every stack.
        for _ in 0..8 {
            let mounts = mounts_under(&self.root);
            if mounts.is_empty() {
                return problems;
            }
            problems.clear();
            for point in mounts {
                let out = Command::new("umount")
                    .arg("-l")
                    .arg(&point)
                    .stdin(Stdio::null())
                    .output();
                match out {
                    Ok(o) if o.status.success() => {}
                    Ok(o) => problems.push(format!(
                        "cannot unmount {} that the chapter mounted: {}",
                        point.display(),
                        String::from_utf8_lossy(&o.stderr).trim()
                    )),
                    Err(e) => problems.push(format!(
                        "cannot unmount {} that the chapter mounted: umount: {e}",
                        point.display()
                    )),
                }
            }
        }
        problems
    }

    fn keep(mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        self.root.clone()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill_session_processes();
        // Already done at the end of a chapter; this covers a harness panic.
        let _ = self.unmount_all();
        // A runbook may leave a folder at mode 000 (a permissions scenario that failed halfway);
        // make everything removable again so the temporary directory does not leak.
        if self.dir.is_some() {
            restore_permissions(&self.root);
        }
    }
}

fn restore_permissions(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        let mode = meta.permissions().mode();
        if !meta.file_type().is_symlink() && mode & 0o600 != 0o600 {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o600));
        }
        return;
    }
    let _ = fs::set_permissions(
        dir,
        fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
    );
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            restore_permissions(&entry.path());
        }
    }
}

/// `setpriv` arguments that drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, when running as root
/// (`None` when not root, or when root has no setpriv). futurnal's own tests use it too.
pub fn unprivileged_prefix() -> Option<Vec<String>> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let available = Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    available.then(|| {
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

/// Mount points at or below `dir` in this process's mount namespace (the one blocks run in),
/// deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(std::ffi::OsString::from_vec(unescape_mountinfo(field))))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// mountinfo writes space, tab, newline and backslash in paths as `\NNN` (octal).
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(oct) = bytes.get(i + 1..i + 4)
            && oct.iter().all(|b| (b'0'..=b'7').contains(b))
        {
            out.push(oct.iter().fold(0u8, |n, b| n.wrapping_mul(8) + (b - b'0')));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn kill_group(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Live (non-zombie) processes whose environment contains `needle` exactly.
fn processes_with_env(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == needle.as_bytes())
        {
            let zombie = fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                })
                .unwrap_or(false);
            if !zombie {
                out.push(pid);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chapter(md: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("chapter.md");
        fs::write(&file, md).unwrap();
        (dir, file)
    }

    fn opts(uid: u32) -> Options {
        Options {
            host: Host { uid },
            default_timeout: Duration::from_secs(20),
            ..Default::default()
        }
    }

    /// A scenario under `section needs=root`: setup, diagnosis, fix and check.
    const ROOT_SCENARIO: &str = "# C\n\n```bash\necho always\n```\n\n## Needs root\n\n\
        <!-- runbook: section needs=\"root: to mount a tmpfs\" -->\n\n\
        <!-- runbook: hidden\nrm -f ~/fixed\n-->\n\n```bash\necho diagnose\n```\n\n\
        ```output\ndiagnose\n```\n\n<!-- runbook: fix -->\n```bash\ntouch ~/fixed\n```\n\n\
        <!-- runbook: hidden check\ntest -e ~/fixed\n-->\n\n## After\n\n```bash\necho after\n```\n";

    #[test]
    fn a_failed_precondition_skips_the_whole_scenario_with_its_reason() {
        let (_dir, file) = chapter(ROOT_SCENARIO);
        let r = run_chapter(&file, &opts(1000));
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert_eq!(r.executed, 2);
        assert_eq!(r.scenarios, 0);
        let skipped: Vec<(usize, &str)> = r
            .skipped
            .iter()
            .map(|s| (s.line, s.reason.as_str()))
            .collect();
        let reason = "needs root (to mount a tmpfs); the harness runs as uid 1000";
        assert_eq!(
            skipped,
            [(11, reason), (15, reason), (24, reason), (28, reason)]
        );
    }

    #[test]
    fn a_precondition_that_holds_runs_the_scenario_in_full() {
        let (_dir, file) = chapter(ROOT_SCENARIO);
        let r = run_chapter(&file, &opts(0));
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert!(r.skipped.is_empty(), "{:?}", r.skipped);
        // always, setup, diagnose, control, fix, check, fix again, check again, after.
        assert_eq!(r.executed, 9);
        assert_eq!(r.scenarios, 1);
    }

    /// The longest chapter starts first (with one lane, it finishes first), and the summary
    /// still lists chapters in the order they were given.
    #[test]
    fn the_longest_chapter_starts_first_and_results_keep_the_given_order() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = dir.path().join("order");
        let short = dir.path().join("short.md");
        let long = dir.path().join("long.md");
        let block = |name: &str| format!("```bash\necho {name} >> {}\n```\n", stamp.display());
        fs::write(&short, block("short")).unwrap();
        fs::write(
            &long,
            format!("{}\n{}", "A long introduction. ".repeat(50), block("long")),
        )
        .unwrap();
        let summary = run(
            &[short.clone(), long.clone()],
            &Options {
                jobs: 1,
                ..opts(1000)
            },
        );
        assert_eq!(fs::read_to_string(&stamp).unwrap(), "long\nshort\n");
        let files: Vec<&PathBuf> = summary.chapters.iter().map(|c| &c.file).collect();
        assert_eq!(files, [&short, &long]);
    }

    /// Bless rewrites only what changed: placeholders that still fit stay in the file, lines that
    /// still match stay as written, and the blessed chapter passes on the next (different) run.
    #[test]
    fn bless_writes_only_what_changed_and_keeps_placeholders() {
        let (_dir, file) = chapter(
            "```bash\necho \"job $((RANDOM + 1)) succeeded in $((RANDOM % 900 + 1))ms: 7 new\"\n\
             echo \"pid $$\"\necho kept\n```\n\n\
             ```output\njob [NUMBER] succeeded in [DURATION]: 6 new\npid [PID]\nkept\n```\n",
        );
        let r = run_chapter(
            &file,
            &Options {
                bless: true,
                ..opts(1000)
            },
        );
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert_eq!(r.blessed, 1);
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            text.ends_with(
                "```output\njob [NUMBER] succeeded in [DURATION]: 7 new\npid [PID]\nkept\n```\n"
            ),
            "{text}"
        );
        let again = run_chapter(&file, &opts(1000));
        assert!(again.failures.is_empty(), "{:?}", again.failures);
        assert_eq!(again.blessed, 0);
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(
            unescape_mountinfo(r"/tmp/a\040b\011c\134d\012"),
            b"/tmp/a b\tc\\d\n"
        );
        assert_eq!(unescape_mountinfo(r"/x\04"), b"/x\\04");
    }

    /// A chapter that mounts a tmpfs in its home and then fails leaves no mount behind. Needs
    /// root (as CI has); elsewhere it says why it did not run.
    #[test]
    fn a_failed_chapter_leaves_no_mount_behind() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        }
        let (_dir, file) = chapter(
            "```bash\nmkdir -p ~/disk/inner\nmount -t tmpfs -o size=1m tmpfs ~/disk\n\
             mkdir ~/disk/inner\nmount -t tmpfs -o size=1m tmpfs ~/disk/inner\n\
             grep -c \" $HOME/disk\" /proc/self/mountinfo\n```\n\n```output\n2\n```\n\n\
             ```bash\nfalse\n```\n",
        );
        let r = run_chapter(
            &file,
            &Options {
                keep_temp: true,
                ..opts(0)
            },
        );
        let kept = r.kept_dir.clone().expect("kept sandbox");
        let left = mounts_under(&kept);
        let _ = fs::remove_dir_all(&kept);
        assert_eq!(r.executed, 2, "{:?}", r.failures);
        assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
        assert_eq!(r.failures[0].line, 13, "{:?}", r.failures);
        assert!(left.is_empty(), "left mounted: {left:?}");
    }
}
