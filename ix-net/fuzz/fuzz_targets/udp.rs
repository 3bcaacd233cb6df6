//! Fuzzes the UDP view and repr. Input: source and destination IPv4
//! addresses (8 bytes), then the datagram. Whatever parses (checksum
//! unchecked, to reach further) must emit, with a valid checksum, and parse
//! back to the same repr and payload.
#![no_main]

use ix_net::wire::{UDP_HEADER_LEN, UdpPacket, UdpRepr, fill_udp_checksum};
use ix_net_fuzz::split_addresses;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((src, dst, datagram)) = split_addresses(data) else {
        return;
    };
    let Ok(packet) = UdpPacket::new_checked(datagram) else {
        return;
    };
    let _ = packet.verify_checksum(src, dst);
    let Ok(repr) = UdpRepr::parse(&packet, src, dst, false) else {
        return;
    };
    let mut bytes = vec![0u8; datagram.len()];
    repr.emit(&mut bytes, packet.payload().len());
    bytes[UDP_HEADER_LEN..].copy_from_slice(packet.payload());
    fill_udp_checksum(&mut bytes, src, dst);
    let emitted = UdpPacket::new_checked(&bytes[..]).unwrap();
    assert_ne!(emitted.checksum(), 0);
    assert_eq!(UdpRepr::parse(&emitted, src, dst, true).unwrap(), repr);
    assert_eq!(emitted.payload(), packet.payload());
});
