//! Building outgoing frames: transport payloads get their IPv4 and Ethernet
//! headers here, with the next hop resolved through ARP.

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
    IPV4_HEADER_LEN, IpProtocol, Ipv4Repr, TcpRepr, fill_tcp_checksum,
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

impl SegmentSink for Egress<'_> {
    fn segment(
        &mut self,
        tuple: &FourTuple,
        repr: &TcpRepr,
        payload_len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        let Some(mut frame) = self.alloc() else { return false };
        let header_len = repr.header_len();
        if payload_len + header_len + IPV4_HEADER_LEN + ETHERNET_HEADER_LEN > frame.tailroom() + frame.headroom() {
            return false;
        }
        let Ok(payload) = frame.append(payload_len) else { return false };
        fill(payload);
        let Ok(hdr) = frame.prepend(header_len) else { return false };
        repr.emit(hdr);
        fill_tcp_checksum(&mut frame, *tuple.local.ip(), *tuple.remote.ip());
        self.ipv4(*tuple.remote.ip(), IpProtocol::Tcp, frame)
    }
}
