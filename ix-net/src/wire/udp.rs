//! UDP (RFC 768): the datagram view, its repr, and the checksum over the IPv4
//! pseudo-header.

use std::net::Ipv4Addr;

use super::checksum;
use super::field::{Field, read_u16, write_u16};
use super::{IpProtocol, WireError, byte_view};

/// Length of the UDP header.
pub const UDP_HEADER_LEN: usize = 8;

mod fields {
    use super::Field;
    pub(super) const SOURCE_PORT: Field = 0..2;
    pub(super) const DESTINATION_PORT: Field = 2..4;
    pub(super) const LENGTH: Field = 4..6;
    pub(super) const CHECKSUM: Field = 6..8;
}

byte_view! {
    /// A view of a UDP datagram over a byte buffer holding exactly the datagram
    /// (the IPv4 payload).
    pub struct UdpPacket;
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Checks that the buffer holds the header and that the length field
    /// equals the buffer length (the IPv4 payload length).
    ///
    /// # Errors
    /// [`WireError::Truncated`] if the buffer is shorter than the header;
    /// [`WireError::BadLength`] if the length field differs from the buffer
    /// length.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < UDP_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if usize::from(self.len()) != len {
            return Err(WireError::BadLength);
        }
        Ok(())
    }

    /// The source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::SOURCE_PORT)
    }

    /// The destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::DESTINATION_PORT)
    }

    /// The length field: header plus payload.
    #[inline]
    #[allow(clippy::len_without_is_empty)] // a datagram is never empty: the header is 8 bytes
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::LENGTH)
    }

    /// The checksum field (0 means the sender computed none).
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::CHECKSUM)
    }

    /// Whether the checksum is absent (0) or valid under the pseudo-header.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || checksum::verify_transport(src, dst, IpProtocol::Udp.into(), self.buffer.as_ref())
    }

    /// The payload after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[UDP_HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::SOURCE_PORT, value);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::DESTINATION_PORT, value);
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::LENGTH, value);
    }

    /// Sets the checksum field to `value` as is.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::CHECKSUM, value);
    }

    /// The payload after the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[UDP_HEADER_LEN..]
    }
}

/// The logical UDP header; the length comes from the enclosing IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Reads a checked datagram carried from `src` to `dst`. A non-zero
    /// checksum is verified against the pseudo-header if `verify_checksum`;
    /// a zero checksum means none was sent and is accepted.
    ///
    /// # Errors
    /// [`WireError::BadChecksum`] if asked to verify and the checksum is
    /// wrong.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        verify_checksum: bool,
    ) -> Result<UdpRepr, WireError> {
        if verify_checksum && !packet.verify_checksum(src, dst) {
            return Err(WireError::BadChecksum);
        }
        Ok(UdpRepr { src_port: packet.src_port(), dst_port: packet.dst_port() })
    }

    /// Length of the header this repr emits: [`UDP_HEADER_LEN`].
    #[inline]
    pub const fn header_len(&self) -> usize {
        UDP_HEADER_LEN
    }

    /// Writes the header into the start of `buf`, with the length field
    /// covering `payload_len` bytes of payload and a zero checksum; call
    /// [`fill_udp_checksum`] once the payload is in place.
    ///
    /// # Panics
    /// Panics if `buf` is shorter than [`UDP_HEADER_LEN`] or the datagram
    /// length does not fit in 16 bits.
    pub fn emit(&self, buf: &mut [u8], payload_len: usize) {
        let length = u16::try_from(UDP_HEADER_LEN + payload_len).expect("UDP datagram longer than 65535 bytes");
        let mut packet = UdpPacket::new_unchecked(&mut buf[..UDP_HEADER_LEN]);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(length);
        packet.set_checksum(0);
    }
}

/// Computes the checksum of a whole UDP datagram (header and payload) carried
/// from `src` to `dst` and stores it; a computed 0 is sent as 0xffff, since 0
/// means "no checksum".
///
/// # Panics
/// Panics if `datagram` is shorter than [`UDP_HEADER_LEN`] or longer than
/// 65535 bytes.
pub fn fill_udp_checksum(datagram: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
    let mut packet = UdpPacket::new_unchecked(datagram);
    packet.set_checksum(0);
    let value = checksum::transport_checksum(src, dst, IpProtocol::Udp.into(), packet.buffer);
    packet.set_checksum(if value == 0 { 0xffff } else { value });
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 100);
    const DST: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);

    /// A DNS query header and 4 payload bytes, checksum filled in.
    fn dns_query() -> [u8; 12] {
        let mut bytes = [0xd4, 0x31, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 0xab, 0xcd, 0x01, 0x00];
        fill_udp_checksum(&mut bytes, SRC, DST);
        bytes
    }

    #[test]
    fn parses_query_and_verifies_checksum() {
        let bytes = dns_query();
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        let repr = UdpRepr::parse(&packet, SRC, DST, true).unwrap();
        assert_eq!(repr, UdpRepr { src_port: 54321, dst_port: 53 });
        assert_eq!(packet.payload(), &[0xab, 0xcd, 0x01, 0x00]);
    }

    #[test]
    fn emit_then_parse_round_trips() {
        let repr = UdpRepr { src_port: 5000, dst_port: 6000 };
        let mut bytes = [0u8; 13];
        repr.emit(&mut bytes, 5);
        bytes[8..].copy_from_slice(b"hello");
        fill_udp_checksum(&mut bytes, SRC, DST);
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(UdpRepr::parse(&packet, SRC, DST, true).unwrap(), repr);
    }

    #[test]
    fn zero_checksum_means_none_and_is_accepted() {
        let mut bytes = dns_query();
        bytes[6..8].fill(0);
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(UdpRepr::parse(&packet, SRC, DST, true).is_ok());
    }

    #[test]
    fn computed_zero_checksum_is_sent_as_ffff() {
        // Choose the payload word so that the whole sum is 0xffff.
        let mut bytes = [0u8; 10];
        UdpRepr { src_port: 1, dst_port: 2 }.emit(&mut bytes, 2);
        let sum = checksum::fold(checksum::accumulate(
            checksum::ipv4_pseudo_header_sum(SRC, DST, IpProtocol::Udp.into(), 10),
            &bytes,
        ));
        bytes[8..10].copy_from_slice(&(!sum).to_be_bytes());
        fill_udp_checksum(&mut bytes, SRC, DST);
        assert_eq!(&bytes[6..8], &[0xff, 0xff]);
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(packet.verify_checksum(SRC, DST));
    }

    #[test]
    fn wrong_addresses_are_bad_checksum() {
        let bytes = dns_query();
        let packet = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(UdpRepr::parse(&packet, SRC, SRC, true), Err(WireError::BadChecksum));
    }

    #[test]
    fn length_field_mismatch_is_bad_length() {
        for length in [0u16, 7, 11, 13, 0xffff] {
            let mut bytes = dns_query();
            bytes[4..6].copy_from_slice(&length.to_be_bytes());
            assert_eq!(UdpPacket::new_checked(&bytes[..]), Err(WireError::BadLength));
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = dns_query();
        for len in 0..bytes.len() {
            assert!(UdpPacket::new_checked(&bytes[..len]).is_err(), "length {len}");
        }
    }
}
