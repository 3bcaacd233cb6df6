//! The table: per case, the median rate and its spread over repetitions,
//! the ratio to tokio current_thread, latency percentiles, CPU, and the IX
//! cores' counters.

use hdrhistogram::Histogram;

use crate::System;
use crate::ix_pair::LoopTotals;
use crate::measure::{Sample, Timing, latency_histogram};

/// Everything measured for one (system, connections) case.
#[derive(Debug)]
pub struct CaseResult {
    pub system: System,
    pub connections: usize,
    /// Round trips per second, one per repetition.
    rates: Vec<f64>,
    latency_ns: Histogram<u64>,
    /// CPUs' worth of user time other processes took during each repetition
    /// (none where `/proc` could not be read).
    pub others_cpu: Vec<f64>,
    /// CPUs' worth of time this process used over each repetition's window.
    process_cpu: Vec<f64>,
    /// Repetitions run again because other processes took CPU meanwhile.
    pub reruns: usize,
    /// The IX cores' loop counters, summed over the repetitions' windows.
    server: LoopTotals,
    client: LoopTotals,
}

impl CaseResult {
    pub fn new(system: System, connections: usize) -> CaseResult {
        CaseResult {
            system,
            connections,
            rates: Vec::new(),
            latency_ns: latency_histogram(),
            others_cpu: Vec::new(),
            process_cpu: Vec::new(),
            reruns: 0,
            server: LoopTotals::default(),
            client: LoopTotals::default(),
        }
    }

    pub fn add(&mut self, sample: &Sample, timing: Timing) {
        self.rates.push(sample.recorded.round_trips as f64 / timing.measure.as_secs_f64());
        self.latency_ns.add(&sample.recorded.latency_ns).expect("histograms of the same bounds");
        self.process_cpu.extend(sample.process_cpu);
        if let Some((server, client)) = &sample.cores {
            self.server.add(server);
            self.client.add(client);
        }
    }

    fn median(&self) -> f64 {
        median(&self.rates).unwrap_or(0.0)
    }

    fn min_max(&self) -> (f64, f64) {
        self.rates.iter().fold((f64::INFINITY, 0.0), |(lo, hi), &r| (lo.min(r), hi.max(r)))
    }
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

fn grouped(n: f64) -> String {
    let digits = format!("{:.0}", n);
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn micros(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

pub fn print_table(results: &[CaseResult]) {
    println!(
        "{:>5}  {:<21} {:>11}  {:>21}  {:>8}  {:>8}  {:>8}  {:>8}  {:>5}  {:>9} {:>7}  {:>9} {:>7}  {:>6}",
        "conns",
        "runtime",
        "rt/s median",
        "min..max",
        "vs tokio",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "cpu",
        "srv batch",
        "empty",
        "cli batch",
        "empty",
        "others"
    );
    for case in results {
        let baseline = results
            .iter()
            .find(|c| c.connections == case.connections && c.system == System::TokioCurrentThread)
            .map(CaseResult::median);
        let ratio = baseline.filter(|b| *b > 0.0).map_or("-".into(), |b| format!("{:.2}x", case.median() / b));
        let (lo, hi) = case.min_max();
        let (server, client) = if case.system.is_ix() {
            ((case.server.batch(), case.server.empty_percent()), (case.client.batch(), case.client.empty_percent()))
        } else {
            (("-".into(), "-".into()), ("-".into(), "-".into()))
        };
        println!(
            "{:>5}  {:<21} {:>11}  {:>21}  {:>8}  {:>8}  {:>8}  {:>8}  {:>5}  {:>9} {:>7}  {:>9} {:>7}  {:>6}",
            case.connections,
            case.system.name(),
            grouped(case.median()),
            format!("{}..{}", grouped(lo), grouped(hi)),
            ratio,
            micros(case.latency_ns.value_at_quantile(0.50)),
            micros(case.latency_ns.value_at_quantile(0.99)),
            micros(case.latency_ns.value_at_quantile(0.999)),
            median(&case.process_cpu).map_or("-".into(), |cpu| format!("{cpu:.2}")),
            server.0,
            server.1,
            client.0,
            client.1,
            case.others_cpu.iter().copied().reduce(f64::max).map_or("-".into(), |max| format!("{max:.2}")),
        );
    }
}
