//! Round trips through the wire views and reprs of `ix-net`: hostile bytes must parse to an error or to a
//! repr that emits (with valid checksums) and parses back to itself. Moved here from `ix-net/fuzz`.

use std::net::Ipv4Addr;

use ix_net::wire::{
    ARP_PACKET_LEN, ArpPacket, ArpRepr, ETHERNET_HEADER_LEN, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr, UDP_HEADER_LEN, UdpPacket, UdpRepr, fill_tcp_checksum, fill_udp_checksum,
};

/// Splits fuzz input into a source and a destination IPv4 address (its first 8 bytes) and the transport
/// segment after them; `None` if the input is shorter than 8 bytes.
fn split_addresses(data: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, &[u8])> {
    let (addresses, segment) = data.split_first_chunk::<8>()?;
    let src = Ipv4Addr::new(addresses[0], addresses[1], addresses[2], addresses[3]);
    let dst = Ipv4Addr::new(addresses[4], addresses[5], addresses[6], addresses[7]);
    Some((src, dst, segment))
}

/// The Ethernet header: whatever parses emits the same 14 bytes.
///
/// # Panics
/// When the round trip differs.
pub fn ethernet(data: &[u8]) {
    let Ok(frame) = EthernetFrame::new_checked(data) else { return };
    let Ok(repr) = EthernetRepr::parse(&frame) else { return };
    let mut bytes = [0u8; ETHERNET_HEADER_LEN];
    repr.emit(&mut bytes);
    let again = EthernetRepr::parse(&EthernetFrame::new_checked(&bytes[..]).expect("emitted header"));
    assert_eq!(again.expect("emitted header parses"), repr);
    assert_eq!(&bytes[..], &data[..ETHERNET_HEADER_LEN]);
}

/// ARP: whatever parses emits and parses back to the same repr.
///
/// # Panics
/// When the round trip differs.
pub fn arp(data: &[u8]) {
    let Ok(packet) = ArpPacket::new_checked(data) else { return };
    let Ok(repr) = ArpRepr::parse(&packet) else { return };
    let mut bytes = [0u8; ARP_PACKET_LEN];
    repr.emit(&mut bytes);
    let again = ArpRepr::parse(&ArpPacket::new_checked(&bytes[..]).expect("emitted packet"));
    assert_eq!(again.expect("emitted packet parses"), repr);
}

/// IPv4: whatever parses (checksum unchecked, to reach further) emits with a valid checksum and parses back
/// to the same repr and payload.
///
/// # Panics
/// When the round trip differs.
pub fn ipv4(data: &[u8]) {
    let Ok(packet) = Ipv4Packet::new_checked(data) else { return };
    let _ = (packet.options(), packet.verify_checksum(), packet.is_fragment());
    let Ok(repr) = Ipv4Repr::parse(&packet, false) else { return };
    let mut bytes = vec![0u8; repr.buffer_len()];
    repr.emit(&mut bytes);
    bytes[repr.header_len()..].copy_from_slice(packet.payload());
    let emitted = Ipv4Packet::new_checked(&bytes[..]).expect("emitted packet");
    assert_eq!(Ipv4Repr::parse(&emitted, true).expect("emitted packet parses"), repr);
    assert_eq!(emitted.payload(), packet.payload());
}

/// ICMPv4: whatever parses (checksum unchecked) emits with a valid checksum and parses back to the same repr.
///
/// # Panics
/// When the round trip differs.
pub fn icmpv4(data: &[u8]) {
    let Ok(packet) = Icmpv4Packet::new_checked(data) else { return };
    let Ok(repr) = Icmpv4Repr::parse(&packet, false) else { return };
    let mut bytes = vec![0u8; repr.buffer_len()];
    repr.emit(&mut bytes);
    let emitted = Icmpv4Packet::new_checked(&bytes[..]).expect("emitted packet");
    assert_eq!(Icmpv4Repr::parse(&emitted, true).expect("emitted packet parses"), repr);
}

/// UDP (input: source and destination address, 8 bytes, then the datagram): whatever parses (checksum
/// unchecked) emits with a valid, non-zero checksum and parses back to the same repr and payload.
///
/// # Panics
/// When the round trip differs.
pub fn udp(data: &[u8]) {
    let Some((src, dst, datagram)) = split_addresses(data) else { return };
    let Ok(packet) = UdpPacket::new_checked(datagram) else { return };
    let _ = packet.verify_checksum(src, dst);
    let Ok(repr) = UdpRepr::parse(&packet, src, dst, false) else { return };
    let mut bytes = vec![0u8; datagram.len()];
    repr.emit(&mut bytes, packet.payload().len());
    bytes[UDP_HEADER_LEN..].copy_from_slice(packet.payload());
    fill_udp_checksum(&mut bytes, src, dst);
    let emitted = UdpPacket::new_checked(&bytes[..]).expect("emitted datagram");
    assert_ne!(emitted.checksum(), 0);
    assert_eq!(UdpRepr::parse(&emitted, src, dst, true).expect("emitted datagram parses"), repr);
    assert_eq!(emitted.payload(), packet.payload());
}

/// TCP header and options (input: source and destination address, 8 bytes, then the segment): whatever
/// parses (checksum unchecked, to reach the options) emits with a valid checksum and parses back to the same
/// repr and payload.
///
/// # Panics
/// When the round trip differs.
pub fn tcp(data: &[u8]) {
    let Some((src, dst, segment)) = split_addresses(data) else { return };
    let Ok(packet) = TcpPacket::new_checked(segment) else { return };
    let _ = packet.verify_checksum(src, dst);
    let Ok(repr) = TcpRepr::parse(&packet, src, dst, false) else { return };
    let header_len = repr.header_len();
    assert!(header_len % 4 == 0 && header_len <= 60, "header length {header_len}");
    let mut bytes = vec![0u8; header_len + packet.payload().len()];
    repr.emit(&mut bytes);
    bytes[header_len..].copy_from_slice(packet.payload());
    fill_tcp_checksum(&mut bytes, src, dst);
    let emitted = TcpPacket::new_checked(&bytes[..]).expect("emitted segment");
    let again = TcpRepr::parse(&emitted, src, dst, true).expect("emitted segment parses");
    assert_eq!(again, TcpRepr { payload_offset: header_len, ..repr });
    assert_eq!(emitted.payload(), packet.payload());
}
