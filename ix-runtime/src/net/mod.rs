//! Sockets on the current core's dataplane.

pub mod tcp;

pub use tcp::{TcpListener, TcpStream};
