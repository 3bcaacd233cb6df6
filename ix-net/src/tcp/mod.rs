//! TCP: sequence numbers, round-trip estimation and SYN cookies so far.

pub mod rtt;
pub mod seq;
pub mod syncookie;

use std::net::SocketAddrV4;

/// A TCP connection's addresses as seen from this host: the key of the flow
/// table and the input of SYN cookies and port selection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FourTuple {
    /// Our address and port (the destination of a received segment).
    pub local: SocketAddrV4,
    /// The peer's address and port (the source of a received segment).
    pub remote: SocketAddrV4,
}
