//! The orchestrator daemon's lifecycle: start (background or foreground), run, stop.
//!
//! Owns: spawning the detached daemon and waiting until it is ready, the daemon's main loop and
//! signal handling (SIGTERM and SIGINT stop it; SIGHUP reloads the configuration, see `reload`),
//! graceful and forced stop, and the daemon's telemetry duties (samples, retention; the rows and
//! queries are `telemetry`'s).
//! Invariants: one daemon per home (see `lock`); a background start returns only once the daemon
//! is ready or has failed, and relays the daemon's own error; the recovery marker exists exactly
//! while a daemon may be running; a clean stop marks the instance stopped, removes the marker and
//! releases the lock, in that order.
//! Threads: the main loop runs on the daemon's main thread, on a current-thread runtime that only
//! waits for signals, timers and job messages. It owns queue.db and does its SQLite work
//! synchronously, so while a statement waits for a lock (at most the busy timeout, `db`) nothing
//! else is handled; a signal or message that arrives meanwhile is handled right after, not lost.
//! Nothing long runs on it: each job has its own thread, and parsing runs on `parse_pool`.

pub mod integrity;
pub mod lock;
pub mod notify;
pub mod recovery;
pub mod reload;
pub mod status;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::{self, Loaded, Overrides};
use crate::error::{CommandError, ExitCode, OperatorError, Result};
use crate::home::{HOME_ENV, Home, display_path};
use crate::logging::{self, RotatingFile};
use crate::queue::{InstanceRow, QueueDb, now_ms};
use crate::runbook::topics;
use crate::security::audit;
use lock::{AcquireError, LockInfo};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::workers::{self, Pool};

const READY: &str = "futurnal-ready ";
const RECOVERED: &str = "futurnal-recovered ";
/// A line the background start prints as it is (what a start did besides starting).
const NOTICE: &str = "futurnal-notice ";
/// The ids of the runs a `--rebuild-store` start queued, for the starting command to wait on.
const REBUILD_JOBS: &str = "futurnal-rebuild-jobs ";

/// What a background start did besides starting the daemon.
#[derive(Debug, Default)]
pub struct Started {
    /// The runs `--rebuild-store` queued (empty without it).
    pub rebuild_jobs: Vec<i64>,
}
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const HEARTBEAT: Duration = Duration::from_secs(5);

fn already_running(info: Option<LockInfo>) -> OperatorError {
    let who = match info {
        Some(i) => format!(
            "pid {}, started {}",
            i.pid,
            crate::display::timestamp(i.started_at)
        ),
        None => "pid unknown".into(),
    };
    OperatorError::new(
        ExitCode::AlreadyRunning,
        format!("the orchestrator is already running for this home ({who})"),
        "nothing was changed; use the running orchestrator, or stop it first with \
         `futurnal orchestrator stop`",
        topics::ALREADY_RUNNING,
    )
}

pub fn load_config(home: &Home, overrides: &Overrides) -> Result<Loaded> {
    config::load(home, overrides).map_err(|problems| crate::error::config_invalid(&problems))
}

/// `futurnal orchestrator start`.
pub fn start(
    home: &Home,
    overrides: &Overrides,
    foreground: bool,
    detached_child: bool,
    rebuild_store: bool,
) -> Result<Started, CommandError> {
    let loaded = load_config(home, overrides)?;
    if foreground || detached_child {
        run(home, &loaded, detached_child, rebuild_store)?;
        return Ok(Started::default());
    }
    home.ensure_layout()?;
    if let Some(info) = lock::holder(home) {
        return Err(already_running(info).into());
    }
    start_background(home, &loaded, overrides, rebuild_store)
}

fn start_background(
    home: &Home,
    loaded: &Loaded,
    overrides: &Overrides,
    rebuild_store: bool,
) -> Result<Started, CommandError> {
    let exe = std::env::current_exe().map_err(|e| {
        OperatorError::failure(
            format!("cannot find the futurnal executable to start the daemon: {e}"),
            "nothing was started; run `futurnal orchestrator start --foreground` instead",
            topics::START_REFUSED,
        )
    })?;
    let mut cmd = Command::new(exe);
    cmd.args(["orchestrator", "start", "--detached-child"]);
    if rebuild_store {
        cmd.arg("--rebuild-store");
    }
    if loaded.file.explicit {
        cmd.arg("--config").arg(absolute(&loaded.file.path));
    }
    for s in &overrides.set {
        cmd.arg("--set").arg(s);
    }
    // The daemon must not pin the operator's working directory, and must find the same home.
    cmd.env(HOME_ENV, home.root())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        OperatorError::failure(
            format!("cannot start the daemon process: {e}"),
            "nothing was started; run `futurnal orchestrator start --foreground` to see why",
            topics::START_REFUSED,
        )
    })?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut relayed = Vec::new();
    let mut started = Started::default();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(pid) = line.strip_prefix(READY) {
                    println!("orchestrator started (pid {pid})");
                    return Ok(started);
                } else if let Some(ids) = line.strip_prefix(REBUILD_JOBS) {
                    started.rebuild_jobs = ids
                        .split_whitespace()
                        .filter_map(|id| id.parse().ok())
                        .collect();
                } else if let Some(text) = line
                    .strip_prefix(RECOVERED)
                    .or_else(|| line.strip_prefix(NOTICE))
                {
                    println!("{text}");
                } else {
                    relayed.push(line);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let code = child
                    .wait()
                    .ok()
                    .and_then(|s| s.code())
                    .unwrap_or(ExitCode::Failure as i32);
                for line in &relayed {
                    eprintln!("{line}");
                }
                if relayed.is_empty() {
                    eprintln!(
                        "error: the daemon exited (status {code}) before it was ready\n  safe to do: \
                         run `futurnal orchestrator start --foreground` to see the failure\n  \
                         runbook: futurnal help runbook {}",
                        topics::START_REFUSED
                    );
                }
                return Err(CommandError::Reported(code.clamp(1, 255) as u8));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(OperatorError::failure(
                    format!(
                        "the daemon did not become ready within {}s and was stopped",
                        READY_TIMEOUT.as_secs()
                    ),
                    format!(
                        "read {} for the reason, then start again",
                        display_path(&home.log_file())
                    ),
                    topics::START_REFUSED,
                )
                .into());
            }
        }
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// The daemon itself, in the foreground or as the detached child.
fn run(home: &Home, loaded: &Loaded, detached: bool, rebuild_store: bool) -> Result<()> {
    if detached {
        // A new session: no controlling terminal, no SIGHUP when the operator's shell exits.
        let _ = rustix::process::setsid();
    }
    home.ensure_layout()?;
    // One thread, this one: the main loop owns queue.db and blocks on it (see the header).
    // Signal handlers exist before the lock is taken: once `status` can see this daemon, a
    // `stop` must find a handler, never the default action.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            OperatorError::failure(
                format!("cannot start the async runtime: {e}"),
                "nothing was started; check system limits (threads, file descriptors)",
                topics::START_REFUSED,
            )
        })?;
    // Before the lock: once a command can find this process through the lock, every signal it
    // sends (SIGHUP for reload, SIGUSR1 for `wake`) has a handler, never the default action.
    let signals = {
        let _context = runtime.enter();
        Signals::install().map_err(|e| {
            OperatorError::failure(
                format!("cannot install signal handlers: {e}"),
                "nothing was started",
                topics::START_REFUSED,
            )
        })?
    };
    check_free_space(home, loaded.config.queue.min_free_mb)?;
    let pid = std::process::id();
    let instance_id = uuid::Uuid::now_v7().to_string();
    let started_at = now_ms();
    let lock = lock::acquire(
        home,
        &LockInfo {
            pid,
            instance_id: instance_id.clone(),
            started_at,
            // Its SIGUSR1 handler is installed above.
            wakes: true,
        },
    )
    .map_err(|e| match e {
        AcquireError::Held(info) => already_running(info),
        AcquireError::Io(e) => crate::error::start_cannot_open(
            format!(
                "cannot open the instance lock {}: {e}",
                display_path(&home.lock_file())
            ),
            &e,
            "nothing was started; check permissions of the home",
        ),
    })?;

    let log = RotatingFile::open(&home.log_file()).map_err(|e| {
        crate::error::start_cannot_open(
            format!(
                "cannot open the log {}: {e}",
                display_path(&home.log_file())
            ),
            &e,
            "nothing was started; check permissions and free space of the home",
        )
    })?;
    let stderr_sink = log.try_clone_file().ok();
    logging::init_daemon(log, !detached);
    for t in crate::home::secure(home)? {
        audit(
            home,
            loaded.config.security.audit_logging,
            "home.permissions_tightened",
            t.audit_details(),
        );
    }

    let cfg = &loaded.config;
    let store_aside = set_aside_databases(home, rebuild_store)?;
    // What grows with history is checked after the start, in the background (`integrity`).
    let checks = integrity::start_checks(home);
    let db = QueueDb::open_for_start(&home.queue_db(), &cfg.queue, checks.0)
        .map_err(|e| crate::error::queue_unusable(&e, crate::error::Doing::Start))
        .inspect_err(|e| {
            tracing::error!("{}", e.what);
        })?;
    // Checked before anything is recovered or run, and kept open while the daemon runs (see
    // `store`): a damaged store is refused, never silently replaced.
    let store = crate::store::Store::open_checked(&home.store_db(), checks.1)
        .map_err(|e| crate::error::store_unusable(&home.store_db(), &e))
        .inspect_err(|e| {
            tracing::error!("{}", e.what);
        })?;
    integrity::passed_at_start(home, checks);
    let recovered = recovery::recover_if_needed(home, &db, &instance_id)?;
    let (rebuild_notice, rebuild_jobs) = match &store_aside {
        Some(aside) => queue_rebuild(home, &db, loaded, aside)?,
        None => Default::default(),
    };
    recovery::write_marker(
        home,
        &recovery::Marker {
            instance_id: instance_id.clone(),
            pid,
            started_at,
        },
    )?;
    let workers_max = loaded.effective_workers();
    db.insert_instance(&InstanceRow {
        instance_id: instance_id.clone(),
        pid: pid as i64,
        version: env!("CARGO_PKG_VERSION").to_string(),
        config_path: loaded.file.path.display().to_string(),
        started_at,
        heartbeat_at: started_at,
        stopped_at: None,
        stop_kind: None,
        workers_max: workers_max as i64,
        workers_busy: 0,
        shutdown_grace_seconds: cfg.workers.shutdown_grace_seconds as i64,
    })?;
    // What runs, and how it was layered: `reload` re-reads the file the same way, and commands
    // compare the file with it.
    if let Err(e) = reload::record_running(&db, &instance_id, loaded, workers_max, 1, started_at) {
        tracing::warn!("cannot record the running configuration: {e}");
    }
    // Prometheus metrics at /metrics when `telemetry.metrics_listen` is set (its own thread and
    // read-only connections), serving before the start reports ready; stopped before the lock
    // is released.
    let metrics = crate::metrics::serve(home, &cfg.telemetry.metrics_listen);
    let audit_on = cfg.security.audit_logging;
    audit(
        home,
        audit_on,
        "orchestrator.start",
        json!({
            "instance_id": instance_id,
            "foreground": !detached,
            "recovered": recovered.is_some(),
        }),
    );
    tracing::info!(
        pid,
        instance = %instance_id,
        workers = workers_max,
        version = env!("CARGO_PKG_VERSION"),
        "orchestrator ready"
    );
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }

    if detached {
        if let Some(row) = &recovered {
            eprintln!("{RECOVERED}{}", recovery::describe(row));
        }
        for line in &rebuild_notice {
            eprintln!("{NOTICE}{line}");
        }
        if !rebuild_jobs.is_empty() {
            let ids: Vec<String> = rebuild_jobs.iter().map(i64::to_string).collect();
            eprintln!("{REBUILD_JOBS}{}", ids.join(" "));
        }
        eprintln!("{READY}{pid}");
        // From here on anything written to stderr (a panic, say) belongs in the log.
        if let Some(f) = stderr_sink {
            let _ = rustix::stdio::dup2_stderr(&f);
        }
    } else {
        if let Some(row) = &recovered {
            println!("{}", recovery::describe(row));
        }
        for line in &rebuild_notice {
            println!("{line}");
        }
        println!("orchestrator running in the foreground (pid {pid}); press Ctrl-C to stop");
        // Under systemd (`Type=notify`): ready now, not when the process started.
        notify::enable();
        notify::send("READY=1");
    }

    let integrity = integrity::check_in_background(home, checks);
    let (pool, messages) = Pool::new(home, cfg, &instance_id, workers_max as usize);
    let mut live = reload::Live {
        loaded: loaded.clone(),
        generation: 1,
    };
    let reason = runtime.block_on(main_loop(
        home,
        &db,
        &instance_id,
        pool,
        messages,
        &mut live,
        Wakeups { signals, integrity },
    ));
    // The workers are done with the store: closing the last connection checkpoints its log.
    drop(store);
    // A reload may have changed it.
    let audit_on = live.loaded.config.security.audit_logging;

    if let Err(e) = db.mark_stopped(&instance_id, "clean") {
        tracing::error!("could not record the clean stop: {e}");
    }
    recovery::remove_marker(home);
    audit(
        home,
        audit_on,
        "orchestrator.stop",
        json!({"instance_id": instance_id, "reason": reason}),
    );
    tracing::info!("orchestrator stopped");
    drop(metrics);
    drop(db);
    drop(lock);
    Ok(())
}

/// SQLite fails in confusing ways on a full disk; refuse to start before that.
/// Before the databases are opened: with `--rebuild-store`, the store and its side files go
/// into a new `backups/replaced-*` folder (returned); and side files whose database is gone
/// (set aside by hand, or by a rebuild a kill interrupted) are moved out of the way, so SQLite
/// never replays a stale log into a new database.
fn set_aside_databases(home: &Home, rebuild_store: bool) -> Result<Option<PathBuf>> {
    let cannot = |e: std::io::Error| {
        OperatorError::failure(
            format!("cannot set the old database files aside: {e}"),
            "the orchestrator did not start; nothing was deleted (see backups/ in the home)",
            topics::START_REFUSED,
        )
    };
    let aside = if rebuild_store {
        crate::backup::set_aside(home, &home.store_db()).map_err(cannot)?
    } else {
        None
    };
    for db in [home.queue_db(), home.store_db()] {
        if let Some(dir) = crate::backup::set_aside_orphans(home, &db).map_err(cannot)? {
            tracing::warn!(
                "side files of a missing {} were moved to {}",
                db.file_name().unwrap_or_default().to_string_lossy(),
                display_path(&dir)
            );
        }
    }
    Ok(aside)
}

/// After `--rebuild-store` set the store aside: one run of every enabled source fills the new
/// store (documents are keyed by source and item, so nothing is stored twice). Audited.
/// Returns the lines that tell the operator what happened, and the runs' ids.
fn queue_rebuild(
    home: &Home,
    db: &QueueDb,
    loaded: &Loaded,
    aside: &std::path::Path,
) -> Result<(Vec<String>, Vec<i64>)> {
    let mut queued = Vec::new();
    let mut ids = Vec::new();
    for source in loaded.config.sources.iter().filter(|s| s.enabled) {
        let job =
            crate::jobs::enqueue_run(db.conn(), source, "rebuild-store", "orchestrator", now_ms())
                .map_err(|e| crate::error::queue_error(home, e))?;
        queued.push(json!({"source": source.name, "job": job.id()}));
        ids.push(job.id());
    }
    audit(
        home,
        loaded.config.security.audit_logging,
        "store.rebuild",
        json!({"set_aside": display_path(aside), "runs": queued}),
    );
    let lines = vec![
        format!(
            "the document store was set aside in {} (delete it yourself once you are sure)",
            display_path(aside)
        ),
        format!(
            "queued a run of {} to rebuild it (jobs {})",
            match queued.len() {
                1 => "the 1 enabled source".to_string(),
                n => format!("each of the {n} enabled sources"),
            },
            ids.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ];
    Ok((lines, ids))
}

fn check_free_space(home: &Home, min_free_mb: u64) -> Result<()> {
    let Ok(free) = crate::home::free_bytes(home.root()) else {
        return Ok(());
    };
    let needed = min_free_mb.saturating_mul(1024 * 1024);
    if free < needed {
        return Err(OperatorError::failure(
            format!(
                "only {} free on the filesystem of {}; the orchestrator needs at least {} (queue.min_free_mb = {min_free_mb})",
                crate::display::size(free),
                display_path(home.root()),
                crate::display::size(needed)
            ),
            "nothing was started and no data is at risk; free some space (old backups, purged quarantine), then start again",
            topics::DISK_LOW,
        ));
    }
    Ok(())
}

/// The loop's period: due jobs, leases, cancel requests, schedules. Work a command queues does
/// not wait for it (`wake`).
const TICK: Duration = Duration::from_millis(200);

/// `TICK`, or `FUTURNAL_TEST_TICK_MS` in tests that must tell a wake-up from a tick.
fn tick_interval() -> Duration {
    std::env::var("FUTURNAL_TEST_TICK_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(TICK, Duration::from_millis)
}

/// Tell a running orchestrator that a command queued work (a trigger, a resumed source, a
/// retried job), so it claims at once rather than at its next tick. Best effort: the tick
/// catches up on a lost wake-up. Only a holder whose lock record says it answers SIGUSR1 is
/// signalled (it installed its handler before locking): to a restore holding the lock, or a
/// daemon of an older futurnal, the signal's default action would end the process.
pub fn wake(home: &Home) {
    if let Some(Some(info)) = lock::holder(home)
        && info.wakes
        && let Some(pid) = rustix::process::Pid::from_raw(info.pid as i32)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::USR1);
    }
}
/// How often retention runs (`telemetry.retention_days`); it also runs at start.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// Jobs (and attempts, and samples) one retention step deletes: one step per tick, each its own
/// short transaction, so a large backlog never stalls the loop.
const RETENTION_BATCH: i64 = 250;
/// After the grace, interrupted jobs get this long to notice and report before the daemon exits.
const INTERRUPT_WAIT: Duration = Duration::from_secs(5);

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    /// `wake`: a command queued work.
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    /// Must run inside the runtime's context.
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }
}

/// What, besides jobs and timers, the main loop answers: signals, and damage the background
/// integrity check found (`None`: the start checked every page).
struct Wakeups {
    signals: Signals,
    integrity: Option<std::sync::mpsc::Receiver<integrity::Failed>>,
}

async fn main_loop(
    home: &Home,
    db: &QueueDb,
    instance_id: &str,
    mut pool: Pool,
    mut messages: UnboundedReceiver<workers::Message>,
    live: &mut reload::Live,
    wakeups: Wakeups,
) -> String {
    let Wakeups {
        signals:
            Signals {
                mut term,
                mut int,
                mut hup,
                mut usr1,
            },
        integrity,
    } = wakeups;
    let mut tick = tokio::time::interval(tick_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beat = tokio::time::interval(HEARTBEAT);
    let mut telemetry = Telemetry::new(&live.loaded.config);
    // `backup.schedule`: each backup runs on its own thread; the tick only checks what is due.
    let mut backups = crate::backup::Scheduler::default();
    let reason: String = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM received".into(),
            _ = int.recv() => break "SIGINT received".into(),
            // `futurnal orchestrator reload` writes a request row, then sends SIGHUP.
            _ = hup.recv() => {
                live.reload(home, db, instance_id, &mut pool);
                telemetry.reconfigure(&live.loaded.config);
            }
            Some(msg) = messages.recv() => pool.handle(db, msg),
            // A command queued work (`wake`): claim it now, not at the next tick.
            _ = usr1.recv() => pool.tick(db),
            _ = tick.tick() => {
                // Damage the background check found stops the daemon before anything else.
                if let Some(failed) = integrity.as_ref().and_then(|rx| rx.try_recv().ok()) {
                    let text = integrity::record_failure(home, &failed);
                    tracing::error!("{text}");
                    break "the background integrity check found damage".into();
                }
                pool.tick(db);
                telemetry.prune_step(db);
                backups.tick(home, &live.loaded, now_ms());
            }
            _ = telemetry.sample.tick() => telemetry.take_sample(home, db, &pool),
            _ = telemetry.retention.tick() => telemetry.start_pruning(&live.loaded.config),
            _ = beat.tick() => {
                heartbeat(db, instance_id, &pool);
                // A request whose signal never arrived is still answered.
                if reload::has_lost_request(db.conn(), instance_id, now_ms()) {
                    live.reload(home, db, instance_id, &mut pool);
                }
            }
        }
    };
    notify::send("STOPPING=1");
    let grace = Duration::from_secs(live.loaded.config.workers.shutdown_grace_seconds);
    // Graceful stop: no new work; in-flight jobs get the grace to finish, then are interrupted
    // and handed back to the queue.
    pool.drain();
    let in_flight = pool.busy();
    tracing::info!(
        "stopping: {reason}; {in_flight} job{} in flight",
        if in_flight == 1 { "" } else { "s" }
    );
    let deadline = tokio::time::Instant::now() + grace;
    let mut interrupted = false;
    while !pool.idle() {
        tokio::select! {
            Some(msg) = messages.recv() => pool.handle(db, msg),
            _ = tick.tick() => pool.tick(db),
            _ = tokio::time::sleep_until(deadline), if !interrupted => {
                tracing::warn!("grace of {}s is over: interrupting {} job(s)", grace.as_secs(), pool.busy());
                pool.interrupt_all();
                interrupted = true;
            }
            _ = tokio::time::sleep_until(deadline + INTERRUPT_WAIT), if interrupted => {
                tracing::warn!("{} job(s) did not stop in time; they resume at the next start", pool.busy());
                pool.abandon(db);
            }
        }
    }
    reason
}

/// The daemon's telemetry duties: a sample every `telemetry.sample_interval_seconds`, and
/// retention at start and every `RETENTION_EVERY`, one bounded step per tick until done.
struct Telemetry {
    sample: tokio::time::Interval,
    sample_every: Duration,
    retention: tokio::time::Interval,
    /// A retention pass in progress: its cutoff, and what it removed so far.
    pruning: Option<(i64, crate::telemetry::Pruned)>,
}

impl Telemetry {
    fn new(config: &config::Config) -> Telemetry {
        let sample_every = Duration::from_secs(config.telemetry.sample_interval_seconds.max(1));
        let mut sample = tokio::time::interval(sample_every);
        sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retention = tokio::time::interval(RETENTION_EVERY);
        retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Telemetry {
            sample,
            sample_every,
            retention,
            pruning: None,
        }
    }

    /// A reload may change the sample interval (retention reads its window at each pass).
    fn reconfigure(&mut self, config: &config::Config) {
        let every = Duration::from_secs(config.telemetry.sample_interval_seconds.max(1));
        if every != self.sample_every {
            self.sample_every = every;
            self.sample = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            self.sample
                .set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
    }

    fn take_sample(&self, home: &Home, db: &QueueDb, pool: &Pool) {
        let free = crate::home::free_bytes(home.root()).ok();
        if let Err(e) = crate::telemetry::record_sample(db, now_ms(), pool.busy(), free) {
            tracing::warn!("cannot record a telemetry sample: {e}");
        }
    }

    fn start_pruning(&mut self, config: &config::Config) {
        if self.pruning.is_none() {
            let cutoff = crate::telemetry::cutoff(now_ms(), config.telemetry.retention_days);
            self.pruning = Some((cutoff, Default::default()));
        }
    }

    fn prune_step(&mut self, db: &QueueDb) {
        let Some((cutoff, total)) = &mut self.pruning else {
            return;
        };
        match crate::telemetry::prune_step(db.conn(), *cutoff, RETENTION_BATCH) {
            Ok(step) if step.is_empty() => {
                if !total.is_empty() {
                    tracing::info!(
                        jobs = total.jobs,
                        events = total.events,
                        item_errors = total.item_errors,
                        attempts = total.attempts,
                        samples = total.samples,
                        "retention: removed finished jobs and telemetry older than {}",
                        crate::display::timestamp(*cutoff)
                    );
                }
                self.pruning = None;
            }
            Ok(step) => total.add(step),
            Err(e) => {
                // A busy or full queue.db: the next pass tries again.
                tracing::warn!("retention stopped: {e}");
                self.pruning = None;
            }
        }
    }
}

fn heartbeat(db: &QueueDb, instance_id: &str, pool: &Pool) {
    if let Err(e) = db.heartbeat(instance_id, pool.busy() as u32) {
        tracing::warn!("heartbeat failed: {e}");
    }
    // Job leases are renewed by the pool every tick (`Pool::tick`).
}

/// `futurnal orchestrator stop [--force]`.
pub fn stop(home: &Home, force: bool, audit_on: bool) -> Result<()> {
    let Some(info) = lock::holder(home) else {
        println!("orchestrator is not running (nothing to stop)");
        return Ok(());
    };
    let Some(info) = info else {
        return Err(OperatorError::failure(
            format!(
                "the orchestrator lock {} is held but does not say which process holds it",
                display_path(&home.lock_file())
            ),
            "nothing was stopped; find the process with `fuser` or `lsof` on the lock file",
            topics::STOPPING,
        ));
    };
    let pid = rustix::process::Pid::from_raw(info.pid as i32).ok_or_else(|| {
        OperatorError::failure(
            format!("the lock records an invalid pid {}", info.pid),
            "nothing was stopped",
            topics::STOPPING,
        )
    })?;
    let grace = QueueDb::read_existing(&home.queue_db())
        .ok()
        .flatten()
        .and_then(|db| db.latest_instance().ok().flatten())
        .filter(|i| i.instance_id == info.instance_id)
        .map(|i| i.shutdown_grace_seconds.max(0) as u64)
        .unwrap_or(30);
    let signal = if force {
        rustix::process::Signal::KILL
    } else {
        rustix::process::Signal::TERM
    };
    rustix::process::kill_process(pid, signal).map_err(|e| {
        OperatorError::failure(
            format!("cannot signal the orchestrator (pid {}): {e}", info.pid),
            "nothing was stopped; are you the user that started it?",
            topics::STOPPING,
        )
    })?;
    // A forced stop only needs the kernel; a graceful one waits for in-flight work.
    let wait = if force {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(grace + 10)
    };
    if !lock::wait_released(home, wait) {
        return Err(OperatorError::failure(
            format!(
                "the orchestrator (pid {}) is still running {}s after the stop request",
                info.pid,
                wait.as_secs()
            ),
            "it keeps running and no data was lost; wait, or stop it now with \
             `futurnal orchestrator stop --force`",
            topics::STOPPING,
        ));
    }
    audit(
        home,
        audit_on,
        if force {
            "orchestrator.kill"
        } else {
            "orchestrator.stop_requested"
        },
        json!({"instance_id": info.instance_id, "target_pid": info.pid}),
    );
    if force {
        println!(
            "orchestrator killed (pid {}); work it was doing is recovered at the next start",
            info.pid
        );
    } else {
        println!("orchestrator stopped (pid {})", info.pid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The telemetry chapter's figures are the code's: samples every
    /// `telemetry.sample_interval_seconds` (its default), retention at start and every hour, the
    /// default window.
    #[test]
    fn the_book_states_the_sampling_and_retention_the_daemon_uses() {
        let chapter = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("book/src/monitoring-telemetry.md"),
        )
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
        let defaults = crate::config::Config::default().telemetry;
        assert!(chapter.contains(&format!(
            "a sample** every `telemetry.sample_interval_seconds` ({} by default)",
            defaults.sample_interval_seconds
        )));
        assert!(chapter.contains(&format!(
            "`telemetry.retention_days` ({} by default)",
            defaults.retention_days
        )));
        assert_eq!(super::RETENTION_EVERY, std::time::Duration::from_secs(3600));
        assert!(chapter.contains("prunes when it starts and then every hour"));
    }
}
