//! Negative control for the whole book: proves that the book test can fail.
//!
//! For executed blocks that run futurnal, a copy of the book misspells the first word after
//! `futurnal` (a subcommand or flag); for expected-output blocks, a copy changes one character.
//! Each mutant must make the harness fail at exactly that block's `file:line`.
//!
//! A mutant runs its chapter up to the mutated block, so late blocks of long chapters are costly:
//! at most `PER_CHAPTER` mutants per chapter are run, spread evenly over the chapter (the first and
//! the last included). `FUTURNAL_ALL_MUTANTS=1` runs every one.
//! `harness = false`: prints how many mutants were killed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use runbook_tests::doc::{Document, HIDDEN_LINE_PREFIX};

const PER_CHAPTER: usize = 12;

struct Mutant {
    file: PathBuf,
    line: usize,
    what: String,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("book_mutations: test");
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("book").join("src");
    let work = tempfile::tempdir().expect("tempdir");
    let chapters = runbook_tests::collect_markdown(std::slice::from_ref(&src)).expect("book");

    let mut mutants = Vec::new();
    let mut candidates_total = 0;
    let all = std::env::var("FUTURNAL_ALL_MUTANTS").is_ok_and(|v| v == "1");
    // Directory numbers for mutant copies; never reused, even when sampling drops mutants.
    let mut serial = 0usize;
    let next_dir = |n: &mut usize| {
        *n += 1;
        *n
    };
    for chapter in &chapters {
        let first_of_chapter = mutants.len();
        let name = chapter.file_name().unwrap().to_string_lossy().to_string();
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let doc = Document::load(chapter).expect("chapter");
        let lines: Vec<&str> = doc.text.lines().collect();
        // Blocks this host skips (a `skip` reason, or `needs=root` when not root) cannot kill a
        // mutant, so none is made of them.
        let host = runbook_tests::runner::Host::detect();
        for step in doc
            .steps
            .iter()
            .filter(|s| !s.hidden && runbook_tests::runner::skip_reason(s, &host).is_none())
        {
            // Misspell the word after the first visible `futurnal ` of the block.
            let body = step.line; // 0-based index of the first line after the fence
            let visible_end = body + step.script.lines().count();
            for i in body..visible_end.min(lines.len()) {
                let l = lines[i];
                if l.trim_start().starts_with(HIDDEN_LINE_PREFIX) {
                    continue;
                }
                if let Some(pos) = command_position(l) {
                    let start = pos + "futurnal ".len();
                    let end = l[start..]
                        .find(|c: char| c.is_whitespace() || c == '|' || c == ')')
                        .map(|e| start + e)
                        .unwrap_or(l.len());
                    let mut mutated = lines.clone();
                    let new_line = format!("{}x{}", &l[..end], &l[end..]);
                    mutated[i] = &new_line;
                    mutants.push(write_mutant(
                        work.path(),
                        &src,
                        &name,
                        next_dir(&mut serial),
                        &mutated,
                        step.line,
                        format!("line {} `{}`", i + 1, &l[start..end]),
                    ));
                    break;
                }
            }
            // Change one character of the expected output.
            if let Some(expected) = &step.expected {
                let first = expected.line; // fence line (1-based) == index of first content line
                let target = (first..first + expected.text.lines().count()).find_map(|i| {
                    let l = lines[i];
                    let t = l.trim();
                    if t.is_empty() || t == "..." {
                        return None;
                    }
                    // A character outside any [PLACEHOLDER].
                    let mut depth = 0;
                    l.char_indices()
                        .find(|(_, c)| {
                            match c {
                                '[' => depth += 1,
                                ']' => depth -= 1,
                                _ => {}
                            }
                            depth == 0 && c.is_ascii_alphanumeric()
                        })
                        .map(|(p, c)| (i, p, c))
                });
                if let Some((i, p, c)) = target {
                    let replacement = if c == 'q' { 'z' } else { 'q' };
                    let new_line =
                        format!("{}{}{}", &lines[i][..p], replacement, &lines[i][p + 1..]);
                    let mut mutated = lines.clone();
                    mutated[i] = &new_line;
                    mutants.push(write_mutant(
                        work.path(),
                        &src,
                        &name,
                        next_dir(&mut serial),
                        &mutated,
                        step.line,
                        format!("output line {} `{c}`", i + 1),
                    ));
                }
            }
        }
        let of_chapter = mutants.len() - first_of_chapter;
        candidates_total += of_chapter;
        if !all && of_chapter > PER_CHAPTER {
            let chosen: Vec<Mutant> = mutants
                .drain(first_of_chapter..)
                .enumerate()
                .filter(|(i, _)| {
                    // Evenly spread, first and last kept.
                    (0..PER_CHAPTER).any(|k| *i == k * (of_chapter - 1) / (PER_CHAPTER - 1))
                })
                .map(|(_, m)| m)
                .collect();
            mutants.extend(chosen);
        }
    }

    let _ = &mut candidates_total;
    let opts = runbook_tests::Options {
        bin_dirs: vec![
            PathBuf::from(env!("CARGO_BIN_EXE_futurnal"))
                .parent()
                .unwrap()
                .to_path_buf(),
        ],
        fixtures: Some(root.join("fixtures")),
        ..Default::default()
    };
    let files: Vec<PathBuf> = mutants.iter().map(|m| m.file.clone()).collect();
    let summary = runbook_tests::run(&files, &opts);
    let report = runbook_tests::report::render(&summary, &opts);
    let mut survivors = Vec::new();
    for (m, result) in mutants.iter().zip(&summary.chapters) {
        let first = result.failures.first();
        let located = format!("{}:{}", m.file.display(), m.line);
        let killed = first.is_some_and(|f| f.file == m.file && f.line == m.line)
            && report.contains(&located);
        if !killed {
            survivors.push(format!(
                "{} ({}): first failure {:?}",
                located,
                m.what,
                first.map(|f| (f.line, f.problems.clone()))
            ));
        }
    }
    println!(
        "book mutations: {} mutants run (of {candidates_total}), {} killed at the right file:line, {} survived",
        mutants.len(),
        mutants.len() - survivors.len(),
        survivors.len()
    );
    for s in &survivors {
        println!("  SURVIVED {s}");
    }
    if survivors.is_empty() && !mutants.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Where `futurnal ` starts as a command in a line (not inside a path such as `~/.futurnal `).
fn command_position(line: &str) -> Option<usize> {
    line.match_indices("futurnal ").map(|(i, _)| i).find(|&i| {
        line[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '.' | '/' | '-' | '_')))
    })
}

/// A full copy of the book with one chapter replaced, so `RUNBOOK_DIR` siblings still exist.
fn write_mutant(
    work: &Path,
    src: &Path,
    chapter: &str,
    n: usize,
    lines: &[&str],
    line: usize,
    what: String,
) -> Mutant {
    let dir = work.join(format!("m{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    let file = dir.join(chapter);
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    Mutant {
        file: file.canonicalize().unwrap(),
        line,
        what,
    }
}
