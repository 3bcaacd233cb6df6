//! The stack of one core: frames in (`ingress`), frames out (`egress`), timers,
//! readiness events, and the socket API the runtime calls.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::RangeInclusive;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ix_driver::{PacketBuf, PacketPool, TxBuf};
use slab::Slab;

use crate::egress::{Egress, HeaderTemplate};
use crate::iface::{ArpCache, ArpConfig, Route, RouteTable, SharedNeighbors};
use crate::socket::{Readiness, ReleaseQueue, RxChunk, SocketHandle};
use crate::stats::StackStats;
use crate::tcp::conn::{Conn, State};
use crate::tcp::sendbuf::SendChunk;
use crate::tcp::syncookie::SynCookies;
use crate::tcp::{FlowDirectory, FlowTable, FourTuple, TcpConfig, TcpError};
use crate::time::Instant;
use crate::timer::{TimerKey, TimerWheel};
use crate::udp::UdpSocket;
use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, ETHERNET_HEADER_LEN, EtherType, EthernetAddress, EthernetFrame, IpProtocol,
    Ipv4Packet,
};

/// An [`Egress`] over the stack's output fields, written out field by field so
/// that it can be built while a socket of the same stack is borrowed.
macro_rules! egress_of {
    ($stack:ident, $now:expr) => {
        Egress {
            pool: &$stack.pool,
            arp: &mut $stack.arp,
            routes: &$stack.routes,
            mac: $stack.config.mac,
            addr: $stack.config.addr,
            tx: &mut $stack.tx,
            link_stats: &mut $stack.stats.link,
            ip_stats: &mut $stack.stats.ip,
            ip_ident: &mut $stack.ip_ident,
            now: $now,
            arp_requested: false,
            neighbors: $stack.config.neighbors.as_deref(),
            header_template: None,
        }
    };
}

/// How a stack is set up.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Our MAC address (the queue's).
    pub mac: EthernetAddress,
    /// Our IPv4 address.
    pub addr: Ipv4Addr,
    /// Prefix length of the attached subnet.
    pub prefix_len: u8,
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Largest IP datagram, headers included.
    pub mtu: u16,
    /// TCP settings.
    pub tcp: TcpConfig,
    /// ARP settings.
    pub arp: ArpConfig,
    /// Connections this stack holds at most (protection: a flood cannot exhaust
    /// memory); SYNs beyond it are dropped and counted.
    pub max_connections: usize,
    /// Datagrams queued per UDP socket before new ones are dropped.
    pub udp_queue_datagrams: usize,
    /// Local ports for outgoing connections.
    pub ephemeral_ports: RangeInclusive<u16>,
    /// Secret for ISNs, SYN cookies, IP ids and the first ephemeral port: 16
    /// random bytes drawn by the caller (the stack has no clock and no source
    /// of randomness). Fixed only in deterministic simulations.
    pub secret: [u8; 16],
    /// Neighbours shared with the other cores of the same dataplane (see
    /// [`SharedNeighbors`]); `None` for a stack alone on its device.
    pub neighbors: Option<Arc<SharedNeighbors>>,
    /// The connections of every core of the same dataplane, with this core's
    /// index, when the NIC's steering is unknown or unstable: segments of
    /// another core's connection are set aside for
    /// [`Stack::take_handover`] instead of being answered with a RST.
    pub directory: Option<(Arc<FlowDirectory>, usize)>,
    /// Learn an on-link neighbour's MAC from the IPv4 frames it sends to this
    /// address, not only from ARP: for a dataplane that shares its address
    /// with the kernel and never sees ARP replies (the `ixcp` backend).
    pub learn_neighbors_from_ipv4: bool,
}

impl StackConfig {
    /// A configuration with production defaults for `addr/prefix_len` at `mac`,
    /// keyed by `secret` (see [`StackConfig::secret`]).
    pub fn new(mac: EthernetAddress, addr: Ipv4Addr, prefix_len: u8, secret: [u8; 16]) -> Self {
        Self {
            mac,
            addr,
            prefix_len,
            gateway: None,
            mtu: 1500,
            tcp: TcpConfig::default(),
            arp: ArpConfig::default(),
            max_connections: 1 << 20,
            udp_queue_datagrams: 1024,
            ephemeral_ports: 32768..=60999,
            secret,
            neighbors: None,
            directory: None,
            learn_neighbors_from_ipv4: false,
        }
    }
}

/// Errors of the socket API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SocketError {
    /// The handle names no live socket of this stack.
    #[error("no such socket (closed, or from another stack)")]
    InvalidHandle,
    /// The handle names a socket of another kind.
    #[error("socket is not a {0}")]
    WrongKind(&'static str),
    /// The port is taken.
    #[error("port {0} is in use")]
    AddrInUse(u16),
    /// No local port could be found for an outgoing connection.
    #[error("no free local port for this destination")]
    NoPortsAvailable,
    /// The connection limit is reached.
    #[error("connection limit of this stack reached")]
    TooManyConnections,
    /// The datagram or segment does not fit a frame.
    #[error("message of {0} bytes is too long")]
    MessageTooLong(usize),
    /// The packet pool has no free frame now.
    #[error("no free packet buffer")]
    NoBuffers,
    /// No route to the destination.
    #[error("no route to host")]
    NoRoute,
    /// A TCP error.
    #[error(transparent)]
    Tcp(#[from] TcpError),
}

/// A snapshot of one TCP connection, for diagnostics.
#[derive(Debug, Clone, Copy)]
pub struct TcpInfo {
    /// Addresses.
    pub tuple: FourTuple,
    /// State.
    pub state: State,
    /// Congestion window in bytes.
    pub cwnd: usize,
    /// Smoothed RTT, once measured.
    pub srtt: Option<Duration>,
    /// Bytes queued to send, unacknowledged.
    pub send_queued: usize,
    /// Bytes received and not yet read.
    pub recv_queued: usize,
    /// Negotiated (SACK, timestamps, window scaling).
    pub options: (bool, bool, bool),
}

#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) port: u16,
    pub(crate) backlog: usize,
    pub(crate) accept_queue: VecDeque<SocketHandle>,
    /// Connections in SYN-RECEIVED.
    pub(crate) half_open: usize,
}

#[derive(Debug)]
pub(crate) enum SocketKind {
    Tcp(Box<Conn>),
    Listener(Listener),
    Udp(UdpSocket),
}

#[derive(Debug)]
pub(crate) struct SocketEntry {
    pub(crate) generation: u32,
    pub(crate) kind: SocketKind,
    /// Listener a passive connection belongs to until accepted.
    pub(crate) parent: Option<SocketHandle>,
    /// The application closed its handle: reclaim once the protocol is done.
    pub(crate) released: bool,
    /// The output round this entry was last queued for in `Stack::dirty`:
    /// queued while it names the current one ([`OutputQueue::contains`]).
    pub(crate) output_mark: u64,
    /// Readiness changes not yet reported.
    pub(crate) pending_events: Readiness,
    pub(crate) timer: Option<(TimerKey, Instant)>,
    /// A TCP connection's prebuilt Ethernet and IPv4 headers, made by its
    /// first segment sent through a resolved neighbour.
    pub(crate) header_template: Option<HeaderTemplate>,
}

impl SocketEntry {
    /// Queues this entry's `handle` in `dirty` for the next egress, once.
    fn mark_dirty(&mut self, handle: SocketHandle, dirty: &mut OutputQueue) {
        if !dirty.contains(self.output_mark) {
            self.output_mark = dirty.round;
            dirty.handles.push(handle);
        }
    }

    /// The part of [`Stack::after_conn`] that needs only this entry, for a
    /// caller that holds it already (the paths of every segment: no second
    /// look-up). Returns what is left for [`Stack::settle_rest`] when the
    /// connection awaits `accept` or is closed.
    #[inline(always)]
    pub(crate) fn settle(
        &mut self,
        handle: SocketHandle,
        timers: &mut TimerWheel<TimerTarget>,
        dirty: &mut OutputQueue,
        events: &mut VecDeque<SocketHandle>,
    ) -> Option<Unsettled> {
        let SocketKind::Tcp(conn) = &mut self.kind else { return None };
        let bits = conn.take_events();
        let new_deadline = conn.take_new_deadline();
        let state = conn.state();
        // A socket already queued for this round's output pass (the one being
        // visited by it, or touched since it was queued) needs no second
        // look, except to decide whether a closed one may be reclaimed.
        let wants_output = (dirty.contains(self.output_mark) && state != State::Closed) || conn.wants_output();
        let current = self.timer.map(|(_, at)| at);

        // The timer stays armed no later than every deadline of the
        // connection: only a deadline set earlier than it moves it. One that
        // was cleared or pushed back (the RTO, by every ACK) leaves it to fire
        // early, when `on_timeout` finds nothing due and the remaining
        // deadlines re-arm it; so an ACK costs no cancel and insert (4% of a
        // request/response) and no walk over the seven deadlines.
        if let Some(due) = new_deadline.filter(|due| current.is_none_or(|armed| *due < armed)) {
            if let Some((key, _)) = self.timer.take() {
                timers.cancel(key);
            }
            self.timer = Some((timers.insert(due, TimerTarget::Socket(handle)), due));
        }
        if wants_output {
            self.mark_dirty(handle, dirty);
        }
        if self.parent.is_none() {
            self.add_events(handle, bits, events);
            if state != State::Closed {
                return None;
            }
        }
        Some(Unsettled { bits, state, parent: self.parent, released: self.released, wants_output })
    }

    /// Adds readiness changes, and queues this entry's `handle` in `events`
    /// when none were pending and the application still holds it.
    fn add_events(&mut self, handle: SocketHandle, readiness: Readiness, events: &mut VecDeque<SocketHandle>) {
        if readiness.is_empty() {
            return;
        }
        let was = self.pending_events;
        self.pending_events |= readiness;
        if was.is_empty() && !self.released {
            events.push_back(handle);
        }
    }
}

/// What [`SocketEntry::settle`] found and left to [`Stack::settle_rest`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unsettled {
    bits: Readiness,
    state: State,
    parent: Option<SocketHandle>,
    released: bool,
    wants_output: bool,
}

/// The sockets queued for the next output pass, each once, and the round that
/// pass is: an entry is queued while its `output_mark` names the round, so the
/// pass ends by moving to the next round, with no second walk to clear marks.
#[derive(Debug)]
pub(crate) struct OutputQueue {
    handles: Vec<SocketHandle>,
    /// Starts at 1, above the mark of an entry never queued; 64 bits do not
    /// wrap in the life of a process.
    round: u64,
}

impl OutputQueue {
    fn new() -> Self {
        Self { handles: Vec::with_capacity(256), round: 1 }
    }

    /// Whether an entry with `mark` is queued.
    fn contains(&self, mark: u64) -> bool {
        mark == self.round
    }

    /// Forgets the queued sockets (all visited) and starts the next round.
    fn finish_round(&mut self) {
        self.handles.clear();
        self.round += 1;
    }
}

/// What a timer of the wheel is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TimerTarget {
    Socket(SocketHandle),
    Arp,
}

/// The TCP/IP stack of one core.
#[derive(Debug)]
pub struct Stack {
    pub(crate) config: StackConfig,
    pub(crate) pool: PacketPool,
    pub(crate) arp: ArpCache,
    pub(crate) routes: RouteTable,
    pub(crate) sockets: Slab<SocketEntry>,
    pub(crate) next_generation: u32,
    pub(crate) flows: FlowTable,
    pub(crate) listeners: std::collections::HashMap<u16, SocketHandle>,
    pub(crate) udp_ports: std::collections::HashMap<u16, SocketHandle>,
    pub(crate) cookies: SynCookies,
    pub(crate) secret: [u8; 16],
    pub(crate) timers: TimerWheel<TimerTarget>,
    pub(crate) arp_timer: Option<(TimerKey, Instant)>,
    pub(crate) tx: Vec<PacketBuf>,
    pub(crate) dirty: OutputQueue,
    pub(crate) events: VecDeque<SocketHandle>,
    pub(crate) released_credit: Rc<ReleaseQueue>,
    /// Kept buffers for the per-round loops over fired timers and released
    /// credit, so they allocate nothing in the steady state.
    fired_scratch: Vec<TimerTarget>,
    /// Frames of other cores' connections, with the owning core.
    pub(crate) handover: Vec<(usize, PacketBuf)>,
    release_scratch: Vec<SocketHandle>,
    pub(crate) stats: StackStats,
    pub(crate) ip_ident: u16,
    pub(crate) next_ephemeral: u16,
    pub(crate) tcp_connections: usize,
    pub(crate) now: Instant,
    /// When small unread chunks may next be packed (see `tcp/packing.rs`).
    pub(crate) next_packing: Instant,
}

impl Stack {
    /// A stack with no sockets, drawing frames from `pool`.
    ///
    /// # Errors
    /// [`SocketError::MessageTooLong`] when the MTU is below 576 or larger than
    /// a pool frame can hold.
    pub fn new(config: StackConfig, pool: PacketPool, now: Instant) -> Result<Self, SocketError> {
        let mtu = usize::from(config.mtu);
        if !(576..=ix_driver::pool::FRAME_DATA_BYTES as usize - ETHERNET_HEADER_LEN).contains(&mtu) {
            return Err(SocketError::MessageTooLong(mtu));
        }
        let mut config = config;
        config.tcp.mss = config.tcp.mss.min(config.mtu - 40);
        let mut routes = RouteTable::new();
        routes.add(Route { network: config.addr, prefix_len: config.prefix_len, gateway: None });
        if let Some(gw) = config.gateway {
            routes.add(Route { network: Ipv4Addr::UNSPECIFIED, prefix_len: 0, gateway: Some(gw) });
        }
        let secret = config.secret;
        let span = u32::from(*config.ephemeral_ports.end() - *config.ephemeral_ports.start()) + 1;
        let start = *config.ephemeral_ports.start() + (u64_from(&secret, 8) % u64::from(span)) as u16;
        Ok(Self {
            arp: ArpCache::new(config.arp),
            routes,
            sockets: Slab::with_capacity(1024),
            next_generation: 1,
            flows: FlowTable::with_capacity(1024),
            handover: Vec::new(),
            listeners: Default::default(),
            udp_ports: Default::default(),
            cookies: SynCookies::new(secret),
            secret,
            timers: TimerWheel::with_capacity(now, 1024),
            arp_timer: None,
            tx: Vec::with_capacity(256),
            dirty: OutputQueue::new(),
            events: VecDeque::with_capacity(256),
            released_credit: Rc::new(ReleaseQueue::default()),
            fired_scratch: Vec::with_capacity(64),
            release_scratch: Vec::with_capacity(64),
            stats: StackStats::default(),
            ip_ident: u64_from(&secret, 0) as u16,
            next_ephemeral: start,
            tcp_connections: 0,
            now,
            next_packing: now,
            config,
            pool,
        })
    }

    /// The stack's counters.
    pub fn stats(&self) -> &StackStats {
        &self.stats
    }

    /// The stack's configuration.
    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    /// The pool frames come from.
    pub fn pool(&self) -> &PacketPool {
        &self.pool
    }

    /// TCP connections alive (any state but closed-and-reclaimed).
    pub fn tcp_connection_count(&self) -> usize {
        self.tcp_connections
    }

    /// Records `tuple` as this core's in the shared directory, if there is
    /// one; false when another core holds it.
    pub(crate) fn claim_flow(&self, tuple: FourTuple) -> bool {
        match &self.config.directory {
            Some((directory, core)) => directory.claim(tuple, *core),
            None => true,
        }
    }

    /// Moves the frames set aside for other cores (see
    /// [`StackConfig::directory`]) into `out`, as (owning core, frame). The
    /// owner re-ingresses them on its own stack.
    pub fn take_handover(&mut self, out: &mut Vec<(usize, PacketBuf)>) {
        out.append(&mut self.handover);
    }

    // ----- the dataplane loop ---------------------------------------------

    /// Processes one received frame to completion.
    pub fn ingress(&mut self, frame: PacketBuf, now: Instant) {
        self.now = now;
        self.stats.link.frames_in += 1;
        let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else {
            self.stats.link.malformed += 1;
            return;
        };
        let dst = eth.dst_addr();
        if dst != self.config.mac && !dst.is_broadcast() {
            self.stats.link.not_for_us += 1;
            return;
        }
        match eth.ethertype() {
            EtherType::Arp => self.ingress_arp(&frame[ETHERNET_HEADER_LEN..], now),
            EtherType::Ipv4 => self.ingress_ipv4(frame, now),
            _ => self.stats.link.unknown_ethertype += 1,
        }
    }

    fn ingress_arp(&mut self, bytes: &[u8], now: Instant) {
        let repr = match ArpPacket::new_checked(bytes).and_then(|p| ArpRepr::parse(&p)) {
            Ok(repr) => repr,
            Err(_) => {
                self.stats.link.arp_malformed += 1;
                return;
            }
        };
        let for_us = repr.target_ip == self.config.addr;
        match repr.operation {
            ArpOperation::Request => self.stats.link.arp_requests_in += 1,
            ArpOperation::Reply => self.stats.link.arp_replies_in += 1,
            _ => {
                self.stats.link.arp_malformed += 1;
                return;
            }
        }
        // RFC 826: merge the sender; add it only when it was asking for us.
        let waiting = self.arp.learn(repr.source_ip, repr.source_hw, now, for_us);
        self.send_resolved(repr.source_hw, waiting);
        if let Some(shared) = &self.config.neighbors {
            if for_us || self.arp.lookup(repr.source_ip, now).is_some() {
                shared.publish(repr.source_ip, repr.source_hw);
            }
        }
        if for_us && repr.operation == ArpOperation::Request {
            let reply = ArpRepr {
                operation: ArpOperation::Reply,
                source_hw: self.config.mac,
                source_ip: self.config.addr,
                target_hw: repr.source_hw,
                target_ip: repr.source_ip,
            };
            if self.out().arp(&reply, repr.source_hw) {
                self.stats.link.arp_replies_out += 1;
            }
        }
    }

    fn ingress_ipv4(&mut self, frame: PacketBuf, now: Instant) {
        self.stats.ip.in_receives += 1;
        let ip_bytes = &frame[ETHERNET_HEADER_LEN..];
        let packet = match Ipv4Packet::new_checked(ip_bytes) {
            Ok(p) => p,
            Err(_) => {
                self.stats.ip.in_hdr_errors += 1;
                return;
            }
        };
        if packet.version() != 4 {
            self.stats.ip.in_hdr_errors += 1;
            return;
        }
        if !packet.verify_checksum() {
            self.stats.ip.in_csum_errors += 1;
            return;
        }
        let dst = packet.dst_addr();
        let src = packet.src_addr();
        if dst != self.config.addr && !dst.is_broadcast() && !self.routes.is_subnet_broadcast(dst) {
            self.stats.ip.in_addr_errors += 1;
            return;
        }
        if packet.is_fragment() {
            self.stats.ip.in_fragments_dropped += 1;
            return;
        }
        let l4_start = ETHERNET_HEADER_LEN + packet.header_len();
        let l4_end = ETHERNET_HEADER_LEN + usize::from(packet.total_len());
        let protocol = packet.protocol();
        let unicast = dst == self.config.addr;
        if unicast && self.config.learn_neighbors_from_ipv4 {
            self.learn_from_ipv4(&frame, src, now);
        }
        self.stats.ip.in_delivers += 1;
        match protocol {
            IpProtocol::Tcp if unicast => self.ingress_tcp(frame, src, dst, l4_start, l4_end, now),
            IpProtocol::Udp => self.ingress_udp(frame, src, dst, l4_start, l4_end, unicast),
            IpProtocol::Icmp => self.ingress_icmp(frame, src, l4_start, l4_end, unicast),
            IpProtocol::Tcp => self.stats.ip.in_tcp_not_unicast += 1,
            _ => self.stats.ip.in_unknown_protos += 1,
        }
    }

    /// Takes the Ethernet source of a frame from `src` as `src`'s MAC when
    /// `src` is on link (off link, the source is a router, learned by ARP).
    fn learn_from_ipv4(&mut self, frame: &PacketBuf, src: Ipv4Addr, now: Instant) {
        if self.routes.next_hop(src) != Some(src) {
            return;
        }
        let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else { return };
        let source_hw = eth.src_addr();
        let known = self.arp.lookup(src, now) == Some(source_hw);
        let waiting = self.arp.learn(src, source_hw, now, true);
        self.send_resolved(source_hw, waiting);
        if !known {
            if let Some(shared) = &self.config.neighbors {
                shared.publish(src, source_hw);
            }
        }
    }

    /// Moves every frame ready to go into `out`: segments the connections may
    /// send now, replies, retransmissions. Call once per round.
    pub fn egress(&mut self, now: Instant, out: &mut Vec<PacketBuf>) {
        self.now = now;
        self.process_released_credit();
        self.pack_under_pressure(now);
        let mut i = 0;
        while i < self.dirty.handles.len() {
            let handle = self.dirty.handles[i];
            i += 1;
            self.output_socket(handle, now);
        }
        // Every socket marked during this round was visited by it.
        self.dirty.finish_round();
        out.append(&mut self.tx);
    }

    /// Runs the timers due at `now`.
    pub fn on_timers(&mut self, now: Instant) {
        self.now = now;
        if self.arp.has_pending() {
            if let Some(shared) = self.config.neighbors.clone() {
                for (mac, frames) in self.arp.adopt(now, &shared) {
                    self.send_resolved(mac, frames);
                }
            }
        }
        let mut fired = std::mem::take(&mut self.fired_scratch);
        self.timers.advance(now, &mut |_, target| fired.push(target));
        for target in fired.drain(..) {
            match target {
                TimerTarget::Arp => {
                    self.arp_timer = None;
                    self.poll_arp(now);
                }
                TimerTarget::Socket(handle) => self.on_socket_timer(handle, now),
            }
        }
        self.fired_scratch = fired;
    }

    /// The next instant [`Stack::on_timers`] has work, for an idle core to sleep
    /// until.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// The next socket with readiness changes, and the changes (never empty).
    pub fn poll_event(&mut self) -> Option<(SocketHandle, Readiness)> {
        while let Some(handle) = self.events.pop_front() {
            if let Some(entry) = self.entry_mut(handle) {
                let readiness = std::mem::take(&mut entry.pending_events);
                if !readiness.is_empty() {
                    return Some((handle, readiness));
                }
            }
        }
        None
    }

    /// Whether frames or socket work are waiting for the next `egress`.
    pub fn has_pending_output(&self) -> bool {
        !self.tx.is_empty() || !self.dirty.handles.is_empty() || !self.released_credit.borrow().is_empty()
    }

    pub(crate) fn egress_ctx(&mut self) -> Egress<'_> {
        egress_of!(self, self.now)
    }

    /// An egress context, scheduling the ARP timer when it asked for a neighbour.
    pub(crate) fn out(&mut self) -> EgressGuard<'_> {
        EgressGuard { stack: self }
    }

    /// Broadcasts a gratuitous ARP (a request for our own address), so that
    /// neighbours refresh their entry for us; call when the interface comes up
    /// or its MAC changes.
    pub fn announce(&mut self) {
        let repr = ArpRepr {
            operation: ArpOperation::Request,
            source_hw: self.config.mac,
            source_ip: self.config.addr,
            target_hw: EthernetAddress([0; 6]),
            target_ip: self.config.addr,
        };
        if self.out().arp(&repr, EthernetAddress::BROADCAST) {
            self.stats.link.arp_requests_out += 1;
        }
    }

    /// Sends frames that waited for `mac`, filling in their destination.
    fn send_resolved(&mut self, mac: EthernetAddress, frames: VecDeque<TxBuf>) {
        for mut frame in frames {
            frame[..6].copy_from_slice(mac.as_bytes());
            self.tx.push(frame.freeze());
            self.stats.link.frames_out += 1;
        }
    }

    fn poll_arp(&mut self, now: Instant) {
        let mut requests = Vec::new();
        let dropped = self.arp.poll(now, |ip| requests.push(ip));
        self.stats.link.arp_pending_dropped += dropped as u64;
        for ip in requests {
            self.out().arp_request(ip);
        }
        self.schedule_arp_timer();
    }

    pub(crate) fn schedule_arp_timer(&mut self) {
        let want = self.arp.next_deadline();
        if want == self.arp_timer.map(|(_, at)| at) {
            return;
        }
        if let Some((key, _)) = self.arp_timer.take() {
            self.timers.cancel(key);
        }
        if let Some(at) = want {
            let key = self.timers.insert(at, TimerTarget::Arp);
            self.arp_timer = Some((key, at));
        }
    }

    // ----- socket table ----------------------------------------------------

    pub(crate) fn insert_socket(&mut self, kind: SocketKind, parent: Option<SocketHandle>) -> SocketHandle {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let index = self.sockets.insert(SocketEntry {
            generation,
            kind,
            parent,
            released: false,
            output_mark: 0,
            pending_events: Readiness::EMPTY,
            timer: None,
            header_template: None,
        });
        let handle = SocketHandle { index: index as u32, generation };
        if let Some(SocketEntry { kind: SocketKind::Tcp(conn), .. }) = self.sockets.get_mut(index) {
            conn.credit().bind(handle, self.released_credit.clone());
            conn.attach_pool(self.pool.clone());
        }
        handle
    }

    pub(crate) fn entry(&self, handle: SocketHandle) -> Option<&SocketEntry> {
        self.sockets.get(handle.index as usize).filter(|e| e.generation == handle.generation)
    }

    pub(crate) fn entry_mut(&mut self, handle: SocketHandle) -> Option<&mut SocketEntry> {
        self.sockets.get_mut(handle.index as usize).filter(|e| e.generation == handle.generation)
    }

    pub(crate) fn conn_mut(&mut self, handle: SocketHandle) -> Result<&mut Conn, SocketError> {
        match self.entry_mut(handle) {
            Some(SocketEntry { kind: SocketKind::Tcp(conn), .. }) => Ok(conn),
            Some(_) => Err(SocketError::WrongKind("TCP stream")),
            None => Err(SocketError::InvalidHandle),
        }
    }

    pub(crate) fn conn(&self, handle: SocketHandle) -> Result<&Conn, SocketError> {
        match self.entry(handle) {
            Some(SocketEntry { kind: SocketKind::Tcp(conn), .. }) => Ok(conn),
            Some(_) => Err(SocketError::WrongKind("TCP stream")),
            None => Err(SocketError::InvalidHandle),
        }
    }

    /// Adds readiness changes for `handle` and queues an event.
    pub(crate) fn notify(&mut self, handle: SocketHandle, readiness: Readiness) {
        if let Some(entry) = live_entry(&mut self.sockets, handle) {
            entry.add_events(handle, readiness, &mut self.events);
        }
    }

    pub(crate) fn mark_dirty(&mut self, handle: SocketHandle) {
        if let Some(entry) = live_entry(&mut self.sockets, handle) {
            entry.mark_dirty(handle, &mut self.dirty);
        }
    }

    fn process_released_credit(&mut self) {
        if self.released_credit.borrow().is_empty() {
            return;
        }
        // Swap the queue with a kept buffer: both keep their capacity, so a
        // steady stream of dropped chunks allocates nothing.
        let mut handles = std::mem::take(&mut self.release_scratch);
        std::mem::swap(&mut handles, &mut *self.released_credit.borrow_mut());
        for handle in handles.drain(..) {
            let Some(entry) = live_entry(&mut self.sockets, handle) else { continue };
            let SocketKind::Tcp(conn) = &mut entry.kind else { continue };
            // A reopened window changes only what the connection may send
            // (a window update): no event, deadline or state to refresh, so
            // the full `after_conn` is left to this round's output pass. A
            // socket already queued for it (the application sent too) needs
            // no second look.
            conn.on_credit_released();
            if !self.dirty.contains(entry.output_mark) && conn.wants_output() {
                entry.mark_dirty(handle, &mut self.dirty);
            }
        }
        self.release_scratch = handles;
    }

    /// Brings a socket's events, timer and output mark up to date after its
    /// connection was touched, and reclaims it when it is done.
    pub(crate) fn after_conn(&mut self, handle: SocketHandle) {
        let Some(entry) = live_entry(&mut self.sockets, handle) else { return };
        if let Some(rest) = entry.settle(handle, &mut self.timers, &mut self.dirty, &mut self.events) {
            self.settle_rest(handle, rest);
        }
    }

    /// What [`SocketEntry::settle`] leaves to the stack: a connection's
    /// report to its listener, and the end of a closed one.
    pub(crate) fn settle_rest(&mut self, handle: SocketHandle, rest: Unsettled) {
        if let Some(listener) = rest.parent {
            self.update_passive(handle, listener, rest.bits, rest.state);
        }
        if rest.state == State::Closed {
            // Segments for a closed connection get a RST from now on, even while
            // the application still holds the handle to read the error.
            self.unlink_flow(handle);
            if (rest.released || rest.parent.is_some()) && !rest.wants_output {
                self.reclaim(handle);
            }
        }
    }

    /// A passive connection before `accept`: report it to its listener when it
    /// is established, forget it if it dies first.
    fn update_passive(&mut self, handle: SocketHandle, listener: SocketHandle, bits: Readiness, state: State) {
        if bits.contains(Readiness::ESTABLISHED) {
            let mut accepted = false;
            if let Some(SocketEntry { kind: SocketKind::Listener(l), .. }) = self.entry_mut(listener) {
                l.half_open = l.half_open.saturating_sub(1);
                if l.accept_queue.len() < l.backlog {
                    l.accept_queue.push_back(handle);
                    accepted = true;
                }
            }
            if accepted {
                self.notify(listener, Readiness::READABLE);
            } else {
                self.stats.tcp.listen_overflows += 1;
                if let Ok(conn) = self.conn_mut(handle) {
                    conn.abort();
                }
                self.mark_dirty(handle);
            }
            // Readiness the connection gained before accept is reported after.
            if let Some(entry) = self.entry_mut(handle) {
                entry.pending_events |= bits.without(Readiness::ESTABLISHED);
            }
        } else if state == State::Closed {
            if let Some(SocketEntry { kind: SocketKind::Listener(l), .. }) = self.entry_mut(listener) {
                if let Some(pos) = l.accept_queue.iter().position(|h| *h == handle) {
                    l.accept_queue.remove(pos);
                } else {
                    l.half_open = l.half_open.saturating_sub(1);
                }
            }
        } else if let Some(entry) = self.entry_mut(handle) {
            entry.pending_events |= bits;
        }
    }

    pub(crate) fn reclaim(&mut self, handle: SocketHandle) {
        let Some(entry) = self.entry(handle) else { return };
        if let Some((key, _)) = entry.timer {
            self.timers.cancel(key);
        }
        let entry = self.sockets.remove(handle.index as usize);
        match entry.kind {
            SocketKind::Tcp(conn) => {
                if self.flows.get(conn.tuple()) == Some(handle) {
                    self.flows.remove(conn.tuple());
                }
                if let Some((directory, core)) = &self.config.directory {
                    directory.release(conn.tuple(), *core);
                }
                self.tcp_connections -= 1;
            }
            SocketKind::Listener(l) => {
                self.listeners.remove(&l.port);
            }
            SocketKind::Udp(u) => {
                self.udp_ports.remove(&u.port());
            }
        }
    }

    fn unlink_flow(&mut self, handle: SocketHandle) {
        if let Ok(conn) = self.conn(handle) {
            let tuple = *conn.tuple();
            if self.flows.get(&tuple) == Some(handle) {
                self.flows.remove(&tuple);
            }
        }
    }

    fn on_socket_timer(&mut self, handle: SocketHandle, now: Instant) {
        let Some(entry) = live_entry(&mut self.sockets, handle) else { return };
        entry.timer = None;
        if let SocketKind::Tcp(conn) = &mut entry.kind {
            conn.on_timeout(now, &mut self.stats.tcp);
            conn.renew_deadlines();
            self.after_conn(handle);
        }
    }

    fn output_socket(&mut self, handle: SocketHandle, now: Instant) {
        let Some(entry) = self.sockets.get_mut(handle.index as usize) else { return };
        if entry.generation != handle.generation {
            return;
        }
        let SocketEntry { kind: SocketKind::Tcp(conn), header_template, .. } = entry else { return };
        let mut egress = egress_of!(self, now);
        egress.header_template = Some(header_template);
        conn.poll_transmit(now, &mut egress, &mut self.stats.tcp);
        if egress.arp_requested {
            self.schedule_arp_timer();
            self.after_conn(handle);
            return;
        }
        // The dirty mark stays set until the round ends, so a connection that
        // still has output it cannot send now (windows closed) is not queued
        // again in this round.
        if let Some(rest) = entry.settle(handle, &mut self.timers, &mut self.dirty, &mut self.events) {
            self.settle_rest(handle, rest);
        }
    }

    // ----- TCP API ---------------------------------------------------------

    /// Listens on `port` with an accept queue of `backlog` connections; beyond
    /// `backlog` half-open connections, SYN cookies answer.
    ///
    /// # Errors
    /// [`SocketError::AddrInUse`] when the port already has a listener.
    pub fn tcp_listen(&mut self, port: u16, backlog: usize) -> Result<SocketHandle, SocketError> {
        if self.listeners.contains_key(&port) || port == 0 {
            return Err(SocketError::AddrInUse(port));
        }
        let backlog = backlog.max(1);
        let handle = self.insert_socket(
            SocketKind::Listener(Listener {
                port,
                backlog,
                accept_queue: VecDeque::with_capacity(backlog.min(4096)),
                half_open: 0,
            }),
            None,
        );
        self.listeners.insert(port, handle);
        Ok(handle)
    }

    /// Closes every listener, as [`Stack::close`] does one (a graceful
    /// shutdown): connections waiting in their accept queues are reset, and a
    /// SYN to their ports is answered with a reset from now on. Handles to the
    /// listeners go stale; closing them again does nothing.
    pub fn close_listeners(&mut self) {
        let listeners: Vec<SocketHandle> = self.listeners.values().copied().collect();
        for handle in listeners {
            self.close(handle);
        }
    }

    /// Takes an established connection from a listener's queue.
    ///
    /// # Errors
    /// [`SocketError::InvalidHandle`] or [`SocketError::WrongKind`].
    pub fn tcp_accept(&mut self, listener: SocketHandle) -> Result<Option<SocketHandle>, SocketError> {
        let Some(entry) = self.entry_mut(listener) else { return Err(SocketError::InvalidHandle) };
        let SocketKind::Listener(l) = &mut entry.kind else { return Err(SocketError::WrongKind("listener")) };
        let Some(handle) = l.accept_queue.pop_front() else { return Ok(None) };
        if let Some(entry) = self.entry_mut(handle) {
            entry.parent = None;
            if !entry.pending_events.is_empty() {
                self.events.push_back(handle);
            }
        }
        Ok(Some(handle))
    }

    /// Opens a connection to `remote` from a free ephemeral port that satisfies
    /// `port_ok` (the runtime passes IX's RSS probe: the return flow must hash
    /// to this core's queue).
    ///
    /// # Errors
    /// [`SocketError::NoPortsAvailable`], [`SocketError::TooManyConnections`].
    pub fn tcp_connect(
        &mut self,
        remote: SocketAddrV4,
        now: Instant,
        port_ok: &dyn Fn(u16) -> bool,
    ) -> Result<SocketHandle, SocketError> {
        self.now = now;
        if self.tcp_connections >= self.config.max_connections {
            return Err(SocketError::TooManyConnections);
        }
        let local_port = self.pick_ephemeral_port(remote, port_ok)?;
        let tuple = FourTuple { local: SocketAddrV4::new(self.config.addr, local_port), remote };
        let iss = self.initial_sequence(&tuple, now);
        let ts_offset = self.ts_offset(&tuple);
        let conn = Conn::connect(&self.config.tcp, tuple, iss, now, ts_offset);
        let handle = self.insert_socket(SocketKind::Tcp(Box::new(conn)), None);
        self.flows.insert(tuple, handle);
        self.tcp_connections += 1;
        self.stats.tcp.active_opens += 1;
        self.after_conn(handle);
        Ok(handle)
    }

    fn pick_ephemeral_port(&mut self, remote: SocketAddrV4, port_ok: &dyn Fn(u16) -> bool) -> Result<u16, SocketError> {
        let range = self.config.ephemeral_ports.clone();
        let span = u32::from(*range.end() - *range.start()) + 1;
        for _ in 0..span {
            let port = self.next_ephemeral;
            self.next_ephemeral = if port >= *range.end() { *range.start() } else { port + 1 };
            if self.listeners.contains_key(&port) || !port_ok(port) {
                continue;
            }
            let tuple = FourTuple { local: SocketAddrV4::new(self.config.addr, port), remote };
            if self.flows.get(&tuple).is_some() {
                continue;
            }
            if self.claim_flow(tuple) {
                return Ok(port);
            }
        }
        Err(SocketError::NoPortsAvailable)
    }

    /// Queues `data` to send without copying; returns how much was accepted
    /// (possibly 0 when the send queue is full: wait for a WRITABLE event).
    ///
    /// # Errors
    /// [`SocketError::Tcp`] when the connection cannot send.
    pub fn tcp_send(&mut self, handle: SocketHandle, data: Bytes) -> Result<usize, SocketError> {
        self.tcp_send_chunk(handle, SendChunk::Bytes(data))
    }

    /// Queues a frame the application filled (see [`Stack::alloc_tx`]).
    ///
    /// # Errors
    /// As [`Stack::tcp_send`].
    pub fn tcp_send_frame(&mut self, handle: SocketHandle, frame: PacketBuf) -> Result<usize, SocketError> {
        self.tcp_send_chunk(handle, SendChunk::Frame(frame))
    }

    fn tcp_send_chunk(&mut self, handle: SocketHandle, chunk: SendChunk) -> Result<usize, SocketError> {
        // One look-up for the connection and its output mark.
        let Some(entry) = live_entry(&mut self.sockets, handle) else { return Err(SocketError::InvalidHandle) };
        let SocketKind::Tcp(conn) = &mut entry.kind else { return Err(SocketError::WrongKind("TCP stream")) };
        let n = conn.send(chunk)?;
        if n > 0 {
            // Queuing data changes no event, deadline or state, only what the
            // connection may send: the output pass of the next `egress` runs
            // `after_conn` for it.
            entry.mark_dirty(handle, &mut self.dirty);
        }
        Ok(n)
    }

    /// A writable buffer in the packet region, for zero-copy sends.
    ///
    /// # Errors
    /// [`SocketError::NoBuffers`] when the pool is empty.
    pub fn alloc_tx(&self) -> Result<TxBuf, SocketError> {
        self.pool.alloc().map_err(|_| SocketError::NoBuffers)
    }

    /// Room in the connection's send queue.
    ///
    /// # Errors
    /// [`SocketError::InvalidHandle`] or [`SocketError::WrongKind`].
    pub fn tcp_send_room(&self, handle: SocketHandle) -> Result<usize, SocketError> {
        Ok(self.conn(handle)?.send_room())
    }

    /// Takes the next chunk of received data. `Ok(None)`: nothing now (see
    /// [`Stack::tcp_at_eof`] for end of stream).
    ///
    /// # Errors
    /// [`SocketError::Tcp`] when the connection was reset or timed out.
    pub fn tcp_recv(&mut self, handle: SocketHandle) -> Result<Option<RxChunk>, SocketError> {
        let conn = self.conn_mut(handle)?;
        // The credit's handle is taken only for a chunk: the call that finds
        // nothing (every read loop ends with one) costs no reference count.
        Ok(conn.recv()?.map(|buf| RxChunk::new(buf, conn.credit().clone())))
    }

    /// Whether the peer closed and everything it sent was read.
    ///
    /// # Errors
    /// [`SocketError::InvalidHandle`] or [`SocketError::WrongKind`].
    pub fn tcp_at_eof(&self, handle: SocketHandle) -> Result<bool, SocketError> {
        Ok(self.conn(handle)?.at_eof())
    }

    /// The connection's state.
    ///
    /// # Errors
    /// [`SocketError::InvalidHandle`] or [`SocketError::WrongKind`].
    pub fn tcp_state(&self, handle: SocketHandle) -> Result<State, SocketError> {
        Ok(self.conn(handle)?.state())
    }

    /// The error that ended the connection, if any.
    ///
    /// # Errors
    /// [`SocketError::InvalidHandle`] or [`SocketError::WrongKind`].
    pub fn tcp_error(&self, handle: SocketHandle) -> Result<Option<TcpError>, SocketError> {
        Ok(self.conn(handle)?.error())
    }

    /// A diagnostic snapshot of the connection.
    ///
    /// # Errors
    /// [`SocketError::InvalidHandle`] or [`SocketError::WrongKind`].
    pub fn tcp_info(&self, handle: SocketHandle) -> Result<TcpInfo, SocketError> {
        let c = self.conn(handle)?;
        Ok(TcpInfo {
            tuple: *c.tuple(),
            state: c.state(),
            cwnd: c.cwnd(),
            srtt: c.srtt(),
            send_queued: c.send_queued(),
            recv_queued: c.recv_queued(),
            options: c.negotiated(),
        })
    }

    /// Turns Nagle's algorithm off (`true`) or on.
    ///
    /// # Errors
    /// [`SocketError::InvalidHandle`] or [`SocketError::WrongKind`].
    pub fn tcp_set_nodelay(&mut self, handle: SocketHandle, nodelay: bool) -> Result<(), SocketError> {
        self.conn_mut(handle)?.set_nodelay(nodelay);
        Ok(())
    }

    /// Closes the sending side: a FIN follows queued data.
    ///
    /// # Errors
    /// [`SocketError::InvalidHandle`] or [`SocketError::WrongKind`].
    pub fn tcp_shutdown(&mut self, handle: SocketHandle) -> Result<(), SocketError> {
        self.conn_mut(handle)?.shutdown_write();
        self.after_conn(handle);
        Ok(())
    }

    /// Aborts the connection with a RST.
    ///
    /// # Errors
    /// [`SocketError::InvalidHandle`] or [`SocketError::WrongKind`].
    pub fn tcp_abort(&mut self, handle: SocketHandle) -> Result<(), SocketError> {
        self.conn_mut(handle)?.abort();
        self.after_conn(handle);
        Ok(())
    }

    /// Releases the application's handle. A stream is closed gracefully (FIN
    /// after queued data) unless received data is left unread, which aborts it
    /// with a RST as Linux does; the stack finishes the protocol and reclaims
    /// the socket (a peer that acknowledged the FIN but sends none of its own
    /// is waited for `fin_wait_2_timeout`, as Linux's `tcp_fin_timeout`). A
    /// connection still in SYN-SENT (its connect abandoned) is deleted at
    /// once. A listener closes and aborts the connections not accepted.
    pub fn close(&mut self, handle: SocketHandle) {
        let now = self.now;
        let Some(entry) = self.entry_mut(handle) else { return };
        entry.released = true;
        entry.pending_events = Readiness::EMPTY;
        match &mut entry.kind {
            SocketKind::Tcp(conn) => {
                // RFC 9293 §3.10.4: CLOSE in SYN-SENT deletes the TCB (as Linux
                // does). Queuing a FIN instead kept an abandoned connect alive
                // through every SYN retry, for minutes towards a silent peer.
                if conn.recv_queued() > 0 || conn.state() == State::SynSent {
                    conn.abort();
                } else {
                    conn.shutdown_write();
                    conn.orphan(now);
                }
                self.after_conn(handle);
            }
            SocketKind::Listener(l) => {
                let pending: Vec<SocketHandle> = l.accept_queue.drain(..).collect();
                for conn in pending {
                    if let Some(e) = self.entry_mut(conn) {
                        e.released = true;
                    }
                    if let Ok(c) = self.conn_mut(conn) {
                        c.abort();
                    }
                    self.after_conn(conn);
                }
                // Half-open connections die on their own; detach them.
                let orphans: Vec<SocketHandle> = self
                    .sockets
                    .iter()
                    .filter(|(_, e)| e.parent == Some(handle))
                    .map(|(i, e)| SocketHandle { index: i as u32, generation: e.generation })
                    .collect();
                for conn in orphans {
                    if let Some(e) = self.entry_mut(conn) {
                        e.parent = None;
                        e.released = true;
                    }
                    if let Ok(c) = self.conn_mut(conn) {
                        c.abort();
                    }
                    self.after_conn(conn);
                }
                self.reclaim(handle);
            }
            SocketKind::Udp(_) => self.reclaim(handle),
        }
    }

    pub(crate) fn initial_sequence(&self, tuple: &FourTuple, now: Instant) -> crate::tcp::seq::SeqNum {
        // RFC 6528: a 4 µs clock plus a keyed hash of the connection's addresses.
        let hash = crate::tcp::syncookie::siphash_2_4(&self.secret, &tuple_bytes(tuple)) as u32;
        crate::tcp::seq::SeqNum(hash.wrapping_add((now.as_micros() / 4) as u32))
    }

    pub(crate) fn ts_offset(&self, tuple: &FourTuple) -> u32 {
        let mut bytes = tuple_bytes(tuple);
        bytes[0] ^= 0x5a;
        crate::tcp::syncookie::siphash_2_4(&self.secret, &bytes) as u32
    }
}

/// The stack with an egress context borrowed from it, which schedules the ARP
/// timer when the context asked for a neighbour.
pub(crate) struct EgressGuard<'a> {
    stack: &'a mut Stack,
}

impl EgressGuard<'_> {
    pub(crate) fn arp(&mut self, repr: &ArpRepr, dst: EthernetAddress) -> bool {
        self.stack.egress_ctx().arp(repr, dst)
    }

    pub(crate) fn arp_request(&mut self, ip: Ipv4Addr) {
        self.stack.egress_ctx().arp_request(ip);
    }

    pub(crate) fn ipv4(&mut self, dst: Ipv4Addr, protocol: IpProtocol, frame: TxBuf) -> bool {
        let mut ctx = self.stack.egress_ctx();
        let ok = ctx.ipv4(dst, protocol, frame);
        let asked = ctx.arp_requested;
        if asked {
            self.stack.schedule_arp_timer();
        }
        ok
    }
}

/// The entry of a live handle, borrowing only the socket table (so the caller
/// may borrow the stack's other fields alongside).
pub(crate) fn live_entry(sockets: &mut Slab<SocketEntry>, handle: SocketHandle) -> Option<&mut SocketEntry> {
    sockets.get_mut(handle.index as usize).filter(|e| e.generation == handle.generation)
}

pub(crate) fn tuple_bytes(tuple: &FourTuple) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&tuple.local.ip().octets());
    b[4..8].copy_from_slice(&tuple.remote.ip().octets());
    b[8..10].copy_from_slice(&tuple.local.port().to_be_bytes());
    b[10..].copy_from_slice(&tuple.remote.port().to_be_bytes());
    b
}

fn u64_from(secret: &[u8; 16], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&secret[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ix_driver::{HugePages, PoolConfig};

    #[test]
    fn announce_broadcasts_a_gratuitous_arp_request() {
        let pool = PacketPool::new(PoolConfig { frames: 8, huge_pages: HugePages::Never }).unwrap();
        let mac = EthernetAddress([2, 0, 0, 0, 0, 9]);
        let addr = Ipv4Addr::new(192, 168, 7, 9);
        let mut stack = Stack::new(StackConfig::new(mac, addr, 24, [9; 16]), pool, Instant::ZERO).unwrap();
        stack.announce();
        let mut out = Vec::new();
        stack.egress(Instant::ZERO, &mut out);
        assert_eq!(out.len(), 1);
        let eth = EthernetFrame::new_checked(&out[0][..]).unwrap();
        assert!(eth.dst_addr().is_broadcast());
        let arp = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
        assert_eq!(arp.operation, ArpOperation::Request);
        assert_eq!((arp.source_ip, arp.target_ip, arp.source_hw), (addr, addr, mac));
    }
}
