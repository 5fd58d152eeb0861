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
