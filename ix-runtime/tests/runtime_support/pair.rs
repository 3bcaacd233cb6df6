//! Two runtimes that talk to each other for scenario tests (a server and a
//! client, on the `mem` wire or on kernel sockets over loopback), signals
//! between them, and the wait for a core to settle (pool full, no connection).

use std::future::{Future, poll_fn};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use ix_driver::mem::{FaultConfig, MemWire, MemWireConfig};
use ix_net::TcpConfig;
use ix_runtime::time::{sleep, timeout};
use ix_runtime::{Backend, Builder, CoreStats, Runtime, stats};

/// Where the two runtimes of a scenario run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// Two ports of an in-process `mem` wire.
    Mem,
    /// Kernel sockets over loopback.
    Kernel,
}

/// The server's address on the wire.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The client's address on the wire.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The port servers use on the wire (on loopback they take any free port).
const WIRE_PORT: u16 = 7000;
/// Bound of every wait between the two sides.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);
/// Bound of the wait for a core to settle (closing handshakes, TIME-WAIT,
/// ARP giving up on a neighbour: about 3 s).
pub const SETTLE_LIMIT: Duration = Duration::from_secs(10);
/// TIME-WAIT of the scenario runtimes: short, so that `connections` reaches zero.
pub const TIME_WAIT: Duration = Duration::from_millis(100);

impl Backing {
    /// The port a server binds: fixed on the wire, any free port (0) on loopback.
    pub fn listen_port(self) -> u16 {
        match self {
            Backing::Mem => WIRE_PORT,
            Backing::Kernel => 0,
        }
    }

    /// A port for a second socket: the next one on the wire, any free one on loopback.
    pub fn second_port(self) -> u16 {
        match self {
            Backing::Mem => WIRE_PORT + 1,
            Backing::Kernel => 0,
        }
    }

    /// The server's address, given the port it announced.
    pub fn server_addr(self, port: u64) -> SocketAddrV4 {
        let port = u16::try_from(port).expect("a port");
        match self {
            Backing::Mem => SocketAddrV4::new(SERVER_IP, port),
            Backing::Kernel => SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
        }
    }
}

/// TCP settings of the scenario runtimes: defaults but a short TIME-WAIT.
pub fn scenario_tcp() -> TcpConfig {
    TcpConfig { time_wait: TIME_WAIT, ..TcpConfig::default() }
}

/// [`scenario_tcp`] with retransmission timeouts between `rto_min` and
/// `rto_max`: for scenarios that drop frames on purpose and should not wait on
/// backed-off timers.
pub fn brisk_tcp(rto_min: Duration, rto_max: Duration) -> TcpConfig {
    let rtt = ix_net::tcp::rtt::RttConfig { rto_min, rto_max, ..Default::default() };
    TcpConfig { rtt, ..scenario_tcp() }
}

/// A server runtime and a client runtime that can reach each other.
pub struct Pair {
    pub backing: Backing,
    wire: Option<Arc<MemWire>>,
}

/// What a scenario's two runs returned.
pub struct Outcome {
    /// The server core's counters when its run returned.
    pub server: CoreStats,
    /// The client core's counters when its run returned.
    pub client: CoreStats,
    /// When the server's run returned.
    pub server_returned: std::time::Instant,
}

impl Outcome {
    /// [`assert_clean`] on both sides.
    pub fn assert_clean(&self) {
        assert_clean("server", &self.server);
        assert_clean("client", &self.client);
    }
}

impl Pair {
    pub fn new(backing: Backing) -> Pair {
        Pair::with_faults(backing, FaultConfig::NONE)
    }

    /// On `mem`, a wire with `faults` on every link (ignored on loopback).
    pub fn with_faults(backing: Backing, faults: FaultConfig) -> Pair {
        let wire = (backing == Backing::Mem)
            .then(|| MemWire::new(MemWireConfig { ports: 2, queues_per_port: 1, faults, ..MemWireConfig::default() }))
            .map(|w| w.expect("a mem wire"));
        Pair { backing, wire }
    }

    /// The server's builder: one core, 1024 frames, [`scenario_tcp`], no
    /// signal handling, not pinned (several runtimes share two CPUs).
    pub fn server(&self) -> Builder {
        self.builder(0, SERVER_IP)
    }

    /// The client's builder, as [`Pair::server`].
    pub fn client(&self) -> Builder {
        self.builder(1, CLIENT_IP)
    }

    fn builder(&self, port: u16, ip: Ipv4Addr) -> Builder {
        let builder =
            Runtime::builder().cores(1).pool_frames(1024).handle_signals(false).pin_threads(false).tcp(scenario_tcp());
        match &self.wire {
            Some(wire) => builder.backend(Backend::Mem { wire: wire.clone(), port }).ipv4(ip, 24),
            None => builder.backend(Backend::Kernel).ipv4(Ipv4Addr::LOCALHOST, 8),
        }
    }

    /// Runs `serve` on the server runtime (its own thread) and `talk` on the
    /// client runtime (this thread) and waits for both.
    pub fn run<S, SF, C, CF>(&self, server: Builder, serve: S, client: Builder, talk: C) -> Outcome
    where
        S: FnOnce() -> SF + Send + 'static,
        SF: Future<Output = ()> + 'static,
        C: FnOnce() -> CF + Send + 'static,
        CF: Future<Output = ()> + 'static,
    {
        let (server, client) = (server.build().expect("server runtime"), client.build().expect("client runtime"));
        run_both(server, serve, client, talk)
    }
}

/// [`Pair::run`] with runtimes already built (to take their shutdown handles).
pub fn run_both<S, SF, C, CF>(server: Runtime, serve: S, client: Runtime, talk: C) -> Outcome
where
    S: FnOnce() -> SF + Send + 'static,
    SF: Future<Output = ()> + 'static,
    C: FnOnce() -> CF + Send + 'static,
    CF: Future<Output = ()> + 'static,
{
    let server = std::thread::spawn(move || {
        let stats = run_alone(server, serve);
        (stats, std::time::Instant::now())
    });
    let client = run_alone(client, talk);
    let (server, server_returned) = server.join().expect("server thread");
    Outcome { server, client, server_returned }
}

/// Runs `main` as the first task of a one-core runtime; returns the core's
/// counters when the run returned.
pub fn run_alone<M, F>(runtime: Runtime, main: M) -> CoreStats
where
    M: FnOnce() -> F + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let main = Mutex::new(Some(main));
    let stats =
        runtime.run(move |_| main.lock().unwrap().take().expect("a one-core runtime calls main once")()).expect("run");
    stats[0]
}

/// A value one runtime sets once and tasks of any runtime await (task wakers
/// are `Send`, so a task of one runtime can wait for another's).
#[derive(Clone, Default)]
pub struct Signal(Arc<SignalState>);

#[derive(Default)]
struct SignalState {
    /// 0 while unset, the value + 1 once set.
    value: AtomicU64,
    waiters: Mutex<Vec<Waker>>,
}

impl Signal {
    pub fn set(&self) {
        self.set_value(0);
    }

    pub fn set_value(&self, value: u64) {
        self.0.value.store(value + 1, Ordering::Release);
        let waiters = std::mem::take(&mut *self.0.waiters.lock().unwrap());
        waiters.into_iter().for_each(Waker::wake);
    }

    pub fn get(&self) -> Option<u64> {
        self.0.value.load(Ordering::Acquire).checked_sub(1)
    }

    /// Waits for the value, at most [`WAIT_LIMIT`].
    ///
    /// # Panics
    /// When it is not set in time: the task fails, the test reports it.
    pub async fn wait(&self, what: &str) -> u64 {
        let set = poll_fn(|cx| {
            let mut waiters = self.0.waiters.lock().unwrap();
            match self.get() {
                Some(value) => Poll::Ready(value),
                None => {
                    waiters.push(cx.waker().clone());
                    Poll::Pending
                }
            }
        });
        timeout(WAIT_LIMIT, set).await.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }
}

/// Checks `done` every millisecond until it holds or `limit` passes;
/// returns whether it held.
pub async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(1)).await;
    }
}

/// Waits (at most [`SETTLE_LIMIT`]) until every frame of the core's pool is
/// back and no connection is left (TIME-WAIT is [`TIME_WAIT`]); the test then
/// checks the core's final counters with [`assert_settled`].
pub async fn settle() {
    until(SETTLE_LIMIT, || {
        let s = stats();
        s.pool_free == s.pool_capacity && s.connections == 0
    })
    .await;
}

/// The core's pool is full and no connection is left.
pub fn assert_settled(side: &str, s: &CoreStats) {
    assert_eq!(
        s.pool_free,
        s.pool_capacity,
        "{side}: {} frame(s) never came back to the pool: {s:#?}",
        s.pool_capacity - s.pool_free
    );
    assert_eq!(s.connections, 0, "{side}: connections left open: {s:#?}");
}

/// [`assert_settled`], and no task panicked.
pub fn assert_clean(side: &str, s: &CoreStats) {
    assert_settled(side, s);
    assert_eq!(s.executor.panics, 0, "{side}: a task panicked (its message is printed above)");
}

/// A slot a task fills and the test reads after the run.
pub struct Report<T>(Arc<Mutex<Option<T>>>);

impl<T> Clone for Report<T> {
    fn clone(&self) -> Self {
        Report(self.0.clone())
    }
}

impl<T> Default for Report<T> {
    fn default() -> Self {
        Report(Arc::new(Mutex::new(None)))
    }
}

impl<T> Report<T> {
    pub fn put(&self, value: T) {
        *self.0.lock().unwrap() = Some(value);
    }

    /// The value.
    ///
    /// # Panics
    /// When no task filled it (a task failed before; see its message above).
    pub fn take(&self, what: &str) -> T {
        self.0.lock().unwrap().take().unwrap_or_else(|| panic!("no report of {what}: a task failed before making it"))
    }
}

/// Listens on the scenario's port and announces the port through `listening`.
///
/// # Panics
/// When the port cannot be bound.
pub fn listen(backing: Backing, listening: &Signal) -> ix_runtime::net::TcpListener {
    let listener = ix_runtime::net::TcpListener::bind(backing.listen_port()).expect("listen");
    listening.set_value(listener.port().into());
    listener
}

/// Listens (announcing the port), takes one connection and stops listening.
///
/// # Panics
/// As [`listen`] and [`accept_one`].
pub async fn accept_single(backing: Backing, listening: &Signal) -> ix_runtime::net::TcpStream {
    let listener = listen(backing, listening);
    accept_one(&listener).await
}

/// The next connection, within [`WAIT_LIMIT`].
///
/// # Panics
/// When none comes in time or accepting fails.
pub async fn accept_one(listener: &ix_runtime::net::TcpListener) -> ix_runtime::net::TcpStream {
    timeout(WAIT_LIMIT, listener.accept()).await.expect("a connection in time").expect("accept").0
}
