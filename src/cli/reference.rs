//! References generated from the clap command tree: the book's CLI reference chapter, shell
//! completions and man pages (`futurnal completions SHELL`, `futurnal man`).
//!
//! Owns: the text of book/src/cli-reference.md (`markdown`); tests/cli_surface.rs fails when the
//! file differs and rewrites it under `RUNBOOK_BLESS=1`. Invariant: everything here is derived
//! from `Cli::command()`, the tree the binary parses with; nothing is written by hand twice.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use clap::{Arg, ArgAction, CommandFactory};

use crate::error::{CommandError, ExitCode, OperatorError};
use crate::runbook::topics;

/// The command tree the binary parses with (for the book's CLI-surface gate and the references).
pub fn command() -> clap::Command {
    super::Cli::command()
}

/// `futurnal completions SHELL`: the completion script for SHELL on stdout.
pub fn completions(shell: clap_complete::Shell) {
    let mut cmd = command();
    clap_complete::generate(shell, &mut cmd, "futurnal", &mut std::io::stdout().lock());
}

/// `futurnal man [--dir DIR]`: futurnal.1 on stdout, or one page per visible command in DIR.
pub fn man(dir: Option<&Path>) -> Result<(), CommandError> {
    let written = match dir {
        Some(dir) => clap_mangen::generate_to(command(), dir),
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(command())
                .render(&mut out)
                .and_then(|()| out.flush())
        }
    };
    written.map_err(|e| {
        OperatorError::new(
            ExitCode::Failure,
            format!("the man page could not be written: {e}"),
            "nothing else was changed; pass --dir a folder that exists and you may write to",
            topics::COMPLETIONS,
        )
        .into()
    })
}

/// The CLI reference chapter, every visible command with its usage and options.
pub fn markdown() -> String {
    let mut cmd = command();
    cmd.build();
    let mut out = String::from(
        "# Command-line reference\n\n\
         Every `futurnal` command with its usage and its options.\n\n\
         This page is generated from the definitions the binary parses with, so it cannot \
         drift: `tests/cli_surface.rs` fails when it differs, and `RUNBOOK_BLESS=1 cargo test \
         --test cli_surface` rewrites it. The same text is in the terminal: `futurnal COMMAND \
         --help`. Shell completions and man pages come from the same definitions; see \
         [Completions and the man page](introduction.md#completions-and-the-man-page).\n\n\
         Options of `futurnal` itself (`--config`, `--set`) are accepted after any command.\n",
    );
    section(&mut out, &cmd, "futurnal");
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

fn section(out: &mut String, cmd: &clap::Command, path: &str) {
    if !out.ends_with("\n\n") {
        out.push('\n');
    }
    let _ = write!(out, "## `{path}`\n\n");
    let about = cmd
        .get_long_about()
        .or(cmd.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    if !about.is_empty() {
        let _ = write!(out, "{}\n\n", sentence(&about));
    }
    let usage = cmd.clone().render_usage().to_string();
    let usage = usage.trim_start_matches("Usage:").trim();
    let _ = write!(
        out,
        "```text\n{}\n```\n\n",
        usage.replace("\n       ", "\n")
    );
    let args: Vec<&Arg> = cmd
        .get_arguments()
        // Global options are listed once, under `futurnal`.
        .filter(|a| !a.is_hide_set())
        .filter(|a| !a.is_global_set() || path == "futurnal")
        .filter(|a| !matches!(a.get_action(), ArgAction::Help | ArgAction::Version))
        .collect();
    let subs: Vec<&clap::Command> = cmd.get_subcommands().filter(|c| !c.is_hide_set()).collect();
    if !args.is_empty() {
        out.push_str("Arguments and options:\n\n");
        for arg in args {
            let _ = writeln!(out, "- {}", describe(arg));
        }
        out.push('\n');
    }
    if !subs.is_empty() {
        out.push_str("Commands:\n\n");
        for sub in &subs {
            let full = format!("{path} {}", sub.get_name());
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            let _ = writeln!(
                out,
                "- [`{full}`](#{}): {}",
                full.replace(' ', "-"),
                sentence(&about)
            );
        }
        out.push('\n');
    }
    for sub in subs {
        section(out, sub, &format!("{path} {}", sub.get_name()));
    }
}

/// One argument: its spelling, help, default, possible values and environment variable.
fn describe(arg: &Arg) -> String {
    let value = arg
        .get_value_names()
        .and_then(|n| n.first())
        .map(|n| n.to_string())
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
    let takes_value = arg.get_action().takes_values();
    let mut spelling = match (arg.get_long(), arg.get_short()) {
        (Some(long), Some(short)) => format!("-{short}, --{long}"),
        (Some(long), None) => format!("--{long}"),
        (None, Some(short)) => format!("-{short}"),
        (None, None) => format!("<{value}>"),
    };
    if takes_value && !arg.is_positional() {
        let _ = write!(spelling, " <{value}>");
    }
    if arg.is_positional() && matches!(arg.get_action(), ArgAction::Append) {
        spelling.push_str("...");
    }
    let mut text = format!("`{spelling}`");
    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    if !help.is_empty() {
        let _ = write!(text, ": {}", sentence(&help));
    }
    let possible: Vec<String> = if takes_value {
        arg.get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| format!("`{}`", v.get_name()))
            .collect()
    } else {
        Vec::new()
    };
    if !possible.is_empty() {
        let _ = write!(text, " One of {}.", possible.join(", "));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|d| format!("`{}`", d.to_string_lossy()))
        .collect();
    if takes_value && !defaults.is_empty() {
        let _ = write!(text, " Default: {}.", defaults.join(", "));
    }
    if arg.is_required_set() {
        text.push_str(" Required.");
    }
    if let Some(env) = arg.get_env() {
        let _ = write!(text, " Environment: `{}`.", env.to_string_lossy());
    }
    text
}

/// Help text as a sentence, ending with a full stop.
fn sentence(text: &str) -> String {
    let text = text.trim();
    let mut s = text.to_string();
    if !s.ends_with(['.', ':', '?', '!']) {
        s.push('.');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_command_has_a_section_with_its_usage() {
        let text = markdown();
        let mut cmd = command();
        cmd.build();
        fn walk(cmd: &clap::Command, path: String, text: &str) {
            assert!(
                text.contains(&format!("\n## `{path}`\n")),
                "no section for {path}"
            );
            for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
                walk(sub, format!("{path} {}", sub.get_name()), text);
            }
        }
        walk(&cmd, "futurnal".into(), &text);
        assert!(text.contains("`--format <FORMAT>`"));
        assert!(
            !text.contains("detached-child"),
            "hidden options stay hidden"
        );
    }
}
