//! Sans-IO TCP/IP for the IX dataplane: frames and `now` in, frames and socket
//! events out. No threads, no clock, no futures.
#![deny(unsafe_code)]

mod egress;
mod icmp;
pub mod iface;
pub mod socket;
pub mod stack;
pub mod stats;
pub mod tcp;
pub mod time;
pub mod timer;
pub mod udp;
pub mod wire;

pub use socket::{Readiness, RxChunk, SocketHandle};
pub use stack::{SocketError, Stack, StackConfig, TcpInfo};
pub use stats::StackStats;
pub use tcp::{FourTuple, TcpConfig, TcpError};
pub use time::Instant;
