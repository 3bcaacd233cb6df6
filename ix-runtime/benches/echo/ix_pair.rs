//! IX's side: a one-core echo server and a one-core client runtime, on the
//! `mem` wire or on kernel sockets, and the counters of their cores' loops.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ix_driver::mem::{MemWire, MemWireConfig};
use ix_runtime::net::{TcpListener, TcpStream};
use ix_runtime::{Backend, CoreStats, Runtime, RuntimeError, ShutdownHandle, spawn_local};

use crate::measure::{
    Load, Recorder, Sample, SharedWindow, Timing, WINDOW_LOOKUP_INTERVAL, check_echo, merge_connections, request,
    sample_process_cpu, stalled, task_failed,
};
use crate::{CLIENT_CPU, IdleMode, SERVER_CPU, System};

/// How long a server may take to start listening.
const SERVER_START_LIMIT: Duration = Duration::from_secs(10);
/// Addresses on the `mem` wire.
const MEM_SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const MEM_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const ECHO_PORT: u16 = 7;

/// The loop counters this bench reads from an IX core's [`CoreStats`].
#[derive(Debug, Default, Clone, Copy)]
pub struct LoopTotals {
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

    pub fn add(&mut self, other: &LoopTotals) {
        self.rounds += other.rounds;
        self.empty_rounds += other.empty_rounds;
        self.batches += other.batches;
        self.rx_packets += other.rx_packets;
        self.epoll_waits += other.epoll_waits;
        self.epoll_events += other.epoll_events;
    }

    /// Frames per non-empty receive burst (dataplane), or readiness events
    /// per `epoll_wait` (kernel backend, marked `*`).
    pub fn batch(&self) -> String {
        match (self.batches, self.epoll_waits) {
            (0, 0) => "-".into(),
            (0, waits) => format!("{:.2}*", self.epoll_events as f64 / waits as f64),
            (batches, _) => format!("{:.2}", self.rx_packets as f64 / batches as f64),
        }
    }

    pub fn empty_percent(&self) -> String {
        if self.rounds == 0 {
            "-".into()
        } else {
            format!("{:.1}%", 100.0 * self.empty_rounds as f64 / self.rounds as f64)
        }
    }
}

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

/// Connects every connection, then runs them all through one window, which
/// it publishes.
async fn ix_client(server: SocketAddrV4, load: Load) -> Result<Recorder, String> {
    let mut streams = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        streams.push(TcpStream::connect(server).await.map_err(|e| format!("connect to {server}: {e}"))?);
    }
    let window = load.open_window();
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
fn run_ix_client(runtime: Runtime, server: SocketAddrV4, load: Load) -> Result<(Recorder, LoopTotals), String> {
    let (result, counted) = (Slot::default(), Slot::default());
    let (out, counted_out) = (result.clone(), counted.clone());
    runtime
        .run(move |_| {
            let (out, load) = (out.clone(), load.clone());
            let counter = count_loop_in_window(load.window.clone(), counted_out.clone());
            async move {
                let counter = spawn_local(counter);
                let recorded = ix_client(server, load).await;
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
pub fn run_ix(system: System, connections: usize, timing: Timing) -> Result<Sample, String> {
    let (server_rt, client_rt, server_addr) = ix_runtimes(system)?;
    let load = Load::new(connections, timing);
    let (server, started) = start_ix_server(server_rt, server_addr.port(), load.window.clone());
    let cpu = sample_process_cpu(load.window.clone());
    let client = started.and_then(|()| run_ix_client(client_rt, server_addr, load));
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
