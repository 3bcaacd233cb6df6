//! ICMPv4: echo replies, destination-unreachable for closed UDP ports, and
//! counting what arrives.

use std::net::Ipv4Addr;

use ix_driver::{PacketBuf, TxBuf};

use crate::egress::DEFAULT_TTL;
use crate::stack::Stack;
use crate::wire::{
    ETHERNET_HEADER_LEN, IPV4_HEADER_LEN, Icmpv4DstUnreachable, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet,
    Ipv4Repr, checksum,
};

/// Bytes of the offending datagram's payload quoted in an error (RFC 792: at
/// least 8).
const ICMP_QUOTE_BYTES: usize = 8;
/// ICMP type of an echo reply.
const ICMP_ECHO_REPLY: u8 = 0;

impl Stack {
    pub(crate) fn ingress_icmp(&mut self, frame: PacketBuf, src: Ipv4Addr, start: usize, end: usize, unicast: bool) {
        self.stats.ip.icmp_in_msgs += 1;
        let echo = match Icmpv4Packet::new_checked(&frame[start..end]).and_then(|p| Icmpv4Repr::parse(&p, true)) {
            Ok(Icmpv4Repr::EchoRequest { .. }) => true,
            Ok(Icmpv4Repr::DstUnreachable { .. }) => {
                self.stats.ip.icmp_in_dest_unreachs += 1;
                false
            }
            Ok(_) => false,
            Err(_) => {
                self.stats.ip.icmp_in_errors += 1;
                false
            }
        };
        if !echo || !unicast {
            return;
        }
        self.stats.ip.icmp_in_echos += 1;
        let replied = match frame.try_into_mut() {
            Ok(buf) if start == ETHERNET_HEADER_LEN + IPV4_HEADER_LEN => {
                self.echo_in_place(buf, end);
                true
            }
            Ok(buf) => self.echo_by_copy(&buf.freeze(), src, start, end),
            Err(frame) => self.echo_by_copy(&frame, src, start, end),
        };
        if replied {
            self.stats.ip.icmp_out_echo_reps += 1;
        }
    }

    /// Turns the request's own frame into the reply: swap the addresses (which
    /// leaves the IPv4 checksum as it is), reset the TTL and change the ICMP
    /// type, updating both checksums incrementally (RFC 1624). No copy.
    fn echo_in_place(&mut self, mut buf: TxBuf, end: usize) {
        buf.truncate(end); // drop Ethernet padding
        let mut peer_mac = [0u8; 6];
        peer_mac.copy_from_slice(&buf[6..12]);
        buf[..6].copy_from_slice(&peer_mac);
        buf[6..12].copy_from_slice(self.config.mac.as_bytes());
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut buf[ETHERNET_HEADER_LEN..]);
            let (from, to) = (ip.src_addr(), ip.dst_addr());
            ip.set_src_addr(to);
            ip.set_dst_addr(from);
            let old = u16::from_be_bytes([ip.ttl(), u8::from(ip.protocol())]);
            ip.set_ttl(DEFAULT_TTL);
            let new = u16::from_be_bytes([DEFAULT_TTL, u8::from(ip.protocol())]);
            let sum = checksum::incremental_update(ip.checksum(), old, new);
            ip.set_checksum(sum);
        }
        let mut icmp = Icmpv4Packet::new_unchecked(&mut buf[ETHERNET_HEADER_LEN + IPV4_HEADER_LEN..]);
        let old = u16::from_be_bytes([icmp.msg_type(), icmp.msg_code()]);
        icmp.set_msg_type(ICMP_ECHO_REPLY);
        let new = u16::from_be_bytes([ICMP_ECHO_REPLY, icmp.msg_code()]);
        let sum = checksum::incremental_update(icmp.checksum(), old, new);
        icmp.set_checksum(sum);
        self.tx.push(buf.freeze());
        self.stats.link.frames_out += 1;
        self.stats.ip.out_requests += 1;
    }

    /// The reply built in a fresh frame (the request's frame is shared, or its
    /// IPv4 header has options, which the reply does not echo).
    fn echo_by_copy(&mut self, frame: &PacketBuf, src: Ipv4Addr, start: usize, end: usize) -> bool {
        let Ok(Icmpv4Repr::EchoRequest { ident, seq_no, data }) =
            Icmpv4Packet::new_checked(&frame[start..end]).and_then(|p| Icmpv4Repr::parse(&p, false))
        else {
            return false;
        };
        self.send_icmp(src, &Icmpv4Repr::EchoReply { ident, seq_no, data })
    }

    /// Tells `src` that the UDP port it sent to is closed, quoting the
    /// datagram's header and first bytes.
    pub(crate) fn send_port_unreachable(&mut self, frame: &PacketBuf) {
        let Ok(ip) = Ipv4Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]) else { return };
        let header = Ipv4Repr {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            protocol: ip.protocol(),
            payload_len: usize::from(ip.total_len()) - ip.header_len(),
            ttl: ip.ttl(),
            dont_frag: ip.dont_frag(),
            ident: ip.ident(),
            dscp_ecn: ip.dscp_ecn(),
        };
        let payload = ip.payload();
        let quoted = &payload[..payload.len().min(ICMP_QUOTE_BYTES)];
        let repr = Icmpv4Repr::DstUnreachable {
            reason: Icmpv4DstUnreachable::PortUnreachable,
            next_hop_mtu: 0,
            header,
            data: quoted,
        };
        if self.send_icmp(header.src, &repr) {
            self.stats.ip.icmp_out_dest_unreachs += 1;
        }
    }

    fn send_icmp(&mut self, dst: Ipv4Addr, repr: &Icmpv4Repr<'_>) -> bool {
        let Some(mut frame) = self.egress_ctx().alloc() else { return false };
        let Ok(body) = frame.append(repr.buffer_len()) else { return false };
        repr.emit(body);
        self.out().ipv4(dst, IpProtocol::Icmp, frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::StackConfig;
    use crate::time::Instant;
    use crate::wire::{ArpOperation, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
    use ix_driver::{HugePages, PacketPool, PoolConfig};

    const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const OUR_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);

    fn stack() -> Stack {
        let pool = PacketPool::new(PoolConfig { frames: 64, huge_pages: HugePages::Never }).unwrap();
        Stack::new(StackConfig::new(OUR_MAC, US, 24, [1; 16]), pool, Instant::ZERO).unwrap()
    }

    /// An echo request from the peer, with Ethernet padding after it.
    fn echo_request(pool: &PacketPool, data: &[u8]) -> PacketBuf {
        let icmp = Icmpv4Repr::EchoRequest { ident: 0x1234, seq_no: 7, data };
        let ip = Ipv4Repr {
            src: PEER,
            dst: US,
            protocol: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            ttl: 3,
            dont_frag: false,
            ident: 99,
            dscp_ecn: 0,
        };
        let mut frame = pool.alloc().unwrap();
        let len = ETHERNET_HEADER_LEN + IPV4_HEADER_LEN + icmp.buffer_len();
        let buf = frame.append(len.max(60)).unwrap();
        buf.fill(0);
        EthernetRepr { src: PEER_MAC, dst: OUR_MAC, ethertype: EtherType::Ipv4 }.emit(buf);
        ip.emit(&mut buf[ETHERNET_HEADER_LEN..]);
        icmp.emit(&mut buf[ETHERNET_HEADER_LEN + IPV4_HEADER_LEN..len]);
        frame.freeze()
    }

    fn check_reply(reply: &PacketBuf, data: &[u8]) {
        let eth = EthernetFrame::new_checked(&reply[..]).unwrap();
        assert_eq!((eth.src_addr(), eth.dst_addr()), (OUR_MAC, PEER_MAC));
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum(), "IPv4 checksum of the reply");
        assert_eq!((ip.src_addr(), ip.dst_addr(), ip.ttl()), (US, PEER, DEFAULT_TTL));
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        match Icmpv4Repr::parse(&icmp, true).unwrap() {
            Icmpv4Repr::EchoReply { ident, seq_no, data: got } => {
                assert_eq!((ident, seq_no, got), (0x1234, 7, data));
            }
            other => panic!("not an echo reply: {other:?}"),
        }
    }

    #[test]
    fn echo_reply_reuses_the_request_frame_with_incremental_checksums() {
        let mut stack = stack();
        let data = b"abcdefghijklmnopqrstuvwxyz";
        let request = echo_request(stack.pool(), data);
        let index = request.frame_index();
        stack.ingress(request, Instant::ZERO);
        let mut out = Vec::new();
        stack.egress(Instant::ZERO, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].frame_index(), index, "the reply went out in the request's frame");
        check_reply(&out[0], data);
        assert_eq!(stack.stats().ip.icmp_out_echo_reps, 1);
    }

    /// The peer asks for our MAC, which teaches the stack the peer's.
    fn arp_request_from_peer(pool: &PacketPool) -> PacketBuf {
        let arp = ArpRepr {
            operation: ArpOperation::Request,
            source_hw: PEER_MAC,
            source_ip: PEER,
            target_hw: EthernetAddress([0; 6]),
            target_ip: US,
        };
        let mut frame = pool.alloc().unwrap();
        let buf = frame.append(ETHERNET_HEADER_LEN + arp.buffer_len()).unwrap();
        EthernetRepr { src: PEER_MAC, dst: EthernetAddress::BROADCAST, ethertype: EtherType::Arp }.emit(buf);
        arp.emit(&mut buf[ETHERNET_HEADER_LEN..]);
        frame.freeze()
    }

    #[test]
    fn echo_reply_is_copied_when_the_request_frame_is_shared() {
        let mut stack = stack();
        let arp = arp_request_from_peer(stack.pool());
        stack.ingress(arp, Instant::ZERO);
        let mut out = Vec::new();
        stack.egress(Instant::ZERO, &mut out);
        assert_eq!(out.len(), 1, "the ARP reply");
        out.clear();
        let data = [0xA5u8; 300];
        let request = echo_request(stack.pool(), &data);
        let kept = request.clone();
        stack.ingress(request, Instant::ZERO);
        stack.egress(Instant::ZERO, &mut out);
        assert_eq!(out.len(), 1);
        assert_ne!(out[0].frame_index(), kept.frame_index());
        check_reply(&out[0], &data);
    }
}
