//! One run's chart: the delivery latency distribution, then the timeline (deliveries/s and
//! publishes/s per 100 ms, open streams).

use plotters::prelude::*;

use super::{cdf_panel, color, empty_panel, human, Cdf, ChartError, FONT, LABEL, TITLE};
use crate::bench::compare::Run;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 1000;

/// The chart of one run, as SVG text.
pub fn run_svg(run: &Run) -> Result<String, ChartError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let title = format!(
            "ssehub bench: {} ({} streams, {} events published, {} lost)",
            if run.label.is_empty() {
                "run"
            } else {
                &run.label
            },
            run.subscribers.connected,
            run.events.published,
            run.deliveries.lost
        );
        let root = root.titled(&title, (FONT, TITLE + 2))?;
        let (top, rest) = root.split_vertically(HEIGHT * 40 / 100);
        let (middle, bottom) = rest.split_vertically(HEIGHT * 33 / 100);
        let points = run.latency_points();
        let cdf = Cdf {
            name: "delivery latency CDF".into(),
            points: &points,
            color: color(0),
        };
        cdf_panel(
            &top,
            "Delivery latency distribution (publish to receive)",
            ("delivery", "deliveries"),
            &[cdf],
            Some(&run.latency_ms),
        )?;
        timeline_panels(run, &middle, &bottom)?;
        root.present()?;
    }
    Ok(svg)
}

/// Rates per 100 ms on one panel (deliveries on the left axis, publishes on the right: they
/// differ by the fan-out), open streams on the other.
fn timeline_panels<DB: DrawingBackend>(
    run: &Run,
    rates: &DrawingArea<DB, plotters::coord::Shift>,
    streams: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), ChartError> {
    let t = &run.timeline;
    if t.t_ms.is_empty() {
        empty_panel(rates, "Throughput per 100 ms", "no timeline in this report")?;
        return empty_panel(streams, "Open streams", "no timeline in this report");
    }
    // Samples as (end ms, deliveries, publishes); the last one (taken when the run ended) is
    // folded into the one before if it is short, so a few ms do not show as a spike.
    let mut samples: Vec<(u64, u64, u64)> = Vec::with_capacity(t.t_ms.len());
    for (i, &end) in t.t_ms.iter().enumerate() {
        let (d, p) = (
            t.deliveries.get(i).copied().unwrap_or(0),
            t.published.get(i).copied().unwrap_or(0),
        );
        match samples.last_mut() {
            Some(last)
                if i + 1 == t.t_ms.len() && end.saturating_sub(last.0) < t.interval_ms / 2 =>
            {
                *last = (end, last.1 + d, last.2 + p);
            }
            _ => samples.push((end, d, p)),
        }
    }
    // Each sample counts since the previous one: divide by the time that really passed.
    let mut start = samples
        .first()
        .map_or(0, |s| s.0.saturating_sub(t.interval_ms));
    let (mut secs, mut deliveries, mut published) = (Vec::new(), Vec::new(), Vec::new());
    for &(end, d, p) in &samples {
        let dt_s = end.saturating_sub(start).max(1) as f64 / 1000.0;
        secs.push(end as f64 / 1000.0);
        deliveries.push(d as f64 / dt_s);
        published.push(p as f64 / dt_s);
        start = end;
    }
    let x_end = secs.last().copied().unwrap_or(1.0).max(0.1);
    let top = |v: &[f64]| v.iter().copied().fold(1.0, f64::max) * 1.1;

    let mut chart = ChartBuilder::on(rates)
        .caption(
            format!("Throughput per {} ms", t.interval_ms),
            (FONT, TITLE),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d(0f64..x_end, 0f64..top(&deliveries))?
        .set_secondary_coord(0f64..x_end, 0f64..top(&published));
    chart
        .configure_mesh()
        .x_desc("time since the bench started (s)")
        .y_desc("deliveries/s (all streams)")
        .y_label_formatter(&|v| human(*v))
        .label_style((FONT, LABEL))
        .axis_desc_style((FONT, LABEL + 1))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("publishes/s (events accepted)")
        .y_label_formatter(&|v| human(*v))
        .label_style((FONT, LABEL))
        .axis_desc_style((FONT, LABEL + 1))
        .draw()?;
    let (c0, c1) = (color(0).stroke_width(2), color(1).stroke_width(2));
    chart
        .draw_series(LineSeries::new(
            secs.iter().copied().zip(deliveries.iter().copied()),
            c0,
        ))?
        .label("deliveries/s (left axis)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c0));
    chart
        .draw_secondary_series(LineSeries::new(
            secs.iter().copied().zip(published.iter().copied()),
            c1,
        ))?
        .label("publishes/s (right axis)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c1));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, LABEL))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    let open = t.connected.iter().map(|&c| c as f64);
    let most = t.connected.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(streams)
        .caption("Connected subscribers", (FONT, TITLE))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .right_y_label_area_size(70)
        .build_cartesian_2d(0f64..x_end, 0f64..most)?;
    chart
        .configure_mesh()
        .x_desc("time since the bench started (s)")
        .y_desc("open streams")
        .y_label_formatter(&|v| human(*v))
        .label_style((FONT, LABEL))
        .axis_desc_style((FONT, LABEL + 1))
        .draw()?;
    let c2 = color(2).stroke_width(2);
    chart
        .draw_series(LineSeries::new(secs.iter().copied().zip(open), c2))?
        .label("connected subscribers")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c2));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, LABEL))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
