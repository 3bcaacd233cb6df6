//! What the echo bench measures and how: the window, each connection's
//! round trips and latencies, the requests, and the CPU of this process and of
//! the others.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::ix_pair::LoopTotals;
use crate::{MESSAGE_BYTES, STALL_LIMIT};

/// The latency histogram's range: 1 ns to 60 s, three significant digits.
const LATENCY_MAX_NS: u64 = 60_000_000_000;

/// What a client does in one repetition: how many connections, for how
/// long, and where it publishes the window once they are all up (for the
/// samplers that wait for it).
#[derive(Debug, Clone)]
pub struct Load {
    pub connections: usize,
    timing: Timing,
    pub window: SharedWindow,
}

impl Load {
    pub fn new(connections: usize, timing: Timing) -> Load {
        Load { connections, timing, window: SharedWindow::default() }
    }

    /// Opens the window (after the warm-up, from now) and publishes it.
    pub fn open_window(&self) -> Window {
        *self.window.get_or_init(|| Window::after_warmup(self.timing))
    }
}

/// An empty latency histogram, in nanoseconds.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("valid histogram bounds")
}

/// How long each measurement lasts.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub measure: Duration,
}

/// The measured interval: round trips that start inside it count.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    /// A window that opens after the warm-up, from now.
    pub fn after_warmup(timing: Timing) -> Window {
        let start = Instant::now() + timing.warmup;
        Window { start, end: start + timing.measure }
    }

    /// How long a connection task may still take, stall limit included.
    pub fn time_left(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now()) + STALL_LIMIT
    }
}

/// One connection's (or a whole run's) round trips in the window.
#[derive(Debug)]
pub struct Recorder {
    window: Window,
    pub round_trips: u64,
    pub latency_ns: Histogram<u64>,
}

impl Recorder {
    pub fn new(window: Window) -> Recorder {
        Recorder { window, round_trips: 0, latency_ns: latency_histogram() }
    }

    /// The start of the next round trip, or `None` once the window closed.
    pub fn begin(&self) -> Option<Instant> {
        let now = Instant::now();
        (now < self.window.end).then_some(now)
    }

    /// Counts a round trip begun at `started` if it began inside the window.
    pub fn end(&mut self, started: Instant) {
        if started >= self.window.start {
            self.round_trips += 1;
            self.latency_ns.saturating_record(started.elapsed().as_nanos() as u64);
        }
    }

    /// Adds another connection's round trips and latencies to these.
    pub fn merge(&mut self, other: &Recorder) {
        self.round_trips += other.round_trips;
        self.latency_ns.add(&other.latency_ns).expect("histograms of the same bounds");
    }
}

/// Waits for every connection's outcome in turn and merges what they
/// recorded; the first failure fails the run.
pub async fn merge_connections(
    window: Window,
    outcomes: impl IntoIterator<Item = impl Future<Output = Result<Recorder, String>>>,
) -> Result<Recorder, String> {
    let mut total = Recorder::new(window);
    for outcome in outcomes {
        total.merge(&outcome.await?);
    }
    Ok(total)
}

/// The error of a connection that outlived its window by [`STALL_LIMIT`].
pub fn stalled<E>(_: E) -> String {
    format!("a connection stalled for {STALL_LIMIT:?} past its window")
}

/// The error of a connection task that panicked or was cancelled.
pub fn task_failed(error: impl std::fmt::Display) -> String {
    format!("connection task: {error}")
}

/// The request of connection `id`: bytes that differ per connection, so an
/// answer crossed between connections is caught.
pub fn request(id: usize) -> [u8; MESSAGE_BYTES] {
    std::array::from_fn(|i| ((i * 31 + id * 7) % 251) as u8)
}

/// Checks that `got` is the start of what the echo still owes, `expected_rest`.
pub fn check_echo(expected_rest: &[u8], got: &[u8]) -> Result<(), String> {
    if got.len() > expected_rest.len() || got != &expected_rest[..got.len()] {
        return Err(format!(
            "the echo differs from the request ({} bytes where {} were due)",
            got.len(),
            expected_rest.len()
        ));
    }
    Ok(())
}

/// What one repetition of one case measured.
#[derive(Debug)]
pub struct Sample {
    pub recorded: Recorder,
    /// CPUs' worth of time the whole process (server and client) used over
    /// the window.
    pub process_cpu: Option<f64>,
    /// The IX cores' loop counters over the window: (server, client).
    pub cores: Option<(LoopTotals, LoopTotals)>,
}

/// The window, once the client knows it (it opens after every connection is
/// up); both runtimes' cores count their loops over it.
pub type SharedWindow = Arc<OnceLock<Window>>;
/// How often a core looks whether the window is known yet (before it opens).
pub const WINDOW_LOOKUP_INTERVAL: Duration = Duration::from_millis(1);

/// How long the process CPU sampler waits for the window to be published.
const WINDOW_PUBLISH_LIMIT: Duration = Duration::from_secs(60);

/// CPUs' worth of user and system time this process (server and client
/// together) uses over the window, read from a thread that sleeps meanwhile.
/// Join it only once the window was published (it gives up after
/// [`WINDOW_PUBLISH_LIMIT`] otherwise).
pub fn sample_process_cpu(window: SharedWindow) -> std::thread::JoinHandle<Option<f64>> {
    std::thread::spawn(move || {
        let give_up = Instant::now() + WINDOW_PUBLISH_LIMIT;
        let window = loop {
            if let Some(window) = window.get() {
                break *window;
            }
            if Instant::now() > give_up {
                return None;
            }
            std::thread::sleep(WINDOW_LOOKUP_INTERVAL);
        };
        std::thread::sleep(window.start.saturating_duration_since(Instant::now()));
        let before = CpuTicks::now()?;
        std::thread::sleep(window.end.saturating_duration_since(Instant::now()));
        before.own_since()
    })
}

/// Clock ticks per second of `/proc` CPU times (USER_HZ: 100 on Linux,
/// fixed by its ABI).
const PROC_TICKS_PER_SEC: f64 = 100.0;

/// User-mode CPU time of the whole machine and of this process, to tell how
/// much of the machine other processes (compilers, say) took during a case,
/// and this process's user + system time, to tell what the case cost.
///
/// `ix-benches` (`benches/src/harness/machine.rs`) reads the same `/proc`
/// counters per CPU and per process for the harness; this bench cannot use
/// that crate, which depends on `ix-runtime`.
#[derive(Debug, Clone, Copy)]
pub struct CpuTicks {
    machine_user: u64,
    own_user: u64,
    own_total: u64,
    at: Instant,
}

impl CpuTicks {
    /// The counters now; `None` where `/proc` cannot be read.
    pub fn now() -> Option<CpuTicks> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let mut cpu = stat.lines().next()?.split_whitespace().skip(1).map(|f| f.parse::<u64>().ok());
        let machine_user = cpu.next()?? + cpu.next()??; // user + nice
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name's closing parenthesis start at field 3
        // (state); utime and stime are fields 14 and 15.
        let mut times = own.rsplit_once(')')?.1.split_whitespace().skip(11).map(|f| f.parse::<u64>().ok());
        let own_user = times.next()??;
        let own_total = own_user + times.next()??;
        Some(CpuTicks { machine_user, own_user, own_total, at: Instant::now() })
    }

    /// CPUs' worth of user and system time this process used since `self`.
    pub fn own_since(&self) -> Option<f64> {
        let now = CpuTicks::now()?;
        let used = now.own_total - self.own_total;
        Some(used as f64 / PROC_TICKS_PER_SEC / now.at.duration_since(self.at).as_secs_f64())
    }

    /// CPUs' worth of user time that other processes used since `self`.
    pub fn others_since(&self) -> Option<f64> {
        let now = CpuTicks::now()?;
        let others = (now.machine_user - self.machine_user).saturating_sub(now.own_user - self.own_user);
        Some(others as f64 / PROC_TICKS_PER_SEC / now.at.duration_since(self.at).as_secs_f64())
    }
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
