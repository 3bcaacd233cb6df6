//! The IX paper's plot: 99th percentile latency against offered load, one
//! colour per server, every repetition's points and a line through the medians,
//! one SVG per workload (plotters' SVG backend: no fonts or system libraries).

use std::path::Path;

use plotters::prelude::*;

use crate::harness::servers::{ServerKind, WorkloadKind};
use crate::harness::stats::Spread;
use crate::harness::sweep::{Point, Purpose};
use crate::harness::table::sla_label;

/// Colours, in the order of [`ServerKind::ALL`] within a workload.
const COLOURS: [RGBColor; 4] =
    [RGBColor(200, 30, 30), RGBColor(30, 80, 200), RGBColor(40, 150, 60), RGBColor(160, 90, 10)];

/// A latency in microseconds in human units: `45 us`, `1.5 ms`, `2 s`.
pub fn human_us(us: f64) -> String {
    let trim = |v: f64| if v >= 10.0 || v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") };
    if us >= 1e6 {
        format!("{} s", trim(us / 1e6))
    } else if us >= 1e3 {
        format!("{} ms", trim(us / 1e3))
    } else {
        format!("{} us", trim(us))
    }
}

/// The latency axis: from just below the smallest p99 to just above the
/// largest, so that sub-millisecond points stay on the chart.
fn latency_range(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let lo = (lo / 1.5).max(1.0);
    lo..(hi * 1.5).max(lo * 10.0)
}

/// Per server of `workload`: every search point (offered, p99 in us) and the
/// line through each offered rate's median over the repetitions that measured it.
type Series = (ServerKind, Vec<(f64, f64)>, Vec<(f64, f64)>);

fn series(workload: WorkloadKind, points: &[Point]) -> Vec<Series> {
    let reps = points.iter().map(|p| p.repetition + 1).max().unwrap_or(1);
    ServerKind::ALL
        .into_iter()
        .filter(|s| s.workload() == workload)
        .map(|s| {
            let dots: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.server == s && p.purpose == Purpose::Search)
                .filter_map(|p| p.p99_unstalled_us().map(|p99| (p.offered, p99.max(1.0))))
                .collect();
            let mut rates: Vec<f64> = dots.iter().map(|d| d.0).collect();
            rates.sort_by(f64::total_cmp);
            rates.dedup();
            let line = rates
                .into_iter()
                .filter_map(|rate| {
                    let at: Vec<f64> = dots.iter().filter(|d| d.0 == rate).map(|d| d.1).collect();
                    // A rate only some repetitions' bisection tried is shown as points, not on the line.
                    (2 * at.len() > reps || reps == 1).then(|| Spread::of(at).map(|s| (rate, s.median)))?
                })
                .collect();
            (s, dots, line)
        })
        .filter(|(_, dots, _)| !dots.is_empty())
        .collect()
}

/// Draws p99 (log scale) against offered load for `workload` into `path`, with
/// a dashed line at each objective in `slas_us` that falls within the data.
///
/// # Errors
/// A message when there is nothing to draw or the file cannot be written.
pub fn p99_vs_load(
    workload: WorkloadKind,
    points: &[Point],
    slas_us: &[f64],
    title: &str,
    path: &Path,
) -> Result<(), String> {
    let series = series(workload, points);
    if series.is_empty() {
        return Err(format!("no {} point to plot", workload.name()));
    }
    let all = series.iter().flat_map(|(_, dots, _)| dots.iter());
    let (x_max, y_min, y_max) =
        all.fold((0.0f64, f64::MAX, 0.0f64), |(x, lo, hi), &(ox, oy)| (x.max(ox), lo.min(oy), hi.max(oy)));
    let y_range = latency_range(y_min, y_max);
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max * 1.05, y_range.clone().log_scale())?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("offered load (requests/s)")
            .y_desc("99th percentile latency, requests no host stall touched")
            .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
            .y_label_formatter(&|y| human_us(*y))
            .draw()?;
        for &sla in slas_us.iter().filter(|s| y_range.contains(s)) {
            let grey = RGBColor(120, 120, 120);
            chart.draw_series(DashedLineSeries::new([(0.0, sla), (x_max * 1.05, sla)], 6, 4, grey.stroke_width(1)))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("p99 objective {}", sla_label(sla)),
                (x_max * 0.02, sla * 1.08),
                ("sans-serif", 12).into_font().color(&grey),
            )))?;
        }
        for (i, (server, dots, line)) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(line.iter().copied(), colour.stroke_width(2)))?
                .label(format!("{} (line: median; dots: each repetition)", server.name()))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
            chart.draw_series(dots.iter().map(|&(x, y)| Circle::new((x, y), 3, colour.mix(0.55).filled())))?;
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.9)).draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| format!("drawing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_written_in_human_units() {
        assert_eq!(human_us(45.0), "45 us");
        assert_eq!(human_us(2.5), "2.5 us");
        assert_eq!(human_us(1500.0), "1.5 ms");
        assert_eq!(human_us(10_000_000.0), "10 s");
    }

    #[test]
    fn the_latency_axis_fits_sub_millisecond_data() {
        let r = latency_range(40.0, 300.0);
        assert!(r.start < 40.0 && r.start > 20.0 && r.end > 300.0 && r.end < 1000.0, "{r:?}");
    }
}
