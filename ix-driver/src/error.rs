//! Typed errors of the driver layer: each says what went wrong and, where a user
//! can act, what to do.

use std::io;

/// Errors from setting up or running a backend.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A system call failed.
    #[error("{call}: {source}")]
    Os {
        /// The call and its object, e.g. `"ioctl(TUNSETIFF)"`.
        call: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Huge pages were required but could not be had.
    #[error(
        "2 MiB huge pages for {bytes} bytes are not available ({detail}): \
         raise /proc/sys/vm/nr_hugepages or allow ordinary pages"
    )]
    HugePagesUnavailable {
        /// How many bytes were asked for.
        bytes: usize,
        /// What the kernel said.
        detail: String,
    },
    /// The backend needs a privilege this process lacks.
    #[error("{backend} needs {what}: run as root or use --backend {alternative}")]
    Privilege {
        /// The backend that could not start, e.g. `"tap"`.
        backend: &'static str,
        /// The missing privilege, e.g. `"CAP_NET_ADMIN"`.
        what: &'static str,
        /// A backend that works without it.
        alternative: &'static str,
    },
    /// A device file the backend needs does not exist.
    #[error("{backend} needs {path}, which does not exist: {hint}")]
    DeviceMissing {
        /// The backend that could not start, e.g. `"tap"`.
        backend: &'static str,
        /// The missing file, e.g. `"/dev/net/tun"`.
        path: &'static str,
        /// What to do about it.
        hint: &'static str,
    },
    /// A queue was asked for that another owner already holds.
    #[error("{backend} queue {queue} of port {port} is already taken: each queue belongs to one core")]
    QueueTaken {
        /// The backend, e.g. `"mem"`.
        backend: &'static str,
        /// The port (device) of the queue.
        port: u16,
        /// The queue index.
        queue: u16,
    },
    /// No interface of that name exists in the calling thread's network
    /// namespace.
    #[error("no network interface named {name} here: check the name with `ip link` (and the network namespace)")]
    NoSuchInterface {
        /// The name asked for.
        name: String,
    },
    /// The interface (or the kernel) cannot do what the XDP backend asked.
    #[error("{iface}: {what}: {hint}")]
    XdpUnsupported {
        /// The interface.
        iface: String,
        /// What failed, e.g. `"native XDP is not supported by its driver"`.
        what: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// More queues were asked for than the interface has.
    #[error(
        "{iface} has {available} receive queue(s) but {requested} were asked for: use at most          {available} cores or queues (a veth pair gets more with `ip link add ... numrxqueues N          numtxqueues N`, a NIC with `ethtool -L {iface} combined N`)"
    )]
    TooManyQueues {
        /// The interface.
        iface: String,
        /// Queues asked for.
        requested: u32,
        /// Queues the interface has.
        available: u32,
    },
    /// `ixcp` refused a dataplane's request.
    #[error(transparent)]
    Refused(#[from] crate::ixcp::Refusal),
    /// `ixcp` or a dataplane sent bytes that are not a protocol message.
    #[error("ixcp protocol: {0}")]
    Protocol(#[from] crate::ixcp::ProtocolError),
    /// The kernel's verifier refused the XDP program (a bug in this crate: the
    /// program is fixed).
    #[error("the kernel refused the XDP program ({source}); verifier log: {log}")]
    BpfRejected {
        /// The error `bpf(BPF_PROG_LOAD)` returned.
        #[source]
        source: io::Error,
        /// The last lines of the verifier's log.
        log: String,
    },
    /// No PCI device has that address.
    #[error("{backend}: no PCI device {address}: list the NICs with `lspci -D -d 8086:`")]
    NoSuchPciDevice {
        /// The backend that could not start, e.g. `"igb"`.
        backend: &'static str,
        /// The address asked for.
        address: String,
    },
    /// The device is not bound to vfio-pci.
    #[error(
        "{backend}: PCI device {address} is bound to {driver}, not vfio-pci: run `modprobe vfio-pci; \
         echo {address} > /sys/bus/pci/devices/{address}/driver/unbind; \
         echo vfio-pci > /sys/bus/pci/devices/{address}/driver_override; \
         echo {address} > /sys/bus/pci/drivers_probe`"
    )]
    NotBoundToVfio {
        /// The backend that could not start.
        backend: &'static str,
        /// The device.
        address: String,
        /// The driver it is bound to, or "no driver".
        driver: String,
    },
    /// The device has no IOMMU group: the IOMMU is off.
    #[error(
        "{backend}: PCI device {address} has no IOMMU group: enable VT-d/AMD-Vi in the firmware and boot \
         with intel_iommu=on (or amd_iommu=on)"
    )]
    NoIommuGroup {
        /// The backend that could not start.
        backend: &'static str,
        /// The device.
        address: String,
    },
    /// Another device of the IOMMU group is bound to a host driver.
    #[error(
        "{backend}: IOMMU group {group} is not viable: bind every device in \
         /sys/kernel/iommu_groups/{group}/devices to vfio-pci (or unbind it)"
    )]
    GroupNotViable {
        /// The backend that could not start.
        backend: &'static str,
        /// The group number.
        group: String,
    },
    /// The device did not do what its register map says it does.
    #[error("{backend} {address}: {what}")]
    DeviceFailed {
        /// The backend.
        backend: &'static str,
        /// The device.
        address: String,
        /// What did not happen, and what to check.
        what: String,
    },
    /// A backend specification could not be parsed.
    #[error("unknown backend {0:?}: expected mem, tap:NAME, kernel, xdp:IFACE, igb:PCI_ADDR or ixgbe:PCI_ADDR")]
    UnknownBackend(String),
}

impl DriverError {
    /// Wraps the calling thread's last OS error.
    pub fn os(call: &'static str) -> Self {
        Self::Os { call, source: io::Error::last_os_error() }
    }
}

/// The pool had no free frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("packet buffer pool exhausted ({capacity} frames, all in use)")]
pub struct PoolExhausted {
    /// Frames in the pool.
    pub capacity: u32,
}

/// A frame was asked to hold more than its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame room exceeded: {requested} bytes asked, {available} available")]
pub struct FrameFull {
    /// Bytes asked for.
    pub requested: usize,
    /// Bytes left at that end of the frame.
    pub available: usize,
}
