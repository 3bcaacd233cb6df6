//! The summary of a sweep: per server, the peak throughput, the highest rate
//! held within the p99 objective, latency at a load every server sustained,
//! and the ratios to the tokio server of the same workload.

use serde::{Deserialize, Serialize};

use crate::harness::servers::{ServerKind, WorkloadKind};
use crate::harness::sweep::Point;
use crate::loadgen::Percentiles;

/// The latency objective of the "rate within objective" column, in
/// microseconds of p99 (the IX paper used 500 µs on bare metal; a VM with veth
/// adds tens of microseconds per hop).
pub const P99_OBJECTIVE_US: f64 = 1000.0;

/// One server's line of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The workload.
    pub workload: WorkloadKind,
    /// The server.
    pub server: ServerKind,
    /// Its IX backend, if any.
    pub backend: Option<String>,
    /// Highest throughput measured, requests per second.
    pub peak: f64,
    /// Highest offered rate kept up with p99 within [`P99_OBJECTIVE_US`].
    pub rate_within_objective: Option<f64>,
    /// The offered rate the latency columns are taken at.
    pub compared_at: Option<f64>,
    /// Latency at `compared_at`.
    pub latency_us: Option<Percentiles>,
    /// p99 of the generator's own send lag at `compared_at`: when it is
    /// large, the client was descheduled and the latency columns include it.
    pub client_lag_p99_us: Option<f64>,
    /// `peak` over the tokio server's.
    pub peak_vs_tokio: Option<f64>,
    /// p99 at `compared_at` over the tokio server's (below 1 is better).
    pub p99_vs_tokio: Option<f64>,
}

/// The rows of `workload` from `points`, in the order of [`ServerKind::ALL`].
pub fn rows(workload: WorkloadKind, points: &[Point]) -> Vec<Row> {
    let servers: Vec<ServerKind> = ServerKind::ALL
        .into_iter()
        .filter(|s| s.workload() == workload && points.iter().any(|p| p.server == *s))
        .collect();
    let of = |s: ServerKind| points.iter().filter(move |p| p.server == s);
    // The highest rate that every server kept up with; else the lowest swept.
    let mut rates: Vec<f64> = points.iter().filter(|p| p.server.workload() == workload).map(|p| p.offered).collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let compared_at = rates
        .iter()
        .rev()
        .find(|&&r| servers.iter().all(|&s| of(s).any(|p| p.offered == r && p.kept_up())))
        .or(rates.first())
        .copied();
    let mut rows: Vec<Row> = servers
        .iter()
        .map(|&server| {
            let peak = of(server).filter_map(|p| p.report.as_ref()).map(|r| r.throughput).fold(0.0, f64::max);
            let within = of(server)
                .filter(|p| p.kept_up() && p.report.as_ref().is_some_and(|r| r.latency_us.p99 <= P99_OBJECTIVE_US))
                .map(|p| p.offered)
                .reduce(f64::max);
            let at = compared_at.and_then(|r| of(server).find(|p| p.offered == r));
            Row {
                workload,
                server,
                backend: of(server).find_map(|p| p.backend.clone()),
                peak,
                rate_within_objective: within,
                compared_at,
                latency_us: at.and_then(|p| p.report.as_ref()).map(|r| r.latency_us),
                client_lag_p99_us: at.and_then(|p| p.report.as_ref()).map(|r| r.send_lag_us.p99),
                peak_vs_tokio: None,
                p99_vs_tokio: None,
            }
        })
        .collect();
    if let Some(base) = rows.iter().find(|r| r.server.is_tokio_baseline()).cloned() {
        for row in &mut rows {
            row.peak_vs_tokio = (base.peak > 0.0).then(|| row.peak / base.peak);
            row.p99_vs_tokio = match (row.latency_us, base.latency_us) {
                (Some(a), Some(b)) if b.p99 > 0.0 => Some(a.p99 / b.p99),
                _ => None,
            };
        }
    }
    rows
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// The table as Markdown (also readable as plain text).
pub fn markdown(rows: &[Row]) -> String {
    let mut out = format!(
        "| workload | server | backend | peak req/s | req/s at p99 <= {P99_OBJECTIVE_US:.0} us | at req/s | p50 us | p99 us | \
         p99.9 us | client lag p99 us | peak x tokio | p99 / tokio |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for r in rows {
        let l = r.latency_us;
        out += &format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.workload.name(),
            r.server.name(),
            r.backend.as_deref().unwrap_or("kernel TCP"),
            r.peak,
            opt(r.rate_within_objective, |v| format!("{v:.0}")),
            opt(r.compared_at, |v| format!("{v:.0}")),
            opt(l.map(|l| l.p50), |v| format!("{v:.0}")),
            opt(l.map(|l| l.p99), |v| format!("{v:.0}")),
            opt(l.map(|l| l.p999), |v| format!("{v:.0}")),
            opt(r.client_lag_p99_us, |v| format!("{v:.0}")),
            opt(r.peak_vs_tokio, |v| format!("{v:.2}")),
            opt(r.p99_vs_tokio, |v| format!("{v:.2}")),
        );
    }
    out
}
