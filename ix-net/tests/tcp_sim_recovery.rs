//! Loss recovery measured in virtual time: two stacks joined by a simulated
//! 10 Gbit/s link with a 100 us round trip and seeded random loss; each test
//! asserts how long recovery took, not only that the bytes arrived.
//!
//! The link is modelled here rather than on the `mem` wire: frames go straight
//! from one stack's egress to the other's ingress through a queue ordered by
//! arrival time, each frame serialised at 10 Gbit/s behind the previous one,
//! and time jumps from event to event. 200 seeds of 10 MB then take seconds.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use ix_driver::{HugePages, PacketBuf, PacketPool, PoolConfig};
use ix_net::wire::EthernetAddress;
use ix_net::{Instant, SocketHandle, Stack, StackConfig};

/// One-way propagation delay: a 100 us round trip.
const ONE_WAY_MICROS: u64 = 50;
/// The round trip of a full segment and its ACK: propagation plus the
/// serialisation of a 1526-byte frame (preamble and gap included) at 10 Gbit/s.
const RTT_MICROS: f64 = 2.0 * ONE_WAY_MICROS as f64 + 1.22;
/// Link rate in bits per microsecond (10 Gbit/s).
const LINK_BITS_PER_MICRO: u64 = 10_000;
/// Preamble, start delimiter, frame check sequence and inter-frame gap.
const WIRE_OVERHEAD_BYTES: u64 = 24;
const PORT: u16 = 7000;
/// Bytes of the bulk transfers.
const TRANSFER_BYTES: usize = 10 * 1000 * 1000;
const SEEDS: u64 = 200;
/// Frames for a bulk transfer: both windows (256 KiB each) and what the
/// receiver holds out of order.
const BULK_FRAMES: u32 = 1024;
/// Virtual time after which a run counts as stalled.
const STALL_MICROS: u64 = 600_000_000;

fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, 0, i as u8 + 1)
}

/// A small seeded generator (splitmix64): the runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// Which frames the link drops.
trait DropPolicy {
    /// Whether the frame `n`-th of direction `from` (0 or 1), of `len` bytes,
    /// sent at `now`, is lost.
    fn drops(&mut self, from: usize, n: u64, len: usize, now: Instant) -> bool;
}

/// Each TCP frame, either way, is lost with probability `p` (ARP frames,
/// shorter than any TCP frame, are spared: address resolution retries after a
/// second, which is not what these tests measure).
struct RandomLoss {
    p: f64,
    rng: Rng,
}

/// The shortest TCP frame: Ethernet, IPv4 and TCP headers.
const TCP_FRAME_MIN_BYTES: usize = 54;

impl DropPolicy for RandomLoss {
    fn drops(&mut self, _: usize, _: u64, len: usize, _: Instant) -> bool {
        len >= TCP_FRAME_MIN_BYTES && self.rng.chance(self.p)
    }
}

impl<F: FnMut(usize, u64, usize, Instant) -> bool> DropPolicy for F {
    fn drops(&mut self, from: usize, n: u64, len: usize, now: Instant) -> bool {
        self(from, n, len, now)
    }
}

/// Two stacks, the frames between them and the clock.
struct Link<D> {
    stacks: [Stack; 2],
    /// Frames in flight: (arrival, order, destination, frame).
    in_flight: BinaryHeap<Reverse<(Instant, u64, usize, FrameBox)>>,
    /// When each direction's transmitter is free again.
    free_at: [Instant; 2],
    sent: [u64; 2],
    order: u64,
    now: Instant,
    drop: D,
    out: Vec<PacketBuf>,
    /// The server side of the last connection made.
    server: Option<SocketHandle>,
}

/// A frame ordered only by its place in the heap's key.
struct FrameBox(PacketBuf);

impl PartialEq for FrameBox {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for FrameBox {}
impl PartialOrd for FrameBox {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for FrameBox {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<D: DropPolicy> Link<D> {
    /// Two stacks sharing a pool of `frames` frames (creating the pool costs
    /// in proportion: keep it to what the test's windows need).
    fn new(seed: u64, drop: D, frames: u32) -> Self {
        let pool = PacketPool::new(PoolConfig { frames, huge_pages: HugePages::Never }).expect("pool");
        let stacks = [0, 1].map(|i| {
            let mut secret = [0u8; 16];
            secret[..8].copy_from_slice(&(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9)).to_le_bytes());
            let cfg = StackConfig::new(EthernetAddress([2, 0, 0, 0, 1, i as u8 + 1]), addr(i), 24, secret);
            Stack::new(cfg, pool.clone(), Instant::ZERO).expect("stack")
        });
        Self {
            stacks,
            in_flight: BinaryHeap::new(),
            free_at: [Instant::ZERO; 2],
            sent: [0; 2],
            order: 0,
            now: Instant::ZERO,
            drop,
            out: Vec::with_capacity(256),
            server: None,
        }
    }

    /// Delivers what has arrived, runs timers, and puts what the stacks send
    /// on the link.
    fn poll(&mut self) {
        while let Some(Reverse((at, _, _, _))) = self.in_flight.peek() {
            if *at > self.now {
                break;
            }
            let Reverse((_, _, to, FrameBox(frame))) = self.in_flight.pop().expect("peeked");
            self.stacks[to].ingress(frame, self.now);
        }
        for from in 0..2 {
            self.stacks[from].on_timers(self.now);
            self.stacks[from].egress(self.now, &mut self.out);
            for frame in self.out.drain(..) {
                let n = self.sent[from];
                self.sent[from] += 1;
                let bits = (frame.len() as u64 + WIRE_OVERHEAD_BYTES) * 8;
                let departs =
                    self.free_at[from].max(self.now) + Duration::from_nanos(bits * 1000 / LINK_BITS_PER_MICRO);
                self.free_at[from] = departs;
                if self.drop.drops(from, n, frame.len(), self.now) {
                    continue;
                }
                self.order += 1;
                let arrives = departs + Duration::from_micros(ONE_WAY_MICROS);
                self.in_flight.push(Reverse((arrives, self.order, 1 - from, FrameBox(frame))));
            }
        }
    }

    /// Moves the clock to the next arrival or timer.
    fn advance(&mut self) {
        if self.stacks.iter().any(|s| s.has_pending_output()) {
            return;
        }
        let arrival = self.in_flight.peek().map(|Reverse((at, ..))| *at);
        let timers = self.stacks.iter().filter_map(|s| s.poll_timeout()).min();
        let next = [arrival, timers].into_iter().flatten().min().unwrap_or(self.now + Duration::from_micros(1));
        self.now = next.max(self.now + Duration::from_nanos(100));
    }

    /// A connection from stack 1 to a listener on stack 0: (server, client).
    fn connect(&mut self) -> (SocketHandle, SocketHandle) {
        let listener = self.stacks[0].tcp_listen(PORT, 4).expect("listen");
        let client =
            self.stacks[1].tcp_connect(SocketAddrV4::new(addr(0), PORT), self.now, &|_| true).expect("connect");
        loop {
            self.poll();
            if let Some(server) = self.stacks[0].tcp_accept(listener).expect("accept") {
                self.server = Some(server);
                return (server, client);
            }
            assert!(self.now < Instant::from_micros(STALL_MICROS), "no handshake");
            self.advance();
        }
    }

    /// One request and reply on a connection made by [`Link::connect`]: the
    /// client sends `GET`, the server answers with `reply_len` bytes of `fill`
    /// once it has read the request; returns the time from the request read to
    /// the last byte of the reply read by the client.
    fn exchange(&mut self, server: SocketHandle, client: SocketHandle, reply_len: usize, fill: u8) -> Duration {
        self.stacks[1].tcp_send(client, Bytes::from_static(b"GET")).unwrap();
        let (mut replied_at, mut got) = (None, 0);
        while got < reply_len {
            self.poll();
            if replied_at.is_none() && self.drain(0, server) > 0 {
                replied_at = Some(self.now);
                self.stacks[0].tcp_send(server, Bytes::from(vec![fill; reply_len])).unwrap();
            }
            got += self.drain(1, client);
            assert!(self.now.as_micros() < STALL_MICROS, "stalled");
            self.advance();
        }
        self.now - replied_at.expect("request served")
    }

    /// Reads and drops what `handle` of stack `at` received; returns the bytes.
    fn drain(&mut self, at: usize, handle: SocketHandle) -> usize {
        let mut n = 0;
        while let Some(chunk) = self.stacks[at].tcp_recv(handle).expect("recv") {
            n += chunk.len();
        }
        n
    }
}

/// Sends `bytes` from the server (stack 0) to the client; returns the time
/// from the first byte queued to the last byte read, and the sender's stats.
fn bulk_transfer<D: DropPolicy>(link: &mut Link<D>, bytes: usize) -> Result<Duration, String> {
    let (server, client) = link.connect();
    let data = Bytes::from(vec![0x5a; bytes]);
    let start = link.now;
    let (mut queued, mut received) = (0, 0);
    while received < bytes {
        link.poll();
        // After the poll, as the runtime runs tasks after ingress: what this
        // queues goes out in the next poll, at the same instant.
        while queued < bytes {
            let n = link.stacks[0].tcp_send(server, data.slice(queued..)).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            queued += n;
        }
        received += link.drain(1, client);
        if link.now.as_micros() > STALL_MICROS {
            return Err(format!("stalled at {received} of {bytes} bytes: {:?}", link.stacks[0].tcp_info(server)));
        }
        link.advance();
    }
    Ok(link.now - start)
}

/// The stack's default minimum retransmission timeout, in microseconds.
const RTO_MIN_MICROS: f64 = 200_000.0;

/// Completion bounds for `bytes` at loss rate `p` (each frame, either way),
/// derived from the loss rate and the link, not from the code under test:
/// `(median, slowest)` of `seeds` runs.
///
/// - Wire time: every segment serialised once at 10 Gbit/s.
/// - Steady state: a loss-based sender that repairs each loss within a round
///   trip moves MSS / RTT × sqrt(3/2) / sqrt(p) per second (Mathis et al.,
///   1997). Doubled, for slow start, ACK loss and the spread of a finite
///   transfer.
/// - Timeouts: with RACK-TLP a loss waits for the timer only when the feedback
///   that would reveal it fails twice: the segments or ACKs after it (or its
///   retransmission), and the tail loss probe. A transmission gets no
///   feedback with probability q = 1 − (1 − p)² (it or its ACK is lost), so a
///   segment costs a timeout with probability p·q². Each timeout costs the
///   minimum RTO, doubled for each further failure: RTO_MIN / (1 − 2q) on
///   average.
/// - The slowest run also meets the longest chain of failed retransmissions
///   among all the sweep's timeouts: k failures in a row happen once in
///   1/q^(k−1) timeouts, and cost RTO_MIN × (2^k − 1).
///
/// The median run must stay within wire + steady state + the expected cost of
/// its timeouts; the slowest within that plus the longest chain.
fn completion_bounds(bytes: usize, p: f64, seeds: u64) -> (Duration, Duration) {
    let segments = bytes as f64 / 1448.0;
    let wire = segments * 1526.0 * 8.0 / LINK_BITS_PER_MICRO as f64;
    let steady = 2.0 * segments * RTT_MICROS * p.sqrt() / 1.5f64.sqrt();
    let q = 1.0 - (1.0 - p).powi(2);
    let timeouts = segments * p * q * q;
    let expected_timeouts = timeouts * RTO_MIN_MICROS / (1.0 - 2.0 * q);
    let chain = 1.0 + (seeds as f64 * timeouts).max(1.0).ln() / (1.0 / q).ln();
    let longest_chain = RTO_MIN_MICROS * (2f64.powf(chain.ceil()) - 1.0);
    let median = wire + steady + expected_timeouts;
    let micros = |m: f64| Duration::from_micros(m as u64);
    (micros(median), micros(median + longest_chain))
}

/// Runs `SEEDS` transfers of 10 MB at loss `p` on two threads and checks the
/// median and the slowest against [`completion_bounds`].
fn assert_sweep(p: f64) {
    let (median_bound, slowest_bound) = completion_bounds(TRANSFER_BYTES, p, SEEDS);
    let times = std::sync::Mutex::new(Vec::new());
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if seed >= SEEDS {
                        break;
                    }
                    let random = RandomLoss { p, rng: Rng(seed.wrapping_mul(31) ^ p.to_bits()) };
                    let mut link = Link::new(seed, random, BULK_FRAMES);
                    match bulk_transfer(&mut link, TRANSFER_BYTES) {
                        Ok(took) => times.lock().unwrap().push((took, seed, link.stacks[0].stats().tcp)),
                        Err(e) => failures.lock().unwrap().push(format!("seed {seed}: {e}")),
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} of {SEEDS} runs at loss {p} failed:\n{}", failures.len(), failures.join("\n"));
    let mut times = times.into_inner().unwrap();
    times.sort_by_key(|&(took, ..)| took);
    let median = times[times.len() / 2].0;
    let (slowest, seed, stats) = times[times.len() - 1];
    println!(
        "loss {p}: median {median:?} (bound {median_bound:?}), slowest {slowest:?} (bound {slowest_bound:?}, seed \
         {seed}: {} timeouts, {} probes, {} RACK marks)",
        stats.retransmit_timeouts, stats.tlp_probes, stats.rack_lost_marks
    );
    assert!(median <= median_bound, "loss {p}: median {median:?} > {median_bound:?}");
    assert!(slowest <= slowest_bound, "loss {p}: seed {seed} took {slowest:?} > {slowest_bound:?}: {stats:?}");
}

/// 10 MB at 1% loss both ways, 200 seeds, within [`completion_bounds`].
#[test]
fn ten_megabytes_at_1_percent_loss_within_the_bound() {
    assert_sweep(0.01);
}

/// 10 MB at 5% loss both ways, 200 seeds, within [`completion_bounds`].
#[test]
fn ten_megabytes_at_5_percent_loss_within_the_bound() {
    assert_sweep(0.05);
}

/// 10 MB at 10% loss both ways, 200 seeds, within [`completion_bounds`].
#[test]
fn ten_megabytes_at_10_percent_loss_within_the_bound() {
    assert_sweep(0.10);
}

/// A request and a one-segment reply whose first copy is lost: the reply
/// arrives in under 3 SRTT + 1 ms (a tail loss probe, not the 200 ms RTO), for
/// 200 seeds (each with its own ISNs and reply size). Three exchanges first
/// measure the SRTT; the fourth reply's first copy is dropped.
#[test]
fn a_lost_single_segment_reply_is_recovered_within_three_srtt_and_a_millisecond() {
    for seed in 0..SEEDS {
        let armed = Rc::new(Cell::new(false));
        let trigger = armed.clone();
        // Stack 0's data frames are longer than any bare ACK.
        let drop = move |from: usize, _: u64, len: usize, _: Instant| from == 0 && len > 200 && trigger.replace(false);
        let mut link = Link::new(seed, drop, 256);
        let (server, client) = link.connect();
        let reply_len = 300 + (seed as usize * 37) % 1100;
        for round in 0..4 {
            let srtt = link.stacks[0].tcp_info(server).unwrap().srtt.unwrap_or_default();
            armed.set(round == 3);
            let took = link.exchange(server, client, reply_len, round as u8);
            if round == 3 {
                let bound = srtt * 3 + Duration::from_millis(1);
                assert!(took < bound, "seed {seed}: reply took {took:?}, bound {bound:?} (SRTT {srtt:?})");
            }
        }
        let stats = link.stacks[0].stats().tcp;
        assert_eq!((stats.retransmit_timeouts, stats.tlp_probes), (0, 1), "seed {seed}");
    }
}

/// A client that sometimes answers a reply late (its next request, carrying
/// the ACK, 5 ms after the reply, where most come in 100 us: a loaded load
/// generator) draws a tail loss probe for each late one while the probe
/// timeout's delayed-ACK allowance is the default 500 us; each probe comes back
/// as a D-SACK. The allowance doubles with each, so after a few the late
/// answers draw none: at most 5 needless probes in 200 exchanges (each tenth
/// late), where a fixed allowance drew 13 (of 20 late answers). A reply lost
/// afterwards is still repaired by a probe, not the 200 ms timeout.
#[test]
fn a_peer_that_delays_its_acks_stops_drawing_needless_probes() {
    const LATE_MICROS: u64 = 5_000;
    let armed = Rc::new(Cell::new(false));
    let trigger = armed.clone();
    let drop = move |from: usize, _: u64, len: usize, _: Instant| from == 0 && len > 200 && trigger.replace(false);
    let mut link = Link::new(7, drop, 256);
    let (server, client) = link.connect();
    // Replies of 100 bytes; the lost one is longer, to be told from ACKs.
    // After each, the client thinks for `turnaround` before its next request;
    // its delayed-ACK timer (40 ms) has not fired by then.
    let exchange = |link: &mut Link<_>, reply_len: usize, turnaround: Duration| -> Duration {
        let took = link.exchange(server, client, reply_len, 7);
        let until = link.now + turnaround;
        while link.now < until {
            link.poll();
            link.advance();
            link.now = link.now.min(until);
        }
        took
    };
    for round in 0..200 {
        let late = round % 10 == 9;
        exchange(&mut link, 100, Duration::from_micros(if late { LATE_MICROS } else { 100 }));
    }
    let stats = link.stacks[0].stats().tcp;
    assert!(stats.tlp_spurious >= 1, "no late ACK drew a probe: the test measures nothing: {stats:?}");
    assert!(stats.tlp_probes <= 5 && stats.tlp_spurious <= 5, "needless probes kept coming: {stats:?}");
    armed.set(true);
    let took = exchange(&mut link, 300, Duration::from_micros(100));
    let stats_after = link.stacks[0].stats().tcp;
    assert_eq!(stats_after.retransmit_timeouts, 0, "{stats_after:?}");
    assert!(stats_after.tlp_probes > stats.tlp_probes, "the lost reply was not probed: {stats_after:?}");
    assert!(took < Duration::from_millis(50), "lost reply took {took:?}");
}

/// Lost ACKs followed by D-SACKs: for 400 ms every ACK from the receiver is
/// lost, so the sender times out and retransmits what had arrived; the
/// receiver answers with D-SACKs echoing old timestamps. None of that may
/// become an RTT sample: the SRTT stays within 2x of the true RTT, for 200
/// seeds.
#[test]
fn lost_acks_then_dsacks_leave_srtt_within_twice_the_true_rtt() {
    for seed in 0..SEEDS {
        let blackout_from = Instant::from_micros(500 + seed * 5);
        let blackout_until = blackout_from + Duration::from_millis(400);
        let drop = move |from: usize, _: u64, _: usize, now: Instant| {
            from == 1 && now >= blackout_from && now < blackout_until
        };
        let mut link = Link::new(seed, drop, BULK_FRAMES);
        bulk_transfer(&mut link, 2 * 1000 * 1000).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let server = link.stacks[0].tcp_connection_count();
        assert_eq!(server, 1);
        let stats = link.stacks[0].stats().tcp;
        // The receiver (IX too) reports the retransmissions of data it held
        // in D-SACKs (RFC 2883), and the sender sees them.
        assert!(stats.retransmit_timeouts >= 1, "seed {seed}: {stats:?}");
        assert!(stats.dsacks_received >= 1, "seed {seed}: no D-SACK received: {stats:?}");
        assert!(link.stacks[1].stats().tcp.dsacks_sent >= 1, "seed {seed}: the receiver sent no D-SACK");
        let srtt = sender_srtt(&link);
        let true_rtt = Duration::from_micros(RTT_MICROS as u64);
        assert!(srtt <= true_rtt * 2 && srtt >= true_rtt / 2, "seed {seed}: SRTT {srtt:?}, true RTT {true_rtt:?}");
    }
}

/// The SRTT of the sender's (stack 0's) only connection.
fn sender_srtt<D>(link: &Link<D>) -> Duration {
    let handle = link.server.expect("a connection");
    link.stacks[0].tcp_info(handle).unwrap().srtt.expect("an RTT sample")
}
