//! ICMPv4 (RFC 792): echo request and reply, and destination unreachable with
//! the IPv4 header it quotes. Other message types are unsupported.

use super::checksum;
use super::field::{Field, read_u16, write_u16};
use super::{IPV4_HEADER_LEN, Ipv4Packet, Ipv4Repr, WireError, byte_view, numbered_enum};

numbered_enum! {
    /// The code of a destination unreachable message.
    pub enum Icmpv4DstUnreachable(u8) {
        /// Network unreachable (0).
        NetUnreachable = 0,
        /// Host unreachable (1).
        HostUnreachable = 1,
        /// Protocol unreachable (2).
        ProtoUnreachable = 2,
        /// Port unreachable (3).
        PortUnreachable = 3,
        /// Fragmentation needed and don't-fragment set (4); carries the
        /// next-hop MTU (RFC 1191).
        FragRequired = 4,
        /// Source route failed (5).
        SrcRouteFailed = 5,
        /// Communication administratively prohibited (13, RFC 1812).
        AdminProhibited = 13,
    }
}

/// Length of the ICMPv4 header: type, code, checksum and four bytes that
/// depend on the type.
pub const ICMPV4_HEADER_LEN: usize = 8;

/// Bytes of the original datagram's payload that an error must quote after
/// its IP header (RFC 792: 64 bits), enough for TCP and UDP ports.
const QUOTED_PAYLOAD_MIN_LEN: usize = 8;

const TYPE_ECHO_REPLY: u8 = 0;
const TYPE_DST_UNREACHABLE: u8 = 3;
const TYPE_ECHO_REQUEST: u8 = 8;

mod fields {
    use super::Field;
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: Field = 2..4;
    pub(super) const ECHO_IDENT: Field = 4..6;
    pub(super) const ECHO_SEQ_NO: Field = 6..8;
    pub(super) const UNREACHABLE_UNUSED: Field = 4..6;
    pub(super) const UNREACHABLE_NEXT_HOP_MTU: Field = 6..8;
    pub(super) const DATA_START: usize = 8;
}

byte_view! {
    /// A view of an ICMPv4 message over a byte buffer (the whole IPv4 payload).
    pub struct Icmpv4Packet;
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Checks that the buffer holds the header.
    ///
    /// # Errors
    /// [`WireError::Truncated`] if it does not.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < ICMPV4_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[fields::TYPE]
    }

    /// The message code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[fields::CODE]
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::CHECKSUM)
    }

    /// The echo identifier (meaningful for echo messages).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::ECHO_IDENT)
    }

    /// The echo sequence number (meaningful for echo messages).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::ECHO_SEQ_NO)
    }

    /// The next-hop MTU (meaningful for "fragmentation required").
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(self.buffer.as_ref(), fields::UNREACHABLE_NEXT_HOP_MTU)
    }

    /// Everything after the 8-byte header: echo data, or the quoted datagram.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[fields::DATA_START..]
    }

    /// Whether the checksum over the whole message is valid.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::is_valid(checksum::accumulate(0, self.buffer.as_ref()))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[fields::TYPE] = value;
    }

    /// Sets the message code.
    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[fields::CODE] = value;
    }

    /// Sets the checksum field to `value` as is.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::CHECKSUM, value);
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::ECHO_SEQ_NO, value);
    }

    /// Sets the unused half-word to zero and the next-hop MTU.
    #[inline]
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), fields::UNREACHABLE_UNUSED, 0);
        write_u16(self.buffer.as_mut(), fields::UNREACHABLE_NEXT_HOP_MTU, value);
    }

    /// Everything after the header, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[fields::DATA_START..]
    }

    /// Computes the checksum over the whole buffer and stores it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let value = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(value);
    }
}

/// The logical content of the ICMPv4 messages this stack handles. Data is
/// borrowed from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr<'a> {
    /// Echo request (ping).
    EchoRequest {
        /// Identifier, echoed back.
        ident: u16,
        /// Sequence number, echoed back.
        seq_no: u16,
        /// Data, echoed back.
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// Identifier of the request.
        ident: u16,
        /// Sequence number of the request.
        seq_no: u16,
        /// Data of the request.
        data: &'a [u8],
    },
    /// Destination unreachable, quoting the start of the datagram that failed.
    DstUnreachable {
        /// Why the destination is unreachable.
        reason: Icmpv4DstUnreachable,
        /// Next-hop MTU for [`Icmpv4DstUnreachable::FragRequired`], else 0.
        next_hop_mtu: u16,
        /// The quoted IPv4 header (its options are not kept; its payload
        /// length is the original datagram's, not what was quoted).
        header: Ipv4Repr,
        /// The quoted payload bytes: at least 8, so TCP and UDP ports are
        /// there.
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Reads a checked message, verifying its checksum if `verify_checksum`.
    ///
    /// # Errors
    /// [`WireError::BadChecksum`] if asked to verify and the checksum is
    /// wrong; [`WireError::Unsupported`] for any other type, or an echo with
    /// a non-zero code. For destination unreachable, the quoted header is
    /// checked like an IPv4 header ([`WireError::Truncated`],
    /// [`WireError::BadVersion`], [`WireError::BadLength`]), and fewer than 8
    /// quoted payload bytes are [`WireError::Truncated`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Icmpv4Packet<&'a T>,
        verify_checksum: bool,
    ) -> Result<Icmpv4Repr<'a>, WireError> {
        if verify_checksum && !packet.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        let buffer: &'a T = packet.buffer;
        let data = &buffer.as_ref()[fields::DATA_START..];
        match (packet.msg_type(), packet.msg_code()) {
            (TYPE_ECHO_REQUEST, 0) => {
                Ok(Icmpv4Repr::EchoRequest { ident: packet.echo_ident(), seq_no: packet.echo_seq_no(), data })
            }
            (TYPE_ECHO_REPLY, 0) => {
                Ok(Icmpv4Repr::EchoReply { ident: packet.echo_ident(), seq_no: packet.echo_seq_no(), data })
            }
            (TYPE_DST_UNREACHABLE, code) => {
                let (header, quoted_payload) = parse_quoted_datagram(data)?;
                Ok(Icmpv4Repr::DstUnreachable {
                    reason: Icmpv4DstUnreachable::from(code),
                    next_hop_mtu: packet.next_hop_mtu(),
                    header,
                    data: quoted_payload,
                })
            }
            _ => Err(WireError::Unsupported),
        }
    }

    /// Length of the message this repr emits.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        match self {
            Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => ICMPV4_HEADER_LEN + data.len(),
            Icmpv4Repr::DstUnreachable { data, .. } => ICMPV4_HEADER_LEN + IPV4_HEADER_LEN + data.len(),
        }
    }

    /// Writes the whole message, checksum included, into the start of `buf`.
    ///
    /// # Panics
    /// Panics if `buf` is shorter than [`buffer_len`](Self::buffer_len), or
    /// if a quoted header's total length does not fit in 16 bits.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut packet = Icmpv4Packet::new_unchecked(&mut buf[..self.buffer_len()]);
        match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, data } => {
                packet.set_msg_type(TYPE_ECHO_REQUEST);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                packet.data_mut().copy_from_slice(data);
            }
            Icmpv4Repr::EchoReply { ident, seq_no, data } => {
                packet.set_msg_type(TYPE_ECHO_REPLY);
                packet.set_msg_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                packet.data_mut().copy_from_slice(data);
            }
            Icmpv4Repr::DstUnreachable { reason, next_hop_mtu, header, data } => {
                packet.set_msg_type(TYPE_DST_UNREACHABLE);
                packet.set_msg_code(reason.into());
                packet.set_next_hop_mtu(next_hop_mtu);
                let quoted = packet.data_mut();
                header.emit(quoted);
                quoted[IPV4_HEADER_LEN..].copy_from_slice(data);
            }
        }
        packet.fill_checksum();
    }
}

/// Splits the datagram quoted by an ICMP error into its IPv4 header and the
/// quoted payload bytes. The quoted header's checksum is not verified: routers
/// on the way may have changed the TTL.
fn parse_quoted_datagram(quoted: &[u8]) -> Result<(Ipv4Repr, &[u8]), WireError> {
    let packet = Ipv4Packet::new_unchecked(quoted);
    packet.check_header_len()?;
    if usize::from(packet.total_len()) < packet.header_len() {
        return Err(WireError::BadLength);
    }
    let payload = &quoted[packet.header_len()..];
    if payload.len() < QUOTED_PAYLOAD_MIN_LEN {
        return Err(WireError::Truncated);
    }
    Ok((Ipv4Repr::from_header(&packet), payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::IpProtocol;
    use std::net::Ipv4Addr;

    /// `ping -c1 -s 8` as Linux sends it: type 8, code 0, checksum, ident
    /// 0x1234, sequence 1, 8 bytes of data.
    const ECHO_REQUEST: [u8; 16] =
        [0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68];

    fn echo_request() -> [u8; 16] {
        let mut bytes = ECHO_REQUEST;
        Icmpv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        bytes
    }

    /// A port unreachable quoting a UDP datagram to port 53 (IHL 5, total
    /// length 40) with its 8-byte UDP header.
    fn port_unreachable() -> [u8; 36] {
        let mut bytes = [0u8; 36];
        bytes[0] = TYPE_DST_UNREACHABLE;
        bytes[1] = 3;
        bytes[8..28].copy_from_slice(&[
            0x45, 0x00, 0x00, 0x28, 0xab, 0xcd, 0x40, 0x00, 0x3f, 0x11, 0x00, 0x00, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        bytes[28..36].copy_from_slice(&[0x9c, 0x40, 0x00, 0x35, 0x00, 0x14, 0x00, 0x00]);
        Icmpv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        bytes
    }

    #[test]
    fn parses_linux_echo_request() {
        let bytes = echo_request();
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            Icmpv4Repr::parse(&packet, true).unwrap(),
            Icmpv4Repr::EchoRequest { ident: 0x1234, seq_no: 1, data: b"abcdefgh" }
        );
    }

    #[test]
    fn parses_port_unreachable_with_quoted_header() {
        let bytes = port_unreachable();
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        let Icmpv4Repr::DstUnreachable { reason, header, data, .. } = Icmpv4Repr::parse(&packet, true).unwrap() else {
            panic!("not a destination unreachable");
        };
        assert_eq!(reason, Icmpv4DstUnreachable::PortUnreachable);
        assert_eq!(header.protocol, IpProtocol::Udp);
        assert_eq!(header.src, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(header.payload_len, 20); // the original's, not what is quoted
        assert_eq!(&data[2..4], &53u16.to_be_bytes());
    }

    #[test]
    fn every_repr_round_trips() {
        let header = Ipv4Repr {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(198, 51, 100, 7),
            protocol: IpProtocol::Tcp,
            payload_len: 1460,
            ttl: 3,
            dont_frag: true,
            ident: 77,
            dscp_ecn: 0,
        };
        let reprs = [
            Icmpv4Repr::EchoRequest { ident: 1, seq_no: 2, data: b"payload" },
            Icmpv4Repr::EchoReply { ident: 3, seq_no: 4, data: b"" },
            Icmpv4Repr::DstUnreachable {
                reason: Icmpv4DstUnreachable::FragRequired,
                next_hop_mtu: 1400,
                header,
                data: &[1, 2, 3, 4, 5, 6, 7, 8, 9],
            },
        ];
        for repr in reprs {
            let mut bytes = [0u8; 64];
            repr.emit(&mut bytes);
            let emitted = &bytes[..repr.buffer_len()];
            let packet = Icmpv4Packet::new_checked(emitted).unwrap();
            assert_eq!(Icmpv4Repr::parse(&packet, true).unwrap(), repr);
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        for bytes in [&echo_request()[..], &port_unreachable()[..]] {
            for len in 0..bytes.len() {
                let result = Icmpv4Packet::new_checked(&bytes[..len])
                    .and_then(|packet| Icmpv4Repr::parse(&packet, true).map(|_| ()));
                assert!(result.is_err(), "length {len}");
            }
        }
    }

    #[test]
    fn quoted_header_lies_are_rejected() {
        let cases = [(8, 0x44, WireError::BadLength), (8, 0x65, WireError::BadVersion)];
        for (at, value, error) in cases {
            let mut bytes = port_unreachable();
            bytes[at] = value;
            let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(Icmpv4Repr::parse(&packet, false), Err(error));
        }
        let mut bytes = port_unreachable();
        bytes[8] = 0x47; // 28-byte header leaves 0 quoted payload bytes
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet, false), Err(WireError::Truncated));
    }

    #[test]
    fn corrupted_message_is_bad_checksum() {
        let mut bytes = echo_request();
        bytes[9] ^= 0x20;
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet, true), Err(WireError::BadChecksum));
    }

    #[test]
    fn other_types_are_unsupported() {
        let mut bytes = echo_request();
        bytes[0] = 13; // timestamp request
        Icmpv4Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        let packet = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&packet, true), Err(WireError::Unsupported));
    }
}
