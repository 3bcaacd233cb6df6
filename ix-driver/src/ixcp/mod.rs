//! `ixcp`, the control plane: a root daemon that owns each managed interface's
//! XDP program and every AF_XDP socket and region, and admits unprivileged
//! dataplanes over a unix socket; and the dataplane's client of it.
//!
//! See `docs/control-plane.md` for how to run it, the protocol, and what is
//! built and what is not.

mod client;
mod config;
pub mod core_board;
pub mod cpu_allocation;
pub mod cpu_policy;
mod daemon;
mod protocol;
pub mod thread_placement;
pub mod transport;
mod virtual_port;

pub use client::{Admission, GrantedQueue, one_queue_request, request_admission, request_listing, request_share};
pub use config::{CpuConfig, DaemonConfig, GrantConfig, InterfaceConfig, ModeName, PortSpec, QUEUE_FRAMES_MIN};
pub use core_board::{CoreBoard, CoreMode, CoreSample, CoreSlot};
pub use cpu_policy::CpuPolicy;
pub use daemon::{DATAPLANES_PER_INTERFACE_MAX, Daemon, stop_on_signals};
pub use protocol::{
    AdmitRequest, CoreEntry, DaemonStats, DataplaneEntry, Grant, LISTING_CORES_MAX, Listing, MESSAGE_BYTES_MAX,
    Message, PROTOCOL_VERSION, ProtocolError, REFUSAL_MESSAGE_BYTES_MAX, REQUEST_PORTS_MAX, Refusal, RefusalCode,
    Share,
};
