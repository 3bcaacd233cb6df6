//! The mem wire's switch: which ports a frame goes to (by destination MAC) and
//! which queue of a port RSS picks (parsing just enough Ethernet and IPv4 by hand,
//! since the driver must not depend on the stack).

use std::net::Ipv4Addr;
use std::ops::Range;

use crate::queue::ETHERNET_HEADER_BYTES;
use crate::rss::{RedirectionTable, Toeplitz};

const ETH_DST: Range<usize> = 0..6;
const ETH_TYPE: Range<usize> = 12..14;
const ETHERTYPE_IPV4: u16 = 0x0800;

/// IPv4 header fields, relative to the start of the IPv4 header.
const IP_VERSION_IHL: usize = 0;
const IP_FLAGS_FRAGMENT: Range<usize> = 6..8;
const IP_PROTOCOL: usize = 9;
const IP_SRC: Range<usize> = 12..16;
const IP_DST: Range<usize> = 16..20;
const IP_MIN_HEADER_BYTES: usize = 20;
/// More-fragments flag and fragment offset: a fragment carries no usable ports.
const IP_FRAGMENT_MASK: u16 = 0x3fff;
const IP_PROTO_TCP: u8 = 6;
const IP_PROTO_UDP: u8 = 17;
/// Source and destination port, the first four bytes of both TCP and UDP.
const L4_PORTS_BYTES: usize = 4;

/// The MAC address of port `port` of a mem wire: `02:00:00:00:00:{port + 1}`
/// (locally administered, unicast).
///
/// # Panics
/// If `port` is above 254 (the address has one byte for it).
pub fn mem_port_mac(port: u16) -> [u8; 6] {
    let last = u8::try_from(port + 1).ok().filter(|&b| b != 0);
    let last = last.unwrap_or_else(|| panic!("mem port {port} has no MAC: at most 255 ports"));
    [0x02, 0, 0, 0, 0, last]
}

/// Where the switch sends a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forward {
    /// To this port.
    Port(u16),
    /// Broadcast or multicast: to every port but the sender's.
    Flood,
    /// Unicast to no port of this wire: dropped.
    Unknown,
}

/// Looks up the destination MAC of `frame` (at least an Ethernet header long)
/// among the `ports` ports of the wire.
pub(crate) fn forward(frame: &[u8], ports: u16) -> Forward {
    let dst = &frame[ETH_DST];
    if dst[0] & 1 == 1 {
        return Forward::Flood;
    }
    let port = u16::from(dst[5]).wrapping_sub(1);
    if dst[..5] == [0x02, 0, 0, 0, 0] && port < ports { Forward::Port(port) } else { Forward::Unknown }
}

/// The RSS hash a NIC computes for `frame`: over the 4-tuple for unfragmented
/// TCP and UDP over IPv4, over the addresses for other IPv4, none otherwise
/// (ARP, IPv6, VLAN-tagged or malformed frames).
pub(crate) fn rss_hash(frame: &[u8], toeplitz: &Toeplitz) -> Option<u32> {
    if frame.len() < ETHERNET_HEADER_BYTES
        || u16::from_be_bytes([frame[ETH_TYPE.start], frame[ETH_TYPE.start + 1]]) != ETHERTYPE_IPV4
    {
        return None;
    }
    let ip = &frame[ETHERNET_HEADER_BYTES..];
    if ip.len() < IP_MIN_HEADER_BYTES || ip[IP_VERSION_IHL] >> 4 != 4 {
        return None;
    }
    let header_bytes = usize::from(ip[IP_VERSION_IHL] & 0x0f) * 4;
    if header_bytes < IP_MIN_HEADER_BYTES || ip.len() < header_bytes {
        return None;
    }
    let src = Ipv4Addr::new(ip[IP_SRC.start], ip[IP_SRC.start + 1], ip[IP_SRC.start + 2], ip[IP_SRC.start + 3]);
    let dst = Ipv4Addr::new(ip[IP_DST.start], ip[IP_DST.start + 1], ip[IP_DST.start + 2], ip[IP_DST.start + 3]);
    let fragment = u16::from_be_bytes([ip[IP_FLAGS_FRAGMENT.start], ip[IP_FLAGS_FRAGMENT.start + 1]]);
    let has_ports = matches!(ip[IP_PROTOCOL], IP_PROTO_TCP | IP_PROTO_UDP)
        && fragment & IP_FRAGMENT_MASK == 0
        && ip.len() >= header_bytes + L4_PORTS_BYTES;
    if has_ports {
        let l4 = &ip[header_bytes..];
        let src_port = u16::from_be_bytes([l4[0], l4[1]]);
        let dst_port = u16::from_be_bytes([l4[2], l4[3]]);
        Some(toeplitz.hash_ipv4_tcp_udp(src, dst, src_port, dst_port))
    } else {
        Some(toeplitz.hash_ipv4(src, dst))
    }
}

/// The queue of a port that receives `frame`: by RSS through `table`, queue 0
/// for frames without a hash.
pub(crate) fn select_queue(frame: &[u8], toeplitz: &Toeplitz, table: &RedirectionTable) -> u16 {
    rss_hash(frame, toeplitz).map_or(0, |hash| table.queue_for_hash(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 frame to `dst_mac` with `protocol` and `l4` after a
    /// 20-byte IPv4 header.
    fn ipv4_frame(dst_mac: [u8; 6], protocol: u8, fragment: u16, l4: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        frame.extend_from_slice(&dst_mac);
        frame.extend_from_slice(&mem_port_mac(0));
        frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let mut ip = [0u8; IP_MIN_HEADER_BYTES];
        ip[IP_VERSION_IHL] = 0x45;
        ip[IP_FLAGS_FRAGMENT].copy_from_slice(&fragment.to_be_bytes());
        ip[IP_PROTOCOL] = protocol;
        ip[IP_SRC].copy_from_slice(&[66, 9, 149, 187]);
        ip[IP_DST].copy_from_slice(&[161, 142, 100, 80]);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(l4);
        frame
    }

    const PORTS_2794_1766: [u8; 4] = [0x0a, 0xea, 0x06, 0xe6];

    #[test]
    fn port_macs_are_locally_administered_unicast() {
        assert_eq!(mem_port_mac(0), [2, 0, 0, 0, 0, 1]);
        assert_eq!(mem_port_mac(254), [2, 0, 0, 0, 0, 255]);
        assert!(std::panic::catch_unwind(|| mem_port_mac(255)).is_err());
    }

    #[test]
    fn forwarding_by_destination_mac() {
        let frame = |mac: [u8; 6]| ipv4_frame(mac, IP_PROTO_UDP, 0, &[]);
        assert_eq!(forward(&frame(mem_port_mac(2)), 3), Forward::Port(2));
        assert_eq!(forward(&frame(mem_port_mac(3)), 3), Forward::Unknown);
        assert_eq!(forward(&frame([0x02, 0, 0, 0, 1, 1]), 3), Forward::Unknown);
        assert_eq!(forward(&frame([0x02, 0, 0, 0, 0, 0]), 3), Forward::Unknown);
        assert_eq!(forward(&frame([0xff; 6]), 3), Forward::Flood);
        assert_eq!(forward(&frame([0x01, 0x00, 0x5e, 0, 0, 1]), 3), Forward::Flood);
    }

    #[test]
    fn tcp_and_udp_hash_the_four_tuple_and_other_ip_the_addresses() {
        let toeplitz = Toeplitz::default();
        let mac = mem_port_mac(1);
        let tcp = ipv4_frame(mac, IP_PROTO_TCP, 0, &PORTS_2794_1766);
        let udp = ipv4_frame(mac, IP_PROTO_UDP, 0, &PORTS_2794_1766);
        let icmp = ipv4_frame(mac, 1, 0, &PORTS_2794_1766);
        let fragment = ipv4_frame(mac, IP_PROTO_UDP, 0x2000, &PORTS_2794_1766);
        let truncated = ipv4_frame(mac, IP_PROTO_TCP, 0, &PORTS_2794_1766[..3]);
        assert_eq!(rss_hash(&tcp, &toeplitz), Some(0x51cc_c178));
        assert_eq!(rss_hash(&udp, &toeplitz), Some(0x51cc_c178));
        for frame in [icmp, fragment, truncated] {
            assert_eq!(rss_hash(&frame, &toeplitz), Some(0x323e_8fc2));
        }
    }

    #[test]
    fn non_ip_and_malformed_frames_go_to_queue_zero() {
        let toeplitz = Toeplitz::default();
        let table = RedirectionTable::new(128, 4).unwrap();
        let mut arp = ipv4_frame([0xff; 6], 0, 0, &[]);
        arp[ETH_TYPE].copy_from_slice(&0x0806u16.to_be_bytes());
        let mut bad_version = ipv4_frame(mem_port_mac(1), IP_PROTO_TCP, 0, &PORTS_2794_1766);
        bad_version[ETHERNET_HEADER_BYTES] = 0x65;
        let mut bad_ihl = bad_version.clone();
        bad_ihl[ETHERNET_HEADER_BYTES] = 0x4f;
        let short = ipv4_frame(mem_port_mac(1), IP_PROTO_TCP, 0, &[])[..30].to_vec();
        for frame in [arp, bad_version, bad_ihl, short] {
            assert_eq!(rss_hash(&frame, &toeplitz), None);
            assert_eq!(select_queue(&frame, &toeplitz, &table), 0);
        }
        let tcp = ipv4_frame(mem_port_mac(1), IP_PROTO_TCP, 0, &PORTS_2794_1766);
        assert_eq!(select_queue(&tcp, &toeplitz, &table), table.queue_for_hash(0x51cc_c178));
    }
}
