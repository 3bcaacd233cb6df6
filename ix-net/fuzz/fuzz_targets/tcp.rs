//! Fuzzes the TCP view, options parser and repr. Input: source and
//! destination IPv4 addresses (8 bytes), then the segment. Whatever parses
//! (checksum unchecked, to reach the options) must emit, with a valid
//! checksum, and parse back to the same repr.
#![no_main]

use ix_net::wire::{TcpPacket, TcpRepr, fill_tcp_checksum};
use ix_net_fuzz::split_addresses;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((src, dst, segment)) = split_addresses(data) else {
        return;
    };
    let Ok(packet) = TcpPacket::new_checked(segment) else {
        return;
    };
    let _ = packet.verify_checksum(src, dst);
    let Ok(repr) = TcpRepr::parse(&packet, src, dst, false) else {
        return;
    };
    let header_len = repr.header_len();
    assert!(header_len % 4 == 0 && header_len <= 60);
    let mut bytes = vec![0u8; header_len + packet.payload().len()];
    repr.emit(&mut bytes);
    bytes[header_len..].copy_from_slice(packet.payload());
    fill_tcp_checksum(&mut bytes, src, dst);
    let emitted = TcpPacket::new_checked(&bytes[..]).unwrap();
    let again = TcpRepr::parse(&emitted, src, dst, true).unwrap();
    assert_eq!(
        again,
        TcpRepr {
            payload_offset: header_len,
            ..repr
        }
    );
    assert_eq!(emitted.payload(), packet.payload());
});
