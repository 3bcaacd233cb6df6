//! ARP for Ethernet and IPv4 (RFC 826): the packet view and its repr. Other
//! hardware or protocol types are rejected as unsupported.

use std::net::Ipv4Addr;

use super::field::{Field, read_ipv4, read_u16, write_u16};
use super::{EthernetAddress, WireError, byte_view, numbered_enum};

numbered_enum! {
    /// The ARP operation code.
    pub enum ArpOperation(u16) {
        /// Who has `target_ip`? Tell `source_ip`.
        Request = 1,
        /// `source_ip` is at `source_hw`.
        Reply = 2,
    }
}

/// Length of an ARP packet for Ethernet and IPv4.
pub const ARP_PACKET_LEN: usize = 28;

const HARDWARE_TYPE_ETHERNET: u16 = 1;
const PROTOCOL_TYPE_IPV4: u16 = 0x0800;
const HARDWARE_LEN_ETHERNET: u8 = 6;
const PROTOCOL_LEN_IPV4: u8 = 4;

mod fields {
    use super::Field;
    pub(super) const HARDWARE_TYPE: Field = 0..2;
    pub(super) const PROTOCOL_TYPE: Field = 2..4;
    pub(super) const HARDWARE_LEN: usize = 4;
    pub(super) const PROTOCOL_LEN: usize = 5;
    pub(super) const OPERATION: Field = 6..8;
    pub(super) const SOURCE_HW: Field = 8..14;
    pub(super) const SOURCE_IP: Field = 14..18;
    pub(super) const TARGET_HW: Field = 18..24;
    pub(super) const TARGET_IP: Field = 24..28;
}

byte_view! {
    /// A view of an Ethernet/IPv4 ARP packet over a byte buffer.
    pub struct ArpPacket;
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Checks that the buffer holds a whole Ethernet/IPv4 ARP packet.
    /// Trailing bytes (Ethernet padding) are allowed.
    ///
    /// # Errors
    /// [`WireError::Truncated`] if it does not.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < ARP_PACKET_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The hardware type (1 for Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::HARDWARE_TYPE)
    }

    /// The protocol type (0x0800 for IPv4).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::PROTOCOL_TYPE)
    }

    /// The hardware address length (6 for Ethernet).
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[fields::HARDWARE_LEN]
    }

    /// The protocol address length (4 for IPv4).
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[fields::PROTOCOL_LEN]
    }

    /// The operation.
    #[inline]
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(read_u16(self.buffer.as_ref(), fields::OPERATION))
    }

    /// The sender's hardware address.
    #[inline]
    pub fn source_hw(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[fields::SOURCE_HW])
    }

    /// The sender's IPv4 address.
    #[inline]
    pub fn source_ip(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), fields::SOURCE_IP)
    }

    /// The target's hardware address (zero in a request).
    #[inline]
    pub fn target_hw(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[fields::TARGET_HW])
    }

    /// The target's IPv4 address.
    #[inline]
    pub fn target_ip(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), fields::TARGET_IP)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware and protocol types and lengths to Ethernet and IPv4.
    #[inline]
    pub fn set_ethernet_ipv4_types(&mut self) {
        let data = self.buffer.as_mut();
        write_u16(data, fields::HARDWARE_TYPE, HARDWARE_TYPE_ETHERNET);
        write_u16(data, fields::PROTOCOL_TYPE, PROTOCOL_TYPE_IPV4);
        data[fields::HARDWARE_LEN] = HARDWARE_LEN_ETHERNET;
        data[fields::PROTOCOL_LEN] = PROTOCOL_LEN_IPV4;
    }

    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, operation: ArpOperation) {
        write_u16(self.buffer.as_mut(), fields::OPERATION, operation.into());
    }

    /// Sets the sender's hardware address.
    #[inline]
    pub fn set_source_hw(&mut self, address: EthernetAddress) {
        self.buffer.as_mut()[fields::SOURCE_HW].copy_from_slice(&address.0);
    }

    /// Sets the sender's IPv4 address.
    #[inline]
    pub fn set_source_ip(&mut self, address: Ipv4Addr) {
        self.buffer.as_mut()[fields::SOURCE_IP].copy_from_slice(&address.octets());
    }

    /// Sets the target's hardware address.
    #[inline]
    pub fn set_target_hw(&mut self, address: EthernetAddress) {
        self.buffer.as_mut()[fields::TARGET_HW].copy_from_slice(&address.0);
    }

    /// Sets the target's IPv4 address.
    #[inline]
    pub fn set_target_ip(&mut self, address: Ipv4Addr) {
        self.buffer.as_mut()[fields::TARGET_IP].copy_from_slice(&address.octets());
    }
}

/// The logical content of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request, reply, or another code kept as read.
    pub operation: ArpOperation,
    /// The sender's hardware address.
    pub source_hw: EthernetAddress,
    /// The sender's IPv4 address.
    pub source_ip: Ipv4Addr,
    /// The target's hardware address.
    pub target_hw: EthernetAddress,
    /// The target's IPv4 address.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Reads a checked ARP packet.
    ///
    /// # Errors
    /// [`WireError::Unsupported`] if the hardware type is not Ethernet, the
    /// protocol type not IPv4, or the address lengths not 6 and 4.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr, WireError> {
        if packet.hardware_type() != HARDWARE_TYPE_ETHERNET
            || packet.protocol_type() != PROTOCOL_TYPE_IPV4
            || packet.hardware_len() != HARDWARE_LEN_ETHERNET
            || packet.protocol_len() != PROTOCOL_LEN_IPV4
        {
            return Err(WireError::Unsupported);
        }
        Ok(ArpRepr {
            operation: packet.operation(),
            source_hw: packet.source_hw(),
            source_ip: packet.source_ip(),
            target_hw: packet.target_hw(),
            target_ip: packet.target_ip(),
        })
    }

    /// Length of the packet this repr emits: [`ARP_PACKET_LEN`].
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        ARP_PACKET_LEN
    }

    /// Writes the packet into the start of `buf`.
    ///
    /// # Panics
    /// Panics if `buf` is shorter than [`ARP_PACKET_LEN`].
    pub fn emit(&self, buf: &mut [u8]) {
        let mut packet = ArpPacket::new_unchecked(&mut buf[..ARP_PACKET_LEN]);
        packet.set_ethernet_ipv4_types();
        packet.set_operation(self.operation);
        packet.set_source_hw(self.source_hw);
        packet.set_source_ip(self.source_ip);
        packet.set_target_hw(self.target_hw);
        packet.set_target_ip(self.target_ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "Who has 192.168.1.1? Tell 192.168.1.100", as Linux sends it, with the
    /// 18 bytes of zero padding that make the Ethernet frame 60 bytes long.
    const REQUEST_WITH_PADDING: [u8; 46] = [
        0x00, 0x01, // hardware type: Ethernet
        0x08, 0x00, // protocol type: IPv4
        0x06, 0x04, // address lengths
        0x00, 0x01, // request
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // sender MAC
        192, 168, 1, 100, // sender IP
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target MAC (unknown)
        192, 168, 1, 1, // target IP
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    #[test]
    fn parses_linux_request_with_padding() {
        let packet = ArpPacket::new_checked(&REQUEST_WITH_PADDING[..]).unwrap();
        let repr = ArpRepr::parse(&packet).unwrap();
        assert_eq!(repr.operation, ArpOperation::Request);
        assert_eq!(repr.source_hw, EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(repr.source_ip, Ipv4Addr::new(192, 168, 1, 100));
        assert_eq!(repr.target_hw, EthernetAddress([0; 6]));
        assert_eq!(repr.target_ip, Ipv4Addr::new(192, 168, 1, 1));
    }

    #[test]
    fn emit_then_parse_round_trips() {
        let repr = ArpRepr {
            operation: ArpOperation::Reply,
            source_hw: EthernetAddress([2, 0, 0, 0, 0, 2]),
            source_ip: Ipv4Addr::new(10, 0, 0, 2),
            target_hw: EthernetAddress([2, 0, 0, 0, 0, 1]),
            target_ip: Ipv4Addr::new(10, 0, 0, 1),
        };
        let mut bytes = [0u8; ARP_PACKET_LEN];
        repr.emit(&mut bytes);
        let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(ArpRepr::parse(&packet).unwrap(), repr);
        assert_eq!(&bytes[..8], &[0, 1, 8, 0, 6, 4, 0, 2]);
    }

    #[test]
    fn every_truncation_is_rejected() {
        for len in 0..ARP_PACKET_LEN {
            assert_eq!(ArpPacket::new_checked(&REQUEST_WITH_PADDING[..len]), Err(WireError::Truncated));
        }
    }

    #[test]
    fn other_hardware_or_protocol_types_are_unsupported() {
        for (at, value) in [(1, 6), (2, 0x86), (4, 8), (5, 16)] {
            let mut bytes = REQUEST_WITH_PADDING;
            bytes[at] = value;
            let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
            assert_eq!(ArpRepr::parse(&packet), Err(WireError::Unsupported));
        }
    }

    #[test]
    fn unknown_operation_is_kept() {
        let mut bytes = REQUEST_WITH_PADDING;
        bytes[7] = 9;
        let packet = ArpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(ArpRepr::parse(&packet).unwrap().operation, ArpOperation::Unknown(9));
    }
}
