//! The TCP/IP stack's state machine under hostile segments: a victim `Stack`, an honest peer `Stack` and an
//! attacker's raw queue on one `mem` wire under a virtual clock. The fuzzer's bytes script the attacker
//! (segments with any flags, sequence numbers near or far from the victim's, any options; raw frames), the
//! honest peer's sends, the victim application's reads and closes, and the passing of time.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use ix_driver::MemQueue;
use ix_driver::mem::{FaultConfig, ManualClock, MemWire, MemWireConfig, WakeUp, WireClock, mem_port_mac};
use ix_driver::{HugePages, NetQueue, PacketBuf, PacketPool, PoolConfig, PoolPressure};
use ix_net::wire::checksum::{checksum, transport_checksum};
use ix_net::wire::{
    ETHERNET_HEADER_LEN, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IPV4_HEADER_LEN, IpProtocol,
    Ipv4Packet, Ipv4Repr, TCP_HEADER_LEN, TCP_OPTIONS_MAX_LEN, TcpFlags, TcpPacket, fill_tcp_checksum,
};
use ix_net::{Instant, SocketHandle, Stack, StackConfig, StackStats, TcpError};

use crate::input::FuzzInput;

const VICTIM: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const HONEST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const ATTACKER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const VICTIM_PORT: u16 = 0;
const HONEST_PORT: u16 = 1;
const ATTACKER_PORT: u16 = 2;
const LISTEN_PORT: u16 = 80;
const UDP_PORT: u16 = 53;
/// The attacker's source ports: its segments name one of these flows.
const ATTACKER_SOURCE_PORTS: [u16; 4] = [40000, 40001, 40002, 40003];
const HONEST_CONNECTIONS_MAX: usize = 3;
const BACKLOG: usize = 4;
const VICTIM_CONNECTIONS_MAX: usize = 32;
const POOL_FRAMES: u32 = 512;
/// The attacker's frames: only those in flight.
const ATTACKER_POOL_FRAMES: u32 = 64;
/// Operations read from one input at most.
const OPS_MAX: usize = 512;
/// Virtual time per busy step.
const STEP_MICROS: u64 = 5;
/// Most bytes the honest peer sends in one operation.
const HONEST_SEND_MAX_BYTES: usize = 16 * 1024;
/// Largest attacker payload (a frame stays within the wire's 1518 bytes).
const ATTACKER_PAYLOAD_MAX_BYTES: usize = 1400;
/// Most steps one "let time pass" operation takes.
const ADVANCE_STEPS_MAX: usize = 4_000;
/// Virtual time the honest peer's data may take to arrive at the end of a run.
const DELIVERY_LIMIT_MICROS: u64 = 300_000_000;
/// Virtual time closing every connection may take (past retransmissions, FIN-WAIT-2 and TIME-WAIT).
const TEARDOWN_LIMIT_MICROS: u64 = 3_600_000_000;
/// Steps either closing phase may take.
const PHASE_STEPS_MAX: usize = 200_000;

/// Byte `offset` of honest connection `index`'s stream: depends on both, so bytes of another connection, or
/// out of order, do not match. It repeats every [`HONEST_PATTERN_PERIOD_BYTES`].
fn honest_byte(index: usize, offset: u64) -> u8 {
    (offset.wrapping_mul(31).wrapping_add(offset >> 8) as u8) ^ (0x40 + index as u8 * 0x15)
}

/// The period of [`honest_byte`] in `offset`: its `offset * 31` repeats every 256 bytes and its `offset >> 8`
/// (as a byte) every 65,536.
const HONEST_PATTERN_PERIOD_BYTES: usize = 1 << 16;

/// `len` bytes (at most [`HONEST_SEND_MAX_BYTES`]) of honest connection `index`'s stream from `offset`, out of
/// a table made once per process: making and checking the stream byte by byte took most of an input's time.
fn honest_bytes(index: usize, offset: u64, len: usize) -> &'static [u8] {
    static STREAMS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let streams = STREAMS.get_or_init(|| {
        let table_len = (HONEST_PATTERN_PERIOD_BYTES + HONEST_SEND_MAX_BYTES) as u64;
        (0..HONEST_CONNECTIONS_MAX).map(|index| (0..table_len).map(|at| honest_byte(index, at)).collect()).collect()
    });
    let start = (offset % HONEST_PATTERN_PERIOD_BYTES as u64) as usize;
    &streams[index][start..start + len]
}

/// Checks that `received` is honest connection `index`'s stream from `offset`.
///
/// # Panics
/// At the first byte that differs.
fn assert_honest_bytes(index: usize, offset: u64, received: &[u8]) {
    let mut at = offset;
    for piece in received.chunks(HONEST_SEND_MAX_BYTES) {
        let expected = honest_bytes(index, at, piece.len());
        if piece != expected {
            let wrong = piece.iter().zip(expected).position(|(got, want)| got != want).unwrap_or(0);
            panic!("honest connection {index}: wrong byte at {}", at + wrong as u64);
        }
        at += piece.len() as u64;
    }
}

/// A stack and its queue on the wire.
struct Host {
    stack: Stack,
    queue: MemQueue,
    pool: PacketPool,
    frames: Vec<PacketBuf>,
}

impl Host {
    fn new(
        wire: &Arc<MemWire>,
        port: u16,
        addr: Ipv4Addr,
        pool: PacketPool,
        tune: impl FnOnce(&mut StackConfig),
    ) -> Host {
        let queue = wire.queue(port, 0, pool.clone()).expect("queue");
        let mut config = StackConfig::new(EthernetAddress(queue.mac()), addr, 24, [port as u8 + 1; 16]);
        tune(&mut config);
        let stack = Stack::new(config, pool.clone(), Instant::ZERO).expect("stack");
        Host { stack, queue, pool, frames: Vec::with_capacity(64) }
    }

    /// Whether this host will do nothing until a frame arrives or time reaches a timer: nothing waits to be
    /// sent, and its pool is under no pressure (under pressure the stack repacks received data now and then,
    /// on the clock, without a timer).
    fn settled(&self) -> bool {
        !self.stack.has_pending_output() && self.pool.pressure() == PoolPressure::Normal
    }

    /// One round of the dataplane loop; true when anything moved.
    fn poll(&mut self, now: Instant) -> bool {
        let received = self.queue.rx_burst(&mut self.frames, 64);
        for frame in self.frames.drain(..) {
            self.stack.ingress(frame, now);
        }
        self.stack.on_timers(now);
        self.stack.egress(now, &mut self.frames);
        let sent = self.frames.len();
        while !self.frames.is_empty() && self.queue.tx_burst(&mut self.frames) > 0 {}
        self.frames.clear();
        received > 0 || sent > 0
    }
}

/// What the attacker last saw of the victim on one of its flows.
#[derive(Debug, Clone, Copy, Default)]
struct FlowView {
    /// The victim's next sequence number (its last segment's end).
    victim_next: u32,
    /// The victim's last acknowledgment: the sequence number it expects.
    victim_ack: u32,
}

/// The attacker: a raw queue that sends what the fuzzer says and watches what the victim answers.
struct Attacker {
    queue: MemQueue,
    pool: PacketPool,
    mac: EthernetAddress,
    victim_mac: EthernetAddress,
    flows: [FlowView; ATTACKER_SOURCE_PORTS.len()],
    frames: Vec<PacketBuf>,
}

impl Attacker {
    /// Reads what reached it; true when anything did.
    fn drain(&mut self) -> bool {
        let n = self.queue.rx_burst(&mut self.frames, 256);
        for frame in self.frames.drain(..) {
            let Some((port, view)) = victim_segment(&frame) else { continue };
            if let Some(at) = ATTACKER_SOURCE_PORTS.iter().position(|&p| p == port) {
                self.flows[at] = view;
            }
        }
        n > 0
    }

    fn send(&mut self, bytes: &[u8]) {
        let mut frame = self.pool.alloc().expect("the attacker's pool holds only frames in flight");
        frame.extend_from_slice(bytes).expect("a frame holds 1518 bytes");
        self.frames.push(frame.freeze());
        while !self.frames.is_empty() && self.queue.tx_burst(&mut self.frames) > 0 {}
        self.frames.clear();
    }

    /// A TCP segment to the victim, every field chosen by the fuzzer (sequence numbers mostly near what the
    /// victim expects, so that they land in its windows).
    fn segment(&mut self, input: &mut FuzzInput<'_>) {
        let flow = input.below(ATTACKER_SOURCE_PORTS.len());
        let view = self.flows[flow];
        let dst_port = if input.below(8) != 0 { LISTEN_PORT } else { input.u16() };
        let flags = input.u8();
        let seq = match input.below(4) {
            0 | 1 => view.victim_ack.wrapping_add(i32::from(input.u16() as i16) as u32),
            2 => view.victim_ack,
            _ => input.u32(),
        };
        let ack = match input.below(4) {
            0 | 1 => view.victim_next,
            2 => view.victim_next.wrapping_add(i32::from(input.u16() as i16) as u32),
            _ => input.u32(),
        };
        let window = input.u16();
        let urgent = input.u16();
        let options = input.bytes(TCP_OPTIONS_MAX_LEN);
        let payload_len = input.below(ATTACKER_PAYLOAD_MAX_BYTES + 1);
        let corrupt = input.below(16) == 0;

        let options_len = options.len().div_ceil(4) * 4;
        let tcp_len = TCP_HEADER_LEN + options_len + payload_len;
        let mut bytes = vec![0u8; ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + tcp_len];
        self.ipv4_header(&mut bytes, IpProtocol::Tcp, tcp_len);
        let tcp = &mut bytes[ETHERNET_HEADER_LEN + IPV4_HEADER_LEN..];
        tcp[0..2].copy_from_slice(&ATTACKER_SOURCE_PORTS[flow].to_be_bytes());
        tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&ack.to_be_bytes());
        tcp[12] = (((TCP_HEADER_LEN + options_len) / 4) as u8) << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&window.to_be_bytes());
        tcp[18..20].copy_from_slice(&urgent.to_be_bytes());
        tcp[TCP_HEADER_LEN..TCP_HEADER_LEN + options.len()].copy_from_slice(options);
        for (i, byte) in tcp[TCP_HEADER_LEN + options_len..].iter_mut().enumerate() {
            *byte = 0xa5 ^ i as u8;
        }
        fill_tcp_checksum(tcp, ATTACKER, VICTIM);
        if corrupt {
            tcp[16] ^= 0x5a;
        }
        self.send(&bytes);
    }

    /// Any bytes behind an Ethernet header to the victim; IPv4 always from the attacker's address (and, if
    /// the fuzzer says, with checksums made right), ARP always about the attacker's address.
    fn raw_frame(&mut self, input: &mut FuzzInput<'_>) {
        let ethertype = match input.below(4) {
            0 | 1 => 0x0800,
            2 => 0x0806,
            _ => input.u16(),
        };
        let fix_checksums = input.bool();
        let body = input.bytes(1500);
        let mut bytes = vec![0u8; ETHERNET_HEADER_LEN];
        bytes[0..6].copy_from_slice(&self.victim_mac.0);
        bytes[6..12].copy_from_slice(&self.mac.0);
        bytes[12..14].copy_from_slice(&ethertype.to_be_bytes());
        bytes.extend_from_slice(body);
        let l3 = &mut bytes[ETHERNET_HEADER_LEN..];
        match ethertype {
            0x0800 if l3.len() >= IPV4_HEADER_LEN => {
                l3[12..16].copy_from_slice(&ATTACKER.octets());
                if fix_checksums {
                    refill_checksums(l3);
                }
            }
            0x0806 if l3.len() >= 18 => l3[14..18].copy_from_slice(&ATTACKER.octets()),
            _ => {}
        }
        self.send(&bytes);
    }

    /// Writes the Ethernet and IPv4 headers of a datagram from the attacker to the victim.
    fn ipv4_header(&self, bytes: &mut [u8], protocol: IpProtocol, payload_len: usize) {
        EthernetRepr { src: self.mac, dst: self.victim_mac, ethertype: EtherType::Ipv4 }.emit(bytes);
        Ipv4Repr { src: ATTACKER, dst: VICTIM, protocol, payload_len, ttl: 64, dont_frag: true, ident: 0, dscp_ecn: 0 }
            .emit(&mut bytes[ETHERNET_HEADER_LEN..]);
    }
}

/// The destination port of a TCP segment from the victim, and what it says of the victim's sequence space.
fn victim_segment(frame: &[u8]) -> Option<(u16, FlowView)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.protocol() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let flags = tcp.flags();
    let len = tcp.payload().len() as u32
        + u32::from(flags.contains(TcpFlags::SYN))
        + u32::from(flags.contains(TcpFlags::FIN));
    Some((tcp.dst_port(), FlowView { victim_next: tcp.seq_number().wrapping_add(len), victim_ack: tcp.ack_number() }))
}

/// Makes the IPv4 header checksum, and the TCP, UDP or ICMP checksum, right for what the (possibly lying)
/// header says, so that a lie reaches the parser behind the checksums.
fn refill_checksums(ip: &mut [u8]) {
    let header_len = (usize::from(ip[0] & 0x0f) * 4).clamp(IPV4_HEADER_LEN, ip.len());
    let end = usize::from(u16::from_be_bytes([ip[2], ip[3]])).clamp(header_len, ip.len());
    let at = match ip[9] {
        1 => Some(2),
        6 => Some(16),
        17 => Some(6),
        _ => None,
    };
    if let Some(at) = at.filter(|at| header_len + at + 2 <= end) {
        ip[header_len + at..header_len + at + 2].fill(0);
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let sum = match ip[9] {
            1 => checksum(&ip[header_len..end]),
            protocol => transport_checksum(src, dst, protocol, &ip[header_len..end]),
        };
        ip[header_len + at..header_len + at + 2].copy_from_slice(&sum.to_be_bytes());
    }
    ip[10..12].fill(0);
    let sum = checksum(&ip[..header_len]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// One honest connection: what the peer sent and what the victim's application read.
struct HonestConnection {
    peer: SocketHandle,
    victim: Option<SocketHandle>,
    sent: u64,
    delivered: u64,
    /// The victim's `listen_overflows` when the peer opened this connection.
    overflows_at_open: u64,
    /// The honest peer's `arp_pending_dropped` then: frames its own neighbour queue dropped while it asked for
    /// the victim's address again (a SYN among them is lost before it reaches the victim).
    arp_drops_at_open: u64,
}

/// The honest peer's connect to the victim's listening port, with the counters the reopen compares against.
fn connect_to_victim(honest: &mut Stack, victim: &Stack, now: Instant) -> HonestConnection {
    let peer = honest.tcp_connect(SocketAddrV4::new(VICTIM, LISTEN_PORT), now, &|_| true).expect("connect");
    HonestConnection {
        peer,
        victim: None,
        sent: 0,
        delivered: 0,
        overflows_at_open: victim.stats().tcp.listen_overflows,
        arp_drops_at_open: honest.stats().link.arp_pending_dropped,
    }
}

/// What one step of the three parties did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A frame was received or sent.
    Busy,
    /// Nothing moved; time went to the next timer, or to the horizon.
    Idle,
    /// Nothing moved and nothing will until the harness acts: no frame in flight, no timer set on either
    /// stack, nothing waiting to be sent, no pool pressure. A further step would only move the clock.
    Quiet,
}

/// The three parties, the victim's sockets and the clock.
struct Session {
    clock: Arc<ManualClock>,
    victim: Host,
    honest: Host,
    attacker: Attacker,
    listener: SocketHandle,
    udp: SocketHandle,
    honest_connections: Vec<HonestConnection>,
    /// The victim's connections from the attacker.
    attacked: Vec<SocketHandle>,
    /// Whether runs of steps end at the first quiet one ([`Session::steps`]); off only to check that this
    /// changes nothing.
    skip_quiet_steps: bool,
    /// Steps taken so far.
    steps_taken: u64,
    _wire: Arc<MemWire>,
}

/// The three parties' packet pools, kept from one input to the next: a pool is a populated shared mapping
/// (2 MiB for [`POOL_FRAMES`]), whose making and unmapping took most of an input's time. A pool goes back
/// only with every frame free, so each input starts as with fresh pools (frames hold older bytes, as a
/// dataplane's reused frames do).
struct SessionPools {
    victim: PacketPool,
    honest: PacketPool,
    attacker: PacketPool,
}

thread_local! {
    static SPARE_POOLS: std::cell::RefCell<Option<SessionPools>> = const { std::cell::RefCell::new(None) };
}

impl SessionPools {
    /// The pools the last input gave back, or new ones.
    fn take() -> SessionPools {
        SPARE_POOLS.with_borrow_mut(Option::take).unwrap_or_else(|| {
            let pool = |frames| PacketPool::new(PoolConfig { frames, huge_pages: HugePages::Never }).expect("pool");
            SessionPools { victim: pool(POOL_FRAMES), honest: pool(POOL_FRAMES), attacker: pool(ATTACKER_POOL_FRAMES) }
        })
    }

    /// Keeps the pools for the next input. Every party's frames are back once its session is dropped.
    ///
    /// # Panics
    /// When a pool lacks a frame: something outside the session still holds it.
    fn give_back(self) {
        for (name, pool) in [("victim", &self.victim), ("honest peer", &self.honest), ("attacker", &self.attacker)] {
            let (free, capacity) = (pool.available(), pool.capacity());
            assert_eq!(free, capacity, "the {name}'s pool lost {} frames after the session ended", capacity - free);
        }
        SPARE_POOLS.with_borrow_mut(|spare| *spare = Some(self));
    }
}

impl Session {
    fn new(pools: &SessionPools, skip_quiet_steps: bool) -> Session {
        let clock = Arc::new(ManualClock::new(0));
        let wire = MemWire::new(MemWireConfig {
            ports: 3,
            faults: FaultConfig::NONE,
            clock: clock.clone(),
            // The harness polls every queue in turn and never blocks: no eventfd to make, signal and close.
            wakeup: WakeUp::Polled,
            ..MemWireConfig::default()
        })
        .expect("wire");
        let mut victim = Host::new(&wire, VICTIM_PORT, VICTIM, pools.victim.clone(), |c| {
            c.max_connections = VICTIM_CONNECTIONS_MAX;
        });
        let honest = Host::new(&wire, HONEST_PORT, HONEST, pools.honest.clone(), |_| {});
        let pool = pools.attacker.clone();
        let queue = wire.queue(ATTACKER_PORT, 0, pool.clone()).expect("queue");
        let attacker = Attacker {
            mac: EthernetAddress(mem_port_mac(ATTACKER_PORT)),
            victim_mac: EthernetAddress(victim.queue.mac()),
            queue,
            pool,
            flows: Default::default(),
            frames: Vec::new(),
        };
        let listener = victim.stack.tcp_listen(LISTEN_PORT, BACKLOG).expect("listen");
        let udp = victim.stack.udp_bind(UDP_PORT).expect("bind");
        let mut session = Session {
            clock,
            victim,
            honest,
            attacker,
            listener,
            udp,
            honest_connections: Vec::new(),
            attacked: Vec::new(),
            skip_quiet_steps,
            steps_taken: 0,
            _wire: wire,
        };
        session.announce_attacker();
        session
    }

    /// An ARP request from the attacker, so that the victim can answer it at once.
    fn announce_attacker(&mut self) {
        let mut arp = [0u8; 28];
        arp[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        arp[8..14].copy_from_slice(&self.attacker.mac.0);
        arp[14..18].copy_from_slice(&ATTACKER.octets());
        arp[24..28].copy_from_slice(&VICTIM.octets());
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&self.attacker.mac.0);
        frame.extend_from_slice(&[0x08, 0x06]);
        frame.extend_from_slice(&arp);
        self.attacker.send(&frame);
        self.step();
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.clock.now_micros())
    }

    /// Polls every party once; moves time a step when anything moved, else to the next timer, or a step
    /// when no timer is set.
    fn step(&mut self) -> Step {
        self.step_until(None)
    }

    /// `count` steps. After a quiet step every further one would only move the clock [`STEP_MICROS`]: those
    /// are skipped (unless `skip_quiet_steps` is off) but for the last, so that the clock, and every party's
    /// record of the time it last polled, end as after `count` steps.
    ///
    /// # Panics
    /// When the last step is not quiet: a stack did something with no frame, timer or output to do it for.
    fn steps(&mut self, count: usize) {
        for done in 1..=count {
            if self.step() == Step::Quiet && self.skip_quiet_steps {
                let left = (count - done) as u64;
                if left > 0 {
                    self.clock.advance(STEP_MICROS * (left - 1));
                    let last = self.step();
                    assert_eq!(last, Step::Quiet, "a stack moved with no frame, timer or output to move it");
                }
                return;
            }
        }
    }

    /// Polls every party once; moves time a step when anything moved, else to the next timer, or to
    /// `horizon` when that comes first (or no timer is set), as a dataplane's idle wait would, or a step when
    /// neither is set.
    fn step_until(&mut self, horizon: Option<u64>) -> Step {
        self.steps_taken += 1;
        let now = self.now();
        let mut busy = self.victim.poll(now);
        busy |= self.honest.poll(now);
        busy |= self.attacker.drain();
        if busy {
            self.clock.advance(STEP_MICROS);
            return Step::Busy;
        }
        let next = [self.victim.stack.poll_timeout(), self.honest.stack.poll_timeout()]
            .into_iter()
            .flatten()
            .map(Instant::as_micros)
            .min();
        let idle_until = match (next, horizon) {
            (Some(t), Some(h)) => Some(t.min(h)),
            (t, h) => t.or(h),
        };
        match idle_until {
            Some(t) if t > now.as_micros() => self.clock.set(t),
            _ => {
                self.clock.advance(STEP_MICROS);
            }
        }
        if next.is_none() && self.victim.settled() && self.honest.settled() { Step::Quiet } else { Step::Idle }
    }

    /// Lets `micros` of virtual time pass (at most [`ADVANCE_STEPS_MAX`] steps).
    fn advance(&mut self, micros: u64) {
        let until = self.clock.now_micros() + micros;
        for _ in 0..ADVANCE_STEPS_MAX {
            if self.clock.now_micros() >= until {
                return;
            }
            self.step_until(Some(until));
        }
    }

    /// The victim's application: accepts, and reads everything (checking every honest byte).
    fn victim_reads(&mut self) {
        let stack = &mut self.victim.stack;
        while let Ok(Some(conn)) = stack.tcp_accept(self.listener) {
            let remote = stack.tcp_info(conn).expect("accepted").tuple.remote;
            if *remote.ip() != HONEST {
                self.attacked.push(conn);
                continue;
            }
            let honest = self.honest_connections.iter_mut().find(|h| {
                self.honest.stack.tcp_info(h.peer).is_ok_and(|info| info.tuple.local.port() == remote.port())
            });
            let honest = honest.unwrap_or_else(|| panic!("the victim accepted {remote}, which the peer never opened"));
            assert!(honest.victim.is_none(), "the victim accepted {remote} twice");
            honest.victim = Some(conn);
        }
        for (index, honest) in self.honest_connections.iter_mut().enumerate() {
            let Some(conn) = honest.victim else { continue };
            loop {
                match stack.tcp_recv(conn) {
                    Ok(Some(chunk)) => {
                        assert_honest_bytes(index, honest.delivered, &chunk);
                        honest.delivered += chunk.len() as u64;
                        assert!(honest.delivered <= honest.sent, "honest connection {index}: more bytes than sent");
                    }
                    Ok(None) => break,
                    Err(e) => panic!("honest connection {index} failed: {e}"),
                }
            }
        }
        for &conn in &self.attacked {
            while let Ok(Some(_)) = stack.tcp_recv(conn) {}
        }
        while let Ok(Some(_)) = stack.udp_recv_from(self.udp) {}
    }

    /// The honest peer sends `len` bytes on connection `index`, opening it first if needed.
    fn honest_sends(&mut self, index: usize, len: usize) {
        let now = self.now();
        if index >= self.honest_connections.len() {
            if self.honest_connections.len() == HONEST_CONNECTIONS_MAX {
                return;
            }
            let connection = connect_to_victim(&mut self.honest.stack, &self.victim.stack, now);
            self.honest_connections.push(connection);
            return;
        }
        let honest = &mut self.honest_connections[index];
        let data = Bytes::from_static(honest_bytes(index, honest.sent, len));
        if let Ok(accepted) = self.honest.stack.tcp_send(honest.peer, data) {
            honest.sent += accepted as u64;
        }
    }

    /// Runs one operation the fuzzer chose.
    fn apply(&mut self, input: &mut FuzzInput<'_>) {
        match input.below(10) {
            0..=2 => self.attacker.segment(input),
            3 => self.attacker.raw_frame(input),
            4 => {
                let (index, len) = (input.below(HONEST_CONNECTIONS_MAX + 1), input.below(HONEST_SEND_MAX_BYTES));
                self.honest_sends(index, len);
            }
            5 => self.victim_reads(),
            6 => self.advance(1_000 * (1 + input.below(5_000) as u64)),
            7 => {
                // The victim's application closes, aborts or answers an attacker's connection.
                if self.attacked.is_empty() {
                    return;
                }
                let at = input.below(self.attacked.len());
                let conn = self.attacked[at];
                match input.below(4) {
                    0 => {
                        self.victim.stack.close(conn);
                        self.attacked.swap_remove(at);
                    }
                    1 => {
                        let _ = self.victim.stack.tcp_abort(conn);
                    }
                    2 => {
                        let _ = self.victim.stack.tcp_shutdown(conn);
                    }
                    _ => {
                        let len = input.below(HONEST_SEND_MAX_BYTES);
                        let _ = self.victim.stack.tcp_send(conn, Bytes::from(vec![0x5c; len]));
                    }
                }
            }
            _ => {
                let count = 1 + input.below(64);
                self.steps(count);
            }
        }
        let connections = self.victim.stack.tcp_connection_count();
        assert!(connections <= VICTIM_CONNECTIONS_MAX, "the victim holds {connections} connections");
    }

    /// Every byte the honest peer sent arrives, in order, within bounded virtual time: stepping ends when all
    /// of it was read, after [`DELIVERY_LIMIT_MICROS`] or [`PHASE_STEPS_MAX`] steps, or at a quiet step (then
    /// nothing more can arrive).
    fn deliver_honest_bytes(&mut self) {
        let deadline = self.clock.now_micros() + DELIVERY_LIMIT_MICROS;
        let mut last = Step::Busy;
        for _ in 0..PHASE_STEPS_MAX {
            // At every step, not only the first: a connection starved before this phase may learn it only
            // here (its connect times out, or its next retransmission meets the RST), once the queue has room.
            if self.reopen_connections_starved_by_a_full_accept_queue() {
                last = Step::Busy;
            }
            self.victim_reads();
            let done = self.honest_connections.iter().all(|h| self.delivered_or_never_handed_over(h));
            if done || self.clock.now_micros() > deadline || (last == Step::Quiet && self.skip_quiet_steps) {
                break;
            }
            last = self.step();
        }
        for (index, honest) in self.honest_connections.iter().enumerate() {
            let state = self.honest.stack.tcp_state(honest.peer);
            assert!(
                self.delivered_or_never_handed_over(honest),
                "honest connection {index} ({state:?}): {} of {} bytes arrived",
                honest.delivered,
                honest.sent
            );
        }
    }

    /// Whether honest connection `honest` is done: accepted, with every byte read; or never handed over, through
    /// no fault of the victim's. That is a connection the peer took as established but whose handshake's last
    /// ACK the victim dropped for a full accept queue (at least one listen overflow since it opened), as Linux
    /// does, and on which the peer has sent nothing. Once the victim's half-open connection gives up, or when a
    /// SYN cookie's ACK was the one dropped, the victim holds nothing of it, and the peer learns so only when it
    /// sends (then its segment draws a RST, and [`Self::reopen_connections_starved_by_a_full_accept_queue`]
    /// takes it from there).
    fn delivered_or_never_handed_over(&self, honest: &HonestConnection) -> bool {
        if honest.victim.is_some() {
            return honest.delivered == honest.sent;
        }
        let overflows = self.victim.stack.stats().tcp.listen_overflows;
        honest.sent == 0
            && overflows > honest.overflows_at_open
            && self.honest.stack.tcp_state(honest.peer) == Ok(ix_net::tcp::State::Established)
    }

    /// Opens again each honest connection that a full accept queue starved. While as many connections as its
    /// backlog wait to be accepted, the victim drops a SYN, and drops the last ACK of a handshake (its half-open
    /// connection resends the SYN-ACK), as Linux does. When its application then accepts nothing for the two
    /// minutes either side retries (the attacker's connections can fill the queue), the peer's connect times out
    /// (`TimedOut`), or the victim's half-open connection gives up and the peer, which took the handshake as
    /// done and sent, is answered with a RST (`ConnectionReset`). The peer's application sees the error; the
    /// bytes it sent were never delivered, by design. Only such a connection is opened again: closed with one of
    /// those two errors, never accepted, and with at least as many listen overflows counted since it opened as
    /// the SYNs a connect sends (seven); a frame the peer's own neighbour queue dropped since then counts as one
    /// of them, since the SYN it held never reached the victim. The new connection must then be accepted and
    /// carry its bytes like any other, since the delivery phase accepts at every step. True when it opened any.
    fn reopen_connections_starved_by_a_full_accept_queue(&mut self) -> bool {
        let syns_per_connect = u64::from(self.honest.stack.config().tcp.syn_retries) + 1;
        let overflows = self.victim.stack.stats().tcp.listen_overflows;
        let arp_drops = self.honest.stack.stats().link.arp_pending_dropped;
        let now = self.now();
        let mut reopened = false;
        for honest in &mut self.honest_connections {
            let error = self.honest.stack.tcp_error(honest.peer);
            let starved = matches!(error, Ok(Some(TcpError::TimedOut | TcpError::ConnectionReset)));
            let lost = (overflows - honest.overflows_at_open) + (arp_drops - honest.arp_drops_at_open);
            if honest.victim.is_some() || !starved || lost < syns_per_connect {
                continue;
            }
            self.honest.stack.close(honest.peer);
            *honest = connect_to_victim(&mut self.honest.stack, &self.victim.stack, now);
            reopened = true;
        }
        reopened
    }

    /// Closes everything; every connection ends within bounded virtual time and the victim's pool gets every
    /// frame back.
    fn tear_down(&mut self) {
        let victim_side: Vec<SocketHandle> =
            self.honest_connections.iter().filter_map(|h| h.victim).chain(self.attacked.drain(..)).collect();
        for conn in victim_side {
            self.victim.stack.close(conn);
        }
        for honest in &self.honest_connections {
            self.honest.stack.close(honest.peer);
        }
        self.victim.stack.close(self.listener);
        self.victim.stack.close(self.udp);
        let deadline = self.clock.now_micros() + TEARDOWN_LIMIT_MICROS;
        let mut last = Step::Busy;
        for _ in 0..PHASE_STEPS_MAX {
            let quiet = last == Step::Quiet && self.skip_quiet_steps;
            if self.victim.stack.tcp_connection_count() == 0 || self.clock.now_micros() > deadline || quiet {
                break;
            }
            last = self.step();
        }
        let left = self.victim.stack.tcp_connection_count();
        assert_eq!(left, 0, "{left} connections outlive close (an hour of virtual time, or nothing left to end them)");
        // Then until nothing moves, within the same bound: the honest peer's closed connections may still send
        // (each answered with a RST), and frames wait in the victim's neighbour queue while an address is asked
        // again, until the answer comes or the last request goes unanswered. A frame out of the pool then is
        // one in use, not a leak. (The first quiet step ends it whether quiet steps are skipped or not.)
        let mut last = Step::Busy;
        for _ in 0..PHASE_STEPS_MAX {
            if last == Step::Quiet || self.clock.now_micros() > deadline {
                break;
            }
            last = self.step();
        }
        self.steps(16);
        for (name, host) in [("victim", &self.victim), ("honest peer", &self.honest)] {
            let rearms = host.stack.stats().tcp.missing_timer_rearms;
            assert_eq!(rearms, 0, "the {name} found {rearms} connections with data outstanding and no timer");
        }
        let (free, capacity) = (self.victim.pool.available(), self.victim.pool.capacity());
        assert_eq!(free, capacity, "the victim's pool lost {} frames", capacity - free);
    }
}

/// Input: a sequence of operations (attacker segments and raw frames, honest sends, victim reads and closes,
/// time passing). Invariants: nothing panics; the victim never holds more connections than its limit; every
/// byte the honest peer sends reaches the victim's application in order and unchanged (no data of the
/// attacker's connections reaches it); every connection ends after close; no frame leaks.
///
/// # Panics
/// When an invariant breaks.
pub fn run(data: &[u8]) {
    run_session(data, true);
}

/// How a session ended: what the test that skipping quiet steps changes nothing compares.
#[derive(Debug, PartialEq, Eq)]
struct Ending {
    clock_micros: u64,
    victim: StackStats,
    honest: StackStats,
    /// Each honest connection's bytes sent and read by the victim.
    honest_bytes: Vec<(u64, u64)>,
}

/// [`run`], with or without skipping the steps after a quiet one; how it ended, and the steps it took.
fn run_session(data: &[u8], skip_quiet_steps: bool) -> (Ending, u64) {
    let mut input = FuzzInput::new(data);
    let pools = SessionPools::take();
    let mut session = Session::new(&pools, skip_quiet_steps);
    for _ in 0..OPS_MAX {
        if input.is_empty() {
            break;
        }
        session.apply(&mut input);
    }
    session.deliver_honest_bytes();
    session.tear_down();
    let ending = Ending {
        clock_micros: session.clock.now_micros(),
        victim: *session.victim.stack.stats(),
        honest: *session.honest.stack.stats(),
        honest_bytes: session.honest_connections.iter().map(|h| (h.sent, h.delivered)).collect(),
    };
    let steps = session.steps_taken;
    drop(session);
    pools.give_back();
    (ending, steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_honest_stream_table_is_the_byte_function_across_its_period() {
        for index in 0..HONEST_CONNECTIONS_MAX {
            let period = HONEST_PATTERN_PERIOD_BYTES as u64;
            for offset in [0, 1, 255, 256, period - 3, period, 5 * period + 77] {
                let len = HONEST_SEND_MAX_BYTES;
                let want: Vec<u8> = (offset..offset + len as u64).map(|at| honest_byte(index, at)).collect();
                assert_eq!(honest_bytes(index, offset, len), &want[..], "connection {index} at {offset}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "honest connection 1: wrong byte at 70004")]
    fn a_wrong_byte_is_named_by_its_offset() {
        let mut received = honest_bytes(1, 70_000, 10).to_vec();
        received[4] ^= 1;
        assert_honest_bytes(1, 70_000, &received);
    }

    #[test]
    #[should_panic(expected = "wrong byte at 0")]
    fn another_connections_bytes_do_not_pass() {
        assert_honest_bytes(0, 0, honest_bytes(1, 0, 100));
    }

    /// A session whose victim listens with a backlog of one.
    fn session_with_a_backlog_of_one(pools: &SessionPools) -> Session {
        let mut session = Session::new(pools, true);
        session.victim.stack.close(session.listener);
        session.listener = session.victim.stack.tcp_listen(LISTEN_PORT, 1).expect("listen");
        session
    }

    /// Honest connection `index` sends 3,000 bytes, and every one must arrive.
    fn carries_3000_bytes(session: &mut Session, index: usize) {
        session.honest_sends(index, 3_000);
        session.deliver_honest_bytes();
        assert_eq!(session.honest_connections[index].delivered, 3_000);
    }

    /// A session whose victim listens with a backlog of one: honest connection 0 fills the accept queue (the
    /// victim's application accepts nothing), and connection 1's SYNs are dropped for `micros` of virtual time.
    fn session_with_a_connect_into_a_full_queue(pools: &SessionPools, micros: u64) -> Session {
        let mut session = session_with_a_backlog_of_one(pools);
        session.honest_sends(0, 0);
        session.steps(64);
        session.honest_sends(1, 0);
        session.advance(micros);
        session
    }

    /// [`session_with_a_connect_into_a_full_queue`] until connection 1's connect (its SYN and six
    /// retransmissions, the last 63 s after the first) times out, 127 s after it began.
    fn session_with_a_starved_connect(pools: &SessionPools) -> Session {
        let session = session_with_a_connect_into_a_full_queue(pools, 200_000_000);
        let starved = session.honest_connections[1].peer;
        assert_eq!(session.honest.stack.tcp_error(starved), Ok(Some(TcpError::TimedOut)));
        session
    }

    /// A session whose victim listens with a backlog of one, and the peer opens two connections at once. The
    /// first SYN makes the one half-open connection the backlog allows, and the second is answered with a SYN
    /// cookie. The cookie's handshake completes first and fills the accept queue (nobody accepts), so the
    /// victim drops connection 0's last ACK, and its answers to each SYN-ACK the half-open connection resends,
    /// until that connection gives up. The peer takes connection 0 as established; the victim holds nothing
    /// of it.
    fn session_with_a_handshake_dropped_for_a_full_queue(pools: &SessionPools) -> Session {
        let mut session = session_with_a_backlog_of_one(pools);
        session.honest_sends(0, 0);
        session.honest_sends(1, 0);
        session.steps(64);
        let tcp = session.victim.stack.stats().tcp;
        assert_eq!((tcp.syncookies_recv, tcp.listen_overflows, tcp.timeouts), (1, 7, 1));
        let dropped = session.honest_connections[0].peer;
        assert_eq!(session.honest.stack.tcp_state(dropped), Ok(ix_net::tcp::State::Established));
        session
    }

    /// Such a connection, with nothing sent, need not be accepted: its peer cannot know, as with Linux, until
    /// it sends.
    #[test]
    fn an_idle_connection_whose_last_ack_a_full_queue_dropped_need_not_be_accepted() {
        let pools = SessionPools::take();
        let mut session = session_with_a_handshake_dropped_for_a_full_queue(&pools);
        session.deliver_honest_bytes();
        assert!(session.honest_connections[0].victim.is_none());
        assert!(session.honest_connections[1].victim.is_some());
    }

    /// Once it sends, it meets the RST, is opened again, and every byte sent on the new connection must arrive.
    #[test]
    fn an_idle_connection_whose_last_ack_a_full_queue_dropped_is_checked_again_once_it_sends() {
        let pools = SessionPools::take();
        let mut session = session_with_a_handshake_dropped_for_a_full_queue(&pools);
        session.deliver_honest_bytes();
        let first = session.honest_connections[0].peer;
        session.honest_sends(0, 3_000);
        session.deliver_honest_bytes();
        let reopened = &session.honest_connections[0];
        assert!(reopened.peer != first && reopened.sent == 0, "the reset connection was opened again");
        assert!(session.victim.stack.stats().tcp.syncookies_failed > 0, "its data, no cookie, drew the RST");
        carries_3000_bytes(&mut session, 0);
    }

    /// Without a listen overflow since it opened, an idle connection the victim never accepted still fails the
    /// check.
    #[test]
    #[should_panic(expected = "honest connection 0 (Ok(Established)): 0 of 0 bytes arrived")]
    fn an_idle_connection_never_accepted_without_an_overflow_fails() {
        let pools = SessionPools::take();
        let mut session = session_with_a_handshake_dropped_for_a_full_queue(&pools);
        session.honest_connections[0].overflows_at_open = session.victim.stack.stats().tcp.listen_overflows;
        session.deliver_honest_bytes();
    }

    /// A connect whose last SYN a full queue dropped before the delivery phase, and which times out in it, is
    /// opened again there: the delivery phase empties the queue, but no SYN is left to use the room.
    #[test]
    fn a_connect_that_times_out_in_the_delivery_phase_is_opened_again() {
        let pools = SessionPools::take();
        let mut session = session_with_a_connect_into_a_full_queue(&pools, 100_000_000);
        let starved = session.honest_connections[1].peer;
        assert_eq!(session.honest.stack.tcp_error(starved), Ok(None), "still connecting");
        assert_eq!(session.honest.stack.tcp_state(starved), Ok(ix_net::tcp::State::SynSent));
        session.deliver_honest_bytes();
        carries_3000_bytes(&mut session, 1);
    }

    /// The connect starved by a full accept queue is opened again, and then carries its bytes.
    #[test]
    fn a_connect_starved_by_a_full_accept_queue_is_opened_again() {
        let pools = SessionPools::take();
        let mut session = session_with_a_starved_connect(&pools);
        session.honest_sends(1, 0); // fails: the connection is closed
        session.deliver_honest_bytes();
        carries_3000_bytes(&mut session, 1);
    }

    /// A connect that timed out with fewer listen overflows than SYNs is not forgiven.
    #[test]
    #[should_panic(expected = "honest connection 1 (Ok(Closed)): 0 of 0 bytes arrived")]
    fn a_timed_out_connect_without_overflows_is_not_opened_again() {
        let pools = SessionPools::take();
        let mut session = session_with_a_starved_connect(&pools);
        session.honest_connections[1].overflows_at_open = session.victim.stack.stats().tcp.listen_overflows - 6;
        session.deliver_honest_bytes();
    }

    /// A connect the victim refused (no listener) is not opened again, though the victim listens again by the
    /// time of the delivery check.
    #[test]
    #[should_panic(expected = "honest connection 0 (Ok(Closed)): 0 of 0 bytes arrived")]
    fn a_refused_honest_connection_is_not_opened_again() {
        let pools = SessionPools::take();
        let mut session = Session::new(&pools, true);
        session.victim.stack.close(session.listener);
        session.honest_sends(0, 0);
        session.steps(64);
        let refused = session.honest.stack.tcp_error(session.honest_connections[0].peer);
        assert_eq!(refused, Ok(Some(TcpError::ConnectionRefused)));
        session.listener = session.victim.stack.tcp_listen(LISTEN_PORT, BACKLOG).expect("listen");
        session.deliver_honest_bytes();
    }

    /// Skipping the steps after a quiet one ends every committed input (corpus and regressions) exactly as
    /// taking them does: the same clock, the same counters of both stacks, the same bytes delivered; and it
    /// does skip steps.
    #[test]
    fn skipping_quiet_steps_changes_no_ending() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let (mut inputs, mut stepped, mut skipped) = (0, 0, 0);
        for kind in ["corpus", "regressions"] {
            let entries = std::fs::read_dir(fuzz.join(kind).join("tcp_session")).expect("tcp_session inputs");
            for entry in entries {
                let path = entry.expect("directory entry").path();
                let data = std::fs::read(&path).expect("readable input");
                let (every_step, steps) = run_session(&data, false);
                let (skipping, fewer) = run_session(&data, true);
                assert_eq!(skipping, every_step, "{} ends otherwise when quiet steps are skipped", path.display());
                (inputs, stepped, skipped) = (inputs + 1, stepped + steps, skipped + fewer);
            }
        }
        assert!(inputs > 100 && skipped < stepped, "{inputs} inputs: {stepped} steps, {skipped} when skipping");
    }
}
