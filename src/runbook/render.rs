//! Terminal rendering of book markdown for `futurnal help runbook`.
//!
//! Owns: turning a chapter (or section) into styled text for a terminal.
//! Invariants: harness directives, hidden steps and hidden (`~`) lines never reach the reader,
//! decided by the same `runbook_tests::doc` functions the harness uses; output is always styled
//! with anstyle and written through anstream, which strips styles when stdout is not a terminal
//! or NO_COLOR is set, so piped output is plain text.

use anstyle::{AnsiColor, Effects, Style};
use comfy_table::{ContentArrangement, Table};
use mdbook_markdown::pulldown_cmark::{BlockQuoteKind, CodeBlockKind, Event, Tag, TagEnd};
use mdbook_markdown::{MarkdownOptions, new_cmark_parser};
use runbook_tests::doc::{OUTPUT_LANG, RUNNABLE_LANGS, info_lang, split_hidden_lines};

const CODE: Style = AnsiColor::Cyan.on_default();
const COMMAND: Style = AnsiColor::Green.on_default();
const OUTPUT: Style = Style::new().effects(Effects::DIMMED);
const H1: Style = Style::new().effects(Effects::BOLD.insert(Effects::UNDERLINE));
const H2: Style = AnsiColor::Yellow.on_default().effects(Effects::BOLD);
const H3: Style = Style::new().effects(Effects::BOLD);
const EMPH: Style = Style::new().effects(Effects::ITALIC);
const STRONG: Style = Style::new().effects(Effects::BOLD);
const LINK: Style = AnsiColor::Blue.on_default().effects(Effects::UNDERLINE);

/// Output width: `COLUMNS` if set, else 80, within 40..=100.
pub fn width_from_env() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(80usize)
        .clamp(40, 100)
}

#[derive(Default)]
struct Inline {
    spans: Vec<(String, Style)>,
}

impl Inline {
    fn push(&mut self, text: &str, style: Style) {
        self.spans.push((text.to_string(), style));
    }
    fn is_empty(&self) -> bool {
        self.spans.iter().all(|(t, _)| t.trim().is_empty())
    }
    fn plain(&self) -> String {
        self.spans.iter().map(|(t, _)| t.as_str()).collect()
    }
}

fn styled(text: &str, style: Style) -> String {
    if style == Style::new() || text.is_empty() {
        text.to_string()
    } else {
        format!("{style}{text}{style:#}")
    }
}

/// Greedy word wrap of styled spans; `first` and `rest` prefix the first and later lines.
fn wrap(inline: &Inline, width: usize, first: &str, rest: &str) -> String {
    // Split into words while keeping each word's style; explicit newlines (hard breaks) force a break.
    let mut words: Vec<Vec<(String, Style)>> = vec![Vec::new()];
    let mut breaks_before = vec![false];
    for (text, style) in &inline.spans {
        let mut cur = String::new();
        for c in text.chars() {
            if c == '\n' || c == ' ' {
                if !cur.is_empty() {
                    words
                        .last_mut()
                        .unwrap()
                        .push((std::mem::take(&mut cur), *style));
                }
                if !words.last().unwrap().is_empty() || c == '\n' {
                    words.push(Vec::new());
                    breaks_before.push(c == '\n');
                }
            } else {
                cur.push(c);
            }
        }
        if !cur.is_empty() {
            words.last_mut().unwrap().push((cur, *style));
        }
    }
    let mut out = String::new();
    let mut line_len = 0usize;
    let mut line_started = false;
    let mut prefix = first;
    for (word, hard) in words.iter().zip(breaks_before) {
        if word.is_empty() {
            if hard && line_started {
                out.push('\n');
                line_started = false;
                prefix = rest;
            }
            continue;
        }
        let len: usize = word.iter().map(|(t, _)| t.chars().count()).sum();
        if (hard || line_len + 1 + len > width) && line_started {
            out.push('\n');
            line_started = false;
            prefix = rest;
        }
        if !line_started {
            out.push_str(prefix);
            line_len = prefix.chars().count();
            line_started = true;
        } else {
            out.push(' ');
            line_len += 1;
        }
        for (t, s) in word {
            out.push_str(&styled(t, *s));
        }
        line_len += len;
    }
    if line_started {
        out.push('\n');
    }
    out
}

struct ListState {
    next: Option<u64>,
}

struct TableState {
    rows: Vec<Vec<String>>,
    row: Vec<String>,
    cell: Inline,
}

/// Render markdown for the terminal.
pub fn render(markdown: &str, width: usize) -> String {
    let mut out = String::new();
    let mut inline = Inline::default();
    let mut style_stack: Vec<Style> = vec![Style::new()];
    let mut lists: Vec<ListState> = Vec::new();
    let mut quote_depth = 0usize;
    let mut quote_kind: Option<BlockQuoteKind> = None;
    let mut item_prefix: Option<String> = None;
    let mut heading: Option<usize> = None;
    let mut code: Option<(String, String)> = None; // (lang, text)
    let mut table: Option<TableState> = None;
    let mut link_targets: Vec<String> = Vec::new();
    // Hidden steps live in HTML comments; directive comments are dropped like all raw HTML.
    let indent = |lists: &Vec<ListState>, quote: usize| -> String {
        let mut s = "│ ".repeat(quote);
        s.push_str(&"   ".repeat(lists.len()));
        s
    };

    let blank = |out: &mut String| {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
    };

    let flush = |out: &mut String,
                 inline: &mut Inline,
                 lists: &Vec<ListState>,
                 quote: usize,
                 item_prefix: &mut Option<String>| {
        if inline.is_empty() && item_prefix.is_none() {
            inline.spans.clear();
            return;
        }
        let base = indent(lists, quote);
        let (first, rest) = match item_prefix.take() {
            Some(marker) => {
                let inner = format!(
                    "{}{marker}",
                    &base[..base.len() - "   ".len().min(base.len())]
                );
                let pad = " ".repeat(marker.chars().count());
                let rest = format!("{}{pad}", &base[..base.len() - "   ".len().min(base.len())]);
                (inner, rest)
            }
            None => (base.clone(), base),
        };
        out.push_str(&wrap(inline, width, &first, &rest));
        inline.spans.clear();
    };

    for event in new_cmark_parser(markdown, &MarkdownOptions::default()) {
        let top = *style_stack.last().unwrap();
        if let Some(t) = table.as_mut() {
            match &event {
                Event::End(TagEnd::TableCell) => {
                    let text = t.cell.plain();
                    t.row.push(text);
                    t.cell.spans.clear();
                    continue;
                }
                Event::End(TagEnd::TableHead) | Event::End(TagEnd::TableRow) => {
                    let row = std::mem::take(&mut t.row);
                    t.rows.push(row);
                    continue;
                }
                Event::Text(s) => {
                    t.cell.push(s, Style::new());
                    continue;
                }
                Event::Code(s) => {
                    t.cell.push(&format!("`{s}`"), Style::new());
                    continue;
                }
                Event::End(TagEnd::Table) => {}
                _ => continue,
            }
        }
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                blank(&mut out);
                heading = Some(level as usize);
            }
            Event::End(TagEnd::Heading(_)) => {
                let level = heading.take().unwrap_or(1);
                let style = match level {
                    1 => H1,
                    2 => H2,
                    _ => H3,
                };
                let text = inline.plain();
                inline.spans.clear();
                out.push_str(&styled(&text, style));
                out.push('\n');
                // Plain text keeps the hierarchy visible the classic way: underlines.
                match level {
                    1 => out.push_str(&"=".repeat(text.chars().count())),
                    2 => out.push_str(&"-".repeat(text.chars().count())),
                    _ => {}
                }
                if level <= 2 {
                    out.push('\n');
                }
                out.push('\n');
            }
            Event::Start(Tag::Paragraph) if item_prefix.is_none() => blank(&mut out),
            Event::Start(Tag::Paragraph) => {}
            Event::End(TagEnd::Paragraph) => {
                flush(&mut out, &mut inline, &lists, quote_depth, &mut item_prefix);
                if lists.is_empty() {
                    out.push('\n');
                }
            }
            Event::Start(Tag::BlockQuote(kind)) => {
                blank(&mut out);
                quote_depth += 1;
                quote_kind = kind;
                if let Some(k) = kind {
                    let label = match k {
                        BlockQuoteKind::Note => "NOTE",
                        BlockQuoteKind::Tip => "TIP",
                        BlockQuoteKind::Important => "IMPORTANT",
                        BlockQuoteKind::Warning => "WARNING",
                        BlockQuoteKind::Caution => "CAUTION",
                    };
                    let color = match k {
                        BlockQuoteKind::Warning | BlockQuoteKind::Caution => AnsiColor::Red,
                        _ => AnsiColor::Yellow,
                    };
                    out.push_str(&indent(&lists, quote_depth));
                    out.push_str(&styled(label, color.on_default().effects(Effects::BOLD)));
                    out.push('\n');
                }
            }
            Event::End(TagEnd::BlockQuote(_)) => {
                flush(&mut out, &mut inline, &lists, quote_depth, &mut item_prefix);
                quote_depth = quote_depth.saturating_sub(1);
                let _ = quote_kind.take();
                // Paragraph ends inside quotes already added a blank line.
            }
            Event::Start(Tag::List(start)) => {
                flush(&mut out, &mut inline, &lists, quote_depth, &mut item_prefix);
                if lists.is_empty() {
                    blank(&mut out);
                }
                lists.push(ListState { next: start });
            }
            Event::End(TagEnd::List(_)) => {
                flush(&mut out, &mut inline, &lists, quote_depth, &mut item_prefix);
                lists.pop();
                if lists.is_empty() {
                    out.push('\n');
                }
            }
            Event::Start(Tag::Item) => {
                flush(&mut out, &mut inline, &lists, quote_depth, &mut item_prefix);
                let marker = match lists.last_mut().and_then(|l| l.next.as_mut()) {
                    Some(n) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    None => "- ".to_string(),
                };
                item_prefix = Some(format!(
                    "{marker}{}",
                    " ".repeat(3usize.saturating_sub(marker.len()))
                ));
            }
            Event::End(TagEnd::Item) => {
                flush(&mut out, &mut inline, &lists, quote_depth, &mut item_prefix);
            }
            Event::TaskListMarker(done) => inline.push(if done { "[x] " } else { "[ ] " }, top),
            Event::Start(Tag::CodeBlock(kind)) => {
                flush(&mut out, &mut inline, &lists, quote_depth, &mut item_prefix);
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => info_lang(&info).to_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                code = Some((lang, String::new()));
            }
            Event::Text(t) if code.is_some() => {
                if let Some((_, text)) = code.as_mut() {
                    text.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                let Some((lang, text)) = code.take() else {
                    continue;
                };
                let base = indent(&lists, quote_depth);
                let (shown, style, mark) = if RUNNABLE_LANGS.contains(&lang.as_str()) {
                    (split_hidden_lines(&text).1, COMMAND, "")
                } else if lang == OUTPUT_LANG {
                    (text, OUTPUT, "│ ")
                } else {
                    (text, CODE, "")
                };
                if !out.ends_with("\n\n") {
                    blank(&mut out);
                }
                for line in shown.lines() {
                    out.push_str(&base);
                    out.push_str("    ");
                    out.push_str(&styled(format!("{mark}{line}").trim_end(), style));
                    out.push('\n');
                }
                out.push('\n');
            }
            Event::Start(Tag::Table(_)) => {
                flush(&mut out, &mut inline, &lists, quote_depth, &mut item_prefix);
                blank(&mut out);
                table = Some(TableState {
                    rows: Vec::new(),
                    row: Vec::new(),
                    cell: Inline::default(),
                });
            }
            Event::End(TagEnd::Table) => {
                if let Some(t) = table.take() {
                    let mut tbl = Table::new();
                    tbl.load_style(comfy_table::presets::UTF8_HORIZONTAL_ONLY)
                        .set_content_arrangement(ContentArrangement::Dynamic)
                        .set_width(width.saturating_sub(indent(&lists, quote_depth).len()) as u16);
                    let mut rows = t.rows.into_iter();
                    if let Some(h) = rows.next() {
                        tbl.set_header(h);
                    }
                    for r in rows {
                        tbl.add_row(r);
                    }
                    for line in tbl.to_string().lines() {
                        out.push_str(&indent(&lists, quote_depth));
                        out.push_str(line.trim_end());
                        out.push('\n');
                    }
                    out.push('\n');
                }
            }
            Event::Start(Tag::Emphasis) => {
                style_stack.push(top.effects(top.get_effects() | EMPH.get_effects()))
            }
            Event::Start(Tag::Strong) => {
                style_stack.push(top.effects(top.get_effects() | STRONG.get_effects()))
            }
            Event::Start(Tag::Strikethrough) => {
                style_stack.push(top.effects(top.get_effects() | Effects::STRIKETHROUGH))
            }
            Event::End(TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough)
                if style_stack.len() > 1 =>
            {
                style_stack.pop();
            }
            Event::Start(Tag::Link { dest_url, .. }) => {
                link_targets.push(dest_url.to_string());
                style_stack.push(LINK);
            }
            Event::End(TagEnd::Link) => {
                if style_stack.len() > 1 {
                    style_stack.pop();
                }
                if let Some(hint) = link_targets.pop().and_then(|url| link_hint(&url)) {
                    inline.push(&format!(" ({hint})"), Style::new());
                }
            }
            Event::Start(Tag::Image { .. }) => inline.push("[image: ", top),
            Event::End(TagEnd::Image) => inline.push("]", top),
            Event::Text(t) => inline.push(&t, top),
            Event::Code(t) => inline.push(&format!("`{t}`"), CODE),
            Event::SoftBreak => inline.push(" ", top),
            Event::HardBreak => inline.push("\n", top),
            Event::Rule => {
                blank(&mut out);
                out.push_str(&"─".repeat(width.min(60)));
                out.push_str("\n\n");
            }
            Event::FootnoteReference(name) => inline.push(&format!("[{name}]"), top),
            // Raw HTML, including harness directives and hidden steps, is never shown.
            Event::Html(_) | Event::InlineHtml(_) => {}
            _ => {}
        }
    }
    flush(&mut out, &mut inline, &lists, quote_depth, &mut item_prefix);
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// Where a link goes, said for a terminal reader.
fn link_hint(url: &str) -> Option<String> {
    if url.starts_with("http://") || url.starts_with("https://") || url.starts_with("mailto:") {
        return Some(url.to_string());
    }
    let (file, anchor) = match url.split_once('#') {
        Some((f, a)) => (f, Some(a)),
        None => (url, None),
    };
    let topic = match (file.trim_end_matches(".md").rsplit('/').next(), anchor) {
        (_, Some(a)) if !a.is_empty() => a.to_string(),
        (Some(f), _) if !f.is_empty() => f.to_string(),
        _ => return None,
    };
    Some(format!("futurnal help runbook {topic}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(md: &str) -> String {
        let styled = render(md, 80);
        anstream::adapter::strip_str(&styled).to_string()
    }

    #[test]
    fn strips_directives_hidden_steps_and_hidden_lines() {
        let md = "# Title\n\nIntro text.\n\n<!-- runbook: hidden\nsecret-setup\n-->\n\n<!-- runbook: exit=1 -->\n```bash\nfuturnal orchestrator start\n~hidden-assert\n```\n\n```output\nerror: x\n```\n";
        let text = plain(md);
        assert!(!text.contains("runbook:"), "{text}");
        assert!(!text.contains("secret-setup"), "{text}");
        assert!(!text.contains("hidden-assert"), "{text}");
        assert!(text.contains("    futurnal orchestrator start"), "{text}");
        assert!(text.contains("│ error: x"), "{text}");
    }

    #[test]
    fn lists_tables_and_links() {
        let md = "Some [guide](operator-guide.md#stopping-the-orchestrator) text.\n\n- one\n- two\n\n1. first\n2. second\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";
        let text = plain(md);
        assert!(
            text.contains("(futurnal help runbook stopping-the-orchestrator)"),
            "{text}"
        );
        assert!(text.contains("-  one"), "{text}");
        assert!(text.contains("1. first"), "{text}");
        assert!(text.contains(" a "), "{text}");
    }

    #[test]
    fn wraps_to_width() {
        let md = "word ".repeat(60);
        for line in plain(&md).lines() {
            assert!(line.chars().count() <= 80, "{line}");
        }
    }
}
