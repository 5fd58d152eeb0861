//! `futurnal help ...`: command help and the operator book in the terminal.
//!
//! Owns: the topic list, showing a topic, `--search`, and the pager.
//! Invariants: a pager runs only when stdout is a terminal and `--no-pager` was not given; a
//! pager that cannot start means the text is printed instead, never lost. Every topic printed
//! here (footers, suggestions, search results) is accepted back by `runbook::find` as printed.

use std::io::{IsTerminal, Write};
use std::process::{Command, Stdio};

use clap::CommandFactory;

use crate::error::{ExitCode, OperatorError, Result};
use crate::runbook::{self, CHAPTERS, Found, render, topics};

use super::Cli;

/// How `help runbook` shows its text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub no_pager: bool,
    pub search: bool,
}

pub fn run(args: &[String], opts: Options) -> Result<()> {
    // `--search` only means something for the book: `help --search WORDS` searches it.
    let args: Vec<String> = if opts.search && args.first().is_none_or(|a| a != "runbook") {
        std::iter::once("runbook".to_string())
            .chain(args.iter().cloned())
            .collect()
    } else {
        args.to_vec()
    };
    let args = args.as_slice();
    match args.first().map(String::as_str) {
        Some("runbook") => {
            // `help runbook --no-pager TOPIC`: clap hands everything after `runbook` over as
            // words, so the reader's own flags are taken from there too, wherever they stand.
            let mut opts = opts;
            let mut words = Vec::new();
            let mut usage = false;
            for word in &args[1..] {
                match word.as_str() {
                    "--no-pager" => opts.no_pager = true,
                    "--search" => opts.search = true,
                    // The topic list says how to use the reader.
                    "-h" | "--help" => usage = true,
                    w if w.starts_with('-') && w.len() > 1 => {
                        return Err(OperatorError::new(
                            ExitCode::Usage,
                            format!(
                                "`{w}` is not an option of `futurnal help runbook`; its options \
                                 are --no-pager and --search"
                            ),
                            "nothing was shown; correct the command and try again",
                            topics::READING_THE_BOOK,
                        ));
                    }
                    _ => words.push(word.clone()),
                }
            }
            if usage {
                words.clear();
                opts.search = false;
            }
            runbook_help(&words, opts)
        }
        Some(_) => command_help(args),
        None => {
            let _ = Cli::command().print_help();
            Ok(())
        }
    }
}

fn command_help(path: &[String]) -> Result<()> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut current = &mut cmd;
    for word in path {
        let names: Vec<String> = current
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        match current.find_subcommand_mut(word) {
            Some(sub) => current = sub,
            None => {
                return Err(super::unknown(
                    format!(
                        "`{word}` is not a futurnal command here; commands: {}, and `runbook` for the \
                         operator book",
                        names.join(", ")
                    ),
                    topics::READING_THE_BOOK,
                ));
            }
        }
    }
    let _ = current.print_help();
    Ok(())
}

fn runbook_help(words: &[String], opts: Options) -> Result<()> {
    let width = render::width();
    if opts.search {
        return search(words, width, opts);
    }
    if words.is_empty() {
        show(&topic_list(width), opts);
        return Ok(());
    }
    let query = words.join(" ");
    match runbook::find(&query) {
        Ok(found) => {
            let mut text = render::render(found.markdown(), width);
            if !text.ends_with('\n') {
                text.push('\n');
            }
            if let Found::Section {
                chapter, heading, ..
            } = &found
                && heading.level > 1
            {
                let note = format!(
                    "(from \"{}\"; the whole chapter: futurnal help runbook {}; this section: \
                     futurnal help runbook {}#{})",
                    chapter.title, chapter.slug, chapter.slug, heading.slug
                );
                text.push('\n');
                for (line, _) in render::wrap_words(&plain_words(&note), width) {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            show(&text, opts);
            Ok(())
        }
        Err(closest) => Err(OperatorError::new(
            ExitCode::Usage,
            if closest.is_empty() {
                format!("no runbook topic matches `{query}`, and none is close")
            } else {
                format!(
                    "no runbook topic matches `{query}`; closest: {}",
                    closest.join(", ")
                )
            },
            format!(
                "nothing was shown; run `futurnal help runbook` for the list of topics, or \
                 `futurnal help runbook --search {query}` for the sections that mention it"
            ),
            topics::READING_THE_BOOK,
        )),
    }
}

fn plain_words(text: &str) -> Vec<Vec<(String, anstyle::Style)>> {
    text.split_whitespace()
        .map(|w| vec![(w.to_string(), anstyle::Style::new())])
        .collect()
}

fn topic_list(width: usize) -> String {
    let slug_width = CHAPTERS
        .iter()
        .map(|c| render::text_width(c.slug))
        .max()
        .unwrap_or(0);
    let mut out = String::from(
        "The futurnal operator book. Show a chapter or a section with:\n  futurnal help runbook \
         TOPIC\n\n",
    );
    let text_width = render::width_from(None, Some(width))
        .min(100)
        .saturating_sub(slug_width + 4)
        .max(20);
    for c in CHAPTERS {
        let lines = render::wrap_words(&plain_words(&runbook::summary(c)), text_width);
        for (i, (line, _)) in lines.iter().enumerate() {
            let slug = if i == 0 { c.slug } else { "" };
            let pad = " ".repeat(slug_width - render::text_width(slug));
            out.push_str(&format!("  {slug}{pad}  {line}\n"));
        }
    }
    out.push_str(
        "\nA TOPIC can also be a section's heading, as a slug or a few of its words:\n  futurnal \
         help runbook stopping-the-orchestrator\n  futurnal help runbook stop force\nSearch every \
         chapter: futurnal help runbook --search WORDS\n",
    );
    out
}

fn search(words: &[String], width: usize, opts: Options) -> Result<()> {
    let query = words.join(" ");
    if query.trim().is_empty() {
        return Err(OperatorError::new(
            ExitCode::Usage,
            "--search needs the words to look for",
            "nothing was searched; run `futurnal help runbook --search WORDS`",
            topics::READING_THE_BOOK,
        ));
    }
    let hits = runbook::search(words);
    if hits.is_empty() {
        return Err(OperatorError::new(
            ExitCode::Failure,
            format!("no section of the book mentions all of `{query}`"),
            "nothing was shown; try fewer or other words, or `futurnal help runbook` for the \
             list of chapters",
            topics::READING_THE_BOOK,
        ));
    }
    let mut out = format!(
        "{} mention{} `{query}`:\n\n",
        match hits.len() {
            1 => "1 section".to_string(),
            n => format!("{n} sections"),
        },
        if hits.len() == 1 { "s" } else { "" }
    );
    for hit in &hits {
        let head = format!("  {}  ({})", hit.topic, hit.chapter_title);
        out.push_str(&render::ellipsize(&head, width));
        out.push('\n');
        out.push_str(&render::ellipsize(&format!("      {}", hit.line), width));
        out.push('\n');
    }
    out.push_str("\nShow one: futurnal help runbook TOPIC\n");
    show(&out, opts);
    Ok(())
}

/// The pager to use, from `$PAGER`: `less -R` when unset; none when set empty or to `cat`.
pub fn pager_command(env: Option<&str>) -> Option<Vec<String>> {
    let words: Vec<String> = match env {
        None => vec!["less".into(), "-R".into()],
        Some(p) => p.split_whitespace().map(str::to_string).collect(),
    };
    match words.first().map(String::as_str) {
        None | Some("cat") => None,
        Some(_) => Some(words),
    }
}

/// Text through the pager on a terminal, else (or when the pager cannot start) straight out.
fn show(text: &str, opts: Options) {
    let stdout = std::io::stdout();
    let pager = if opts.no_pager || !stdout.is_terminal() {
        None
    } else {
        pager_command(std::env::var("PAGER").ok().as_deref())
    };
    let color = anstream::AutoStream::choice(&stdout) != anstream::ColorChoice::Never;
    if let Some(cmd) = pager
        && page(text, &cmd, color).is_ok()
    {
        return;
    }
    let _ = write!(anstream::stdout(), "{text}");
}

/// Runs the pager on `text`; `Err` when it could not start (nothing was shown).
pub fn page(text: &str, cmd: &[String], color: bool) -> std::io::Result<()> {
    let mut command = Command::new(&cmd[0]);
    command.args(&cmd[1..]).stdin(Stdio::piped());
    if std::env::var_os("LESS").is_none() {
        // As git does: quit at once when the text fits one screen, keep colours, leave the
        // text on the screen after quitting.
        command.env("LESS", "FRX");
    }
    let mut child = command.spawn()?;
    let text = if color {
        text.to_string()
    } else {
        anstream::adapter::strip_str(text).to_string()
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A reader who quits early closes the pipe: that is not an error.
        let _ = stdin.write_all(text.as_bytes());
    }
    child.wait()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pager_comes_from_pager_with_less_by_default() {
        assert_eq!(
            pager_command(None),
            Some(vec!["less".to_string(), "-R".to_string()])
        );
        assert_eq!(
            pager_command(Some("most -s")),
            Some(vec!["most".to_string(), "-s".to_string()])
        );
        assert_eq!(pager_command(Some("")), None);
        assert_eq!(pager_command(Some("cat")), None);
    }

    #[test]
    fn a_pager_that_cannot_start_is_reported_so_the_text_is_printed() {
        let missing = vec!["/nonexistent/futurnal-no-such-pager".to_string()];
        assert!(page("text", &missing, false).is_err());
    }

    #[test]
    fn the_pager_gets_the_whole_text_plain_unless_colour_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("paged");
        let cmd = vec![
            "sh".to_string(),
            "-c".to_string(),
            format!("cat > '{}'", file.display()),
        ];
        let styled = "\u{1b}[1mbold\u{1b}[0m and plain\n";
        page(styled, &cmd, false).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "bold and plain\n");
        page(styled, &cmd, true).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), styled);
    }
}
