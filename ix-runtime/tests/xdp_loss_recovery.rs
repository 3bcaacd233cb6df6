//! Loss recovery against Linux in wall-clock time: 20 MB each way between the
//! runtime on `xdp` and Linux's TCP with 1%, 5% and 10% random loss both ways,
//! each held to Linux-to-Linux's time and retransmission timeouts on the same path.

mod xdp_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener as StdListener, TcpStream as StdStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ix_driver::netns::{TestNetwork, spawn_in};
use ix_driver::privilege;
use ix_runtime::net::{TcpListener, TcpStream as IxStream};
use ix_runtime::spawn_local;
use xdp_support::{DATAPLANE_ONLY, Server, network, pattern, privileged};

/// Bytes of each transfer.
const TRANSFER_BYTES: usize = 20_000_000;
/// The bulk service's port, on the dataplane's address and on Linux's.
const BULK_PORT: u16 = 9000;
/// A transfer on IX may take this many times Linux's time on the same path
/// (issue #13's generous functional bound: the timeouts below are the
/// sharper check that recovery does not wait on timers)...
const BOUND_LINUX_TIMES: u32 = 10;
/// ...plus this much, for a shared machine's scheduling noise.
const BOUND_SLACK: Duration = Duration::from_secs(1);
/// The end sending the bulk may take this many times the retransmission
/// timeouts Linux's sender took on the same path (Linux's own count at 10%
/// ranged from 39 to 129 in four runs of one day, IX's from 62 to 66: twice
/// a lucky Linux run is too close to call)...
const TIMEOUTS_LINUX_TIMES: u64 = 3;
/// ...plus this many.
const TIMEOUTS_SLACK: u64 = 3;
/// Linux-to-Linux transfers fail the test beyond this: a broken path, not a
/// slow one. Linux's own 20 MB at 10% loss took 14 to 53 s in runs of this
/// test, and once (CI on 2026-12-05) went past 60 s with 18.75 MB done.
const LINUX_LIMIT: Duration = Duration::from_secs(180);
/// Pattern salt of the transferred bytes.
const SALT: usize = 13;
/// Bytes handed to one send or write.
const WRITE_BYTES: usize = 64 * 1024;
/// The request byte: the server sends [`TRANSFER_BYTES`], then closes.
const OP_SERVER_SENDS: u8 = b'S';
/// The request byte: the server receives [`TRANSFER_BYTES`], checks them and
/// answers one byte, [`VERDICT_OK`] or [`VERDICT_BAD`].
const OP_SERVER_RECEIVES: u8 = b'R';
const VERDICT_OK: u8 = b'+';
const VERDICT_BAD: u8 = b'-';

/// The retransmission timeouts of each IX bulk session, in the order they ended.
type SessionTimeouts = Arc<Mutex<Vec<u64>>>;

/// Held by each test for its whole run: timings of two at once mean nothing.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What every transfer carries.
static DATA: LazyLock<Bytes> = LazyLock::new(|| Bytes::from(pattern(TRANSFER_BYTES, SALT)));

/// Which way the bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The server (IX, or Linux for the baseline) sends to the Linux client.
    ServerSends,
    /// The Linux client sends to the server.
    ServerReceives,
}

impl Direction {
    fn op(self) -> u8 {
        match self {
            Direction::ServerSends => OP_SERVER_SENDS,
            Direction::ServerReceives => OP_SERVER_RECEIVES,
        }
    }
}

/// One IX core's application: the bulk service on [`BULK_PORT`].
async fn serve_bulk(listening: Arc<AtomicUsize>, sessions: SessionTimeouts) {
    let listener = TcpListener::bind(BULK_PORT).unwrap();
    listening.fetch_add(1, Ordering::SeqCst);
    while let Ok((stream, _)) = listener.accept().await {
        drop(spawn_local(bulk_session(stream, sessions.clone())));
    }
}

/// One connection of the bulk service on IX; records the retransmission
/// timeouts the core took meanwhile (one connection at a time in this test).
async fn bulk_session(stream: IxStream, sessions: SessionTimeouts) {
    let timeouts = || ix_runtime::stats().stack.tcp.retransmit_timeouts;
    let before = timeouts();
    bulk_exchange(&stream).await;
    sessions.lock().unwrap().push(timeouts() - before);
}

/// Reads the request byte, sends or receives (and checks) [`TRANSFER_BYTES`],
/// closes after the client's EOF.
async fn bulk_exchange(stream: &IxStream) {
    let Ok(Some(first)) = stream.recv().await else { return };
    let Some((&op, rest)) = first.split_first() else { return };
    let verdict = match op {
        OP_SERVER_SENDS => {
            for start in (0..TRANSFER_BYTES).step_by(WRITE_BYTES) {
                let end = (start + WRITE_BYTES).min(TRANSFER_BYTES);
                if stream.send(DATA.slice(start..end)).await.is_err() {
                    return;
                }
            }
            None
        }
        OP_SERVER_RECEIVES => {
            let mut received = 0;
            let mut intact = follows_data(&mut received, rest);
            while intact && received < TRANSFER_BYTES {
                match stream.recv().await {
                    Ok(Some(chunk)) => intact = follows_data(&mut received, &chunk),
                    _ => return,
                }
            }
            Some(if intact && received == TRANSFER_BYTES { VERDICT_OK } else { VERDICT_BAD })
        }
        _ => return,
    };
    if let Some(verdict) = verdict
        && stream.send(Bytes::copy_from_slice(&[verdict])).await.is_err()
    {
        return;
    }
    if stream.shutdown().is_err() {
        return;
    }
    while let Ok(Some(_)) = stream.recv().await {}
}

/// Whether `bytes` are [`DATA`] from `*received` on; advances `*received`.
fn follows_data(received: &mut usize, bytes: &[u8]) -> bool {
    let intact = DATA.get(*received..*received + bytes.len()) == Some(bytes);
    *received += bytes.len();
    intact
}

/// The same bulk service on Linux's TCP, at `addr` in the current thread's
/// namespace, for `connections` connections.
fn serve_bulk_on_linux(addr: Ipv4Addr, connections: usize) {
    let listener = StdListener::bind(SocketAddrV4::new(addr, BULK_PORT)).expect("bind the Linux bulk server");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections).flatten() {
            std::thread::spawn(move || linux_bulk_session(stream));
        }
    });
}

fn linux_bulk_session(mut stream: StdStream) -> std::io::Result<()> {
    let mut op = [0u8; 1];
    stream.read_exact(&mut op)?;
    match op[0] {
        OP_SERVER_SENDS => stream.write_all(&DATA)?,
        OP_SERVER_RECEIVES => {
            let mut got = vec![0u8; TRANSFER_BYTES];
            stream.read_exact(&mut got)?;
            stream.write_all(&[if got[..] == DATA[..] { VERDICT_OK } else { VERDICT_BAD }])?;
        }
        _ => return Ok(()),
    }
    stream.shutdown(Shutdown::Write)?;
    std::io::copy(&mut stream, &mut std::io::sink()).map(drop)
}

/// One transfer from a Linux client in the current thread's namespace to the
/// bulk service at `addr`, every byte checked; returns its time from connect
/// to the last byte (or the server's verdict).
///
/// # Errors
/// When the bytes differ, the connection fails, or `limit` passes first.
fn transfer(addr: Ipv4Addr, direction: Direction, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let deadline = started + limit;
    let remaining = || deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
    let target = SocketAddrV4::new(addr, BULK_PORT);
    let mut stream = StdStream::connect_timeout(&target.into(), limit).map_err(|e| format!("connect: {e}"))?;
    stream.write_all(&[direction.op()]).map_err(|e| format!("request: {e}"))?;
    let mut done = 0;
    let mut buf = vec![0u8; WRITE_BYTES];
    let outcome = loop {
        let Some(left) = remaining() else { break Err("the time limit passed".to_owned()) };
        stream
            .set_read_timeout(Some(left))
            .and_then(|()| stream.set_write_timeout(Some(left)))
            .map_err(|e| e.to_string())?;
        let step = match direction {
            Direction::ServerSends if done == TRANSFER_BYTES => break expect_eof(&mut stream),
            Direction::ServerSends => stream.read(&mut buf).map(|n| {
                let intact = n > 0 && DATA.get(done..done + n) == Some(&buf[..n]);
                (n, intact)
            }),
            Direction::ServerReceives if done == TRANSFER_BYTES => break read_verdict(&mut stream),
            Direction::ServerReceives => {
                let end = (done + WRITE_BYTES).min(TRANSFER_BYTES);
                stream.write(&DATA[done..end]).map(|n| (n, n > 0))
            }
        };
        match step {
            Ok((n, true)) => done += n,
            Ok((0, _)) => break Err("the connection closed early".to_owned()),
            Ok((n, false)) => break Err(format!("bytes {done}..{} differ", done + n)),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break Err("the time limit passed".to_owned());
            }
            Err(e) => break Err(e.to_string()),
        }
    };
    outcome.map(|()| started.elapsed()).map_err(|why| format!("{why} after {done} of {TRANSFER_BYTES} bytes"))
}

fn expect_eof(stream: &mut StdStream) -> Result<(), String> {
    match stream.read(&mut [0u8; 1]) {
        Ok(0) => Ok(()),
        Ok(_) => Err("bytes past the end".to_owned()),
        Err(e) => Err(format!("waiting for EOF: {e}")),
    }
}

fn read_verdict(stream: &mut StdStream) -> Result<(), String> {
    stream.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    let mut verdict = [0u8; 1];
    match stream.read(&mut verdict) {
        Ok(1) if verdict[0] == VERDICT_OK => expect_eof(stream),
        Ok(1) => Err("the server found the bytes differ".to_owned()),
        Ok(_) => Err("the server closed without a verdict".to_owned()),
        Err(e) => Err(format!("waiting for the verdict: {e}")),
    }
}

fn nft_available() -> bool {
    Command::new("nft").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Who serves a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Linux,
    Ix,
}

/// One transfer as seen from outside: its time, and the retransmission
/// timeouts its sender took.
#[derive(Debug)]
struct Measured {
    time: Result<Duration, String>,
    sender_timeouts: Option<u64>,
}

/// Runs one transfer from the client namespace to `peer` and counts the
/// retransmission timeouts of whichever end sent the bulk: Linux's
/// `TcpExt.TCPTimeouts` in its namespace, or the IX session's own count.
fn measure(
    net: &TestNetwork,
    sessions: &SessionTimeouts,
    peer: Peer,
    direction: Direction,
    limit: Duration,
) -> Measured {
    let addr = match peer {
        Peer::Linux => TestNetwork::SERVER_ADDR,
        Peer::Ix => DATAPLANE_ONLY,
    };
    let linux_sender = match (peer, direction) {
        (_, Direction::ServerReceives) => Some(net.client_ns()),
        (Peer::Linux, Direction::ServerSends) => Some(net.server_ns()),
        (Peer::Ix, Direction::ServerSends) => None,
    };
    let ix_sessions = sessions.lock().unwrap().len();
    let linux_before = linux_sender.as_deref().map(linux_timeouts);
    let time = spawn_in(&net.client_ns(), move || transfer(addr, direction, limit)).join().expect("client thread");
    let sender_timeouts = match (linux_sender, linux_before) {
        (Some(ns), Some(before)) => Some(linux_timeouts(&ns) - before),
        _ => ix_session_timeouts(sessions, ix_sessions),
    };
    Measured { time, sender_timeouts }
}

/// `TcpExt.TCPTimeouts` of the namespace `ns`.
fn linux_timeouts(ns: &str) -> u64 {
    spawn_in(ns, || {
        let netstat = std::fs::read_to_string("/proc/thread-self/net/netstat").expect("read netstat");
        let mut tcp_ext = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
        let (names, values) = (tcp_ext.next().expect("TcpExt names"), tcp_ext.next().expect("TcpExt values"));
        let at = names.split_whitespace().position(|n| n == "TCPTimeouts").expect("TCPTimeouts");
        values.split_whitespace().nth(at).and_then(|v| v.parse().ok()).expect("a TCPTimeouts value")
    })
    .join()
    .expect("netstat thread")
}

/// The retransmission timeouts of IX session number `index` (from 0), once it
/// has ended; `None` when it has not ended within a few seconds.
fn ix_session_timeouts(sessions: &SessionTimeouts, index: usize) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(&timeouts) = sessions.lock().unwrap().get(index) {
            return Some(timeouts);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One loss rate and direction, on both peers.
struct Row {
    loss: u8,
    direction: Direction,
    linux: Measured,
    ix: Measured,
    bound: Duration,
}

impl Row {
    /// Why IX's transfer fails the test, if it does.
    fn failure(&self) -> Option<String> {
        let ix_time = match &self.ix.time {
            Err(e) => return Some(e.clone()),
            Ok(time) => *time,
        };
        let linux_timeouts = self.linux.sender_timeouts.unwrap_or(0);
        let allowed = linux_timeouts * TIMEOUTS_LINUX_TIMES + TIMEOUTS_SLACK;
        match self.ix.sender_timeouts {
            _ if ix_time > self.bound => Some(format!("took {ix_time:.2?}, over the bound")),
            Some(timeouts) if timeouts > allowed => {
                Some(format!("its sender took {timeouts} retransmission timeouts, over {allowed}"))
            }
            None => Some("the IX session did not end".to_owned()),
            Some(_) => None,
        }
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |m: &Measured| match &m.time {
            Ok(time) => format!("{time:.2?}, {:?} timeouts", m.sender_timeouts),
            Err(e) => format!("{e}, {:?} timeouts", m.sender_timeouts),
        };
        write!(
            f,
            "{:>3}% loss, {:?}: Linux {}; IX {} (bound {:.2?})",
            self.loss,
            self.direction,
            show(&self.linux),
            show(&self.ix),
            self.bound
        )
    }
}

#[test]
fn xdp_recovers_from_1_and_5_percent_loss_like_linux() {
    recovers_like_linux("ixloss", &[1, 5]);
}

#[test]
fn xdp_recovers_from_10_percent_loss_like_linux() {
    recovers_like_linux("ixlos10", &[10]);
}

/// 20 MB each way, IX against Linux, at each of `losses` (percent, each way);
/// stops at the first transfer that fails.
fn recovers_like_linux(tag: &str, losses: &[u8]) {
    if !privileged() || !privilege::require("loss injection with nftables (nft)", nft_available()) {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let net = network(tag, 1);
    LazyLock::force(&DATA);
    let linux_transfers = losses.len() * 2;
    spawn_in(&net.server_ns(), move || serve_bulk_on_linux(TestNetwork::SERVER_ADDR, linux_transfers)).join().unwrap();
    let spec = format!("{},mode=native", net.server_if());
    let sessions = SessionTimeouts::default();
    let app_sessions = sessions.clone();
    let server =
        Server::start_app(&net, &spec, 1, DATAPLANE_ONLY, move |listening| serve_bulk(listening, app_sessions.clone()));

    let mut rows = Vec::new();
    'levels: for &loss in losses {
        net.set_loss(loss).expect("inject loss");
        for direction in [Direction::ServerSends, Direction::ServerReceives] {
            let linux = measure(&net, &sessions, Peer::Linux, direction, LINUX_LIMIT);
            let Ok(linux_time) = linux.time.clone() else {
                panic!("Linux to Linux at {loss}% loss, {direction:?}: {:?}", linux.time);
            };
            let bound = linux_time * BOUND_LINUX_TIMES + BOUND_SLACK;
            let ix = measure(&net, &sessions, Peer::Ix, direction, bound);
            let row = Row { loss, direction, linux, ix, bound };
            eprintln!("{row}");
            let failed = row.failure().is_some();
            rows.push(row);
            if failed {
                break 'levels;
            }
        }
    }
    net.set_loss(0).expect("remove loss");
    let stats = server.stop();
    stats[0].stack.tcp.for_each(|name, value| {
        if value > 0 {
            eprintln!("  Tcp.{name} {value}");
        }
    });
    eprintln!("  queue rx_drops {}", stats[0].queue.rx_drops);
    let failures: Vec<String> =
        rows.iter().filter_map(|row| row.failure().map(|why| format!("{row}\n  fails: {why}"))).collect();
    assert!(
        failures.is_empty(),
        "IX recovered worse than Linux (the levels after a failure are not run):\n{}",
        failures.join("\n")
    );
}
