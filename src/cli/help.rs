//! `futurnal help ...`: command help and the operator book in the terminal.

use std::io::Write;

use clap::CommandFactory;

use crate::error::{ExitCode, OperatorError, Result};
use crate::runbook::{self, CHAPTERS, Found, render, topics};

use super::Cli;

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("runbook") => runbook_help(&args[1..]),
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

fn runbook_help(words: &[String]) -> Result<()> {
    let mut out = anstream::stdout();
    if words.is_empty() {
        let width = CHAPTERS.iter().map(|c| c.slug.len()).max().unwrap_or(0);
        let _ = writeln!(
            out,
            "The futurnal operator book. Show a chapter or a section with:\n  futurnal help runbook TOPIC\n"
        );
        let text_width = render::width_from_env().saturating_sub(width + 4).max(20);
        for c in CHAPTERS {
            let mut lines = wrap_words(&runbook::summary(c), text_width).into_iter();
            let first = lines.next().unwrap_or_default();
            let _ = writeln!(out, "  {:<width$}  {first}", c.slug);
            for line in lines {
                let _ = writeln!(out, "  {:<width$}  {line}", "");
            }
        }
        let _ = writeln!(
            out,
            "\nA TOPIC can also be a section's heading, as a slug or a few of its words:\n  futurnal help runbook stopping-the-orchestrator\n  futurnal help runbook stop force"
        );
        return Ok(());
    }
    let query = words.join(" ");
    match runbook::find(&query) {
        Ok(found) => {
            let text = render::render(found.markdown(), render::width_from_env());
            let _ = writeln!(out, "{text}");
            if let Found::Section {
                chapter, heading, ..
            } = &found
            {
                let _ = writeln!(
                    out,
                    "\n(from \"{}\"; the whole chapter: futurnal help runbook {}; this section: #{})",
                    chapter.title, chapter.slug, heading.slug
                );
            }
            Ok(())
        }
        Err(closest) => Err(OperatorError::new(
            ExitCode::Usage,
            format!(
                "no runbook topic matches `{query}`; closest: {}",
                closest.join(", ")
            ),
            "nothing was shown; run `futurnal help runbook` for the list of topics",
            topics::READING_THE_BOOK,
        )),
    }
}

fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}
