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

/// Find a chapter or section by slug (`configuration`), `chapter#section`, a heading slug, or a
/// few words of a heading. `Err` carries the closest topics.
pub fn find(query: &str) -> Result<Found, Vec<String>> {
    let q = query.trim().trim_end_matches(".md").to_lowercase();
    let (chapter_part, section_part) = match q.split_once('#') {
        Some((c, s)) => (Some(c.trim_end_matches(".md")), s.to_string()),
        None => (None, q.clone()),
    };
    let joined = slugify(&section_part.replace(['-', '_'], " "));
    if chapter_part.is_none()
        && let Some(c) = CHAPTERS.iter().find(|c| c.slug == joined)
    {
        return Ok(Found::Chapter(c));
    }
    let chapters: Vec<&'static EmbeddedChapter> = CHAPTERS
        .iter()
        .filter(|c| chapter_part.is_none_or(|p| p == c.slug))
        .collect();
    for c in &chapters {
        let hs = headings(c.text);
        if let Some(i) = hs.iter().position(|h| h.slug == joined) {
            return Ok(section(c, &hs, i));
        }
    }
    let words: Vec<&str> = section_part
        .split(|ch: char| ch.is_whitespace() || ch == '-' || ch == '_')
        .filter(|w| !w.is_empty())
        .collect();
    if !words.is_empty() {
        for c in &chapters {
            let hs = headings(c.text);
            if let Some(i) = hs.iter().position(|h| {
                let t = h.title.to_lowercase();
                words.iter().all(|w| t.contains(w))
            }) {
                return Ok(section(c, &hs, i));
            }
        }
    }
    Err(closest(&joined))
}

/// Topic names (chapter slugs and section slugs) closest to `word`, best first.
pub fn closest(word: &str) -> Vec<String> {
    let mut scored: Vec<(f64, String)> = all_topics()
        .into_iter()
        .map(|t| (strsim::jaro_winkler(word, &t), t))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().take(3).map(|(_, t)| t).collect()
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
