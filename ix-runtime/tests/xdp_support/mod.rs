//! Shared pieces of the XDP runtime tests: the test network, a runtime started
//! inside its server namespace, an echo and a tiny HTTP responder, and clients
//! that run in the client namespace.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener as KernelListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ix_driver::netns::{TestNetwork, spawn_in};
use ix_driver::privilege;
use ix_runtime::net::{TcpListener, TcpStream as IxStream};
use ix_runtime::{Backend, CoreStats, Runtime, RuntimeError, ShutdownHandle, spawn_local};

pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/testnet.sh");
/// An address the kernel does not have: the dataplane's alone.
pub const DATAPLANE_ONLY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 3);
pub const ECHO_PORT: u16 = 7000;
pub const HTTP_PORT: u16 = 8080;
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The interface's address, shared by the kernel and the dataplanes.
pub const SHARED: Ipv4Addr = TestNetwork::SERVER_ADDR;

pub fn privileged() -> bool {
    privilege::require("XDP on veth in network namespaces", privilege::netns_available())
}

pub fn network(tag: &str, queues: u16) -> TestNetwork {
    TestNetwork::up(SCRIPT, tag, queues).expect("test network")
}

/// A runtime running in the server namespace of a test network.
pub struct Server {
    pub shutdown: ShutdownHandle,
    thread: JoinHandle<Result<Vec<CoreStats>, RuntimeError>>,
}

impl Server {
    /// Starts `cores` cores on `spec` (an `xdp:` option string) at `addr`,
    /// each serving echo on [`ECHO_PORT`] and HTTP on [`HTTP_PORT`], and
    /// returns once every core listens.
    pub fn start(net: &TestNetwork, spec: &str, cores: usize, addr: Ipv4Addr) -> Server {
        Self::start_app(net, spec, cores, addr, serve)
    }

    /// [`Server::start`] with another application: `app` runs on each core and
    /// increments its argument once it listens.
    pub fn start_app<A, F>(net: &TestNetwork, spec: &str, cores: usize, addr: Ipv4Addr, app: A) -> Server
    where
        A: Fn(Arc<AtomicUsize>) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + 'static,
    {
        let config = spec.parse().expect("xdp spec");
        let rt = Runtime::builder()
            .cores(cores)
            .backend(Backend::Xdp(config))
            .ipv4(addr, 24)
            .handle_signals(false)
            .build()
            .unwrap();
        let shutdown = rt.shutdown_handle();
        let listening = Arc::new(AtomicUsize::new(0));
        let bound = listening.clone();
        let thread = spawn_in(&net.server_ns(), move || rt.run(move |_| app(bound.clone())));
        let deadline = Instant::now() + Duration::from_secs(20);
        while listening.load(Ordering::SeqCst) < cores {
            assert!(!thread.is_finished(), "the runtime stopped before listening");
            assert!(Instant::now() < deadline, "the runtime's cores did not start listening");
            std::thread::sleep(Duration::from_millis(5));
        }
        Server { shutdown, thread }
    }

    /// Stops the runtime and returns each core's counters.
    pub fn stop(self) -> Vec<CoreStats> {
        self.shutdown.shutdown();
        self.thread.join().expect("runtime thread").expect("runtime")
    }
}

/// One core's application: echo and HTTP listeners.
pub async fn serve(listening: Arc<AtomicUsize>) {
    let echo = TcpListener::bind(ECHO_PORT).unwrap();
    let http = TcpListener::bind(HTTP_PORT).unwrap();
    listening.fetch_add(1, Ordering::SeqCst);
    drop(spawn_local(async move {
        while let Ok((stream, _)) = http.accept().await {
            drop(spawn_local(respond_http(stream)));
        }
    }));
    while let Ok((stream, _)) = echo.accept().await {
        drop(spawn_local(echo_stream(stream)));
    }
}

pub async fn echo_stream(stream: IxStream) {
    while let Ok(Some(chunk)) = stream.recv().await {
        if stream.send(Bytes::copy_from_slice(&chunk)).await.is_err() {
            return;
        }
    }
    let _ = stream.shutdown();
}

/// HTTP/1.1 with keep-alive: `GET /` says hello, `GET /core` names the core,
/// anything else is a 404.
pub async fn respond_http(stream: IxStream) {
    let mut pending = Vec::new();
    loop {
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let request = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..end + 4);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match path {
                "/" => ("200 OK", "Hello, world!".to_owned()),
                "/core" => ("200 OK", format!("core {}", ix_runtime::core_index())),
                _ => ("404 Not Found", "not found".to_owned()),
            };
            let reply = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            if stream.send(Bytes::from(reply)).await.is_err() {
                return;
            }
        }
        match stream.recv().await {
            Ok(Some(chunk)) => pending.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let _ = stream.shutdown();
}

/// A deterministic byte pattern, different per `salt`.
pub fn pattern(len: usize, salt: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + salt * 7 + i / 4093) % 251) as u8).collect()
}

/// Connects from the current thread (which must be in the client namespace).
pub fn connect(addr: Ipv4Addr, port: u16) -> TcpStream {
    let target = SocketAddrV4::new(addr, port);
    let stream = TcpStream::connect_timeout(&target.into(), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect to {target}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Sends `len` bytes of pattern `salt` to the echo port and checks every byte
/// that comes back; runs in the current thread's namespace.
pub fn echo_round_trip(addr: Ipv4Addr, len: usize, salt: usize) -> Result<(), String> {
    let mut stream = connect(addr, ECHO_PORT);
    let mut reader = stream.try_clone().map_err(|e| e.to_string())?;
    let writer = std::thread::spawn(move || {
        let data = pattern(len, salt);
        for piece in data.chunks(1 << 16) {
            stream.write_all(piece)?;
        }
        stream.shutdown(std::net::Shutdown::Write)
    });
    let expected = pattern(len, salt);
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| format!("{salt}: read after {got} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        if got + n > len || buf[..n] != expected[got..got + n] {
            return Err(format!("{salt}: echo differs in bytes {got}..{}", got + n));
        }
        got += n;
    }
    writer.join().unwrap().map_err(|e| format!("{salt}: write: {e}"))?;
    if got != len {
        return Err(format!("{salt}: {got} of {len} bytes came back"));
    }
    Ok(())
}

/// One HTTP/1.1 GET with `Connection: close`; returns the body.
pub fn http_get(addr: Ipv4Addr, port: u16, path: &str) -> String {
    let mut stream = connect(addr, port);
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    // The responder keeps the connection open: read one response.
    let mut buf = [0u8; 4096];
    while !response.contains("\r\n\r\n") || !body_complete(&response) {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed mid-response: {response:?}");
        response.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

fn body_complete(response: &str) -> bool {
    let Some((head, body)) = response.split_once("\r\n\r\n") else { return false };
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    body.len() >= length
}

/// A kernel TCP server in `ns` on `port`: answers every connection with an
/// HTTP response whose body is `kernel`. Returns once it listens.
pub fn kernel_server(ns: &str, port: u16) {
    let (ready, listening) = mpsc::channel();
    // Detached: it lives as long as the test process.
    drop(spawn_in(ns, move || {
        let listener = KernelListener::bind((SHARED, port)).expect("kernel listener");
        ready.send(()).unwrap();
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nkernel");
        }
    }));
    listening.recv_timeout(Duration::from_secs(10)).expect("kernel server listening");
}

/// A counter for the cores' listeners: once it is above zero, a thread of
/// its own prints `line` (for a parent process waiting on this one's stdout).
pub fn announce_when_listening(line: &'static str) -> Arc<AtomicUsize> {
    let listening = Arc::new(AtomicUsize::new(0));
    let bound = listening.clone();
    std::thread::spawn(move || {
        while bound.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        println!("{line}");
    });
    listening
}

/// A child process of the test (this test binary run again in another role),
/// killed if the test fails before it ends; its stdout lines arrive on a
/// channel.
pub struct ChildProcess {
    pub child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl ChildProcess {
    /// Spawns `command` with its stdout piped.
    pub fn spawn(mut command: std::process::Command) -> ChildProcess {
        use std::io::BufRead;
        let mut child = command.stdout(std::process::Stdio::piped()).spawn().expect("spawn the child");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        ChildProcess { child, lines }
    }

    /// What follows `marker` on the first line from now that holds it (the
    /// test harness may have written on the same line before).
    pub fn text_after(&self, marker: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("no {marker:?} from the child"));
            if let Some((_, rest)) = line.split_once(marker) {
                return rest.to_owned();
            }
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
