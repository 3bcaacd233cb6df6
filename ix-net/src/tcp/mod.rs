//! TCP (RFC 9293 with RFC 7323, 2018, 6298, 5681, 6582, 6675, 9438, 5961): the
//! connection state machine and its building blocks, and the flow table.

pub mod assembler;
pub mod cc;
pub mod config;
pub mod conn;
pub mod directory;
mod input;
mod packing;
pub mod recovery;
pub mod rtt;
pub mod sack;
pub mod sendbuf;
pub mod seq;
pub mod syncookie;

use std::collections::HashMap;
use std::net::SocketAddrV4;

pub use cc::CongestionAlgorithm;
pub use config::{KeepaliveConfig, TcpConfig};
pub use conn::State;
pub use directory::FlowDirectory;
pub use recovery::{LossConfig, LossDetection};

use crate::socket::SocketHandle;

/// A TCP connection's addresses as seen from this host: the key of the flow
/// table and the input of SYN cookies and port selection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FourTuple {
    /// Our address and port (the destination of a received segment).
    pub local: SocketAddrV4,
    /// The peer's address and port (the source of a received segment).
    pub remote: SocketAddrV4,
}

/// Why a connection cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TcpError {
    /// The peer answered our SYN with a RST.
    #[error("connection refused")]
    ConnectionRefused,
    /// The peer reset the connection.
    #[error("connection reset by peer")]
    ConnectionReset,
    /// We aborted the connection.
    #[error("connection aborted")]
    ConnectionAborted,
    /// Retransmissions or keepalive probes went unanswered.
    #[error("connection timed out")]
    TimedOut,
    /// The connection is not (or no longer) established.
    #[error("not connected")]
    NotConnected,
    /// The sending side was shut down.
    #[error("sending side closed")]
    Closed,
}

/// Connections by 4-tuple. Keyed by a per-table random seed (foldhash), so a
/// peer cannot choose ports that collide; no allocation per lookup, and none per
/// insert once the table has grown to its working size.
#[derive(Debug)]
pub struct FlowTable {
    map: HashMap<FourTuple, SocketHandle, foldhash::fast::RandomState>,
}

impl FlowTable {
    /// An empty table with room for `capacity` flows.
    pub fn with_capacity(capacity: usize) -> Self {
        Self { map: HashMap::with_capacity_and_hasher(capacity, foldhash::fast::RandomState::default()) }
    }

    /// The socket of a flow.
    pub fn get(&self, tuple: &FourTuple) -> Option<SocketHandle> {
        self.map.get(tuple).copied()
    }

    /// Records a flow.
    pub fn insert(&mut self, tuple: FourTuple, handle: SocketHandle) {
        self.map.insert(tuple, handle);
    }

    /// Forgets a flow.
    pub fn remove(&mut self, tuple: &FourTuple) {
        self.map.remove(tuple);
    }

    /// Flows in the table.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
