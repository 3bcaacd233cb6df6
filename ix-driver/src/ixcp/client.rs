//! The dataplane's side of `ixcp`: asks for a grant over the control socket,
//! receives each queue's AF_XDP socket and region memfd and the core board,
//! and builds the same [`XdpQueue`]s as the `xdp` backend from them, with no
//! privilege at all; and the operator's requests (listing, CPU share).

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use super::core_board::{CoreBoard, CoreSlot};
use super::protocol::{AdmitRequest, Grant, Listing, Message, ProtocolError, Share};
use super::transport;
use crate::error::DriverError;
use crate::pool::PacketPool;
use crate::xdp::XdpQueue;

/// A grant and its queues, not yet built.
#[derive(Debug)]
pub struct Admission {
    /// What `ixcp` granted.
    pub grant: Grant,
    /// One per granted queue, in order.
    pub queues: Vec<GrantedQueue>,
}

/// One granted queue on its way to the thread that will own it (`Send`).
#[derive(Debug)]
pub struct GrantedQueue {
    socket: OwnedFd,
    region: OwnedFd,
    index: u16,
    mac: [u8; 6],
    mtu: u32,
    frames: u32,
    /// The control connection: the grant lasts while a queue holds it.
    lease: Arc<OwnedFd>,
    /// The queue's core's slot on the board it shares with `ixcp`.
    slot: CoreSlot,
}

impl GrantedQueue {
    /// The queue's index in the grant.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// The slot of the core board where the core that serves this queue
    /// publishes its counters and reads the mode `ixcp` asks of it.
    pub fn core_slot(&self) -> CoreSlot {
        self.slot.clone()
    }

    /// Maps the region (read-write for the driver, read-only for received
    /// data) as the core's pool and takes over the socket's rings.
    ///
    /// # Errors
    /// [`DriverError::Config`] when the region is smaller than granted;
    /// [`DriverError::Os`] when a mapping fails.
    pub fn build(self) -> Result<XdpQueue, DriverError> {
        let pool = PacketPool::from_memfd(self.region, self.frames)?;
        XdpQueue::from_bound_socket(self.socket, pool, self.index, (self.mac, self.mtu), self.lease)
    }
}

/// Asks the `ixcp` at `socket_path` for `request` and waits for the answer.
///
/// # Errors
/// [`DriverError::Refused`] with `ixcp`'s reason; [`DriverError::Protocol`]
/// for an answer that is not a grant with its descriptors;
/// [`DriverError::Os`] when the socket cannot be reached.
pub fn request_admission(socket_path: &Path, request: &AdmitRequest) -> Result<Admission, DriverError> {
    let (control, received) = exchange(socket_path, &Message::Admit(request.clone()))?;
    let grant = match Message::decode(&received.bytes)? {
        Message::Grant(grant) => grant,
        Message::Refusal(refusal) => return Err(refusal.into()),
        _ => return Err(ProtocolError::BadField("ixcp answered a request with something else").into()),
    };
    if received.fds.len() != 2 * usize::from(grant.queues) + 1 || grant.queues == 0 {
        return Err(ProtocolError::BadField("a grant carries a socket and a memfd per queue, then a core board").into());
    }
    let lease = Arc::new(control);
    let mut fds = received.fds.into_iter();
    let board_fd = fds.next_back().expect("counted");
    let board = Arc::new(CoreBoard::from_memfd(board_fd, usize::from(grant.queues))?);
    let queues = (0..grant.queues)
        .map(|index| GrantedQueue {
            socket: fds.next().expect("counted"),
            region: fds.next().expect("counted"),
            index,
            mac: grant.mac,
            mtu: grant.mtu,
            frames: grant.frames_per_queue,
            lease: lease.clone(),
            slot: CoreSlot::new(board.clone(), usize::from(index)),
        })
        .collect();
    Ok(Admission { grant, queues })
}

/// Asks the `ixcp` at `socket_path` for its admitted dataplanes and counters
/// (root only).
///
/// # Errors
/// [`DriverError::Refused`] for a caller other than root;
/// [`DriverError::Protocol`] for an answer that is not a listing;
/// [`DriverError::Os`] when the socket cannot be reached.
pub fn request_listing(socket_path: &Path) -> Result<Listing, DriverError> {
    let (_control, received) = exchange(socket_path, &Message::List)?;
    match Message::decode(&received.bytes)? {
        Message::Listing(listing) => Ok(listing),
        Message::Refusal(refusal) => Err(refusal.into()),
        _ => Err(ProtocolError::BadField("ixcp answered a listing request with something else").into()),
    }
}

/// Asks the `ixcp` at `socket_path` to set the CPU share of the dataplane
/// on virtual port `port_name` to `share` CPUs (root only).
///
/// # Errors
/// [`DriverError::Refused`] for a caller other than root, an unknown
/// dataplane or a share over its grant's `max_cpus`;
/// [`DriverError::Protocol`] for an answer that is not a confirmation;
/// [`DriverError::Os`] when the socket cannot be reached.
pub fn request_share(socket_path: &Path, port_name: &str, share: u16) -> Result<Share, DriverError> {
    let (_control, received) =
        exchange(socket_path, &Message::SetShare(Share { port_name: port_name.to_owned(), share }))?;
    match Message::decode(&received.bytes)? {
        Message::ShareSet(set) => Ok(set),
        Message::Refusal(refusal) => Err(refusal.into()),
        _ => Err(ProtocolError::BadField("ixcp answered a share request with something else").into()),
    }
}

/// Connects, sends `message` and waits for one answer; the connection stays
/// open with the caller.
fn exchange(socket_path: &Path, message: &Message) -> Result<(OwnedFd, transport::Received), DriverError> {
    let control =
        transport::connect(socket_path).map_err(|source| DriverError::Os { call: "connect to ixcp", source })?;
    let failed = |source| DriverError::Os { call: "ixcp request", source };
    transport::send(control.as_fd(), &message.encode(), &[]).map_err(failed)?;
    let received =
        transport::recv(control.as_fd()).map_err(failed)?.ok_or(ProtocolError::Truncated { needed: 1, got: 0 })?;
    Ok((control, received))
}

/// The request for one queue serving `ports` on `addr`.
pub fn one_queue_request(addr: Ipv4Addr, ports: &[u16], frames_per_queue: u32, max_connections: u32) -> AdmitRequest {
    AdmitRequest { addr, ports: ports.to_vec(), queues: 1, frames_per_queue, max_connections }
}
