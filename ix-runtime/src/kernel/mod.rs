//! The `kernel` backend: ordinary kernel sockets behind the same executor and
//! socket API. This file owns the per-core state that sockets reach
//! ([`KernelNet`]: the epoll reactor, the receive pool, the address).

pub(crate) mod core_io;
pub(crate) mod reactor;
pub(crate) mod sockets;

use ix_driver::PacketPool;

use reactor::Reactor;

/// One `kernel` core's network.
pub(crate) struct KernelNet {
    pub(crate) reactor: Reactor,
    /// Receive buffers handed out as `RxChunk`s, as on the dataplane.
    pub(crate) pool: PacketPool,
    /// The address listeners bind (0.0.0.0 when none was configured).
    pub(crate) addr: std::net::Ipv4Addr,
}
