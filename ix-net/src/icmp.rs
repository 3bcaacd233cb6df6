//! ICMPv4: echo replies, destination-unreachable for closed UDP ports, and
//! counting what arrives.

use std::net::Ipv4Addr;

use ix_driver::PacketBuf;

use crate::stack::Stack;
use crate::wire::{
    ETHERNET_HEADER_LEN, Icmpv4DstUnreachable, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
};

/// Bytes of the offending datagram's payload quoted in an error (RFC 792: at
/// least 8).
const ICMP_QUOTE_BYTES: usize = 8;

impl Stack {
    pub(crate) fn ingress_icmp(&mut self, frame: &PacketBuf, src: Ipv4Addr, start: usize, end: usize, unicast: bool) {
        self.stats.ip.icmp_in_msgs += 1;
        let bytes = &frame[start..end];
        let repr = match Icmpv4Packet::new_checked(bytes).and_then(|p| Icmpv4Repr::parse(&p, true)) {
            Ok(repr) => repr,
            Err(_) => {
                self.stats.ip.icmp_in_errors += 1;
                return;
            }
        };
        match repr {
            Icmpv4Repr::EchoRequest { ident, seq_no, data } if unicast => {
                self.stats.ip.icmp_in_echos += 1;
                let reply = Icmpv4Repr::EchoReply { ident, seq_no, data };
                if self.send_icmp(src, &reply) {
                    self.stats.ip.icmp_out_echo_reps += 1;
                }
            }
            Icmpv4Repr::DstUnreachable { .. } => self.stats.ip.icmp_in_dest_unreachs += 1,
            _ => {}
        }
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
