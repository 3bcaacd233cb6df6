//! Wire formats: views over header bytes that validate lengths once, and logical
//! representations that parse and emit them. Every parser here treats its input
//! as hostile and names each reason for rejecting it in [`WireError`].
//!
//! Each protocol has two layers:
//!
//! - a *view* (`EthernetFrame`, `ArpPacket`, `Ipv4Packet`, `Icmpv4Packet`,
//!   `UdpPacket`, `TcpPacket`) wrapping any `T: AsRef<[u8]>`. `new_checked`
//!   validates every length once, after which the field accessors cannot go
//!   out of bounds; setters exist when `T: AsMut<[u8]>`.
//! - a *repr* (`EthernetRepr`, `ArpRepr`, `Ipv4Repr`, `Icmpv4Repr`, `UdpRepr`,
//!   `TcpRepr`): the logical header, with `parse` (from a view, checking
//!   semantics such as versions and checksums) and `emit` (into bytes).
//!
//! Nothing in this module allocates.
//!
//! # Example: Ethernet, then IPv4, then TCP
//!
//! ```
//! use ix_net::wire::{
//!     EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IpProtocol, Ipv4Packet,
//!     Ipv4Repr, TcpFlags, TcpOptions, TcpPacket, TcpRepr, ETHERNET_HEADER_LEN,
//!     fill_tcp_checksum,
//! };
//! use std::net::Ipv4Addr;
//!
//! // Build a SYN so that there is something to parse.
//! let (client, server) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
//! let tcp = TcpRepr {
//!     src_port: 40000,
//!     dst_port: 80,
//!     seq: 1,
//!     ack: 0,
//!     flags: TcpFlags::SYN,
//!     window: 65535,
//!     urgent: 0,
//!     options: TcpOptions { mss: Some(1460), ..TcpOptions::default() },
//!     payload_offset: 0,
//! };
//! let ip = Ipv4Repr {
//!     src: client,
//!     dst: server,
//!     protocol: IpProtocol::Tcp,
//!     payload_len: tcp.header_len(),
//!     ttl: 64,
//!     dont_frag: true,
//!     ident: 0,
//!     dscp_ecn: 0,
//! };
//! let eth = EthernetRepr {
//!     src: EthernetAddress([2, 0, 0, 0, 0, 1]),
//!     dst: EthernetAddress([2, 0, 0, 0, 0, 2]),
//!     ethertype: EtherType::Ipv4,
//! };
//! let mut bytes = [0u8; 64]; // 60-byte minimum frame: the tail is Ethernet padding
//! eth.emit(&mut bytes);
//! ip.emit(&mut bytes[ETHERNET_HEADER_LEN..]);
//! let l4 = ETHERNET_HEADER_LEN + ip.header_len();
//! tcp.emit(&mut bytes[l4..]);
//! fill_tcp_checksum(&mut bytes[l4..l4 + tcp.header_len()], client, server);
//!
//! // Parse it back, layer by layer.
//! let frame = EthernetFrame::new_checked(&bytes[..])?;
//! assert_eq!(EthernetRepr::parse(&frame)?.ethertype, EtherType::Ipv4);
//! let packet = Ipv4Packet::new_checked(frame.payload())?; // ignores the padding
//! let ip_repr = Ipv4Repr::parse(&packet, true)?;
//! assert_eq!(ip_repr.protocol, IpProtocol::Tcp);
//! let segment = TcpPacket::new_checked(packet.payload())?;
//! let tcp_repr = TcpRepr::parse(&segment, ip_repr.src, ip_repr.dst, true)?;
//! assert!(tcp_repr.flags.contains(TcpFlags::SYN));
//! assert_eq!(tcp_repr.options.mss, Some(1460));
//! # Ok::<(), ix_net::wire::WireError>(())
//! ```

mod arp;
pub mod checksum;
mod ethernet;
mod field;
mod icmpv4;
mod ipv4;
mod tcp;
mod udp;

pub use arp::{ARP_PACKET_LEN, ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{ETHERNET_HEADER_LEN, EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
pub use icmpv4::{ICMPV4_HEADER_LEN, Icmpv4DstUnreachable, Icmpv4Packet, Icmpv4Repr};
pub use ipv4::{IPV4_HEADER_LEN, IpProtocol, Ipv4Packet, Ipv4Repr};
pub use tcp::{
    TCP_HEADER_LEN, TCP_OPTIONS_MAX_LEN, TcpFlags, TcpHeaderFields, TcpHeaderTemplate, TcpOptions, TcpPacket, TcpRepr,
    fill_tcp_checksum,
};
pub use udp::{UDP_HEADER_LEN, UdpPacket, UdpRepr, fill_udp_checksum};

/// Why a frame was rejected. Each variant is one cause, so that the stack can
/// count drops by cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before the fixed part of the header.
    #[error("buffer shorter than the fixed header")]
    Truncated,
    /// A length field is below its minimum or points past the end of the
    /// buffer, or disagrees with the enclosing layer's length.
    #[error("length field disagrees with the header or the buffer")]
    BadLength,
    /// The checksum does not match the bytes.
    #[error("checksum mismatch")]
    BadChecksum,
    /// The IP version field is not 4.
    #[error("IP version is not 4")]
    BadVersion,
    /// A header option is malformed (bad length, or wrong size for its kind).
    #[error("malformed header option")]
    BadOption,
    /// The IPv4 packet is a fragment (more-fragments set or a non-zero
    /// offset); this stack does not reassemble.
    #[error("IPv4 fragment (reassembly is not supported)")]
    Fragmented,
    /// Well formed, but of a kind this stack does not handle (for example ARP
    /// for a hardware type other than Ethernet, or an ICMP type other than
    /// echo and destination unreachable).
    #[error("well-formed but unsupported message kind")]
    Unsupported,
}

/// Declares a public view type wrapping a byte buffer `T: AsRef<[u8]>`, with
/// `new_unchecked`, `new_checked` (which runs the type's own `check_len`) and
/// `into_inner`. Accessors and `check_len` are written per protocol.
macro_rules! byte_view {
    ($(#[$attr:meta])* pub struct $name:ident;) => {
        $(#[$attr])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Wraps `buffer` without checking it: accessors panic if it is
            /// shorter than what they read. For buffers about to be filled.
            #[inline]
            pub fn new_unchecked(buffer: T) -> $name<T> {
                $name { buffer }
            }

            /// Wraps `buffer` after [`check_len`](Self::check_len), so that
            /// no accessor can go out of bounds.
            ///
            /// # Errors
            /// As [`check_len`](Self::check_len).
            #[inline]
            pub fn new_checked(buffer: T) -> Result<$name<T>, WireError> {
                let view = Self::new_unchecked(buffer);
                view.check_len()?;
                Ok(view)
            }

            /// Returns the wrapped buffer.
            #[inline]
            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}
pub(crate) use byte_view;

/// Declares a public enum over a numeric wire field with named values and an
/// `Unknown` catch-all, plus the two `From` conversions.
macro_rules! numbered_enum {
    (
        $(#[$attr:meta])*
        pub enum $name:ident($repr:ty) {
            $( $(#[$variant_attr:meta])* $variant:ident = $value:literal, )+
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_attr])* $variant, )+
            /// A value without a name here, kept as read.
            Unknown($repr),
        }

        impl From<$repr> for $name {
            #[inline]
            fn from(value: $repr) -> Self {
                match value {
                    $( $value => Self::$variant, )+
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<$name> for $repr {
            #[inline]
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}
pub(crate) use numbered_enum;
