//! The soak client: mixed HTTP/1.1, HTTP/2 and memcached load with connection
//! churn and slow readers, every response body checked, for a set time.

pub mod http;
pub mod kv;

use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

/// What runs, and against whom.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// The HTTP server (`ix-http`); `None`: no HTTP load.
    pub http: Option<SocketAddrV4>,
    /// The memcached-protocol server (`ix-kv`); `None`: no KV load.
    pub kv: Option<SocketAddrV4>,
    /// HTTP/1.1 connections at a time (each reconnects after a few requests).
    pub http1_conns: usize,
    /// HTTP/2 connections at a time, each with `http2_streams` requests in flight.
    pub http2_conns: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_streams: usize,
    /// Slow readers at a time: each fetches `slow_body_bytes` reading
    /// `slow_read_bytes` every `slow_read_pause`.
    pub slow_readers: usize,
    /// Body of a slow reader's response.
    pub slow_body_bytes: u64,
    /// Bytes a slow reader takes at once.
    pub slow_read_bytes: usize,
    /// Pause between two reads of a slow reader.
    pub slow_read_pause: Duration,
    /// memcached connections at a time.
    pub kv_conns: usize,
    /// Requests per connection before it closes and reconnects: drawn from 1
    /// to this (churn).
    pub requests_per_conn_max: u32,
    /// Pause between two requests of one connection or stream.
    pub think: Duration,
    /// Largest HTTP response or request body, and KV value.
    pub body_max_bytes: usize,
    /// Bound on one request (a longer one is a stall, counted as an error).
    pub request_timeout: Duration,
    /// How long the load runs.
    pub duration: Duration,
    /// Seed of every random choice.
    pub seed: u64,
}

/// One kind of traffic's results.
#[derive(Debug)]
pub struct ClassStats {
    /// Requests answered with the right body.
    pub ok: u64,
    /// Response bytes checked.
    pub bytes_checked: u64,
    /// Responses whose body or status differed from what was asked
    /// (corruption, or a wrong answer).
    pub mismatches: u64,
    /// Requests that failed: connection reset, closed early, protocol error.
    pub errors: u64,
    /// Requests not answered within the request timeout.
    pub timeouts: u64,
    /// Connections opened.
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_errors: u64,
    /// Request latency in microseconds (connect time not included).
    pub latency_us: Histogram<u64>,
    /// The first few failures, for the report.
    pub first_failures: Vec<String>,
    /// The slowest requests, slowest first: what a stall's investigation
    /// needs to find the connection in a capture.
    pub slowest: Vec<SlowRequest>,
}

/// One of a class's slowest requests.
#[derive(Debug, Clone, Copy)]
pub struct SlowRequest {
    /// How long it took.
    pub elapsed: Duration,
    /// The client's local port of its connection.
    pub local_port: u16,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u128,
}

/// Slowest requests kept per class.
const SLOWEST_KEPT: usize = 3;

/// Failures kept verbatim per class.
const FAILURES_KEPT: usize = 5;

impl ClassStats {
    fn new() -> Self {
        Self {
            ok: 0,
            bytes_checked: 0,
            mismatches: 0,
            errors: 0,
            timeouts: 0,
            connects: 0,
            connect_errors: 0,
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
            first_failures: Vec::new(),
            slowest: Vec::new(),
        }
    }

    /// Failures of any kind.
    pub fn failures(&self) -> u64 {
        self.mismatches + self.errors + self.timeouts + self.connect_errors
    }

    fn note_duration(&mut self, slow: SlowRequest) {
        if self.slowest.len() == SLOWEST_KEPT && self.slowest.last().is_some_and(|s| s.elapsed >= slow.elapsed) {
            return;
        }
        let at = self.slowest.partition_point(|s| s.elapsed >= slow.elapsed);
        self.slowest.insert(at, slow);
        self.slowest.truncate(SLOWEST_KEPT);
    }

    fn note(&mut self, what: String) {
        if self.first_failures.len() < FAILURES_KEPT {
            self.first_failures.push(what);
        }
    }
}

/// The traffic classes, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// HTTP/1.1 requests with churn.
    Http1,
    /// HTTP/2 streams.
    Http2,
    /// Large responses read slowly.
    SlowReader,
    /// memcached `set`/`get`.
    Kv,
}

impl Class {
    /// Every class.
    pub const ALL: [Class; 4] = [Class::Http1, Class::Http2, Class::SlowReader, Class::Kv];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Class::Http1 => "http1",
            Class::Http2 => "http2",
            Class::SlowReader => "slow_reader",
            Class::Kv => "kv",
        }
    }
}

/// Results of every class, shared by the workers.
#[derive(Debug, Clone)]
pub struct SoakStats {
    classes: Arc<Mutex<[ClassStats; 4]>>,
}

/// How one request ended.
#[derive(Debug)]
pub enum Outcome {
    /// Answered with the expected body of this many bytes.
    Ok(u64),
    /// Answered with a wrong body or status.
    Mismatch(String),
    /// Failed.
    Error(String),
}

impl Default for SoakStats {
    fn default() -> Self {
        Self { classes: Arc::new(Mutex::new([(); 4].map(|()| ClassStats::new()))) }
    }
}

impl SoakStats {
    fn with<R>(&self, class: Class, f: impl FnOnce(&mut ClassStats) -> R) -> R {
        let mut classes = self.classes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut classes[class as usize])
    }

    /// Records a request that took `elapsed`, or `None` when it timed out.
    pub fn request(&self, class: Class, elapsed: Option<Duration>, outcome: Outcome) {
        self.request_on(class, 0, elapsed, outcome);
    }

    /// [`request`](Self::request) on a connection whose client port is
    /// `local_port`, kept among the slowest if it is one.
    pub fn request_on(&self, class: Class, local_port: u16, elapsed: Option<Duration>, outcome: Outcome) {
        self.with(class, |s| {
            let Some(elapsed) = elapsed else {
                s.timeouts += 1;
                s.note(format!("request timed out (local port {local_port})"));
                return;
            };
            let _ = s.latency_us.record((elapsed.as_micros() as u64).max(1));
            let started = SystemTime::now().checked_sub(elapsed).unwrap_or(UNIX_EPOCH);
            let started_unix_ms = started.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            s.note_duration(SlowRequest { elapsed, local_port, started_unix_ms });
            match outcome {
                Outcome::Ok(bytes) => {
                    s.ok += 1;
                    s.bytes_checked += bytes;
                }
                Outcome::Mismatch(what) => {
                    s.mismatches += 1;
                    s.note(format!("mismatch: {what}"));
                }
                Outcome::Error(what) => {
                    s.errors += 1;
                    s.note(format!("error: {what}"));
                }
            }
        });
    }

    /// Records a connection attempt.
    pub fn connect(&self, class: Class, result: Result<(), String>) {
        self.with(class, |s| match result {
            Ok(()) => s.connects += 1,
            Err(what) => {
                s.connect_errors += 1;
                s.note(format!("connect: {what}"));
            }
        });
    }

    /// Failures of every class together.
    pub fn failures(&self) -> u64 {
        Class::ALL.iter().map(|&c| self.with(c, |s| s.failures())).sum()
    }

    /// One line per class: counts, then latency percentiles and maximum (ms).
    pub fn report(&self) -> String {
        let mut out = String::new();
        for class in Class::ALL {
            self.with(class, |s| {
                let h = &s.latency_us;
                let ms = |us: u64| us as f64 / 1000.0;
                out.push_str(&format!(
                    "soak {} ok={} bytes_checked={} mismatches={} errors={} timeouts={} connects={} connect_errors={} \
                     p50_ms={:.2} p99_ms={:.2} p999_ms={:.2} max_ms={:.2}\n",
                    class.name(),
                    s.ok,
                    s.bytes_checked,
                    s.mismatches,
                    s.errors,
                    s.timeouts,
                    s.connects,
                    s.connect_errors,
                    ms(h.value_at_quantile(0.5)),
                    ms(h.value_at_quantile(0.99)),
                    ms(h.value_at_quantile(0.999)),
                    ms(h.max()),
                ));
                for failure in &s.first_failures {
                    out.push_str(&format!("soak {} failure: {failure}\n", class.name()));
                }
                for slow in &s.slowest {
                    out.push_str(&format!(
                        "soak {} slow: took_ms={:.2} local_port={} started_unix_ms={}\n",
                        class.name(),
                        slow.elapsed.as_secs_f64() * 1000.0,
                        slow.local_port,
                        slow.started_unix_ms
                    ));
                }
            });
        }
        out
    }
}

/// Runs `request` under `timeout` on the connection whose client port is
/// `local_port` and records it in `class`; whether it succeeded.
pub async fn timed<F>(stats: &SoakStats, class: Class, local_port: u16, timeout: Duration, request: F) -> bool
where
    F: Future<Output = Outcome>,
{
    let start = Instant::now();
    match tokio::time::timeout(timeout, request).await {
        Ok(outcome) => {
            let ok = matches!(outcome, Outcome::Ok(_));
            stats.request_on(class, local_port, Some(start.elapsed()), outcome);
            ok
        }
        Err(_) => {
            stats.request_on(class, local_port, None, Outcome::Error(String::new()));
            false
        }
    }
}

/// The client port of `stream` (0 if the kernel cannot say).
pub fn local_port(stream: &tokio::net::TcpStream) -> u16 {
    stream.local_addr().map_or(0, |a| a.port())
}

/// Byte `i` of a body derived from `seed`: a cheap pattern that differs
/// between bodies and positions, so a misplaced or foreign byte shows.
pub fn body_byte(seed: u64, i: usize) -> u8 {
    let x = seed.wrapping_add(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    b'!' + ((x >> 58) as u8 % 90)
}

/// A body of `len` bytes from `seed` (see [`body_byte`]).
pub fn body(seed: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| body_byte(seed, i)).collect()
}

/// Runs the whole load for `cfg.duration`, then waits for every worker;
/// failures are counted in the returned stats.
pub async fn run(cfg: SoakConfig) -> SoakStats {
    let stats = SoakStats::default();
    let end = Instant::now() + cfg.duration;
    let cfg = Arc::new(cfg);
    let mut workers = Vec::new();
    let mut seed = cfg.seed;
    let mut next_seed = || {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        seed
    };
    if let Some(target) = cfg.http {
        for _ in 0..cfg.http1_conns {
            workers.push(tokio::spawn(http::http1_worker(target, cfg.clone(), stats.clone(), end, next_seed())));
        }
        for _ in 0..cfg.http2_conns {
            workers.push(tokio::spawn(http::http2_worker(target, cfg.clone(), stats.clone(), end, next_seed())));
        }
        for _ in 0..cfg.slow_readers {
            workers.push(tokio::spawn(http::slow_reader(target, cfg.clone(), stats.clone(), end)));
        }
    }
    if let Some(target) = cfg.kv {
        for worker in 0..cfg.kv_conns {
            workers.push(tokio::spawn(kv::kv_worker(target, cfg.clone(), stats.clone(), end, worker, next_seed())));
        }
    }
    for worker in workers {
        let _ = worker.await;
    }
    stats
}

/// Connects to `target` within the request timeout, with a receive buffer
/// of `recv_buffer_bytes` when given; recorded in `class`.
pub async fn connect(
    target: SocketAddrV4,
    cfg: &SoakConfig,
    stats: &SoakStats,
    class: Class,
    recv_buffer_bytes: Option<u32>,
) -> Option<tokio::net::TcpStream> {
    let attempt = async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        if let Some(bytes) = recv_buffer_bytes {
            socket.set_recv_buffer_size(bytes)?;
        }
        let stream = socket.connect(target.into()).await?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(stream)
    };
    let result = match tokio::time::timeout(cfg.request_timeout, attempt).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    };
    stats.connect(class, result.as_ref().map(|_| ()).map_err(Clone::clone));
    result.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_differ_by_seed_and_position() {
        let a = body(1, 4096);
        let b = body(2, 4096);
        assert_ne!(a, b);
        assert_ne!(a[..2048], a[2048..]);
        assert!(a.iter().all(|c| c.is_ascii_graphic()));
    }

    #[test]
    fn failures_of_every_kind_are_counted() {
        let stats = SoakStats::default();
        stats.request(Class::Http1, Some(Duration::from_millis(1)), Outcome::Ok(10));
        assert_eq!(stats.failures(), 0);
        stats.request(Class::Http2, Some(Duration::from_millis(1)), Outcome::Mismatch("x".into()));
        stats.request(Class::Kv, None, Outcome::Error(String::new()));
        stats.connect(Class::SlowReader, Err("refused".into()));
        assert_eq!(stats.failures(), 3);
        let report = stats.report();
        assert!(report.contains("soak http1 ok=1 bytes_checked=10"), "{report}");
        assert!(report.contains("soak kv failure: request timed out"), "{report}");
    }
}
