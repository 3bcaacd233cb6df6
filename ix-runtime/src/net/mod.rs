//! Sockets on the current core: the dataplane's own, or on the `kernel`
//! backend ordinary kernel sockets behind the same API.

pub(crate) mod outgoing;
pub mod tcp;
pub mod udp;

pub use ix_driver::{PacketBuf, TxBuf};
pub use ix_net::{RxChunk, TcpInfo};
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
