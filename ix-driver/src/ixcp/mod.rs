//! `ixcp`, the control plane: a root daemon that owns each managed interface's
//! XDP program and every AF_XDP socket and region, and admits unprivileged
//! dataplanes over a unix socket; and the dataplane's client of it.
//!
//! See `docs/control-plane.md` for how to run it, the protocol, and what is
//! built and what is not.

mod client;
mod config;
mod daemon;
mod protocol;
pub mod transport;
mod virtual_port;

pub use client::{Admission, GrantedQueue, one_queue_request, request_admission, request_listing};
pub use config::{DaemonConfig, GrantConfig, InterfaceConfig, ModeName, PortSpec, QUEUE_FRAMES_MIN};
pub use daemon::{DATAPLANES_PER_INTERFACE_MAX, Daemon, stop_on_signals};
pub use protocol::{
    AdmitRequest, DaemonStats, DataplaneEntry, Grant, Listing, MESSAGE_BYTES_MAX, Message, PROTOCOL_VERSION,
    ProtocolError, REQUEST_PORTS_MAX, Refusal, RefusalCode,
};
