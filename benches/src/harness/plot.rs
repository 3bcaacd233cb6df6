//! The IX paper's plot: 99th percentile latency against offered load, one
//! line per server, one SVG per workload (plotters' SVG backend: no fonts or
//! system libraries needed).

use std::path::Path;

use plotters::prelude::*;

use crate::harness::servers::{ServerKind, WorkloadKind};
use crate::harness::sweep::Point;

/// Line colours, in the order of [`ServerKind::ALL`] within a workload.
const COLOURS: [RGBColor; 3] = [RGBColor(200, 30, 30), RGBColor(30, 80, 200), RGBColor(40, 150, 60)];

/// The power of ten at or below `v` (log axes label whole decades).
fn decade_below(v: f64) -> f64 {
    10f64.powf(v.max(1.0).log10().floor())
}

/// The power of ten above `v`.
fn decade_above(v: f64) -> f64 {
    10f64.powf(v.max(1.0).log10().floor() + 1.0)
}

/// Draws p99 (log scale, µs) against offered load for `workload` into `path`.
///
/// # Errors
/// A message when there is nothing to draw or the file cannot be written.
pub fn p99_vs_load(workload: WorkloadKind, points: &[Point], title: &str, path: &Path) -> Result<(), String> {
    let series: Vec<(ServerKind, Vec<(f64, f64)>)> = ServerKind::ALL
        .into_iter()
        .filter(|s| s.workload() == workload)
        .map(|s| {
            let line = points
                .iter()
                .filter(|p| p.server == s)
                .filter_map(|p| p.report.as_ref().map(|r| (p.offered, r.latency_us.p99.max(1.0))))
                .collect();
            (s, line)
        })
        .filter(|(_, line): &(ServerKind, Vec<(f64, f64)>)| !line.is_empty())
        .collect();
    let all = series.iter().flat_map(|(_, l)| l.iter());
    let (x_max, y_min, y_max) =
        all.fold((0.0f64, f64::MAX, 0.0f64), |(x, lo, hi), &(ox, oy)| (x.max(ox), lo.min(oy), hi.max(oy)));
    if series.is_empty() {
        return Err(format!("no {} point to plot", workload.name()));
    }
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max * 1.05, (decade_below(y_min)..decade_above(y_max)).log_scale())?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("offered load (requests/s)")
            .y_desc("99th percentile latency (us)")
            .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for (i, (server, line)) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(line.iter().copied(), colour.stroke_width(2)))?
                .label(server.name())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
            chart.draw_series(line.iter().map(|&(x, y)| Circle::new((x, y), 3, colour.filled())))?;
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.9)).draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| format!("drawing {}: {e}", path.display()))
}
