//! Stalls of the measurement: a sampler of every CPU's steal counter (and of
//! the measured processes' run-queue waits) each few milliseconds, the
//! intervals when a CPU was away, and the split of a run's requests into those
//! whose life overlapped such an interval and those that did not.
//!
//! Why: on a shared VM the host takes a vCPU away for about 100 ms at a time,
//! several times in a few seconds, and other processes' time slices keep a
//! server waiting for its CPU for 1-5 ms many times a second. One 100 ms stall
//! in a 3 s point at rate R delays about 0.1 R requests, over 1% of them, so it
//! alone sets the point's p99 whatever the server does. The p99 of the requests
//! that no stall touched is the server's own tail; the share left out says how
//! much was set aside. The same readings, kept, give the CPU time the CPUs and
//! the measured processes spent over the measured window alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::harness::machine::{
    CpuSecs, CpuSnapshot, PROC_TICKS_PER_SEC, ThreadSchedTimes, process_tree, thread_sched_times,
};
use crate::loadgen::Timeline;
use crate::loadgen::report::{Percentiles, latency_histogram, record_latency_us};

/// How often the sampler reads `/proc`: a few milliseconds, well under one
/// host stall (about 100 ms) and cheap (a few reads of small files).
pub const STALL_SAMPLE_PERIOD: Duration = Duration::from_millis(5);

/// How long after a stall requests still count as touched by it, in
/// multiples of its length: the backlog a stall of S leaves takes
/// `S * u / (1 - u)` to drain at utilisation `u`, S at 50%. Beyond that the
/// drain is counted against the server (its spare capacity is its own).
pub const STALL_RECOVERY: f64 = 1.0;

/// A measured thread's run-queue wait counts as a stall from this long up (in
/// one sample period): another process's time slice. Shorter waits (kernel
/// threads, softirq work, the sampler itself) stay counted against the server.
pub const RUN_DELAY_STALL_MIN_US: u64 = 1_000;

/// A thread of the load generator that stayed runnable between two samples
/// (it did not sleep) but ran and waited for its CPU for less than the time
/// between them by at least this much was away: with paravirtual steal
/// accounting (this VM's kernel) a thread's run time leaves out what the host
/// stole while it ran, so the gap is steal of its CPU, seen to the microsecond
/// where `/proc/stat` sees 10 ms ticks. Below this, the sampler's own reading
/// jitter. The generator's threads only: they spin through a run whatever
/// the server, while a server that blocks when idle hides its CPU's steal.
pub const ABSENT_STALL_MIN_US: u64 = 250;

/// Microseconds of one `/proc/stat` tick (USER_HZ 100).
const PROC_TICK_US: u64 = (1e6 / PROC_TICKS_PER_SEC) as u64;
/// The kernel accounts steal at the stolen CPU's next scheduler tick after it
/// runs again: at most one tick late. 10 ms covers every CONFIG_HZ from 100 up
/// (this VM's kernel has 250, 4 ms).
const STEAL_ACCOUNTING_LAG_US: u64 = 10_000;

/// What took the CPU away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StallSource {
    /// The host: a rise of this CPU's steal counter.
    Steal {
        /// The CPU.
        cpu: usize,
    },
    /// Another process: this measured thread waited for its CPU.
    RunDelay {
        /// The thread.
        tid: u32,
    },
    /// The host, seen by a thread of the load generator that stayed
    /// runnable: it neither ran nor waited for part of the time between two
    /// samples (see [`ABSENT_STALL_MIN_US`]).
    Absent {
        /// The thread.
        tid: u32,
    },
}

/// A stall seen between two samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StallEvent {
    /// What took the CPU.
    pub source: StallSource,
    /// For how long, microseconds (steal: its ticks, 10 ms each).
    pub length_us: u64,
    /// When the sample before it was read, microseconds since the Unix epoch.
    pub before_unix_us: u64,
    /// When it was seen.
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

impl StallEvent {
    /// The interval the stall may have covered, widened by `recovery` times
    /// its length after it (the backlog it left behind). It ended before it
    /// was seen:
    /// - a run-queue wait is added to `run_delay` when the thread runs again,
    ///   so it ended after the earlier sample: `[before - length, seen)`;
    /// - steal is accounted at the CPU's next scheduler tick, so it ended at
    ///   most that lag before the earlier sample, and `/proc/stat` truncates
    ///   to ticks: `[before - lag - length - 1 tick, seen)`;
    /// - a thread's absence lies between the two samples: `[before, seen)`.
    pub fn stall(&self, recovery: f64) -> Stall {
        let start = match self.source {
            StallSource::Steal { .. } => {
                self.before_unix_us as i64 - (STEAL_ACCOUNTING_LAG_US + PROC_TICK_US + self.length_us) as i64
            }
            StallSource::RunDelay { .. } => self.before_unix_us as i64 - self.length_us as i64,
            StallSource::Absent { .. } => self.before_unix_us as i64,
        };
        let end = self.seen_unix_us as i64 + (recovery.max(0.0) * self.length_us as f64) as i64;
        Stall { start_unix_us: start, end_unix_us: end }
    }
}

/// A thread that reads every CPU's steal counter, and the run-queue wait of
/// every thread of the measured processes, each [`STALL_SAMPLE_PERIOD`] and
/// keeps each stall, until stopped.
#[derive(Debug)]
pub struct StallSampler {
    stop: Arc<AtomicBool>,
    pids: Vec<u32>,
    thread: JoinHandle<(Vec<StallEvent>, Vec<CpuMark>)>,
}

/// What the sampler read of the CPUs and of the measured processes at one
/// moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuMark {
    /// When, microseconds since the Unix epoch.
    pub at_unix_us: u64,
    /// Every CPU's counters.
    pub cpus: CpuSnapshot,
    /// Per measured process, in the order given to [`StallSampler::start`]:
    /// nanoseconds the threads of it and of its descendants have run.
    pub run_ns: Vec<u64>,
}

/// The CPU time spent over a load generator's measured window, from the
/// sampler's readings nearest its start and its end (within one
/// [`STALL_SAMPLE_PERIOD`] of each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowCpu {
    /// Seconds between the two readings.
    pub secs: f64,
    /// Each CPU's time between them (`/proc/stat`).
    pub cpus: Vec<CpuSecs>,
    /// Each measured process with its descendants: how long their threads
    /// ran between them (`/proc/PID/task/TID/schedstat`).
    pub processes: Vec<ProcessRun>,
}

/// How long one measured process's threads ran.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProcessRun {
    /// The process given (its descendants' threads count in it).
    pub pid: u32,
    /// Seconds its threads ran.
    pub run_secs: f64,
}

impl WindowCpu {
    /// From `marks` (in time order, each with one `run_ns` per `pids`), the
    /// time between the readings nearest `start_unix_us` and `end_unix_us`;
    /// `None` when no two distinct readings are there.
    pub fn between(marks: &[CpuMark], pids: &[u32], start_unix_us: u64, end_unix_us: u64) -> Option<Self> {
        let nearest = |t: u64| marks.iter().min_by_key(|m| m.at_unix_us.abs_diff(t));
        let (first, last) = (nearest(start_unix_us)?, nearest(end_unix_us)?);
        if last.at_unix_us <= first.at_unix_us {
            return None;
        }
        let processes = pids
            .iter()
            .enumerate()
            .filter_map(|(i, &pid)| {
                let ran = last.run_ns.get(i)?.saturating_sub(*first.run_ns.get(i)?);
                Some(ProcessRun { pid, run_secs: ran as f64 / 1e9 })
            })
            .collect();
        Some(Self {
            secs: (last.at_unix_us - first.at_unix_us) as f64 / 1e6,
            cpus: first.cpus.secs_until(&last.cpus),
            processes,
        })
    }

    /// Seconds the threads of measured process `pid` ran (0 when not measured).
    pub fn run_secs_of(&self, pid: u32) -> f64 {
        self.processes.iter().filter(|p| p.pid == pid).map(|p| p.run_secs).sum()
    }
}

fn unix_us_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// What one sample read.
#[derive(Debug, Default)]
struct Sample {
    at_unix_us: u64,
    steal_ticks: Vec<u64>,
    threads: Vec<ThreadSchedTimes>,
}

impl Sample {
    /// Reads the stall counters and, with them, the CPU mark: `trees` are
    /// the measured processes, each with its descendants; absences are
    /// looked for only in the threads of `trees[absence_tree]` (the load
    /// generator's own: runnable throughout whatever the server, so the same
    /// for every server measured; a server that blocks when idle would show
    /// fewer of its absences than one that spins).
    fn take(trees: &[Vec<u32>], absence_tree: Option<usize>, sampler_tid: Option<u32>) -> (Self, CpuMark) {
        let at_unix_us = unix_us_now();
        let cpus = CpuSnapshot::take();
        let mut measured = Vec::new();
        let mut run_ns = Vec::with_capacity(trees.len());
        for (i, tree) in trees.iter().enumerate() {
            let threads: Vec<_> = tree.iter().flat_map(|&pid| thread_sched_times(pid)).collect();
            run_ns.push(threads.iter().map(|t| t.run_ns).sum());
            let absences = absence_tree == Some(i);
            measured.extend(
                threads
                    .into_iter()
                    .filter(|t| Some(t.tid) != sampler_tid)
                    .map(|t| ThreadSchedTimes { runnable_switches: t.runnable_switches.filter(|_| absences), ..t }),
            );
        }
        let sample = Sample { at_unix_us, steal_ticks: cpus.steal_ticks(), threads: measured };
        (sample, CpuMark { at_unix_us, cpus, run_ns })
    }
}

/// This thread's id, from `/proc/thread-self` (`PID/task/TID`).
fn own_tid() -> Option<u32> {
    std::fs::read_link("/proc/thread-self").ok()?.file_name()?.to_str()?.parse().ok()
}

impl StallSampler {
    /// Starts sampling steal; with `pids`, also the run-queue waits of every
    /// thread of those processes, of their descendants and of this process
    /// (but the sampler's own), and the absences of this process's threads.
    /// The thread inherits the caller's CPU affinity.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start(pids: Option<&[u32]>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let pids = pids.map(<[u32]>::to_vec);
        let mut trees: Vec<Vec<u32>> =
            pids.iter().flatten().map(|&pid| process_tree(pid).unwrap_or_else(|| vec![pid])).collect();
        let absence_tree = pids.is_some().then_some(trees.len());
        if pids.is_some() {
            trees.push(vec![std::process::id()]);
        }
        let thread = std::thread::Builder::new().name("stall-sampler".into()).spawn(move || {
            let own = own_tid();
            let mut events = Vec::new();
            let (mut last, mark) = Sample::take(&trees, absence_tree, own);
            let mut marks = vec![mark];
            while !stopping.load(Ordering::Relaxed) {
                std::thread::sleep(STALL_SAMPLE_PERIOD);
                let (now, mark) = Sample::take(&trees, absence_tree, own);
                events.extend(stalls_between(&last, &now));
                marks.push(mark);
                last = now;
            }
            (events, marks)
        })?;
        Ok(Self { stop, pids: pids.unwrap_or_default(), thread })
    }

    /// Stops the thread and returns every stall it saw, in order.
    pub fn stop(self) -> Vec<StallEvent> {
        self.stop_with_window(None).0
    }

    /// Stops the thread and returns every stall it saw, in order, and the CPU
    /// time spent over `window` (`[start, end)`, microseconds since the Unix
    /// epoch) by every CPU and every measured process.
    pub fn stop_with_window(self, window: Option<(u64, u64)>) -> (Vec<StallEvent>, Option<WindowCpu>) {
        self.stop.store(true, Ordering::Relaxed);
        let (events, marks) = self.thread.join().unwrap_or_default();
        let cpu = window.and_then(|(start, end)| WindowCpu::between(&marks, &self.pids, start, end));
        (events, cpu)
    }
}

/// The stalls from sample `before` to `now`: each CPU's steal rise, each
/// thread's run-queue wait of at least [`RUN_DELAY_STALL_MIN_US`], and each
/// absence of at least [`ABSENT_STALL_MIN_US`] of a thread runnable throughout.
fn stalls_between(before: &Sample, now: &Sample) -> Vec<StallEvent> {
    let event = |source, length_us| StallEvent {
        source,
        length_us,
        before_unix_us: before.at_unix_us,
        seen_unix_us: now.at_unix_us,
    };
    let steal = before
        .steal_ticks
        .iter()
        .zip(&now.steal_ticks)
        .enumerate()
        .filter(|(_, (b, n))| n > b)
        .map(|(cpu, (b, n))| event(StallSource::Steal { cpu }, (n - b) * PROC_TICK_US));
    let wall_us = now.at_unix_us.saturating_sub(before.at_unix_us);
    let threads = now.threads.iter().filter_map(|t| Some((before.threads.iter().find(|b| b.tid == t.tid)?, t)));
    let mut waits = Vec::new();
    let mut absences = Vec::new();
    for (was, is) in threads {
        let waited_us = is.wait_ns.saturating_sub(was.wait_ns) / 1000;
        if waited_us >= RUN_DELAY_STALL_MIN_US {
            waits.push(event(StallSource::RunDelay { tid: is.tid }, waited_us));
        }
        let stayed_runnable = was.runnable_switches.is_some() && was.runnable_switches == is.runnable_switches;
        let ran_us = is.run_ns.saturating_sub(was.run_ns) / 1000;
        let absent_us = wall_us.saturating_sub(ran_us + waited_us);
        if stayed_runnable && absent_us >= ABSENT_STALL_MIN_US {
            absences.push(event(StallSource::Absent { tid: is.tid }, absent_us));
        }
    }
    steal.chain(waits).chain(absences).collect()
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

impl StallSplit {
    /// The p99 of the unstalled requests, microseconds; `None` when a stall
    /// touched every request (there is no tail of the server's own to give).
    pub fn unstalled_p99_us(&self) -> Option<f64> {
        (self.stalled_requests < self.requests).then_some(self.unstalled_latency_us.p99)
    }
}

/// Sorted, disjoint intervals covering `stalls`.
pub fn merged(stalls: &[Stall]) -> Vec<Stall> {
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
    fn a_stall_covers_its_length_before_the_earlier_sample_and_its_recovery_after() {
        let event = |source, length_us| StallEvent { source, length_us, before_unix_us: T0, seen_unix_us: T0 + 5_000 };
        // 100 ms of steal, seen between T0 and T0 + 5 ms: it may have started up to
        // 10 ms (lag) + 110 ms (ticks + 1) before T0.
        let steal = event(StallSource::Steal { cpu: 1 }, 100_000);
        assert_eq!(steal.stall(0.0), stall(-120, 5));
        // With recovery 1: the backlog of 100 ms is given another 100 ms to drain.
        assert_eq!(steal.stall(1.0), stall(-120, 105));
        assert_eq!(steal.stall(-3.0), stall(-120, 5), "a negative recovery is none");
        // A run-queue wait of 3 ms ended after T0: it started at most 3 ms before.
        assert_eq!(event(StallSource::RunDelay { tid: 7 }, 3_000).stall(1.0), stall(-3, 8));
    }

    /// A thread asleep at the sample that has waited `wait_ns` for its CPU in all.
    fn waiting(tid: u32, wait_ns: u64) -> ThreadSchedTimes {
        ThreadSchedTimes { tid, run_ns: 0, wait_ns, runnable_switches: None }
    }

    #[test]
    fn rising_steal_and_long_waits_are_stalls() {
        let before = Sample {
            at_unix_us: T0,
            steal_ticks: vec![5, 7, 9],
            threads: vec![waiting(10, 0), waiting(11, 5_000_000)],
        };
        let now = Sample {
            at_unix_us: T0 + 5_000,
            steal_ticks: vec![5, 17, 10],
            // Thread 10 waited 999 us (not a stall), 11 waited 2 ms; 12 is new (no earlier figure).
            threads: vec![waiting(10, 999_000), waiting(11, 7_000_000), waiting(12, 9_000_000)],
        };
        let event = |source, length_us| StallEvent { source, length_us, before_unix_us: T0, seen_unix_us: T0 + 5_000 };
        assert_eq!(
            stalls_between(&before, &now),
            vec![
                event(StallSource::Steal { cpu: 1 }, 100_000),
                event(StallSource::Steal { cpu: 2 }, 10_000),
                event(StallSource::RunDelay { tid: 11 }, 2_000),
            ]
        );
        let fell = Sample { at_unix_us: T0 + 1, steal_ticks: vec![3, 3], threads: vec![] };
        let after = Sample { at_unix_us: T0 + 2, steal_ticks: vec![3, 2], threads: vec![] };
        assert!(stalls_between(&fell, &after).is_empty(), "a counter that fell is no rise");
    }

    #[test]
    fn only_the_generators_threads_are_watched_for_absences() {
        let me = vec![vec![std::process::id()]];
        let (watched, _) = Sample::take(&me, Some(0), None);
        assert!(watched.threads.iter().any(|t| t.runnable_switches.is_some()), "this thread runs as it reads");
        let (unwatched, _) = Sample::take(&me, None, None);
        assert!(unwatched.threads.iter().all(|t| t.runnable_switches.is_none()), "{:?}", unwatched.threads);
    }

    #[test]
    fn a_runnable_thread_that_neither_ran_nor_waited_was_away() {
        let runnable = |tid, run_us: u64, wait_us: u64, switches| ThreadSchedTimes {
            tid,
            run_ns: run_us * 1000,
            wait_ns: wait_us * 1000,
            runnable_switches: Some(switches),
        };
        let before = Sample {
            at_unix_us: T0,
            steal_ticks: vec![],
            threads: vec![runnable(1, 0, 0, 4), runnable(2, 0, 0, 4), runnable(3, 0, 0, 4), waiting(4, 0)],
        };
        let now = Sample {
            at_unix_us: T0 + 5_000,
            steal_ticks: vec![],
            threads: vec![
                // Ran 4 ms and waited 0.5 ms of 5 ms, never asleep: 0.5 ms away.
                runnable(1, 4_000, 500, 4),
                // The same times, but it slept in between: no absence to tell.
                runnable(2, 4_000, 500, 5),
                // Away for less than the bound.
                runnable(3, 4_600, 200, 4),
                // Asleep when the earlier sample was read.
                runnable(4, 0, 0, 0),
            ],
        };
        let away = StallEvent {
            source: StallSource::Absent { tid: 1 },
            length_us: 500,
            before_unix_us: T0,
            seen_unix_us: T0 + 5_000,
        };
        assert_eq!(stalls_between(&before, &now), vec![away]);
        // It lies between the two samples, and its recovery follows.
        assert_eq!(away.stall(1.0), Stall { start_unix_us: T0 as i64, end_unix_us: T0 as i64 + 5_500 });
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
        assert_eq!(s.unstalled_p99_us(), None);
    }

    #[test]
    fn a_run_every_request_of_which_a_stall_touched_has_no_unstalled_p99() {
        // Seen at 00:20 on 2026-12-06: tokio-http at 80k req/s, 100% stalled, showed "p99 0 us unstalled".
        let timeline = Timeline { window_start_unix_us: T0, requests: vec![[0, 200_000], [1_000, 150_000]] };
        let s = split(&timeline, &[stall(50, 60)]);
        assert_eq!((s.requests, s.stalled_requests), (2, 2));
        assert_eq!(s.unstalled_p99_us(), None);
        let s = split(&timeline, &[stall(500, 600)]);
        assert_eq!(s.unstalled_p99_us().map(|p| (p / 1000.0).round()), Some(200.0));
    }

    #[test]
    fn the_sampler_stops_and_returns_what_it_saw() {
        let sampler = StallSampler::start(Some(&[std::process::id()])).expect("a thread");
        std::thread::sleep(3 * STALL_SAMPLE_PERIOD);
        let events = sampler.stop();
        assert!(events.iter().all(|e| e.length_us > 0 && e.seen_unix_us > e.before_unix_us), "{events:?}");
        assert!(own_tid().is_some(), "/proc/thread-self names this thread");
    }

    #[test]
    fn the_window_cpu_is_read_between_the_marks_nearest_its_ends() {
        let cpus = |user: u64, softirq: u64| CpuSnapshot::parse(&format!("cpu0 {user} 0 0 100 0 0 {softirq} 0\n"));
        let mark = |ms: u64, user, softirq, run_ns: Vec<u64>| CpuMark {
            at_unix_us: T0 + ms * 1000,
            cpus: cpus(user, softirq),
            run_ns,
        };
        let marks = [
            mark(0, 0, 0, vec![0, 0]),
            mark(5, 1, 0, vec![10_000_000, 1]),
            mark(1005, 61, 20, vec![510_000_000, 2]),
            mark(1010, 62, 20, vec![520_000_000, 3]),
        ];
        // The window [4 ms, 1006 ms) is read from the marks at 5 and 1005 ms.
        let w = WindowCpu::between(&marks, &[42, 7], T0 + 4_000, T0 + 1_006_000).expect("two marks");
        assert!((w.secs - 1.0).abs() < 1e-9, "{w:?}");
        assert!((w.cpus[0].busy - 0.8).abs() < 1e-9 && (w.cpus[0].softirq - 0.2).abs() < 1e-9, "{w:?}");
        assert!((w.run_secs_of(42) - 0.5).abs() < 1e-9 && w.run_secs_of(99) == 0.0, "{w:?}");
        assert_eq!(WindowCpu::between(&marks[..1], &[42], T0, T0 + 1_000_000), None, "one mark is no window");

        // A live sampler: this process ran, and the window has the CPUs' time.
        let sampler = StallSampler::start(Some(&[std::process::id()])).expect("a thread");
        let start = unix_us_now();
        let spin = std::time::Instant::now();
        while spin.elapsed() < 4 * STALL_SAMPLE_PERIOD {
            std::hint::black_box(0u64);
        }
        let (_, cpu) = sampler.stop_with_window(Some((start, unix_us_now())));
        let cpu = cpu.expect("marks around the window");
        assert!(cpu.run_secs_of(std::process::id()) > 0.0 && !cpu.cpus.is_empty(), "{cpu:?}");
    }
}
