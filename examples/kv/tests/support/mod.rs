//! Shared by the kv integration tests: start `ix-kv` (tokio or IX on a TAP
//! device the test owns) or the real memcached on loopback, stop them on drop,
//! and a raw protocol client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where the binary under test is.
pub const IX_KV: &str = env!("CARGO_BIN_EXE_ix-kv");
/// How long a server gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether `program --version`-like probing finds it on PATH.
pub fn have_command(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The test policy for an external tool: skip with a reason locally, fail in
/// CI (`CI=true`), where `scripts/test.sh` installs it.
pub fn require_tool(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    assert!(!in_ci, "{what} is missing in CI (scripts/test.sh installs it)");
    eprintln!("skipped: {what} is not installed (scripts/test.sh installs it)");
    false
}

/// A server process, stopped (SIGTERM, then SIGKILL) on drop.
pub struct ServerProcess {
    child: Child,
    /// Where clients connect.
    pub addr: SocketAddrV4,
}

impl ServerProcess {
    /// Sends SIGTERM and waits up to `timeout` for a clean exit; true when it
    /// exited successfully in time.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) && !self.terminate(Duration::from_secs(5)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Starts `ix-kv`; the receiver gets its first stdout line ("" if it exits).
fn spawn_ix_kv(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(IX_KV)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ix-kv");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let _ = tx.send(first);
    });
    (child, rx)
}

/// Starts `ix-kv` with `args` and waits for its `listening on` line; `None`
/// when it exited first (a port taken between [`free_port`] and its bind).
pub fn try_start_ix_kv(args: &[&str], addr: SocketAddrV4) -> Option<ServerProcess> {
    let (child, rx) = spawn_ix_kv(args);
    let server = ServerProcess { child, addr };
    let line = rx.recv_timeout(START_TIMEOUT).expect("ix-kv printed no listening line");
    line.starts_with("listening on ").then_some(server)
}

/// Tries a few free ports: tests run in parallel and another may take the one
/// just found before the server binds it.
const PORT_ATTEMPTS: usize = 5;

/// Starts `ix-kv` on tokio on a free loopback port.
pub fn start_tokio(extra: &[&str]) -> ServerProcess {
    start_on_loopback(&["--runtime", "tokio"], extra)
}

/// Starts `ix-kv` on the IX runtime's kernel-socket backend on a free loopback port.
pub fn start_ix_kernel(extra: &[&str]) -> ServerProcess {
    start_on_loopback(&["--runtime", "ix", "--backend", "kernel"], extra)
}

fn start_on_loopback(runtime: &[&str], extra: &[&str]) -> ServerProcess {
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port().to_string();
        let mut args = runtime.to_vec();
        args.extend_from_slice(&["--addr", "127.0.0.1", "-p", &port, "-t", "2"]);
        args.extend_from_slice(extra);
        if let Some(server) = try_start_ix_kv(&args, SocketAddrV4::new(Ipv4Addr::LOCALHOST, port.parse().unwrap())) {
            return server;
        }
    }
    panic!("ix-kv did not start on any of {PORT_ATTEMPTS} free ports");
}

/// Starts the real memcached (`-t 1`, UDP off) on a free loopback port.
pub fn start_memcached(extra: &[&str]) -> ServerProcess {
    for _ in 0..PORT_ATTEMPTS {
        if let Some(server) = try_start_memcached(extra) {
            return server;
        }
    }
    panic!("memcached did not start on any of {PORT_ATTEMPTS} free ports");
}

fn try_start_memcached(extra: &[&str]) -> Option<ServerProcess> {
    let port = free_port();
    let mut cmd = Command::new("memcached");
    cmd.args(["-U", "0", "-l", "127.0.0.1", "-p", &port.to_string(), "-t", "1"]).args(extra);
    // memcached refuses to run as root without being told which user to be.
    if std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t"))) {
        cmd.args(["-u", "root"]);
    }
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start memcached");
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let mut server = ServerProcess { child, addr };
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "memcached did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Listening, but is it memcached? It exits at once when the port was taken.
    std::thread::sleep(Duration::from_millis(50));
    matches!(server.child.try_wait(), Ok(None)).then_some(server)
}

/// Deletes a network device when dropped (the TAP device `ix-kv` made).
pub struct LinkGuard(pub String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).output().is_ok_and(|o| o.status.success())
}

/// `ix-kv` on the IX runtime over a TAP device named `ixkv{tag}{pid}`, the
/// dataplane at 10.97.`subnet`.2, the kernel side at .1. Returns the server
/// and the guard that removes the device.
pub fn start_ix_on_tap(tag: &str, subnet: u8, extra: &[&str]) -> (ServerProcess, LinkGuard) {
    let name = format!("ixkv{tag}{}", std::process::id() % 100_000);
    let guard = LinkGuard(name.clone());
    let ix_ip = Ipv4Addr::new(10, 97, subnet, 2);
    let port = 11211u16;
    let backend = format!("tap:{name}");
    let addr = format!("{ix_ip}/24");
    let port_text = port.to_string();
    let mut args = vec!["--runtime", "ix", "--backend", &backend, "--addr", &addr, "-p", &port_text, "-t", "2"];
    args.extend_from_slice(extra);
    let (child, rx) = spawn_ix_kv(&args);
    let server = ServerProcess { child, addr: SocketAddrV4::new(ix_ip, port) };
    let deadline = Instant::now() + START_TIMEOUT;
    while !ip(&["link", "show", &name]) {
        assert!(Instant::now() < deadline, "ix-kv did not create {name}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ip(&["addr", "add", &format!("10.97.{subnet}.1/24"), "dev", &name]));
    assert!(ip(&["link", "set", &name, "up"]));
    let line = rx.recv_timeout(START_TIMEOUT).expect("ix-kv printed no listening line");
    assert!(line.starts_with("listening on "), "unexpected first line: {line:?}");
    (server, guard)
}

/// How [`RawClient::exchange_or_close`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The reply ended in `MN`.
    Answered,
    /// The server closed the connection.
    HungUp,
    /// No `MN` within the read timeout.
    Stalled,
}

/// A raw protocol connection with a read timeout.
pub struct RawClient {
    pub stream: TcpStream,
}

impl RawClient {
    /// Connects (10 s timeout).
    pub fn connect(addr: SocketAddrV4) -> Self {
        let stream = TcpStream::connect_timeout(&SocketAddr::V4(addr), Duration::from_secs(10)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        Self { stream }
    }

    /// Sends bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads until the received bytes end with `terminator`, the peer closes,
    /// or the read timeout; returns what came.
    pub fn read_until(&mut self, terminator: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        while !got.ends_with(terminator) {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    }

    /// Sends `request` followed by `mn` and returns the reply before `MN`.
    pub fn exchange(&mut self, request: &[u8]) -> Vec<u8> {
        let mut bytes = request.to_vec();
        bytes.extend_from_slice(b"mn\r\n");
        self.send(&bytes);
        let mut reply = self.read_until(b"MN\r\n");
        assert!(reply.ends_with(b"MN\r\n"), "no MN after {:?}: got {:?}", show(request), show(&reply));
        reply.truncate(reply.len() - 4);
        reply
    }

    /// Like [`RawClient::exchange`], but a server that hangs up or stops
    /// answering (for the read timeout) is no failure: returns what came
    /// before and how the exchange ended.
    pub fn exchange_or_close(&mut self, request: &[u8]) -> (Vec<u8>, Ending) {
        let mut bytes = request.to_vec();
        bytes.extend_from_slice(b"mn\r\n");
        if self.stream.write_all(&bytes).is_err() {
            return (Vec::new(), Ending::HungUp);
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        while !got.ends_with(b"MN\r\n") {
            match self.stream.read(&mut buf) {
                Ok(0) => return (got, Ending::HungUp),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe) => {
                    return (got, Ending::HungUp);
                }
                Err(_) => return (got, Ending::Stalled),
            }
        }
        got.truncate(got.len() - 4);
        (got, Ending::Answered)
    }

    /// Whether the server closed the connection (reads EOF or a reset within
    /// the read timeout).
    pub fn closed_by_peer(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe);
                }
            }
        }
    }
}

/// Printable bytes for assertion messages (long runs cut).
pub fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    if bytes.len() > 300 { format!("{text:?}... ({} bytes)", bytes.len()) } else { format!("{text:?}") }
}
