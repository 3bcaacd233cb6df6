//! Host stalls: a sampler of every CPU's steal counter each few milliseconds,
//! the intervals when a CPU was away, and the split of a run's requests into
//! those whose life overlapped such an interval and those that did not.
//!
//! Why: on a shared VM the host takes a vCPU away for about 100 ms at a time,
//! several times in a few seconds. One such stall in a 3 s point at rate R
//! delays about 0.1 R requests, over 1% of them, so it alone sets the point's
//! p99 whatever the server does. The p99 of the requests that no stall touched
//! is the server's own tail; the share left out says how much was set aside.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::harness::machine::{CpuSnapshot, PROC_TICKS_PER_SEC};
use crate::loadgen::Timeline;
use crate::loadgen::report::{Percentiles, latency_histogram, record_latency_us};

/// How often the sampler reads `/proc/stat`: a few milliseconds, well under
/// one stall (about 100 ms) and cheap (one read of a small file).
pub const STEAL_SAMPLE_PERIOD: Duration = Duration::from_millis(5);

/// How long after a stall requests still count as touched by it, in
/// multiples of its length: the backlog a stall of S leaves takes
/// `S * u / (1 - u)` to drain at utilisation `u`, S at 50%. Beyond that the
/// drain is counted against the server (its spare capacity is its own).
pub const STALL_RECOVERY: f64 = 1.0;

/// Microseconds of one `/proc/stat` tick (USER_HZ 100).
const PROC_TICK_US: i64 = (1e6 / PROC_TICKS_PER_SEC) as i64;
/// The kernel accounts steal at the stolen CPU's next scheduler tick after it
/// runs again: at most one tick late. 10 ms covers every CONFIG_HZ from 100 up
/// (this VM's kernel has 250, 4 ms).
const STEAL_ACCOUNTING_LAG_US: i64 = 10_000;

/// A rise of one CPU's steal counter between two samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StealRise {
    /// The CPU.
    pub cpu: usize,
    /// By how many `/proc/stat` ticks (10 ms each) it rose.
    pub ticks: u64,
    /// When the sample before the rise was read, microseconds since the Unix epoch.
    pub before_unix_us: u64,
    /// When the rise was seen.
    pub seen_unix_us: u64,
}

/// An interval during which a CPU may have been away, microseconds since the
/// Unix epoch, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stall {
    /// Earliest moment the CPU may have stopped.
    pub start_unix_us: i64,
    /// Latest moment its absence may still delay work.
    pub end_unix_us: i64,
}

impl StealRise {
    /// The interval the stall behind this rise may have covered, widened by
    /// `recovery` times its length after it (the backlog it left behind):
    /// - it ended before the rise was seen, and at most the accounting lag
    ///   (one scheduler tick) before the earlier sample;
    /// - it lasted at most `ticks + 1` ticks (`/proc/stat` truncates).
    ///
    /// So `[before - lag - (ticks + 1) tick, seen + recovery * ticks tick)`.
    pub fn stall(&self, recovery: f64) -> Stall {
        let length_us = self.ticks as i64 * PROC_TICK_US;
        let start = self.before_unix_us as i64 - STEAL_ACCOUNTING_LAG_US - length_us - PROC_TICK_US;
        let end = self.seen_unix_us as i64 + (recovery.max(0.0) * length_us as f64) as i64;
        Stall { start_unix_us: start, end_unix_us: end }
    }
}

/// A thread that reads every CPU's steal counter each [`STEAL_SAMPLE_PERIOD`]
/// and keeps each rise, until stopped.
#[derive(Debug)]
pub struct StealSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<StealRise>>,
}

fn unix_us_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl StealSampler {
    /// Starts sampling (the thread inherits the caller's CPU affinity).
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start() -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new().name("steal-sampler".into()).spawn(move || {
            let mut rises = Vec::new();
            let (mut last, mut last_at) = (CpuSnapshot::take().steal_ticks(), unix_us_now());
            while !stopping.load(Ordering::Relaxed) {
                std::thread::sleep(STEAL_SAMPLE_PERIOD);
                let (now, now_at) = (CpuSnapshot::take().steal_ticks(), unix_us_now());
                rises.extend(rises_between(&last, &now, last_at, now_at));
                (last, last_at) = (now, now_at);
            }
            rises
        })?;
        Ok(Self { stop, thread })
    }

    /// Stops the thread and returns every rise it saw, in order.
    pub fn stop(self) -> Vec<StealRise> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The rises from the per-CPU steal counters `before` (read at `before_at`) to `now`.
fn rises_between(before: &[u64], now: &[u64], before_at: u64, now_at: u64) -> Vec<StealRise> {
    before
        .iter()
        .zip(now)
        .enumerate()
        .filter(|(_, (b, n))| n > b)
        .map(|(cpu, (b, n))| StealRise { cpu, ticks: n - b, before_unix_us: before_at, seen_unix_us: now_at })
        .collect()
}

/// A run's requests split by whether a stall touched them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StallSplit {
    /// Stalls (steal rises on any CPU) that overlapped the run.
    pub stalls: usize,
    /// Requests of the window.
    pub requests: u64,
    /// Of which their life (intended send to response) overlapped a stall.
    pub stalled_requests: u64,
    /// `stalled_requests / requests`, percent.
    pub stalled_pct: f64,
    /// Latency of the other requests: the server's own tail.
    pub unstalled_latency_us: Percentiles,
}

/// Sorted, disjoint intervals covering `stalls`.
fn merged(stalls: &[Stall]) -> Vec<Stall> {
    let mut sorted = stalls.to_vec();
    sorted.sort_by_key(|s| s.start_unix_us);
    let mut out: Vec<Stall> = Vec::with_capacity(sorted.len());
    for s in sorted {
        match out.last_mut() {
            Some(last) if s.start_unix_us <= last.end_unix_us => last.end_unix_us = last.end_unix_us.max(s.end_unix_us),
            _ => out.push(s),
        }
    }
    out
}

/// Whether `[start, end]` overlaps one of the sorted disjoint `intervals`.
fn overlaps(intervals: &[Stall], start: i64, end: i64) -> bool {
    let first_ending_after = intervals.partition_point(|s| s.end_unix_us <= start);
    intervals.get(first_ending_after).is_some_and(|s| s.start_unix_us <= end)
}

/// Splits the requests of `timeline` by whether their life overlapped one of `stalls`.
pub fn split(timeline: &Timeline, stalls: &[Stall]) -> StallSplit {
    let intervals = merged(stalls);
    let origin = timeline.window_start_unix_us as i64;
    let mut histogram = latency_histogram();
    let mut stalled_requests = 0;
    for &[sent_us, latency_us] in &timeline.requests {
        let start = origin.saturating_add(sent_us as i64);
        if overlaps(&intervals, start, start.saturating_add(latency_us as i64)) {
            stalled_requests += 1;
        } else {
            record_latency_us(&mut histogram, latency_us);
        }
    }
    let first = timeline.requests.iter().map(|&[sent, _]| sent).min();
    let last = timeline.requests.iter().map(|&[sent, latency]| sent.saturating_add(latency)).max();
    let stalls = first.zip(last).map_or(0, |(first, last)| {
        let (first, last) = (origin.saturating_add(first as i64), origin.saturating_add(last as i64));
        intervals.iter().filter(|s| s.end_unix_us > first && s.start_unix_us <= last).count()
    });
    let requests = timeline.requests.len() as u64;
    StallSplit {
        stalls,
        requests,
        stalled_requests,
        stalled_pct: if requests == 0 { 0.0 } else { 100.0 * stalled_requests as f64 / requests as f64 },
        unstalled_latency_us: Percentiles::of(&histogram),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000_000;

    fn stall(start_ms: i64, end_ms: i64) -> Stall {
        let at = |ms: i64| T0 as i64 + ms * 1000;
        Stall { start_unix_us: at(start_ms), end_unix_us: at(end_ms) }
    }

    #[test]
    fn a_rise_covers_its_ticks_before_the_earlier_sample_and_its_recovery_after() {
        let rise = StealRise { cpu: 1, ticks: 10, before_unix_us: T0, seen_unix_us: T0 + 5_000 };
        // 100 ms of steal, seen between T0 and T0 + 5 ms: it may have started up to
        // 10 ms (lag) + 110 ms (ticks + 1) before T0.
        assert_eq!(rise.stall(0.0), stall(-120, 5));
        // With recovery 1: the backlog of 100 ms is given another 100 ms to drain.
        assert_eq!(rise.stall(1.0), stall(-120, 105));
        assert_eq!(rise.stall(-3.0), stall(-120, 5), "a negative recovery is none");
    }

    #[test]
    fn only_rising_counters_are_rises() {
        let rises = rises_between(&[5, 7, 9], &[5, 17, 10], T0, T0 + 5_000);
        assert_eq!(
            rises,
            vec![
                StealRise { cpu: 1, ticks: 10, before_unix_us: T0, seen_unix_us: T0 + 5_000 },
                StealRise { cpu: 2, ticks: 1, before_unix_us: T0, seen_unix_us: T0 + 5_000 },
            ]
        );
        assert!(rises_between(&[3, 3], &[3, 2], T0, T0 + 1).is_empty(), "a counter that fell is no rise");
    }

    #[test]
    fn overlapping_stalls_merge_and_touching_ends_count() {
        let m = merged(&[stall(50, 60), stall(0, 10), stall(5, 20), stall(20, 30)]);
        assert_eq!(m, vec![stall(0, 30), stall(50, 60)]);
        let at = |ms: i64| T0 as i64 + ms * 1000;
        assert!(overlaps(&m, at(-5), at(0)), "a life ending as a stall starts touches it");
        assert!(!overlaps(&m, at(-5), at(-1)));
        assert!(!overlaps(&m, at(30), at(49)), "an interval's end is open");
        assert!(overlaps(&m, at(31), at(50)));
        assert!(overlaps(&m, at(52), at(53)), "inside");
        assert!(overlaps(&m, at(-100), at(100)), "around");
        assert!(!overlaps(&[], at(0), at(1)));
    }

    #[test]
    fn requests_a_stall_touched_are_left_out_of_the_unstalled_tail() {
        // 1,000 requests of 100 us, one each ms from the window's start; those
        // sent from 300 ms to 399 ms wait for a stall of [300 ms, 400 ms) and
        // take until 400 ms + 100 us.
        let requests: Vec<[u64; 2]> = (0..1000u64)
            .map(|i| {
                let sent = i * 1000;
                [sent, if (300_000..400_000).contains(&sent) { 400_100 - sent } else { 100 }]
            })
            .collect();
        let timeline = Timeline { window_start_unix_us: T0, requests };
        let clean = split(&timeline, &[]);
        assert_eq!((clean.stalls, clean.stalled_requests), (0, 0));
        assert!(clean.unstalled_latency_us.p99 > 50_000.0, "without stalls the p99 is the stall's: {clean:?}");

        let s = split(&timeline, &[stall(300, 400), stall(2000, 2100)]);
        assert_eq!(s.stalls, 1, "the stall after the last request does not count");
        assert_eq!((s.requests, s.stalled_requests), (1000, 100));
        assert!((s.stalled_pct - 10.0).abs() < 1e-9);
        let p = s.unstalled_latency_us;
        assert!((p.p99 - 100.0).abs() < 1.0 && (p.max - 100.0).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn an_empty_run_splits_into_nothing() {
        let s = split(&Timeline { window_start_unix_us: T0, requests: vec![] }, &[stall(0, 1)]);
        assert_eq!((s.stalls, s.requests, s.stalled_requests, s.stalled_pct), (0, 0, 0, 0.0));
        assert_eq!(s.unstalled_latency_us, Percentiles::default());
    }

    #[test]
    fn the_sampler_stops_and_returns_what_it_saw() {
        let sampler = StealSampler::start().expect("a thread");
        std::thread::sleep(3 * STEAL_SAMPLE_PERIOD);
        let rises = sampler.stop();
        assert!(rises.iter().all(|r| r.ticks > 0 && r.seen_unix_us > r.before_unix_us), "{rises:?}");
    }
}
