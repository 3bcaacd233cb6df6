//! The `xdp` backend: an AF_XDP socket per queue, its UMEM the core's packet
//! pool, and an XDP program (attached through a BPF link) that steers only the
//! dataplane's frames to those sockets and passes everything else to the kernel.
//!
//! # Set-up
//! [`XdpDevice::open`] checks the interface, creates the program's maps, loads
//! the program ([`program`]) and attaches it. Each queue is taken with
//! [`XdpDevice::take_queue`], moved to its core thread, and built there with that
//! core's [`PacketPool`](crate::PacketPool) by [`XdpQueue::new`], which registers
//! the pool's region as the socket's UMEM, binds the socket and enters it in the
//! program's socket map. The program stays attached while the device or any
//! queue is alive, and the kernel detaches it when the process dies.
//!
//! # Shared and exclusive addresses
//! Without ports the dataplane's IPv4 address is its own: every IPv4 frame to
//! it and every ARP frame about it go to the dataplane. With ports
//! ([`XdpConfig::ports`]) the dataplane shares the interface's address and MAC
//! with the kernel and takes only TCP and UDP to those ports. ARP then stays
//! with the kernel (which answers for the address), except the replies to the
//! requests the dataplane itself sends: the queue notes each request it
//! transmits in a map (`ARP_PENDING`, sender → deadline 3 s ahead) and the
//! program redirects a reply from that sender while the entry lasts; the queue
//! deletes the entry once the reply arrives. The dataplane's own outgoing
//! connections use local ports from [`SHARED_EPHEMERAL_PORTS`], above Linux's
//! default `ip_local_port_range` (32768–60999), and the program takes TCP and UDP
//! to those ports too, so their replies reach the dataplane and the kernel's
//! connections never collide with them. See `docs/protection.md`.

pub(crate) mod bpf;
mod config;
mod device;
mod napi_deferral;
pub(crate) mod program;
pub(crate) mod queue;
mod ring;
pub(crate) mod socket;

pub use config::{BindMode, BusyPoll, XdpConfig, XdpMode};
pub use device::{SHARED_EPHEMERAL_PORTS, XdpDevice, XdpQueueSource};
pub use program::{XDP_DROP, XDP_PASS, XDP_REDIRECT};
pub use queue::XdpQueue;
pub use socket::XdpSocketStats;
