//! An interface with the steering program attached ([`XdpDevice`]): the
//! attachment its queues share (the program, its maps, the interface's facts)
//! and the queues it hands out ([`XdpQueueSource`]) to be built on their cores.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use super::bpf::{AttachMode, BpfMap, BpfProgram, MapType, bpf_error, privilege_error};
use super::config::{BindMode, BusyPoll, XdpConfig, XdpMode};
use super::napi_deferral::NapiDeferral;
use super::program::{self, ProgramMaps};
use crate::error::DriverError;
use crate::netdev::InterfaceControl;
use crate::pool::FRAME_DATA_BYTES;
use crate::queue::ETHERNET_HEADER_BYTES;

/// Local ports of the dataplane's outgoing connections on an address shared
/// with the kernel: above the kernel's default ephemeral range, so the two
/// never pick the same 4-tuple. [`XdpDevice::open`] warns when the kernel's
/// `net.ipv4.ip_local_port_range` overlaps it.
pub const SHARED_EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 61000..=65535;
/// Entries of the pending-ARP map; least recently used ones are evicted.
const ARP_PENDING_ENTRIES: u32 = 256;
/// How long a reply to one of the dataplane's ARP requests is steered to it.
const ARP_PENDING_NS: u64 = 3_000_000_000;
/// License the program is loaded under (the project's; no GPL-only helper is
/// used).
const PROGRAM_LICENSE: &std::ffi::CStr = c"MIT OR Apache-2.0";

/// The interface, the attached program and its maps, shared by the device and
/// every queue. Declared link first: dropping detaches the program before the
/// maps close.
#[derive(Debug)]
pub(super) struct Attachment {
    _link: OwnedFd,
    /// The interface's NAPI deferral while busy polling, restored on drop.
    _napi_deferral: Option<NapiDeferral>,
    program: BpfProgram,
    xsks: BpfMap,
    arp_pending: BpfMap,
    /// Kept open for the program's life (it refers to them).
    _config: BpfMap,
    _ports: BpfMap,
    pub(super) iface: String,
    pub(super) ifindex: u32,
    pub(super) mac: [u8; 6],
    pub(super) mtu: u32,
    pub(super) bind: BindMode,
    pub(super) shared_address: bool,
    /// Busy polling of the queues' sockets, when configured.
    pub(super) busy_poll: Option<BusyPoll>,
}

/// An interface with the steering program attached, and its queues not yet
/// taken.
#[derive(Debug)]
pub struct XdpDevice {
    attachment: Arc<Attachment>,
    taken: Vec<bool>,
}

impl XdpDevice {
    /// Attaches the steering program for a dataplane at `addr` to the
    /// interface of `config` in the calling thread's network namespace, for
    /// `queues` queues (see [`XdpConfig::queue_count`]).
    ///
    /// # Errors
    /// One line each, saying what to do: [`DriverError::Privilege`] without
    /// root's capabilities; [`DriverError::NoSuchInterface`];
    /// [`DriverError::TooManyQueues`]; [`DriverError::XdpUnsupported`] when the
    /// driver has no native XDP or another program is attached;
    /// [`DriverError::Config`] for an MTU larger than a pool frame holds, or
    /// for busy polling in generic mode or where sysfs cannot be written.
    pub fn open(config: &XdpConfig, queues: u16, addr: Ipv4Addr) -> Result<Self, DriverError> {
        let control = InterfaceControl::new(&config.iface, privilege_error)?;
        let ifindex = control.index()?;
        let mac = control.hardware_address()?;
        let mtu = control.mtu()?;
        let mtu_max = FRAME_DATA_BYTES as usize - ETHERNET_HEADER_BYTES;
        if mtu as usize > mtu_max {
            return Err(DriverError::Config(format!(
                "MTU {mtu} of {} is too large: pool frames hold an MTU of at most {mtu_max} bytes",
                config.iface
            )));
        }
        check_queue_count(&control, &config.iface, queues)?;
        if config.busy_poll.is_some() && config.mode == XdpMode::Generic {
            return Err(DriverError::Config(format!(
                "xdp:{}: busy_poll needs mode=native: generic XDP runs in the kernel's backlog, which has no NAPI \
                 instance for a socket to poll",
                config.iface
            )));
        }
        let shared_address = !config.ports.is_empty();
        if shared_address {
            warn_if_kernel_ports_overlap();
        }
        let maps = Maps::create(addr, &config.ports, queues)?;
        let program = BpfProgram::load_xdp("ix_steer", &program::steering_program(maps.fds()), PROGRAM_LICENSE)?;
        let link = attach(&program, ifindex, config)?;
        // After the attach: veth makes its NAPI instances then.
        let napi_deferral =
            config.busy_poll.map(|busy_poll| NapiDeferral::apply(&config.iface, busy_poll)).transpose()?;
        tracing::info!(
            iface = %config.iface,
            ifindex,
            queues,
            mode = ?config.mode,
            %addr,
            ports = ?config.ports,
            "XDP steering program attached"
        );
        let attachment = Attachment {
            _link: link,
            _napi_deferral: napi_deferral,
            program,
            xsks: maps.xsks,
            arp_pending: maps.arp_pending,
            _config: maps.config,
            _ports: maps.ports,
            iface: config.iface.clone(),
            ifindex,
            mac,
            mtu,
            bind: config.bind,
            shared_address,
            busy_poll: config.busy_poll,
        };
        Ok(Self { attachment: Arc::new(attachment), taken: vec![false; usize::from(queues)] })
    }

    /// The interface's MAC address, which the dataplane uses as its own.
    pub fn mac(&self) -> [u8; 6] {
        self.attachment.mac
    }

    /// The interface's MTU.
    pub fn mtu(&self) -> u32 {
        self.attachment.mtu
    }

    /// Takes queue `index`, to be moved to the thread that will own it and
    /// built there with [`XdpQueue::new`](super::XdpQueue::new).
    ///
    /// # Errors
    /// [`DriverError::Config`] when `index` is out of range or already taken.
    pub fn take_queue(&mut self, index: u16) -> Result<XdpQueueSource, DriverError> {
        let queues = self.taken.len();
        let slot = self.taken.get_mut(usize::from(index)).ok_or_else(|| {
            DriverError::Config(format!("{} was opened for {queues} queues: no queue {index}", self.attachment.iface))
        })?;
        if std::mem::replace(slot, true) {
            return Err(DriverError::Config(format!("queue {index} of {} was already taken", self.attachment.iface)));
        }
        Ok(XdpQueueSource { attachment: self.attachment.clone(), index })
    }

    /// Runs the attached program once on `frame` as if it arrived on queue 0,
    /// and returns its verdict: 2 (`XDP_PASS`) for the kernel, 4
    /// (`XDP_REDIRECT`) when queue 0 has a socket, 1 (`XDP_DROP`) for a frame
    /// meant for the dataplane while queue 0 has no socket.
    ///
    /// # Errors
    /// [`DriverError::Os`] when the kernel cannot run it.
    pub fn test_verdict(&self, frame: &[u8]) -> Result<u32, DriverError> {
        self.attachment.program.test_run(frame)
    }
}

/// One queue of an [`XdpDevice`] on its way to the thread that will own it.
/// `Send`, unlike [`XdpQueue`](super::XdpQueue).
#[derive(Debug)]
pub struct XdpQueueSource {
    pub(super) attachment: Arc<Attachment>,
    pub(super) index: u16,
}

impl XdpQueueSource {
    /// The queue's index on its interface.
    pub fn index(&self) -> u16 {
        self.index
    }
}

impl Attachment {
    /// Steers replies from `target` to the dataplane for a while: it just
    /// sent an ARP request for it.
    pub(super) fn expect_arp_reply(&self, target: [u8; 4]) {
        let deadline = monotonic_ns() + ARP_PENDING_NS;
        if let Err(error) = self.arp_pending.update(&target, &deadline.to_ne_bytes()) {
            tracing::debug!(%error, "ARP_PENDING update failed");
        }
    }

    /// Stops steering ARP replies from `sender`: the dataplane has its answer.
    pub(super) fn arp_reply_seen(&self, sender: [u8; 4]) {
        if let Err(error) = self.arp_pending.delete(&sender) {
            tracing::debug!(%error, "ARP_PENDING delete failed");
        }
    }

    /// Enters queue `index`'s socket in the program's socket map.
    pub(super) fn register_socket(&self, index: u16, fd: std::os::fd::BorrowedFd<'_>) -> Result<(), DriverError> {
        self.xsks.update(&u32::from(index).to_ne_bytes(), &(fd.as_raw_fd() as u32).to_ne_bytes())
    }
}

/// The program's maps.
struct Maps {
    config: BpfMap,
    ports: BpfMap,
    arp_pending: BpfMap,
    xsks: BpfMap,
}

impl Maps {
    fn create(addr: Ipv4Addr, ports: &[u16], queues: u16) -> Result<Self, DriverError> {
        let config = BpfMap::create(MapType::Array, "ix_config", 4, program::CONFIG_VALUE_BYTES, 1)?;
        let value = program::config_value(addr, !ports.is_empty(), SHARED_EPHEMERAL_PORTS);
        config.update(&0u32.to_ne_bytes(), &value)?;
        let port_map = BpfMap::create(MapType::Hash, "ix_ports", 4, 4, ports.len().max(1) as u32)?;
        for &port in ports {
            port_map.update(&u32::from(port).to_ne_bytes(), &1u32.to_ne_bytes())?;
        }
        let arp_pending = BpfMap::create(MapType::LruHash, "ix_arp_pending", 4, 8, ARP_PENDING_ENTRIES)?;
        let xsks = BpfMap::create(MapType::XskMap, "ix_xsks", 4, 4, u32::from(queues))?;
        Ok(Self { config, ports: port_map, arp_pending, xsks })
    }

    fn fds(&self) -> ProgramMaps {
        ProgramMaps {
            config: self.config.fd().as_raw_fd(),
            ports: self.ports.fd().as_raw_fd(),
            arp_pending: self.arp_pending.fd().as_raw_fd(),
            xsks: self.xsks.fd().as_raw_fd(),
        }
    }
}

/// Warns when the kernel may pick local ports the dataplane uses on a shared
/// address (a connection of each on the same 4-tuple would break both).
fn warn_if_kernel_ports_overlap() {
    let Ok(text) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else { return };
    let mut bounds = text.split_whitespace().filter_map(|w| w.parse::<u32>().ok());
    if let (Some(low), Some(high)) = (bounds.next(), bounds.next()) {
        let (ours_low, ours_high) =
            (u32::from(*SHARED_EPHEMERAL_PORTS.start()), u32::from(*SHARED_EPHEMERAL_PORTS.end()));
        if low <= ours_high && high >= ours_low {
            tracing::warn!(
                kernel = %format!("{low}-{high}"),
                dataplane = %format!("{ours_low}-{ours_high}"),
                "the kernel's ephemeral ports overlap the dataplane's on this shared address: \
                 set net.ipv4.ip_local_port_range to end below {ours_low}"
            );
        }
    }
}

fn check_queue_count(control: &InterfaceControl<'_>, iface: &str, queues: u16) -> Result<(), DriverError> {
    match control.rx_queues()? {
        Some(available) if u32::from(queues) > available => {
            Err(DriverError::TooManyQueues { iface: iface.to_owned(), requested: u32::from(queues), available })
        }
        Some(available) if u32::from(queues) < available => {
            tracing::warn!(
                iface,
                queues,
                available,
                "the dataplane serves fewer queues than the interface has: its frames arriving on the \
                 others are dropped; use as many cores as queues or reduce the queues (ethtool -L)"
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

fn attach(program: &BpfProgram, ifindex: u32, config: &XdpConfig) -> Result<OwnedFd, DriverError> {
    let mode = match config.mode {
        XdpMode::Native => AttachMode::Native,
        XdpMode::Generic => AttachMode::Generic,
    };
    program.attach_xdp(ifindex, mode).map_err(|error| {
        let iface = config.iface.clone();
        match error.raw_os_error() {
            Some(libc::EOPNOTSUPP) if mode == AttachMode::Native => DriverError::XdpUnsupported {
                iface,
                what: "its driver has no native XDP".into(),
                hint: "use mode=generic",
            },
            Some(libc::EBUSY | libc::EEXIST) => DriverError::XdpUnsupported {
                iface,
                what: "another XDP program is attached".into(),
                hint: "stop the program that attached it, or detach it with `ip link set dev IFACE xdp off`",
            },
            Some(libc::EINVAL | libc::ERANGE) => DriverError::XdpUnsupported {
                iface,
                what: format!("the kernel refused to attach the program in {mode:?} mode ({error})"),
                hint: "native XDP needs an MTU of a page at most and, on veth, the peer up; try mode=generic",
            },
            _ => bpf_error("bpf(BPF_LINK_CREATE)", error),
        }
    })
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the program's `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a live timespec the call fills.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
