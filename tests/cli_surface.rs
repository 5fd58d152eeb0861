//! The book against the real command line (issue 12, deliverables 1 and 4).
//!
//! - Every `futurnal` invocation in a bash block of book/src (skipped blocks and hidden steps
//!   included) parses with the very clap tree the binary uses (`futurnal::cli_command`); a
//!   refusal is accepted only where the block's expected output shows clap's error.
//! - Every visible command and option is exercised by an executed block, or is in `ALLOWLIST`
//!   with its reason; the coverage is printed (and by tests/book.rs after a whole-book run).
//! - book/src/cli-reference.md equals `futurnal::cli_reference()`; `RUNBOOK_BLESS=1` rewrites it.
//!
//! The shell reading is static and deliberately small (quotes, `$(...)`, pipes and lists,
//! assignments, redirections, here-documents, `script -c`/`bash -c` strings, common wrappers);
//! a line it cannot read is an error unless `UNREADABLE` gives the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;

/// Surface that no executed block exercises, each with why. `path` is the command path and the
/// option's long name (`orchestrator start --foreground`) or a command path alone.
pub const ALLOWLIST: &[(&str, &str)] = &[];

/// Command lines that cannot be read statically, each with why (matched by a substring).
pub const UNREADABLE: &[(&str, &str)] = &[];

/// Options the product also accepts as plain words in a trailing list, where clap cannot see
/// them: `help runbook --no-pager` (help.rs reads its own options after `runbook`).
const ALSO_AS_WORDS: &[(&str, &str)] = &[("help", "no-pager"), ("help", "search")];

/// One word of a command line; `dynamic` when the shell expands part of it at run time.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub text: String,
    pub dynamic: bool,
}

/// A `futurnal` command line found in the book.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub file: PathBuf,
    pub line: usize,
    pub executed: bool,
    /// Words after `futurnal`.
    pub words: Vec<Word>,
    /// The step's expected output (a documented refusal shows clap's error there).
    pub expected: String,
}

/// What the shell reader found in one script: simple commands with the line they start on, and
/// here-document bodies (line, delimiter, text).
// The macros reset state that their last expansion, at the end of the script, never reads.
#[allow(unused_assignments)]
fn simple_commands(
    script: &str,
    first_line: usize,
    out: &mut Vec<(usize, Vec<Word>)>,
    bodies: &mut Vec<(usize, String, String)>,
) {
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;
    let mut line = first_line;
    let mut words: Vec<Word> = Vec::new();
    let mut cmd_line = line;
    let mut cur: Option<Word> = None;
    let mut heredocs: Vec<(String, bool)> = Vec::new();
    let mut skip_next_word = false;
    let mut pending_heredoc_word = false;
    let mut nested: Vec<(usize, String)> = Vec::new();

    macro_rules! end_word {
        () => {
            if let Some(w) = cur.take() {
                if pending_heredoc_word {
                    pending_heredoc_word = false;
                    let strip = w.text.starts_with('-');
                    let delim = w.text.trim_start_matches('-').to_string();
                    heredocs.push((delim, strip));
                } else if skip_next_word {
                    skip_next_word = false;
                } else {
                    if words.is_empty() {
                        cmd_line = line;
                    }
                    words.push(w);
                }
            }
        };
    }
    macro_rules! end_command {
        () => {
            end_word!();
            if !words.is_empty() {
                out.push((cmd_line, std::mem::take(&mut words)));
            }
        };
    }
    fn word(cur: &mut Option<Word>) -> &mut Word {
        cur.get_or_insert_with(|| Word {
            text: String::new(),
            dynamic: false,
        })
    }
    // The text up to the `)` closing a `$(` or `(` at `start`, quotes and nesting respected.
    fn closing(chars: &[char], start: usize, open: char, close: char) -> usize {
        let mut depth = 1;
        let mut j = start;
        while j < chars.len() {
            match chars[j] {
                '\\' => j += 1,
                '\'' => {
                    j += 1;
                    while j < chars.len() && chars[j] != '\'' {
                        j += 1;
                    }
                }
                '"' => {
                    j += 1;
                    while j < chars.len() && chars[j] != '"' {
                        if chars[j] == '\\' {
                            j += 1;
                        }
                        j += 1;
                    }
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return j;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        chars.len()
    }
    // A `...` substitution at i, inside quotes or not: returns the index after it, marks the word
    // dynamic, records the body.
    let backtick = |i: usize, cur: &mut Option<Word>, nested: &mut Vec<(usize, String)>, line| {
        let end = chars[i + 1..]
            .iter()
            .position(|&c| c == '`')
            .map_or(chars.len(), |p| i + 1 + p);
        nested.push((line, chars[i + 1..end].iter().collect()));
        let w = word(cur);
        w.dynamic = true;
        w.text.push_str("`…`");
        end + 1
    };
    // `$...` at i: returns the index after it, marks the word dynamic, records `$(...)` bodies.
    let dollar = |i: usize, cur: &mut Option<Word>, nested: &mut Vec<(usize, String)>, line| {
        let w = word(cur);
        w.dynamic = true;
        let next = chars.get(i + 1).copied();
        let end = match next {
            Some('(') if chars.get(i + 2) == Some(&'(') => closing(&chars, i + 3, '(', ')') + 2,
            Some('(') => {
                let end = closing(&chars, i + 2, '(', ')');
                nested.push((line, chars[i + 2..end.min(chars.len())].iter().collect()));
                end + 1
            }
            Some('{') => closing(&chars, i + 2, '{', '}') + 1,
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                j
            }
            Some('?' | '$' | '!' | '#' | '@' | '*' | '-') => i + 2,
            _ => {
                w.text.push('$');
                w.dynamic = false;
                return i + 1;
            }
        };
        let end = end.min(chars.len());
        let raw: String = chars[i..end].iter().collect();
        word(cur).text.push_str(&raw);
        end
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                end_command!();
                line += 1;
                i += 1;
                // Here-document bodies are data, not commands.
                for (delim, strip) in std::mem::take(&mut heredocs) {
                    let start = line;
                    let mut text = String::new();
                    while i < chars.len() {
                        let end = chars[i..]
                            .iter()
                            .position(|&c| c == '\n')
                            .map_or(chars.len(), |p| i + p);
                        let body: String = chars[i..end].iter().collect();
                        line += 1;
                        i = end + 1;
                        let body = if strip { body.trim_start() } else { &body };
                        if body == delim {
                            break;
                        }
                        text.push_str(body);
                        text.push('\n');
                    }
                    bodies.push((start, delim, text));
                }
            }
            ' ' | '\t' => {
                end_word!();
                i += 1;
            }
            '#' if cur.is_none() => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '\\' => {
                if chars.get(i + 1) == Some(&'\n') {
                    line += 1;
                    end_word!();
                } else if let Some(&n) = chars.get(i + 1) {
                    word(&mut cur).text.push(n);
                }
                i += 2;
            }
            '\'' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .map_or(chars.len(), |p| i + 1 + p);
                let text: String = chars[i + 1..end].iter().collect();
                line += text.matches('\n').count();
                word(&mut cur).text.push_str(&text);
                i = end + 1;
            }
            '"' => {
                word(&mut cur);
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    match chars[i] {
                        '\\' if i + 1 < chars.len() => {
                            let n = chars[i + 1];
                            if !matches!(n, '"' | '\\' | '$' | '`') {
                                word(&mut cur).text.push('\\');
                            }
                            word(&mut cur).text.push(n);
                            i += 2;
                        }
                        '$' => i = dollar(i, &mut cur, &mut nested, line),
                        '`' => i = backtick(i, &mut cur, &mut nested, line),
                        ch => {
                            if ch == '\n' {
                                line += 1;
                            }
                            word(&mut cur).text.push(ch);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            '$' => i = dollar(i, &mut cur, &mut nested, line),
            '`' => i = backtick(i, &mut cur, &mut nested, line),
            ';' | '&' | '|' | '(' | ')' => {
                // `>&2`, `2>&1`, `&>` are redirections, handled below with '>'.
                if c == '&' && chars.get(i + 1) == Some(&'>') {
                    end_word!();
                    skip_next_word = true;
                    i += 2;
                    if chars.get(i) == Some(&'>') {
                        i += 1;
                    }
                    continue;
                }
                if (c == '(' || c == ')') && cur.is_some() {
                    // `f()` or a glob like `@(x)`: part of the word.
                    word(&mut cur).text.push(c);
                    i += 1;
                    continue;
                }
                end_command!();
                i += 1;
                while i < chars.len() && matches!(chars[i], ';' | '&' | '|') {
                    i += 1;
                }
            }
            '<' | '>' => {
                // A word of digits right before is a descriptor number, not a word.
                if cur.as_ref().is_some_and(|w| {
                    !w.text.is_empty() && w.text.chars().all(|c| c.is_ascii_digit())
                }) {
                    cur = None;
                } else {
                    end_word!();
                }
                if c == '<' && chars.get(i + 1) == Some(&'(')
                    || c == '>' && chars.get(i + 1) == Some(&'(')
                {
                    let end = closing(&chars, i + 2, '(', ')');
                    nested.push((line, chars[i + 2..end.min(chars.len())].iter().collect()));
                    let w = word(&mut cur);
                    w.dynamic = true;
                    w.text.push_str("<(…)");
                    i = end + 1;
                    continue;
                }
                if c == '<' && chars.get(i + 1) == Some(&'<') && chars.get(i + 2) != Some(&'<') {
                    pending_heredoc_word = true;
                    i += 2;
                    if chars.get(i) == Some(&'-') {
                        word(&mut cur).text.push('-');
                        i += 1;
                    }
                    while chars.get(i) == Some(&' ') {
                        i += 1;
                    }
                    continue;
                }
                i += 1;
                while i < chars.len() && matches!(chars[i], '<' | '>' | '|') {
                    i += 1;
                }
                if chars.get(i) == Some(&'&') {
                    // `>&2`: the descriptor is part of the redirection.
                    i += 1;
                    while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '-') {
                        i += 1;
                    }
                    continue;
                }
                skip_next_word = true;
            }
            _ => {
                word(&mut cur).text.push(c);
                i += 1;
            }
        }
    }
    end_command!();
    for (line, text) in nested {
        simple_commands(&text, line, out, bodies);
    }
}

/// Words that come before the command itself: keywords, assignments and wrappers.
fn strip_prefix(mut words: &[Word]) -> &[Word] {
    loop {
        let Some(first) = words.first() else {
            return words;
        };
        let t = first.text.as_str();
        let is_assignment = t.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if matches!(
            t,
            "if" | "then"
                | "else"
                | "elif"
                | "do"
                | "while"
                | "until"
                | "!"
                | "time"
                | "{"
                | "exec"
                | "command"
                | "nohup"
                | "setsid"
        ) || is_assignment
        {
            words = &words[1..];
        } else if t == "sudo" {
            words = &words[1..];
            while let Some(w) = words.first().filter(|w| w.text.starts_with('-')) {
                // `-u USER`, `-g GROUP` take the next word.
                let takes = matches!(w.text.as_str(), "-u" | "-g" | "-C" | "-D");
                words = &words[if takes { 2 } else { 1 }.min(words.len())..];
            }
        } else if t == "env" || t == "watch" || t == "xargs" {
            words = &words[1..];
            while words.first().is_some_and(|w| {
                w.text.starts_with('-') || w.text.contains('=') || w.text.parse::<f64>().is_ok()
            }) {
                words = &words[1..];
            }
        } else if t == "timeout" {
            words = &words[1..];
            while words.first().is_some_and(|w| w.text.starts_with('-')) {
                words = &words[1..];
            }
            words = words.get(1..).unwrap_or(&[]);
        } else {
            return words;
        }
    }
}

/// Every `futurnal` command line in one script, `script -c` and `bash -c` strings, crontab lines
/// and the shell scripts, runbooks and unit files it writes with here-documents included.
fn invocations_in(script: &str, first_line: usize, out: &mut Vec<(usize, Vec<Word>)>) {
    let mut commands = Vec::new();
    let mut bodies = Vec::new();
    simple_commands(script, first_line, &mut commands, &mut bodies);
    for (line, words) in commands {
        let words = strip_prefix(&words);
        let Some(first) = words.first() else { continue };
        let name = first.text.rsplit('/').next().unwrap_or_default();
        match name {
            "futurnal" => out.push((line, words[1..].to_vec())),
            "script" | "bash" | "sh" => {
                // The string after -c (`script -qec "..."`) is a command line of its own.
                let mut it = words[1..].iter();
                while let Some(w) = it.next() {
                    if w.text.starts_with('-') && !w.text.starts_with("--") && w.text.contains('c')
                    {
                        if let Some(cmd) = it.next() {
                            invocations_in(&cmd.text, line, out);
                        }
                        break;
                    }
                }
            }
            "echo" | "printf" => {
                // A crontab line: five time fields, then a command line.
                for w in &words[1..] {
                    let fields: Vec<&str> = w.text.splitn(6, ' ').collect();
                    if fields.len() == 6
                        && fields[..5].iter().all(|f| {
                            !f.is_empty()
                                && f.chars().all(|c| c.is_ascii_digit() || "*/,-".contains(c))
                        })
                    {
                        invocations_in(fields[5], line, out);
                    }
                }
            }
            _ => {}
        }
    }
    for (line, delim, body) in bodies {
        if body.contains("```") {
            // A runbook written for `futurnal runbook check`: its bash blocks run.
            let doc = runbook_tests::doc::Document::parse(Path::new("heredoc.md"), body.clone());
            for step in &doc.steps {
                let first = if step.hidden {
                    step.line
                } else {
                    step.line + 1
                };
                invocations_in(&step.script, line + first - 1, out);
            }
        } else if body.starts_with("#!") || delim == "SH" {
            invocations_in(&body, line, out);
        } else {
            // Unit files: the commands systemd runs.
            for (n, l) in body.lines().enumerate() {
                if let Some((key, value)) = l.split_once('=')
                    && key.starts_with("Exec")
                {
                    invocations_in(value, line + n, out);
                }
            }
        }
    }
}

/// Every invocation in every bash block of the chapters.
pub fn book_invocations(files: &[PathBuf]) -> Vec<Invocation> {
    let mut out = Vec::new();
    for file in files {
        let doc = runbook_tests::doc::Document::load(file).expect("chapter is readable");
        for step in &doc.steps {
            // A visible block's script starts on the line after its fence.
            let first = if step.hidden {
                step.line
            } else {
                step.line + 1
            };
            let mut found = Vec::new();
            invocations_in(&step.script, first, &mut found);
            for (line, words) in found {
                out.push(Invocation {
                    file: file.clone(),
                    line,
                    executed: step.directives.skip.is_none(),
                    words,
                    expected: step
                        .expected
                        .as_ref()
                        .map(|e| e.text.clone())
                        .unwrap_or_default(),
                });
            }
        }
    }
    out
}

/// The operator-facing surface: visible commands one can run, and their visible options.
fn surface(cmd: &clap::Command) -> (BTreeSet<String>, BTreeSet<String>) {
    fn walk(
        cmd: &clap::Command,
        path: &str,
        commands: &mut BTreeSet<String>,
        flags: &mut BTreeSet<String>,
    ) {
        if !cmd.has_subcommands() || !cmd.is_subcommand_required_set() {
            commands.insert(path.to_string());
        }
        for arg in cmd.get_arguments() {
            if arg.is_hide_set() || arg.is_positional() || (arg.is_global_set() && !path.is_empty())
            {
                continue;
            }
            if let Some(long) = arg.get_long() {
                if long == "help" || long == "version" {
                    continue;
                }
                flags.insert(format!("{path} --{long}").trim_start().to_string());
            }
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let p = format!("{path} {}", sub.get_name());
            walk(sub, p.trim_start(), commands, flags);
        }
    }
    let (mut commands, mut flags) = (BTreeSet::new(), BTreeSet::new());
    walk(cmd, "", &mut commands, &mut flags);
    commands.remove("");
    (commands, flags)
}

/// What one parsed invocation exercises: its command path and the options it set.
fn exercised(cmd: &clap::Command, m: &clap::ArgMatches, words: &[String]) -> (String, Vec<String>) {
    let mut path = String::new();
    let mut flags = Vec::new();
    let (mut cmd, mut m) = (cmd, m);
    loop {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if arg.is_positional() || (arg.is_global_set() && !path.is_empty()) {
                continue;
            }
            if m.try_contains_id(id).unwrap_or(false)
                && m.value_source(id) == Some(ValueSource::CommandLine)
                && let Some(long) = arg.get_long()
            {
                flags.push(format!("{path} --{long}").trim_start().to_string());
            }
        }
        for (command, long) in ALSO_AS_WORDS {
            if path == *command && words.iter().any(|w| *w == format!("--{long}")) {
                flags.push(format!("{path} --{long}"));
            }
        }
        let Some((name, sub_m)) = m.subcommand() else {
            break;
        };
        let Some(sub) = cmd.find_subcommand(name) else {
            break;
        };
        path = format!("{path} {name}").trim_start().to_string();
        cmd = sub;
        m = sub_m;
    }
    (path, flags)
}

/// The first line of clap's message for a refusal, as the book's output block shows it.
fn first_line(e: &clap::Error) -> String {
    e.render()
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A value for a word the shell fills in at run time that the option accepts: clap's own
/// possible values first, else a number (job ids), which also reads as a path or a name.
fn stand_in(cmd: &clap::Command, words: &[Word]) -> Vec<String> {
    let mut out: Vec<String> = words.iter().map(|w| w.text.clone()).collect();
    for (i, w) in words.iter().enumerate() {
        if !w.dynamic {
            continue;
        }
        out[i] = "1".into();
        // `--format "$FORMAT"`: the first of the option's possible values.
        if let Some(prev) = i
            .checked_sub(1)
            .and_then(|p| words[p].text.strip_prefix("--"))
        {
            let mut c = cmd.clone();
            c.build();
            let mut found = None;
            fn find(c: &clap::Command, long: &str, found: &mut Option<String>) {
                for a in c.get_arguments() {
                    if a.get_long() == Some(long)
                        && let Some(v) = a.get_possible_values().first()
                    {
                        *found = Some(v.get_name().to_string());
                    }
                }
                for s in c.get_subcommands() {
                    find(s, long, found);
                }
            }
            find(&c, prev, &mut found);
            if let Some(v) = found {
                out[i] = v;
            }
        }
    }
    out
}

/// The gate's verdict over the whole book.
pub struct Gate {
    pub commands: (usize, usize),
    pub flags: (usize, usize),
    pub problems: Vec<String>,
    pub allowlisted: Vec<String>,
}

impl Gate {
    pub fn coverage_line(&self) -> String {
        format!(
            "cli surface: {} of {} commands, {} of {} flags exercised by executed blocks \
             ({} allowlisted with a reason)",
            self.commands.0,
            self.commands.1,
            self.flags.0,
            self.flags.1,
            self.allowlisted.len()
        )
    }

    pub fn report(&self) -> String {
        let mut out = String::new();
        for p in &self.problems {
            let _ = writeln!(out, "CLI SURFACE {p}");
        }
        let _ = writeln!(out, "{}", self.coverage_line());
        for entry in &self.allowlisted {
            let reason = ALLOWLIST
                .iter()
                .find(|(e, _)| e == entry)
                .map_or("", |(_, r)| *r);
            let _ = writeln!(out, "  allowlisted: futurnal {entry}: {reason}");
        }
        for (command, long) in ALSO_AS_WORDS {
            let _ = writeln!(
                out,
                "  counted as a word after `{command} runbook` too: futurnal {command} --{long}"
            );
        }
        out
    }
}

fn rel(root: &Path, file: &Path) -> String {
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

/// Runs the gate over every chapter under `book_src`.
pub fn gate(root: &Path) -> Gate {
    let cmd = futurnal::cli_command();
    let files = runbook_tests::collect_markdown(&[root.join("book").join("src")])
        .expect("book/src is readable");
    let (commands, flags) = surface(&cmd);
    let mut problems = Vec::new();
    let mut run_commands: BTreeSet<String> = BTreeSet::new();
    let mut run_flags: BTreeMap<String, usize> = BTreeMap::new();
    for inv in book_invocations(&files) {
        let text = inv
            .words
            .iter()
            .map(|w| w.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let at = format!("{}:{}", rel(root, &inv.file), inv.line);
        if UNREADABLE.iter().any(|(s, _)| text.contains(s)) {
            continue;
        }
        let words = stand_in(&cmd, &inv.words);
        let argv = std::iter::once("futurnal".to_string()).chain(words.iter().cloned());
        match cmd.clone().try_get_matches_from(argv) {
            Ok(m) => {
                if inv.executed {
                    let (path, set) = exercised(&cmd, &m, &words);
                    run_commands.insert(path);
                    for f in set {
                        *run_flags.entry(f).or_default() += 1;
                    }
                }
            }
            Err(e) => {
                use clap::error::ErrorKind;
                if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                    continue;
                }
                let line = first_line(&e);
                // A documented refusal: the block's expected output shows clap's error.
                if !inv.expected.is_empty() && inv.expected.contains(&line) {
                    continue;
                }
                problems.push(format!(
                    "{at}: `futurnal {text}` does not parse: {line}{}",
                    if inv.words.iter().any(|w| w.dynamic) {
                        " (words the shell fills in were read as `1`; if it cannot be read \
                         statically, add it to UNREADABLE in tests/cli_surface.rs with why)"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    let mut allowlisted = Vec::new();
    for (entry, reason) in ALLOWLIST {
        if reason.trim().is_empty() {
            problems.push(format!("allowlist entry `{entry}` has no reason"));
        }
        if !commands.contains(*entry) && !flags.contains(*entry) {
            problems.push(format!(
                "allowlist entry `{entry}` names nothing in the command line; remove it"
            ));
        } else if run_commands.contains(*entry) || run_flags.contains_key(*entry) {
            problems.push(format!(
                "allowlist entry `{entry}` is exercised by an executed block now; remove it"
            ));
        } else {
            allowlisted.push(entry.to_string());
        }
    }
    let allowed = |s: &String| ALLOWLIST.iter().any(|(e, _)| e == s);
    for c in commands
        .iter()
        .filter(|c| !run_commands.contains(*c) && !allowed(c))
    {
        problems.push(format!(
            "`futurnal {c}` is run by no executed block of the book: document it with a block \
             that runs it, or allowlist it with the reason in tests/cli_surface.rs"
        ));
    }
    for f in flags
        .iter()
        .filter(|f| !run_flags.contains_key(*f) && !allowed(f))
    {
        problems.push(format!(
            "`futurnal {f}` is used by no executed block of the book: document it with a block \
             that runs it, or allowlist it with the reason in tests/cli_surface.rs"
        ));
    }
    Gate {
        commands: (
            commands
                .iter()
                .filter(|c| run_commands.contains(*c))
                .count(),
            commands.len(),
        ),
        flags: (
            flags.iter().filter(|f| run_flags.contains_key(*f)).count(),
            flags.len(),
        ),
        problems,
        allowlisted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    fn found(script: &str) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        invocations_in(script, 1, &mut out);
        out.into_iter()
            .map(|(_, w)| w.into_iter().map(|w| w.text).collect())
            .collect()
    }

    #[test]
    fn the_shell_reader_finds_invocations_where_bash_would_run_them() {
        let script = "FUTURNAL_HOME=/tmp/x futurnal orchestrator status --format json | jq .pid\n\
                      id=$(futurnal orchestrator jobs list --format json) # a comment futurnal x\n\
                      if ! futurnal config validate 2>/dev/null; then echo \"futurnal no\"; fi\n\
                      cat > f.md <<'EOF'\nfuturnal in a here-document\nEOF\n\
                      script -qec \"futurnal help runbook --no-pager 'x y'\" /dev/null\n\
                      timeout 5 futurnal orchestrator stop \\\n  --force && grep futurnal log\n";
        assert_eq!(
            found(script),
            vec![
                vec!["orchestrator", "status", "--format", "json"],
                vec!["config", "validate"],
                vec!["help", "runbook", "--no-pager", "x y"],
                vec!["orchestrator", "stop", "--force"],
                vec!["orchestrator", "jobs", "list", "--format", "json"],
            ]
        );
    }

    #[test]
    fn unknown_flags_fail_even_in_skipped_blocks_and_a_refusal_must_show_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("book").join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(
            src.join("a.md"),
            "<!-- runbook: skip=\"example\" -->\n```bash\nfuturnal orchestrator stop --nope\n```\n",
        )
        .unwrap();
        // A refusal is documented only when the block's output shows clap's error.
        let refusal = "<!-- runbook: exit=2 -->\n```bash\nfuturnal orchestrator statsu\n```\n";
        std::fs::write(
            src.join("b.md"),
            format!("{refusal}\n```output\nerror: unrecognized subcommand 'statsu'\n...\n```\n"),
        )
        .unwrap();
        std::fs::write(src.join("c.md"), refusal).unwrap();
        let g = gate(dir.path());
        assert!(!g.problems.iter().any(|p| p.starts_with("book/src/b.md")));
        assert!(
            g.problems
                .iter()
                .any(|p| p.starts_with("book/src/c.md:3: `futurnal orchestrator statsu`")),
            "{:?}",
            g.problems
        );
        assert!(
            g.problems
                .iter()
                .any(|p| p.starts_with("book/src/a.md:3: `futurnal orchestrator stop --nope`")),
            "{:?}",
            g.problems
        );
        // And nothing is exercised by a skipped block: every option is reported as a gap.
        assert_eq!(g.flags.0, 0);
        assert!(g.problems.iter().any(|p| {
            p.starts_with("`futurnal orchestrator stop --force` is used by no executed block")
        }));
        assert!(
            g.report()
                .contains(&format!("0 of {} flags exercised", g.flags.1))
        );
    }

    #[test]
    fn every_command_line_in_the_book_parses_and_the_surface_is_exercised() {
        let g = gate(root());
        eprint!("{}", g.report());
        assert!(g.problems.is_empty(), "{}", g.report());
    }

    #[test]
    fn the_cli_reference_chapter_is_generated_from_the_command_definitions() {
        let path = root().join("book/src/cli-reference.md");
        let want = futurnal::cli_reference();
        if std::env::var("RUNBOOK_BLESS").is_ok_and(|v| v == "1") {
            std::fs::write(&path, &want).unwrap();
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            let first = have
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(have.lines().count().min(want.lines().count()));
            panic!(
                "book/src/cli-reference.md differs from the command definitions from line {}; \
                 regenerate it: RUNBOOK_BLESS=1 cargo test --test cli_surface",
                first + 1
            );
        }
    }
}
