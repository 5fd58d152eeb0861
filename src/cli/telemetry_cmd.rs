//! `futurnal orchestrator telemetry ...` (also `futurnal telemetry ...`): throughput, failures,
//! clean (the rows and queries are `telemetry`'s), and export (the text is `metrics`').
//!
//! Invariants: MB is 10^6 bytes and MB/s likewise; reading commands change nothing and work with
//! or without a daemon (no queue.db yet reads as nothing recorded); `clean` deletes in batches,
//! each its own transaction, and is audited (`telemetry.clean`, with its counts) unless it is a
//! dry run.

use std::io::IsTerminal;

use clap::Subcommand;
use serde_json::json;

use super::{TableOrJson, print_json};
use crate::display;
use crate::error::{CommandError, ExitCode, OperatorError, Result};
use crate::home::Home;
use crate::queue::{QueueDb, now_ms};
use crate::runbook::topics;
use crate::security::audit;
use crate::telemetry;

/// Slices of the window in the throughput chart.
const CHART_BUCKETS: usize = 12;
/// Width of the longest bar in the chart.
const CHART_WIDTH: usize = 40;
/// Jobs `clean` deletes per transaction.
const CLEAN_BATCH: i64 = 500;

#[derive(Debug, Subcommand)]
pub enum TelemetryCommand {
    /// How fast sources were read: MB/s (10^6 bytes) over the window, per source, with a chart
    Throughput {
        /// The window: a duration back from now (30m, 1h, 7d) or a date
        #[arg(long, default_value = "1h")]
        since: String,
        /// Only this source
        #[arg(long)]
        source: Option<String>,
        /// Draw the chart even when the output is not a terminal
        #[arg(long)]
        chart: bool,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
    /// Attempts that ended with an error: counts by class and source, latest example of each
    Failures {
        /// The window: a duration back from now (30m, 24h, 7d) or a date
        #[arg(long, default_value = "24h")]
        since: String,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
    /// The daemon's periodic samples: queue depth, oldest waiting and running job, workers, WAL,
    /// free disk
    Samples {
        /// The window: a duration back from now (30m, 1h, 7d) or a date
        #[arg(long, default_value = "1h")]
        since: String,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
    /// Delete finished jobs (succeeded, cancelled) and telemetry older than N days
    Clean {
        /// Keep this many days
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36500))]
        older_than_days: u32,
        /// Count what would be deleted; delete nothing
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
    /// Print the metrics in Prometheus text format, for node_exporter's textfile collector
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// Prometheus text exposition format 0.0.4
    Prometheus,
}

fn since(text: &str, now: i64) -> Result<i64> {
    display::parse_since(text, now)
        .map_err(|e| OperatorError::new(ExitCode::Usage, e, "nothing was shown", topics::TELEMETRY))
}

fn sql(home: &Home, e: rusqlite::Error) -> OperatorError {
    crate::error::queue_error(home, e)
}

pub fn run(
    home: &Home,
    overrides: &crate::config::Overrides,
    command: TelemetryCommand,
) -> Result<(), CommandError> {
    if let TelemetryCommand::Export {
        format: ExportFormat::Prometheus,
    } = command
    {
        print!("{}", crate::metrics::render_prometheus(home));
        return Ok(());
    }
    // Read-only unless the command deletes rows.
    let db = match command {
        TelemetryCommand::Clean { .. } => QueueDb::open_existing(&home.queue_db())?,
        _ => QueueDb::read_existing(&home.queue_db())?,
    };
    let now = now_ms();
    match command {
        TelemetryCommand::Export { .. } => Ok(()),
        TelemetryCommand::Throughput {
            since: window,
            source,
            chart,
            format,
        } => {
            let from = since(&window, now)?;
            let t = match &db {
                Some(db) => {
                    telemetry::throughput(db.conn(), from, now, source.as_deref(), CHART_BUCKETS)
                        .map_err(|e| sql(home, e))?
                }
                None => empty_throughput(from, now, source.as_deref()),
            };
            match format {
                TableOrJson::Json => print_json(&t),
                TableOrJson::Table => {
                    print!("{}", render_throughput(&t, &window));
                    if chart || std::io::stdout().is_terminal() {
                        print!("{}", render_chart(&t));
                    }
                }
            }
            Ok(())
        }
        TelemetryCommand::Failures {
            since: window,
            format,
        } => {
            let from = since(&window, now)?;
            let f = match &db {
                Some(db) => telemetry::failures(db.conn(), from, now).map_err(|e| sql(home, e))?,
                None => telemetry::Failures {
                    since: from,
                    until: now,
                    total: 0,
                    by_class: Vec::new(),
                    by_source: Vec::new(),
                    groups: Vec::new(),
                },
            };
            match format {
                TableOrJson::Json => print_json(&f),
                TableOrJson::Table => print!("{}", render_failures(&f, &window)),
            }
            Ok(())
        }
        TelemetryCommand::Samples {
            since: window,
            format,
        } => {
            let from = since(&window, now)?;
            let samples = match &db {
                Some(db) => telemetry::samples(db.conn(), from, now).map_err(|e| sql(home, e))?,
                None => Vec::new(),
            };
            match format {
                TableOrJson::Json => print_json(&samples),
                TableOrJson::Table => print!("{}", render_samples(&samples, from, &window)),
            }
            Ok(())
        }
        TelemetryCommand::Clean {
            older_than_days,
            dry_run,
            format,
        } => {
            let cutoff = telemetry::cutoff(now, older_than_days);
            let removed = match &db {
                Some(db) if dry_run => {
                    telemetry::count_prunable(db.conn(), cutoff).map_err(|e| sql(home, e))?
                }
                Some(db) => telemetry::prune_all(db.conn(), cutoff, CLEAN_BATCH)
                    .map_err(|e| sql(home, e))?,
                None => Default::default(),
            };
            if !dry_run {
                // Audit even when the configuration is broken: default is on.
                let audit_on = crate::daemon::load_config(home, overrides)
                    .map(|l| l.config.security.audit_logging)
                    .unwrap_or(true);
                audit(
                    home,
                    audit_on,
                    "telemetry.clean",
                    json!({
                        "older_than_days": older_than_days,
                        "cutoff": display::timestamp(cutoff),
                        "removed": removed,
                    }),
                );
            }
            match format {
                TableOrJson::Json => print_json(&json!({
                    "dry_run": dry_run,
                    "older_than_days": older_than_days,
                    "cutoff": cutoff,
                    "removed": removed,
                })),
                TableOrJson::Table => println!(
                    "{} {}, {}, {} and {} older than {} ({}){}",
                    if dry_run { "would remove" } else { "removed" },
                    display::plural(removed.jobs, "finished job"),
                    display::plural(removed.events, "job event"),
                    display::plural(removed.attempts, "attempt record"),
                    display::plural(removed.samples, "sample"),
                    display::plural(older_than_days, "day"),
                    display::timestamp(cutoff),
                    if dry_run { "; nothing was deleted" } else { "" }
                ),
            }
            Ok(())
        }
    }
}

fn empty_throughput(since: i64, until: i64, source: Option<&str>) -> telemetry::Throughput {
    telemetry::Throughput {
        since,
        until,
        source: source.map(str::to_string),
        totals: Default::default(),
        sources: Vec::new(),
        buckets: Vec::new(),
    }
}

fn rate(mbps: Option<f64>) -> String {
    mbps.map_or_else(|| "-".to_string(), telemetry::mbps_text)
}

fn render_throughput(t: &telemetry::Throughput, window: &str) -> String {
    let mut out = format!(
        "throughput since {} ({window}){}: {}\n",
        display::timestamp(t.since),
        t.source
            .as_deref()
            .map(|s| format!(", source {s}"))
            .unwrap_or_default(),
        match t.totals.throughput_mbps {
            Some(r) => telemetry::mbps_text(r),
            None => "nothing was read".to_string(),
        }
    );
    out.push_str(&format!(
        "read {} in {} reading by {} ({}): {}, {} (MB = 10^6 bytes)\n",
        telemetry::decimal_size(t.totals.bytes),
        display::duration_ms((t.totals.busy_seconds * 1000.0).round() as i64),
        display::plural(t.totals.jobs, "job"),
        display::plural(t.totals.attempts, "attempt"),
        display::plural(t.totals.items, "item"),
        display::plural(t.totals.documents, "document"),
    ));
    if !t.sources.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = t
            .sources
            .iter()
            .map(|s| {
                vec![
                    s.source.clone(),
                    s.totals.jobs.to_string(),
                    s.totals.items.to_string(),
                    s.totals.documents.to_string(),
                    telemetry::decimal_size(s.totals.bytes),
                    rate(s.totals.throughput_mbps),
                ]
            })
            .collect();
        out.push_str(&display::columns(
            &["SOURCE", "JOBS", "ITEMS", "DOCUMENTS", "READ", "RATE"],
            &rows,
        ));
    }
    out
}

/// Plain text bars: MB read by the attempts that finished in each slice of the window.
fn render_chart(t: &telemetry::Throughput) -> String {
    if t.buckets.is_empty() {
        return String::new();
    }
    let max = t.buckets.iter().map(|b| b.bytes).max().unwrap_or(0).max(1);
    let mut out = String::from("\nread per slice of the window (attempts by finish time):\n");
    for b in &t.buckets {
        let len = ((b.bytes as f64 / max as f64) * CHART_WIDTH as f64).round() as usize;
        let bar = if b.bytes > 0 { len.max(1) } else { 0 };
        let line = format!(
            "{} {:>9} {}",
            display::timestamp(b.start),
            telemetry::decimal_size(b.bytes),
            "#".repeat(bar)
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn render_samples(samples: &[telemetry::Sample], since: i64, window: &str) -> String {
    if samples.is_empty() {
        return format!(
            "no samples since {} ({window}); the daemon takes one every \
             telemetry.sample_interval_seconds while it runs\n",
            display::timestamp(since)
        );
    }
    let age = |ms: Option<i64>| ms.map_or_else(|| "-".to_string(), display::duration_ms);
    let rows: Vec<Vec<String>> = samples
        .iter()
        .map(|s| {
            vec![
                display::timestamp(s.at),
                s.pending.to_string(),
                s.running.to_string(),
                s.failed.to_string(),
                s.quarantined.to_string(),
                age(s.oldest_pending_ms),
                age(s.oldest_running_ms),
                s.workers_busy.to_string(),
                display::size(s.wal_bytes.max(0) as u64),
                s.free_disk_bytes
                    .map_or_else(|| "-".to_string(), |b| display::size(b.max(0) as u64)),
            ]
        })
        .collect();
    display::columns(
        &[
            "AT",
            "PENDING",
            "RUNNING",
            "FAILED",
            "QUARANTINED",
            "OLDEST WAITING",
            "OLDEST RUNNING",
            "BUSY",
            "WAL",
            "FREE DISK",
        ],
        &rows,
    )
}

fn render_failures(f: &telemetry::Failures, window: &str) -> String {
    let mut out = format!(
        "{} ended with an error since {} ({window})\n",
        display::plural(f.total, "attempt"),
        display::timestamp(f.since),
    );
    if f.groups.is_empty() {
        return out;
    }
    let join = |counts: &[telemetry::Count]| {
        counts
            .iter()
            .map(|c| format!("{} {}", c.name, c.count))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.push_str(&format!("by class: {}\n", join(&f.by_class)));
    out.push_str(&format!("by source: {}\n\n", join(&f.by_source)));
    let rows: Vec<Vec<String>> = f
        .groups
        .iter()
        .map(|g| {
            vec![
                g.class.clone(),
                g.source.clone(),
                g.count.to_string(),
                format!("job {}", g.latest.job_id),
                display::timestamp(g.latest.at),
                display::truncate(g.latest.error.as_deref().unwrap_or(""), 100),
            ]
        })
        .collect();
    out.push_str(&display::columns(
        &["CLASS", "SOURCE", "COUNT", "LATEST", "AT", "ERROR"],
        &rows,
    ));
    out
}

#[cfg(test)]
mod tests {
    /// The chapter's "each twelfth of the window" is the chart's number of slices.
    #[test]
    fn the_book_states_the_charts_slices() {
        let chapter = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("book/src/monitoring-telemetry.md"),
        )
        .unwrap();
        assert_eq!(super::CHART_BUCKETS, 12);
        assert!(chapter.contains("in each twelfth of the window"));
    }
}
