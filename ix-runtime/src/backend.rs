//! The backends: the one place where a backend's spelling becomes a value
//! ([`Backend`]), and where that value opens each core's queue
//! ([`CoreSource`]). Adding a backend means adding it here only.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use ix_driver::ixcp::GrantedQueue;
use ix_driver::mem::MemWire;
use ix_driver::nic::{NicConfig, NicDevice, NicQueue, NicQueueSource, queue_owner};
use ix_driver::tap::{TapDevice, TapQueue, TapQueueFd};
use ix_driver::xdp::{XdpConfig, XdpDevice, XdpQueue, XdpQueueSource};
use ix_driver::{HugePages, NetQueue, PacketPool, RedirectionTable, Toeplitz};

use crate::dataplane::PortFilter;
use crate::error::RuntimeError;

/// Where each core's packets come from.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The in-process wire: core `i` takes queue `i` of `port`.
    Mem {
        /// The wire.
        wire: Arc<MemWire>,
        /// This runtime's port on it.
        port: u16,
    },
    /// A multi-queue TAP device named `name`: core `i` takes queue `i`.
    Tap {
        /// Interface name.
        name: String,
    },
    /// AF_XDP on an interface: core `i` takes queue `i`, steered to it by the
    /// backend's XDP program (see `ix_driver::xdp`).
    Xdp(XdpConfig),
    /// An Intel 82576 (`igb:PCI_ADDR`) or 82599 (`ixgbe:PCI_ADDR`) driven from
    /// user space through VFIO: core `i` polls queue `i`, steered to it by
    /// the NIC's RSS (see `ix_driver::nic`).
    Nic(NicConfig),
    /// AF_XDP queues handed over by the `ixcp` daemon at `socket`, for `ports`
    /// of the runtime's address: needs no privilege (see `ix_driver::ixcp`).
    Ixcp {
        /// The daemon's control socket.
        socket: std::path::PathBuf,
        /// The TCP and UDP ports to ask for.
        ports: Vec<u16>,
    },
    /// Ordinary kernel sockets (non-blocking, epoll) behind the same executor
    /// and socket API: runs unprivileged, and separates the executor's share
    /// of a benchmark from the dataplane's.
    Kernel,
}

impl std::str::FromStr for Backend {
    type Err = RuntimeError;

    /// Parses `kernel`, `tap:NAME`, `xdp:IFACE[,options]` (see [`XdpConfig`]),
    /// `igb:PCI_ADDR[,queues=N]` / `ixgbe:...` (see [`NicConfig`]) or
    /// `ixcp:SOCKET,ports=P1+P2`; the `mem` wire is made in process and has no
    /// spelling.
    fn from_str(spec: &str) -> Result<Backend, RuntimeError> {
        let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
        match (kind, rest) {
            ("kernel", "") => Ok(Backend::Kernel),
            ("tap", name) if !name.is_empty() && name.len() < libc::IFNAMSIZ => {
                Ok(Backend::Tap { name: name.to_string() })
            }
            ("tap", _) => Err(RuntimeError::Config(format!(
                "backend `{spec}`: a TAP interface name of 1 to {} bytes is needed, as in tap:ix0",
                libc::IFNAMSIZ - 1
            ))),
            ("xdp", _) => Ok(Backend::Xdp(rest.parse()?)),
            ("igb" | "ixgbe", _) => Ok(Backend::Nic(spec.parse()?)),
            ("ixcp", _) => parse_ixcp(spec, rest),
            _ => Err(RuntimeError::Config(format!(
                "unknown backend `{spec}`: expected `kernel`, `tap:NAME`, `xdp:IFACE[,options]`, \
                 `igb:PCI_ADDR[,queues=N]`, `ixgbe:PCI_ADDR[,queues=N]` or `ixcp:SOCKET,ports=P1+P2`"
            ))),
        }
    }
}

/// Parses the `SOCKET,ports=P1+P2` of an `ixcp:` backend.
fn parse_ixcp(spec: &str, rest: &str) -> Result<Backend, RuntimeError> {
    let bad = || RuntimeError::Config(format!("backend `{spec}`: expected ixcp:SOCKET,ports=P1+P2 (ports 1-65535)"));
    let (socket, options) = rest.split_once(',').ok_or_else(bad)?;
    let ports = options.strip_prefix("ports=").ok_or_else(bad)?;
    let ports = ports.split('+').map(|p| p.parse::<u16>().ok().filter(|&p| p != 0)).collect::<Option<Vec<_>>>();
    match ports {
        Some(ports) if !socket.is_empty() && !ports.is_empty() => Ok(Backend::Ixcp { socket: socket.into(), ports }),
        _ => Err(bad()),
    }
}

/// Connections an `ixcp` dataplane asks for (the stack's own limit applies).
const IXCP_CONNECTIONS_ASKED: u32 = 65_536;

impl Backend {
    /// Checks that the settings give what the backend needs.
    ///
    /// # Errors
    /// [`RuntimeError::Config`] when a dataplane backend has no address.
    pub(crate) fn check(&self, addr: Option<(Ipv4Addr, u8)>) -> Result<(), RuntimeError> {
        match self {
            Backend::Kernel => Ok(()),
            Backend::Mem { .. } | Backend::Tap { .. } | Backend::Xdp(_) | Backend::Nic(_) | Backend::Ixcp { .. } => {
                dataplane_address(addr).map(drop)
            }
        }
    }

    /// Opens the backend for `cores` cores with pools of `pool_frames`
    /// frames: one source per core, in core order, each to be turned into the
    /// core's I/O on its own thread.
    ///
    /// # Errors
    /// A backend that cannot start (one line saying why and what to do), or a
    /// missing address.
    pub(crate) fn open(
        &self,
        cores: usize,
        addr: Option<(Ipv4Addr, u8)>,
        pool_frames: u32,
    ) -> Result<Vec<CoreSource>, RuntimeError> {
        let dataplane = |queues: Vec<QueueSource>| -> Result<Vec<CoreSource>, RuntimeError> {
            let addr = dataplane_address(addr)?;
            Ok(queues.into_iter().map(|queue| CoreSource::Dataplane { queue, addr }).collect())
        };
        match self {
            Backend::Mem { wire, port } => {
                dataplane((0..cores).map(|_| QueueSource::Mem { wire: wire.clone(), port: *port }).collect())
            }
            Backend::Tap { name } => {
                let mut device = TapDevice::open(name, cores as u16)?;
                let fds = (0..cores as u16).map(|q| device.take_queue_fd(q)).collect::<Result<Vec<_>, _>>()?;
                // The device lives as long as any queue fd is open: it can go now.
                drop(device);
                dataplane(fds.into_iter().map(|fd| QueueSource::Tap { fd }).collect())
            }
            Backend::Xdp(config) => {
                let (ip, _) = dataplane_address(addr)?;
                let queues = config.queue_count(cores)?;
                // The queues keep the program attached; the device can go.
                let mut device = XdpDevice::open(config, queues, ip)?;
                let shared_ports = !config.ports.is_empty();
                let sources = (0..queues)
                    .map(|q| {
                        let source = device.take_queue(q)?;
                        Ok(QueueSource::Xdp { source, huge_pages: config.huge_pages, shared_ports })
                    })
                    .collect::<Result<Vec<_>, RuntimeError>>()?;
                dataplane(sources)
            }
            Backend::Nic(config) => {
                let queues = config.queue_count(cores)?;
                let cores = cores as u16; // queue_count checked it fits
                // The queues keep the device open; the device handle can go.
                let mut device = NicDevice::open(config, queues, cores)?;
                // One core needs no steering of outgoing connections.
                let rss = (cores > 1).then(|| (Arc::new(device.rss()), cores));
                let sources = (0..cores)
                    .map(|q| {
                        let source = device.take_queue(q)?;
                        Ok(QueueSource::Nic { source, huge_pages: config.huge_pages, rss: rss.clone() })
                    })
                    .collect::<Result<Vec<_>, RuntimeError>>()?;
                dataplane(sources)
            }
            Backend::Ixcp { socket, ports } => {
                let (ip, _) = dataplane_address(addr)?;
                if cores != 1 {
                    return Err(RuntimeError::Config("the ixcp backend serves one core for now".into()));
                }
                let request = ix_driver::ixcp::one_queue_request(ip, ports, pool_frames, IXCP_CONNECTIONS_ASKED);
                let admission = ix_driver::ixcp::request_admission(socket, &request)?;
                dataplane(admission.queues.into_iter().map(|granted| QueueSource::Ixcp { granted }).collect())
            }
            Backend::Kernel => {
                let ip = addr.map_or(Ipv4Addr::UNSPECIFIED, |(a, _)| a);
                Ok((0..cores).map(|_| CoreSource::Kernel { addr: ip }).collect())
            }
        }
    }
}

/// The address a dataplane backend requires.
fn dataplane_address(addr: Option<(Ipv4Addr, u8)>) -> Result<(Ipv4Addr, u8), RuntimeError> {
    addr.ok_or_else(|| RuntimeError::Config("no IPv4 address: set one with Builder::ipv4".into()))
}

/// What one core builds its I/O from, made on the runtime's thread (fds and
/// wires are `Send`; queues, holding the core's pool, are made on the core).
pub(crate) enum CoreSource {
    /// A NIC queue for the core's own stack, which takes `addr` (address,
    /// prefix length).
    Dataplane { queue: QueueSource, addr: (Ipv4Addr, u8) },
    /// Kernel sockets; listeners bind `addr`.
    Kernel { addr: Ipv4Addr },
}

/// One core's NIC queue, not yet opened.
pub(crate) enum QueueSource {
    Mem {
        wire: Arc<MemWire>,
        port: u16,
    },
    Tap {
        fd: TapQueueFd,
    },
    Xdp {
        source: XdpQueueSource,
        huge_pages: HugePages,
        shared_ports: bool,
    },
    Nic {
        source: NicQueueSource,
        huge_pages: HugePages,
        /// The NIC's hash and table, and the core count (core `c` owns
        /// hardware queues `c`, `c + cores`, ...), with more than one core.
        rss: Option<(Arc<(Toeplitz, RedirectionTable)>, u16)>,
    },
    /// A queue `ixcp` granted, with its own region (the pool).
    Ixcp {
        granted: GrantedQueue,
    },
}

impl QueueSource {
    /// Whether the stack must learn neighbours from their IPv4 frames: on an
    /// address shared through `ixcp`, the kernel answers ARP and gets the
    /// replies.
    pub(crate) fn learns_neighbors_from_ipv4(&self) -> bool {
        matches!(self, QueueSource::Ixcp { .. })
    }

    /// The local ports outgoing connections must use, when the backend
    /// restricts them (the XDP program takes replies to these ports only
    /// when it shares the address with the kernel).
    pub(crate) fn ephemeral_ports(&self) -> Option<RangeInclusive<u16>> {
        match self {
            QueueSource::Xdp { shared_ports: true, .. } => Some(ix_driver::xdp::SHARED_EPHEMERAL_PORTS),
            QueueSource::Xdp { .. }
            | QueueSource::Nic { .. }
            | QueueSource::Ixcp { .. }
            | QueueSource::Mem { .. }
            | QueueSource::Tap { .. } => None,
        }
    }

    /// Opens core `core`'s queue, over a pool `new_pool` makes (on huge pages
    /// or not) unless the backend brings its own, with the port filter that
    /// keeps its outgoing connections' replies on it (`None`: the backend
    /// cannot steer). The stack uses the queue's pool.
    ///
    /// # Errors
    /// The driver's, when the pool or the queue cannot open.
    pub(crate) fn open(
        self,
        core: usize,
        new_pool: impl FnOnce(HugePages) -> Result<PacketPool, RuntimeError>,
        local_ip: Ipv4Addr,
    ) -> Result<(Box<dyn NetQueue>, Option<PortFilter>), RuntimeError> {
        match self {
            QueueSource::Mem { wire, port } => {
                let queue = wire.queue(port, core as u16, new_pool(HugePages::Auto)?)?;
                // The wire steers by RSS: keep only local ports whose return flow
                // lands on this core's queue.
                let filter = match wire.redirection_table(port) {
                    Some(table) if wire.config().queues_per_port > 1 => {
                        // One queue per core: queue q is core q's.
                        let cores = wire.config().queues_per_port;
                        Some(rss_port_filter(Arc::new((wire.toeplitz().clone(), table)), core, cores, local_ip))
                    }
                    _ => None,
                };
                Ok((Box::new(queue), filter))
            }
            QueueSource::Tap { fd } => {
                // TAP spreads flows by the kernel's own hash, which we cannot
                // predict: any port will do.
                let queue = TapQueue::new(fd, new_pool(HugePages::Auto)?);
                Ok((Box::new(queue), None))
            }
            QueueSource::Xdp { source, huge_pages, .. } => {
                // RSS on the interface is the kernel's or the NIC's, which we do
                // not model: as for TAP, any port will do (an outgoing
                // connection's replies may land on another core's queue).
                Ok((Box::new(XdpQueue::new(source, new_pool(huge_pages)?)?), None))
            }
            QueueSource::Nic { source, huge_pages, rss } => {
                // The NIC steers by RSS with a key and table we programmed, so an
                // outgoing connection can pick a port whose replies come here.
                let filter = rss.map(|(rss, cores)| rss_port_filter(rss, core, cores, local_ip));
                Ok((Box::new(NicQueue::new(source, new_pool(huge_pages)?)?), filter))
            }
            // One queue per dataplane, no outgoing connections steered yet.
            QueueSource::Ixcp { granted } => Ok((Box::new(granted.build()?), None)),
        }
    }
}

/// Keeps only local ports whose return flow (remote → local, hashed as a NIC
/// does) lands on a queue of `core`'s (of `cores`, see
/// [`queue_owner`]).
fn rss_port_filter(rss: Arc<(Toeplitz, RedirectionTable)>, core: usize, cores: u16, local_ip: Ipv4Addr) -> PortFilter {
    Box::new(move |local_port: u16, remote: std::net::SocketAddrV4| {
        let (toeplitz, table) = &*rss;
        let hash = toeplitz.hash_ipv4_tcp_udp(*remote.ip(), local_ip, remote.port(), local_port);
        usize::from(queue_owner(table.queue_for_hash(hash), cores)) == core
    })
}
