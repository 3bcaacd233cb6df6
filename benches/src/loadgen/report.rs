//! What a run measured: counters, latency from the intended send time in an
//! HDR histogram, and the JSON form with the raw histogram buckets.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::harness::stalls::{Stall, StallSplit, WindowCpu};
use crate::loadgen::protocol::Outcome;

/// Highest latency the histograms track, in nanoseconds (larger values are
/// clamped to it): 100 s.
const HISTOGRAM_MAX_NS: u64 = 100_000_000_000;
/// Significant decimal digits kept by the histograms (0.1% resolution).
const HISTOGRAM_SIGFIG: u8 = 3;

/// Failures, by kind. A failed request has no latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// Connection attempts that failed or timed out.
    pub connect: u64,
    /// Requests lost to a reset, an early close or another I/O error.
    pub io: u64,
    /// Responses that broke the protocol (the connection is then closed).
    pub protocol: u64,
    /// Well-formed error answers (HTTP non-2xx, memcached `*ERROR`,
    /// `NOT_STORED`); these have a latency and are in the histogram too.
    pub error_replies: u64,
}

impl ErrorCounts {
    /// Every failure and error answer.
    pub fn total(&self) -> u64 {
        self.connect + self.io + self.protocol + self.error_replies
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest value.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// The percentiles of `h`, whose values are nanoseconds.
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// One bucket of the latency histogram: `count` values whose highest
/// equivalent value is `value_ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Upper edge, in nanoseconds.
    pub value_ns: u64,
    /// Values recorded in it.
    pub count: u64,
}

/// The result of one run, as printed and as written to JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `http` or `memcache`.
    pub protocol: String,
    /// `open` (Poisson arrivals) or `closed`.
    pub mode: String,
    /// The target rate of an open-loop run, requests per second.
    pub offered_rate: Option<f64>,
    /// Connections opened.
    pub connections: usize,
    /// Length of the measured window (after warm-up), in seconds.
    pub window_secs: f64,
    /// Requests whose intended send time fell in the window.
    pub scheduled: u64,
    /// Requests written to a socket during the window.
    pub sent: u64,
    /// Responses completed during the window.
    pub completed: u64,
    /// Requests of the window answered with success (not a miss, not an
    /// error reply): with `scheduled`, the share of requests that succeeded.
    #[serde(default)]
    pub succeeded: u64,
    /// `sent / window_secs`.
    pub send_rate: f64,
    /// `completed / window_secs`: the achieved throughput.
    pub throughput: f64,
    /// Failures by kind.
    pub errors: ErrorCounts,
    /// memcached `get`s that found nothing.
    pub misses: u64,
    /// Scheduled requests of the window still waiting for a free connection
    /// when the run stopped; recorded in the histogram at the time they had
    /// waited by then (a lower bound of their latency).
    pub unsent: u64,
    /// Requests of the window sent but unanswered when the run stopped;
    /// recorded like `unsent`.
    pub unanswered: u64,
    /// Latency from the intended send time to the complete response.
    pub latency_us: Percentiles,
    /// How late requests were written after their intended time (the client's
    /// own lag: queueing for a connection plus timer and loop delays).
    pub send_lag_us: Percentiles,
    /// Connections opened for requests of the window (every request with
    /// [`ConnectionUse::OnePerRequest`], reconnects otherwise).
    ///
    /// [`ConnectionUse::OnePerRequest`]: crate::loadgen::ConnectionUse::OnePerRequest
    #[serde(default)]
    pub connects: u64,
    /// Time from starting a connection attempt to its completion, for the
    /// `connects` above (failed attempts are in `errors.connect`).
    #[serde(default)]
    pub connect_us: Percentiles,
    /// The latency histogram's raw buckets.
    pub histogram: Vec<Bucket>,
    /// CPU seconds (user + system) the generator's process used over its
    /// whole life, set by `ixload` (`None` from the library).
    #[serde(default)]
    pub process_cpu_secs: Option<f64>,
    /// With [`LoadConfig::timeline`](super::LoadConfig::timeline): the
    /// window's start as microseconds since the Unix epoch, and per request of
    /// the window, in order of completion, its intended send time in
    /// microseconds after that start and its latency in microseconds (an
    /// abandoned request's as recorded in the histogram). Lets a run's latency
    /// be lined up with what else happened on the machine at the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Timeline>,
    /// With host stalls sampled during the run (`ixload --stalls`): the
    /// requests that a stall touched, and the latency of the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalls: Option<StallSplit>,
    /// With host stalls sampled: the intervals the split set aside (merged,
    /// in time order, each widened by its recovery), to tell the slow
    /// requests a stall explains from those it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_intervals: Option<Vec<Stall>>,
    /// With stalls sampled (`ixload --stalls`): every CPU's time and the
    /// measured processes' (`--stall-pids`) over the measured window alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_cpu: Option<WindowCpu>,
}

/// Every request of a window, for lining latency up with time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// The window's start, in microseconds since the Unix epoch.
    pub window_start_unix_us: u64,
    /// `[intended send time after the window's start, latency]`, both in microseconds.
    pub requests: Vec<[u64; 2]>,
}

impl Report {
    /// A short human-readable summary.
    pub fn summary(&self) -> String {
        let stalls = self.stalls.map_or_else(String::new, |s| {
            let l = &s.unstalled_latency_us;
            format!(
                "\nhost stalls: {} touched {} of {} requests ({:.1}%); the others' latency us: p50 {:.1}  p99 {:.1}  \
                 max {:.1}",
                s.stalls, s.stalled_requests, s.requests, s.stalled_pct, l.p50, l.p99, l.max
            )
        });
        let l = &self.latency_us;
        let e = &self.errors;
        let offered = self.offered_rate.map_or_else(|| "closed loop".to_string(), |r| format!("offered {r:.0}/s"));
        format!(
            "{} {}, {} connections, {:.1} s window: sent {:.0}/s, throughput {:.0}/s\n\
             latency us: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}\n\
             send lag us: p50 {:.1}  p99 {:.1}  max {:.1}\n\
             connect us: p50 {:.1}  p99 {:.1}  max {:.1} ({} connects); succeeded {} of {} scheduled\n\
             errors: connect {}  io {}  protocol {}  error replies {}; misses {}; unsent {}  unanswered {}{stalls}",
            self.protocol,
            offered,
            self.connections,
            self.window_secs,
            self.send_rate,
            self.throughput,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            l.mean,
            self.send_lag_us.p50,
            self.send_lag_us.p99,
            self.send_lag_us.max,
            self.connect_us.p50,
            self.connect_us.p99,
            self.connect_us.max,
            self.connects,
            self.succeeded,
            self.scheduled,
            e.connect,
            e.io,
            e.protocol,
            e.error_replies,
            self.misses,
            self.unsent,
            self.unanswered,
        )
    }
}

/// Collects one run's measurements; only requests of the measured window
/// `[window_start, window_end)` count.
#[derive(Debug)]
pub(crate) struct Recorder {
    window_start: Instant,
    window_end: Instant,
    latency: Histogram<u64>,
    send_lag: Histogram<u64>,
    connect: Histogram<u64>,
    pub(crate) scheduled: u64,
    sent: u64,
    completed: u64,
    succeeded: u64,
    pub(crate) errors: ErrorCounts,
    misses: u64,
    unsent: u64,
    unanswered: u64,
    timeline: Option<Timeline>,
}

/// An empty histogram of nanoseconds, as the report's.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, HISTOGRAM_SIGFIG).expect("constant bounds are valid")
}

/// Records a latency of `us` microseconds in a histogram of [`latency_histogram`].
pub(crate) fn record_latency_us(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(nanos(Duration::from_micros(us)));
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).clamp(1, HISTOGRAM_MAX_NS)
}

impl Recorder {
    /// Records the requests intended in `[window_start, window_end)`, each
    /// one in a timeline too when `timeline` is set.
    pub(crate) fn new(window_start: Instant, window_end: Instant, timeline: bool) -> Self {
        let timeline = timeline.then(|| {
            let ahead = window_start.saturating_duration_since(Instant::now());
            let start = SystemTime::now() + ahead;
            let since_epoch = start.duration_since(UNIX_EPOCH).unwrap_or_default();
            Timeline { window_start_unix_us: micros(since_epoch), requests: Vec::new() }
        });
        Self {
            window_start,
            window_end,
            latency: latency_histogram(),
            send_lag: latency_histogram(),
            connect: latency_histogram(),
            scheduled: 0,
            sent: 0,
            completed: 0,
            succeeded: 0,
            errors: ErrorCounts::default(),
            misses: 0,
            unsent: 0,
            unanswered: 0,
            timeline,
        }
    }

    /// Records one request's latency in the histogram and the timeline.
    fn record_latency(&mut self, intended: Instant, latency: Duration) {
        self.latency.saturating_record(nanos(latency));
        let window_start = self.window_start;
        if let Some(timeline) = &mut self.timeline {
            timeline.requests.push([micros(intended.saturating_duration_since(window_start)), micros(latency)]);
        }
    }

    pub(crate) fn in_window(&self, t: Instant) -> bool {
        t >= self.window_start && t < self.window_end
    }

    /// A request intended at `intended` was written at `sent_at`.
    pub(crate) fn sent(&mut self, intended: Instant, sent_at: Instant) {
        if self.in_window(sent_at) {
            self.sent += 1;
        }
        if self.in_window(intended) {
            self.send_lag.saturating_record(nanos(sent_at.saturating_duration_since(intended)));
        }
    }

    /// A connection for the request intended at `intended` took `took` to open.
    pub(crate) fn connected(&mut self, intended: Instant, took: Duration) {
        if self.in_window(intended) {
            self.connect.saturating_record(nanos(took));
        }
    }

    /// Its complete response arrived at `done_at`.
    pub(crate) fn answered(&mut self, intended: Instant, done_at: Instant, outcome: Outcome) {
        if self.in_window(done_at) {
            self.completed += 1;
        }
        if self.in_window(intended) {
            self.record_latency(intended, done_at.saturating_duration_since(intended));
            match outcome {
                Outcome::Success => self.succeeded += 1,
                Outcome::Miss => self.misses += 1,
                Outcome::ErrorReply => self.errors.error_replies += 1,
            }
        }
    }

    /// A request of the window that the run stopped before it was sent
    /// (`sent == false`) or answered, at `stopped_at`.
    pub(crate) fn abandoned(&mut self, intended: Instant, sent: bool, stopped_at: Instant) {
        if self.in_window(intended) {
            if sent {
                self.unanswered += 1
            } else {
                self.unsent += 1
            }
            self.record_latency(intended, stopped_at.saturating_duration_since(intended));
        }
    }

    pub(crate) fn report(&self, protocol: &str, offered_rate: Option<f64>, connections: usize) -> Report {
        let window_secs = (self.window_end - self.window_start).as_secs_f64();
        let histogram = self
            .latency
            .iter_recorded()
            .map(|v| Bucket { value_ns: v.value_iterated_to(), count: v.count_at_value() })
            .collect();
        Report {
            protocol: protocol.to_string(),
            mode: if offered_rate.is_some() { "open" } else { "closed" }.to_string(),
            offered_rate,
            connections,
            window_secs,
            scheduled: self.scheduled,
            sent: self.sent,
            completed: self.completed,
            succeeded: self.succeeded,
            send_rate: self.sent as f64 / window_secs,
            throughput: self.completed as f64 / window_secs,
            errors: self.errors,
            misses: self.misses,
            unsent: self.unsent,
            unanswered: self.unanswered,
            latency_us: Percentiles::of(&self.latency),
            send_lag_us: Percentiles::of(&self.send_lag),
            connects: self.connect.len(),
            connect_us: Percentiles::of(&self.connect),
            histogram,
            process_cpu_secs: None,
            timeline: self.timeline.clone(),
            stalls: None,
            stall_intervals: None,
            window_cpu: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_window_counts_and_abandoned_requests_are_lower_bounds() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut r = Recorder::new(t0 + ms(100), t0 + ms(1100), false);
        r.sent(t0, t0);
        r.answered(t0, t0 + ms(1), Outcome::Success); // warm-up: not counted
        for i in 0..100 {
            let at = t0 + ms(200 + i);
            r.sent(at, at);
            r.answered(at, at + ms(2), if i % 10 == 0 { Outcome::Miss } else { Outcome::Success });
        }
        r.abandoned(t0 + ms(1000), false, t0 + ms(1500));
        r.connected(t0, ms(9)); // warm-up: not counted
        r.connected(t0 + ms(300), ms(3));
        let rep = r.report("memcache", Some(100.0), 4);
        assert_eq!((rep.sent, rep.completed, rep.misses, rep.unsent), (100, 100, 10, 1));
        assert_eq!(rep.succeeded, 90, "misses are not successes");
        assert_eq!(rep.connects, 1);
        assert!((rep.connect_us.max - 3000.0).abs() < 3.0, "{:?}", rep.connect_us);
        assert!((rep.latency_us.p50 - 2000.0).abs() < 3.0, "{:?}", rep.latency_us);
        assert!((rep.latency_us.max - 500_000.0).abs() < 500.0, "{:?}", rep.latency_us);
        assert_eq!(rep.histogram.iter().map(|b| b.count).sum::<u64>(), 101);
        let json = serde_json::to_string(&rep).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), rep);
        assert!(rep.timeline.is_none() && !json.contains("timeline"));
    }

    #[test]
    fn the_timeline_holds_each_request_of_the_window_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut r = Recorder::new(t0 + ms(100), t0 + ms(1100), true);
        r.answered(t0, t0 + ms(1), Outcome::Success); // warm-up: not in the timeline
        r.answered(t0 + ms(150), t0 + ms(153), Outcome::Success);
        r.answered(t0 + ms(400), t0 + ms(420), Outcome::Miss);
        r.abandoned(t0 + ms(1000), true, t0 + ms(1500));
        r.answered(t0 + ms(1100), t0 + ms(1101), Outcome::Success); // after the window
        let rep = r.report("http", Some(10.0), 1);
        let timeline = rep.timeline.as_ref().expect("asked for");
        assert_eq!(timeline.requests, vec![[50_000, 3_000], [300_000, 20_000], [900_000, 500_000]]);
        let start = UNIX_EPOCH + Duration::from_micros(timeline.window_start_unix_us);
        let lead = start.duration_since(SystemTime::now()).unwrap_or_default();
        assert!(lead <= ms(100), "the window starts 100 ms after the recorder, not {lead:?}");
        let json = serde_json::to_string(&rep).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), rep);
    }
}
