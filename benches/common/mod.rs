//! What both benchmarks share (`benches/ingest.rs`, `benches/figures.rs`): the generated corpus
//! (deterministic notes, so two runs read the same bytes) and one timed library ingest.
//! Each bench uses a part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use futurnal::{Run, SourceConfig, SourceType};

pub fn source(name: &str, path: &Path) -> SourceConfig {
    SourceConfig::new(name, SourceType::LocalFiles, path)
}

/// Deterministic markdown of roughly `size` bytes, shaped like a personal note: paragraphs,
/// a heading every few paragraphs, a list, and a link every fifth paragraph.
pub fn note(i: usize, size: usize) -> String {
    let words = [
        "garden",
        "timber",
        "frame",
        "roof",
        "local",
        "first",
        "queue",
        "notes",
        "vault",
        "mail",
        "engine",
        "music",
        "rain",
        "compost",
        "north",
        "fence",
        "orchestrator",
        "runbook",
    ];
    let mut s = format!("# Note {i}\n\nTags: #bench #n{}\n\n", i % 97);
    let mut w = i as u64;
    let mut paragraph = 0;
    while s.len() < size {
        paragraph += 1;
        if paragraph % 7 == 0 {
            s.push_str(&format!(
                "## Part {paragraph}\n\n- first point\n- second point\n\n"
            ));
        }
        for _ in 0..40 {
            w = w
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push_str(words[(w >> 33) as usize % words.len()]);
            s.push(' ');
        }
        if paragraph % 5 == 0 {
            s.push_str("(see [the reference](https://example.org/ref)).");
        }
        s.push_str("\n\n");
    }
    s
}

pub fn generate(dir: &Path, files: usize, size: usize) -> u64 {
    let mut total = 0u64;
    for i in 0..files {
        let sub = dir.join(format!("d{:03}", i % 100));
        if i < 100 {
            std::fs::create_dir_all(&sub).unwrap();
        }
        let text = note(i, size);
        total += text.len() as u64;
        std::fs::write(sub.join(format!("note-{i:06}.md")), text).unwrap();
    }
    total
}

pub fn ingest(src: &SourceConfig, store: &Path) -> (Duration, futurnal::Report) {
    let cancel = AtomicBool::new(false);
    let progress = |_: u64, _: u64| {};
    let run = Run {
        source: src,
        store,
        cancel: &cancel,
        progress: &progress,
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    let t = Instant::now();
    let report = run.source_run().expect("ingest runs");
    (t.elapsed(), report)
}

pub fn timed(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let status = cmd.stdout(Stdio::null()).status().expect("command runs");
    assert!(status.success(), "{cmd:?} failed");
    t.elapsed()
}

pub fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1_048_576.0 / d.as_secs_f64()
}
