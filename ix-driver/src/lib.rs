//! Packet buffers and NIC queues for the IX dataplane: the per-core pool, the
//! queue abstraction, receive-side scaling, and the backends. All unsafe I/O of
//! the project lives in this crate.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod error;
pub mod eventfd;
pub mod ixcp;
pub mod mem;
mod netdev;
pub mod netns;
pub mod nic;
pub mod packet_socket;
pub mod pool;
pub mod privilege;
pub mod queue;
pub mod region;
pub mod rss;
pub mod tap;
pub mod xdp;

pub use error::{DriverError, FrameFull, PoolExhausted};
pub use eventfd::EventFd;
pub use mem::queue::MemQueue;
pub use mem::{MemWire, MemWireConfig};
pub use nic::{NicConfig, NicDevice, NicFamily, NicQueue, NicQueueSource};
pub use packet_socket::PacketSocket;
pub use pool::{PacketBuf, PacketPool, PoolConfig, PoolPressure, PoolStats, TxBuf};
pub use queue::{NetQueue, QueueStats};
pub use region::HugePages;
pub use rss::{RSS_DEFAULT_KEY, RedirectionTable, Toeplitz, find_port_for_queue};
pub use tap::{TapConfig, TapDevice, TapQueue, TapQueueFd};
pub use xdp::{XdpConfig, XdpDevice, XdpQueue, XdpQueueSource};
