//! Fuzzes the Ethernet frame view and repr: whatever parses must emit and
//! parse back to the same repr.
#![no_main]

use ix_net::wire::{ETHERNET_HEADER_LEN, EthernetFrame, EthernetRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        return;
    };
    let Ok(repr) = EthernetRepr::parse(&frame) else {
        return;
    };
    let mut bytes = [0u8; ETHERNET_HEADER_LEN];
    repr.emit(&mut bytes);
    let again = EthernetRepr::parse(&EthernetFrame::new_checked(&bytes[..]).unwrap()).unwrap();
    assert_eq!(repr, again);
    assert_eq!(&bytes[..], &data[..ETHERNET_HEADER_LEN]);
});
