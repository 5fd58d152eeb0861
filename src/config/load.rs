//! Loading: reading the file, layering defaults < file < `FUTURNAL_*` environment < `--set`, the
//! provenance of every value, the recorded layering a reload repeats, and the fingerprint of an
//! effective configuration.
//!
//! Owns: `load`, `load_recorded`, `Loaded`, `Layering`, `Overrides`, `fingerprint`.
//! Invariants: a missing file means defaults unless it was named explicitly; every problem of
//! every layer is collected (file problems in file order, then env and flags) before anything is
//! refused; a recorded layering is repeated without reading this process's environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Invalid;
use super::problem::{Problem, did_you_mean};
use super::schema::{Config, FileConfig, KEYS, Origin, Origins, cpu_count};
use super::sources::validate_sources;
use super::yaml_errors::problem_from_yaml;
use crate::home::{Home, display_path};

pub const CONFIG_ENV: &str = "FUTURNAL_CONFIG";

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
pub fn load(home: &Home, overrides: &Overrides) -> Result<Loaded, Invalid> {
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
pub fn load_recorded(layering: &Layering) -> Result<Loaded, Invalid> {
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
            json["path"] = crate::redact::path_fingerprint(&source.path.to_string_lossy()).into();
        }
    }
    (value, hash.as_str().chars().take(16).collect())
}

fn load_layered(
    path: PathBuf,
    explicit: bool,
    set: &[String],
    env: &EnvSource,
) -> Result<Loaded, Invalid> {
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
            let message = format!("cannot read the configuration file: {e}");
            problems.push(Problem::new(display_path(&path), "", message).caused_by(e));
            false
        }
    };

    for key in KEYS {
        let text = match env.get(key.env) {
            Ok(Some(text)) => text,
            Ok(None) => continue,
            Err(message) => {
                problems.push(Problem::new(
                    format!("env {}", key.env),
                    key.path.to_string(),
                    message,
                ));
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
            Err(message) => problems.push(Problem::new(
                format!("env {}", key.env),
                key.path.to_string(),
                message,
            )),
        }
        layering.env.insert(key.env.to_string(), text);
    }

    for assignment in set {
        let Some((k, v)) = assignment.split_once('=') else {
            problems.push(Problem::new(
                "flag --set",
                String::new(),
                format!("`{assignment}` is not of the form section.key=value"),
            ));
            continue;
        };
        let k = k.trim();
        match KEYS.iter().find(|spec| spec.path == k) {
            Some(spec) => match config.apply_text(spec.path, v) {
                Ok(()) => {
                    origins.insert(spec.path, Origin::Flag);
                }
                Err(message) => problems.push(Problem::new("flag --set", k.to_string(), message)),
            },
            None => problems.push(Problem::new(
                "flag --set",
                k.to_string(),
                format!(
                    "unknown key{}",
                    did_you_mean(k, KEYS.iter().map(|s| s.path))
                ),
            )),
        }
    }

    for (key, message) in config.check_scalars() {
        problems.push(match origins.get(key) {
            Some(Origin::File { line, column }) => {
                Problem::in_file(&path, *line, *column, key, message)
            }
            Some(other) => Problem::new(other.describe(&path), key, message),
            None => Problem::new("default", key, message),
        });
    }

    if let Some(list) = file_sources {
        config.sources = validate_sources(list.value, &path, &mut problems, &config.retry);
    }
    // Report file problems in file order; env and flag problems after them.
    problems.sort_by_key(|p| match p.position() {
        Some((line, column)) => (0, line, column),
        None => (1, 0, 0),
    });

    if !problems.is_empty() {
        return Err(Invalid(problems));
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

pub(super) fn parse_file(text: &str, path: &Path) -> Result<FileConfig, Problem> {
    // An empty file or one holding only comments is a valid "everything default" config.
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(FileConfig::default());
    }
    // The path serde was at when it failed: where a wrong value is, and so what it should be.
    let mut at = Vec::new();
    let options = serde_saphyr::options! { with_snippet: false };
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, FileConfig>(de).map_err(|e| {
            at = e.path().iter().cloned().collect();
            e.into_inner()
        })
    });
    result.map_err(|err| problem_from_yaml(err, &at, path))
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

    /// Where `sources:` came from.
    pub(super) fn sources_origin(&self) -> &Origin {
        &self.sources_origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SourceConfig, SourceType};

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

    /// The error types are `std::error::Error`s: the list says how many problems there are, and a
    /// problem that wraps an I/O error gives it as its source.
    #[test]
    fn an_unreadable_file_is_a_problem_whose_source_is_the_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let layering = Layering {
            path: dir
                .path()
                .join("absent.yaml")
                .to_str()
                .unwrap()
                .as_bytes()
                .to_vec(),
            explicit: true,
            ..Default::default()
        };
        let invalid = load_recorded(&layering).unwrap_err();
        assert_eq!(
            invalid.to_string(),
            "the configuration is invalid (1 problem)"
        );
        assert!(std::error::Error::source(&invalid).is_none());
        let io = std::error::Error::source(&invalid[0])
            .and_then(|e| e.downcast_ref::<std::io::Error>())
            .expect("the io error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert!(
            invalid[0]
                .message
                .starts_with("cannot read the configuration file: ")
        );
    }
}
