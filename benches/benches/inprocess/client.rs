//! The client side: `ixload`'s closed-loop generator (its HTTP/1.1 and
//! memcached protocol code, every response parsed strictly) as a task of a
//! one-core IX runtime on port 1 of the `mem` wire, and the server core's CPU
//! time over the generator's measured window.

use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use ix_benches::loadgen::{self, IxNet, LoadConfig, LoadError, Report};
use ix_driver::mem::MemWire;
use ix_runtime::{Backend, IdlePolicy, Runtime};

use crate::servers::{CLIENT_IP, PREFIX_LEN, SERVER_CPU};

/// The generator's measured window, once it is known.
pub type SharedWindow = Arc<OnceLock<(Instant, Instant)>>;

/// Runs `cfg` from a one-core IX runtime on port 1 of `wire`, pinned to the
/// CPU after the server's, and publishes the measured window in `window`.
pub fn run_client(
    wire: Arc<MemWire>,
    idle: IdlePolicy,
    pin: bool,
    cfg: &LoadConfig,
    window: SharedWindow,
) -> Result<Report, String> {
    let runtime = Runtime::builder()
        .cores(1)
        .backend(Backend::Mem { wire, port: 1 })
        .ipv4(CLIENT_IP, PREFIX_LEN)
        .idle(idle)
        .first_cpu(SERVER_CPU + 1)
        .pin_threads(pin)
        .handle_signals(false)
        .build()
        .map_err(|e| format!("client runtime: {e}"))?;
    let result: Arc<Mutex<Option<Result<Report, LoadError>>>> = Arc::default();
    let (slot, cfg) = (result.clone(), cfg.clone());
    runtime
        .run(move |_core| {
            let (slot, cfg, window) = (slot.clone(), cfg.clone(), window.clone());
            async move {
                let publish = |start, end| {
                    let _ = window.set((start, end));
                };
                let report = loadgen::run_with_window(&IxNet, &cfg, publish).await;
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
            }
        })
        .map_err(|e| format!("client runtime: {e}"))?;
    let report = result.lock().unwrap_or_else(|e| e.into_inner()).take();
    report.ok_or("the client core ended without a report")?.map_err(|e| format!("client: {e}"))
}

/// The server's address for `cfg`.
pub fn target(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(crate::servers::SERVER_IP, port)
}

/// How often the sampler looks whether the window is known yet.
const WINDOW_LOOKUP_INTERVAL: Duration = Duration::from_millis(1);
/// How long the sampler waits for the window before giving up (connecting
/// 256 connections and storing the keys come first).
const WINDOW_PUBLISH_LIMIT: Duration = Duration::from_secs(60);

/// Seconds of CPU that thread `tid` of this process used over the window
/// (or until the run ends, if sooner: a counted run ends long before its
/// window), read from a thread that waits meanwhile; `None` when the window
/// never came or `/proc` could not be read. Send on (or drop) `run_ended`'s
/// sender when the client is done.
pub fn sample_thread_cpu(
    tid: u32,
    window: SharedWindow,
    run_ended: mpsc::Receiver<()>,
) -> std::thread::JoinHandle<Option<f64>> {
    std::thread::spawn(move || {
        let give_up = Instant::now() + WINDOW_PUBLISH_LIMIT;
        let (start, end) = loop {
            if let Some(window) = window.get() {
                break *window;
            }
            if Instant::now() > give_up || run_ended.try_recv() != Err(mpsc::TryRecvError::Empty) {
                return None;
            }
            std::thread::sleep(WINDOW_LOOKUP_INTERVAL);
        };
        std::thread::sleep(start.saturating_duration_since(Instant::now()));
        let before = thread_cpu_ns(tid)?;
        let _ = run_ended.recv_timeout(end.saturating_duration_since(Instant::now()));
        Some(thread_cpu_ns(tid)?.checked_sub(before)? as f64 / 1e9)
    })
}

/// Nanoseconds thread `tid` of this process has run on a CPU: the first
/// field of `/proc/self/task/TID/schedstat` (the scheduler's own clock, finer
/// than `stat`'s 10 ms ticks).
fn thread_cpu_ns(tid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    stat.split_whitespace().next()?.parse().ok()
}
