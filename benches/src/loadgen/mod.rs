//! The load generator (in the style of mutilate): many connections driven from
//! one thread, open loop with Poisson arrivals or closed loop, latency measured
//! from each request's intended send time so coordinated omission is corrected.
//!
//! Open loop: a dispatcher draws intended send times from a seeded
//! [`PoissonSchedule`], sleeps to each one (absolute times, so lateness never
//! accumulates) and hands it to an idle connection; when none is idle the
//! request waits in a FIFO backlog and its wait counts in its latency. Each
//! connection keeps one request in flight (mutilate's default depth). Closed
//! loop: every connection sends its next request as soon as the previous one
//! is answered. Either way a connection carries many requests (keep-alive) or
//! one ([`ConnectionUse::OnePerRequest`]: connect, request, close, with the
//! connect time measured apart).

pub mod http;
pub mod memcache;
pub mod net;
pub mod protocol;
pub mod report;
pub mod schedule;
pub mod sizes;
pub mod tls;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::pin::pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::{Either, select};
use futures::stream::FuturesUnordered;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use self::http::HttpClient;
pub use self::memcache::{MemcacheClient, MemcacheWorkload};
pub use self::net::{IxNet, KernelNet, Net};
pub use self::protocol::{Outcome, Parsed, ProtocolClient, ProtocolError};
use self::report::Recorder;
pub use self::report::{Bucket, ErrorCounts, Percentiles, Report, Timeline};
pub use self::schedule::PoissonSchedule;
pub use self::sizes::{KvPreset, SizeDistribution};
pub use self::tls::TlsNet;

/// Initial size of a connection's receive buffer, in bytes.
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// A connection's receive buffer never grows past this (responses are bounded
/// by the protocol parsers well below it).
const READ_BUFFER_MAX_BYTES: usize = 80 * 1024 * 1024;
/// Pause after a failed connection attempt before the next one.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// How requests are issued.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Poisson arrivals at `rate` requests per second, whatever the server does.
    Open {
        /// Requests per second.
        rate: f64,
    },
    /// Each connection sends its next request when the last one is answered.
    Closed,
    /// As `Closed`, until `requests` requests have been sent in all (or the
    /// window ends): a fixed amount of work, for counting instructions per
    /// request.
    Counted {
        /// Requests to send, over all connections.
        requests: u64,
    },
}

/// How many requests one connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionUse {
    /// Connections are opened before the run and reused (reopened only after
    /// a failure or a close by the server).
    #[default]
    KeepAlive,
    /// Each request opens a connection and closes it once answered, as a
    /// client that meets the server's accept path every time (a server under
    /// a SYN flood); `connections` is then how many may be in progress at once.
    OnePerRequest,
}

/// What to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// HTTP/1.1 keep-alive `GET path` with `Host: host`.
    Http {
        /// The `Host` header.
        host: String,
        /// The path.
        path: String,
    },
    /// memcached text protocol.
    Memcache {
        /// Key space and mix.
        workload: MemcacheWorkload,
        /// Store every key once before the run, so `get`s hit.
        prefill: bool,
    },
}

impl Workload {
    fn name(&self) -> &'static str {
        match self {
            Workload::Http { .. } => "http",
            Workload::Memcache { .. } => "memcache",
        }
    }

    fn client(&self, seed: u64) -> ProtocolClient {
        match self {
            Workload::Http { host, path } => ProtocolClient::Http(HttpClient::new(host, path)),
            Workload::Memcache { workload, .. } => {
                ProtocolClient::Memcache(MemcacheClient::new(workload.clone(), seed))
            }
        }
    }
}

/// One run's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// The server.
    pub target: SocketAddrV4,
    /// Connections, each with at most one request in flight.
    pub connections: usize,
    /// Open or closed loop.
    pub mode: Mode,
    /// What to send.
    pub workload: Workload,
    /// Load before the measured window (not counted).
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// How long to wait for requests in flight after the window ends.
    pub drain: Duration,
    /// Bound on one connection attempt.
    pub connect_timeout: Duration,
    /// Keep-alive: connection attempts started per second while the connections open (one every
    /// `1 / rate`), or `None` for all at once. A population of clients does not connect in one instant: a
    /// burst of thousands of SYNs measures the server's receive ring more than how many connections it holds.
    pub connect_rate: Option<f64>,
    /// Seed of the arrival schedule and of each connection's request mix.
    pub seed: u64,
    /// Keep every request of the window in [`Report::timeline`].
    pub timeline: bool,
    /// Keep-alive or one connection per request.
    pub connection_use: ConnectionUse,
}

/// Why a run could not take place.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The settings cannot work.
    #[error("bad load settings: {0}")]
    Config(String),
    /// Not one connection could be opened.
    #[error("could not connect to {target}: {source}")]
    Connect {
        /// The server.
        target: SocketAddrV4,
        /// The last failure.
        source: io::Error,
    },
    /// Storing the keys before the run failed.
    #[error("prefill of the key space failed: {0}")]
    Prefill(String),
    /// The IX runtime could not start or failed.
    #[error(transparent)]
    Runtime(#[from] ix_runtime::RuntimeError),
}

impl LoadConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`LoadError::Config`] naming the bad setting.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |m: String| Err(LoadError::Config(m));
        if self.connections == 0 {
            return bad("at least one connection".into());
        }
        if let Mode::Open { rate } = self.mode
            && !(rate.is_finite() && rate > 0.0)
        {
            return bad(format!("rate {rate} is not a positive number"));
        }
        if let Some(rate) = self.connect_rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return bad(format!("connect rate {rate} is not a positive number"));
        }
        if self.duration.is_zero() {
            return bad("the measured window must be longer than zero".into());
        }
        if let Workload::Memcache { workload, .. } = &self.workload {
            workload.validate().map_err(LoadError::Config)?;
        }
        Ok(())
    }
}

/// Runs the load described by `cfg` over `net` and reports what it measured.
///
/// Connections are opened (and, for memcached with `prefill`, the keys stored)
/// before the clock starts; the run then lasts `warmup + duration`, plus at
/// most `drain` for the requests still in flight.
///
/// # Errors
/// Bad settings, no connection at all, or a failed prefill. Failures of
/// single requests are counted in the report, not returned.
pub async fn run<N: Net>(net: &N, cfg: &LoadConfig) -> Result<Report, LoadError> {
    run_with_window(net, cfg, |_, _| {}).await
}

/// As [`run`], telling `window_known` the measured window `[start, end)` once
/// the connections are open and the keys stored, before the load starts (a
/// caller sampling the server's CPU time over the same window uses it).
///
/// # Errors
/// As [`run`].
pub async fn run_with_window<N: Net>(
    net: &N,
    cfg: &LoadConfig,
    window_known: impl FnOnce(Instant, Instant),
) -> Result<Report, LoadError> {
    cfg.validate()?;
    let conns = match cfg.connection_use {
        ConnectionUse::KeepAlive => open_connections(net, cfg).await?,
        ConnectionUse::OnePerRequest => (0..cfg.connections).map(|index| Connection::unconnected(index, cfg)).collect(),
    };
    let mut conns = match &cfg.workload {
        Workload::Memcache { workload, prefill: true } => prefill(conns, workload).await?,
        _ => conns,
    };
    let start = Instant::now();
    let window_start = start + cfg.warmup;
    let end = window_start + cfg.duration;
    window_known(window_start, end);
    let budget = match cfg.mode {
        Mode::Counted { requests } => Some(requests),
        Mode::Open { .. } | Mode::Closed => None,
    };
    let shared =
        Rc::new(RefCell::new(Shared::new(cfg.connections, Recorder::new(window_start, end, cfg.timeline), budget)));
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.client = cfg.workload.client(cfg.seed.wrapping_add(1 + i as u64));
    }
    let mut tasks = FuturesUnordered::new();
    for conn in conns {
        tasks.push(Either::Left(connection_loop(net, cfg, conn, &shared, end)));
    }
    if let Mode::Open { rate } = cfg.mode {
        tasks.push(Either::Right(dispatch(net, PoissonSchedule::new(rate, cfg.seed, start), &shared, end)));
    }
    let all_done = async { while tasks.next().await.is_some() {} };
    let _ = select(pin!(all_done), pin!(net.sleep_until(end + cfg.drain))).await;
    let stopped_at = Instant::now();
    let mut shared = shared.borrow_mut();
    shared.abandon_the_rest(stopped_at);
    let offered = match cfg.mode {
        Mode::Open { rate } => Some(rate),
        Mode::Closed | Mode::Counted { .. } => None,
    };
    Ok(shared.recorder.report(cfg.workload.name(), offered, cfg.connections))
}

/// Runs the load on a one-core IX runtime with `backend` (and the dataplane's
/// address, which every backend but `kernel` needs). The runtime busy-polls
/// (its adaptive idling blocks in `poll(2)`, whose millisecond timeout would
/// make sends late) and its thread is not pinned: the caller places the
/// process (`taskset`).
///
/// # Errors
/// As [`run`], and a runtime that cannot start.
pub fn run_on_ix(
    backend: ix_runtime::Backend,
    addr: Option<(Ipv4Addr, u8)>,
    cfg: &LoadConfig,
) -> Result<Report, LoadError> {
    let mut builder = ix_runtime::Runtime::builder()
        .cores(1)
        .backend(backend)
        .idle(ix_runtime::IdlePolicy::BusyPoll)
        .pin_threads(false)
        .handle_signals(false);
    if let Some((ip, len)) = addr {
        builder = builder.ipv4(ip, len);
    }
    let runtime = builder.build()?;
    let result: Arc<Mutex<Option<Result<Report, LoadError>>>> = Arc::default();
    let (slot, cfg) = (result.clone(), cfg.clone());
    runtime.run(move |_core| {
        let (slot, cfg) = (slot.clone(), cfg.clone());
        async move {
            let report = run(&IxNet, &cfg).await;
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
        }
    })?;
    let report = result.lock().unwrap_or_else(|e| e.into_inner()).take();
    report.unwrap_or_else(|| Err(LoadError::Config("the IX core ended without a report".into())))
}

/// One connection's state, carried between its requests.
struct Connection<S> {
    index: usize,
    stream: Option<S>,
    client: ProtocolClient,
    request: Vec<u8>,
    buffer: Vec<u8>,
}

impl<S> Connection<S> {
    /// Slot `index` with no stream yet: it connects when its first request comes.
    fn unconnected(index: usize, cfg: &LoadConfig) -> Self {
        let client = cfg.workload.client(0);
        Connection { index, stream: None, client, request: Vec::new(), buffer: vec![0; READ_BUFFER_BYTES] }
    }
}

/// Opens `cfg.connections` connections, all at once or paced at `cfg.connect_rate`; a connection that fails
/// is left unconnected (it retries during the run).
async fn open_connections<N: Net>(net: &N, cfg: &LoadConfig) -> Result<Vec<Connection<N::Stream>>, LoadError> {
    let ramp_start = Instant::now();
    let attempts = (0..cfg.connections).map(|index| async move {
        if let Some(rate) = cfg.connect_rate {
            net.sleep_until(ramp_start + Duration::from_secs_f64(index as f64 / rate)).await;
        }
        connect(net, cfg.target, cfg.connect_timeout).await
    });
    let results = futures::future::join_all(attempts).await;
    let mut last_error = None;
    let mut conns = Vec::with_capacity(cfg.connections);
    for (index, result) in results.into_iter().enumerate() {
        let mut conn = Connection::unconnected(index, cfg);
        match result {
            Ok(s) => conn.stream = Some(s),
            Err(e) => {
                tracing::warn!(index, error = %e, "connection failed; it will retry during the run");
                last_error = Some(e);
            }
        }
        conns.push(conn);
    }
    if conns.iter().all(|c| c.stream.is_none()) {
        let source = last_error.unwrap_or_else(|| io::Error::other("no connection attempted"));
        return Err(LoadError::Connect { target: cfg.target, source });
    }
    Ok(conns)
}

async fn connect<N: Net>(net: &N, addr: SocketAddrV4, timeout: Duration) -> io::Result<N::Stream> {
    let deadline = Instant::now() + timeout;
    match select(pin!(net.connect(addr)), pin!(net.sleep_until(deadline))).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connection attempt timed out")),
    }
}

/// Stores every key of the space once, spread over the open connections.
async fn prefill<S>(conns: Vec<Connection<S>>, workload: &MemcacheWorkload) -> Result<Vec<Connection<S>>, LoadError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let live: Vec<usize> = conns.iter().filter(|c| c.stream.is_some()).map(|c| c.index).collect();
    let stride = live.len();
    let fills = conns.into_iter().map(|mut conn| async {
        let mut client = MemcacheClient::new(workload.clone(), 0);
        let Some(slot) = live.iter().position(|&i| i == conn.index) else { return Ok(conn) };
        let stream = conn.stream.as_mut().expect("only live connections fill");
        for key in (slot as u64..workload.keys).step_by(stride) {
            conn.request.clear();
            client.write_set(key, &mut conn.request);
            let parse = |b: &[u8]| client.parse_response(b);
            match exchange(stream, &conn.request, &mut conn.buffer, parse).await {
                Ok((Outcome::Success, _)) => {}
                Ok((outcome, _)) => return Err(LoadError::Prefill(format!("set of key {key} answered {outcome:?}"))),
                Err(e) => return Err(LoadError::Prefill(format!("set of key {key}: {e}"))),
            }
        }
        Ok(conn)
    });
    futures::future::try_join_all(fills).await
}

/// Why one request failed.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// Writes `request` and reads exactly its response into `buffer`.
async fn exchange<S, P>(
    stream: &mut S,
    request: &[u8],
    buffer: &mut Vec<u8>,
    parse: P,
) -> Result<(Outcome, bool), ExchangeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    P: Fn(&[u8]) -> Result<Parsed, ProtocolError>,
{
    stream.write_all(request).await?;
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            if buffer.len() >= READ_BUFFER_MAX_BYTES {
                return Err(ProtocolError::TooLarge { what: "response", limit: READ_BUFFER_MAX_BYTES }.into());
            }
            buffer.resize((buffer.len() * 2).min(READ_BUFFER_MAX_BYTES), 0);
        }
        let n = stream.read(&mut buffer[filled..]).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed mid-response").into());
        }
        filled += n;
        match parse(&buffer[..filled])? {
            Parsed::Incomplete => {}
            Parsed::Complete { len, .. } if len != filled => return Err(ProtocolError::Unsolicited.into()),
            Parsed::Complete { outcome, close, .. } => return Ok((outcome, close)),
        }
    }
}

/// The connection's next request: its intended send time (open loop: from the
/// dispatcher; closed loop: now), or `None` when the run is over.
async fn next_request(shared: &RefCell<Shared>, index: usize, closed_loop_end: Option<Instant>) -> Option<Instant> {
    if let Some(end) = closed_loop_end {
        let now = Instant::now();
        return (now < end && shared.borrow_mut().take_from_budget()).then_some(now);
    }
    std::future::poll_fn(|cx| shared.borrow_mut().poll_take(index, cx.waker())).await
}

async fn connection_loop<N: Net>(
    net: &N,
    cfg: &LoadConfig,
    mut conn: Connection<N::Stream>,
    shared: &RefCell<Shared>,
    end: Instant,
) {
    let closed_loop_end = matches!(cfg.mode, Mode::Closed | Mode::Counted { .. }).then_some(end);
    while let Some(intended) = next_request(shared, conn.index, closed_loop_end).await {
        shared.borrow_mut().in_flight[conn.index] = Some((intended, false));
        if conn.stream.is_none() {
            let started = Instant::now();
            match connect(net, cfg.target, cfg.connect_timeout).await {
                Ok(s) => {
                    shared.borrow_mut().recorder.connected(intended, started.elapsed());
                    conn.stream = Some(s);
                }
                Err(e) => {
                    tracing::debug!(index = conn.index, error = %e, "reconnect failed");
                    {
                        let mut s = shared.borrow_mut();
                        s.recorder.errors.connect += 1;
                        s.in_flight[conn.index] = None;
                    }
                    net.sleep_until(Instant::now() + RECONNECT_BACKOFF).await;
                    continue;
                }
            }
        }
        conn.request.clear();
        conn.client.write_request(&mut conn.request);
        let sent_at = Instant::now();
        {
            let mut s = shared.borrow_mut();
            s.recorder.sent(intended, sent_at);
            s.in_flight[conn.index] = Some((intended, true));
        }
        let stream = conn.stream.as_mut().expect("connected above");
        let client = &conn.client;
        let result = exchange(stream, &conn.request, &mut conn.buffer, |b| client.parse_response(b)).await;
        let done_at = Instant::now();
        let mut s = shared.borrow_mut();
        s.in_flight[conn.index] = None;
        match result {
            Ok((outcome, close)) => {
                s.recorder.answered(intended, done_at, outcome);
                if close || cfg.connection_use == ConnectionUse::OnePerRequest {
                    conn.stream = None;
                }
            }
            Err(e) => {
                tracing::debug!(index = conn.index, error = %e, "request failed; reconnecting");
                match e {
                    ExchangeError::Io(_) => s.recorder.errors.io += 1,
                    ExchangeError::Protocol(_) => s.recorder.errors.protocol += 1,
                }
                conn.stream = None;
            }
        }
    }
}

/// Open loop: hands each intended send time of `schedule` before `end` to an
/// idle connection, or to the backlog.
async fn dispatch<N: Net>(net: &N, mut schedule: PoissonSchedule, shared: &RefCell<Shared>, end: Instant) {
    loop {
        let at = schedule.next_arrival();
        if at >= end {
            break;
        }
        net.sleep_until(at).await;
        shared.borrow_mut().offer(at);
    }
    shared.borrow_mut().close();
}

/// State shared by the dispatcher and the connections (one thread: a RefCell).
struct Shared {
    recorder: Recorder,
    /// Intended send times waiting for a free connection, oldest first.
    backlog: VecDeque<Instant>,
    /// Connections waiting for work, and their wakers.
    idle: VecDeque<usize>,
    wakers: Vec<Option<Waker>>,
    /// The intended time of each connection's current request, and whether it
    /// has been written.
    in_flight: Vec<Option<(Instant, bool)>>,
    /// No more requests will be offered (the backlog is still served).
    closed: bool,
    /// Requests left to send in a [`Mode::Counted`] run.
    budget: Option<u64>,
}

impl Shared {
    fn new(connections: usize, recorder: Recorder, budget: Option<u64>) -> Self {
        Self {
            budget,
            recorder,
            backlog: VecDeque::new(),
            idle: VecDeque::with_capacity(connections),
            wakers: vec![None; connections],
            in_flight: vec![None; connections],
            closed: false,
        }
    }

    /// A request intended at `at` arrives: wake an idle connection for it.
    fn offer(&mut self, at: Instant) {
        if self.recorder.in_window(at) {
            self.recorder.scheduled += 1;
        }
        self.backlog.push_back(at);
        while let Some(index) = self.idle.pop_front() {
            if let Some(waker) = self.wakers[index].take() {
                waker.wake();
                break;
            }
        }
    }

    /// Whether one more request may be sent (always, outside a counted run).
    fn take_from_budget(&mut self) -> bool {
        match &mut self.budget {
            None => true,
            Some(0) => false,
            Some(left) => {
                *left -= 1;
                true
            }
        }
    }

    fn close(&mut self) {
        self.closed = true;
        for waker in self.wakers.iter_mut().filter_map(Option::take) {
            waker.wake();
        }
        self.idle.clear();
    }

    /// The oldest waiting request; after [`Shared::close`], the backlog is
    /// still served (during the drain) and `None` comes once it is empty.
    fn poll_take(&mut self, index: usize, waker: &Waker) -> Poll<Option<Instant>> {
        if let Some(at) = self.backlog.pop_front() {
            self.wakers[index] = None;
            return Poll::Ready(Some(at));
        }
        if self.closed {
            return Poll::Ready(None);
        }
        if self.wakers[index].replace(waker.clone()).is_none() {
            self.idle.push_back(index);
        }
        Poll::Pending
    }

    /// Counts what the run stopped before finishing, at `stopped_at`.
    fn abandon_the_rest(&mut self, stopped_at: Instant) {
        for at in std::mem::take(&mut self.backlog) {
            self.recorder.abandoned(at, false, stopped_at);
        }
        for (at, sent) in self.in_flight.iter_mut().filter_map(Option::take) {
            self.recorder.abandoned(at, sent, stopped_at);
        }
    }
}
