//! Fuzzes the ICMPv4 view and repr: whatever parses (checksum unchecked, to
//! reach further) must emit, with a valid checksum, and parse back to the
//! same repr.
#![no_main]

use ix_net::wire::{Icmpv4Packet, Icmpv4Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Icmpv4Packet::new_checked(data) else {
        return;
    };
    let Ok(repr) = Icmpv4Repr::parse(&packet, false) else {
        return;
    };
    let mut bytes = vec![0u8; repr.buffer_len()];
    repr.emit(&mut bytes);
    let emitted = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(Icmpv4Repr::parse(&emitted, true).unwrap(), repr);
});
