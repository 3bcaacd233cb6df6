//! Harness of the TAP interop tests: a TAP device whose kernel side has an address,
//! our stack behind it running the dataplane loop on its own thread (with optional
//! seeded frame loss), and the deterministic byte pattern both sides check.
#![allow(dead_code)]

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use ix_driver::privilege::{has_net_admin, require};
use ix_driver::{HugePages, NetQueue, PacketBuf, PacketPool, PoolConfig, QueueStats, TapDevice, TapQueue, TapQueueFd};
use ix_net::wire::EthernetAddress;
use ix_net::{Instant, Stack, StackConfig, StackStats};

/// Frames read per round, as the runtime's loop does.
const BURST: usize = 64;
/// Frames in the dataplane's pool: receive windows, out-of-order queues and
/// frames in flight of a few connections fit with room to spare.
const POOL_FRAMES: u32 = 8192;
/// Longest the idle dataplane sleeps before looking at its timers again.
const MAX_IDLE_WAIT: Duration = Duration::from_millis(1);

/// Deletes the interface on drop, so that a failing test leaves nothing behind.
struct LinkGuard {
    name: String,
}

impl LinkGuard {
    fn delete_if_present(&self) {
        if Path::new("/sys/class/net").join(&self.name).exists() {
            let _ = Command::new("ip").args(["link", "delete", &self.name]).status();
        }
    }
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        self.delete_if_present();
    }
}

/// Runs `ip ARGS`, panicking with its error output when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip (package iproute2)");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A TAP device between the kernel (`10.99.SUBNET.1/24`) and our stack
/// (`10.99.SUBNET.2/24`). Each test uses its own `tag` and `subnet`.
pub struct TapLink {
    device: TapDevice,
    pub kernel_ip: Ipv4Addr,
    pub stack_ip: Ipv4Addr,
    guard: LinkGuard,
}

impl TapLink {
    /// `None` (the test returns) where TAP devices cannot be made and this is not
    /// CI; otherwise a fresh device `ixi` + tag + pid with the kernel side up.
    ///
    /// The kernel side's checksum and segmentation offloads are off on a TAP
    /// device until its owner asks for them (`TUNSETOFFLOAD`), so the frames we
    /// read carry finished checksums; the tests assert `in_csum_errors == 0`.
    pub fn open(tag: &str, subnet: u8) -> Option<Self> {
        if !require("TAP", has_net_admin()) {
            return None;
        }
        let name = format!("ixi{tag}{}", std::process::id());
        assert!(name.len() < 16, "interface name {name} too long");
        let guard = LinkGuard { name };
        guard.delete_if_present();
        let device = TapDevice::open(&guard.name, 1).expect("open tap device");
        let (kernel_ip, stack_ip) = (Ipv4Addr::new(10, 99, subnet, 1), Ipv4Addr::new(10, 99, subnet, 2));
        // No IPv6 chatter (router solicitations, MLD) on the test link.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", guard.name), "1");
        ip(&["addr", "add", &format!("{kernel_ip}/24"), "dev", &guard.name]);
        ip(&["link", "set", &guard.name, "up"]);
        Some(Self { device, kernel_ip, stack_ip, guard })
    }

    pub fn name(&self) -> &str {
        &self.guard.name
    }

    /// Starts our stack on its own thread with `app` as its application, and
    /// returns once the first round ran (a listener `app` opens there is up);
    /// the loop ends once the handle is finished and `app` is done, or at `limit`.
    pub fn spawn<A: StackApp>(&mut self, app: A, loss: Loss, limit: Duration) -> Dataplane<A::Output> {
        self.spawn_tuned(app, loss, limit, |_| {})
    }

    /// [`TapLink::spawn`] with the stack's configuration changed by `tune`.
    pub fn spawn_tuned<A: StackApp>(
        &mut self,
        app: A,
        loss: Loss,
        limit: Duration,
        tune: fn(&mut StackConfig),
    ) -> Dataplane<A::Output> {
        let fd = self.device.take_queue_fd(0).expect("queue 0");
        let (addr, mtu) = (self.stack_ip, self.device.mtu());
        let control = Arc::new(AtomicU8::new(RUN));
        let thread_control = control.clone();
        let (started_tx, started) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("dataplane-{}", self.name()))
            .spawn(move || {
                let setup = Setup { fd, addr, mtu, loss, limit, tune, started: started_tx };
                run_dataplane(setup, app, &thread_control)
            })
            .expect("spawn the dataplane thread");
        // An error means the thread ended before its first round: `finish` tells why.
        let _ = started.recv();
        Dataplane { control, thread: Some(thread) }
    }
}

/// The application part of the dataplane loop, called once a round after
/// ingress and timers and before egress.
pub trait StackApp: Send + 'static {
    type Output: Send + 'static;

    /// One round of work; `Ok(Some(_))` when finished (the loop keeps running
    /// the stack until the test finishes it), `Err` on a failed check.
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> Result<Option<Self::Output>, String>;

    /// How far the application got, for the message of a deadline.
    fn progress(&self, stack: &Stack) -> String;
}

/// An application that does nothing: the stack only answers ARP and ICMP.
pub struct NoApp;

impl StackApp for NoApp {
    type Output = ();

    fn poll(&mut self, _: &mut Stack, _: Instant) -> Result<Option<()>, String> {
        Ok(Some(()))
    }

    fn progress(&self, _: &Stack) -> String {
        String::new()
    }
}

/// Frame loss injected on the stack's side of the TAP: each frame received
/// (before `ingress`) and each frame sent (before `tx_burst`) is dropped with
/// probability `rate` (seeded, deterministic); besides, the outgoing TCP
/// segments with data whose ordinals (from 1) are in `sent_segments` are dropped.
#[derive(Debug, Clone, Copy)]
pub struct Loss {
    pub rate: f64,
    pub seed: u64,
    pub sent_segments: &'static [u64],
}

impl Loss {
    pub const NONE: Loss = Loss { rate: 0.0, seed: 0, sent_segments: &[] };

    /// Seeded loss of `rate` both ways.
    pub const fn random(rate: f64, seed: u64) -> Loss {
        Loss { rate, seed, sent_segments: &[] }
    }
}

/// Drop decisions for one direction. SplitMix64 draws the random ones.
struct Dropper {
    rate: f64,
    state: u64,
    listed: &'static [u64],
    data_segments: u64,
    dropped: u64,
}

impl Dropper {
    fn new(loss: Loss, stream: u64, listed: &'static [u64]) -> Self {
        let state = loss.seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F);
        Self { rate: loss.rate, state, listed, data_segments: 0, dropped: 0 }
    }

    fn drops(&mut self, frame: &[u8]) -> bool {
        let drop = self.listed_drop(frame) || self.random_drop();
        self.dropped += u64::from(drop);
        drop
    }

    fn listed_drop(&mut self, frame: &[u8]) -> bool {
        if self.listed.is_empty() || tcp_segment(frame).is_none_or(|s| s.len == 0) {
            return false;
        }
        self.data_segments += 1;
        self.listed.contains(&self.data_segments)
    }

    fn random_drop(&mut self) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64) / ((1u64 << 53) as f64) < self.rate
    }
}

/// What the dataplane thread reports when it ends.
#[derive(Debug)]
pub struct Outcome<R> {
    /// The application's result, or why it failed (deadline included).
    pub result: Result<R, String>,
    pub stats: StackStats,
    pub queue: QueueStats,
    /// Frames the injected loss dropped: (received, sent).
    pub injected_drops: (u64, u64),
    /// Retransmission timeouts the stack's SACK loss detection should have
    /// prevented, each with the segments that led to it (see [`RecoveryAudit`]).
    pub missed_fast_retransmits: Vec<String>,
}

impl<R> Outcome<R> {
    /// The stack's TCP counters that tell how a transfer went, on one line.
    pub fn tcp_summary(&self) -> String {
        let t = &self.stats.tcp;
        format!(
            "in_segs={} segments_sent={} retransmitted_segments={} retransmit_timeouts={} fast_retransmits={} \
             rack_lost_marks={} tlp_probes={} tlp_recoveries={} tlp_spurious={} dsack_undos={} \
             dup_acks_received={} out_of_order_segments={} duplicate_segments={} in_csum_errors={} resets_sent={} \
             resets_received={} injected_drops(rx,tx)={:?} queue={:?}",
            t.in_segs,
            t.segments_sent,
            t.retransmitted_segments,
            t.retransmit_timeouts,
            t.fast_retransmits,
            t.rack_lost_marks,
            t.tlp_probes,
            t.tlp_recoveries,
            t.tlp_spurious,
            t.dsack_undos,
            t.dup_acks_received,
            t.out_of_order_segments,
            t.duplicate_segments,
            t.in_csum_errors,
            t.resets_sent,
            t.resets_received,
            self.injected_drops,
            self.queue,
        )
    }
}

const RUN: u8 = 0;
const FINISH: u8 = 1;
const ABORT: u8 = 2;

/// The running dataplane thread. Dropping it without [`Dataplane::finish`]
/// (a test that panicked) stops the thread at once.
pub struct Dataplane<R> {
    control: Arc<AtomicU8>,
    thread: Option<JoinHandle<Outcome<R>>>,
}

impl<R> Dataplane<R> {
    /// Whether the loop still runs (it ends early at its deadline or when the
    /// application fails).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Lets the loop end once the application is done, and waits for it.
    pub fn finish(mut self) -> Outcome<R> {
        self.control.store(FINISH, Ordering::Release);
        self.thread.take().expect("not finished twice").join().expect("the dataplane thread panicked")
    }
}

impl<R> Drop for Dataplane<R> {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.control.store(ABORT, Ordering::Release);
            let _ = thread.join();
        }
    }
}

/// What the dataplane thread is started with.
struct Setup {
    fd: TapQueueFd,
    addr: Ipv4Addr,
    mtu: u32,
    loss: Loss,
    limit: Duration,
    tune: fn(&mut StackConfig),
    /// Told once the first round ran.
    started: std::sync::mpsc::Sender<()>,
}

/// The dataplane loop of one core: receive a burst, ingress, timers, the
/// application, egress, transmit; block on the queue when a round did nothing.
fn run_dataplane<A: StackApp>(setup: Setup, mut app: A, control: &AtomicU8) -> Outcome<A::Output> {
    let Setup { fd, addr, mtu, loss, limit, tune, started } = setup;
    let mut started = Some(started);
    let start = std::time::Instant::now();
    let clock = || Instant::from_micros(start.elapsed().as_micros() as u64);
    let pool = PacketPool::new(PoolConfig { frames: POOL_FRAMES, huge_pages: HugePages::Never }).expect("packet pool");
    let mut queue = TapQueue::new(fd, pool.clone());
    let mut config = StackConfig::new(EthernetAddress(queue.mac()), addr, 24, [3; 16]);
    config.mtu = u16::try_from(mtu).expect("a TAP MTU fits u16");
    tune(&mut config);
    let mut stack = Stack::new(config, pool, clock()).expect("stack");
    let (mut rx_loss, mut tx_loss) = (Dropper::new(loss, 1, &[]), Dropper::new(loss, 2, loss.sent_segments));
    let (mut rx, mut fresh, mut pending) = (Vec::with_capacity(BURST), Vec::new(), Vec::<PacketBuf>::new());
    let mut result = None;
    let mut trace = SegmentTrace::from_env();
    let mut audit = RecoveryAudit::default();
    loop {
        let now = clock();
        let received = queue.rx_burst(&mut rx, BURST);
        for frame in rx.drain(..) {
            let dropped = rx_loss.drops(&frame);
            trace.frame(now, "in", &frame, dropped);
            if !dropped {
                audit.frame(Direction::In, &frame, dropped);
                stack.ingress(frame, now);
            }
        }
        let timeouts = stack.stats().tcp.retransmit_timeouts;
        stack.on_timers(now);
        if stack.stats().tcp.retransmit_timeouts != timeouts {
            trace.note(now, "retransmission timeout");
            audit.on_timeout();
        }
        if result.is_none() {
            result = app.poll(&mut stack, now).transpose();
        }
        if let Some(started) = started.take() {
            let _ = started.send(());
        }
        stack.egress(now, &mut fresh);
        for frame in fresh.drain(..) {
            let dropped = tx_loss.drops(&frame);
            trace.frame(now, "out", &frame, dropped);
            audit.frame(Direction::Out, &frame, dropped);
            if !dropped {
                pending.push(frame);
            }
        }
        let sent = if pending.is_empty() { 0 } else { queue.tx_burst(&mut pending) };
        let mode = control.load(Ordering::Acquire);
        if mode == ABORT || (mode == FINISH && result.is_some()) || matches!(result, Some(Err(_))) {
            break;
        }
        if start.elapsed() > limit {
            result = Some(Err(format!("deadline of {limit:?} passed: {}", app.progress(&stack))));
            break;
        }
        if received == 0 && sent == 0 && !stack.has_pending_output() {
            let timeout = stack.poll_timeout().map_or(MAX_IDLE_WAIT, |t| t.saturating_duration_since(now));
            wait_for_queue(&queue, timeout.min(MAX_IDLE_WAIT), !pending.is_empty());
        }
    }
    Outcome {
        result: result.unwrap_or_else(|| Err(format!("aborted: {}", app.progress(&stack)))),
        stats: *stack.stats(),
        queue: queue.stats(),
        injected_drops: (rx_loss.dropped, tx_loss.dropped),
        missed_fast_retransmits: audit.missed,
    }
}

/// With `IX_TAP_TRACE=FILE` set, one line per TCP segment the stack receives or
/// sends (and whether the injected loss dropped it), and its retransmission
/// timeouts, written to FILE: the evidence for a stall or a slow recovery.
struct SegmentTrace {
    out: Option<std::io::BufWriter<std::fs::File>>,
}

impl SegmentTrace {
    fn from_env() -> Self {
        let out = std::env::var_os("IX_TAP_TRACE")
            .map(|path| std::io::BufWriter::new(std::fs::File::create(path).expect("create the IX_TAP_TRACE file")));
        Self { out }
    }

    fn note(&mut self, now: Instant, what: &str) {
        if let Some(out) = &mut self.out {
            let _ = writeln!(out, "{:>10} {what}", now.as_micros());
        }
    }

    fn frame(&mut self, now: Instant, direction: &str, frame: &[u8], dropped: bool) {
        if self.out.is_some() {
            if let Some(segment) = tcp_segment(frame) {
                let mark = if dropped { " DROPPED" } else { "" };
                self.note(now, &format!("{direction:>3} {}{mark}", segment.describe()));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    In,
    Out,
}

/// Segments kept to show how a missed fast retransmit came about.
const AUDIT_HISTORY: usize = 16;
/// Missed fast retransmits recorded with their history.
const AUDIT_EXAMPLES: usize = 3;
/// Duplicate ACKs, and segments SACKed above the hole, that make the first
/// unacknowledged segment lost (RFC 6675 `DupThresh` and `IsLost`).
const DUP_THRESH: u32 = 3;

/// Watches the stack's sending side of its one connection: a retransmission
/// timeout after the peer sent at least `DUP_THRESH` duplicate ACKs that SACK at
/// least `DUP_THRESH` full segments above the hole, when the stack had never
/// retransmitted the hole (a lost retransmission does need the timeout), is a
/// loss RFC 6675 detects and repairs by fast retransmit. Each one is recorded
/// with the segments before it.
#[derive(Default)]
struct RecoveryAudit {
    /// The highest cumulative ACK the peer sent.
    una: Option<u32>,
    dup_acks: u32,
    /// The most bytes one duplicate ACK SACKed above `una`.
    sacked: u32,
    /// Largest payload the stack sent: its segment size.
    mss: u32,
    /// Sequence numbers the stack sent more than once, at or above `una`.
    retransmitted: std::collections::HashSet<u32>,
    /// The end of the highest segment the stack sent.
    snd_max: Option<u32>,
    history: std::collections::VecDeque<String>,
    missed: Vec<String>,
}

impl RecoveryAudit {
    fn frame(&mut self, direction: Direction, frame: &[u8], dropped: bool) {
        let Some(segment) = tcp_segment(frame) else { return };
        if self.history.len() == AUDIT_HISTORY {
            self.history.pop_front();
        }
        let mark = if dropped { " DROPPED" } else { "" };
        self.history.push_back(format!("{direction:?} {}{mark}", segment.describe()));
        match direction {
            Direction::Out => {
                self.mss = self.mss.max(segment.len as u32);
                let end = segment.seq.wrapping_add(segment.len as u32);
                match self.snd_max {
                    _ if segment.len == 0 => {}
                    Some(max) if before(segment.seq, max) => {
                        self.retransmitted.insert(segment.seq);
                    }
                    _ => self.snd_max = Some(end),
                }
            }
            Direction::In if segment.flags & 0x10 == 0 => {}
            Direction::In => match self.una {
                Some(una) if segment.ack == una => {
                    if segment.len == 0 {
                        self.dup_acks += 1;
                        let above = segment.sack.iter().map(|&(l, r)| r.wrapping_sub(l)).sum::<u32>();
                        self.sacked = self.sacked.max(above);
                    }
                }
                Some(una) if before(segment.ack, una) => {}
                _ => {
                    self.una = Some(segment.ack);
                    (self.dup_acks, self.sacked) = (0, 0);
                    self.retransmitted.retain(|&seq| !before(seq, segment.ack));
                }
            },
        }
    }

    fn on_timeout(&mut self) {
        let detectable = self.dup_acks >= DUP_THRESH && self.mss > 0 && self.sacked >= DUP_THRESH * self.mss;
        if detectable && !self.una.is_some_and(|una| self.retransmitted.contains(&una)) {
            let history = self.history.iter().map(String::as_str).collect::<Vec<_>>().join("\n  ");
            let example = format!(
                "timeout after {} duplicate ACKs SACKing {} bytes above {:?}, hole never retransmitted:\n  {history}",
                self.dup_acks, self.sacked, self.una
            );
            if self.missed.len() < AUDIT_EXAMPLES {
                self.missed.push(example);
            } else {
                self.missed.push(String::new());
            }
        }
        // The stack now retransmits from `una`: a new episode.
        (self.dup_acks, self.sacked) = (0, 0);
    }
}

/// Whether sequence number `a` comes before `b` (modulo 2^32).
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The fields of a TCP segment the trace shows.
struct TcpSegment {
    ports: (u16, u16),
    flags: u8,
    seq: u32,
    ack: u32,
    len: usize,
    window: u16,
    sack: Vec<(u32, u32)>,
}

/// The TCP segment in an Ethernet/IPv4 frame, or `None`.
fn tcp_segment(f: &[u8]) -> Option<TcpSegment> {
    let be16 = |at: usize| f.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let be32 = |at: usize| f.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    if be16(12)? != 0x0800 || *f.get(23)? != 6 {
        return None;
    }
    let ip_len = usize::from(f[14] & 0x0f) * 4;
    let tcp = 14 + ip_len;
    let header_len = usize::from(*f.get(tcp + 12)? >> 4) * 4;
    let mut sack = Vec::new();
    let mut at = tcp + 20;
    while at < tcp + header_len {
        match *f.get(at)? {
            0 => break,
            1 => at += 1,
            kind => {
                let option_len = usize::from(*f.get(at + 1)?).max(2);
                if kind == 5 {
                    for block in (at + 2..at + option_len).step_by(8) {
                        sack.push((be32(block)?, be32(block + 4)?));
                    }
                }
                at += option_len;
            }
        }
    }
    Some(TcpSegment {
        ports: (be16(tcp)?, be16(tcp + 2)?),
        flags: *f.get(tcp + 13)?,
        seq: be32(tcp + 4)?,
        ack: be32(tcp + 8)?,
        len: usize::from(be16(16)?).checked_sub(ip_len + header_len)?,
        window: be16(tcp + 14)?,
        sack,
    })
}

impl TcpSegment {
    /// `ports [flags] seq ack len win sack`.
    fn describe(&self) -> String {
        let s = self;
        let flags = [(0x02, 'S'), (0x10, '.'), (0x08, 'P'), (0x01, 'F'), (0x04, 'R')];
        let names: String = flags.iter().filter(|(bit, _)| s.flags & bit != 0).map(|(_, c)| *c).collect();
        let sack: String = s.sack.iter().map(|(l, r)| format!(" sack {l}-{r}")).collect();
        format!(
            "{}>{} [{names}] seq {} ack {} len {} win {}{sack}",
            s.ports.0, s.ports.1, s.seq, s.ack, s.len, s.window
        )
    }
}

/// Blocks until the queue has a frame (or room, when `writable` is wanted), or
/// `timeout` passes.
fn wait_for_queue(queue: &TapQueue, timeout: Duration, writable: bool) {
    let fd = queue.wait_fd().expect("a TAP queue has a descriptor to wait on");
    let events = libc::POLLIN | if writable { libc::POLLOUT } else { 0 };
    let mut pollfd = libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 };
    // Round up so that a deadline less than a millisecond away is not a busy loop.
    let millis = timeout.as_micros().div_ceil(1000) as libc::c_int;
    // SAFETY: one valid, initialised pollfd that outlives the call.
    unsafe { libc::poll(&mut pollfd, 1, millis) };
}

/// `len` bytes of a pattern that does not repeat at any power of two, so that a
/// lost, duplicated or misplaced segment shows as a mismatch at its offset.
pub fn pattern(len: usize, salt: u64) -> Bytes {
    (0..len as u64)
        .map(|i| (i.wrapping_add(salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect::<Vec<_>>()
        .into()
}

/// Checks `got`, which arrived at stream offset `at`, against `expect`.
pub fn check_bytes(got: &[u8], expect: &[u8], at: usize) -> Result<(), String> {
    let end = at + got.len();
    if end > expect.len() {
        return Err(format!("received {end} bytes, more than the {} sent", expect.len()));
    }
    match got.iter().zip(&expect[at..end]).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(format!(
            "wrong byte at stream offset {}: got {:#04x}, expected {:#04x} (chunk of {} bytes at {at})",
            at + i,
            got[i],
            expect[at + i],
            got.len()
        )),
    }
}
