//! Runs side by side: a bar per run for each figure the runs measured (deliveries/s,
//! publishes/s, memory per idle stream), then their latency distributions overlaid.

use plotters::coord::ranged1d::SegmentValue;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{cdf_panel, color, human, Cdf, ChartError, FONT, LABEL, TITLE};
use crate::bench::compare::Run;

const WIDTH: u32 = 1200;
const BARS_HEIGHT: u32 = 420;
const CDF_HEIGHT: u32 = 440;
const LEGEND_HEIGHT: u32 = 28;

/// One line under the title: each run's colour and name, in order (the first is the baseline).
fn run_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    names: &[&str],
) -> Result<(), ChartError> {
    let mut x = 20;
    for (i, name) in names.iter().enumerate() {
        area.draw(&Rectangle::new([(x, 8), (x + 14, 22)], color(i).filled()))?;
        let text = if i == 0 {
            format!("{name} (baseline)")
        } else {
            name.to_string()
        };
        x += 20;
        area.draw(&Text::new(text.clone(), (x, 8), (FONT, LABEL)))?;
        // The naive font's width estimate: about 0.55 em per character.
        x += (text.chars().count() as f64 * LABEL as f64 * 0.55) as i32 + 24;
    }
    Ok(())
}

/// `name`, cut with an ellipsis to about `chars` characters.
fn fit(name: &str, chars: usize) -> String {
    if name.chars().count() <= chars {
        return name.to_string();
    }
    let cut: String = name.chars().take(chars.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// One bar chart: its title, the y axis, and each run's value (None: not measured).
struct Bars {
    title: &'static str,
    y_desc: &'static str,
    values: Vec<Option<f64>>,
}

/// The comparison chart, as SVG text. Panels whose figure no run measured are left out.
pub fn compare_svg(runs: &[Run]) -> Result<String, ChartError> {
    let bars: Vec<Bars> = [
        Bars {
            title: "Deliveries per second",
            y_desc: "deliveries/s (all streams)",
            values: runs.iter().map(|r| Some(r.deliveries.per_second)).collect(),
        },
        Bars {
            title: "Events published per second",
            y_desc: "events accepted/s",
            values: runs.iter().map(|r| Some(r.events.per_second)).collect(),
        },
        Bars {
            title: "Memory per idle stream",
            y_desc: "server RSS per stream (bytes)",
            values: runs.iter().map(Run::rss_per_stream).collect(),
        },
    ]
    .into_iter()
    .filter(|b| b.values.iter().any(|v| v.is_some_and(|v| v > 0.0)))
    .collect();
    let delivery: Vec<Vec<[f64; 2]>> = runs.iter().map(Run::latency_points).collect();
    let publish: Vec<Vec<[f64; 2]>> = runs.iter().map(Run::publish_latency_points).collect();
    type Panel<'a> = (&'a str, (&'a str, &'a str), &'a Vec<Vec<[f64; 2]>>);
    let cdfs: Vec<Panel<'_>> = [
        (
            "Delivery latency (publish to receive)",
            ("delivery", "deliveries"),
            &delivery,
        ),
        (
            "Publish request latency",
            ("publish", "publishes"),
            &publish,
        ),
    ]
    .into_iter()
    .filter(|(_, _, points)| points.iter().any(|p| !p.is_empty()))
    .collect();

    let height = 60
        + LEGEND_HEIGHT
        + if bars.is_empty() { 0 } else { BARS_HEIGHT }
        + if cdfs.is_empty() { 0 } else { CDF_HEIGHT };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let names: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
        let joined = names.join(" vs ");
        let title = match names.first() {
            // Many or long names would run off the page: they are in the legend below anyway.
            Some(base) if joined.len() > 70 => {
                format!(
                    "ssehub bench compare: {} runs (ratios to {base})",
                    names.len()
                )
            }
            Some(base) => format!("ssehub bench compare: {joined} (ratios to {base})"),
            None => "ssehub bench compare".into(),
        };
        let root = root.titled(&title, (FONT, TITLE + 2))?;
        let (legend, root) = root.split_vertically(LEGEND_HEIGHT);
        run_legend(&legend, &names)?;
        let (bar_area, cdf_area) = if bars.is_empty() {
            root.split_vertically(0)
        } else {
            root.split_vertically(BARS_HEIGHT)
        };
        if !bars.is_empty() {
            let panels = bar_area.split_evenly((1, bars.len()));
            for (panel, b) in panels.iter().zip(&bars) {
                bar_panel(panel, b, &names)?;
            }
        }
        if !cdfs.is_empty() {
            let panels = cdf_area.split_evenly((1, cdfs.len()));
            for (panel, (title, what, points)) in panels.iter().zip(&cdfs) {
                let series: Vec<Cdf<'_>> = points
                    .iter()
                    .zip(&names)
                    .enumerate()
                    .map(|(i, (p, name))| Cdf {
                        name: name.to_string(),
                        points: p,
                        color: color(i),
                    })
                    .collect();
                cdf_panel(panel, title, *what, &series, None)?;
            }
        }
        root.present()?;
    }
    Ok(svg)
}

/// One bar per run, its value and its ratio to the first run above it.
fn bar_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    bars: &Bars,
    names: &[&str],
) -> Result<(), ChartError> {
    let n = bars.values.len();
    // Each bar's name under it, cut to its slot (the legend above has them whole).
    let slot = (area.dim_in_pixel().0.saturating_sub(100)) as f64 / n.max(1) as f64;
    let chars = (slot / ((LABEL - 1) as f64 * 0.55)) as usize;
    let top = bars.values.iter().flatten().copied().fold(1.0, f64::max) * 1.25;
    let base = bars.values.first().copied().flatten();
    let mut chart = ChartBuilder::on(area)
        .caption(bars.title, (FONT, TITLE))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        // A segmented 0..k has k + 1 slots: one per run.
        .build_cartesian_2d((0..n.saturating_sub(1).max(1)).into_segmented(), 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(bars.y_desc)
        .y_label_formatter(&|v| human(*v))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).map_or(String::new(), |s| fit(s, chars)),
            _ => String::new(),
        })
        .label_style((FONT, LABEL - 1))
        .axis_desc_style((FONT, LABEL + 1))
        .draw()?;
    let value_style =
        TextStyle::from((FONT, LABEL).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (i, v) in bars.values.iter().enumerate() {
        let Some(v) = *v else {
            let at = (SegmentValue::CenterOf(i), top * 0.02);
            chart.draw_series([Text::new("not measured", at, value_style.clone())])?;
            continue;
        };
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), v),
            ],
            color(i).filled(),
        );
        bar.set_margin(0, 0, 12, 12);
        chart.draw_series([bar])?;
        let ratio = match base {
            Some(b) if b > 0.0 => format!(" ({:.2}x)", v / b),
            _ => String::new(),
        };
        let label = format!("{}{ratio}", human(v));
        chart.draw_series([Text::new(
            label,
            (SegmentValue::CenterOf(i), v),
            value_style.clone(),
        )])?;
    }
    Ok(())
}
