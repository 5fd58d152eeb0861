//! The runbook document model: which blocks of a markdown chapter run, how, and what they expect.
//!
//! Owns: parsing a chapter (with mdBook's own parser options) into executable steps, harness
//! directives and expected-output blocks. The terminal renderer in the futurnal crate uses the same
//! functions to strip what readers must not see, so the book, the terminal and the harness agree.
//!
//! Syntax (documented in the book's "Writing runbooks" chapter):
//! - a ```` ```bash ```` (or `sh`) block runs; a ```` ```output ```` block right after it is its
//!   expected output;
//! - `<!-- runbook: key=value ... -->` on its own line sets directives for the next bash block:
//!   `skip="reason"`, `exit=N`, `timeout=SECONDS`, `session=fresh`, `needs=CONDITION`;
//! - `<!-- runbook: section needs=CONDITION -->` gives every step up to the next heading of the
//!   same or a higher level (visible and hidden) that precondition;
//! - `<!-- runbook: hidden [directives]` followed by script lines and `-->` is a step readers
//!   never see;
//! - inside a bash block, a line starting with `~` runs but is hidden (mdBook `hidelines`).

use std::ops::Range;
use std::path::{Path, PathBuf};

use mdbook_markdown::pulldown_cmark::{CodeBlockKind, Event, Tag, TagEnd};
use mdbook_markdown::{MarkdownOptions, new_cmark_parser};

/// Prefix of a hidden line inside a visible bash block (book.toml `hidelines`).
pub const HIDDEN_LINE_PREFIX: char = '~';
/// Info-string language of an expected-output block.
pub const OUTPUT_LANG: &str = "output";
/// Languages the harness executes (with bash).
pub const RUNNABLE_LANGS: &[&str] = &["bash", "sh"];
pub const DIRECTIVE_KEYS: &[&str] = &[
    "skip", "exit", "timeout", "session", "needs", "section", "hidden", "fix", "check",
];

/// What a step can need from the machine that runs it (`needs=`). The runner decides whether it
/// holds; a step whose precondition fails is skipped with the reason, never run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// The harness runs as root (uid 0): mounting a filesystem, say.
    Root,
}

/// Precondition words accepted by `needs=`, with what each requires.
pub const PRECONDITIONS: &[(&str, Precondition, &str)] = &[(
    "root",
    Precondition::Root,
    "the harness runs as root (uid 0), for example to mount a small filesystem",
)];

impl Precondition {
    pub fn word(self) -> &'static str {
        PRECONDITIONS
            .iter()
            .find(|(_, p, _)| *p == self)
            .map(|(w, _, _)| *w)
            .unwrap_or("?")
    }
}

/// A step's precondition, and why the step needs it (`needs="root: why"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    pub condition: Precondition,
    pub why: Option<String>,
}

/// One executable step of a chapter.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based line of the opening fence or comment.
    pub line: usize,
    pub hidden: bool,
    /// Exactly what bash runs (hidden-line prefixes removed).
    pub script: String,
    /// What a reader sees (hidden lines removed); empty for hidden steps.
    pub visible: String,
    pub directives: Directives,
    pub expected: Option<Expected>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Directives {
    pub skip: Option<String>,
    /// Run only where this precondition holds; otherwise skipped with its reason.
    pub needs: Option<Need>,
    pub exit: i32,
    pub timeout_secs: Option<u64>,
    pub fresh_session: bool,
    /// The solution of a troubleshooting scenario (see `Step::check`).
    pub fix: bool,
    /// The hidden proof that a scenario's symptom is gone.
    pub check: bool,
}

/// An expected-output block and where its text lives in the file (for bless).
#[derive(Debug, Clone)]
pub struct Expected {
    pub line: usize,
    pub text: String,
    /// Byte range of the block's content lines (between the fences).
    pub content: Range<usize>,
    /// Text before the opening fence on its line (list indentation, `> `), repeated on each line.
    pub indent: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DocError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for DocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for DocError {}

#[derive(Debug, Clone)]
pub struct Document {
    pub path: PathBuf,
    pub text: String,
    pub steps: Vec<Step>,
    pub errors: Vec<DocError>,
}

impl Document {
    pub fn load(path: &Path) -> std::io::Result<Document> {
        let text = std::fs::read_to_string(path)?;
        Ok(Document::parse(path, text))
    }

    pub fn parse(path: &Path, text: String) -> Document {
        let (steps, errors) = parse_steps(&text);
        Document {
            path: path.to_path_buf(),
            text,
            steps,
            errors,
        }
    }
}

/// Is this HTML a harness directive comment?
pub fn is_directive(html: &str) -> bool {
    html.trim_start().starts_with("<!-- runbook")
}

/// The language word of a fenced block's info string (mdBook's rule: split on space, tab, comma).
pub fn info_lang(info: &str) -> &str {
    info.split([' ', '\t', ','])
        .find(|s| !s.is_empty())
        .unwrap_or("")
}

/// Split a visible bash block into (script bash runs, text readers see).
pub fn split_hidden_lines(code: &str) -> (String, String) {
    let mut script = String::new();
    let mut visible = String::new();
    for line in code.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(HIDDEN_LINE_PREFIX) {
            let indent = &line[..line.len() - trimmed.len()];
            script.push_str(indent);
            script.push_str(rest);
            script.push('\n');
        } else {
            script.push_str(line);
            script.push('\n');
            visible.push_str(line);
            visible.push('\n');
        }
    }
    (script, visible)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

struct PendingDirective {
    line: usize,
    directives: Directives,
}

fn parse_steps(text: &str) -> (Vec<Step>, Vec<DocError>) {
    let mut steps: Vec<Step> = Vec::new();
    let mut errors = Vec::new();
    let mut pending: Option<PendingDirective> = None;
    // Index of the step whose bash block was the last block-level element seen.
    let mut output_may_follow: Option<usize> = None;
    let mut code: Option<(String, usize, Range<usize>)> = None; // (info, start offset, range)
    let mut code_text = String::new();
    let mut depth_is_block_start;
    // Level of the heading the parser is under (None before the first heading).
    let mut heading_level: Option<u8> = None;
    // An open `section needs=...`: the heading level it ends at (None: the end of the chapter).
    let mut section: Option<(Option<u8>, Need)> = None;
    let with_section = |mut d: Directives, section: &Option<(Option<u8>, Need)>| {
        if d.needs.is_none() {
            d.needs = section.as_ref().map(|(_, n)| n.clone());
        }
        d
    };

    let parser = new_cmark_parser(text, &MarkdownOptions::default()).into_offset_iter();
    for (event, range) in parser {
        depth_is_block_start = matches!(
            &event,
            Event::Start(
                Tag::Paragraph
                    | Tag::Heading { .. }
                    | Tag::BlockQuote(_)
                    | Tag::List(_)
                    | Tag::Table(_)
                    | Tag::FootnoteDefinition(_)
                    | Tag::DefinitionList
            ) | Event::Rule
        );
        if depth_is_block_start {
            output_may_follow = None;
            if let Some(p) = pending.take() {
                errors.push(DocError {
                    line: p.line,
                    message: "this runbook directive is not followed by a bash block".into(),
                });
            }
        }
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                let level = level as u8;
                if section
                    .as_ref()
                    .is_some_and(|(end, _)| end.is_some_and(|end| level <= end))
                {
                    section = None;
                }
                heading_level = Some(level);
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                let info = match kind {
                    CodeBlockKind::Fenced(info) => info.to_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                code = Some((info, range.start, range.clone()));
                code_text.clear();
            }
            Event::Text(t) if code.is_some() => code_text.push_str(&t),
            Event::End(TagEnd::CodeBlock) => {
                let Some((info, start, range)) = code.take() else {
                    continue;
                };
                let line = line_of(text, start);
                let lang = info_lang(&info).to_string();
                if lang == OUTPUT_LANG {
                    if let Some(p) = pending.take() {
                        errors.push(DocError {
                            line: p.line,
                            message: "a runbook directive cannot apply to an output block".into(),
                        });
                    }
                    match output_may_follow.take() {
                        Some(i) if steps[i].expected.is_none() => {
                            steps[i].expected = Some(expected_block(text, range, line, &code_text));
                        }
                        _ => errors.push(DocError {
                            line,
                            message: "this output block does not directly follow a bash block"
                                .into(),
                        }),
                    }
                    continue;
                }
                if RUNNABLE_LANGS.contains(&lang.as_str()) {
                    let (script, visible) = split_hidden_lines(&code_text);
                    let directives = with_section(
                        pending.take().map(|p| p.directives).unwrap_or_default(),
                        &section,
                    );
                    steps.push(Step {
                        line,
                        hidden: false,
                        script,
                        visible,
                        directives,
                        expected: None,
                    });
                    output_may_follow = Some(steps.len() - 1);
                } else {
                    output_may_follow = None;
                    if let Some(p) = pending.take() {
                        errors.push(DocError {
                            line: p.line,
                            message: format!(
                                "runbook directives apply to bash blocks, not to a `{lang}` block"
                            ),
                        });
                    }
                }
            }
            Event::Start(Tag::HtmlBlock) | Event::InlineHtml(_) => {
                output_may_follow = None;
                let raw = &text[range.clone()];
                if !is_directive(raw) {
                    continue;
                }
                let line = line_of(text, range.start);
                if matches!(event, Event::InlineHtml(_)) {
                    errors.push(DocError {
                        line,
                        message: "a runbook directive must stand on its own line, with a blank \
                                  line before it"
                            .into(),
                    });
                    continue;
                }
                if let Some(p) = pending.take() {
                    errors.push(DocError {
                        line: p.line,
                        message: "this runbook directive is not followed by a bash block".into(),
                    });
                }
                match parse_directive_comment(raw) {
                    Ok(Comment::Directives(directives)) => {
                        pending = Some(PendingDirective { line, directives });
                    }
                    Ok(Comment::Hidden { directives, script }) => {
                        steps.push(Step {
                            line,
                            hidden: true,
                            script,
                            visible: String::new(),
                            directives: with_section(directives, &section),
                            expected: None,
                        });
                    }
                    Ok(Comment::Section(need)) => {
                        if section.is_some() {
                            errors.push(DocError {
                                line,
                                message: "a `section` directive is already open here; one \
                                          section directive per heading"
                                    .into(),
                            });
                        }
                        section = Some((heading_level, need));
                    }
                    Err(message) => errors.push(DocError { line, message }),
                }
            }
            _ => {}
        }
    }
    if let Some(p) = pending {
        errors.push(DocError {
            line: p.line,
            message: "this runbook directive is not followed by a bash block".into(),
        });
    }
    // Scenarios: every fix is followed by exactly one check before the next fix, and every check
    // belongs to a fix. Checks are hidden steps; fixes are what the reader runs.
    let mut open_fix: Option<usize> = None;
    for (i, step) in steps.iter().enumerate() {
        if step.directives.fix {
            if step.hidden {
                errors.push(DocError {
                    line: step.line,
                    message: "a fix is what the reader runs: put `fix` on a visible bash block"
                        .into(),
                });
            }
            if let Some(f) = open_fix {
                errors.push(DocError {
                    line: steps[f].line,
                    message: "this fix has no `check` step after it".into(),
                });
            }
            open_fix = Some(i);
        }
        if step.directives.check {
            if !step.hidden {
                errors.push(DocError {
                    line: step.line,
                    message: "a check proves the fix for the test, not the reader: use \
                              `<!-- runbook: hidden check`"
                        .into(),
                });
            }
            match open_fix.take() {
                None => errors.push(DocError {
                    line: step.line,
                    message: "this check has no `fix` block before it".into(),
                }),
                // Otherwise one of them could run without the other where the precondition fails.
                Some(f) if steps[f].directives.needs != step.directives.needs => {
                    errors.push(DocError {
                        line: step.line,
                        message: format!(
                            "this check and its fix at line {} must have the same `needs`; \
                             put `<!-- runbook: section needs=... -->` under the scenario's heading",
                            steps[f].line
                        ),
                    })
                }
                Some(_) => {}
            }
        }
    }
    if let Some(f) = open_fix {
        errors.push(DocError {
            line: steps[f].line,
            message: "this fix has no `check` step after it".into(),
        });
    }
    for step in &steps {
        if let Some(offset) = negation_that_cannot_fail(&step.script) {
            errors.push(DocError {
                line: step.line + offset,
                message: "`! command` before the last line never fails the block (bash ignores \
                          set -e for negated commands); write `if command; then exit 1; fi`"
                    .into(),
            });
        }
        if let Some(reason) = &step.directives.skip
            && step.hidden
        {
            errors.push(DocError {
                line: step.line,
                message: format!("a hidden step cannot be skipped (skip=\"{reason}\"); delete it"),
            });
        }
        if step.directives.skip.is_some() && step.directives.needs.is_some() {
            errors.push(DocError {
                line: step.line,
                message: "`skip` and `needs` on one block: skip always wins; keep one".into(),
            });
        }
    }
    (steps, errors)
}

/// Line offset (from the block's first line) of a `! cmd` that is not the script's last command.
fn negation_that_cannot_fail(script: &str) -> Option<usize> {
    let lines: Vec<&str> = script.lines().collect();
    let last = lines.iter().rposition(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    })?;
    lines[..last]
        .iter()
        .position(|l| l.trim_start().starts_with("! "))
        .map(|i| i + 1)
}

fn expected_block(text: &str, range: Range<usize>, line: usize, content: &str) -> Expected {
    let block = &text[range.clone()];
    let first_nl = block.find('\n').map(|i| i + 1).unwrap_or(block.len());
    // The closing fence is the last line that starts (after indentation) with the fence chars.
    let body_end = block.trim_end_matches('\n').rfind('\n').map(|i| i + 1);
    let content_range = match body_end {
        Some(end) if end >= first_nl => range.start + first_nl..range.start + end,
        _ => range.start + first_nl..range.start + first_nl,
    };
    let line_start = text[..range.start].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let indent = text[line_start..range.start].to_string();
    Expected {
        line,
        text: content.to_string(),
        content: content_range,
        indent,
    }
}

enum Comment {
    Directives(Directives),
    /// `section needs=...`: a precondition for the rest of the section.
    Section(Need),
    Hidden {
        directives: Directives,
        script: String,
    },
}

fn parse_directive_comment(raw: &str) -> Result<Comment, String> {
    let body = raw.trim();
    let body = body
        .strip_prefix("<!--")
        .and_then(|b| b.strip_suffix("-->"))
        .ok_or("a runbook directive must be one HTML comment: <!-- runbook: ... -->")?;
    if body.contains("<!--") {
        return Err(
            "`<!--` inside a runbook comment nests comments, which HTML forbids (mdBook warns); \
             write it as `<!-[-]` in a grep pattern"
                .into(),
        );
    }
    let body = body.trim_start().strip_prefix("runbook").unwrap_or(body);
    let body = body.strip_prefix(':').unwrap_or(body);
    let (first, rest) = match body.find('\n') {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, ""),
    };
    let mut directives = Directives::default();
    let mut hidden = false;
    let mut section = false;
    for (key, value) in tokenize(first)? {
        match (key.as_str(), value) {
            ("hidden", None) => hidden = true,
            ("section", None) => section = true,
            ("needs", Some(v)) => directives.needs = Some(parse_need(&v)?),
            ("fix", None) => directives.fix = true,
            ("check", None) => directives.check = true,
            ("skip", Some(reason)) if !reason.trim().is_empty() => directives.skip = Some(reason),
            ("skip", _) => {
                return Err("skip needs a reason: skip=\"why this block must not run\"".into());
            }
            ("exit", Some(v)) => {
                directives.exit = v
                    .parse()
                    .map_err(|_| format!("exit must be a number, found `{v}`"))?
            }
            ("timeout", Some(v)) => {
                let secs = v.trim_end_matches('s');
                directives.timeout_secs = Some(
                    secs.parse()
                        .map_err(|_| format!("timeout must be seconds, found `{v}`"))?,
                )
            }
            ("session", Some(v)) if v == "fresh" => directives.fresh_session = true,
            ("session", v) => {
                return Err(format!(
                    "session must be `session=fresh`, found `{}`",
                    v.unwrap_or_default()
                ));
            }
            (k, v) if DIRECTIVE_KEYS.contains(&k) => {
                return Err(match v {
                    Some(_) => format!("`{k}` takes no value"),
                    None => format!("`{k}` needs a value: {k}=..."),
                });
            }
            (k, _) => {
                let hint = DIRECTIVE_KEYS
                    .iter()
                    .map(|c| (strsim::jaro_winkler(k, c), *c))
                    .filter(|(s, _)| *s > 0.7)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, c)| format!("; did you mean `{c}`?"))
                    .unwrap_or_else(|| format!("; known: {}", DIRECTIVE_KEYS.join(", ")));
                return Err(format!("unknown runbook directive `{k}`{hint}"));
            }
        }
    }
    let script = rest.trim_end();
    if section {
        return match directives.needs.take() {
            Some(need)
                if !hidden && script.trim().is_empty() && directives == Directives::default() =>
            {
                Ok(Comment::Section(need))
            }
            Some(_) => Err(
                "`section` takes only `needs=` and stands alone: <!-- runbook: section \
                 needs=CONDITION -->"
                    .into(),
            ),
            None => {
                Err("`section` needs a precondition: <!-- runbook: section needs=root -->".into())
            }
        };
    }
    if hidden {
        if script.trim().is_empty() {
            return Err("a hidden step needs script lines after `<!-- runbook: hidden`".into());
        }
        let mut script = script.to_string();
        script.push('\n');
        return Ok(Comment::Hidden { directives, script });
    }
    if !script.trim().is_empty() {
        return Err(
            "a multi-line runbook comment is a hidden step: start it with `<!-- runbook: hidden`"
                .into(),
        );
    }
    if directives == Directives::default() {
        return Err("empty runbook directive".into());
    }
    Ok(Comment::Directives(directives))
}

/// `needs=root` or `needs="root: why the step needs it"`.
fn parse_need(value: &str) -> Result<Need, String> {
    let (word, why) = match value.split_once(':') {
        Some((w, why)) => (w.trim(), Some(why.trim()).filter(|s| !s.is_empty())),
        None => (value.trim(), None),
    };
    let known = || {
        PRECONDITIONS
            .iter()
            .map(|(w, _, _)| *w)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some((_, condition, _)) = PRECONDITIONS.iter().find(|(w, _, _)| *w == word) else {
        return Err(format!(
            "unknown precondition `{word}` in needs=; known: {}",
            known()
        ));
    };
    Ok(Need {
        condition: *condition,
        why: why.map(str::to_string),
    })
}

/// `key`, `key=value` and `key="quoted value"` tokens.
fn tokenize(s: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut chars = s.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.peek() == Some(&'=') {
            chars.next();
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '"' {
                        closed = true;
                        break;
                    }
                    value.push(c);
                }
                if !closed {
                    return Err(format!("unterminated quote in `{key}=\"...`"));
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
            out.push((key, Some(value)));
        } else {
            out.push((key, None));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> (Vec<Step>, Vec<DocError>) {
        parse_steps(s)
    }

    #[test]
    fn bash_block_with_output_and_directives() {
        let md = "# T\n\n<!-- runbook: exit=2 timeout=5 -->\n```bash\necho hi\n~echo hidden\n```\n\n```output\nhi\n```\n";
        let (steps, errors) = parse(md);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(steps.len(), 1);
        let s = &steps[0];
        assert_eq!(s.line, 4);
        assert_eq!(s.script, "echo hi\necho hidden\n");
        assert_eq!(s.visible, "echo hi\n");
        assert_eq!(s.directives.exit, 2);
        assert_eq!(s.directives.timeout_secs, Some(5));
        let e = s.expected.as_ref().unwrap();
        assert_eq!(e.text, "hi\n");
        assert_eq!(&md[e.content.clone()], "hi\n");
        assert_eq!(e.line, 9);
    }

    #[test]
    fn hidden_step_and_skip() {
        let md = "<!-- runbook: hidden\nmkdir x\n-->\n\n<!-- runbook: skip=\"touches the real crontab\" -->\n```bash\ncrontab -l\n```\n";
        let (steps, errors) = parse(md);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(steps[0].hidden);
        assert_eq!(steps[0].script, "mkdir x\n");
        assert_eq!(
            steps[1].directives.skip.as_deref(),
            Some("touches the real crontab")
        );
    }

    #[test]
    fn misspelled_directive_is_an_error_with_suggestion() {
        let (_, errors) = parse("<!-- runbook: skp=\"x\" -->\n```bash\ntrue\n```\n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("did you mean `skip`"),
            "{errors:?}"
        );
    }

    #[test]
    fn orphan_output_block_and_dangling_directive_are_errors() {
        let (_, errors) =
            parse("text\n\n```output\nx\n```\n\n<!-- runbook: exit=1 -->\n\nparagraph\n");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].line, 3);
        assert_eq!(errors[1].line, 7);
    }

    #[test]
    fn negation_before_the_last_line_is_an_error() {
        let (_, errors) = parse("```bash\n! grep -q x f\necho done\n```\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 2);
        let (_, errors) = parse("```bash\necho first\n! grep -q x f\n```\n");
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn scenarios_pair_fixes_with_checks() {
        let md = "<!-- runbook: fix -->\n```bash\nfix-it\n```\n\n<!-- runbook: hidden check\ntest -e ok\n-->\n";
        let (steps, errors) = parse(md);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(steps[0].directives.fix && steps[1].directives.check);
        let (_, errors) = parse("<!-- runbook: fix -->\n```bash\nfix-it\n```\n");
        assert!(errors[0].message.contains("no `check`"), "{errors:?}");
        let (_, errors) = parse("<!-- runbook: hidden check\ntrue\n-->\n");
        assert!(errors[0].message.contains("no `fix`"), "{errors:?}");
    }

    #[test]
    fn skip_needs_reason() {
        let (_, errors) = parse("<!-- runbook: skip -->\n```bash\ntrue\n```\n");
        assert!(errors[0].message.contains("needs a reason"), "{errors:?}");
    }

    #[test]
    fn output_block_in_list_keeps_indent() {
        let md = "1. Run:\n\n   ```bash\n   echo a\n   ```\n\n   ```output\n   a\n   ```\n";
        let (steps, errors) = parse(md);
        assert!(errors.is_empty(), "{errors:?}");
        let e = steps[0].expected.as_ref().unwrap();
        assert_eq!(e.indent, "   ");
        assert_eq!(e.text, "a\n");
        assert_eq!(&md[e.content.clone()], "   a\n");
    }

    #[test]
    fn empty_output_block() {
        let md = "```bash\ntrue\n```\n\n```output\n```\n";
        let (steps, _) = parse(md);
        let e = steps[0].expected.as_ref().unwrap();
        assert_eq!(e.text, "");
        assert!(e.content.is_empty());
    }

    fn root(why: Option<&str>) -> Option<Need> {
        Some(Need {
            condition: Precondition::Root,
            why: why.map(str::to_string),
        })
    }

    #[test]
    fn needs_on_a_block_and_on_a_hidden_step() {
        let md = "<!-- runbook: needs=root -->\n```bash\nmount\n```\n\n\
                  <!-- runbook: hidden needs=\"root: mounts a tmpfs\"\nmount -t tmpfs x y\n-->\n\n\
                  ```bash\ntrue\n```\n";
        let (steps, errors) = parse(md);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(steps[0].directives.needs, root(None));
        assert!(steps[1].hidden);
        assert_eq!(steps[1].directives.needs, root(Some("mounts a tmpfs")));
        assert_eq!(steps[2].directives.needs, None);
    }

    #[test]
    fn section_needs_covers_every_step_to_the_next_heading_of_its_level() {
        let md = "# C\n\n```bash\nbefore\n```\n\n## Full disk\n\n\
                  <!-- runbook: section needs=\"root: mounts a tmpfs\" -->\n\n\
                  <!-- runbook: hidden\nsetup\n-->\n\n### Deeper\n\n```bash\ndiagnose\n```\n\n\
                  <!-- runbook: fix -->\n```bash\nfix\n```\n\n<!-- runbook: hidden check\ncheck\n-->\n\n\
                  ## Next\n\n```bash\nafter\n```\n";
        let (steps, errors) = parse(md);
        assert!(errors.is_empty(), "{errors:?}");
        let needs: Vec<_> = steps
            .iter()
            .map(|s| (s.script.trim(), s.directives.needs.is_some()))
            .collect();
        assert_eq!(
            needs,
            [
                ("before", false),
                ("setup", true),
                ("diagnose", true),
                ("fix", true),
                ("check", true),
                ("after", false),
            ]
        );
        assert_eq!(steps[1].directives.needs, root(Some("mounts a tmpfs")));
        // Before any heading, a section lasts to the end of the chapter.
        let (steps, errors) =
            parse("<!-- runbook: section needs=root -->\n\n# A\n\n```bash\nx\n```\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(steps[0].directives.needs, root(None));
    }

    #[test]
    fn needs_mistakes_are_errors() {
        let err = |md: &str| {
            let (_, errors) = parse(md);
            assert_eq!(errors.len(), 1, "{md}: {errors:?}");
            errors[0].message.clone()
        };
        assert!(
            err("<!-- runbook: needs=rot -->\n```bash\ntrue\n```\n")
                .contains("unknown precondition `rot` in needs=; known: root")
        );
        assert!(
            err("<!-- runbook: neds=root -->\n```bash\ntrue\n```\n")
                .contains("did you mean `needs`")
        );
        assert!(err("<!-- runbook: needs -->\n```bash\ntrue\n```\n").contains("needs a value"));
        assert!(err("<!-- runbook: section -->\n").contains("`section` needs a precondition"));
        assert!(
            err("<!-- runbook: section needs=root exit=1 -->\n").contains("takes only `needs=`")
        );
        assert!(
            err("<!-- runbook: skip=\"x\" needs=root -->\n```bash\ntrue\n```\n")
                .contains("skip always wins")
        );
        // A fix that could be skipped while its check runs (or the other way round).
        assert!(
            err("<!-- runbook: fix needs=root -->\n```bash\nfix\n```\n\n\
                 <!-- runbook: hidden check\ncheck\n-->\n")
            .contains("must have the same `needs`")
        );
    }
}
