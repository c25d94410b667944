//! SVG charts of bench runs (`ssehub bench --plot`, `ssehub bench compare --plot`), drawn with
//! plotters' SVG backend: text is SVG `<text>`, so no font files or system libraries are needed,
//! and the file reads the same in a browser and on GitHub.
//!
//! ```
//! use ssehub::bench::{compare::Run, plot};
//! let svg = plot::run_svg(&Run::default()).unwrap();
//! assert!(svg.starts_with("<svg"));
//! ```

mod compare;
mod run;

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

pub use compare::compare_svg;
pub use run::run_svg;

use super::compare::Run;
use super::Report;

/// A chart could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The file could not be written.
    #[error("--plot {0}: cannot write it: {1}")]
    Write(PathBuf, std::io::Error),
    /// plotters refused to draw (a range or a layout it cannot handle).
    #[error("drawing the chart: {0}")]
    Draw(String),
}

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for ChartError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        ChartError::Draw(e.to_string())
    }
}

/// Writes `svg` to `path`.
pub fn write(path: &Path, svg: &str) -> Result<(), ChartError> {
    std::fs::write(path, svg).map_err(|e| ChartError::Write(path.into(), e))
}

/// Whether a chart could be written at `path`: its directory exists (the reason if not).
pub fn check_writable(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "--plot {}: no directory {} to write it in",
            path.display(),
            dir.display()
        ))
    }
}

/// Draws the chart of a run just measured into `path` (`ssehub bench --plot`).
pub fn write_report(report: &Report, path: &Path) -> Result<(), ChartError> {
    write(path, &run_svg(&Run::from_report(report))?)
}

/// One colour per run or series; readable on white and told apart by most colour-blind readers
/// (Okabe and Ito's palette).
const COLORS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(230, 159, 0),
    RGBColor(0, 0, 0),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

const FONT: &str = "sans-serif";
const TITLE: u32 = 20;
const LABEL: u32 = 14;

/// 6,030,578 as "6.03M": axis ticks and bar values stay short.
fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A latency in ms, as many digits as it needs.
fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// One distribution to draw.
struct Cdf<'a> {
    name: String,
    points: &'a [[f64; 2]],
    color: RGBColor,
}

/// A latency CDF panel on a log x axis; `marks` draws p50/p99/p99.9 lines (one run's chart).
/// `what` is the singular and plural of what was timed ("delivery", "deliveries").
fn cdf_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    what: (&str, &str),
    series: &[Cdf<'_>],
    marks: Option<&super::Percentiles>,
) -> Result<(), ChartError> {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p[0]));
    let (lo, hi) = xs.fold((f64::MAX, 0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    if hi <= 0.0 {
        return empty_panel(area, title, "no samples in this run");
    }
    // A decade's margin on each side keeps the lines off the frame.
    let (lo, hi) = ((lo.max(0.001) / 1.5), (hi * 1.5).max(lo * 10.0));
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, TITLE))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc(format!("{} latency (ms, log scale)", what.0))
        .y_desc(format!("fraction of {} at or below", what.1))
        .x_label_formatter(&|v| ms(*v))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .label_style((FONT, LABEL))
        .axis_desc_style((FONT, LABEL + 1))
        .draw()?;
    for s in series {
        let style = s.color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|p| (p[0], p[1])),
                style,
            ))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    if let Some(p) = marks {
        for (i, (name, v, at)) in [
            ("p50", p.p50, 0.5),
            ("p99", p.p99, 0.99),
            ("p99.9", p.p99_9, 0.999),
        ]
        .into_iter()
        .enumerate()
        {
            let style = color(i + 1).stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new([(v, 0.0), (v, 1.0)], 6, 4, style))?
                .label(format!("{name} {} ms", ms(v)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart.draw_series([Circle::new((v, at), 4, color(i + 1).filled())])?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, LABEL))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// A panel with its title and a line saying why it is empty.
fn empty_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    why: &str,
) -> Result<(), ChartError> {
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(title.to_string(), (12, 8), (FONT, TITLE)))?;
    let center = (w as i32 / 2 - 90, h as i32 / 2);
    area.draw(&Text::new(why.to_string(), center, (FONT, LABEL)))?;
    Ok(())
}
