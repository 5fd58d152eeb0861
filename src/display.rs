//! Operator-facing formatting: timestamps, durations, sizes.
//!
//! Invariant: one format per kind of value across every command, so the book's placeholders
//! (`[TIMESTAMP]`, `[DURATION]`, `[SIZE]`) match everything futurnal prints.

/// `2026-11-28T09:30:00Z` (UTC, whole seconds) from epoch milliseconds.
pub fn timestamp(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => format!("@{ms}ms"),
    }
}

/// `350ms`, `4s`, `2m 5s`, `1h 2m`, `3d 4h`.
pub fn duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let (d, h, m, sec) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// `0 B`, `24.0 KiB`, `3.1 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(duration_ms(350), "350ms");
        assert_eq!(duration_ms(4_000), "4s");
        assert_eq!(duration_ms(125_000), "2m 5s");
        assert_eq!(duration_ms(3_720_000), "1h 2m");
        assert_eq!(duration_ms(273_600_000), "3d 4h");
        assert_eq!(size(0), "0 B");
        assert_eq!(size(24 * 1024), "24.0 KiB");
        assert_eq!(size(3 * 1024 * 1024 + 100_000), "3.1 MiB");
    }
}

/// `1 item`, `2 items`.
pub fn plural(n: impl Into<i64>, word: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `5s ago`, `in 3m 10s`, relative to `now` (both epoch milliseconds).
pub fn relative(ms: i64, now: i64) -> String {
    if ms <= now {
        format!("{} ago", duration_ms(now - ms))
    } else {
        format!("in {}", duration_ms(ms - now))
    }
}

/// Plain left-aligned columns separated by two spaces, header first; the last column is not
/// padded, so lines carry no trailing spaces.
pub fn columns(headers: &[&str], rows: &[Vec<String>]) -> String {
    let n = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(n) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(cell);
                l.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Shorten text to `max` characters, marking the cut with `…`.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Parse `--since`: a duration back from now (`30m`, `24h`, `7d`, `1h30m`) or a date/time.
pub fn parse_since(text: &str, now: i64) -> Result<i64, String> {
    let t = text.trim();
    // Operators type these: a huge number is an error to report, never an overflow.
    let too_far = || {
        format!(
            "`{t}` is too far back: use a duration such as 30m, 24h or 7d, or a date such as \
             2026-11-28"
        )
    };
    if let Some(days) = t.strip_suffix('d').and_then(|d| d.parse::<i64>().ok()) {
        return days
            .checked_mul(86_400_000)
            .and_then(|ms| now.checked_sub(ms))
            .ok_or_else(too_far);
    }
    if let Ok(d) = t.parse::<jiff::SignedDuration>() {
        return i64::try_from(d.as_millis())
            .ok()
            .and_then(|ms| now.checked_sub(ms))
            .ok_or_else(too_far);
    }
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    if let Ok(date) = t.parse::<jiff::civil::Date>()
        && let Ok(z) = date.to_zoned_datetime(jiff::tz::TimeZone::system())
    {
        return Ok(z.timestamp().as_millisecond());
    }
    Err(format!(
        "`{t}` is not a time: use a duration such as 30m, 24h or 7d, or a date such as 2026-11-28"
    ))
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn columns_and_since() {
        let t = columns(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
        assert_eq!(
            parse_since("24h", 100_000_000).unwrap(),
            100_000_000 - 86_400_000
        );
        assert_eq!(
            parse_since("2d", 200_000_000).unwrap(),
            200_000_000 - 172_800_000
        );
        assert!(parse_since("yesterday-ish", 0).is_err());
        // Values that overflowed the arithmetic once.
        for huge in [
            "99999999999999999d",
            "9223372036854775807d",
            "2562047788015215h",
        ] {
            let err = parse_since(huge, 1_800_000_000_000).unwrap_err();
            assert!(err.contains("too far back"), "{huge}: {err}");
        }
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(relative(1_000, 6_000), "5s ago");
    }
}
