//! The harness report: counts, skip reasons, and one readable entry per failure.
//!
//! Invariant: every failure names `file:line`, the command, what differed, and how to re-bless;
//! every skipped block is listed with its reason (consecutive blocks of a file skipped for one
//! reason share a line) and counted.

use std::fmt::Write as _;
use std::path::Path;

use crate::runner::{Options, Summary};

fn rel(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    cwd.and_then(|c| path.strip_prefix(&c).ok().map(|p| p.display().to_string()))
        .unwrap_or_else(|| path.display().to_string())
}

/// The full report as text.
pub fn render(summary: &Summary, opts: &Options) -> String {
    let mut out = String::new();
    for f in summary.failures() {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "FAILED {}:{}{}",
            rel(&f.file),
            f.line,
            if f.hidden { " (hidden step)" } else { "" }
        );
        if !f.command.is_empty() {
            let _ = writeln!(out, "  block:");
            for line in f.command.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
        for p in &f.problems {
            let _ = writeln!(out, "  {p}");
        }
        match &f.diff {
            Some(diff) => {
                let _ = writeln!(out, "  expected (-) vs actual (+):");
                out.push_str(diff);
                let _ = writeln!(
                    out,
                    "  if the new output is right, re-bless it: {}",
                    opts.bless_hint
                );
            }
            None if !f.output.is_empty() => {
                let _ = writeln!(out, "  output:");
                for line in f.output.lines() {
                    let _ = writeln!(out, "    | {line}");
                }
            }
            None => {}
        }
    }
    for c in &summary.chapters {
        if let Some(dir) = &c.kept_dir {
            let _ = writeln!(out, "kept sandbox of {}: {}", rel(&c.file), dir.display());
        }
    }
    let skipped: Vec<_> = summary.skipped().collect();
    if !skipped.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "skipped blocks:");
        // A scenario skipped for a precondition skips all its steps: one line, not one per step.
        let mut i = 0;
        while i < skipped.len() {
            let first = skipped[i];
            let run = skipped[i..]
                .iter()
                .take_while(|s| s.file == first.file && s.reason == first.reason)
                .count();
            let lines: Vec<String> = skipped[i..i + run]
                .iter()
                .map(|s| s.line.to_string())
                .collect();
            let _ = writeln!(
                out,
                "  {}:{}: {}",
                rel(&first.file),
                lines.join(","),
                first.reason
            );
            i += run;
        }
    }
    let failed = summary.failures().count();
    if !out.is_empty() {
        out.push('\n');
    }
    let _ = write!(
        out,
        "runbook: {}, {} executed, {} skipped, {} failed",
        plural(summary.chapters.len(), "chapter"),
        plural(summary.executed(), "block"),
        skipped.len(),
        failed
    );
    if summary.scenarios() > 0 {
        let _ = write!(out, ", {} proven", plural(summary.scenarios(), "scenario"));
    }
    if summary.not_run() > 0 {
        let _ = write!(out, ", {} not run after a failure", summary.not_run());
    }
    if summary.blessed() > 0 {
        let _ = write!(
            out,
            ", {} blessed",
            plural(summary.blessed(), "output block")
        );
    }
    out.push('\n');
    out
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{ChapterResult, Skipped};
    use std::path::PathBuf;

    fn skipped(file: &str, line: usize, reason: &str) -> Skipped {
        Skipped {
            file: PathBuf::from(file),
            line,
            reason: reason.into(),
        }
    }

    #[test]
    fn skipped_blocks_are_counted_and_listed_with_reasons_grouped_per_run() {
        let summary = Summary {
            chapters: vec![ChapterResult {
                file: PathBuf::from("a.md"),
                executed: 3,
                skipped: vec![
                    skipped("a.md", 5, "touches the crontab"),
                    skipped("a.md", 10, "needs root; the harness runs as uid 1000"),
                    skipped("a.md", 14, "needs root; the harness runs as uid 1000"),
                    skipped("a.md", 20, "touches the crontab"),
                ],
                ..Default::default()
            }],
        };
        let text = render(&summary, &Options::default());
        assert_eq!(
            text,
            "skipped blocks:\n  a.md:5: touches the crontab\n  \
             a.md:10,14: needs root; the harness runs as uid 1000\n  \
             a.md:20: touches the crontab\n\n\
             runbook: 1 chapter, 3 blocks executed, 4 skipped, 0 failed\n"
        );
    }
}
