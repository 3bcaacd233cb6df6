//! A stack under test at 10.0.0.1 and a peer scripted by hand: the peer's
//! segments are built from `TcpRepr`s and fed with `ingress`; what the stack
//! emits is parsed back into `TcpRepr` plus payload. Time is virtual.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use ix_driver::{HugePages, PacketBuf, PacketPool, PoolConfig};
use ix_net::wire::{
    ARP_PACKET_LEN, ArpOperation, ArpRepr, ETHERNET_HEADER_LEN, EtherType, EthernetAddress, EthernetFrame,
    EthernetRepr, IPV4_HEADER_LEN, IpProtocol, Ipv4Packet, Ipv4Repr, TcpFlags, TcpOptions, TcpPacket, TcpRepr,
    fill_tcp_checksum,
};
use ix_net::{Instant, SocketHandle, Stack, StackConfig};

/// The stack's address.
pub const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// The scripted peer's address.
pub const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const LOCAL_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
/// The port the stack listens on in passive tests.
pub const LOCAL_PORT: u16 = 5000;
/// The peer's port.
pub const PEER_PORT: u16 = 40000;
/// The peer's initial sequence number unless a test picks another.
pub const PEER_ISN: u32 = 1_000_000;
/// The secret of every stack under test (ISNs and cookies are repeatable).
pub const SECRET: [u8; 16] = [7; 16];

/// One segment the stack emitted, and when.
#[derive(Debug, Clone)]
pub struct Seg {
    pub at: Instant,
    pub repr: TcpRepr,
    pub payload: Vec<u8>,
}

impl Seg {
    pub fn has(&self, flags: TcpFlags) -> bool {
        self.repr.flags.contains(flags)
    }

    /// Sequence space the segment occupies (payload, SYN and FIN).
    pub fn seq_len(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.has(TcpFlags::SYN)) + u32::from(self.has(TcpFlags::FIN))
    }

    pub fn sack_blocks(&self) -> Vec<(u32, u32)> {
        self.repr.options.sack_blocks[..usize::from(self.repr.options.sack_count)].to_vec()
    }
}

/// An established connection and the sequence numbers the script continues from.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub handle: SocketHandle,
    /// The peer's next sequence number (what the stack acknowledges).
    pub peer_seq: u32,
    /// The stack's next sequence number (what the peer acknowledges).
    pub our_seq: u32,
}

/// The stack under test, its peer's script state and the virtual clock.
pub struct Harness {
    pub stack: Stack,
    pub pool: PacketPool,
    pub now: Instant,
    /// The stack's port in the current script (learned from the SYN in active opens).
    pub local_port: u16,
    /// The window field of the peer's segments.
    pub peer_window: u16,
    /// The peer's TSval: when set, every peer segment carries timestamps
    /// echoing the stack's last TSval.
    pub peer_ts: Option<u32>,
    /// The stack's last TSval seen.
    pub last_stack_ts: u32,
    /// The peer's initial sequence number in handshakes.
    pub peer_isn: u32,
}

impl Harness {
    /// A stack with default settings.
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    /// A stack whose configuration `tune` adjusts, starting at time zero.
    pub fn with(tune: impl FnOnce(&mut StackConfig)) -> Self {
        Self::starting_at(Instant::ZERO, tune)
    }

    /// As [`Harness::with`] with the clock starting at `start`.
    pub fn starting_at(start: Instant, tune: impl FnOnce(&mut StackConfig)) -> Self {
        let mut h = Self::unresolved(start, tune);
        h.seed_arp();
        h
    }

    /// As [`Harness::starting_at`], with the peer's MAC not yet known.
    pub fn unresolved(start: Instant, tune: impl FnOnce(&mut StackConfig)) -> Self {
        let pool = PacketPool::new(PoolConfig { frames: 2048, huge_pages: HugePages::Never }).expect("pool");
        let mut cfg = StackConfig::new(LOCAL_MAC, LOCAL, 24, SECRET);
        tune(&mut cfg);
        let stack = Stack::new(cfg, pool.clone(), start).expect("stack");
        Self {
            stack,
            pool,
            now: start,
            local_port: LOCAL_PORT,
            peer_window: 65_535,
            peer_ts: None,
            last_stack_ts: 0,
            peer_isn: PEER_ISN,
        }
    }

    /// The peer asks for our address, so the stack learns the peer's and
    /// sends segments at once.
    fn seed_arp(&mut self) {
        let arp = ArpRepr {
            operation: ArpOperation::Request,
            source_hw: PEER_MAC,
            source_ip: PEER,
            target_hw: EthernetAddress([0; 6]),
            target_ip: LOCAL,
        };
        let mut frame = self.pool.alloc().expect("frame");
        let bytes = frame.append(ETHERNET_HEADER_LEN + ARP_PACKET_LEN).expect("room");
        EthernetRepr { src: PEER_MAC, dst: EthernetAddress::BROADCAST, ethertype: EtherType::Arp }.emit(bytes);
        arp.emit(&mut bytes[ETHERNET_HEADER_LEN..]);
        self.stack.ingress(frame.freeze(), self.now);
        assert!(self.out().is_empty(), "only an ARP reply is expected");
    }

    // ----- the peer's segments ------------------------------------------------

    /// A header from the peer with `flags`, the peer's window and timestamps.
    pub fn seg(&self, seq: u32, ack: u32, flags: TcpFlags) -> TcpRepr {
        let mut options = TcpOptions::default();
        if let Some(val) = self.peer_ts {
            options.timestamps = Some((val, self.last_stack_ts));
        }
        TcpRepr {
            src_port: PEER_PORT,
            dst_port: self.local_port,
            seq,
            ack,
            flags,
            window: self.peer_window,
            urgent: 0,
            options,
            payload_offset: 0,
        }
    }

    /// A SYN with `options`.
    pub fn syn(&self, seq: u32, options: TcpOptions) -> TcpRepr {
        TcpRepr { options, ..self.seg(seq, 0, TcpFlags::SYN) }
    }

    /// A bare ACK.
    pub fn ack(&self, seq: u32, ack: u32) -> TcpRepr {
        self.seg(seq, ack, TcpFlags::ACK)
    }

    /// An ACK with SACK blocks.
    pub fn sack(&self, seq: u32, ack: u32, blocks: &[(u32, u32)]) -> TcpRepr {
        let mut repr = self.ack(seq, ack);
        repr.options.sack_blocks[..blocks.len()].copy_from_slice(blocks);
        repr.options.sack_count = blocks.len() as u8;
        repr
    }

    /// Feeds a segment without payload; returns the frame's pool index.
    pub fn send(&mut self, repr: TcpRepr) -> u32 {
        self.send_with(repr, &[])
    }

    /// Feeds a data segment `bytes` at `seq` (ACK and PSH set).
    pub fn data(&mut self, seq: u32, ack: u32, bytes: &[u8]) -> u32 {
        let repr = self.seg(seq, ack, TcpFlags::ACK | TcpFlags::PSH);
        self.send_with(repr, bytes)
    }

    /// Feeds `repr` with `payload`; returns the frame's pool index.
    pub fn send_with(&mut self, repr: TcpRepr, payload: &[u8]) -> u32 {
        let tcp_len = repr.header_len() + payload.len();
        let ip = Ipv4Repr {
            src: PEER,
            dst: LOCAL,
            protocol: IpProtocol::Tcp,
            payload_len: tcp_len,
            ttl: 64,
            dont_frag: true,
            ident: 0,
            dscp_ecn: 0,
        };
        let mut frame = self.pool.alloc().expect("frame");
        let bytes = frame.append(ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + tcp_len).expect("room");
        EthernetRepr { src: PEER_MAC, dst: LOCAL_MAC, ethertype: EtherType::Ipv4 }.emit(bytes);
        ip.emit(&mut bytes[ETHERNET_HEADER_LEN..]);
        let tcp = &mut bytes[ETHERNET_HEADER_LEN + IPV4_HEADER_LEN..];
        repr.emit(tcp);
        tcp[repr.header_len()..].copy_from_slice(payload);
        fill_tcp_checksum(tcp, PEER, LOCAL);
        let index = frame.frame_index();
        self.stack.ingress(frame.freeze(), self.now);
        index
    }

    // ----- what the stack emits -----------------------------------------------

    /// Runs egress now and returns the TCP segments it produced.
    pub fn out(&mut self) -> Vec<Seg> {
        let mut frames = Vec::new();
        self.stack.egress(self.now, &mut frames);
        frames.iter().filter_map(|f| self.parse(f)).collect()
    }

    /// Exactly one segment out now.
    pub fn out_one(&mut self) -> Seg {
        let mut segs = self.out();
        assert_eq!(segs.len(), 1, "expected one segment, got {segs:#?}");
        segs.remove(0)
    }

    fn parse(&mut self, frame: &PacketBuf) -> Option<Seg> {
        let eth = EthernetFrame::new_checked(&frame[..]).expect("ethernet");
        if eth.ethertype() != EtherType::Ipv4 {
            return None;
        }
        let packet = Ipv4Packet::new_checked(eth.payload()).expect("ipv4");
        let ip = Ipv4Repr::parse(&packet, true).expect("ipv4 header");
        assert_eq!((ip.src, ip.dst, ip.protocol), (LOCAL, PEER, IpProtocol::Tcp));
        let tcp = TcpPacket::new_checked(packet.payload()).expect("tcp");
        let repr = TcpRepr::parse(&tcp, ip.src, ip.dst, true).expect("tcp header and checksum");
        if let Some((val, _)) = repr.options.timestamps {
            self.last_stack_ts = val;
        }
        Some(Seg { at: self.now, repr, payload: tcp.payload().to_vec() })
    }

    /// Moves the clock to `until`, running every timer due on the way and
    /// collecting what the stack sends, each segment stamped with its time.
    pub fn advance_to(&mut self, until: Instant) -> Vec<Seg> {
        let mut segs = self.out();
        let mut last = None;
        while let Some(next) = self.stack.poll_timeout().filter(|&t| t <= until) {
            if last.is_some_and(|l| next <= l) {
                break; // nothing fired at `last`: the wheel has no earlier work
            }
            last = Some(next);
            self.now = self.now.max(next);
            self.stack.on_timers(self.now);
            segs.extend(self.out());
        }
        self.now = until;
        self.stack.on_timers(self.now);
        segs.extend(self.out());
        segs
    }

    /// Moves the clock forward by `by`; see [`Harness::advance_to`].
    pub fn advance(&mut self, by: Duration) -> Vec<Seg> {
        self.advance_to(self.now + by)
    }

    // ----- handshakes -----------------------------------------------------------

    /// A listener on [`LOCAL_PORT`] with room for `backlog` connections.
    pub fn listen(&mut self, backlog: usize) -> SocketHandle {
        self.stack.tcp_listen(LOCAL_PORT, backlog).expect("listen")
    }

    /// Connects to the peer; returns the connection and its SYN.
    pub fn connect(&mut self) -> (SocketHandle, Seg) {
        let handle = self.stack.tcp_connect(SocketAddrV4::new(PEER, PEER_PORT), self.now, &|_| true).expect("connect");
        let syn = self.out_one();
        assert!(syn.has(TcpFlags::SYN) && !syn.has(TcpFlags::ACK), "{syn:?}");
        self.local_port = syn.repr.src_port;
        (handle, syn)
    }

    /// Passive open from a peer SYN with `options`: SYN, SYN-ACK, ACK, accept.
    /// Returns the connection and the SYN-ACK.
    pub fn passive_open(&mut self, options: TcpOptions) -> (Link, Seg) {
        let listener = self.listen(16);
        if options.timestamps.is_some() && self.peer_ts.is_none() {
            self.peer_ts = options.timestamps.map(|(val, _)| val);
        }
        let peer_seq = self.peer_isn.wrapping_add(1);
        self.send(self.syn(self.peer_isn, options));
        let syn_ack = self.out_one();
        assert!(syn_ack.has(TcpFlags::SYN | TcpFlags::ACK), "{syn_ack:?}");
        let our_seq = syn_ack.repr.seq.wrapping_add(1);
        self.send(self.ack(peer_seq, our_seq));
        let handle = self.stack.tcp_accept(listener).expect("accept").expect("a connection to accept");
        (Link { handle, peer_seq, our_seq }, syn_ack)
    }

    /// Active open answered by a SYN-ACK with `options`: connect, SYN, SYN-ACK,
    /// ACK. Returns the connection and our SYN.
    pub fn active_open(&mut self, options: TcpOptions) -> (Link, Seg) {
        let (handle, syn) = self.connect();
        if let Some((val, _)) = options.timestamps {
            self.peer_ts = Some(val);
        }
        let our_seq = syn.repr.seq.wrapping_add(1);
        let peer_seq = self.peer_isn.wrapping_add(1);
        let syn_ack = TcpRepr { options, ..self.seg(self.peer_isn, our_seq, TcpFlags::SYN | TcpFlags::ACK) };
        self.send(syn_ack);
        let ack = self.out_one();
        assert_eq!((ack.repr.seq, ack.repr.ack), (our_seq, peer_seq));
        (Link { handle, peer_seq, our_seq }, syn)
    }

    /// A passive open from a peer that offers only an MSS of 1460.
    pub fn plain_passive_open(&mut self) -> Link {
        self.passive_open(mss_only(1460)).0
    }

    /// Every byte the application can read now, chunks dropped as read.
    pub fn read_all(&mut self, handle: SocketHandle) -> Vec<u8> {
        let mut bytes = Vec::new();
        while let Some(chunk) = self.stack.tcp_recv(handle).expect("recv") {
            bytes.extend_from_slice(&chunk);
        }
        bytes
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// SYN options with only an MSS.
pub fn mss_only(mss: u16) -> TcpOptions {
    TcpOptions { mss: Some(mss), ..TcpOptions::default() }
}

/// SYN options as Linux sends them: MSS 1460, SACK-permitted, timestamps
/// (TSval `ts_val`) and window scale `wscale`.
pub fn full_options(wscale: u8, ts_val: u32) -> TcpOptions {
    TcpOptions {
        mss: Some(1460),
        window_scale: Some(wscale),
        sack_permitted: true,
        timestamps: Some((ts_val, 0)),
        ..TcpOptions::default()
    }
}

/// `len` bytes of a recognisable pattern starting at `offset` of a stream.
pub fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

/// Payload bytes of segments, in order, that carry data.
pub fn data_segments(segs: &[Seg]) -> Vec<&Seg> {
    segs.iter().filter(|s| !s.payload.is_empty()).collect()
}
