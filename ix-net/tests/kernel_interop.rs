//! Our stack against the Linux kernel's TCP over a TAP device: 100 MB each way in
//! both directions of connection set-up, clean and with 1% seeded loss, and curl
//! fetching from a tiny HTTP/1.1 responder on the stack.

mod tap_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use ix_net::{Instant, SocketHandle, Stack, StackConfig};
use tap_support::{Dataplane, Loss, Outcome, StackApp, TapLink, check_bytes, pattern};

/// Bytes sent each way by the bulk transfers.
const TRANSFER_BYTES: usize = 100 << 20;
/// Duplicate ACKs that start a fast retransmit (RFC 5681 and 6675).
const DUP_THRESH: u32 = 3;
/// Bytes handed to one `tcp_send` or kernel `write`.
const WRITE_BYTES: usize = 64 * 1024;
/// After this a transfer fails with the counters printed.
const LIMIT: Duration = Duration::from_secs(60);
/// How often a blocked kernel-side call looks at the deadline.
const KERNEL_POLL: Duration = Duration::from_millis(200);
/// The stack's listening port.
const STACK_PORT: u16 = 8080;
/// Loss rate of the lossy transfers, each way, on the stack's side.
const LOSS_RATE: f64 = 0.01;

/// How our side of a connection is opened.
#[derive(Debug, Clone, Copy)]
enum Open {
    Listen(u16),
    Connect(SocketAddrV4),
}

/// The stack's end of a bulk transfer: sends `out`, checks every byte received
/// against `expect`, shuts down once everything is sent, and is done at EOF.
struct StreamApp {
    open: Open,
    listener: Option<SocketHandle>,
    conn: Option<SocketHandle>,
    out: Bytes,
    sent: usize,
    shut: bool,
    expect: Bytes,
    received: usize,
    started: Option<Instant>,
    /// When EOF was first seen.
    eof_at: Option<Instant>,
}

/// When the stack's receiving side was done.
#[derive(Debug)]
struct StreamReport {
    /// From accept (or connect) to EOF of `expect.len()` bytes.
    receive_time: Duration,
}

impl StreamApp {
    fn new(open: Open, out: Bytes, expect: Bytes) -> Self {
        Self {
            open,
            listener: None,
            conn: None,
            out,
            sent: 0,
            shut: false,
            expect,
            received: 0,
            started: None,
            eof_at: None,
        }
    }

    /// Our connection: opened (or accepted) as `open` says.
    fn connection(&mut self, stack: &mut Stack, now: Instant) -> Result<Option<SocketHandle>, String> {
        if self.conn.is_none() {
            self.conn = match (self.open, self.listener) {
                (Open::Listen(port), None) => {
                    self.listener = Some(stack.tcp_listen(port, 16).map_err(|e| format!("listen: {e}"))?);
                    None
                }
                (Open::Listen(_), Some(listener)) => stack.tcp_accept(listener).map_err(|e| format!("accept: {e}"))?,
                (Open::Connect(remote), _) => {
                    Some(stack.tcp_connect(remote, now, &|_| true).map_err(|e| format!("connect: {e}"))?)
                }
            };
            if self.conn.is_some() {
                self.started = Some(now);
            }
        }
        Ok(self.conn)
    }
}

impl StackApp for StreamApp {
    type Output = StreamReport;

    fn poll(&mut self, stack: &mut Stack, now: Instant) -> Result<Option<StreamReport>, String> {
        let Some(h) = self.connection(stack, now)? else { return Ok(None) };
        send_what_fits(stack, h, &self.out, &mut self.sent)?;
        if self.sent == self.out.len() && !self.shut {
            stack.tcp_shutdown(h).map_err(|e| format!("shutdown: {e}"))?;
            self.shut = true;
        }
        while let Some(chunk) = stack.tcp_recv(h).map_err(|e| format!("recv: {e}"))? {
            check_bytes(&chunk, &self.expect, self.received)?;
            self.received += chunk.len();
        }
        if !stack.tcp_at_eof(h).map_err(|e| format!("eof: {e}"))? {
            return Ok(None);
        }
        if self.received != self.expect.len() {
            return Err(format!("EOF after {} of {} bytes", self.received, self.expect.len()));
        }
        let eof_at = *self.eof_at.get_or_insert(now);
        if !self.shut {
            return Ok(None);
        }
        stack.close(h);
        if let Some(listener) = self.listener.take() {
            stack.close(listener);
        }
        let started = self.started.expect("set with the connection");
        Ok(Some(StreamReport { receive_time: eof_at.saturating_duration_since(started) }))
    }

    fn progress(&self, stack: &Stack) -> String {
        format!(
            "stack sent {} and received {} of {} bytes, shut={}; connection {:?}",
            self.sent,
            self.received,
            self.expect.len(),
            self.shut,
            self.conn.map(|h| stack.tcp_info(h)),
        )
    }
}

/// Queues `data[*sent..]` on connection `h` while the send queue takes it,
/// without copying; advances `sent`.
fn send_what_fits(stack: &mut Stack, h: SocketHandle, data: &Bytes, sent: &mut usize) -> Result<(), String> {
    while *sent < data.len() {
        let end = (*sent + WRITE_BYTES).min(data.len());
        match stack.tcp_send(h, data.slice(*sent..end)).map_err(|e| format!("send: {e}"))? {
            0 => break,
            n => *sent += n,
        }
    }
    Ok(())
}

/// The kernel's end of a bulk transfer on `stream`: one thread writes `out` and
/// shuts down, this one reads and checks `expect` until EOF. Returns the time
/// from the call to EOF. Gives up at `deadline` or when the dataplane ends.
fn kernel_transfer<R>(
    stream: TcpStream,
    out: &[u8],
    expect: &[u8],
    deadline: StdInstant,
    dataplane: &Dataplane<R>,
) -> Result<Duration, String> {
    let start = StdInstant::now();
    stream.set_read_timeout(Some(KERNEL_POLL)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(KERNEL_POLL)).map_err(|e| e.to_string())?;
    let writer = stream.try_clone().map_err(|e| e.to_string())?;
    let give_up = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let written =
            scope.spawn(|| kernel_write_all(writer, out, || give_up.load(Ordering::Relaxed) || past(deadline)));
        let read = kernel_read_to_eof(stream, expect, || !dataplane.is_running() || past(deadline));
        let elapsed = start.elapsed();
        give_up.store(read.is_err(), Ordering::Relaxed);
        let written = written.join().expect("the kernel writer panicked");
        read.map_err(|e| format!("kernel read: {e}"))?;
        written.map_err(|e| format!("kernel write: {e}"))?;
        Ok(elapsed)
    })
}

fn past(deadline: StdInstant) -> bool {
    StdInstant::now() > deadline
}

/// Writes all of `out`, then shuts the stream's sending side down. A write that
/// times out asks `stop` whether to give up.
fn kernel_write_all(mut stream: TcpStream, out: &[u8], stop: impl Fn() -> bool) -> Result<(), String> {
    let mut sent = 0;
    while sent < out.len() {
        match stream.write(&out[sent..(sent + WRITE_BYTES).min(out.len())]) {
            Ok(n) => sent += n,
            Err(e) if is_timeout(&e) && !stop() => {}
            Err(e) => return Err(format!("after {sent} of {} bytes: {e}", out.len())),
        }
    }
    stream.shutdown(Shutdown::Write).map_err(|e| format!("shutdown: {e}"))
}

/// Reads to EOF, checking every byte against `expect`. A read that times out
/// asks `stop` whether to give up.
fn kernel_read_to_eof(mut stream: TcpStream, expect: &[u8], stop: impl Fn() -> bool) -> Result<(), String> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut received = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) if received == expect.len() => return Ok(()),
            Ok(0) => return Err(format!("EOF after {received} of {} bytes", expect.len())),
            Ok(n) => {
                check_bytes(&buf[..n], expect, received)?;
                received += n;
            }
            Err(e) if is_timeout(&e) && !stop() => {}
            Err(e) => return Err(format!("after {received} of {} bytes: {e}", expect.len())),
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted)
}

fn megabytes_per_second(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / 1e6 / time.as_secs_f64().max(1e-9)
}

/// Which side opens the connection of a bulk transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opener {
    Kernel,
    Stack,
}

/// 100 MB each way between the kernel and our stack on link `10.99.SUBNET.0/24`,
/// every byte checked on both sides; both close cleanly. Prints throughput and
/// the stack's TCP counters; returns the dataplane's outcome for more checks.
fn transfer_100_mb_each_way(tag: &str, subnet: u8, opener: Opener, loss: Loss) -> Option<Outcome<StreamReport>> {
    transfer(tag, subnet, opener, loss, [TRANSFER_BYTES, TRANSFER_BYTES], |_| {})
}

/// `to_stack` bytes from the kernel to our stack and `to_kernel` bytes back
/// (`[to_stack, to_kernel]`), as [`transfer_100_mb_each_way`] says.
fn transfer(
    tag: &str,
    subnet: u8,
    opener: Opener,
    loss: Loss,
    sizes: [usize; 2],
    tune: fn(&mut StackConfig),
) -> Option<Outcome<StreamReport>> {
    let mut link = TapLink::open(tag, subnet)?;
    let deadline = StdInstant::now() + LIMIT;
    let to_stack = pattern(sizes[0], u64::from(subnet) << 32);
    let to_kernel = pattern(sizes[1], (u64::from(subnet) << 32) ^ 0xABCD);
    let (dataplane, kernel) = match opener {
        Opener::Kernel => {
            let app = StreamApp::new(Open::Listen(STACK_PORT), to_kernel.clone(), to_stack.clone());
            let dataplane = link.spawn_tuned(app, loss, LIMIT, tune);
            let remote = SocketAddrV4::new(link.stack_ip, STACK_PORT);
            let kernel = TcpStream::connect_timeout(&remote.into(), Duration::from_secs(10))
                .map_err(|e| format!("kernel connect to {remote}: {e}"))
                .and_then(|stream| kernel_transfer(stream, &to_stack, &to_kernel, deadline, &dataplane));
            (dataplane, kernel)
        }
        Opener::Stack => {
            let listener = TcpListener::bind((link.kernel_ip, 0)).expect("kernel listener");
            let local = listener.local_addr().expect("listener address");
            let std::net::SocketAddr::V4(local) = local else { panic!("{local} is not IPv4") };
            let app = StreamApp::new(Open::Connect(local), to_kernel.clone(), to_stack.clone());
            let dataplane = link.spawn_tuned(app, loss, LIMIT, tune);
            let kernel = accept_until(&listener, deadline, &dataplane)
                .and_then(|stream| kernel_transfer(stream, &to_stack, &to_kernel, deadline, &dataplane));
            (dataplane, kernel)
        }
    };
    let outcome = dataplane.finish();
    let counters = outcome.tcp_summary();
    let receive_time = kernel.unwrap_or_else(|e| panic!("{e}\nstack: {:?}\n{counters}", outcome.result));
    let report = match &outcome.result {
        Ok(report) => report,
        Err(e) => panic!("stack: {e}\n{counters}"),
    };
    eprintln!(
        "{tag}: {opener:?} opened, loss {:.0}%: stack->kernel {} MB at {:.1} MB/s ({:.2} s), kernel->stack {} MB at \
         {:.1} MB/s ({:.2} s)\n{tag}: {counters}",
        loss.rate * 100.0,
        sizes[1] >> 20,
        megabytes_per_second(sizes[1], receive_time),
        receive_time.as_secs_f64(),
        sizes[0] >> 20,
        megabytes_per_second(sizes[0], report.receive_time),
        report.receive_time.as_secs_f64(),
    );
    let tcp = &outcome.stats.tcp;
    assert_eq!(tcp.in_csum_errors + tcp.in_errs, 0, "{counters}");
    assert_eq!(tcp.resets_sent + tcp.resets_received, 0, "no connection ended with a reset: {counters}");
    let missed = &outcome.missed_fast_retransmits;
    assert!(
        missed.is_empty(),
        "{tag}: {} of {} retransmission timeouts came after the kernel's duplicate ACKs had SACKed {DUP_THRESH}+ \
         segments above a hole the stack never retransmitted (RFC 6675 marks it lost: fast retransmit was due); \
         for example:\n{}\n{counters}",
        missed.len(),
        tcp.retransmit_timeouts,
        missed.iter().filter(|m| !m.is_empty()).cloned().collect::<Vec<_>>().join("\n"),
    );
    Some(outcome)
}

/// Accepts the stack's connection, giving up at `deadline` or when the
/// dataplane ends.
fn accept_until<R>(
    listener: &TcpListener,
    deadline: StdInstant,
    dataplane: &Dataplane<R>,
) -> Result<TcpStream, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).map_err(|e| e.to_string())?;
                return Ok(stream);
            }
            Err(e) if is_timeout(&e) && dataplane.is_running() && !past(deadline) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("kernel accept: {e}")),
        }
    }
}

#[test]
fn kernel_connects_and_transfers_100_mb_each_way() {
    transfer_100_mb_each_way("kc", 10, Opener::Kernel, Loss::NONE);
}

#[test]
fn stack_connects_and_transfers_100_mb_each_way() {
    transfer_100_mb_each_way("sc", 11, Opener::Stack, Loss::NONE);
}

/// Checks that the injected loss happened and was repaired by retransmission.
fn assert_loss_repaired(outcome: Option<Outcome<StreamReport>>) {
    let Some(outcome) = outcome else { return };
    let (rx, tx) = outcome.injected_drops;
    assert!(rx > 0 && tx > 0, "loss was injected both ways: {}", outcome.tcp_summary());
    assert!(outcome.stats.tcp.retransmitted_segments > 0, "{}", outcome.tcp_summary());
}

#[test]
fn kernel_connects_and_transfers_100_mb_each_way_with_1_percent_loss() {
    let loss = Loss::random(LOSS_RATE, 0x1055_0001);
    assert_loss_repaired(transfer_100_mb_each_way("kl", 12, Opener::Kernel, loss));
}

#[test]
fn stack_connects_and_transfers_100_mb_each_way_with_1_percent_loss() {
    let loss = Loss::random(LOSS_RATE, 0x1055_0002);
    assert_loss_repaired(transfer_100_mb_each_way("sl", 13, Opener::Stack, loss));
}

/// Outgoing data segments the next test drops: one hole at a time, each far
/// from the others, in a transfer the kernel receives and acknowledges with SACK.
const SINGLE_HOLES: &[u64] = &[1000, 2000, 3000, 4000, 5000, 6000];

/// Linux reports each hole with duplicate ACKs carrying SACK blocks; with a send
/// queue of 8 segments few of them come, and each single hole must still be
/// repaired by fast retransmit, never by a timeout. On a loaded machine the
/// test's writer may stall right after a dropped segment, which then is the
/// tail of the flight: the tail loss probe sends it again and repairs it with
/// no recovery (RFC 8985 §7; seen about once in 60 runs beside six busy
/// loops: five recoveries, `tlp_recoveries` at least one, no timeout).
#[test]
fn stack_fast_retransmits_single_holes_the_kernel_reports_with_sack() {
    let loss = Loss { sent_segments: SINGLE_HOLES, ..Loss::NONE };
    let Some(outcome) = transfer("fr", 15, Opener::Kernel, loss, [0, 20 << 20], |c| c.tcp.send_buffer_bytes = 8 * 1448)
    else {
        return;
    };
    let tcp = &outcome.stats.tcp;
    assert_eq!(outcome.injected_drops, (0, SINGLE_HOLES.len() as u64), "{}", outcome.tcp_summary());
    assert_eq!(tcp.retransmit_timeouts, 0, "holes repaired by timeout instead of SACK: {}", outcome.tcp_summary());
    let holes = SINGLE_HOLES.len() as u64;
    assert!(tcp.fast_retransmits <= holes, "a recovery with no hole: {}", outcome.tcp_summary());
    assert!(
        tcp.fast_retransmits + tcp.tlp_recoveries >= holes,
        "a hole repaired neither by fast retransmit nor by a tail loss probe: {}",
        outcome.tcp_summary()
    );
}

/// A one-shot HTTP/1.1 responder on the stack: reads a request up to its blank
/// line, answers 200 with `body` and `Connection: close`, shuts down, and is done
/// when the client has closed too. Its output is the request's head.
struct HttpOnce {
    listener: Option<SocketHandle>,
    conn: Option<SocketHandle>,
    request: Vec<u8>,
    response: Option<Bytes>,
    body: Bytes,
    sent: usize,
}

impl HttpOnce {
    fn new(body: Bytes) -> Self {
        Self { listener: None, conn: None, request: Vec::new(), response: None, body, sent: 0 }
    }
}

impl StackApp for HttpOnce {
    type Output = String;

    fn poll(&mut self, stack: &mut Stack, _: Instant) -> Result<Option<String>, String> {
        let listener = match self.listener {
            Some(listener) => listener,
            None => *self.listener.insert(stack.tcp_listen(STACK_PORT, 4).map_err(|e| format!("listen: {e}"))?),
        };
        if self.conn.is_none() {
            self.conn = stack.tcp_accept(listener).map_err(|e| format!("accept: {e}"))?;
        }
        let Some(h) = self.conn else { return Ok(None) };
        while let Some(chunk) = stack.tcp_recv(h).map_err(|e| format!("recv: {e}"))? {
            if self.response.is_none() {
                self.request.extend_from_slice(&chunk);
            }
        }
        if self.response.is_none() && self.request.windows(4).any(|w| w == b"\r\n\r\n") {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", self.body.len());
            self.response = Some([head.as_bytes(), &self.body].concat().into());
        }
        if let Some(response) = &self.response {
            send_what_fits(stack, h, response, &mut self.sent)?;
            if self.sent == response.len() && stack.tcp_at_eof(h).map_err(|e| format!("eof: {e}"))? {
                stack.tcp_shutdown(h).map_err(|e| format!("shutdown: {e}"))?;
                stack.close(h);
                stack.close(listener);
                return Ok(Some(String::from_utf8_lossy(&self.request).into_owned()));
            }
            if self.sent == response.len() {
                stack.tcp_shutdown(h).map_err(|e| format!("shutdown: {e}"))?;
            }
        } else if stack.tcp_at_eof(h).map_err(|e| format!("eof: {e}"))? {
            return Err(format!("the client closed before a complete request: {:?}", self.request));
        }
        Ok(None)
    }

    fn progress(&self, stack: &Stack) -> String {
        format!(
            "request of {} bytes, response sent {} of {:?}; connection {:?}",
            self.request.len(),
            self.sent,
            self.response.as_ref().map(Bytes::len),
            self.conn.map(|h| stack.tcp_info(h))
        )
    }
}

/// Removes the file on drop.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn curl_fetches_100_kb_from_an_http_responder_on_the_stack() {
    let Some(mut link) = TapLink::open("web", 14) else {
        return;
    };
    let body = pattern(100 * 1024, 14);
    let dataplane = link.spawn(HttpOnce::new(body.clone()), Loss::NONE, Duration::from_secs(30));
    let file = TempFile(std::env::temp_dir().join(format!("ix-curl-{}.bin", std::process::id())));
    let url = format!("http://{}:{STACK_PORT}/", link.stack_ip);
    let curl = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", &url, "-o"])
        .arg(&file.0)
        .output()
        .expect("run curl (package curl)");
    let outcome = dataplane.finish();
    let counters = outcome.tcp_summary();
    assert!(curl.status.success(), "curl failed: {}\n{counters}", String::from_utf8_lossy(&curl.stderr));
    let request = outcome.result.unwrap_or_else(|e| panic!("stack: {e}\n{counters}"));
    assert!(request.starts_with("GET / HTTP/1.1\r\n"), "{request:?}");
    let fetched = std::fs::read(&file.0).expect("curl's output file");
    assert_eq!(fetched.len(), body.len(), "{counters}");
    check_bytes(&fetched, &body, 0).unwrap_or_else(|e| panic!("{e}"));
    let tcp = &outcome.stats.tcp;
    assert_eq!(tcp.resets_sent + tcp.resets_received + tcp.in_csum_errors, 0, "{counters}");
}
