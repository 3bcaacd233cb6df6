//! IPv4 (RFC 791): the packet view with its header checksum and fragment
//! fields, the protocol numbers, and the repr. Options are skipped via IHL.

use std::net::Ipv4Addr;

use super::checksum;
use super::field::{Field, read_ipv4, read_u16, write_u16};
use super::{WireError, byte_view, numbered_enum};

numbered_enum! {
    /// The IPv4 protocol field: which transport the packet carries.
    pub enum IpProtocol(u8) {
        /// ICMP (1).
        Icmp = 1,
        /// TCP (6).
        Tcp = 6,
        /// UDP (17).
        Udp = 17,
    }
}

/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;

const FLAG_DONT_FRAGMENT: u16 = 0x4000;
const FLAG_MORE_FRAGMENTS: u16 = 0x2000;
const FRAGMENT_OFFSET_MASK: u16 = 0x1fff;

mod fields {
    use super::Field;
    pub(super) const VERSION_IHL: usize = 0;
    pub(super) const DSCP_ECN: usize = 1;
    pub(super) const TOTAL_LEN: Field = 2..4;
    pub(super) const IDENT: Field = 4..6;
    pub(super) const FLAGS_FRAGMENT_OFFSET: Field = 6..8;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: Field = 10..12;
    pub(super) const SOURCE: Field = 12..16;
    pub(super) const DESTINATION: Field = 16..20;
}

byte_view! {
    /// A view of an IPv4 packet over a byte buffer. The buffer may run past the
    /// packet (Ethernet padding): [`Ipv4Packet::payload`] stops at the total
    /// length.
    pub struct Ipv4Packet;
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks the version and that the header, options included, fits the
    /// buffer, without looking at the total length. This is the check for a
    /// header quoted inside an ICMP error, whose total length describes a
    /// datagram that was cut.
    ///
    /// # Errors
    /// [`WireError::Truncated`] if the buffer is shorter than 20 bytes,
    /// [`WireError::BadVersion`] if the version is not 4,
    /// [`WireError::BadLength`] if IHL is below 5 or the header runs past the
    /// buffer.
    #[inline]
    pub fn check_header_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < IPV4_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 4 {
            return Err(WireError::BadVersion);
        }
        let header_len = self.header_len();
        if header_len < IPV4_HEADER_LEN || header_len > len {
            return Err(WireError::BadLength);
        }
        Ok(())
    }

    /// Checks everything [`check_header_len`](Self::check_header_len) does,
    /// and that the total length covers the header and fits the buffer.
    /// Bytes past the total length (Ethernet padding) are allowed.
    ///
    /// # Errors
    /// As [`check_header_len`](Self::check_header_len), and
    /// [`WireError::BadLength`] if the total length is below the header
    /// length or above the buffer length.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        self.check_header_len()?;
        let total_len = usize::from(self.total_len());
        if total_len < self.header_len() || total_len > self.buffer.as_ref().len() {
            return Err(WireError::BadLength);
        }
        Ok(())
    }

    /// The version field (4 for IPv4).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[fields::VERSION_IHL] >> 4
    }

    /// The header length in bytes, options included (IHL times 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[fields::VERSION_IHL] & 0x0f) * 4
    }

    /// The DSCP and ECN byte (formerly type of service).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[fields::DSCP_ECN]
    }

    /// The total length of the packet, header included.
    #[inline]
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::TOTAL_LEN)
    }

    /// The identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::IDENT)
    }

    /// Whether the don't-fragment flag is set.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), fields::FLAGS_FRAGMENT_OFFSET) & FLAG_DONT_FRAGMENT != 0
    }

    /// Whether the more-fragments flag is set.
    #[inline]
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), fields::FLAGS_FRAGMENT_OFFSET) & FLAG_MORE_FRAGMENTS != 0
    }

    /// The fragment offset in bytes (the field counts 8-byte units).
    #[inline]
    pub fn frag_offset_bytes(&self) -> usize {
        let field = read_u16(self.buffer.as_ref(), fields::FLAGS_FRAGMENT_OFFSET);
        usize::from(field & FRAGMENT_OFFSET_MASK) * 8
    }

    /// Whether this packet is a fragment: more-fragments set or a non-zero
    /// offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset_bytes() != 0
    }

    /// The time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[fields::TTL]
    }

    /// The transport protocol.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[fields::PROTOCOL])
    }

    /// The header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::CHECKSUM)
    }

    /// The source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), fields::SOURCE)
    }

    /// The destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), fields::DESTINATION)
    }

    /// Whether the header checksum (over the header, options included) is
    /// valid.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let header = &self.buffer.as_ref()[..self.header_len()];
        match <&[u8; IPV4_HEADER_LEN]>::try_from(header) {
            Ok(without_options) => checksum::is_valid(checksum::accumulate_ipv4_header(without_options)),
            Err(_) => checksum::is_valid(checksum::accumulate(0, header)),
        }
    }

    /// The option bytes between the fixed header and the payload; not
    /// interpreted by this stack.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[IPV4_HEADER_LEN..self.header_len()]
    }

    /// The payload: from the end of the header to the total length, so
    /// trailing Ethernet padding is left out.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in bytes.
    ///
    /// # Panics
    /// Panics if `header_len` is not a multiple of 4 between 20 and 60.
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        assert!(
            header_len % 4 == 0 && (IPV4_HEADER_LEN..=60).contains(&header_len),
            "IPv4 header length {header_len} is not a multiple of 4 in 20..=60"
        );
        // Checked above: header_len / 4 is at most 15.
        self.buffer.as_mut()[fields::VERSION_IHL] = 0x40 | (header_len / 4) as u8;
    }

    /// Sets the DSCP and ECN byte.
    #[inline]
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[fields::DSCP_ECN] = value;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::TOTAL_LEN, value);
    }

    /// Sets the identification field.
    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::IDENT, value);
    }

    /// Sets the flags and the fragment offset (in bytes, a multiple of 8).
    ///
    /// # Panics
    /// Panics if `offset_bytes` is not a multiple of 8 below 65536.
    #[inline]
    pub fn set_fragment(&mut self, dont_frag: bool, more_frags: bool, offset_bytes: usize) {
        assert!(
            offset_bytes % 8 == 0 && offset_bytes / 8 <= usize::from(FRAGMENT_OFFSET_MASK),
            "fragment offset {offset_bytes} is not a multiple of 8 below 65536"
        );
        let mut field = (offset_bytes / 8) as u16;
        if dont_frag {
            field |= FLAG_DONT_FRAGMENT;
        }
        if more_frags {
            field |= FLAG_MORE_FRAGMENTS;
        }
        write_u16(self.buffer.as_mut(), fields::FLAGS_FRAGMENT_OFFSET, field);
    }

    /// Sets the time to live.
    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[fields::TTL] = value;
    }

    /// Sets the transport protocol.
    #[inline]
    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[fields::PROTOCOL] = value.into();
    }

    /// Sets the header checksum field to `value` as is.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::CHECKSUM, value);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, address: Ipv4Addr) {
        self.buffer.as_mut()[fields::SOURCE].copy_from_slice(&address.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, address: Ipv4Addr) {
        self.buffer.as_mut()[fields::DESTINATION].copy_from_slice(&address.octets());
    }

    /// Computes the header checksum over the header (options included) and
    /// stores it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = self.header_len();
        let value = checksum::checksum(&self.buffer.as_ref()[..header_len]);
        self.set_checksum(value);
    }

    /// The payload, writable (see [`payload`](Ipv4Packet::payload)).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// The logical IPv4 header of an unfragmented packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Transport protocol.
    pub protocol: IpProtocol,
    /// Length of the payload (total length minus header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Don't-fragment flag.
    pub dont_frag: bool,
    /// Identification field.
    pub ident: u16,
    /// DSCP and ECN byte.
    pub dscp_ecn: u8,
}

impl Ipv4Repr {
    /// Reads a checked packet, verifying the header checksum if
    /// `verify_checksum` (pass `false` when the NIC already did).
    ///
    /// # Errors
    /// [`WireError::BadChecksum`] if asked to verify and the checksum is
    /// wrong; [`WireError::Fragmented`] if the packet is a fragment.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>, verify_checksum: bool) -> Result<Ipv4Repr, WireError> {
        if verify_checksum && !packet.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        if packet.is_fragment() {
            return Err(WireError::Fragmented);
        }
        Ok(Self::from_header(packet))
    }

    /// Reads the fields of a header whose length (but not total length) has
    /// been checked: the common part of [`parse`](Self::parse) and of
    /// reading a header quoted by ICMP.
    #[inline]
    pub(crate) fn from_header<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Ipv4Repr {
        Ipv4Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()).saturating_sub(packet.header_len()),
            ttl: packet.ttl(),
            dont_frag: packet.dont_frag(),
            ident: packet.ident(),
            dscp_ecn: packet.dscp_ecn(),
        }
    }

    /// Length of the header this repr emits (no options): [`IPV4_HEADER_LEN`].
    #[inline]
    pub const fn header_len(&self) -> usize {
        IPV4_HEADER_LEN
    }

    /// Length of the whole packet: header plus payload.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        IPV4_HEADER_LEN + self.payload_len
    }

    /// Writes the header, checksum included, into the start of `buf`.
    ///
    /// # Panics
    /// Panics if `buf` is shorter than [`IPV4_HEADER_LEN`] or if the total
    /// length does not fit in 16 bits.
    pub fn emit(&self, buf: &mut [u8]) {
        let total_len = u16::try_from(self.buffer_len()).expect("IPv4 total length above 65535 bytes");
        let mut packet = Ipv4Packet::new_unchecked(&mut buf[..IPV4_HEADER_LEN]);
        packet.set_version_and_header_len(IPV4_HEADER_LEN);
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len(total_len);
        packet.set_ident(self.ident);
        packet.set_fragment(self.dont_frag, false, 0);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP DNS query header (RFC 791 layout), total length 0x3c = 60, with
    /// a valid checksum, followed by 40 payload bytes and 6 of padding.
    fn udp_packet_with_padding() -> [u8; 66] {
        let mut bytes = [0u8; 66];
        bytes[..20].copy_from_slice(&[
            0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x64, 0x08, 0x08,
            0x08, 0x08,
        ]);
        for (i, byte) in bytes[20..60].iter_mut().enumerate() {
            *byte = i as u8;
        }
        Ipv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        bytes
    }

    #[test]
    fn parses_header_and_ignores_ethernet_padding() {
        let bytes = udp_packet_with_padding();
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(packet.verify_checksum());
        let repr = Ipv4Repr::parse(&packet, true).unwrap();
        assert_eq!(repr.src, Ipv4Addr::new(192, 168, 0, 100));
        assert_eq!(repr.dst, Ipv4Addr::new(8, 8, 8, 8));
        assert_eq!(repr.protocol, IpProtocol::Udp);
        assert_eq!(repr.payload_len, 40);
        assert_eq!((repr.ttl, repr.dont_frag, repr.ident), (64, true, 0x1c46));
        assert_eq!(packet.payload().len(), 40);
        assert_eq!(packet.payload()[39], 39);
    }

    #[test]
    fn emit_then_parse_round_trips() {
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IpProtocol::Unknown(132),
            payload_len: 12,
            ttl: 7,
            dont_frag: false,
            ident: 0xbeef,
            dscp_ecn: 0xb8,
        };
        let mut bytes = [0u8; 32];
        repr.emit(&mut bytes);
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet, true).unwrap(), repr);
    }

    #[test]
    fn options_are_skipped_via_ihl() {
        let mut bytes = [0u8; 32];
        bytes[..20].copy_from_slice(&udp_packet_with_padding()[..20]);
        bytes[0] = 0x46; // IHL 6: four bytes of options
        bytes[3] = 32;
        bytes[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]); // router alert
        bytes[24] = 0xaa;
        Ipv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(packet.payload()[0], 0xaa);
        assert_eq!(Ipv4Repr::parse(&packet, true).unwrap().payload_len, 8);
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = udp_packet_with_padding();
        for len in 0..60 {
            assert!(Ipv4Packet::new_checked(&bytes[..len]).is_err(), "length {len}");
        }
    }

    #[test]
    fn total_length_beyond_buffer_is_bad_length() {
        let mut bytes = udp_packet_with_padding();
        bytes[2..4].copy_from_slice(&67u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&bytes[..]), Err(WireError::BadLength));
    }

    #[test]
    fn total_length_below_header_is_bad_length() {
        let mut bytes = udp_packet_with_padding();
        bytes[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&bytes[..]), Err(WireError::BadLength));
    }

    #[test]
    fn ihl_below_five_is_bad_length() {
        for ihl in 0..5 {
            let mut bytes = udp_packet_with_padding();
            bytes[0] = 0x40 | ihl;
            assert_eq!(Ipv4Packet::new_checked(&bytes[..]), Err(WireError::BadLength));
        }
    }

    #[test]
    fn ihl_past_the_buffer_is_bad_length() {
        let bytes = udp_packet_with_padding();
        let mut short = [0u8; 40];
        short.copy_from_slice(&bytes[..40]);
        short[0] = 0x4f; // 60-byte header in a 40-byte buffer
        assert_eq!(Ipv4Packet::new_checked(&short[..]), Err(WireError::BadLength));
    }

    #[test]
    fn version_six_is_bad_version() {
        let mut bytes = udp_packet_with_padding();
        bytes[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&bytes[..]), Err(WireError::BadVersion));
    }

    #[test]
    fn corrupted_header_is_bad_checksum_unless_unverified() {
        let mut bytes = udp_packet_with_padding();
        bytes[8] ^= 0x01; // TTL
        let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet, true), Err(WireError::BadChecksum));
        assert!(Ipv4Repr::parse(&packet, false).is_ok());
    }

    #[test]
    fn fragments_are_reported_and_rejected() {
        for (more_frags, offset_bytes) in [(true, 0), (false, 8), (true, 1480)] {
            let mut bytes = udp_packet_with_padding();
            let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
            packet.set_fragment(false, more_frags, offset_bytes);
            packet.fill_checksum();
            let packet = Ipv4Packet::new_checked(&bytes[..]).unwrap();
            assert!(packet.is_fragment());
            assert_eq!(packet.more_frags(), more_frags);
            assert_eq!(packet.frag_offset_bytes(), offset_bytes);
            assert_eq!(Ipv4Repr::parse(&packet, true), Err(WireError::Fragmented));
        }
    }
}
