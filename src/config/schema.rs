//! The schema: every configuration key with its type, default, range, environment variable and
//! documentation (`schema!`), the effective configuration types, and the file form they are read
//! from.
//!
//! Owns: `Config` and its sections, `KEYS`, `SourceConfig`, `Priority`, `Origin`, and the
//! `File*` types serde reads orchestrator.yaml into (every value `Spanned`, for provenance).
//! Invariants: every scalar key is declared once, in `schema!`; the file types deny unknown
//! fields; no number passes its check when it is NaN or infinite. A key's documented default is
//! the value `Config::default()` holds (`KeySpec::default_doc`), except the keys of
//! `MACHINE_DEFAULTS`, documented by a rule that is tested against the function computing it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::render::yaml_scalar;
use crate::failure::Backoff;
use crate::home::display_path;
use crate::sources::{SourceSpec, SourceType};

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    Default,
    File { line: u64, column: u64 },
    Env { var: String },
    Flag,
}

impl Origin {
    pub(super) fn describe(&self, file: &Path) -> String {
        match self {
            Origin::Default => "default".into(),
            Origin::File { line, column } => format!("{}:{line}:{column}", display_path(file)),
            Origin::Env { var } => format!("env {var}"),
            Origin::Flag => "flag --set".into(),
        }
    }
}

/// One scalar configuration key, as documented in the configuration reference.
#[derive(Debug)]
pub struct KeySpec {
    pub path: &'static str,
    pub env: &'static str,
    pub kind: &'static str,
    pub doc: &'static str,
}

impl KeySpec {
    /// The default as the reference and `config init` document it: the value `Config::default()`
    /// really holds, spelled as YAML; for a default that depends on the machine, its rule
    /// (`MACHINE_DEFAULTS`). Never a second hand-written copy of a value.
    pub fn default_doc(&self) -> String {
        match MACHINE_DEFAULTS.iter().find(|m| m.path == self.path) {
            Some(m) => m.rule.to_string(),
            None => Config::default().value_yaml(self.path).unwrap_or_default(),
        }
    }
}

/// A default computed from the machine: documented by its rule, and the rule is checked against
/// the function that computes the value for every CPU count from 1 to 64 (`model`).
#[cfg_attr(not(test), allow(dead_code))] // `model` and `code` are read by that check only
pub struct MachineDefault {
    pub path: &'static str,
    pub rule: &'static str,
    /// The documented rule as a function of the CPU count, for the test.
    pub model: fn(u32) -> u32,
    /// The function the default really comes from, as a function of the CPU count.
    pub code: fn(u32) -> u32,
}

/// The only keys whose reference default is a rule rather than a value.
pub const MACHINE_DEFAULTS: &[MachineDefault] = &[MachineDefault {
    path: "workers.max_workers",
    rule: "CPU count, at most 8",
    model: |cpus| cpus.min(8),
    code: max_workers_for,
}];

type Check<T> = fn(&T) -> Result<(), String>;

pub(super) fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    v: T,
    lo: T,
    hi: T,
) -> Result<(), String> {
    // Written so that an unordered value (NaN) is out of range too.
    if !(v >= lo && v <= hi) {
        Err(format!("must be between {lo} and {hi}, found {v}"))
    } else {
        Ok(())
    }
}

/// A check every schema type gets before its own: NaN and infinities compare false with every
/// bound, so they would pass any range check and then poison arithmetic (a NaN backoff retries
/// every second). Integers and booleans are always finite.
trait Finite {
    fn non_finite(&self) -> Option<String> {
        None
    }
}

impl Finite for f64 {
    fn non_finite(&self) -> Option<String> {
        (!self.is_finite()).then(|| format!("must be a finite number, found {self}"))
    }
}
impl Finite for u32 {}
impl Finite for u64 {}
impl Finite for bool {}
impl Finite for String {}

/// Empty (off), or an address on this machine's loopback: metrics never listen on a network.
#[allow(clippy::ptr_arg)] // the schema passes every check a reference to its value type
fn loopback_or_empty(v: &String) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    match v.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_loopback() => Ok(()),
        Ok(addr) => Err(format!(
            "{} is not a loopback address: metrics are served on this machine only (use 127.0.0.1:PORT)",
            addr.ip()
        )),
        Err(_) => Err(format!(
            "`{v}` is not an address: use 127.0.0.1:PORT, or \"\" for off"
        )),
    }
}

/// `backup.schedule` takes a source's schedule syntax: one parser, one set of errors.
#[allow(clippy::ptr_arg)] // the schema passes every check a reference to its value type
fn backup_schedule(v: &String) -> Result<(), String> {
    crate::schedule::Schedule::parse(v).map(|_| ())
}

fn any_bool(_: &bool) -> Result<(), String> {
    Ok(())
}

pub(super) fn cpu_count() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

fn default_max_workers() -> u32 {
    max_workers_for(cpu_count())
}

fn max_workers_for(cpus: u32) -> u32 {
    cpus.min(8)
}

macro_rules! schema {
    ($(
        $section:ident : $Section:ident / $FileSection:ident {
            $( $key:ident : $ty:ty = $default:expr ;
               env $env:literal ; kind $kind:literal ;
               check $check:expr ; doc $doc:literal ; )*
        }
    )*) => {
        $(
            #[derive(Debug, Clone, Serialize, PartialEq)]
            pub struct $Section { $( pub $key: $ty, )* }

            impl Default for $Section {
                fn default() -> Self { $Section { $( $key: $default, )* } }
            }

            #[derive(Debug, Deserialize, Default)]
            #[serde(deny_unknown_fields)]
            pub(super) struct $FileSection { $( #[serde(default)] $key: Option<Spanned<$ty>>, )* }
        )*

        /// The effective configuration.
        #[derive(Debug, Clone, Serialize, PartialEq, Default)]
        pub struct Config {
            $( pub $section: $Section, )*
            pub sources: Vec<SourceConfig>,
        }

        #[derive(Debug, Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        pub(super) struct FileConfig {
            $( #[serde(default)] pub(super) $section: Option<$FileSection>, )*
            #[serde(default)]
            pub(super) sources: Option<Spanned<Vec<FileSource>>>,
        }

        /// Every scalar key, in documentation order.
        pub const KEYS: &[KeySpec] = &[
            $( $( KeySpec {
                path: concat!(stringify!($section), ".", stringify!($key)),
                env: $env, kind: $kind, doc: $doc,
            }, )* )*
        ];

        impl Config {
            pub(super) fn apply_file(&mut self, file: FileConfig, origins: &mut Origins) {
                $( if let Some(sec) = file.$section {
                    $( if let Some(v) = sec.$key {
                        origins.insert(
                            concat!(stringify!($section), ".", stringify!($key)),
                            Origin::File { line: v.defined.line(), column: v.defined.column() },
                        );
                        self.$section.$key = v.value;
                    } )*
                } )*
            }

            /// Set one key from text (environment variables and `--set`).
            pub(super) fn apply_text(&mut self, path: &str, text: &str) -> Result<(), String> {
                match path {
                    $( $( concat!(stringify!($section), ".", stringify!($key)) => {
                        self.$section.$key = parse_text::<$ty>(text, $kind)?;
                        Ok(())
                    } )* )*
                    _ => Err(format!("unknown key `{path}`")),
                }
            }

            /// Range and consistency checks for every scalar key.
            pub(super) fn check_scalars(&self) -> Vec<(&'static str, String)> {
                let mut problems = Vec::new();
                $( $(
                    let check: Check<$ty> = $check;
                    let value = &self.$section.$key;
                    let verdict = match Finite::non_finite(value) {
                        Some(msg) => Err(msg),
                        None => check(value),
                    };
                    if let Err(msg) = verdict {
                        problems.push((concat!(stringify!($section), ".", stringify!($key)), msg));
                    }
                )* )*
                problems
            }

            /// The value of a scalar key rendered as YAML.
            pub fn value_yaml(&self, path: &str) -> Option<String> {
                match path {
                    $( $( concat!(stringify!($section), ".", stringify!($key)) =>
                        Some(yaml_scalar(&serde_json::to_value(&self.$section.$key).ok()?)), )* )*
                    _ => None,
                }
            }
        }
    };
}

schema! {
    workers: Workers / FileWorkers {
        max_workers: u32 = default_max_workers();
            env "FUTURNAL_WORKERS_MAX_WORKERS"; kind "integer";

            check |v| in_range(*v, 1, 64);
            doc "Size of the worker pool: how many jobs run at once.";
        hardware_cap_enabled: bool = true;
            env "FUTURNAL_WORKERS_HARDWARE_CAP_ENABLED"; kind "boolean";
            check any_bool;
            doc "Never run more workers than the machine has CPUs, whatever max_workers says.";
        shutdown_grace_seconds: u64 = 30;
            env "FUTURNAL_WORKERS_SHUTDOWN_GRACE_SECONDS"; kind "integer";
            check |v| in_range(*v, 0, 3600);
            doc "How long a graceful stop waits for in-flight jobs before cancelling them.";
        stall_timeout_seconds: u64 = 300;
            env "FUTURNAL_WORKERS_STALL_TIMEOUT_SECONDS"; kind "integer";
            check |v| in_range(*v, 10, 86_400);
            doc "A running job that reports no progress for this long is taken back and retried.";
        cancel_grace_seconds: u64 = 10;
            env "FUTURNAL_WORKERS_CANCEL_GRACE_SECONDS"; kind "integer";
            check |v| in_range(*v, 1, 3600);
            doc "How long a cancelled running job may take to stop before it is marked cancelled.";
    }
    retry: Retry / FileRetry {
        max_attempts: u32 = 3;
            env "FUTURNAL_RETRY_MAX_ATTEMPTS"; kind "integer";
            check |v| in_range(*v, 1, 20);
            doc "Attempts a job gets before it is quarantined.";
        base_delay_seconds: u64 = 30;
            env "FUTURNAL_RETRY_BASE_DELAY_SECONDS"; kind "integer";
            check |v| in_range(*v, 1, 86_400);
            doc "Delay before the first retry.";
        backoff_multiplier: f64 = 2.0;
            env "FUTURNAL_RETRY_BACKOFF_MULTIPLIER"; kind "number";
            check |v| in_range(*v, 1.0, 10.0);
            doc "Each further retry waits this many times longer than the previous one.";
        max_delay_seconds: u64 = 3600;
            env "FUTURNAL_RETRY_MAX_DELAY_SECONDS"; kind "integer";
            check |v| in_range(*v, 1, 604_800);
            doc "Upper bound of a retry delay.";
        jitter: f64 = 0.2;
            env "FUTURNAL_RETRY_JITTER"; kind "number";
            check |v| in_range(*v, 0.0, 1.0);
            doc "Random spread added to each delay, as a fraction of it (0.2 = ±20%).";
    }
    queue: Queue / FileQueue {
        wal_mode: bool = true;
            env "FUTURNAL_QUEUE_WAL_MODE"; kind "boolean";
            check any_bool;
            doc "Write-ahead logging for queue.db: readers never block the daemon.";
        min_free_mb: u64 = 100;
            env "FUTURNAL_QUEUE_MIN_FREE_MB"; kind "integer";
            check |v| in_range(*v, 0, 10_000_000);
            doc "The orchestrator refuses to start with less free disk space than this (MiB) in its home.";
        checkpoint_interval: u32 = 1000;
            env "FUTURNAL_QUEUE_CHECKPOINT_INTERVAL"; kind "integer";
            check |v| in_range(*v, 10, 100_000);
            doc "WAL pages after which SQLite copies the log back into queue.db.";
    }
    telemetry: Telemetry / FileTelemetry {
        retention_days: u32 = 90;
            env "FUTURNAL_TELEMETRY_RETENTION_DAYS"; kind "integer";
            check |v| in_range(*v, 1, 3650);
            doc "Days of telemetry and of finished jobs kept; older ones are pruned (never a waiting, running or quarantined job).";
        sample_interval_seconds: u64 = 60;
            env "FUTURNAL_TELEMETRY_SAMPLE_INTERVAL_SECONDS"; kind "integer";
            check |v| in_range(*v, 1, 3600);
            doc "How often the daemon records the queue's depth, oldest waiting job, workers busy, WAL size and free disk.";
        metrics_listen: String = String::new();
            env "FUTURNAL_TELEMETRY_METRICS_LISTEN"; kind "string";
            check loopback_or_empty;
            doc "Loopback address where the daemon serves Prometheus metrics at /metrics, such as 127.0.0.1:9464; empty turns it off.";
    }
    health: Health / FileHealth {
        min_free_mb: u64 = 1024;
            env "FUTURNAL_HEALTH_MIN_FREE_MB"; kind "integer";
            check |v| in_range(*v, 0, 10_000_000);
            doc "Health warns when the home's disk has less free space than this (MiB); it fails below queue.min_free_mb.";
        max_pending_age_minutes: u64 = 60;
            env "FUTURNAL_HEALTH_MAX_PENDING_AGE_MINUTES"; kind "integer";
            check |v| in_range(*v, 1, 525_600);
            doc "Health warns when a job has been due for longer than this without being claimed.";
        min_throughput_mbps: f64 = 5.0;
            env "FUTURNAL_HEALTH_MIN_THROUGHPUT_MBPS"; kind "number";
            check |v| in_range(*v, 0.0, 100_000.0);
            doc "Health warns when the last hour's jobs read their sources slower than this (MB/s); 0 turns the check off.";
        max_quarantined: u64 = 0;
            env "FUTURNAL_HEALTH_MAX_QUARANTINED"; kind "integer";
            check |v| in_range(*v, 0, 1_000_000);
            doc "Health warns when more jobs than this wait in quarantine for an operator.";
        max_wal_mb: u64 = 256;
            env "FUTURNAL_HEALTH_MAX_WAL_MB"; kind "integer";
            check |v| in_range(*v, 1, 1_000_000);
            doc "Health warns when queue.db's write-ahead log is larger than this (MiB).";
    }
    backup: Backup / FileBackup {
        keep: u32 = 7;
            env "FUTURNAL_BACKUP_KEEP"; kind "integer";
            check |v| in_range(*v, 1, 10_000);
            doc "Backups `orchestrator backup` keeps in its folder; it removes older ones after writing a new one.";
        schedule: String = "manual".into();
            env "FUTURNAL_BACKUP_SCHEDULE"; kind "string";
            check backup_schedule;
            doc "When the running orchestrator takes a backup under backups/ by itself, written like a source's schedule (`24h`, `0 3 * * *`): due once the newest backup there is older; `manual` turns it off.";
    }
    security: Security / FileSecurity {
        audit_logging: bool = true;
            env "FUTURNAL_SECURITY_AUDIT_LOGGING"; kind "boolean";
            check any_bool;
            doc "Record operator actions (start, stop, recovery) in logs/audit.log.";
        path_redaction: bool = true;
            env "FUTURNAL_SECURITY_PATH_REDACTION"; kind "boolean";
            check any_bool;
            doc "Keep item paths out of the logs, and absolute paths out of stored error messages.";
    }
}

fn parse_text<T: FromStr>(text: &str, kind: &str) -> Result<T, String> {
    text.trim()
        .parse::<T>()
        .map_err(|_| format!("expected {} {kind}, found `{text}`", article(kind)))
}

fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// A source's priority: claims take higher ones first (with aging, so low ones still run).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

/// One declared source, as the rest of futurnal sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourceConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub source_type: SourceType,
    pub path: PathBuf,
    pub schedule: String,
    pub priority: Priority,
    pub enabled: bool,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Items larger than this fail as `too_large` instead of being read.
    pub max_item_mb: u64,
    /// Jobs of this source (its run and item retries) that may run at once.
    pub concurrency: u32,
    /// At most this many items read per second (0: no limit), to keep a big first ingest from
    /// hogging a laptop's disk.
    pub items_per_second: u32,
    /// The retry policy of this source's jobs: the global `retry` section with this source's
    /// `retry:` overrides applied.
    pub retry: Retry,
}

/// What `sources` needs to enumerate and parse this source.
impl<'a> From<&'a SourceConfig> for SourceSpec<'a> {
    fn from(s: &'a SourceConfig) -> Self {
        SourceSpec {
            kind: s.source_type,
            root: &s.path,
            include: &s.include,
            exclude: &s.exclude,
        }
    }
}

/// What the retry backoff is computed from.
impl From<&Retry> for Backoff {
    fn from(r: &Retry) -> Self {
        Backoff {
            base_delay_seconds: r.base_delay_seconds,
            backoff_multiplier: r.backoff_multiplier,
            max_delay_seconds: r.max_delay_seconds,
            jitter: r.jitter,
        }
    }
}

impl SourceConfig {
    /// A source with every optional field at its default (for tests and benchmarks).
    pub fn new(name: &str, source_type: SourceType, path: impl Into<PathBuf>) -> SourceConfig {
        SourceConfig {
            name: name.into(),
            source_type,
            path: path.into(),
            schedule: "manual".into(),
            priority: Priority::Normal,
            enabled: true,
            include: Vec::new(),
            exclude: Vec::new(),
            max_item_mb: 64,
            concurrency: 1,
            items_per_second: 0,
            retry: Retry::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSource {
    pub(super) name: Spanned<String>,
    #[serde(rename = "type")]
    pub(super) source_type: Spanned<SourceType>,
    pub(super) path: Spanned<String>,
    #[serde(default)]
    pub(super) schedule: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) priority: Option<Spanned<Priority>>,
    #[serde(default)]
    pub(super) enabled: Option<Spanned<bool>>,
    #[serde(default)]
    pub(super) include: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) exclude: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) max_item_mb: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) concurrency: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) items_per_second: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) retry: Option<FileRetry>,
}

pub(super) type Origins = BTreeMap<&'static str, Origin>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_follow_the_documented_rule() {
        for key in KEYS {
            let expected = format!("FUTURNAL_{}", key.path.to_uppercase().replace('.', "_"));
            assert_eq!(key.env, expected, "{}", key.path);
        }
    }

    #[test]
    fn machine_defaults_follow_their_documented_rule() {
        for m in MACHINE_DEFAULTS {
            assert!(KEYS.iter().any(|k| k.path == m.path), "{}", m.path);
            for cpus in 1..=64 {
                assert_eq!(
                    (m.code)(cpus),
                    (m.model)(cpus),
                    "{} with {cpus} CPUs",
                    m.path
                );
            }
        }
        let here = Config::default().value_yaml("workers.max_workers");
        assert_eq!(here, Some(max_workers_for(cpu_count()).to_string()));
    }

    #[test]
    fn defaults_pass_their_own_checks() {
        assert!(Config::default().check_scalars().is_empty());
    }

    #[test]
    fn non_finite_numbers_fail_their_check_before_the_range() {
        let mut cfg = Config::default();
        cfg.retry.jitter = f64::NAN;
        cfg.retry.backoff_multiplier = f64::INFINITY;
        let problems = cfg.check_scalars();
        assert_eq!(
            problems,
            vec![
                (
                    "retry.backoff_multiplier",
                    "must be a finite number, found inf".to_string()
                ),
                (
                    "retry.jitter",
                    "must be a finite number, found NaN".to_string()
                ),
            ]
        );
    }
}
