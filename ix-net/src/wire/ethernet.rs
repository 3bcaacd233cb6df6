//! Ethernet II frames: MAC addresses, the EtherType, the frame view and its
//! repr.

use core::fmt;

use super::field::{Field, read_u16, write_u16};
use super::{WireError, byte_view, numbered_enum};

/// A 48-bit Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Reads an address from the first six bytes of `bytes`.
    ///
    /// # Panics
    /// Panics if `bytes` is shorter than six bytes.
    #[inline]
    pub fn from_bytes(bytes: &[u8]) -> EthernetAddress {
        let mut address = [0; 6];
        address.copy_from_slice(&bytes[..6]);
        EthernetAddress(address)
    }

    /// The six address bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// Whether this is the broadcast address.
    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether the group bit is set (multicast, including broadcast).
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is a unicast address (group bit clear).
    #[inline]
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

numbered_enum! {
    /// The EtherType field: which protocol the frame carries.
    pub enum EtherType(u16) {
        /// IPv4 (0x0800).
        Ipv4 = 0x0800,
        /// ARP (0x0806).
        Arp = 0x0806,
    }
}

/// Length of an Ethernet II header: two addresses and the EtherType.
pub const ETHERNET_HEADER_LEN: usize = 14;

mod fields {
    use super::Field;
    pub(super) const DESTINATION: Field = 0..6;
    pub(super) const SOURCE: Field = 6..12;
    pub(super) const ETHERTYPE: Field = 12..14;
    pub(super) const PAYLOAD_START: usize = 14;
}

byte_view! {
    /// A view of an Ethernet II frame over a byte buffer.
    pub struct EthernetFrame;
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Checks that the buffer holds a whole header.
    ///
    /// # Errors
    /// [`WireError::Truncated`] if the buffer is shorter than the header.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < ETHERNET_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The destination address.
    #[inline]
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[fields::DESTINATION])
    }

    /// The source address.
    #[inline]
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[fields::SOURCE])
    }

    /// The EtherType.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(read_u16(self.buffer.as_ref(), fields::ETHERTYPE))
    }

    /// Everything after the header, including any trailing padding.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[fields::PAYLOAD_START..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, address: EthernetAddress) {
        self.buffer.as_mut()[fields::DESTINATION].copy_from_slice(&address.0);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, address: EthernetAddress) {
        self.buffer.as_mut()[fields::SOURCE].copy_from_slice(&address.0);
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        write_u16(self.buffer.as_mut(), fields::ETHERTYPE, ethertype.into());
    }

    /// Everything after the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[fields::PAYLOAD_START..]
    }
}

/// The logical Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source address.
    pub src: EthernetAddress,
    /// Destination address.
    pub dst: EthernetAddress,
    /// Protocol of the payload.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Reads the header of a checked frame.
    ///
    /// # Errors
    /// None today (every header is representable); the `Result` keeps the
    /// shape of the other parsers.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr, WireError> {
        Ok(EthernetRepr { src: frame.src_addr(), dst: frame.dst_addr(), ethertype: frame.ethertype() })
    }

    /// Length of the header this repr emits: [`ETHERNET_HEADER_LEN`].
    #[inline]
    pub const fn header_len(&self) -> usize {
        ETHERNET_HEADER_LEN
    }

    /// Writes the header into the start of `buf`.
    ///
    /// # Panics
    /// Panics if `buf` is shorter than [`ETHERNET_HEADER_LEN`].
    #[inline]
    pub fn emit(&self, buf: &mut [u8]) {
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..ETHERNET_HEADER_LEN]);
        frame.set_dst_addr(self.dst);
        frame.set_src_addr(self.src);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broadcast ARP frame header as captured from Linux.
    const ARP_BROADCAST_HEADER: [u8; 14] =
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06];

    #[test]
    fn parses_broadcast_arp_header() {
        let frame = EthernetFrame::new_checked(&ARP_BROADCAST_HEADER[..]).unwrap();
        let repr = EthernetRepr::parse(&frame).unwrap();
        assert!(repr.dst.is_broadcast());
        assert!(repr.dst.is_multicast());
        assert!(repr.src.is_unicast());
        assert_eq!(repr.src.to_string(), "52:54:00:12:34:56");
        assert_eq!(repr.ethertype, EtherType::Arp);
        assert!(frame.payload().is_empty());
    }

    #[test]
    fn emit_then_parse_round_trips() {
        let repr = EthernetRepr {
            src: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst: EthernetAddress([1, 0, 0x5e, 0, 0, 1]),
            ethertype: EtherType::Unknown(0x86dd),
        };
        let mut bytes = [0u8; ETHERNET_HEADER_LEN + 4];
        repr.emit(&mut bytes);
        let frame = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(EthernetRepr::parse(&frame).unwrap(), repr);
        assert!(repr.dst.is_multicast() && !repr.dst.is_broadcast());
        assert_eq!(frame.payload().len(), 4);
    }

    #[test]
    fn every_truncation_is_rejected() {
        for len in 0..ETHERNET_HEADER_LEN {
            assert_eq!(EthernetFrame::new_checked(&ARP_BROADCAST_HEADER[..len]), Err(WireError::Truncated));
        }
    }

    #[test]
    fn ethertype_numbers_convert_both_ways() {
        assert_eq!(EtherType::from(0x0800), EtherType::Ipv4);
        assert_eq!(u16::from(EtherType::Arp), 0x0806);
        assert_eq!(u16::from(EtherType::Unknown(0x88cc)), 0x88cc);
    }
}
