//! Fuzzes the IPv4 packet view and repr: whatever parses (checksum unchecked,
//! to reach further) must emit, with a valid checksum, and parse back to the
//! same repr and payload.
#![no_main]

use ix_net::wire::{Ipv4Packet, Ipv4Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Ipv4Packet::new_checked(data) else {
        return;
    };
    let _ = (
        packet.options(),
        packet.verify_checksum(),
        packet.is_fragment(),
    );
    let Ok(repr) = Ipv4Repr::parse(&packet, false) else {
        return;
    };
    let mut bytes = vec![0u8; repr.buffer_len()];
    repr.emit(&mut bytes);
    bytes[repr.header_len()..].copy_from_slice(packet.payload());
    let emitted = Ipv4Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(Ipv4Repr::parse(&emitted, true).unwrap(), repr);
    assert_eq!(emitted.payload(), packet.payload());
});
