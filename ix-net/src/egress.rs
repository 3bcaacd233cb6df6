//! Building outgoing frames: transport payloads get their IPv4 and Ethernet
//! headers here, with the next hop resolved through ARP, and a connection's
//! segments from its prebuilt header template.

use std::net::Ipv4Addr;

use ix_driver::{PacketPool, TxBuf};

use crate::iface::arp::HoldOutcome;
use crate::iface::{ArpCache, RouteTable, SharedNeighbors};
use crate::stats::{IpStats, LinkStats};
use crate::tcp::FourTuple;
use crate::tcp::conn::SegmentSink;
use crate::time::Instant;
use crate::wire::{
    ARP_PACKET_LEN, ArpOperation, ArpRepr, ETHERNET_HEADER_LEN, EtherType, EthernetAddress, EthernetRepr,
    IPV4_HEADER_LEN, IpProtocol, Ipv4Repr, checksum, fill_tcp_checksum,
};

/// Time to live of the datagrams we originate.
pub(crate) const DEFAULT_TTL: u8 = 64;

/// What the output path needs of a stack, borrowed for one burst.
pub(crate) struct Egress<'a> {
    pub(crate) pool: &'a PacketPool,
    pub(crate) arp: &'a mut ArpCache,
    pub(crate) routes: &'a RouteTable,
    pub(crate) mac: EthernetAddress,
    pub(crate) addr: Ipv4Addr,
    pub(crate) tx: &'a mut Vec<ix_driver::PacketBuf>,
    pub(crate) link_stats: &'a mut LinkStats,
    pub(crate) ip_stats: &'a mut IpStats,
    pub(crate) ip_ident: &'a mut u16,
    pub(crate) now: Instant,
    /// Set when a frame now waits for an ARP reply (the caller arms the timer).
    pub(crate) arp_requested: bool,
    /// What the other cores learned, consulted when this core's cache misses.
    pub(crate) neighbors: Option<&'a SharedNeighbors>,
    /// The header template of the connection whose segments this context
    /// builds, when it builds one connection's (see [`HeaderTemplate`]).
    pub(crate) header_template: Option<&'a mut Option<HeaderTemplate>>,
}

/// Bytes of the Ethernet and IPv4 headers in front of a TCP segment.
const TEMPLATE_LEN: usize = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN;

/// The Ethernet and IPv4 headers of one connection's frames, written once by
/// the general emitters (as IX and mTCP prebuild headers). Per frame only the
/// neighbour's MAC is checked against ARP, and the IPv4 total length,
/// identification and checksum are written; the checksum starts from the sum
/// of the fields that never change.
#[derive(Debug, Clone)]
pub(crate) struct HeaderTemplate {
    /// Ethernet and IPv4 headers with zero length, identification and checksum.
    bytes: [u8; TEMPLATE_LEN],
    /// The neighbour every frame goes to (the destination on link, else its
    /// gateway), whose ARP entry is checked per frame.
    next_hop: Ipv4Addr,
    /// The one's-complement sum of the IPv4 header in `bytes`.
    ipv4_fixed_sum: u64,
}

impl HeaderTemplate {
    /// The headers from `src` to `dst` through `next_hop` at `dst_mac`.
    fn new(src: (EthernetAddress, Ipv4Addr), dst: (EthernetAddress, Ipv4Addr), next_hop: Ipv4Addr) -> Self {
        let mut bytes = [0u8; TEMPLATE_LEN];
        EthernetRepr { src: src.0, dst: dst.0, ethertype: EtherType::Ipv4 }.emit(&mut bytes);
        let ipv4 = Ipv4Repr {
            src: src.1,
            dst: dst.1,
            protocol: IpProtocol::Tcp,
            payload_len: 0,
            ttl: DEFAULT_TTL,
            dont_frag: true,
            ident: 0,
            dscp_ecn: 0,
        };
        let header = &mut bytes[ETHERNET_HEADER_LEN..];
        ipv4.emit(header);
        // Length, identification and checksum are written per frame.
        header[2..6].fill(0);
        header[10..12].fill(0);
        let ipv4_fixed_sum = checksum::accumulate(0, header);
        Self { bytes, next_hop, ipv4_fixed_sum }
    }

    /// Writes the headers of a datagram of `total_len` bytes (IPv4 header
    /// included) with identification `ident` into the start of `out`.
    fn emit(&self, out: &mut [u8], total_len: u16, ident: u16) {
        let out = &mut out[..TEMPLATE_LEN];
        out.copy_from_slice(&self.bytes);
        let header = &mut out[ETHERNET_HEADER_LEN..];
        header[2..4].copy_from_slice(&total_len.to_be_bytes());
        header[4..6].copy_from_slice(&ident.to_be_bytes());
        let sum = self.ipv4_fixed_sum + u64::from(total_len) + u64::from(ident);
        header[10..12].copy_from_slice(&(!checksum::fold(sum)).to_be_bytes());
    }
}

impl Egress<'_> {
    /// A fresh frame, or `None` (counted) when the pool is empty.
    pub(crate) fn alloc(&mut self) -> Option<TxBuf> {
        match self.pool.alloc() {
            Ok(frame) => Some(frame),
            Err(_) => {
                self.link_stats.tx_pool_exhausted += 1;
                None
            }
        }
    }

    /// Sends an ARP packet to `dst`.
    pub(crate) fn arp(&mut self, repr: &ArpRepr, dst: EthernetAddress) -> bool {
        let Some(mut frame) = self.alloc() else { return false };
        let Ok(body) = frame.append(ARP_PACKET_LEN) else { return false };
        repr.emit(body);
        self.ethernet(frame, dst, EtherType::Arp);
        true
    }

    /// Broadcasts a request for `ip`.
    pub(crate) fn arp_request(&mut self, ip: Ipv4Addr) {
        let repr = ArpRepr {
            operation: ArpOperation::Request,
            source_hw: self.mac,
            source_ip: self.addr,
            target_hw: EthernetAddress([0; 6]),
            target_ip: ip,
        };
        if self.arp(&repr, EthernetAddress::BROADCAST) {
            self.link_stats.arp_requests_out += 1;
        }
    }

    fn ethernet(&mut self, mut frame: TxBuf, dst: EthernetAddress, ethertype: EtherType) {
        let Ok(hdr) = frame.prepend(ETHERNET_HEADER_LEN) else { return };
        EthernetRepr { src: self.mac, dst, ethertype }.emit(hdr);
        self.tx.push(frame.freeze());
        self.link_stats.frames_out += 1;
    }

    /// Adds IPv4 and Ethernet headers to a transport payload and queues it, or
    /// holds it until its next hop is resolved. False when it was dropped.
    pub(crate) fn ipv4(&mut self, dst: Ipv4Addr, protocol: IpProtocol, mut frame: TxBuf) -> bool {
        let Some(next_hop) = self.routes.next_hop(dst) else {
            self.ip_stats.out_no_routes += 1;
            return false;
        };
        let payload_len = frame.len();
        let Ok(hdr) = frame.prepend(IPV4_HEADER_LEN) else { return false };
        *self.ip_ident = self.ip_ident.wrapping_add(1);
        Ipv4Repr {
            src: self.addr,
            dst,
            protocol,
            payload_len,
            ttl: DEFAULT_TTL,
            dont_frag: true,
            ident: *self.ip_ident,
            dscp_ecn: 0,
        }
        .emit(hdr);
        self.ip_stats.out_requests += 1;
        if dst.is_broadcast() || self.routes.is_subnet_broadcast(dst) {
            self.ethernet(frame, EthernetAddress::BROADCAST, EtherType::Ipv4);
            return true;
        }
        if let Some(mac) = self.arp.lookup(next_hop, self.now) {
            self.ethernet(frame, mac, EtherType::Ipv4);
            return true;
        }
        if let Some(mac) = self.neighbors.and_then(|n| n.get(next_hop)) {
            // Another core heard the reply: adopt it (nothing waits here yet).
            for mut held in self.arp.learn(next_hop, mac, self.now, true) {
                held[..6].copy_from_slice(mac.as_bytes());
                self.tx.push(held.freeze());
                self.link_stats.frames_out += 1;
            }
            self.ethernet(frame, mac, EtherType::Ipv4);
            return true;
        }
        // Unresolved: the frame waits with a blank destination, filled in when
        // the reply comes.
        let Ok(hdr) = frame.prepend(ETHERNET_HEADER_LEN) else { return false };
        EthernetRepr { src: self.mac, dst: EthernetAddress([0; 6]), ethertype: EtherType::Ipv4 }.emit(hdr);
        match self.arp.hold(next_hop, frame, self.now) {
            HoldOutcome::SendRequest => {
                self.arp_request(next_hop);
                self.arp_requested = true;
                true
            }
            HoldOutcome::Queued => true,
            HoldOutcome::Full(_) => {
                self.link_stats.arp_pending_dropped += 1;
                false
            }
        }
    }
}

impl Egress<'_> {
    /// The connection's header template for frames to `dst`, built on first
    /// use, with its neighbour's MAC as ARP has it now; `None` while the
    /// neighbour is unresolved (the general path holds the frame and asks) or
    /// when `dst` is a broadcast address.
    fn resolved_template<'t>(
        &mut self,
        slot: &'t mut Option<HeaderTemplate>,
        dst: Ipv4Addr,
    ) -> Option<&'t HeaderTemplate> {
        let next_hop = match slot {
            Some(template) => template.next_hop,
            None => {
                self.routes.next_hop(dst).filter(|_| !dst.is_broadcast() && !self.routes.is_subnet_broadcast(dst))?
            }
        };
        let mac = self.arp.lookup(next_hop, self.now)?;
        let template = slot.get_or_insert_with(|| HeaderTemplate::new((self.mac, self.addr), (mac, dst), next_hop));
        // The neighbour moved to another MAC (ARP learned it): follow it.
        template.bytes[..6].copy_from_slice(mac.as_bytes());
        Some(template)
    }

    /// [`SegmentSink::segment`] from a header template: one frame written
    /// front to back, the same bytes the general path writes.
    fn templated_segment(
        &mut self,
        template: &HeaderTemplate,
        tuple: &FourTuple,
        segment_len: usize,
        write: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        let Ok(total_len) = u16::try_from(IPV4_HEADER_LEN + segment_len) else { return false };
        let Some(mut frame) = self.alloc() else { return false };
        let Ok(bytes) = frame.append(TEMPLATE_LEN + segment_len) else { return false };
        *self.ip_ident = self.ip_ident.wrapping_add(1);
        template.emit(bytes, total_len, *self.ip_ident);
        let segment = &mut bytes[TEMPLATE_LEN..];
        write(segment);
        fill_tcp_checksum(segment, *tuple.local.ip(), *tuple.remote.ip());
        self.ip_stats.out_requests += 1;
        self.tx.push(frame.freeze());
        self.link_stats.frames_out += 1;
        true
    }
}

impl SegmentSink for Egress<'_> {
    fn segment(&mut self, tuple: &FourTuple, len: usize, write: &mut dyn FnMut(&mut [u8])) -> bool {
        if let Some(slot) = self.header_template.take() {
            let sent = self
                .resolved_template(slot, *tuple.remote.ip())
                .map(|template| self.templated_segment(template, tuple, len, write));
            self.header_template = Some(slot);
            if let Some(sent) = sent {
                return sent;
            }
        }
        let Some(mut frame) = self.alloc() else { return false };
        let Ok(segment) = frame.append(len) else { return false };
        write(segment);
        fill_tcp_checksum(&mut frame, *tuple.local.ip(), *tuple.remote.ip());
        self.ipv4(*tuple.remote.ip(), IpProtocol::Tcp, frame)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;

    use ix_driver::{HugePages, PacketBuf, PoolConfig};

    use super::*;
    use crate::iface::{ArpConfig, Route};
    use crate::stats::{IpStats, LinkStats};
    use crate::wire::{TcpFlags, TcpOptions, TcpRepr};

    const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);

    /// What an egress context borrows, owned by the test.
    struct Parts {
        pool: PacketPool,
        arp: ArpCache,
        routes: RouteTable,
        tx: Vec<PacketBuf>,
        link: LinkStats,
        ip: IpStats,
        ident: u16,
    }

    impl Parts {
        fn new(neighbour: Option<EthernetAddress>) -> Self {
            let mut arp = ArpCache::new(ArpConfig::default());
            if let Some(mac) = neighbour {
                arp.learn(REMOTE, mac, Instant::ZERO, true);
            }
            let mut routes = RouteTable::new();
            routes.add(Route { network: LOCAL, prefix_len: 24, gateway: None });
            let pool = PacketPool::new(PoolConfig { frames: 16, huge_pages: HugePages::Never }).unwrap();
            let (link, ip) = (LinkStats::default(), IpStats::default());
            Self { pool, arp, routes, tx: Vec::new(), link, ip, ident: 7 }
        }

        /// Sends one segment of `repr` and `payload`, through `template` when given.
        fn send(&mut self, template: Option<&mut Option<HeaderTemplate>>, repr: &TcpRepr, payload: &[u8]) -> bool {
            let mut egress = Egress {
                pool: &self.pool,
                arp: &mut self.arp,
                routes: &self.routes,
                mac: MAC,
                addr: LOCAL,
                tx: &mut self.tx,
                link_stats: &mut self.link,
                ip_stats: &mut self.ip,
                ip_ident: &mut self.ident,
                now: Instant::ZERO,
                arp_requested: false,
                neighbors: None,
                header_template: template,
            };
            let tuple = FourTuple { local: SocketAddrV4::new(LOCAL, 40000), remote: SocketAddrV4::new(REMOTE, 80) };
            let header_len = repr.header_len();
            egress.segment(&tuple, header_len + payload.len(), &mut |segment| {
                repr.emit(segment);
                segment[header_len..].copy_from_slice(payload);
            })
        }
    }

    fn data_segment(seq: u32) -> TcpRepr {
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq,
            ack: 0x0102_0304,
            flags: TcpFlags::ACK | TcpFlags::PSH,
            window: 501,
            urgent: 0,
            options: TcpOptions { timestamps: Some((11, 22)), ..TcpOptions::default() },
            payload_offset: 0,
        }
    }

    #[test]
    fn templated_frames_are_the_general_paths_bytes() {
        let neighbour = EthernetAddress([2, 0, 0, 0, 0, 2]);
        let (mut general, mut templated) = (Parts::new(Some(neighbour)), Parts::new(Some(neighbour)));
        let mut template = None;
        for (seq, payload) in [(1u32, &b"hello"[..]), (6, &[0xa5; 1000][..]), (1006, &b""[..])] {
            let repr = data_segment(seq);
            assert!(general.send(None, &repr, payload));
            assert!(templated.send(Some(&mut template), &repr, payload));
            assert!(template.is_some(), "the first segment builds the template");
        }
        assert_eq!(general.tx.len(), 3);
        for (a, b) in general.tx.iter().zip(&templated.tx) {
            assert_eq!(a[..], b[..]);
        }
        assert_eq!((general.link, general.ip, general.ident), (templated.link, templated.ip, templated.ident));
    }

    #[test]
    fn a_template_follows_the_neighbours_new_mac_and_waits_for_arp() {
        let mut parts = Parts::new(None);
        let mut template = None;
        // Unresolved: no template, the frame waits for ARP as on the general path.
        assert!(parts.send(Some(&mut template), &data_segment(1), b"x"));
        assert!(template.is_none());
        assert_eq!(parts.link.arp_requests_out, 1);
        parts.tx.clear();
        let moved = EthernetAddress([2, 0, 0, 0, 0, 3]);
        for mac in [EthernetAddress([2, 0, 0, 0, 0, 2]), moved] {
            parts.arp.learn(REMOTE, mac, Instant::ZERO, true);
            assert!(parts.send(Some(&mut template), &data_segment(2), b"y"));
            let frame = parts.tx.pop().unwrap();
            assert_eq!(&frame[..6], mac.as_bytes());
        }
    }
}
