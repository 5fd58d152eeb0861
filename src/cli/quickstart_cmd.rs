//! `futurnal quickstart`: the first minute on a new machine. It makes a demo folder with a home of
//! its own and the bundled sample notes (or reads a folder of the operator's), starts an
//! orchestrator for it, ingests once, and prints what to try next and how to remove it all.
//!
//! Invariants: it never touches the operator's real home (`~/.futurnal` or `FUTURNAL_HOME`) nor
//! anything outside its folder, and never writes into `--notes`; run again on the same folder it
//! reuses it; a folder that exists and is not a quickstart's is refused, unchanged.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::sources_cmd;
use crate::config::Overrides;
use crate::daemon::{self, lock};
use crate::error::{CommandError, OperatorError, Result};
use crate::home::{Home, display_path};
use crate::queue::{QueueDb, now_ms};
use crate::runbook::topics;

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// The demo folder: its own futurnal home, and the sample notes [default: ~/futurnal-demo]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Ingest this folder of yours (read, never written) instead of the bundled sample notes
    #[arg(long, value_name = "DIR")]
    notes: Option<PathBuf>,
}

/// Marks a folder as a quickstart's, so a second run may reuse it.
const MARKER: &str = ".futurnal-quickstart";

/// The bundled sample notes: a few kinds of files a notes folder holds.
const SAMPLES: &[(&str, &str)] = &[
    (
        "welcome.md",
        include_str!("../../fixtures/sources/notes/welcome.md"),
    ),
    (
        "meeting notes 2026-11-27.md",
        include_str!("../../fixtures/sources/notes/meeting notes 2026-11-27.md"),
    ),
    (
        "projects/plan.md",
        include_str!("../../fixtures/sources/notes/projects/plan.md"),
    ),
    (
        "projects/ideas.txt",
        include_str!("../../fixtures/sources/notes/projects/ideas.txt"),
    ),
    (
        "reading/article.html",
        include_str!("../../fixtures/sources/notes/reading/article.html"),
    ),
    (
        "data/books.json",
        include_str!("../../fixtures/sources/notes/data/books.json"),
    ),
];

fn refused(what: String, safe: &str) -> CommandError {
    OperatorError::failure(what, safe, topics::QUICKSTART).into()
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

pub fn run(args: QuickstartArgs) -> Result<(), CommandError> {
    let dir = match args.dir {
        Some(d) => absolute(&d),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join("futurnal-demo"))
            .ok_or_else(|| {
                refused(
                    "HOME is not set, so there is no default demo folder".into(),
                    "nothing was changed; name one with --dir",
                )
            })?,
    };
    let io = |e: std::io::Error, what: &Path| {
        refused(
            format!("cannot write {}: {e}", display_path(what)),
            "nothing outside the demo folder was changed; pick another --dir",
        )
    };
    let is_ours = dir.join(MARKER).exists();
    let is_empty = std::fs::read_dir(&dir).map_or(true, |mut d| d.next().is_none());
    if !is_ours && !is_empty {
        return Err(refused(
            format!(
                "{} exists and is not a quickstart folder",
                display_path(&dir)
            ),
            "nothing was changed; pick another folder with --dir",
        ));
    }
    crate::home::create_private_dir(&dir).map_err(|e| io(e, &dir))?;
    std::fs::write(dir.join(MARKER), "made by futurnal quickstart\n").map_err(|e| io(e, &dir))?;

    let notes = match args.notes {
        Some(n) => {
            let n = absolute(&n);
            if !n.is_dir() {
                return Err(refused(
                    format!("{} is not a folder", display_path(&n)),
                    "nothing was changed; pass --notes a folder of notes",
                ));
            }
            n
        }
        None => {
            let samples = dir.join("sample-notes");
            for (name, text) in SAMPLES {
                let path = samples.join(name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| io(e, parent))?;
                }
                if !path.exists() {
                    std::fs::write(&path, text).map_err(|e| io(e, &path))?;
                }
            }
            samples
        }
    };

    let home = Home::at(dir.join("home"));
    home.ensure_layout()?;
    let config = home.default_config();
    let yaml = format!(
        "# Written by futurnal quickstart.\nsources:\n  - name: notes\n    type: local_files\n    path: {}\n",
        serde_json::to_string(&notes.to_string_lossy()).unwrap_or_default()
    );
    crate::home::write_private_atomic(&config, yaml.as_bytes()).map_err(|e| io(e, &config))?;

    let overrides = Overrides {
        config_path: None,
        set: Vec::new(),
    };
    let loaded = daemon::load_config(&home, &overrides)?;
    if lock::holder(&home).is_none() {
        daemon::start(&home, &overrides, false, false, false)?;
    }
    let db = QueueDb::open_existing(&home.queue_db())?.ok_or_else(|| {
        refused(
            "the demo orchestrator started without a queue database".into(),
            "stop it and run the quickstart again",
        )
    })?;
    let source = &loaded.config.sources[0];
    let job = crate::jobs::enqueue_run(db.conn(), source, "quickstart", "quickstart", now_ms())
        .map_err(|e| crate::error::queue_error(&home, e))?;
    crate::daemon::wake(&home);
    println!("ingesting {} (source notes)", display_path(&source.path));
    sources_cmd::wait_for(&home, &db, job.id())?;

    let at = display_path(home.root());
    println!();
    println!("the demo runs in its own home, {at}; try:");
    for command in [
        "orchestrator sources list",
        "orchestrator jobs list",
        "orchestrator health",
    ] {
        println!("  FUTURNAL_HOME={at} futurnal {command}");
    }
    println!("to remove the demo:");
    println!(
        "  FUTURNAL_HOME={at} futurnal orchestrator stop && rm -r {}",
        display_path(&dir)
    );
    println!("the book, in this terminal: futurnal help runbook");
    Ok(())
}
