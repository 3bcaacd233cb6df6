//! The search for the highest load a server sustains within a p99 objective
//! (the IX paper's "throughput at SLA"): an ascending grid up to saturation,
//! then bisection between the highest rate that met the objective and the
//! lowest that did not. The search follows the p99 of the requests no host
//! stall touched; the rate by the p99 of all requests is read off the same
//! points. Pure logic over a `measure` callback.

use serde::{Deserialize, Serialize};

/// What one measured rate showed, as far as the search is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// The offered rate, requests per second.
    pub rate: f64,
    /// Whether the server completed the offered load without failures.
    pub kept_up: bool,
    /// The 99th percentile the search follows, microseconds: of the requests
    /// no host stall touched (of all requests when stalls were not sampled).
    pub p99_us: f64,
    /// The 99th percentile of all requests, microseconds.
    pub p99_all_us: f64,
}

impl Probe {
    /// Whether the point meets a p99 objective of `sla_us`.
    pub fn meets(&self, sla_us: f64) -> bool {
        self.kept_up && self.p99_us <= sla_us
    }

    /// Whether it meets the objective by the p99 of all requests.
    pub fn meets_by_all(&self, sla_us: f64) -> bool {
        self.kept_up && self.p99_all_us <= sla_us
    }
}

/// How to search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPlan {
    /// Rates tried in ascending order until the first one not kept up.
    pub grid: Vec<f64>,
    /// Bisection steps per objective after the grid.
    pub bisect_steps: u32,
    /// The p99 objectives, microseconds.
    pub slas_us: Vec<f64>,
}

/// The result for one objective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SlaRate {
    /// The p99 objective, microseconds.
    pub sla_us: f64,
    /// The highest rate measured to meet it below the lowest that failed it
    /// (`None`: every rate tried failed it).
    pub rate: Option<f64>,
    /// Whether a failing rate above was found; when not, the server met the
    /// objective at every rate tried and the true figure may be higher.
    pub bounded: bool,
    /// The same read off the search's points by the p99 of all requests,
    /// host stalls included (no bisection of its own).
    #[serde(default)]
    pub rate_all: Option<f64>,
}

/// Runs the search; `measure(rate)` runs one point (`None`: it failed to run,
/// counted as not kept up). Returns each objective's rate and every probe in
/// the order measured.
pub fn search(plan: &SearchPlan, mut measure: impl FnMut(f64) -> Option<Probe>) -> (Vec<SlaRate>, Vec<Probe>) {
    let mut probe = |rate: f64, probes: &mut Vec<Probe>| {
        let failed = Probe { rate, kept_up: false, p99_us: f64::INFINITY, p99_all_us: f64::INFINITY };
        let p = measure(rate).unwrap_or(failed);
        probes.push(Probe { rate, ..p });
        probes[probes.len() - 1]
    };
    let mut probes = Vec::new();
    for &rate in &plan.grid {
        if !probe(rate, &mut probes).kept_up {
            break;
        }
    }
    let mut results: Vec<SlaRate> = plan
        .slas_us
        .iter()
        .map(|&sla_us| {
            let (mut lo, mut hi) = bracket(&probes, |p| p.meets(sla_us));
            for _ in 0..plan.bisect_steps {
                let Some(high) = hi else { break };
                let mid = (lo.unwrap_or(0.0) + high) / 2.0;
                if probe(mid, &mut probes).meets(sla_us) {
                    lo = Some(mid);
                } else {
                    hi = Some(mid);
                }
            }
            SlaRate { sla_us, rate: lo, bounded: hi.is_some(), rate_all: None }
        })
        .collect();
    for r in &mut results {
        r.rate_all = bracket(&probes, |p| p.meets_by_all(r.sla_us)).0;
    }
    (results, probes)
}

/// The lowest rate that failed `meets`, and the highest below it that met it.
fn bracket(probes: &[Probe], meets: impl Fn(&Probe) -> bool) -> (Option<f64>, Option<f64>) {
    let hi = probes.iter().filter(|p| !meets(p)).map(|p| p.rate).reduce(f64::min);
    let lo = probes.iter().filter(|p| meets(p) && hi.is_none_or(|h| p.rate < h)).map(|p| p.rate).reduce(f64::max);
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server whose p99 grows with load and that saturates at `capacity`.
    fn model(capacity: f64) -> impl FnMut(f64) -> Option<Probe> {
        move |rate| {
            let load = rate / capacity;
            let p99_us = if load < 1.0 { 50.0 / (1.0 - load) } else { 1e6 };
            Some(Probe { rate, kept_up: load < 1.0, p99_us, p99_all_us: p99_us })
        }
    }

    fn plan(steps: u32) -> SearchPlan {
        SearchPlan { grid: vec![10e3, 20e3, 40e3, 80e3, 160e3], bisect_steps: steps, slas_us: vec![500.0, 1000.0] }
    }

    #[test]
    fn grid_stops_at_saturation_and_bisection_closes_in() {
        // p99 = 500 us at 90% load, 1 ms at 95%: 90k and 95k for a 100k server.
        let (rates, probes) = search(&plan(6), model(100e3));
        assert_eq!(probes.iter().take(5).map(|p| p.rate).collect::<Vec<_>>(), [10e3, 20e3, 40e3, 80e3, 160e3]);
        assert_eq!(probes.len(), 5 + 6 + 6);
        let r500 = rates[0].rate.unwrap();
        let r1000 = rates[1].rate.unwrap();
        // Six halvings of the 80k..160k bracket: within 80k / 64 = 1.25k below the truth.
        assert!((88.75e3..=90e3).contains(&r500), "{r500}");
        assert!((93.75e3..=95e3).contains(&r1000), "{r1000}");
        assert!(rates.iter().all(|r| r.bounded));
    }

    #[test]
    fn a_server_that_fails_at_the_lowest_rate_has_no_rate() {
        let (rates, probes) = search(&plan(2), model(5e3));
        assert_eq!(probes[0].rate, 10e3);
        assert!(rates.iter().all(|r| r.rate.is_none_or(|v| v < 10e3)), "{rates:?}");
    }

    #[test]
    fn a_server_beyond_the_grid_is_reported_unbounded() {
        let (rates, probes) = search(&plan(3), model(10e6));
        assert_eq!(probes.len(), 5, "no bisection without a failing rate");
        assert!(rates.iter().all(|r| r.rate == Some(160e3) && !r.bounded));
    }

    #[test]
    fn a_failed_run_counts_as_not_kept_up() {
        let (rates, probes) = search(&plan(0), |rate| {
            (rate < 30e3).then_some(Probe { rate, kept_up: true, p99_us: 1.0, p99_all_us: 1.0 })
        });
        assert_eq!(probes.len(), 3);
        assert_eq!(rates[0].rate, Some(20e3));
    }

    #[test]
    fn a_noisy_pass_above_a_failure_does_not_count() {
        // 40k failed the objective (a stall), 80k met it: the result stays below 40k.
        let measure = |rate: f64| {
            let p99_us = if rate == 40e3 { 900.0 } else { 100.0 };
            Some(Probe { rate, kept_up: rate < 150e3, p99_us, p99_all_us: p99_us })
        };
        let (rates, _) = search(&plan(0), measure);
        assert_eq!(rates[0].rate, Some(20e3));
        assert_eq!(rates[1].rate, Some(80e3));
    }

    #[test]
    fn the_search_follows_the_unstalled_p99_and_reads_the_rate_by_all_requests_off_its_points() {
        // A 100k server whose unstalled p99 is the model's; a host stall puts
        // every point's p99 of all requests at 70 ms except at 10k and 20k.
        let mut server = model(100e3);
        let measure = |rate: f64| {
            let p = server(rate)?;
            Some(Probe { p99_all_us: if rate <= 20e3 { p.p99_us } else { 70e3 }, ..p })
        };
        let (rates, _) = search(&plan(6), measure);
        let r500 = rates[0];
        assert!((88.75e3..=90e3).contains(&r500.rate.unwrap()), "{r500:?}");
        assert_eq!(r500.rate_all, Some(20e3), "{r500:?}");
        let (rates, _) = search(&plan(0), model(10e6));
        assert!(rates.iter().all(|r| r.rate_all == Some(160e3)), "unbounded: every point met it: {rates:?}");
    }
}
