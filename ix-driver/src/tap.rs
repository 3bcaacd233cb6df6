//! The `tap` backend: a multi-queue Linux TAP device with one non-blocking file
//! descriptor per queue, each queue owned by one core thread.
//!
//! # Set-up
//! [`TapDevice::open`] creates the device (or attaches to one of that name),
//! sets it up and reads its MTU. Each queue's descriptor is taken with
//! [`TapDevice::take_queue_fd`], moved to its core thread (descriptors are
//! `Send`, pools are not) and turned into a [`TapQueue`] there with that core's
//! [`PacketPool`]. The device is not made persistent: it disappears when the
//! `TapDevice` and every descriptor taken from it are closed.
//!
//! The kernel side of the device keeps its own MAC address (see
//! [`TapDevice::kernel_mac`]); the dataplane uses another, locally administered
//! one ([`TapDevice::mac`]), as if the TAP were a wire between two hosts.
//!
//! # Performance
//! TAP moves one frame per system call: a `read` returns exactly one frame and a
//! `write` takes exactly one, and `readv`/`writev` only scatter one frame over
//! several buffers, they do not batch frames. This backend is for development
//! and tests; the AF_XDP backend (`xdp`) is the fast path.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::error::DriverError;
use crate::netdev::{InterfaceControl, interface_request, name_of, validate_name};
use crate::pool::{FRAME_DATA_BYTES, PacketBuf, PacketPool};
use crate::queue::{ETHERNET_HEADER_BYTES, NetQueue, QueueStats};

/// The clone device every TAP queue is opened from.
const TUN_DEVICE_PATH: &CStr = c"/dev/net/tun";
/// Queues a TAP device can have (the kernel's `MAX_TAP_QUEUES`).
pub const MAX_TAP_QUEUES: u16 = 256;
/// The smallest MTU Linux accepts on an Ethernet device (`ETH_MIN_MTU`).
pub const MIN_MTU_BYTES: u32 = 68;
/// The largest MTU this backend accepts: its frames fit a fresh pool frame with
/// one byte to spare, so that a read which fills the frame shows a cut frame.
pub const MAX_MTU_BYTES: u32 = FRAME_DATA_BYTES - ETHERNET_HEADER_BYTES as u32 - 1;
/// Flags of every queue: Ethernet frames, no packet-information prefix, one
/// descriptor per queue.
const TAP_QUEUE_FLAGS: libc::c_int = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE;

/// How to open a TAP device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapConfig {
    /// Number of queues, from 1 to [`MAX_TAP_QUEUES`].
    pub queues: u16,
    /// The dataplane's MAC address; `None` derives a locally administered one
    /// from the device name.
    pub mac: Option<[u8; 6]>,
}

impl Default for TapConfig {
    fn default() -> Self {
        Self { queues: 1, mac: None }
    }
}

/// A multi-queue TAP device and the descriptors of the queues not yet taken.
#[derive(Debug)]
pub struct TapDevice {
    name: String,
    mac: [u8; 6],
    kernel_mac: [u8; 6],
    mtu: u32,
    queue_fds: Vec<Option<OwnedFd>>,
}

impl TapDevice {
    /// Opens `queues` queues of the TAP device `name` (creating it if needed),
    /// sets it up, and derives the dataplane's MAC address from the name.
    ///
    /// # Errors
    /// See [`TapDevice::open_with`].
    pub fn open(name: &str, queues: u16) -> Result<Self, DriverError> {
        Self::open_with(name, &TapConfig { queues, mac: None })
    }

    /// Opens the TAP device `name` as `config` says and sets it up. A name with
    /// `%d` lets the kernel pick the number; [`TapDevice::name`] tells the result.
    /// A device this call creates goes away with its last queue descriptor; an
    /// existing persistent one (`ip tuntap add ... multi_queue`) stays.
    ///
    /// # Errors
    /// - [`DriverError::Config`]: an invalid name (empty, longer than 15 bytes,
    ///   or with `/`, `:` or white space), a queue count out of range, a
    ///   multicast or zero MAC, a device of that name that is not a multi-queue
    ///   TAP device, or an MTU too large for pool frames.
    /// - [`DriverError::Privilege`]: the process lacks `CAP_NET_ADMIN`.
    /// - [`DriverError::DeviceMissing`]: `/dev/net/tun` does not exist.
    /// - [`DriverError::Os`]: any other failed system call.
    pub fn open_with(name: &str, config: &TapConfig) -> Result<Self, DriverError> {
        validate_name(name)?;
        if config.queues == 0 || config.queues > MAX_TAP_QUEUES {
            return Err(DriverError::Config(format!(
                "a TAP device has 1 to {MAX_TAP_QUEUES} queues, not {}",
                config.queues
            )));
        }
        let mut name = name.to_owned();
        let mut queue_fds = Vec::with_capacity(usize::from(config.queues));
        for _ in 0..config.queues {
            let (fd, attached) = open_queue(&name)?;
            // Later queues attach to the name the kernel chose for the first.
            name = attached;
            queue_fds.push(Some(fd));
        }
        let control = InterfaceControl::new(&name, privilege_error)?;
        let mtu = control.mtu()?;
        if mtu > MAX_MTU_BYTES {
            return Err(mtu_too_large(&name, mtu));
        }
        control.set_up()?;
        let kernel_mac = control.hardware_address()?;
        let mac = match config.mac {
            Some(mac) => validate_mac(mac, kernel_mac)?,
            None => mac_from_name(&name, kernel_mac),
        };
        tracing::info!(device = %name, queues = config.queues, mtu, mac = ?mac, "tap device open");
        Ok(Self { name, mac, kernel_mac, mtu, queue_fds })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The dataplane's MAC address: the source of the frames it sends.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The MAC address of the kernel side of the device (the interface's own).
    pub fn kernel_mac(&self) -> [u8; 6] {
        self.kernel_mac
    }

    /// The device MTU in bytes (IP packet, without the Ethernet header).
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// Number of queues the device was opened with.
    pub fn queue_count(&self) -> u16 {
        self.queue_fds.len() as u16
    }

    /// Sets the device MTU. Queues copy the MTU when taken, so it can only be
    /// changed while every queue is still with the device.
    ///
    /// # Errors
    /// [`DriverError::Config`] when a queue was already taken or `mtu` is outside
    /// [`MIN_MTU_BYTES`]..=[`MAX_MTU_BYTES`]; [`DriverError::Privilege`] or
    /// [`DriverError::Os`] when the kernel refuses.
    pub fn set_mtu(&mut self, mtu: u32) -> Result<(), DriverError> {
        if self.queue_fds.iter().any(Option::is_none) {
            return Err(DriverError::Config(format!("set the MTU of {} before taking its queues", self.name)));
        }
        if mtu > MAX_MTU_BYTES {
            return Err(mtu_too_large(&self.name, mtu));
        }
        if mtu < MIN_MTU_BYTES {
            return Err(DriverError::Config(format!(
                "MTU {mtu} of {} is below the minimum of {MIN_MTU_BYTES} bytes",
                self.name
            )));
        }
        InterfaceControl::new(&self.name, privilege_error)?.set_mtu(mtu)?;
        self.mtu = mtu;
        Ok(())
    }

    /// Takes the descriptor of queue `index`, to be moved to the thread that will
    /// own the queue and turned into a [`TapQueue`] there.
    ///
    /// # Errors
    /// [`DriverError::Config`] when `index` is out of range or already taken.
    pub fn take_queue_fd(&mut self, index: u16) -> Result<TapQueueFd, DriverError> {
        let queues = self.queue_count();
        let slot = self
            .queue_fds
            .get_mut(usize::from(index))
            .ok_or_else(|| DriverError::Config(format!("{} has {queues} queues: no queue {index}", self.name)))?;
        let fd = slot
            .take()
            .ok_or_else(|| DriverError::Config(format!("queue {index} of {} was already taken", self.name)))?;
        Ok(TapQueueFd { fd, index, mac: self.mac, max_frame_len: self.mtu as usize + ETHERNET_HEADER_BYTES })
    }

    /// Takes queue `index` and builds it on this thread with `pool`.
    ///
    /// # Errors
    /// As [`TapDevice::take_queue_fd`].
    pub fn queue(&mut self, index: u16, pool: PacketPool) -> Result<TapQueue, DriverError> {
        Ok(TapQueue::new(self.take_queue_fd(index)?, pool))
    }
}

/// The descriptor of one TAP queue with what its queue needs to know, on its way
/// to the thread that will own it. `Send`, unlike [`TapQueue`].
#[derive(Debug)]
pub struct TapQueueFd {
    fd: OwnedFd,
    index: u16,
    mac: [u8; 6],
    max_frame_len: usize,
}

impl TapQueueFd {
    /// The queue's index within its device.
    pub fn index(&self) -> u16 {
        self.index
    }
}

/// One queue of a TAP device, owned by one core: its descriptor and that core's
/// pool.
#[derive(Debug)]
pub struct TapQueue {
    /// The queue's descriptor, as a `File` for safe `read` and `write`.
    file: File,
    pool: PacketPool,
    index: u16,
    mac: [u8; 6],
    max_frame_len: usize,
    stats: QueueStats,
}

impl TapQueue {
    /// Builds the queue on the thread that will own it, receiving into `pool`.
    pub fn new(fd: TapQueueFd, pool: PacketPool) -> Self {
        Self {
            file: File::from(fd.fd),
            pool,
            index: fd.index,
            mac: fd.mac,
            max_frame_len: fd.max_frame_len,
            stats: QueueStats::default(),
        }
    }

    /// Whether a frame is waiting to be read, without reading it.
    fn frame_waiting(&self) -> bool {
        let mut pollfd = libc::pollfd { fd: self.file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: `pollfd` is one valid, initialised entry that outlives the call,
        // and a zero timeout makes the call return at once.
        let ready = unsafe { libc::poll(&mut pollfd, 1, 0) };
        ready > 0 && pollfd.revents & libc::POLLIN != 0
    }
}

impl NetQueue for TapQueue {
    /// Reads up to `max` frames, one `read` each, stopping early when the device
    /// has no more, when the pool is empty (counted in `pool_exhausted` if a
    /// frame was waiting) or on an error (counted in `rx_drops`). Frames longer
    /// than the MTU plus the Ethernet header (the kernel's MTU was raised after
    /// the queue was taken) are dropped and counted in `rx_drops`; they use up
    /// one of the `max` reads, so a burst stays bounded.
    fn rx_burst(&mut self, batch: &mut Vec<PacketBuf>, max: usize) -> usize {
        let mut received = 0;
        for _ in 0..max {
            let Ok(mut frame) = self.pool.alloc() else {
                if self.frame_waiting() {
                    self.stats.pool_exhausted += 1;
                }
                break;
            };
            match retry_interrupted(|| (&self.file).read(frame.spare_mut())) {
                Ok(len) if len > self.max_frame_len => {
                    self.stats.rx_drops += 1;
                    tracing::debug!(queue = self.index, len, max = self.max_frame_len, "tap: oversized frame dropped");
                }
                Ok(len) => {
                    frame.commit(len);
                    batch.push(frame.freeze());
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += len as u64;
                    received += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    self.stats.rx_drops += 1;
                    tracing::debug!(queue = self.index, %error, "tap: read failed");
                    break;
                }
            }
        }
        if received == 0 {
            self.stats.empty_polls += 1;
        }
        received
    }

    /// Writes frames from the front of `batch`, one `write` each. A full device
    /// (`EAGAIN`) ends the burst and leaves the rest in `batch`; a frame longer
    /// than the MTU plus the Ethernet header, or one the kernel refuses, is taken
    /// and counted in `tx_drops`.
    fn tx_burst(&mut self, batch: &mut Vec<PacketBuf>) -> usize {
        let mut taken = 0;
        for frame in batch.iter() {
            if frame.len() > self.max_frame_len {
                self.stats.tx_drops += 1;
                tracing::debug!(queue = self.index, len = frame.len(), "tap: oversized frame not sent");
            } else {
                match retry_interrupted(|| (&self.file).write(frame)) {
                    Ok(len) => {
                        self.stats.tx_packets += 1;
                        self.stats.tx_bytes += len as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) => {
                        self.stats.tx_drops += 1;
                        tracing::debug!(queue = self.index, %error, "tap: write failed");
                    }
                }
            }
            taken += 1;
        }
        batch.drain(..taken);
        taken
    }

    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.file.as_fd())
    }

    fn pool(&self) -> &PacketPool {
        &self.pool
    }

    fn queue_index(&self) -> u16 {
        self.index
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    fn stats(&self) -> QueueStats {
        self.stats
    }
}

/// Runs one `read` or `write` again when a signal interrupted it.
fn retry_interrupted(mut call: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Opens one queue of the TAP device `name`; returns its descriptor and the name
/// the kernel attached it to.
fn open_queue(name: &str) -> Result<(OwnedFd, String), DriverError> {
    let flags = libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: the path is a NUL-terminated constant; `open` has no other
    // memory effect and returns a new descriptor or -1.
    let raw = unsafe { libc::open(TUN_DEVICE_PATH.as_ptr(), flags) };
    if raw < 0 {
        return Err(open_error(io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a descriptor that `open` just returned to us alone.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut request = interface_request(name);
    request.ifr_ifru.ifru_flags = TAP_QUEUE_FLAGS as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `ifreq`, which `request` is, alive
    // and exclusively borrowed for the call; `fd` is open.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut request) };
    if rc < 0 {
        return Err(attach_error(name, io::Error::last_os_error()));
    }
    Ok((fd, name_of(&request)))
}

fn privilege_error() -> DriverError {
    DriverError::Privilege { backend: "tap", what: "CAP_NET_ADMIN", alternative: "mem or kernel" }
}

/// What a failed `open("/dev/net/tun")` means.
fn open_error(error: io::Error) -> DriverError {
    match error.raw_os_error() {
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) => DriverError::DeviceMissing {
            backend: "tap",
            path: "/dev/net/tun",
            hint: "load the tun module (modprobe tun), or use --backend mem or kernel",
        },
        Some(libc::EPERM | libc::EACCES) => privilege_error(),
        _ => DriverError::Os { call: "open(/dev/net/tun)", source: error },
    }
}

/// What a failed `ioctl(TUNSETIFF)` on `name` means.
fn attach_error(name: &str, error: io::Error) -> DriverError {
    match error.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => privilege_error(),
        Some(libc::EINVAL) => DriverError::Config(format!(
            "{name} exists and is not a multi-queue TAP device (IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE)"
        )),
        _ => DriverError::Os { call: "ioctl(TUNSETIFF)", source: error },
    }
}

fn mtu_too_large(name: &str, mtu: u32) -> DriverError {
    DriverError::Config(format!(
        "MTU {mtu} of {name} is too large: pool frames hold an MTU of at most {MAX_MTU_BYTES} bytes"
    ))
}

/// Checks a configured MAC address: unicast, not zero, not the kernel side's.
fn validate_mac(mac: [u8; 6], kernel_mac: [u8; 6]) -> Result<[u8; 6], DriverError> {
    let problem = if mac[0] & 0x01 != 0 {
        "is a multicast address"
    } else if mac == [0; 6] {
        "is zero"
    } else if mac == kernel_mac {
        "is the kernel side's own address"
    } else {
        return Ok(mac);
    };
    Err(DriverError::Config(format!("MAC address {mac:02x?} {problem}")))
}

/// A locally administered unicast MAC address derived from the device name (an
/// FNV-1a hash), so that a device keeps its address across runs; changed in its
/// last bit if it happens to equal the kernel side's.
fn mac_from_name(name: &str, kernel_mac: [u8; 6]) -> [u8; 6] {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0100_0000_01b3;
    let hash = name.bytes().fold(FNV_OFFSET_BASIS, |h, b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME));
    let h = hash.to_be_bytes();
    // 0x02: locally administered; bit 0x01 clear: unicast.
    let mut mac = [0x02, h[0], h[1], h[2], h[3], h[4]];
    if mac == kernel_mac {
        mac[5] ^= 0x01;
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_mac_is_local_unicast_stable_and_not_the_kernels() {
        let kernel = [0x02, 0, 0, 0, 0, 1];
        let mac = mac_from_name("ixtap0", kernel);
        assert_eq!(mac[0] & 0x03, 0x02, "locally administered unicast: {mac:02x?}");
        assert_eq!(mac, mac_from_name("ixtap0", kernel));
        assert_ne!(mac, mac_from_name("ixtap1", kernel));
        let clash = mac_from_name("ixtap0", mac);
        assert_ne!(clash, mac);
        assert_eq!(clash[0] & 0x03, 0x02);
    }

    #[test]
    fn configured_mac_must_be_unicast_nonzero_and_distinct() {
        let kernel = [0x02, 1, 2, 3, 4, 5];
        assert_eq!(validate_mac([0x02, 9, 9, 9, 9, 9], kernel).unwrap(), [0x02, 9, 9, 9, 9, 9]);
        assert!(validate_mac([0x01, 0, 0x5e, 0, 0, 1], kernel).is_err());
        assert!(validate_mac([0; 6], kernel).is_err());
        assert!(validate_mac(kernel, kernel).is_err());
    }

    #[test]
    fn open_errors_say_what_to_do() {
        let missing = open_error(io::Error::from_raw_os_error(libc::ENOENT));
        assert!(matches!(missing, DriverError::DeviceMissing { path: "/dev/net/tun", .. }));
        assert!(missing.to_string().contains("modprobe tun"), "{missing}");
        let denied = open_error(io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(denied.to_string(), "tap needs CAP_NET_ADMIN: run as root or use --backend mem or kernel");
        let busy = attach_error("ixtap0", io::Error::from_raw_os_error(libc::EPERM));
        assert!(matches!(busy, DriverError::Privilege { backend: "tap", .. }));
        let wrong_kind = attach_error("eth0", io::Error::from_raw_os_error(libc::EINVAL));
        assert!(wrong_kind.to_string().contains("eth0 exists and is not a multi-queue TAP"));
        let other = attach_error("ixtap0", io::Error::from_raw_os_error(libc::E2BIG));
        assert!(matches!(other, DriverError::Os { call: "ioctl(TUNSETIFF)", .. }));
    }

    #[test]
    fn largest_mtu_fits_a_pool_frame() {
        assert!(MAX_MTU_BYTES as usize + ETHERNET_HEADER_BYTES < FRAME_DATA_BYTES as usize);
        const { assert!(MAX_MTU_BYTES >= 1500) };
    }
}
