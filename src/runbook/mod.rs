//! The operator book inside the binary: chapters, topic lookup, terminal rendering, and the
//! `futurnal runbook check` harness entry point.
//!
//! Owns: the chapters embedded at build time from `book/src` (see build.rs) and finding a chapter
//! or section by slug or words.
//! Invariants: the embedded text is the book's own source files, never a copy; every topic an
//! error message names resolves (tested in `topics`).

pub mod render;
pub mod topics;

use mdbook_markdown::pulldown_cmark::{Event, HeadingLevel, Tag, TagEnd};
use mdbook_markdown::{MarkdownOptions, new_cmark_parser};
use std::collections::HashSet;

/// A chapter of the book compiled into the binary.
#[derive(Debug)]
pub struct EmbeddedChapter {
    pub slug: &'static str,
    pub title: &'static str,
    pub text: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/chapters.rs"));

/// A heading inside a chapter, with the id mdBook gives it.
#[derive(Debug, Clone)]
pub struct Heading {
    pub level: usize,
    pub title: String,
    pub slug: String,
    /// Byte offset where the heading starts.
    pub start: usize,
}

/// mdBook's heading-id rule (mdbook-html `id_from_content`).
pub fn slugify(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c)
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

pub fn headings(text: &str) -> Vec<Heading> {
    let mut out = Vec::new();
    let mut used = HashSet::new();
    let mut current: Option<(usize, usize, Option<String>, String)> = None;
    for (event, range) in new_cmark_parser(text, &MarkdownOptions::default()).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, id, .. }) => {
                current = Some((
                    heading_level(level),
                    range.start,
                    id.map(|i| i.to_string()),
                    String::new(),
                ));
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, _, _, title)) = current.as_mut() {
                    title.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, start, id, title)) = current.take() {
                    let base = id.unwrap_or_else(|| slugify(&title));
                    let mut slug = base.clone();
                    let mut n = 1;
                    while !used.insert(slug.clone()) {
                        slug = format!("{base}-{n}");
                        n += 1;
                    }
                    out.push(Heading {
                        level,
                        title,
                        slug,
                        start,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

fn heading_level(level: HeadingLevel) -> usize {
    level as usize
}

/// What a topic query found.
#[derive(Debug, Clone)]
pub enum Found {
    Chapter(&'static EmbeddedChapter),
    Section {
        chapter: &'static EmbeddedChapter,
        heading: Heading,
        /// Byte range of the section in the chapter text.
        range: std::ops::Range<usize>,
    },
}

impl Found {
    pub fn markdown(&self) -> &'static str {
        match self {
            Found::Chapter(c) => c.text,
            Found::Section { chapter, range, .. } => &chapter.text[range.clone()],
        }
    }
}

fn section(chapter: &'static EmbeddedChapter, all: &[Heading], i: usize) -> Found {
    let h = &all[i];
    let end = all[i + 1..]
        .iter()
        .find(|n| n.level <= h.level)
        .map(|n| n.start)
        .unwrap_or(chapter.text.len());
    Found::Section {
        chapter,
        heading: h.clone(),
        range: h.start..end,
    }
}

/// The lowercase alphanumeric words of a title or query (`check: pending_age` → check, pending, age).
fn words_of(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every query word starts a word of the title (`config` → "Configuration", `stop` → "Stopping").
fn title_matches(query: &[String], title: &[String]) -> bool {
    !query.is_empty()
        && query
            .iter()
            .all(|q| title.iter().any(|t| t.starts_with(q.as_str())))
}

/// Find a chapter or section. In order: an exact chapter slug; an exact heading slug
/// (`force-stop`, also written `#force-stop` or `operator-guide#force-stop`, as footers and
/// errors print them); a chapter whose title has all the words (`config` → Configuration); then
/// the section whose heading has all the words, preferring one whose heading starts with the
/// first word (`start` → "Starting the orchestrator", not "Quick start"), then the higher
/// level, the shorter heading, and book order. `Err` carries the closest topics.
pub fn find(query: &str) -> Result<Found, Vec<String>> {
    let q = query.trim().to_lowercase();
    let (chapter_part, section_part) = match q.split_once('#') {
        Some((c, s)) => {
            let c = c.trim().trim_end_matches(".md");
            ((!c.is_empty()).then_some(c), s.trim().to_string())
        }
        None => (None, q.trim_end_matches(".md").to_string()),
    };
    if let Some(cp) = chapter_part
        && !CHAPTERS.iter().any(|c| c.slug == cp)
    {
        return Err(closest(&q));
    }
    let chapters: Vec<&'static EmbeddedChapter> = CHAPTERS
        .iter()
        .filter(|c| chapter_part.is_none_or(|p| p == c.slug))
        .collect();
    if section_part.is_empty() {
        return match chapters.first() {
            Some(c) if chapter_part.is_some() => Ok(Found::Chapter(c)),
            _ => Err(closest(&q)),
        };
    }
    // The slug as typed (`check-pending_age`), and as a heading would make it from words.
    let exact = [
        section_part.clone(),
        slugify(&section_part),
        slugify(&section_part.replace(['-', '_'], " ")),
    ];
    if chapter_part.is_none()
        && let Some(c) = CHAPTERS
            .iter()
            .find(|c| exact.contains(&c.slug.to_string()))
    {
        return Ok(Found::Chapter(c));
    }
    let all: Vec<(&'static EmbeddedChapter, Vec<Heading>)> =
        chapters.iter().map(|c| (*c, headings(c.text))).collect();
    for form in &exact {
        for (c, hs) in &all {
            if let Some(i) = hs.iter().position(|h| &h.slug == form) {
                // A chapter's own title slug (`telemetry-and-retention`) is the whole chapter,
                // found as its title's section so that the slug shown is the one asked for.
                return Ok(section(c, hs, i));
            }
        }
    }
    let words = words_of(&section_part);
    if chapter_part.is_none()
        && let Some(c) = CHAPTERS
            .iter()
            .filter(|c| title_matches(&words, &words_of(c.title)))
            .min_by_key(|c| words_of(c.title).len())
    {
        return Ok(Found::Chapter(c));
    }
    // (does not start with the first word, level, heading words, book order): lowest wins.
    type Rank = (bool, usize, usize, usize);
    let mut best: Option<(Rank, &'static EmbeddedChapter, usize)> = None;
    let mut order = 0;
    for (c, hs) in &all {
        for (i, h) in hs.iter().enumerate() {
            order += 1;
            let title = words_of(&h.title);
            if !title_matches(&words, &title) {
                continue;
            }
            let leads = title
                .first()
                .is_some_and(|t| t.starts_with(words[0].as_str()));
            let key = (!leads, h.level, title.len(), order);
            if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
                best = Some((key, c, i));
            }
        }
    }
    if let Some((_, c, i)) = best {
        let hs = headings(c.text);
        return Ok(if i == 0 && hs[0].level == 1 {
            Found::Chapter(c)
        } else {
            section(c, &hs, i)
        });
    }
    Err(closest(&q))
}

/// How alike a query and a topic are: the whole slug, or word by word (`bakup` and
/// `restoring-a-backup`), by Jaro-Winkler similarity.
fn similarity(query: &str, topic: &str) -> f64 {
    let whole = strsim::jaro_winkler(&slugify(&query.replace(['-', '_', '#'], " ")), topic);
    let q = words_of(query);
    let t: Vec<String> = words_of(topic)
        .into_iter()
        .filter(|w| w.len() > 2)
        .collect();
    if q.is_empty() || t.is_empty() {
        return whole;
    }
    let best: Vec<f64> = q
        .iter()
        .map(|qw| {
            t.iter()
                .map(|tw| strsim::jaro_winkler(qw, tw))
                .fold(0.0, f64::max)
        })
        .collect();
    let per_word = best.iter().sum::<f64>() / q.len() as f64;
    // One misspelt word that clearly names a topic's word is worth suggesting on its own
    // (`quarantne-retry` → the quarantine sections), a little below a full match.
    let one_word = best.iter().copied().fold(0.0, f64::max) * 0.9;
    whole.max(per_word).max(one_word)
}

/// Topics (chapter slugs and section slugs) like `word`, best first; none when nothing is close
/// (an unrelated suggestion is worse than none).
pub fn closest(word: &str) -> Vec<String> {
    let mut scored: Vec<(f64, String)> = all_topics()
        .into_iter()
        .map(|t| (similarity(word, &t), t))
        .filter(|(s, _)| *s >= 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out: Vec<String> = Vec::new();
    for (_, t) in scored {
        if !out.contains(&t) {
            out.push(t);
        }
        if out.len() == 3 {
            break;
        }
    }
    out
}

/// A section that mentions every word of a search.
#[derive(Debug, Clone)]
pub struct Hit {
    /// What to type to show it: the heading's slug, or `chapter#slug` when the slug alone
    /// would open something else.
    pub topic: String,
    pub chapter_title: &'static str,
    /// The shown line with the most of the words (plain text, trimmed).
    pub line: String,
}

/// Sections (up to the next heading of any level) whose heading or shown text holds every word,
/// case-insensitively; headings that hold them first, then by how often they occur. Hidden
/// steps and directives are not searched: the text is what the reader would see.
pub fn search(words: &[String]) -> Vec<Hit> {
    let words: Vec<String> = words
        .iter()
        .flat_map(|w| w.split_whitespace())
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        return Vec::new();
    }
    // Which chapter a bare heading slug opens: `find`'s rule for an exact slug (a chapter's own
    // slug first, then the first chapter in book order with that heading), computed once.
    let mut opens: std::collections::HashMap<String, &'static str> =
        CHAPTERS.iter().map(|c| (c.slug.to_string(), "")).collect();
    for c in CHAPTERS {
        for h in headings(c.text) {
            opens.entry(h.slug).or_insert(c.slug);
        }
    }
    let mut scored: Vec<(usize, usize, Hit)> = Vec::new();
    let mut order = 0;
    for c in CHAPTERS {
        let hs = headings(c.text);
        for (i, h) in hs.iter().enumerate() {
            order += 1;
            let end = hs.get(i + 1).map(|n| n.start).unwrap_or(c.text.len());
            let shown = render::render(&c.text[h.start..end], render::MAX_WIDTH);
            let shown = anstream::adapter::strip_str(&shown).to_string();
            let lower = shown.to_lowercase();
            let title = h.title.to_lowercase();
            if !words.iter().all(|w| lower.contains(w.as_str())) {
                continue;
            }
            let in_title = words.iter().filter(|w| title.contains(w.as_str())).count();
            let count: usize = words
                .iter()
                .map(|w| lower.matches(w.as_str()).count())
                .sum();
            let line = first_line_with_most(&shown, &words).unwrap_or_default();
            let topic = if i == 0 && h.level == 1 {
                c.slug.to_string()
            } else {
                if opens.get(&h.slug) == Some(&c.slug) {
                    h.slug.clone()
                } else {
                    format!("{}#{}", c.slug, h.slug)
                }
            };
            scored.push((
                in_title * 1000 + count,
                order,
                Hit {
                    topic,
                    chapter_title: c.title,
                    line,
                },
            ));
        }
    }
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, _, h)| h).collect()
}

/// The first body line (after the heading) holding the most of the words.
fn first_line_with_most(shown: &str, words: &[String]) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for line in shown.lines().skip(1) {
        let l = line.trim();
        if l.is_empty() || l.chars().all(|ch| "=-─═".contains(ch)) {
            continue;
        }
        let lower = l.to_lowercase();
        let n = words.iter().filter(|w| lower.contains(w.as_str())).count();
        if best.is_none_or(|(b, _)| n > b) {
            best = Some((n, l));
        }
    }
    best.map(|(_, l)| l.to_string())
}

/// Every chapter slug and every heading slug, in book order.
pub fn all_topics() -> Vec<String> {
    let mut out = Vec::new();
    for c in CHAPTERS {
        out.push(c.slug.to_string());
        for h in headings(c.text).into_iter().skip(1) {
            out.push(h.slug);
        }
    }
    out
}

/// The first sentence of a chapter's first paragraph, for the topic list.
pub fn summary(chapter: &EmbeddedChapter) -> String {
    let mut in_para = false;
    let mut text = String::new();
    for event in new_cmark_parser(chapter.text, &MarkdownOptions::default()) {
        match event {
            Event::Start(Tag::Paragraph) => in_para = true,
            Event::Text(t) | Event::Code(t) if in_para => text.push_str(&t),
            Event::SoftBreak if in_para => text.push(' '),
            Event::End(TagEnd::Paragraph) if in_para => break,
            _ => {}
        }
    }
    match text.find(". ") {
        Some(i) => text[..=i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(query: &str) -> String {
        match find(query) {
            Ok(Found::Chapter(c)) => format!("chapter {}", c.slug),
            Ok(Found::Section {
                chapter, heading, ..
            }) => format!("{}#{}", chapter.slug, heading.slug),
            Err(closest) => format!("none; closest {closest:?}"),
        }
    }

    #[test]
    fn chapters_come_before_sections() {
        assert_eq!(shown("config"), "chapter configuration");
        assert_eq!(shown("configuration"), "chapter configuration");
        assert_eq!(shown("jobs"), "chapter managing-jobs");
        assert_eq!(shown("start"), "operator-guide#starting-the-orchestrator");
        assert_eq!(shown("stop"), "operator-guide#stopping-the-orchestrator");
        assert_eq!(shown("stop force"), "operator-guide#force-stop");
        assert_eq!(shown("backup"), "disaster-recovery#backups");
        assert_eq!(shown("check-pending_age"), "monitoring#check-pending_age");
    }

    /// Every form a footer, an error or a search result prints is accepted as printed.
    #[test]
    fn every_printed_form_of_every_section_is_accepted() {
        for c in CHAPTERS {
            assert_eq!(shown(c.slug), format!("chapter {}", c.slug));
            assert_eq!(
                shown(&format!("{}.md", c.slug)),
                format!("chapter {}", c.slug)
            );
            assert_eq!(
                shown(&format!("{}#", c.slug)),
                format!("chapter {}", c.slug)
            );
            for h in headings(c.text).into_iter().skip(1) {
                let full = format!("{}#{}", c.slug, h.slug);
                assert_eq!(shown(&full), full);
                assert_eq!(shown(&format!("{}.md#{}", c.slug, h.slug)), full);
                // `#slug` and `slug` open a section with that slug (the first, if two chapters
                // share one; search results print `chapter#slug` for the others).
                for form in [format!("#{}", h.slug), h.slug.clone()] {
                    let got = shown(&form);
                    assert!(
                        got.ends_with(&format!("#{}", h.slug)),
                        "{form} opened {got}"
                    );
                }
            }
        }
    }

    #[test]
    fn search_results_open_the_section_they_name() {
        let hits = search(&["stop".into(), "force".into()]);
        assert!(!hits.is_empty());
        assert_eq!(hits[0].topic, "force-stop");
        for hit in search(&["quarantine".into()]) {
            let opened = shown(&hit.topic);
            let slug = hit.topic.rsplit('#').next().unwrap_or_default();
            assert!(
                opened.ends_with(&format!("#{slug}")) || opened == format!("chapter {slug}"),
                "{} opened {opened}",
                hit.topic
            );
        }
        assert!(search(&["zzqqxx".into()]).is_empty());
        // Hidden steps are not searched: the text is what a reader sees.
        assert!(search(&["Stands in for the operator".into()]).is_empty());
    }

    #[test]
    fn suggestions_are_alike_or_none() {
        let near = closest("bakup");
        assert!(!near.is_empty());
        assert!(near.iter().all(|t| t.contains("backup")), "{near:?}");
        let near = closest("qurantine");
        assert!(near.iter().any(|t| t.contains("quarantine")), "{near:?}");
        assert_eq!(closest("xyzzy"), Vec::<String>::new());
    }
}

#[cfg(test)]
mod link_tests {
    use super::*;

    /// Every `(futurnal help runbook TOPIC)` the renderer prints for a link opens the heading
    /// the link points to: in the chapter it names, or in its own chapter for `#anchor`.
    #[test]
    fn every_link_hint_of_the_book_opens_its_target() {
        let mut checked = 0;
        let mut wrong = Vec::new();
        for c in CHAPTERS {
            let mut targets = Vec::new();
            for event in new_cmark_parser(c.text, &MarkdownOptions::default()) {
                if let Event::Start(Tag::Link { dest_url, .. }) = event
                    && !dest_url.contains("://")
                    && !dest_url.starts_with("mailto:")
                {
                    targets.push(dest_url.to_string());
                }
            }
            for target in &targets {
                let printed = render::link_hint(target).unwrap_or_default();
                let topic = printed.trim_start_matches("futurnal help runbook ");
                let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
                let file = file
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches(".md");
                let chapter = if file.is_empty() { c.slug } else { file };
                let want = if anchor.is_empty() {
                    format!("chapter {chapter}")
                } else {
                    format!("{chapter}#{anchor}")
                };
                let got = match find(topic) {
                    Ok(Found::Chapter(c)) => format!("chapter {}", c.slug),
                    Ok(Found::Section {
                        chapter, heading, ..
                    }) if heading.level == 1 => {
                        format!("chapter {}", chapter.slug)
                    }
                    Ok(Found::Section {
                        chapter, heading, ..
                    }) => {
                        format!("{}#{}", chapter.slug, heading.slug)
                    }
                    Err(_) => "nothing".into(),
                };
                checked += 1;
                if got != want {
                    wrong.push(format!(
                        "{}: link {target} prints {topic}, which opens {got}",
                        c.slug
                    ));
                }
            }
        }
        assert!(checked > 10, "only {checked} links: is the walk broken?");
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
