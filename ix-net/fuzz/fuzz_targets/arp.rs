//! Fuzzes the ARP packet view and repr: whatever parses must emit and parse
//! back to the same repr.
#![no_main]

use ix_net::wire::{ARP_PACKET_LEN, ArpPacket, ArpRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = ArpPacket::new_checked(data) else {
        return;
    };
    let Ok(repr) = ArpRepr::parse(&packet) else {
        return;
    };
    let mut bytes = [0u8; ARP_PACKET_LEN];
    repr.emit(&mut bytes);
    let again = ArpRepr::parse(&ArpPacket::new_checked(&bytes[..]).unwrap()).unwrap();
    assert_eq!(repr, again);
});
