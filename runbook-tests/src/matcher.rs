//! Expected-output matching: exact lines, `[..]` and `...` elisions, typed placeholders.
//!
//! Owns: turning an expected-output block into line patterns, deciding whether real output
//! matches, and aligning the two for a readable diff and for bless.
//! Invariants: matching is exact apart from the documented elisions; trailing whitespace and
//! trailing blank lines are ignored on both sides; a placeholder checks its value's shape; bless
//! rewrites only lines that no longer match, and keeps in them each placeholder word that still
//! fits (the blessed text always matches the output it was blessed from).

use regex::Regex;

/// Placeholders and the shapes they accept. The book's "Writing runbooks" chapter lists them.
pub const PLACEHOLDERS: &[(&str, &str, &str)] = &[
    ("[..]", ".*?", "anything within one line, including nothing"),
    ("[PID]", r"\d+", "a process id"),
    (
        "[TIMESTAMP]",
        r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?",
        "a date and time such as 2026-11-28T09:30:00Z",
    ),
    (
        "[DURATION]",
        r"\d+(?:\.\d+)?(?:ns|µs|us|ms|s|m|h|d)(?: \d+(?:\.\d+)?(?:ns|µs|us|ms|s|m|h|d))*",
        "a duration such as 350ms, 4s or 1h 2m",
    ),
    (
        "[UUID]",
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "a UUID",
    ),
    (
        "[NUMBER]",
        r"-?\d+(?:\.\d+)?",
        "an integer or decimal number",
    ),
    ("[HEX]", r"[0-9a-f]+", "lowercase hexadecimal digits"),
    (
        "[VERSION]",
        r"\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?",
        "a version such as 0.1.0",
    ),
    (
        "[SIZE]",
        r"\d+(?:\.\d+)? ?(?:B|KiB|MiB|GiB|TiB|K|M|G|T)",
        "a size such as 24.0 KiB",
    ),
    ("[PATH]", r"(?:~|/)\S*", "an absolute or ~ path"),
];

/// Literal stand-ins the harness writes into real output before matching (see `Normalizer`).
pub const STAND_INS: &[(&str, &str)] = &[
    ("[HOME]", "the temporary home directory of the chapter"),
    ("[TMP]", "the chapter's TMPDIR"),
    ("[FIXTURES]", "the fixtures directory given to the harness"),
];

#[derive(Debug)]
enum LinePattern {
    /// `...` on its own line: any number of lines, including none.
    AnyLines,
    Literal(String),
    Regex(Regex),
}

impl LinePattern {
    fn parse(line: &str) -> LinePattern {
        let line = line.trim_end();
        if line.trim() == "..." {
            return LinePattern::AnyLines;
        }
        if !PLACEHOLDERS.iter().any(|(p, _, _)| line.contains(p)) {
            return LinePattern::Literal(line.to_string());
        }
        let mut re = String::from("^");
        let mut rest = line;
        while !rest.is_empty() {
            let next = PLACEHOLDERS
                .iter()
                .filter_map(|(p, shape, _)| rest.find(p).map(|i| (i, *p, *shape)))
                .min_by_key(|(i, _, _)| *i);
            match next {
                Some((i, p, shape)) => {
                    re.push_str(&regex::escape(&rest[..i]));
                    re.push_str("(?:");
                    re.push_str(shape);
                    re.push(')');
                    rest = &rest[i + p.len()..];
                }
                None => {
                    re.push_str(&regex::escape(rest));
                    rest = "";
                }
            }
        }
        re.push('$');
        LinePattern::Regex(Regex::new(&re).expect("placeholder regexes are valid"))
    }

    fn matches(&self, actual: &str) -> bool {
        match self {
            LinePattern::AnyLines => true,
            LinePattern::Literal(l) => l == actual,
            LinePattern::Regex(r) => r.is_match(actual),
        }
    }
}

fn lines_of(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// One line of a diff between expected and actual output.
#[derive(Debug, Clone, PartialEq)]
pub enum DiffLine {
    /// An expected line that matched an actual line: (pattern, actual).
    Same(String, String),
    /// An expected line with no counterpart.
    Missing(String),
    /// An actual line with no counterpart.
    Extra(String),
    /// `...` absorbing these actual lines.
    Elided(Vec<String>),
}

/// Compare expected output with actual output.
#[derive(Debug)]
pub struct Comparison {
    pub matched: bool,
    pub diff: Vec<DiffLine>,
}

pub fn compare(expected: &str, actual: &str) -> Comparison {
    let exp_lines = lines_of(expected);
    let act = lines_of(actual);
    let pats: Vec<LinePattern> = exp_lines.iter().map(|l| LinePattern::parse(l)).collect();
    let (n, m) = (pats.len(), act.len());

    // best[i][j]: the most expected lines matched aligning pats[i..] with act[j..], or None when a
    // full match is impossible; full[i][j] says whether a complete match exists.
    let mut full = vec![vec![false; m + 1]; n + 1];
    full[n][m] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            full[i][j] = match &pats[i] {
                LinePattern::AnyLines => full[i + 1][j] || (j < m && full[i][j + 1]),
                p => j < m && p.matches(&act[j]) && full[i + 1][j + 1],
            };
        }
    }
    let matched = full[0][0];

    // LCS-style alignment for the diff (and bless), with `...` absorbing runs greedily when a full
    // match exists from there.
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let here = match &pats[i] {
                LinePattern::AnyLines => 0,
                p if p.matches(&act[j]) => 1 + lcs[i + 1][j + 1],
                _ => 0,
            };
            lcs[i][j] = here.max(lcs[i + 1][j]).max(lcs[i][j + 1]);
        }
    }
    let mut diff = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && matches!(pats[i], LinePattern::AnyLines) {
            // Absorb actual lines until the rest can be aligned best.
            let mut absorbed = Vec::new();
            while j < m {
                let stop = if full[i][j] {
                    full[i + 1][j]
                } else {
                    lcs[i + 1][j] >= lcs[i][j + 1]
                };
                if stop {
                    break;
                }
                absorbed.push(act[j].clone());
                j += 1;
            }
            diff.push(DiffLine::Elided(absorbed));
            i += 1;
            continue;
        }
        if i < n && j < m && pats[i].matches(&act[j]) && lcs[i][j] == 1 + lcs[i + 1][j + 1] {
            diff.push(DiffLine::Same(exp_lines[i].clone(), act[j].clone()));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Expected lines first, as in a unified diff.
            diff.push(DiffLine::Missing(exp_lines[i].clone()));
            i += 1;
        } else {
            diff.push(DiffLine::Extra(act[j].clone()));
            j += 1;
        }
    }
    Comparison { matched, diff }
}

impl Comparison {
    /// New expected text: keeps every pattern line (placeholders, `...`) that still matched, and
    /// takes real output for the rest.
    ///
    /// A line that really changed is rewritten from the real output, but the placeholders of the
    /// old line it replaces are kept wherever they still fit their word (`job [NUMBER] succeeded
    /// in [DURATION]: 7 new` when only the count changed), so a bless never writes run-specific
    /// values over placeholders.
    pub fn blessed(&self) -> String {
        let mut out = String::new();
        let mut k = 0;
        while k < self.diff.len() {
            match &self.diff[k] {
                DiffLine::Same(pattern, _) => {
                    out.push_str(pattern);
                    out.push('\n');
                    k += 1;
                }
                DiffLine::Elided(lines) => {
                    if !lines.is_empty() {
                        out.push_str("...\n");
                    }
                    k += 1;
                }
                DiffLine::Missing(_) | DiffLine::Extra(_) => {
                    // One hunk: the old lines it removes and the real lines that replace them.
                    let mut old = Vec::new();
                    let mut new = Vec::new();
                    while let Some(d) = self.diff.get(k) {
                        match d {
                            DiffLine::Missing(p) => old.push(p.as_str()),
                            DiffLine::Extra(a) => new.push(a.as_str()),
                            _ => break,
                        }
                        k += 1;
                    }
                    for line in bless_hunk(&old, &new) {
                        out.push_str(&line);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }

    /// A unified-style rendering: `-` expected, `+` actual, ` ` both.
    pub fn render(&self, indent: &str) -> String {
        let mut out = String::new();
        for d in &self.diff {
            match d {
                DiffLine::Same(p, _) => out.push_str(&format!("{indent}  {p}\n")),
                DiffLine::Missing(p) => out.push_str(&format!("{indent}- {p}\n")),
                DiffLine::Extra(a) => out.push_str(&format!("{indent}+ {a}\n")),
                DiffLine::Elided(lines) => {
                    out.push_str(&format!("{indent}  ...   ({} lines)\n", lines.len()))
                }
            }
        }
        out
    }
}

/// The real lines of a changed hunk, each keeping the placeholders of the old line it replaces.
/// Old lines are paired in order, each new line with the first later old line that lends it a
/// placeholder.
fn bless_hunk(old: &[&str], new: &[&str]) -> Vec<String> {
    let mut next_old = 0;
    new.iter()
        .map(|actual| {
            for (i, pattern) in old.iter().enumerate().skip(next_old) {
                if let Some(merged) = keep_placeholders(pattern, actual) {
                    next_old = i + 1;
                    return merged;
                }
            }
            actual.to_string()
        })
        .collect()
}

/// `actual` with each of its words that a placeholder word of `pattern` still matches written as
/// that placeholder word; `None` when no placeholder is kept or the result would not match
/// `actual` (an elision that spanned words, for example).
fn keep_placeholders(pattern: &str, actual: &str) -> Option<String> {
    let has_placeholder = |w: &str| PLACEHOLDERS.iter().any(|(p, _, _)| w.contains(p));
    if !has_placeholder(pattern) {
        return None;
    }
    let p_words: Vec<&str> = pattern.split_whitespace().collect();
    let a_words = word_ranges(actual);
    let word_matches = |p: &str, a: &str| {
        if has_placeholder(p) {
            LinePattern::parse(p).matches(a)
        } else {
            p == a
        }
    };
    // Longest common subsequence of words, a word matching when its pattern word accepts it.
    let (n, m) = (p_words.len(), a_words.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if word_matches(p_words[i], &actual[a_words[j].clone()]) {
                1 + lcs[i + 1][j + 1]
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut replace: Vec<Option<&str>> = vec![None; m];
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if word_matches(p_words[i], &actual[a_words[j].clone()])
            && lcs[i][j] == 1 + lcs[i + 1][j + 1]
        {
            if has_placeholder(p_words[i]) {
                replace[j] = Some(p_words[i]);
            }
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    if replace.iter().all(Option::is_none) {
        return None;
    }
    let mut merged = String::new();
    let mut last = 0;
    for (range, with) in a_words.iter().zip(&replace) {
        merged.push_str(&actual[last..range.start]);
        merged.push_str(with.unwrap_or(&actual[range.clone()]));
        last = range.end;
    }
    merged.push_str(&actual[last..]);
    LinePattern::parse(&merged)
        .matches(actual)
        .then_some(merged)
}

/// Byte ranges of the whitespace-separated words of `text`, taken from its own char boundaries.
fn word_ranges(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..text.len());
    }
    out
}

/// Replaces run-specific literal paths in real output with their stand-ins.
#[derive(Debug, Clone, Default)]
pub struct Normalizer {
    replacements: Vec<(String, &'static str)>,
}

impl Normalizer {
    pub fn new(pairs: Vec<(String, &'static str)>) -> Normalizer {
        let mut replacements: Vec<_> = pairs.into_iter().filter(|(p, _)| !p.is_empty()).collect();
        // Longest first, so /tmp/x/home/sub wins over /tmp/x/home.
        replacements.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Normalizer { replacements }
    }

    pub fn apply(&self, text: &str) -> String {
        let mut out = text.replace("\r\n", "\n");
        for (from, to) in &self.replacements {
            out = out.replace(from.as_str(), to);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_trailing_whitespace() {
        assert!(compare("a\nb\n", "a  \nb\n\n").matched);
        assert!(!compare("a\nb\n", "a\nc\n").matched);
        assert!(!compare("a\n", "a\nb\n").matched);
    }

    #[test]
    fn inline_elision_and_placeholders() {
        assert!(compare("started (pid [PID])", "started (pid 4242)").matched);
        assert!(!compare("started (pid [PID])", "started (pid abc)").matched);
        assert!(
            compare(
                "at [TIMESTAMP] took [DURATION]",
                "at 2026-11-28T09:30:00Z took 1h 2m"
            )
            .matched
        );
        assert!(compare("x [..] z", "x anything here z").matched);
        assert!(compare("x [..] z", "x  z").matched);
        assert!(!compare("x [..] z", "x y").matched);
        assert!(compare("v[VERSION]", "v0.1.0").matched);
        assert!(compare("[UUID]", "0196f3c2-7a1b-7c3d-8e4f-0123456789ab").matched);
        // Regex metacharacters in literal text are literal.
        assert!(!compare("a.c (x)", "abc (x)").matched);
    }

    #[test]
    fn line_elision() {
        assert!(compare("first\n...\nlast\n", "first\nlast\n").matched);
        assert!(compare("first\n...\nlast\n", "first\n1\n2\nlast\n").matched);
        assert!(!compare("first\n...\nlast\n", "first\n1\n2\n").matched);
        assert!(compare("...\n", "anything\nat all\n").matched);
        assert!(compare("...\n[..]done\n", "a\nb\nall done\n").matched);
    }

    #[test]
    fn diff_marks_changes() {
        let c = compare("a\nb\nc\n", "a\nB\nc\n");
        assert!(!c.matched);
        assert_eq!(
            c.diff,
            vec![
                DiffLine::Same("a".into(), "a".into()),
                DiffLine::Missing("b".into()),
                DiffLine::Extra("B".into()),
                DiffLine::Same("c".into(), "c".into()),
            ]
        );
    }

    #[test]
    fn bless_keeps_matching_placeholders() {
        let c = compare("pid [PID]\nold line\n", "pid 77\nnew line\n");
        assert!(!c.matched);
        assert_eq!(c.blessed(), "pid [PID]\nnew line\n");
        // Blessed output matches the same actual output.
        assert!(compare(&c.blessed(), "pid 77\nnew line\n").matched);
    }

    #[test]
    fn bless_keeps_elision_that_absorbed_lines() {
        let c = compare("head\n...\ntail\n", "head\nx\ny\nTAIL\n");
        assert!(!c.matched);
        let b = c.blessed();
        assert!(compare(&b, "head\nx\ny\nTAIL\n").matched, "{b}");
    }

    #[test]
    fn bless_keeps_placeholders_in_a_line_that_changed_elsewhere() {
        // The counts changed; the duration did not stop being a duration.
        let expected = "job [NUMBER] succeeded in [DURATION]: 6 new, 0 changed\nsame line\n";
        let actual = "job 1 succeeded in 85ms: 7 new, 0 changed\nsame line\n";
        let c = compare(expected, actual);
        assert!(!c.matched);
        let b = c.blessed();
        assert_eq!(
            b,
            "job [NUMBER] succeeded in [DURATION]: 7 new, 0 changed\nsame line\n"
        );
        // The next run, with another job number and duration, still matches.
        assert!(compare(&b, "job 2 succeeded in 1.2s: 7 new, 0 changed\nsame line\n").matched);
    }

    #[test]
    fn bless_pairs_a_changed_line_with_its_own_old_line() {
        // A line inserted before the changed one must not take the placeholders of another.
        let expected = "pid [PID] at [TIMESTAMP]\nwrote [NUMBER] rows to [PATH]\ntail\n";
        let actual = "pid 9 at 2026-11-29T10:00:00Z\nnew line\nwrote 4 rows into /tmp/x\ntail\n";
        let b = compare(expected, actual).blessed();
        assert_eq!(
            b,
            "pid [PID] at [TIMESTAMP]\nnew line\nwrote [NUMBER] rows into [PATH]\ntail\n"
        );
        assert!(compare(&b, actual).matched);
    }

    #[test]
    fn bless_takes_the_real_line_when_no_placeholder_still_fits() {
        let c = compare("took [DURATION] for [NUMBER]\n", "took forever for many\n");
        assert_eq!(c.blessed(), "took forever for many\n");
        // An elision that spans words is not kept half way: the result must match the real line.
        let c = compare("x [..] z y\n", "x anything here z w\n");
        let b = c.blessed();
        assert!(compare(&b, "x anything here z w\n").matched, "{b}");
    }

    #[test]
    fn normalizer_longest_first() {
        let n = Normalizer::new(vec![
            ("/t/root".into(), "[ROOT]"),
            ("/t/root/home".into(), "[HOME]"),
        ]);
        assert_eq!(n.apply("/t/root/home/x /t/root/y"), "[HOME]/x [ROOT]/y");
    }
}
