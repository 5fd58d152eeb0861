//! Configuration: schema, defaults, layering, validation and provenance.
//!
//! Owns: `orchestrator.yaml` and the documented `FUTURNAL_*` overrides.
//! Layering, lowest to highest: built-in defaults < the file (`--config PATH` or
//! `~/.futurnal/config/orchestrator.yaml`) < `FUTURNAL_<SECTION>_<KEY>` environment variables <
//! `--set section.key=value` flags. A load records its `Layering` so that the daemon's reload (and
//! a command comparing the file with what the daemon runs) can repeat it exactly.
//! Invariants: every scalar key is declared once in `schema!` (type, default, range, env var, doc);
//! unknown keys are errors, never ignored; a missing file means defaults; every effective value
//! remembers where it came from; no number is NaN or infinite, whatever layer set it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::error::{ExitCode, OperatorError};
use crate::home::{Home, display_path};
use crate::runbook::topics;

pub const CONFIG_ENV: &str = "FUTURNAL_CONFIG";

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
    fn describe(&self, file: &Path) -> String {
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
    pub default_doc: &'static str,
    pub doc: &'static str,
}

type Check<T> = fn(&T) -> Result<(), String>;

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(v: T, lo: T, hi: T) -> Result<(), String> {
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

fn any_bool(_: &bool) -> Result<(), String> {
    Ok(())
}

fn cpu_count() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

fn default_max_workers() -> u32 {
    cpu_count().min(8)
}

macro_rules! schema {
    ($(
        $section:ident : $Section:ident / $FileSection:ident {
            $( $key:ident : $ty:ty = $default:expr ;
               env $env:literal ; kind $kind:literal ; default_doc $ddoc:literal ;
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
            struct $FileSection { $( #[serde(default)] $key: Option<Spanned<$ty>>, )* }
        )*

        /// The effective configuration.
        #[derive(Debug, Clone, Serialize, PartialEq, Default)]
        pub struct Config {
            $( pub $section: $Section, )*
            pub sources: Vec<SourceConfig>,
        }

        #[derive(Debug, Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct FileConfig {
            $( #[serde(default)] $section: Option<$FileSection>, )*
            #[serde(default)]
            sources: Option<Spanned<Vec<FileSource>>>,
        }

        /// Every scalar key, in documentation order.
        pub const KEYS: &[KeySpec] = &[
            $( $( KeySpec {
                path: concat!(stringify!($section), ".", stringify!($key)),
                env: $env, kind: $kind, default_doc: $ddoc, doc: $doc,
            }, )* )*
        ];

        impl Config {
            fn apply_file(&mut self, file: FileConfig, origins: &mut Origins) {
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
            fn apply_text(&mut self, path: &str, text: &str) -> Result<(), String> {
                match path {
                    $( $( concat!(stringify!($section), ".", stringify!($key)) => {
                        self.$section.$key = parse_text::<$ty>(text, $kind)?;
                        Ok(())
                    } )* )*
                    _ => Err(format!("unknown key `{path}`")),
                }
            }

            /// Range and consistency checks for every scalar key.
            fn check_scalars(&self) -> Vec<(&'static str, String)> {
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
            default_doc "CPU count, at most 8";
            check |v| in_range(*v, 1, 64);
            doc "Size of the worker pool: how many jobs run at once.";
        hardware_cap_enabled: bool = true;
            env "FUTURNAL_WORKERS_HARDWARE_CAP_ENABLED"; kind "boolean"; default_doc "true";
            check any_bool;
            doc "Never run more workers than the machine has CPUs, whatever max_workers says.";
        shutdown_grace_seconds: u64 = 30;
            env "FUTURNAL_WORKERS_SHUTDOWN_GRACE_SECONDS"; kind "integer"; default_doc "30";
            check |v| in_range(*v, 0, 3600);
            doc "How long a graceful stop waits for in-flight jobs before cancelling them.";
        stall_timeout_seconds: u64 = 300;
            env "FUTURNAL_WORKERS_STALL_TIMEOUT_SECONDS"; kind "integer"; default_doc "300";
            check |v| in_range(*v, 10, 86_400);
            doc "A running job that reports no progress for this long is taken back and retried.";
        cancel_grace_seconds: u64 = 10;
            env "FUTURNAL_WORKERS_CANCEL_GRACE_SECONDS"; kind "integer"; default_doc "10";
            check |v| in_range(*v, 1, 3600);
            doc "How long a cancelled running job may take to stop before it is marked cancelled.";
    }
    retry: Retry / FileRetry {
        max_attempts: u32 = 3;
            env "FUTURNAL_RETRY_MAX_ATTEMPTS"; kind "integer"; default_doc "3";
            check |v| in_range(*v, 1, 20);
            doc "Attempts a job gets before it is quarantined.";
        base_delay_seconds: u64 = 30;
            env "FUTURNAL_RETRY_BASE_DELAY_SECONDS"; kind "integer"; default_doc "30";
            check |v| in_range(*v, 1, 86_400);
            doc "Delay before the first retry.";
        backoff_multiplier: f64 = 2.0;
            env "FUTURNAL_RETRY_BACKOFF_MULTIPLIER"; kind "number"; default_doc "2.0";
            check |v| in_range(*v, 1.0, 10.0);
            doc "Each further retry waits this many times longer than the previous one.";
        max_delay_seconds: u64 = 3600;
            env "FUTURNAL_RETRY_MAX_DELAY_SECONDS"; kind "integer"; default_doc "3600";
            check |v| in_range(*v, 1, 604_800);
            doc "Upper bound of a retry delay.";
        jitter: f64 = 0.2;
            env "FUTURNAL_RETRY_JITTER"; kind "number"; default_doc "0.2";
            check |v| in_range(*v, 0.0, 1.0);
            doc "Random spread added to each delay, as a fraction of it (0.2 = ±20%).";
    }
    queue: Queue / FileQueue {
        wal_mode: bool = true;
            env "FUTURNAL_QUEUE_WAL_MODE"; kind "boolean"; default_doc "true";
            check any_bool;
            doc "Write-ahead logging for queue.db: readers never block the daemon.";
        min_free_mb: u64 = 100;
            env "FUTURNAL_QUEUE_MIN_FREE_MB"; kind "integer"; default_doc "100";
            check |v| in_range(*v, 0, 10_000_000);
            doc "The orchestrator refuses to start with less free disk space than this (MiB) in its home.";
        checkpoint_interval: u32 = 1000;
            env "FUTURNAL_QUEUE_CHECKPOINT_INTERVAL"; kind "integer"; default_doc "1000";
            check |v| in_range(*v, 10, 100_000);
            doc "WAL pages after which SQLite copies the log back into queue.db.";
    }
    telemetry: Telemetry / FileTelemetry {
        retention_days: u32 = 90;
            env "FUTURNAL_TELEMETRY_RETENTION_DAYS"; kind "integer"; default_doc "90";
            check |v| in_range(*v, 1, 3650);
            doc "Days of job telemetry kept.";
    }
    security: Security / FileSecurity {
        audit_logging: bool = true;
            env "FUTURNAL_SECURITY_AUDIT_LOGGING"; kind "boolean"; default_doc "true";
            check any_bool;
            doc "Record operator actions (start, stop, recovery) in logs/audit.log.";
        path_redaction: bool = true;
            env "FUTURNAL_SECURITY_PATH_REDACTION"; kind "boolean"; default_doc "true";
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

fn yaml_scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        serde_json::Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            if f.fract() == 0.0 {
                format!("{f:.1}")
            } else {
                f.to_string()
            }
        }
        other => other.to_string(),
    }
}

/// Kinds of source futurnal can ingest.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceType {
    LocalFiles,
    Obsidian,
    Maildir,
    Mbox,
}

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
struct FileSource {
    name: Spanned<String>,
    #[serde(rename = "type")]
    source_type: Spanned<SourceType>,
    path: Spanned<String>,
    #[serde(default)]
    schedule: Option<Spanned<String>>,
    #[serde(default)]
    priority: Option<Spanned<Priority>>,
    #[serde(default)]
    enabled: Option<Spanned<bool>>,
    #[serde(default)]
    include: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    exclude: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    max_item_mb: Option<Spanned<u64>>,
    #[serde(default)]
    concurrency: Option<Spanned<u64>>,
    #[serde(default)]
    items_per_second: Option<Spanned<u64>>,
    #[serde(default)]
    retry: Option<FileRetry>,
}

type Origins = BTreeMap<&'static str, Origin>;

/// One problem found while loading or validating configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// `file:line:col`, `env VAR` or `flag --set`.
    pub at: String,
    /// Key path such as `workers.max_workers`.
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.at, self.message)
        } else {
            write!(f, "{}: {}: {}", self.at, self.key, self.message)
        }
    }
}

/// Where the configuration file is and whether it exists.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub present: bool,
    /// True when the path was chosen with `--config` or `FUTURNAL_CONFIG`.
    pub explicit: bool,
}

/// The effective configuration plus where each value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub file: ConfigFile,
    origins: Origins,
    sources_origin: Origin,
    pub warnings: Vec<String>,
    /// How this configuration was layered, to load it the same way again.
    pub layering: Layering,
}

/// What a command asked for on its command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_path: Option<PathBuf>,
    pub set: Vec<String>,
}

/// How a configuration was layered: which file, which `--set` flags, which `FUTURNAL_*`
/// variables. The daemon records its own, so that a reload, and a command comparing the file with
/// what the daemon runs, read the file exactly as the daemon did at start, whatever the
/// environment of the command that asks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Layering {
    /// The file, absolute, as raw bytes: a path need not be UTF-8.
    pub path: Vec<u8>,
    /// Chosen with `--config` or `FUTURNAL_CONFIG` (then a missing file is an error).
    pub explicit: bool,
    pub set: Vec<String>,
    /// The `FUTURNAL_<SECTION>_<KEY>` variables that were set.
    pub env: BTreeMap<String, String>,
}

impl Layering {
    pub fn path(&self) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(&self.path))
    }
}

/// Where `FUTURNAL_*` values come from: this process, or a recorded layering.
enum EnvSource<'a> {
    Process,
    Recorded(&'a BTreeMap<String, String>),
}

impl EnvSource<'_> {
    fn get(&self, var: &str) -> Result<Option<String>, String> {
        match self {
            EnvSource::Recorded(map) => Ok(map.get(var).cloned()),
            EnvSource::Process => match std::env::var(var) {
                Ok(v) => Ok(Some(v)),
                Err(std::env::VarError::NotPresent) => Ok(None),
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err("the value is not valid UTF-8".to_string())
                }
            },
        }
    }
}

/// Load and validate the layered configuration.
pub fn load(home: &Home, overrides: &Overrides) -> Result<Loaded, Vec<Problem>> {
    let (path, explicit) = config_file(home, overrides);
    load_layered(path, explicit, &overrides.set, &EnvSource::Process)
}

/// The configuration file a command reads: `--config`, else `FUTURNAL_CONFIG`, else the home's
/// default; and whether it was chosen explicitly (then a missing file is an error).
pub fn config_file(home: &Home, overrides: &Overrides) -> (PathBuf, bool) {
    match &overrides.config_path {
        Some(p) => (p.clone(), true),
        None => match std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
            Some(p) => (PathBuf::from(p), true),
            None => (home.default_config(), false),
        },
    }
}

/// Load the configuration exactly as `layering` says (this process's environment is not read).
pub fn load_recorded(layering: &Layering) -> Result<Loaded, Vec<Problem>> {
    load_layered(
        layering.path(),
        layering.explicit,
        &layering.set,
        &EnvSource::Recorded(&layering.env),
    )
}

/// The effective configuration as canonical JSON, and a short hash of it: what the daemon records
/// as running (in queue.db), and what commands compare the file against. The hash covers the
/// whole configuration; with `security.path_redaction` the JSON holds each source path as its
/// fingerprint, so queue.db never names the folders whose notes it queues.
pub fn fingerprint(config: &Config) -> (serde_json::Value, String) {
    // Serialization fails only for a source path that is not UTF-8; its debug form still tells
    // one configuration from another.
    let mut value = serde_json::to_value(config)
        .unwrap_or_else(|_| serde_json::Value::String(format!("{config:?}")));
    let hash = blake3::hash(value.to_string().as_bytes()).to_hex();
    if config.security.path_redaction
        && let Some(sources) = value
            .get_mut("sources")
            .and_then(serde_json::Value::as_array_mut)
    {
        for (json, source) in sources.iter_mut().zip(&config.sources) {
            json["path"] = crate::failure::path_fingerprint(&source.path.to_string_lossy()).into();
        }
    }
    (value, hash.as_str()[..16].to_string())
}

fn load_layered(
    path: PathBuf,
    explicit: bool,
    set: &[String],
    env: &EnvSource,
) -> Result<Loaded, Vec<Problem>> {
    let mut layering = Layering {
        path: {
            use std::os::unix::ffi::OsStrExt;
            absolute(&path).as_os_str().as_bytes().to_vec()
        },
        explicit,
        set: set.to_vec(),
        env: BTreeMap::new(),
    };
    let mut config = Config::default();
    let mut origins = Origins::new();
    let mut sources_origin = Origin::Default;
    let mut problems = Vec::new();
    let mut file_sources = None;

    let present = match std::fs::read_to_string(&path) {
        Ok(text) => {
            match parse_file(&text, &path) {
                Ok(file) => {
                    if let Some(s) = &file.sources {
                        sources_origin = Origin::File {
                            line: s.defined.line(),
                            column: s.defined.column(),
                        };
                    }
                    let mut file = file;
                    file_sources = file.sources.take();
                    config.apply_file(file, &mut origins);
                }
                Err(p) => problems.push(p),
            }
            true
        }
        Err(e)
            if !explicit
                && matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
        {
            false
        }
        Err(e) => {
            problems.push(Problem {
                at: display_path(&path),
                key: String::new(),
                message: format!("cannot read the configuration file: {e}"),
            });
            false
        }
    };

    for key in KEYS {
        let text = match env.get(key.env) {
            Ok(Some(text)) => text,
            Ok(None) => continue,
            Err(message) => {
                problems.push(Problem {
                    at: format!("env {}", key.env),
                    key: key.path.to_string(),
                    message,
                });
                continue;
            }
        };
        match config.apply_text(key.path, &text) {
            Ok(()) => {
                origins.insert(
                    key.path,
                    Origin::Env {
                        var: key.env.to_string(),
                    },
                );
            }
            Err(message) => problems.push(Problem {
                at: format!("env {}", key.env),
                key: key.path.to_string(),
                message,
            }),
        }
        layering.env.insert(key.env.to_string(), text);
    }

    for assignment in set {
        let Some((k, v)) = assignment.split_once('=') else {
            problems.push(Problem {
                at: "flag --set".into(),
                key: String::new(),
                message: format!("`{assignment}` is not of the form section.key=value"),
            });
            continue;
        };
        let k = k.trim();
        match KEYS.iter().find(|spec| spec.path == k) {
            Some(spec) => match config.apply_text(spec.path, v) {
                Ok(()) => {
                    origins.insert(spec.path, Origin::Flag);
                }
                Err(message) => problems.push(Problem {
                    at: "flag --set".into(),
                    key: k.to_string(),
                    message,
                }),
            },
            None => problems.push(Problem {
                at: "flag --set".into(),
                key: k.to_string(),
                message: format!(
                    "unknown key{}",
                    did_you_mean(k, KEYS.iter().map(|s| s.path))
                ),
            }),
        }
    }

    for (key, message) in config.check_scalars() {
        let at = match origins.get(key) {
            Some(o) => o.describe(&path),
            None => "default".into(),
        };
        problems.push(Problem {
            at,
            key: key.to_string(),
            message,
        });
    }

    if let Some(list) = file_sources {
        config.sources = validate_sources(list.value, &path, &mut problems, &config.retry);
    }
    // Report file problems in file order; env and flag problems after them.
    problems.sort_by_key(|p| {
        let mut nums = p.at.rsplitn(3, ':').take(2).map(|n| n.parse::<u64>().ok());
        let col = nums.next().flatten();
        let line = nums.next().flatten();
        match (line, col) {
            (Some(l), Some(c)) => (0, l, c),
            _ => (1, 0, 0),
        }
    });

    if !problems.is_empty() {
        return Err(problems);
    }

    let mut warnings = Vec::new();
    let cpus = cpu_count();
    if config.workers.hardware_cap_enabled && config.workers.max_workers > cpus {
        warnings.push(format!(
            "workers.max_workers is {} but this machine has {cpus} CPUs; with \
             workers.hardware_cap_enabled the pool runs {cpus} workers",
            config.workers.max_workers
        ));
    }

    Ok(Loaded {
        config,
        file: ConfigFile {
            path,
            present,
            explicit,
        },
        origins,
        sources_origin,
        warnings,
        layering,
    })
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

fn parse_file(text: &str, path: &Path) -> Result<FileConfig, Problem> {
    // An empty file or one holding only comments is a valid "everything default" config.
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(FileConfig::default());
    }
    let mut key_path = String::new();
    let options = serde_saphyr::options! { with_snippet: false };
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, FileConfig>(de).map_err(|e| {
            key_path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|err| problem_from_yaml(err, &key_path, path))
}

fn problem_from_yaml(err: serde_saphyr::Error, key_path: &str, file: &Path) -> Problem {
    let at = match err.location() {
        Some(loc) if loc.line() > 0 => {
            format!("{}:{}:{}", display_path(file), loc.line(), loc.column())
        }
        _ => display_path(file),
    };
    // Spanned<T> adds a `.value` segment and unknown positions show as `?`; operators never
    // typed either.
    let cleaned = key_path
        .replace(".value", "")
        .replace(".?", "")
        .replace('?', "");
    let key_path = if cleaned == "." { "" } else { cleaned.as_str() };
    match &err {
        serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } => {
            // serde_path_to_error's path already ends at the unknown key.
            let key = if key_path.is_empty() || key_path.ends_with(field.as_str()) {
                key_path.to_string()
            } else {
                format!("{key_path}.{field}")
            };
            let key = if key.is_empty() { field.clone() } else { key };
            Problem {
                at,
                key,
                message: format!(
                    "unknown key{}",
                    did_you_mean(field, expected.iter().copied())
                ),
            }
        }
        serde_saphyr::Error::SerdeUnknownVariant {
            variant, expected, ..
        } => Problem {
            at,
            key: key_path.to_string(),
            message: format!(
                "unknown value `{variant}`; expected one of {}",
                expected.join(", ")
            ),
        },
        _ => Problem {
            at,
            key: key_path.to_string(),
            message: plain_message(&first_line(&err.to_string())),
        },
    }
}

/// serde-saphyr speaks in Rust types; operators read YAML.
fn plain_message(msg: &str) -> String {
    let replaced = match msg {
        m if m.starts_with("invalid u") || m.starts_with("invalid i") => "expected a whole number",
        "invalid floating point" => "expected a number",
        "invalid boolean" => "expected true or false",
        "expected mapping start" => "expected a section of `key: value` lines",
        "expected sequence start" => "expected a list (lines starting with `- `)",
        "expected string scalar" => "expected a text value",
        m if m.starts_with("duplicate mapping key") => {
            return format!(
                "{}; each key may appear once",
                m.split(", set DuplicateKeyPolicy").next().unwrap_or(m)
            );
        }
        m if m.starts_with("cannot deserialize null") => "a value is missing here",
        m if m.starts_with("missing field") => {
            return m.replacen("missing field", "missing key", 1);
        }
        m => m,
    };
    replaced.to_string()
}

fn first_line(s: &str) -> String {
    // serde-saphyr appends " at line N column M"; the location is already in `at`.
    let line = s.lines().next().unwrap_or(s);
    match line.find(" at line ") {
        Some(i) => line[..i].to_string(),
        None => line.to_string(),
    }
}

/// The candidate closest to a misspelled word, if one is close enough.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "; did you mean `x`?" when one candidate is close enough, else a list of valid keys.
pub fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let candidates: Vec<&str> = candidates.collect();
    match closest(word, &candidates) {
        Some(c) => format!("; did you mean `{c}`?"),
        None if candidates.is_empty() => String::new(),
        None => format!("; valid keys here: {}", candidates.join(", ")),
    }
}

fn validate_sources(
    list: Vec<FileSource>,
    file: &Path,
    problems: &mut Vec<Problem>,
    global_retry: &Retry,
) -> Vec<SourceConfig> {
    let at = |loc: &serde_saphyr::Location| {
        format!("{}:{}:{}", display_path(file), loc.line(), loc.column())
    };
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, s) in list.into_iter().enumerate() {
        let key = |k: &str| format!("sources[{i}].{k}");
        let name = s.name.value.trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            problems.push(Problem {
                at: at(&s.name.defined),
                key: key("name"),
                message: format!(
                    "`{name}` is not a valid source name: use lowercase letters, digits, `-` and `_`"
                ),
            });
        } else if let Some(first) = seen.get(&name) {
            problems.push(Problem {
                at: at(&s.name.defined),
                key: key("name"),
                message: format!("source `{name}` is declared twice (first at {first})"),
            });
        } else {
            seen.insert(name.clone(), at(&s.name.defined));
        }
        let path = expand_tilde(&s.path.value);
        if !path.is_absolute() {
            problems.push(Problem {
                at: at(&s.path.defined),
                key: key("path"),
                message: format!(
                    "`{}` is relative; use an absolute path or one starting with ~/",
                    s.path.value
                ),
            });
        }
        let schedule = s
            .schedule
            .as_ref()
            .map(|v| v.value.trim().to_string())
            .unwrap_or_else(|| "manual".to_string());
        if let Err(message) = check_schedule_shape(&schedule) {
            let loc = s
                .schedule
                .as_ref()
                .map(|v| v.defined)
                .unwrap_or(s.name.defined);
            problems.push(Problem {
                at: at(&loc),
                key: key("schedule"),
                message,
            });
        }
        for (field, patterns) in [("include", &s.include), ("exclude", &s.exclude)] {
            if let Some(p) = patterns
                && let Err(message) = crate::sources::check_patterns(&p.value)
            {
                problems.push(Problem {
                    at: at(&p.defined),
                    key: key(field),
                    message,
                });
            }
        }
        // A numeric limit: its default when absent, its range checked when present.
        let mut limit =
            |field: &str, value: &Option<Spanned<u64>>, default: u64, lo: u64, hi: u64| match value
            {
                None => default,
                Some(v) => {
                    if let Err(message) = in_range(v.value, lo, hi) {
                        problems.push(Problem {
                            at: at(&v.defined),
                            key: key(field),
                            message,
                        });
                    }
                    v.value
                }
            };
        let max_item_mb = limit("max_item_mb", &s.max_item_mb, 64, 1, 4096);
        let concurrency = limit("concurrency", &s.concurrency, 1, 1, 64) as u32;
        let items_per_second =
            limit("items_per_second", &s.items_per_second, 0, 0, 1_000_000) as u32;
        let retry = match s.retry {
            None => global_retry.clone(),
            Some(over) => {
                // Apply the overrides to a copy of the global policy and check the result with the
                // same rules as the global keys.
                let mut probe = Config {
                    retry: global_retry.clone(),
                    ..Default::default()
                };
                let mut located = BTreeMap::new();
                probe.apply_file(
                    FileConfig {
                        retry: Some(over),
                        ..Default::default()
                    },
                    &mut located,
                );
                for (k, message) in probe.check_scalars() {
                    if let Some(field) = k.strip_prefix("retry.") {
                        let loc = match located.get(k) {
                            Some(Origin::File { line, column }) => {
                                format!("{}:{line}:{column}", display_path(file))
                            }
                            _ => at(&s.name.defined),
                        };
                        problems.push(Problem {
                            at: loc,
                            key: key(&format!("retry.{field}")),
                            message,
                        });
                    }
                }
                probe.retry
            }
        };
        out.push(SourceConfig {
            name,
            source_type: s.source_type.value,
            path,
            schedule,
            priority: s.priority.map(|p| p.value).unwrap_or_default(),
            enabled: s.enabled.map(|e| e.value).unwrap_or(true),
            include: s.include.map(|v| v.value).unwrap_or_default(),
            exclude: s.exclude.map(|v| v.value).unwrap_or_default(),
            max_item_mb,
            concurrency,
            items_per_second,
            retry,
        });
    }
    out
}

fn check_schedule_shape(s: &str) -> Result<(), String> {
    crate::scheduler::Schedule::parse(s).map(|_| ())
}

pub fn expand_tilde(p: &str) -> PathBuf {
    if (p == "~" || p.starts_with("~/"))
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(p.trim_start_matches('~').trim_start_matches('/'));
    }
    PathBuf::from(p)
}

impl Loaded {
    /// Workers the pool will actually run.
    pub fn effective_workers(&self) -> u32 {
        let w = &self.config.workers;
        if w.hardware_cap_enabled {
            w.max_workers.min(cpu_count())
        } else {
            w.max_workers
        }
    }

    pub fn origin(&self, path: &str) -> Origin {
        self.origins.get(path).cloned().unwrap_or(Origin::Default)
    }

    /// The problems as one operator error.
    pub fn invalid(problems: &[Problem], file: Option<&Path>) -> OperatorError {
        let mut what = format!(
            "the configuration is invalid ({} problem{})",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        for p in problems {
            let _ = write!(what, "\n  {p}");
        }
        let _ = file;
        OperatorError::new(
            ExitCode::Config,
            what,
            "nothing was started or changed; fix the lines above, then run `futurnal config validate`",
            topics::CONFIGURATION,
        )
    }

    /// `config show` as annotated YAML.
    pub fn to_annotated_yaml(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut section = "";
        for key in KEYS {
            let (sec, name) = key.path.split_once('.').unwrap_or(("", key.path));
            if sec != section {
                rows.push((format!("{sec}:"), String::new()));
                section = sec;
            }
            let value = self.config.value_yaml(key.path).unwrap_or_default();
            rows.push((
                format!("  {name}: {value}"),
                self.origin(key.path).describe(&self.file.path),
            ));
        }
        if self.config.sources.is_empty() {
            rows.push((
                "sources: []".into(),
                self.sources_origin.describe(&self.file.path),
            ));
        } else {
            rows.push((
                "sources:".into(),
                self.sources_origin.describe(&self.file.path),
            ));
            for s in &self.config.sources {
                let json = serde_json::to_value(s).unwrap_or_default();
                let mut first = true;
                for field in [
                    "name", "type", "path", "schedule", "priority", "enabled", "include", "exclude",
                ] {
                    let v = &json[field];
                    let text = match v {
                        serde_json::Value::Array(items) => format!(
                            "[{}]",
                            items.iter().map(yaml_scalar).collect::<Vec<_>>().join(", ")
                        ),
                        other => yaml_scalar(other),
                    };
                    let lead = if first { "  - " } else { "    " };
                    first = false;
                    rows.push((format!("{lead}{field}: {text}"), String::new()));
                }
            }
        }
        let width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (line, origin) in rows {
            if origin.is_empty() {
                let _ = writeln!(out, "{line}");
            } else {
                let _ = writeln!(out, "{line:<width$}  # {origin}");
            }
        }
        out
    }

    /// `config show --format json`.
    pub fn to_json(&self) -> serde_json::Value {
        let origins: BTreeMap<&str, String> = KEYS
            .iter()
            .map(|k| (k.path, self.origin(k.path).describe(&self.file.path)))
            .collect();
        serde_json::json!({
            "config_file": {
                "path": self.file.path,
                "present": self.file.present,
            },
            "config": self.config,
            "origins": origins,
            "warnings": self.warnings,
        })
    }
}

/// A commented configuration file holding every key at its default, for `config init`.
pub fn template() -> String {
    let mut out = String::from(
        "# futurnal orchestrator configuration.\n\
         # Every key is optional: a commented-out key keeps its built-in default.\n\
         # Check your edits with `futurnal config validate`; see `futurnal help runbook configuration`.\n",
    );
    let defaults = Config::default();
    let mut section = "";
    for key in KEYS {
        let (sec, name) = key.path.split_once('.').unwrap_or(("", key.path));
        if sec != section {
            let _ = write!(out, "\n{sec}:\n");
            section = sec;
        }
        let value = if key.path == "workers.max_workers" {
            "8".to_string()
        } else {
            defaults.value_yaml(key.path).unwrap_or_default()
        };
        let _ = writeln!(out, "  # {} Default: {}.", key.doc, key.default_doc);
        let _ = writeln!(out, "  # {name}: {value}");
    }
    out.push_str(
        "\n# Sources to ingest. Example:\n\
         # - name: notes\n\
         #   type: local_files        # local_files | obsidian | maildir | mbox\n\
         #   path: ~/Notes\n\
         #   schedule: 15m            # manual | an interval such as 15m | a cron expression\n\
         sources: []\n",
    );
    out
}

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
    fn defaults_pass_their_own_checks() {
        assert!(Config::default().check_scalars().is_empty());
    }

    #[test]
    fn unknown_key_reports_location_and_suggestion() {
        let text = "workers:\n  max_worker: 4\n";
        let p = parse_file(text, Path::new("/x/orchestrator.yaml")).unwrap_err();
        assert_eq!(p.at, "/x/orchestrator.yaml:2:3");
        assert_eq!(p.key, "workers.max_worker");
        assert_eq!(p.message, "unknown key; did you mean `max_workers`?");
    }

    #[test]
    fn wrong_type_reports_key_path() {
        let text = "retry:\n  max_attempts: many\n";
        let p = parse_file(text, Path::new("/x/c.yaml")).unwrap_err();
        assert_eq!(p.key, "retry.max_attempts");
        assert!(p.at.starts_with("/x/c.yaml:2:"), "{}", p.at);
    }

    #[test]
    fn template_parses_to_defaults() {
        let file = parse_file(&template(), Path::new("t.yaml")).unwrap();
        let mut cfg = Config::default();
        let mut origins = Origins::new();
        cfg.apply_file(file, &mut origins);
        assert!(origins.is_empty());
        assert_eq!(cfg, Config::default());
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

    #[test]
    fn a_recorded_layering_is_repeated_without_reading_this_process_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "workers:\n  max_workers: 5\n  shutdown_grace_seconds: 7\n",
        )
        .unwrap();
        let layering = Layering {
            path: file.to_str().unwrap().as_bytes().to_vec(),
            explicit: true,
            set: vec!["workers.max_workers=2".into()],
            env: [("FUTURNAL_RETRY_MAX_ATTEMPTS".to_string(), "9".to_string())].into(),
        };
        let loaded = load_recorded(&layering).unwrap();
        assert_eq!(loaded.config.workers.max_workers, 2);
        assert_eq!(loaded.config.workers.shutdown_grace_seconds, 7);
        assert_eq!(loaded.config.retry.max_attempts, 9);
        assert_eq!(loaded.layering, layering);
        let (_, a) = fingerprint(&loaded.config);
        let (_, b) = fingerprint(&load_recorded(&layering).unwrap().config);
        assert_eq!(a, b);
        let other = Layering {
            set: Vec::new(),
            ..layering
        };
        assert_ne!(fingerprint(&load_recorded(&other).unwrap().config).1, a);
    }

    #[test]
    fn the_recorded_form_names_no_source_path_under_redaction() {
        let mut cfg = Config {
            sources: vec![SourceConfig::new(
                "n",
                SourceType::LocalFiles,
                "/home/me/Folder With Spaces: x",
            )],
            ..Default::default()
        };
        let (json, hash) = fingerprint(&cfg);
        assert!(!json.to_string().contains("Folder"), "{json}");
        assert!(
            json["sources"][0]["path"]
                .as_str()
                .unwrap()
                .starts_with("<path ")
        );
        // Another path is another configuration, even though both are redacted.
        cfg.sources[0].path = "/home/me/Other".into();
        assert_ne!(fingerprint(&cfg).1, hash);
        cfg.security.path_redaction = false;
        assert_eq!(fingerprint(&cfg).0["sources"][0]["path"], "/home/me/Other");
    }

    #[test]
    fn schedule_shapes() {
        assert!(check_schedule_shape("manual").is_ok());
        assert!(check_schedule_shape("15m").is_ok());
        assert!(check_schedule_shape("*/30 * * * *").is_ok());
        assert!(check_schedule_shape("sometimes").is_err());
        assert!(check_schedule_shape("0s").is_err());
    }
}
