//! The daemon's log: `logs/orchestrator.log`, size-rotated.
//!
//! Owns: where daemon log lines go and how the file is rotated.
//! Invariants: the log file is created 0600 and opened O_NOFOLLOW (never written through a
//! planted link); a line that cannot be written (a full disk) is dropped, never fatal; rotation keeps `KEEP` old files
//! (`orchestrator.log.1` newest); a foreground daemon also logs to the terminal; neither sink gets
//! colour codes. `FUTURNAL_LOG` sets the filter (default `info`).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

use crate::home::open_private_append;

pub const LOG_ENV: &str = "FUTURNAL_LOG";
const MAX_BYTES: u64 = 10 * 1024 * 1024;
const KEEP: usize = 3;

/// An append-only file that rotates itself past `MAX_BYTES`.
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    written: u64,
}

impl RotatingFile {
    pub fn open(path: &Path) -> io::Result<RotatingFile> {
        let file = open_private_append(path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            written,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        for i in (1..KEEP).rev() {
            let from = numbered(&self.path, i);
            if from.exists() {
                std::fs::rename(&from, numbered(&self.path, i + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(&self.path, 1))?;
        self.file = open_private_append(&self.path)?;
        self.written = 0;
        Ok(())
    }

    /// A second handle on the current file, for redirecting stderr into the log.
    pub fn try_clone_file(&self) -> io::Result<File> {
        self.file.try_clone()
    }
}

fn numbered(path: &Path, i: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > MAX_BYTES && self.written > 0 {
            // A failed rotation must not lose the line: keep writing to the current file.
            let _ = self.rotate();
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Install the global subscriber for a daemon process.
pub fn init_daemon(log_file: RotatingFile, also_terminal: bool) {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let file_writer = Mutex::new(log_file);
    // A log line that cannot be written (a full disk) is dropped. By default the subscriber
    // reports that with `eprintln!`, which panics when stderr (redirected into this same full
    // log) fails too, and that panic killed the daemon about a minute after the disk filled.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .log_internal_errors(false);
    // No colour codes in either sink: the file must stay plain, and one layer serves both.
    if also_terminal {
        let _ = builder
            .with_ansi(false)
            .with_writer(file_writer.and(io::stderr))
            .try_init();
    } else {
        let _ = builder.with_ansi(false).with_writer(file_writer).try_init();
    }
}
