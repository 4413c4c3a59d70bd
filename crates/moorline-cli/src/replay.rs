//! `moorline replay FILE`: prints a recording written by `--record` (the client's
//! [`Recorder`](moorline_client::record::Recorder)) with its metadata: frames in and out by
//! type, bytes, duration, and the gaps between frames longer than a threshold. The file is
//! first read as the test kit reads it for `moorline serve mock --replay` (one format for
//! both), so a file this command accepts is one the mock server can serve.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use moorline_testkit::ws::{Recording, ReplayError as FormatError};
use serde_json::{Value, json};

use crate::out::{self, OutputError};

/// Options of `moorline replay`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// The recording (JSONL: one frame a line, as `--record` writes it).
    pub(crate) file: PathBuf,
    /// A gap between two frames longer than this (milliseconds) is reported.
    #[arg(long, value_name = "MS", default_value_t = 1000, allow_negative_numbers = true, value_parser = crate::args::whole_number)]
    pub(crate) gap_ms: u64,
    /// Print frames whole (by default data past 160 characters is cut, marked `...`).
    #[arg(long)]
    pub(crate) full: bool,
    /// Print only the metadata, as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Why `moorline replay` failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplayError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a recording.
    #[error("{path}: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line.
        #[source]
        source: FormatError,
    },
    /// A line the test kit accepts but this command cannot time.
    #[error("{path}: line {line}: {reason}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Writing to stdout failed.
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// Counts of one direction.
#[derive(Default)]
struct Counts {
    by_type: BTreeMap<String, u64>,
    bytes: u64,
}

impl Counts {
    fn json(&self) -> Value {
        let total: u64 = self.by_type.values().sum();
        json!({ "frames": total, "by_type": self.by_type, "bytes": self.bytes })
    }

    fn text(&self) -> String {
        let total: u64 = self.by_type.values().sum();
        let parts: Vec<String> = self.by_type.iter().map(|(k, v)| format!("{v} {k}")).collect();
        format!(
            "{total} ({}; {} bytes of data)",
            if parts.is_empty() { "none".into() } else { parts.join(", ") },
            self.bytes
        )
    }
}

/// Runs `moorline replay`.
pub(crate) fn run(args: &ReplayArgs) -> Result<(), ReplayError> {
    let path = &args.file;
    let text = std::fs::read_to_string(path).map_err(|source| ReplayError::Read { path: path.clone(), source })?;
    // The test kit's reading first: what it refuses, the mock server could not serve.
    let served = Recording::from_jsonl(&text).map_err(|source| ReplayError::Format { path: path.clone(), source })?;
    let bad = |line: usize, reason: String| ReplayError::Line { path: path.clone(), line, reason };
    let (mut ins, mut outs) = (Counts::default(), Counts::default());
    let mut first: Option<f64> = None;
    let mut last: Option<f64> = None;
    let mut gaps: Vec<(f64, f64)> = Vec::new();
    let threshold = args.gap_ms as f64;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(raw).map_err(|e| bad(line, e.to_string()))?;
        let ts = v["ts"]
            .as_f64()
            .ok_or_else(|| bad(line, "ts must be a number (ms since the start, as --record writes it)".into()))?;
        let dir = v["dir"].as_str().unwrap_or_default();
        let kind = v["type"].as_str().unwrap_or_default().to_owned();
        let data = v["data"].as_str().unwrap_or_default();
        // A `meta` line (a new connection) is not a frame: shown, not counted.
        if dir != "meta" {
            let counts = if dir == "in" { &mut ins } else { &mut outs };
            *counts.by_type.entry(kind.clone()).or_default() += 1;
            counts.bytes += data.len() as u64;
        }
        if let Some(prev) = last
            && ts - prev > threshold
        {
            gaps.push((prev, ts - prev));
        }
        first.get_or_insert(ts);
        last = Some(ts);
        if !args.json {
            let shown = if args.full || data.chars().count() <= 160 {
                data.to_owned()
            } else {
                format!("{}...", data.chars().take(160).collect::<String>())
            };
            out::line(format_args!("{ts:>12.3} ms {dir:<3} {kind:<6} {shown}"))?;
        }
    }
    let duration = match (first, last) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    if args.json {
        out::line(json!({
            "file": path.display().to_string(),
            "in": ins.json(),
            "out": outs.json(),
            "served_by_mock": served.len(),
            "connections": served.sessions(),
            "first_ms": first,
            "last_ms": last,
            "duration_ms": duration,
            "gap_threshold_ms": args.gap_ms,
            "gaps": gaps.iter().map(|(at, gap)| json!({ "after_ms": at, "gap_ms": gap })).collect::<Vec<_>>(),
        }))?;
        return Ok(());
    }
    out::line("")?;
    out::line(format_args!("recording {}", path.display()))?;
    out::line(format_args!("  in     {}", ins.text()))?;
    out::line(format_args!("  out    {}", outs.text()))?;
    out::line(format_args!("  span   {:.3} s", Duration::from_secs_f64(duration.max(0.0) / 1e3).as_secs_f64()))?;
    out::line(format_args!(
        "  gaps   {} over {} ms{}",
        gaps.len(),
        args.gap_ms,
        gaps.iter()
            .map(|g| g.1)
            .fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.max(g))))
            .map_or(String::new(), |m| format!(" (longest {m:.0} ms)"))
    ))?;
    for (at, gap) in &gaps {
        out::line(format_args!("         after {at:.3} ms: {gap:.0} ms without a frame"))?;
    }
    out::line(format_args!(
        "  `moorline serve mock --replay {}` plays the {} frames in{}",
        path.display(),
        served.len(),
        if served.sessions() > 1 {
            format!(", connection k's to the k-th client ({} connections recorded)", served.sessions())
        } else {
            String::new()
        }
    ))?;
    Ok(())
}
