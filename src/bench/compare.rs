//! `ssehub bench compare A.json B.json ...`: recorded `ssehub bench --json` reports side by side,
//! as ratios to the first (the baseline) and, with `--plot`, as a chart.
//!
//! ```no_run
//! use ssehub::bench::compare::{compare, Run};
//! let runs = vec![Run::load("a.json".as_ref())?, Run::load("b.json".as_ref())?];
//! print!("{}", compare(&runs));
//! # Ok::<(), ssehub::bench::compare::CompareError>(())
//! ```

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::plot::{self, ChartError};
use super::report::Percentiles;
use super::{Report, Timeline};

/// What `ssehub bench` does instead of running a load.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchMode {
    /// Compare recorded runs (`ssehub bench --json > FILE`): prints each one's ratios to the
    /// first, and with --plot draws them side by side.
    Compare(CompareArgs),
    /// Draw one recorded run's chart (latency distribution and timeline), as --plot draws the
    /// run just made.
    Plot(PlotArgs),
}

/// `ssehub bench plot` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PlotArgs {
    /// A report written by `ssehub bench --json`.
    #[arg(value_name = "RUN.json")]
    pub file: PathBuf,

    /// Where to write the chart.
    #[arg(value_name = "FILE.svg")]
    pub svg: PathBuf,
}

impl BenchMode {
    /// Runs the mode: what to print on success.
    pub fn run(&self) -> Result<String, CompareError> {
        match self {
            BenchMode::Compare(args) => run(args),
            BenchMode::Plot(args) => {
                let svg = plot::run_svg(&Run::load(&args.file)?)?;
                plot::write(&args.svg, &svg)?;
                Ok(String::new())
            }
        }
    }
}

/// `ssehub bench compare` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Reports written by `ssehub bench --json`; the first is the baseline. A run's name is its
    /// "label" (`ssehub bench --label`), else its file name.
    #[arg(value_name = "RUN.json", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,

    /// Draw the runs in this SVG file: bars for deliveries/s, publishes/s and memory per stream,
    /// overlaid latency distributions.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A file could not be read.
    #[error("{0}: cannot read it: {1}")]
    Read(PathBuf, std::io::Error),
    /// A file is not JSON.
    #[error("{0}: not JSON, so not an `ssehub bench --json` report ({1})")]
    NotJson(PathBuf, serde_json::Error),
    /// A file is JSON but not a bench report.
    #[error("{0}: not an `ssehub bench --json` report ({1})")]
    NotReport(PathBuf, serde_json::Error),
    /// The chart could not be drawn or written.
    #[error(transparent)]
    Chart(#[from] ChartError),
}

/// One recorded run: the parts of a [`Report`] that comparisons and charts use. Reports recorded
/// before the timeline and the latency distributions were added still load (those are empty).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Run {
    /// Its name: the report's `label`, else the file name without `.json`.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub label: String,
    /// Subscriber connections.
    pub subscribers: RunSubscribers,
    /// Publishing.
    pub events: RunEvents,
    /// Deliveries.
    pub deliveries: RunDeliveries,
    /// Publish-to-receive latency, milliseconds.
    pub latency_ms: Percentiles,
    /// Publish request latency, milliseconds.
    pub publish_latency_ms: Percentiles,
    /// `[ms, fraction]` points of the delivery latency distribution (empty in older reports).
    #[serde(default)]
    pub latency_cdf: Vec<[f64; 2]>,
    /// The same for publish requests.
    #[serde(default)]
    pub publish_latency_cdf: Vec<[f64; 2]>,
    /// Counters every 100 ms (empty in older reports).
    #[serde(default)]
    pub timeline: Timeline,
    /// The server's memory, when the run had `--pid`.
    #[serde(default)]
    pub server: Option<RunServer>,
}

/// A run's subscribers.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunSubscribers {
    /// Asked for.
    pub requested: u64,
    /// Got a stream.
    pub connected: u64,
}

/// A run's publishing.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunEvents {
    /// Accepted.
    pub published: u64,
    /// Accepted per second.
    pub per_second: f64,
}

/// A run's deliveries.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunDeliveries {
    /// Owed.
    pub expected: u64,
    /// Received.
    pub received: u64,
    /// Never received.
    pub lost: u64,
    /// Received per second.
    pub per_second: f64,
}

/// A run's server figures.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunServer {
    /// RSS growth per connected subscriber while idle, bytes.
    pub rss_per_connection_bytes: f64,
}

impl Run {
    /// Reads a report written by `ssehub bench --json`.
    pub fn load(path: &Path) -> Result<Run, CompareError> {
        let text = std::fs::read(path).map_err(|e| CompareError::Read(path.into(), e))?;
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| CompareError::NotJson(path.into(), e))?;
        let mut run: Run =
            serde_json::from_value(value).map_err(|e| CompareError::NotReport(path.into(), e))?;
        if run.label.is_empty() {
            run.label = path.file_stem().map_or_else(
                || path.display().to_string(),
                |s| s.to_string_lossy().into(),
            );
        }
        Ok(run)
    }

    /// The run just measured, as a recorded file would give it back (named by its label, else
    /// its URL).
    pub fn from_report(report: &Report) -> Run {
        // The same serde path as a file: a chart of a live run and of its JSON are the same.
        let mut run: Run = serde_json::to_value(report)
            .and_then(serde_json::from_value)
            .unwrap_or_default();
        if run.label.is_empty() {
            run.label = report.url.clone();
        }
        run
    }

    /// RSS per idle stream, bytes, when the run measured it.
    pub fn rss_per_stream(&self) -> Option<f64> {
        self.server
            .as_ref()
            .filter(|_| self.subscribers.connected > 0)
            .map(|s| s.rss_per_connection_bytes)
    }

    /// Delivery latency points: the recorded distribution, else the percentiles.
    pub fn latency_points(&self) -> Vec<[f64; 2]> {
        points(&self.latency_cdf, &self.latency_ms)
    }

    /// Publish latency points: the recorded distribution, else the percentiles.
    pub fn publish_latency_points(&self) -> Vec<[f64; 2]> {
        points(&self.publish_latency_cdf, &self.publish_latency_ms)
    }
}

/// `"label": null` (no `--label`) is no label.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// Older reports have percentiles only: five points of the same curve.
fn points(cdf: &[[f64; 2]], p: &Percentiles) -> Vec<[f64; 2]> {
    if !cdf.is_empty() || p.count == 0 {
        return cdf.to_vec();
    }
    vec![
        [p.p50, 0.5],
        [p.p90, 0.9],
        [p.p99, 0.99],
        [p.p99_9, 0.999],
        [p.max, 1.0],
    ]
}

/// Runs `ssehub bench compare`: loads every file (refusing any that is not a report), writes
/// the chart if asked, and returns the ratios table.
pub fn run(args: &CompareArgs) -> Result<String, CompareError> {
    let runs = args
        .files
        .iter()
        .map(|f| Run::load(f))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(path) = &args.plot {
        plot::write(path, &plot::compare_svg(&runs)?)?;
    }
    Ok(compare(&runs))
}

/// The ratios table: each run's figures and their ratio to the first run's.
pub fn compare(runs: &[Run]) -> String {
    let mut t = String::new();
    let Some(base) = runs.first() else {
        return t;
    };
    let width = runs.iter().map(|r| r.label.len()).max().unwrap_or(0).max(3);
    let ratio = |v: f64, b: f64| {
        if b > 0.0 && v.is_finite() {
            format!("{:.2}x", v / b)
        } else {
            "-".into()
        }
    };
    let _ = writeln!(
        t,
        "{:<width$}  {:>12} {:>7}  {:>11} {:>7}  {:>8} {:>8}  {:>11} {:>7}  {:>6}",
        "run",
        "deliveries/s",
        "ratio",
        "published/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "RSS/stream",
        "ratio",
        "lost"
    );
    for r in runs {
        let rss = r.rss_per_stream();
        let _ = writeln!(
            t,
            "{:<width$}  {:>12.0} {:>7}  {:>11.0} {:>7}  {:>8.2} {:>8.2}  {:>11} {:>7}  {:>6}",
            r.label,
            r.deliveries.per_second,
            ratio(r.deliveries.per_second, base.deliveries.per_second),
            r.events.per_second,
            ratio(r.events.per_second, base.events.per_second),
            r.latency_ms.p50,
            r.latency_ms.p99,
            rss.map_or("-".into(), |b| format!("{b:.0} B")),
            ratio(
                rss.unwrap_or(f64::NAN),
                base.rss_per_stream().unwrap_or(0.0)
            ),
            r.deliveries.lost,
        );
    }
    let _ = writeln!(t, "ratios: each run divided by the first ({})", base.label);
    t
}
