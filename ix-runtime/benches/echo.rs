//! TCP echo round trips in one run, side by side: IX on the `mem` wire and on
//! kernel sockets, tokio current_thread and multi_thread over loopback; 64-byte
//! requests, N connections each with one request in flight.

#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use ix_driver::mem::{MemWire, MemWireConfig};
use ix_runtime::net::{TcpListener, TcpStream};
use ix_runtime::{Backend, CoreStats, IdlePolicy, Runtime, RuntimeError, ShutdownHandle, spawn_local};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes of each request and of each response.
const MESSAGE_BYTES: usize = 64;
/// The server's CPU and the client's (the machine has two).
const SERVER_CPU: usize = 0;
const CLIENT_CPU: usize = 1;
/// tokio multi_thread workers, per runtime (server and client each).
const TOKIO_WORKER_THREADS: usize = 2;
/// How long a connection may go past the end of its window before the run is
/// declared stalled (a lost reply, a hung server).
const STALL_LIMIT: Duration = Duration::from_secs(10);
/// How long a server may take to start listening.
const SERVER_START_LIMIT: Duration = Duration::from_secs(10);
/// Addresses on the `mem` wire.
const MEM_SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const MEM_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const ECHO_PORT: u16 = 7;
/// The latency histogram's range: 1 ns to 60 s, three significant digits.
const LATENCY_MAX_NS: u64 = 60_000_000_000;

/// One server + client pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    IxMem(IdleMode),
    IxKernel(IdleMode),
    TokioCurrentThread,
    TokioMultiThread,
}

/// The IX cores' idle policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdleMode {
    /// `IdlePolicy::BusyPoll`: never block.
    BusyPoll,
    /// `IdlePolicy::default()`: spin 64 empty rounds, then block.
    Adaptive,
    /// Block at the first empty round, as tokio does: isolates what the
    /// adaptive policy's spinning buys.
    Block,
}

impl IdleMode {
    fn policy(self) -> IdlePolicy {
        match self {
            IdleMode::BusyPoll => IdlePolicy::BusyPoll,
            IdleMode::Adaptive => IdlePolicy::default(),
            IdleMode::Block => IdlePolicy::Adaptive { spin_rounds: 0 },
        }
    }
}

impl System {
    const ALL: [System; 7] = [
        System::IxMem(IdleMode::BusyPoll),
        System::IxMem(IdleMode::Adaptive),
        System::IxKernel(IdleMode::BusyPoll),
        System::IxKernel(IdleMode::Adaptive),
        System::IxKernel(IdleMode::Block),
        System::TokioCurrentThread,
        System::TokioMultiThread,
    ];

    fn name(self) -> &'static str {
        match self {
            System::IxMem(IdleMode::BusyPoll) => "ix-mem-busy",
            System::IxMem(IdleMode::Adaptive) => "ix-mem-adaptive",
            System::IxKernel(IdleMode::BusyPoll) => "ix-kernel-busy",
            System::IxKernel(IdleMode::Adaptive) => "ix-kernel-adaptive",
            System::IxKernel(IdleMode::Block) => "ix-kernel-block",
            System::IxMem(IdleMode::Block) => "ix-mem-block",
            System::TokioCurrentThread => "tokio-current-thread",
            System::TokioMultiThread => "tokio-multi-thread",
        }
    }

    fn is_ix(self) -> bool {
        matches!(self, System::IxMem(_) | System::IxKernel(_))
    }
}

/// How long each measurement lasts.
#[derive(Debug, Clone, Copy)]
struct Timing {
    warmup: Duration,
    measure: Duration,
}

/// The command line.
#[derive(Debug)]
struct Options {
    timing: Timing,
    reps: usize,
    connections: Vec<usize>,
    only: Option<String>,
    /// A repetition during which other processes took more CPU than this is
    /// run again (up to [`DISTURBED_RETRIES`] times).
    max_others_cpu: f64,
}

/// How many times a disturbed repetition is run again before it is kept.
const DISTURBED_RETRIES: usize = 3;

const USAGE: &str = "\
usage: cargo bench -p ix-runtime --bench echo -- [--quick] [--duration-ms MS] [--warmup-ms MS]
                                                  [--reps N] [--connections N,N,..] [--only NAME]
                                                  [--max-others CPUS]
  --quick           one repetition of 200 ms per case (a smoke run of a few seconds)
  --duration-ms MS  measured time per case and repetition (default 2000)
  --warmup-ms MS    unmeasured round trips before each measurement (default 200)
  --reps N          repetitions; the table shows the median and min..max (default 5)
  --connections     connections per case, each with one request in flight (default 1,64)
  --only NAME       run only the systems whose name contains NAME
  --max-others CPUS run a repetition again (up to 3 times) when other processes took more
                    than CPUS of the machine meanwhile (default 0.1; 2 turns it off)
systems: ix-mem-busy, ix-mem-adaptive, ix-kernel-busy, ix-kernel-adaptive, ix-kernel-block,
         tokio-current-thread, tokio-multi-thread
IX idle policies: busy = IdlePolicy::BusyPoll; adaptive = IdlePolicy::default() (spin 64
empty rounds, then block); block = IdlePolicy::Adaptive { spin_rounds: 0 } (as tokio)";

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            timing: Timing { warmup: Duration::from_millis(200), measure: Duration::from_millis(2000) },
            reps: 5,
            connections: vec![1, 64],
            only: None,
            max_others_cpu: 0.1,
        };
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                // cargo bench passes --bench to every bench binary.
                "--bench" => {}
                "--quick" => {
                    options.timing = Timing { warmup: Duration::from_millis(50), measure: Duration::from_millis(200) };
                    options.reps = 1;
                }
                "--duration-ms" => options.timing.measure = Duration::from_millis(number(&value(&arg)?, &arg)?),
                "--warmup-ms" => options.timing.warmup = Duration::from_millis(number(&value(&arg)?, &arg)?),
                "--reps" => options.reps = number(&value(&arg)?, &arg)?.max(1) as usize,
                "--connections" => {
                    options.connections = value(&arg)?
                        .split(',')
                        .map(|n| number(n, &arg).map(|n| n as usize))
                        .collect::<Result<_, _>>()?;
                    if options.connections.contains(&0) {
                        return Err("--connections: at least one connection per case".into());
                    }
                }
                "--only" => options.only = Some(value(&arg)?),
                "--max-others" => {
                    let text = value(&arg)?;
                    options.max_others_cpu =
                        text.parse().map_err(|_| format!("--max-others: `{text}` is not a number of CPUs"))?;
                }
                "--help" | "-h" => return Err(String::new()),
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        if options.timing.measure.is_zero() {
            return Err("--duration-ms: the measurement needs some time".into());
        }
        Ok(options)
    }

    fn systems(&self) -> Vec<System> {
        System::ALL.into_iter().filter(|s| self.only.as_ref().is_none_or(|only| s.name().contains(only))).collect()
    }
}

fn number(text: &str, flag: &str) -> Result<u64, String> {
    text.trim().parse().map_err(|_| format!("{flag}: `{text}` is not a whole number"))
}

/// The measured interval: round trips that start inside it count.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    /// A window that opens after the warm-up, from now.
    fn after_warmup(timing: Timing) -> Window {
        let start = Instant::now() + timing.warmup;
        Window { start, end: start + timing.measure }
    }

    /// How long a connection task may still take, stall limit included.
    fn time_left(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now()) + STALL_LIMIT
    }
}

/// One connection's (or a whole run's) round trips in the window.
#[derive(Debug)]
struct Recorder {
    window: Window,
    round_trips: u64,
    latency_ns: Histogram<u64>,
}

impl Recorder {
    fn new(window: Window) -> Recorder {
        let latency_ns = Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("valid histogram bounds");
        Recorder { window, round_trips: 0, latency_ns }
    }

    /// The start of the next round trip, or `None` once the window closed.
    fn begin(&self) -> Option<Instant> {
        let now = Instant::now();
        (now < self.window.end).then_some(now)
    }

    /// Counts a round trip begun at `started` if it began inside the window.
    fn end(&mut self, started: Instant) {
        if started >= self.window.start {
            self.round_trips += 1;
            self.latency_ns.saturating_record(started.elapsed().as_nanos() as u64);
        }
    }

    fn merge(&mut self, other: &Recorder) {
        self.round_trips += other.round_trips;
        self.latency_ns.add(&other.latency_ns).expect("histograms of the same bounds");
    }
}

/// Waits for every connection's outcome in turn and merges what they
/// recorded; the first failure fails the run.
async fn merge_connections(
    window: Window,
    outcomes: impl IntoIterator<Item = impl Future<Output = Result<Recorder, String>>>,
) -> Result<Recorder, String> {
    let mut total = Recorder::new(window);
    for outcome in outcomes {
        total.merge(&outcome.await?);
    }
    Ok(total)
}

fn stalled<E>(_: E) -> String {
    format!("a connection stalled for {STALL_LIMIT:?} past its window")
}

fn task_failed(error: impl std::fmt::Display) -> String {
    format!("connection task: {error}")
}

/// The request of connection `id`: bytes that differ per connection, so an
/// answer crossed between connections is caught.
fn request(id: usize) -> [u8; MESSAGE_BYTES] {
    std::array::from_fn(|i| ((i * 31 + id * 7) % 251) as u8)
}

/// What one repetition of one case measured.
#[derive(Debug)]
struct Sample {
    recorded: Recorder,
    /// CPUs' worth of time the whole process (server and client) used over
    /// the window.
    process_cpu: Option<f64>,
    /// The IX cores' loop counters over the window: (server, client).
    cores: Option<(LoopTotals, LoopTotals)>,
}

/// The loop counters this bench reads from an IX core's [`CoreStats`].
#[derive(Debug, Default, Clone, Copy)]
struct LoopTotals {
    rounds: u64,
    empty_rounds: u64,
    batches: u64,
    rx_packets: u64,
    epoll_waits: u64,
    epoll_events: u64,
}

impl LoopTotals {
    fn of(stats: &CoreStats) -> LoopTotals {
        LoopTotals {
            rounds: stats.r#loop.rounds,
            empty_rounds: stats.r#loop.empty_rounds,
            batches: stats.r#loop.batches,
            rx_packets: stats.r#loop.rx_packets,
            epoll_waits: stats.reactor.waits,
            epoll_events: stats.reactor.events,
        }
    }

    /// `self` minus `earlier`, field by field.
    fn since(self, earlier: LoopTotals) -> LoopTotals {
        LoopTotals {
            rounds: self.rounds - earlier.rounds,
            empty_rounds: self.empty_rounds - earlier.empty_rounds,
            batches: self.batches - earlier.batches,
            rx_packets: self.rx_packets - earlier.rx_packets,
            epoll_waits: self.epoll_waits - earlier.epoll_waits,
            epoll_events: self.epoll_events - earlier.epoll_events,
        }
    }

    fn add(&mut self, other: &LoopTotals) {
        self.rounds += other.rounds;
        self.empty_rounds += other.empty_rounds;
        self.batches += other.batches;
        self.rx_packets += other.rx_packets;
        self.epoll_waits += other.epoll_waits;
        self.epoll_events += other.epoll_events;
    }

    /// Frames per non-empty receive burst (dataplane), or readiness events
    /// per `epoll_wait` (kernel backend, marked `*`).
    fn batch(&self) -> String {
        match (self.batches, self.epoll_waits) {
            (0, 0) => "-".into(),
            (0, waits) => format!("{:.2}*", self.epoll_events as f64 / waits as f64),
            (batches, _) => format!("{:.2}", self.rx_packets as f64 / batches as f64),
        }
    }

    fn empty_percent(&self) -> String {
        if self.rounds == 0 {
            "-".into()
        } else {
            format!("{:.1}%", 100.0 * self.empty_rounds as f64 / self.rounds as f64)
        }
    }
}

/// The window, once the client knows it (it opens after every connection is
/// up); both runtimes' cores count their loops over it.
type SharedWindow = Arc<OnceLock<Window>>;
/// How often a core looks whether the window is known yet (before it opens).
const WINDOW_LOOKUP_INTERVAL: Duration = Duration::from_millis(1);

/// This core's loop counters over the window: spawned on each IX core, it
/// reads [`ix_runtime::stats`] when the window opens and when it closes.
async fn count_loop_in_window(window: SharedWindow, out: Slot<LoopTotals>) {
    let window = loop {
        if let Some(window) = window.get() {
            break *window;
        }
        ix_runtime::time::sleep(WINDOW_LOOKUP_INTERVAL).await;
    };
    ix_runtime::time::sleep(window.start.saturating_duration_since(Instant::now())).await;
    let before = LoopTotals::of(&ix_runtime::stats());
    ix_runtime::time::sleep(window.end.saturating_duration_since(Instant::now())).await;
    let counted = LoopTotals::of(&ix_runtime::stats()).since(before);
    *out.lock().expect("counter lock") = Some(counted);
}

/// How long the process CPU sampler waits for the window to be published.
const WINDOW_PUBLISH_LIMIT: Duration = Duration::from_secs(60);

/// CPUs' worth of user and system time this process (server and client
/// together) uses over the window, read from a thread that sleeps meanwhile.
/// Join it only once the window was published (it gives up after
/// [`WINDOW_PUBLISH_LIMIT`] otherwise).
fn sample_process_cpu(window: SharedWindow) -> std::thread::JoinHandle<Option<f64>> {
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

// ---------------------------------------------------------------- IX ----

/// Echoes until the peer closes, as the runtime's own example does.
async fn ix_echo(stream: TcpStream) {
    while let Ok(Some(chunk)) = stream.recv().await {
        if stream.send(Bytes::copy_from_slice(&chunk)).await.is_err() {
            return;
        }
    }
    let _ = stream.shutdown();
}

/// One client connection: request, wait for the whole echo, check it, repeat.
async fn ix_echo_client(stream: TcpStream, mut recorder: Recorder, request: Bytes) -> Result<Recorder, String> {
    while let Some(started) = recorder.begin() {
        stream.send(request.clone()).await.map_err(|e| format!("send: {e}"))?;
        let mut got = 0;
        while got < request.len() {
            let chunk = stream.recv().await.map_err(|e| format!("recv: {e}"))?.ok_or("the server closed")?;
            check_echo(&request[got..], &chunk)?;
            got += chunk.len();
        }
        recorder.end(started);
    }
    let _ = stream.shutdown();
    Ok(recorder)
}

fn check_echo(expected_rest: &[u8], got: &[u8]) -> Result<(), String> {
    if got.len() > expected_rest.len() || got != &expected_rest[..got.len()] {
        return Err(format!(
            "the echo differs from the request ({} bytes where {} were due)",
            got.len(),
            expected_rest.len()
        ));
    }
    Ok(())
}

/// Connects every connection, then runs them all through one window, which
/// it publishes in `shared`.
async fn ix_client(
    server: SocketAddrV4,
    connections: usize,
    timing: Timing,
    shared: SharedWindow,
) -> Result<Recorder, String> {
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        streams.push(TcpStream::connect(server).await.map_err(|e| format!("connect to {server}: {e}"))?);
    }
    let window = *shared.get_or_init(|| Window::after_warmup(timing));
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(id, stream)| {
            spawn_local(ix_echo_client(stream, Recorder::new(window), Bytes::copy_from_slice(&request(id))))
        })
        .collect();
    let outcomes = tasks.into_iter().map(|task| async move {
        ix_runtime::time::timeout(window.time_left(), task).await.map_err(stalled)?.map_err(task_failed)?
    });
    merge_connections(window, outcomes).await
}

/// A 1-core IX runtime on `backend`, pinned to `cpu`.
fn ix_runtime(backend: Backend, ip: Ipv4Addr, prefix: u8, cpu: usize, idle: IdleMode) -> Result<Runtime, String> {
    Runtime::builder()
        .cores(1)
        .backend(backend)
        .ipv4(ip, prefix)
        .idle(idle.policy())
        .first_cpu(cpu)
        .handle_signals(false)
        .drain_timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| e.to_string())
}

/// A value a runtime's task hands back to the thread that ran the runtime.
type Slot<T> = Arc<Mutex<Option<T>>>;

fn take<T>(slot: &Slot<T>) -> Option<T> {
    slot.lock().expect("slot lock").take()
}

/// The server and client runtimes of an IX system, and the server's address.
fn ix_runtimes(system: System) -> Result<(Runtime, Runtime, SocketAddrV4), String> {
    match system {
        System::IxMem(idle) => {
            let wire = MemWire::new(MemWireConfig::default()).map_err(|e| format!("mem wire: {e}"))?;
            let server = ix_runtime(Backend::Mem { wire: wire.clone(), port: 0 }, MEM_SERVER_IP, 24, SERVER_CPU, idle)?;
            let client = ix_runtime(Backend::Mem { wire, port: 1 }, MEM_CLIENT_IP, 24, CLIENT_CPU, idle)?;
            Ok((server, client, SocketAddrV4::new(MEM_SERVER_IP, ECHO_PORT)))
        }
        System::IxKernel(idle) => {
            let port = free_loopback_port()?;
            let server = ix_runtime(Backend::Kernel, Ipv4Addr::LOCALHOST, 8, SERVER_CPU, idle)?;
            let client = ix_runtime(Backend::Kernel, Ipv4Addr::LOCALHOST, 8, CLIENT_CPU, idle)?;
            Ok((server, client, SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)))
        }
        System::TokioCurrentThread | System::TokioMultiThread => unreachable!("IX systems only"),
    }
}

/// An IX echo server running on its own thread.
struct IxServer {
    thread: std::thread::JoinHandle<Result<Vec<CoreStats>, RuntimeError>>,
    shutdown: ShutdownHandle,
    /// Its core's loop counters over the window.
    counted: Slot<LoopTotals>,
}

impl IxServer {
    /// Shuts the server down and returns its core's loop counters.
    fn finish(self) -> Result<LoopTotals, String> {
        self.shutdown.shutdown();
        self.thread.join().map_err(|_| "the IX server thread panicked")?.map_err(|e| format!("IX server: {e}"))?;
        take(&self.counted).ok_or_else(|| "the IX server core did not count its loop".into())
    }
}

/// Starts the echo server on its own thread and returns once it listens (or
/// failed to: the second value).
fn start_ix_server(runtime: Runtime, port: u16, window: SharedWindow) -> (IxServer, Result<(), String>) {
    let shutdown = runtime.shutdown_handle();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let counted = Slot::default();
    let out = counted.clone();
    let thread = std::thread::spawn(move || {
        runtime.run(move |_| {
            let ready = ready_tx.clone();
            let counter = count_loop_in_window(window.clone(), out.clone());
            async move {
                spawn_local(counter);
                let listener = match TcpListener::bind(port) {
                    Ok(listener) => listener,
                    Err(e) => {
                        let _ = ready.send(Err(format!("bind port {port}: {e}")));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                while let Ok((stream, _)) = listener.accept().await {
                    spawn_local(ix_echo(stream));
                }
            }
        })
    });
    let started = ready_rx
        .recv_timeout(SERVER_START_LIMIT)
        .unwrap_or_else(|_| Err("the IX server did not start listening".into()));
    (IxServer { thread, shutdown, counted }, started)
}

/// Runs the client runtime to its end: what it recorded and its core's loop
/// counters over the window.
fn run_ix_client(
    runtime: Runtime,
    server: SocketAddrV4,
    connections: usize,
    timing: Timing,
    window: SharedWindow,
) -> Result<(Recorder, LoopTotals), String> {
    let (result, counted) = (Slot::default(), Slot::default());
    let (out, counted_out) = (result.clone(), counted.clone());
    runtime
        .run(move |_| {
            let (out, window) = (out.clone(), window.clone());
            let counter = count_loop_in_window(window.clone(), counted_out.clone());
            async move {
                let counter = spawn_local(counter);
                let recorded = ix_client(server, connections, timing, window).await;
                // The window was published and has closed: the counter
                // finishes at once (after a failure it may never start).
                if recorded.is_ok() {
                    let _ = counter.await;
                }
                *out.lock().expect("slot lock") = Some(recorded);
            }
        })
        .map_err(|e| format!("IX client: {e}"))?;
    let recorded = take(&result).unwrap_or_else(|| Err("the IX client ended without a result".into()))?;
    Ok((recorded, take(&counted).ok_or("the IX client core did not count its loop")?))
}

/// One repetition of IX serving echo and IX loading it, each on one core.
fn run_ix(system: System, connections: usize, timing: Timing) -> Result<Sample, String> {
    let (server_rt, client_rt, server_addr) = ix_runtimes(system)?;
    let window = SharedWindow::default();
    let (server, started) = start_ix_server(server_rt, server_addr.port(), window.clone());
    let cpu = sample_process_cpu(window.clone());
    let client = started.and_then(|()| run_ix_client(client_rt, server_addr, connections, timing, window));
    let server_counted = server.finish();
    let (recorded, client_counted) = client?;
    let process_cpu = cpu.join().ok().flatten();
    Ok(Sample { recorded, process_cpu, cores: Some((server_counted?, client_counted)) })
}

/// A loopback port free now (the IX kernel server binds it with SO_REUSEPORT).
fn free_loopback_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("loopback: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("loopback: {e}"))
}

// ------------------------------------------------------------- tokio ----

#[derive(Debug, Clone, Copy)]
enum Flavor {
    CurrentThread,
    MultiThread,
}

impl Flavor {
    /// A runtime for a thread meant for `cpu`: current_thread runs on the
    /// calling thread, which is pinned; multi_thread workers are left to the
    /// scheduler (two runtimes of two workers share the two CPUs).
    fn runtime(self, cpu: usize) -> Result<tokio::runtime::Runtime, String> {
        let built = match self {
            Flavor::CurrentThread => {
                // As the IX runtime does: a CPU the process may not use is
                // reported, and the thread runs where the kernel puts it.
                if let Err(e) = ix_runtime::pin_current_thread(cpu) {
                    eprintln!("echo bench: could not pin a tokio thread to CPU {cpu}: {e}");
                }
                tokio::runtime::Builder::new_current_thread().enable_all().build()
            }
            Flavor::MultiThread => {
                tokio::runtime::Builder::new_multi_thread().worker_threads(TOKIO_WORKER_THREADS).enable_all().build()
            }
        };
        built.map_err(|e| format!("tokio runtime: {e}"))
    }
}

async fn tokio_echo(mut stream: tokio::net::TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf).await {
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn tokio_echo_client(
    mut stream: tokio::net::TcpStream,
    mut recorder: Recorder,
    request: [u8; MESSAGE_BYTES],
) -> Result<Recorder, String> {
    let mut reply = [0u8; MESSAGE_BYTES];
    while let Some(started) = recorder.begin() {
        stream.write_all(&request).await.map_err(|e| format!("send: {e}"))?;
        stream.read_exact(&mut reply).await.map_err(|e| format!("recv: {e}"))?;
        check_echo(&request, &reply)?;
        recorder.end(started);
    }
    Ok(recorder)
}

async fn tokio_client(
    server: std::net::SocketAddr,
    connections: usize,
    timing: Timing,
    shared: SharedWindow,
) -> Result<Recorder, String> {
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let stream = tokio::net::TcpStream::connect(server).await.map_err(|e| format!("connect to {server}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        streams.push(stream);
    }
    let window = *shared.get_or_init(|| Window::after_warmup(timing));
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(id, stream)| tokio::spawn(tokio_echo_client(stream, Recorder::new(window), request(id))))
        .collect();
    let outcomes = tasks.into_iter().map(|task| async move {
        tokio::time::timeout(window.time_left(), task).await.map_err(stalled)?.map_err(task_failed)?
    });
    merge_connections(window, outcomes).await
}

/// Accepts and echoes until `stop` fires; an accept error ends it early and
/// is returned.
async fn tokio_server(listener: std::net::TcpListener, stop: tokio::sync::oneshot::Receiver<()>) -> Result<(), String> {
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| format!("tokio listener: {e}"))?;
    let accept = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(tokio_echo(stream));
        }
    });
    let _ = stop.await;
    if accept.is_finished() {
        let ended: std::io::Result<()> = accept.await.map_err(|e| format!("accept task: {e}"))?;
        return ended.map_err(|e| format!("accept: {e}"));
    }
    accept.abort();
    Ok(())
}

/// One repetition of a tokio echo server and a tokio client over loopback.
fn run_tokio(flavor: Flavor, connections: usize, timing: Timing) -> Result<Sample, String> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("loopback: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("loopback: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("loopback: {e}"))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let server = std::thread::spawn(move || flavor.runtime(SERVER_CPU)?.block_on(tokio_server(listener, stop_rx)));
    let window = SharedWindow::default();
    let cpu = sample_process_cpu(window.clone());
    let client = std::thread::spawn(move || {
        flavor.runtime(CLIENT_CPU)?.block_on(tokio_client(addr, connections, timing, window))
    })
    .join()
    .map_err(|_| "the tokio client thread panicked".to_string())
    .and_then(|r| r);
    let _ = stop_tx.send(());
    server.join().map_err(|_| "the tokio server thread panicked")??;
    let recorded = client?;
    Ok(Sample { recorded, process_cpu: cpu.join().ok().flatten(), cores: None })
}

// ------------------------------------------------------------ report ----

/// Everything measured for one (system, connections) case.
#[derive(Debug)]
struct CaseResult {
    system: System,
    connections: usize,
    /// Round trips per second, one per repetition.
    rates: Vec<f64>,
    latency_ns: Histogram<u64>,
    /// CPUs' worth of user time other processes took during each repetition
    /// (none where `/proc` could not be read).
    others_cpu: Vec<f64>,
    /// CPUs' worth of time this process used over each repetition's window.
    process_cpu: Vec<f64>,
    /// Repetitions run again because other processes took CPU meanwhile.
    reruns: usize,
    /// The IX cores' loop counters, summed over the repetitions' windows.
    server: LoopTotals,
    client: LoopTotals,
}

impl CaseResult {
    fn new(system: System, connections: usize) -> CaseResult {
        let latency_ns = Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3).expect("valid histogram bounds");
        CaseResult {
            system,
            connections,
            rates: Vec::new(),
            latency_ns,
            others_cpu: Vec::new(),
            process_cpu: Vec::new(),
            reruns: 0,
            server: LoopTotals::default(),
            client: LoopTotals::default(),
        }
    }

    fn add(&mut self, sample: &Sample, timing: Timing) {
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

fn print_table(results: &[CaseResult]) {
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

/// Clock ticks per second of `/proc` CPU times (USER_HZ: 100 on Linux,
/// fixed by its ABI).
const PROC_TICKS_PER_SEC: f64 = 100.0;

/// User-mode CPU time of the whole machine and of this process, to tell how
/// much of the machine other processes (compilers, say) took during a case,
/// and this process's user + system time, to tell what the case cost.
#[derive(Debug, Clone, Copy)]
struct CpuTicks {
    machine_user: u64,
    own_user: u64,
    own_total: u64,
    at: Instant,
}

impl CpuTicks {
    fn now() -> Option<CpuTicks> {
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
    fn own_since(&self) -> Option<f64> {
        let now = CpuTicks::now()?;
        let used = now.own_total - self.own_total;
        Some(used as f64 / PROC_TICKS_PER_SEC / now.at.duration_since(self.at).as_secs_f64())
    }

    /// CPUs' worth of user time that other processes used since `self`.
    fn others_since(&self) -> Option<f64> {
        let now = CpuTicks::now()?;
        let others = (now.machine_user - self.machine_user).saturating_sub(now.own_user - self.own_user);
        Some(others as f64 / PROC_TICKS_PER_SEC / now.at.duration_since(self.at).as_secs_f64())
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn run(options: &Options) -> Result<Vec<CaseResult>, String> {
    let systems = options.systems();
    if systems.is_empty() {
        return Err(format!("--only {:?} matches no system", options.only.as_deref().unwrap_or("")));
    }
    let mut results: Vec<CaseResult> =
        options.connections.iter().flat_map(|&n| systems.iter().map(move |&s| CaseResult::new(s, n))).collect();
    // Repetitions on the outside: a burst of load from elsewhere on the
    // machine then touches every case, not one case's every repetition.
    for rep in 1..=options.reps {
        eprintln!("repetition {rep} of {} (load {})", options.reps, load_average());
        for case in &mut results {
            let (sample, others, reruns) = run_undisturbed(case.system, case.connections, options)?;
            case.add(&sample, options.timing);
            case.others_cpu.extend(others);
            case.reruns += reruns;
        }
    }
    Ok(results)
}

/// One repetition of one case, run again while other processes took more
/// than `--max-others` of the machine (the last try is kept), with the CPU
/// they took and how many times it was run again.
fn run_undisturbed(
    system: System,
    connections: usize,
    options: &Options,
) -> Result<(Sample, Option<f64>, usize), String> {
    let context = |e: String| format!("{} with {connections} connection(s): {e}", system.name());
    let mut tries = 0;
    loop {
        let before = CpuTicks::now();
        let sample = match system {
            System::TokioCurrentThread => run_tokio(Flavor::CurrentThread, connections, options.timing),
            System::TokioMultiThread => run_tokio(Flavor::MultiThread, connections, options.timing),
            ix => run_ix(ix, connections, options.timing),
        }
        .map_err(context)?;
        if sample.recorded.round_trips == 0 {
            return Err(context("no round trip completed in the window".into()));
        }
        let others = before.and_then(|b| b.others_since());
        tries += 1;
        match others {
            Some(cpu) if cpu > options.max_others_cpu && tries <= DISTURBED_RETRIES => {
                eprintln!(
                    "  {} with {connections}: other processes took {cpu:.2} CPU, running it again",
                    system.name()
                );
            }
            _ => return Ok((sample, others, tries - 1)),
        }
    }
}

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("echo bench: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let load_before = load_average();
    let started = Instant::now();
    let results = match run(&options) {
        Ok(results) => results,
        Err(message) => {
            eprintln!("echo bench: {message}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "TCP echo, {MESSAGE_BYTES}-byte request and response, one request in flight per connection; \
         {} x {} ms per case after {} ms of warm-up",
        options.reps,
        options.timing.measure.as_millis(),
        options.timing.warmup.as_millis()
    );
    println!(
        "server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU} (tokio multi_thread: {TOKIO_WORKER_THREADS} unpinned \
         workers each); IX idle policy in the name (busy: BusyPoll; adaptive: the default, 64 empty \
         rounds of spinning; block: no spinning)"
    );
    print_table(&results);
    println!(
        "rt/s: round trips per second (median, min..max over repetitions); vs tokio: median over \
         tokio-current-thread's; p50/p99/p99.9: latency over all repetitions; cpu: CPUs' worth of \
         user + system time the process (server and client) used over the window, median"
    );
    println!(
        "batch: frames per non-empty receive burst (* kernel backend: readiness events per epoll_wait); \
         empty: rounds of the core's loop that found nothing (both over the measured windows; a share of \
         rounds, not of time)"
    );
    println!(
        "others: CPUs' worth of user time other processes took during the case (the most of any \
         repetition kept; a few hundredths is accounting noise, 0.1 or more means the case shared \
         its CPUs); {} repetition(s) were run again for taking more than --max-others {}",
        results.iter().map(|c| c.reruns).sum::<usize>(),
        options.max_others_cpu
    );
    println!(
        "load average before {load_before}, after {}; {:.0} s in all",
        load_average(),
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
