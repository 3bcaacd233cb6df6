//! The `igb` (Intel 82576) and `ixgbe` (Intel 82599) backends: a user-space
//! driver over VFIO that polls the NIC's queues directly, as IX did.
//!
//! # Set-up
//! [`NicDevice::open`] opens the PCI device through VFIO ([`vfio`]), maps BAR0,
//! turns bus mastering on, resets the NIC, brings the link up and programs the
//! filters and RSS ([`family`]). Each queue is taken with
//! [`NicDevice::take_queue`], moved to its core thread and built there with that
//! core's pool by [`NicQueue::new`], which maps the pool's region and the
//! queue's descriptor rings into the IOMMU and enables the queue.
//!
//! # Addresses the device sees
//! Every queue has an IOVA window of its own, `(queue + 1) << 32`: its rings at
//! the window's start, its pool region at [`POOL_IOVA_OFFSET`] into it. A frame's
//! IOVA is so its region offset plus a constant, and no physical address is
//! ever looked up. The IOMMU lets the device reach those windows and nothing
//! else of the machine's memory.
//!
//! # Release
//! Dropping a queue disables its rings and unmaps its memory; dropping the last
//! handle closes the VFIO descriptors, and vfio-pci resets the function. The
//! kernel closes them the same way when the process is killed, and the next
//! start resets the NIC again, so a later start works.

mod family;
mod igb;
mod ixgbe;
mod regs;
mod ring;
mod vfio;

#[cfg(test)]
mod model;

use std::cell::Cell;
use std::os::fd::BorrowedFd;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use regs::Registers;

use crate::error::DriverError;
use crate::pool::{PacketBuf, PacketPool};
use crate::queue::{NetQueue, QueueStats};
use crate::region::HugePages;
use crate::rss::{RSS_DEFAULT_KEY, RedirectionTable, Toeplitz};
use family::{Family, Igb, Ixgbe, disable_ring, enable_ring};
use ring::{DescriptorRing, RxRing, TxRing};
use vfio::VfioDevice;

/// Descriptors of each receive ring.
pub const RX_RING_DESCS: u16 = 512;
/// Descriptors of each transmit ring.
pub const TX_RING_DESCS: u16 = 512;
/// Where a queue's pool region starts in its IOVA window (rings come first).
pub const POOL_IOVA_OFFSET: u64 = 1 << 31;
/// The largest frame sent or received: a 1500-byte MTU and the Ethernet header
/// (jumbo frames are off).
pub const MAX_FRAME_BYTES: usize = 1514;
/// How long [`NicDevice::open`] waits for the link after auto-negotiation.
const LINK_TIMEOUT: Duration = Duration::from_secs(10);
/// Receive bursts between two reads of the hardware drop counters.
const COUNTER_READ_BURSTS: u32 = 4096;

/// The NIC family a backend drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicFamily {
    /// Intel 82576 (`igb`): exercised end to end against QEMU's model.
    Igb,
    /// Intel 82599 (`ixgbe`): written to the datasheet, tested against the
    /// in-memory ring model only.
    Ixgbe,
}

impl NicFamily {
    fn registers(self) -> &'static dyn Family {
        match self {
            NicFamily::Igb => &Igb,
            NicFamily::Ixgbe => &Ixgbe,
        }
    }

    /// The backend's name: `igb` or `ixgbe`.
    pub fn name(self) -> &'static str {
        self.registers().name()
    }
}

/// How to open a NIC: `igb:PCI_ADDR[,queues=N][,hugepages=auto|never|require]`
/// (or `ixgbe:...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicConfig {
    /// The family.
    pub family: NicFamily,
    /// PCI address, `DDDD:BB:DD.F`.
    pub address: String,
    /// Queues, one per core; the runtime's core count when `None`.
    pub queues: Option<u16>,
    /// Huge pages for the pools.
    pub huge_pages: HugePages,
}

impl NicConfig {
    /// The queue count for a runtime of `cores` cores.
    ///
    /// # Errors
    /// [`DriverError::Config`] when `queues=` differs from the core count.
    pub fn queue_count(&self, cores: usize) -> Result<u16, DriverError> {
        let cores = u16::try_from(cores).map_err(|_| DriverError::Config(format!("{cores} cores is too many")))?;
        let queues = self.queues.unwrap_or(cores);
        if queues != cores {
            return Err(DriverError::Config(format!(
                "{}:{}: queues={queues} but the runtime has {cores} core(s): each core owns one queue",
                self.family.name(),
                self.address
            )));
        }
        Ok(queues)
    }
}

impl FromStr for NicConfig {
    type Err = DriverError;

    /// Parses `igb:PCI_ADDR[,key=value]...` or `ixgbe:...`. A short address
    /// (`BB:DD.F`) gets domain 0000.
    fn from_str(spec: &str) -> Result<Self, DriverError> {
        let bad = |why: &str| DriverError::Config(format!("{spec}: {why}"));
        let (family, rest) = match spec.split_once(':') {
            Some(("igb", rest)) => (NicFamily::Igb, rest),
            Some(("ixgbe", rest)) => (NicFamily::Ixgbe, rest),
            _ => return Err(bad("expected igb:PCI_ADDR or ixgbe:PCI_ADDR")),
        };
        let mut parts = rest.split(',');
        let address = normalize_pci_address(parts.next().unwrap_or_default().trim())
            .ok_or_else(|| bad("the PCI address is DDDD:BB:DD.F or BB:DD.F, as `lspci -D` prints it"))?;
        let mut config = NicConfig { family, address, queues: None, huge_pages: HugePages::Auto };
        for option in parts {
            match option.split_once('=') {
                Some(("queues", n)) => {
                    let n: u16 =
                        n.parse().ok().filter(|&n| n > 0).ok_or_else(|| bad("queues= takes a number from 1"))?;
                    if n > family.registers().max_queues() {
                        return Err(bad(&format!(
                            "the {} spreads over at most {} queues",
                            family.name(),
                            family.registers().max_queues()
                        )));
                    }
                    config.queues = Some(n);
                }
                Some(("hugepages", value)) => {
                    config.huge_pages = match value {
                        "auto" => HugePages::Auto,
                        "never" => HugePages::Never,
                        "require" => HugePages::Require,
                        _ => return Err(bad("hugepages= is auto, never or require")),
                    }
                }
                _ => return Err(bad(&format!("unknown option {option:?} (queues=N, hugepages=...)"))),
            }
        }
        Ok(config)
    }
}

/// `DDDD:BB:DD.F` with lower-case hex digits, or `None` when `text` is not a
/// PCI address (it ends up in sysfs paths: nothing else may pass).
fn normalize_pci_address(text: &str) -> Option<String> {
    let full = if text.matches(':').count() == 1 { format!("0000:{text}") } else { text.to_string() };
    let (domain, rest) = full.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (device, function) = rest.split_once('.')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let ok = hex(domain, 4)
        && hex(bus, 2)
        && hex(device, 2)
        && function.len() == 1
        && matches!(function.as_bytes()[0], b'0'..=b'7');
    ok.then(|| full.to_ascii_lowercase())
}

/// What the device and its queues share.
#[derive(Debug)]
struct Shared {
    vfio: VfioDevice,
    family: &'static dyn Family,
    mac: [u8; 6],
    /// The redirection table programmed into the NIC.
    table: RedirectionTable,
}

impl Shared {
    fn regs(&self) -> &dyn Registers {
        self.vfio.bar0()
    }

    fn failed(&self, what: String) -> DriverError {
        DriverError::DeviceFailed { backend: self.family.name(), address: self.vfio.address().to_string(), what }
    }
}

/// An opened NIC, reset, with its link up and RSS over its queues; the queues
/// not yet taken.
#[derive(Debug)]
pub struct NicDevice {
    shared: Arc<Shared>,
    taken: Vec<bool>,
}

impl NicDevice {
    /// Opens the NIC of `config` for `queues` queues and starts it.
    ///
    /// # Errors
    /// The set-up errors of VFIO, one line each with what to do (see
    /// `vfio::VfioDevice::open`); [`DriverError::Config`] for more queues than
    /// the family spreads over; [`DriverError::DeviceFailed`] when the NIC does
    /// not reset or its PHY does not answer.
    pub fn open(config: &NicConfig, queues: u16) -> Result<Self, DriverError> {
        let family = config.family.registers();
        if queues == 0 || queues > family.max_queues() {
            return Err(DriverError::Config(format!(
                "{}: {queues} queues asked, the {} spreads over 1 to {}",
                config.address,
                family.name(),
                family.max_queues()
            )));
        }
        let vfio = VfioDevice::open(&config.address, family.name())?;
        let regs = vfio.bar0();
        let failed =
            |what: String| DriverError::DeviceFailed { backend: family.name(), address: config.address.clone(), what };
        family.reset(regs).map_err(failed)?;
        family.start_link(regs).map_err(failed)?;
        let started = Instant::now();
        while !family.link_up(regs) && started.elapsed() < LINK_TIMEOUT {
            std::thread::sleep(Duration::from_millis(10));
        }
        if family.link_up(regs) {
            tracing::info!(address = %config.address, after_ms = started.elapsed().as_millis() as u64, "link up");
        } else {
            tracing::warn!(address = %config.address, "link still down after {LINK_TIMEOUT:?}: check the cable; queues start anyway");
        }
        let table = RedirectionTable::new(family.reta_entries(), queues)?;
        family.configure(regs, &RSS_DEFAULT_KEY, &table);
        family.map_queue_statistics(regs, queues);
        let mac = family.mac_address(regs);
        tracing::info!(address = %config.address, family = family.name(), queues, mac = ?mac, "NIC started");
        Ok(Self { shared: Arc::new(Shared { vfio, family, mac, table }), taken: vec![false; usize::from(queues)] })
    }

    /// The station address the NIC loaded from its EEPROM.
    pub fn mac(&self) -> [u8; 6] {
        self.shared.mac
    }

    /// The RSS hash and redirection table the NIC steers flows by, for
    /// outgoing connections to pick ports whose replies reach their core.
    pub fn rss(&self) -> (Toeplitz, RedirectionTable) {
        (Toeplitz::new(RSS_DEFAULT_KEY), self.shared.table.clone())
    }

    /// Takes queue `index`, to be moved to its core and built there with
    /// [`NicQueue::new`].
    ///
    /// # Errors
    /// [`DriverError::Config`] when `index` is out of range or already taken.
    pub fn take_queue(&mut self, index: u16) -> Result<NicQueueSource, DriverError> {
        let queues = self.taken.len();
        let slot = self
            .taken
            .get_mut(usize::from(index))
            .ok_or_else(|| DriverError::Config(format!("the NIC was opened for {queues} queues: no queue {index}")))?;
        if std::mem::replace(slot, true) {
            return Err(DriverError::Config(format!("queue {index} of the NIC was already taken")));
        }
        Ok(NicQueueSource { shared: self.shared.clone(), index })
    }
}

/// One queue of a [`NicDevice`] on its way to its core. `Send`, unlike
/// [`NicQueue`].
#[derive(Debug)]
pub struct NicQueueSource {
    shared: Arc<Shared>,
    index: u16,
}

impl NicQueueSource {
    /// The queue's index on the NIC.
    pub fn index(&self) -> u16 {
        self.index
    }
}

/// The IOVA window of queue `index`.
fn iova_window(index: u16) -> u64 {
    (u64::from(index) + 1) << 32
}

/// One queue pair of the NIC, owned by one core: the device DMAs received
/// frames straight into the core's pool and sends frames from where they sit.
#[derive(Debug)]
pub struct NicQueue {
    rx: RxRing,
    tx: TxRing,
    pool: PacketPool,
    shared: Arc<Shared>,
    index: u16,
    stats: QueueStats,
    bursts_since_counters: Cell<u32>,
    /// IOVA ranges mapped for this queue, unmapped on drop.
    mappings: Vec<(u64, usize)>,
}

impl NicQueue {
    /// Maps `pool`'s region and the queue's rings into the IOMMU, fills the
    /// receive ring and enables both rings.
    ///
    /// # Errors
    /// [`DriverError::Config`] for a pool too small for the receive ring or too
    /// large for the IOVA window; [`DriverError::Os`] when the IOMMU refuses a
    /// mapping (commonly `RLIMIT_MEMLOCK` for a non-root user: raise it with
    /// `ulimit -l`); [`DriverError::DeviceFailed`] when a ring does not enable.
    pub fn new(source: NicQueueSource, pool: PacketPool) -> Result<Self, DriverError> {
        let NicQueueSource { shared, index } = source;
        if pool.capacity() <= 2 * u32::from(RX_RING_DESCS) {
            return Err(DriverError::Config(format!(
                "a pool of {} frames is too small for a {}-descriptor receive ring: use at least {}",
                pool.capacity(),
                RX_RING_DESCS,
                4 * u32::from(RX_RING_DESCS)
            )));
        }
        let region_len = pool.region().len();
        if region_len as u64 > (1 << 32) - POOL_IOVA_OFFSET {
            return Err(DriverError::Config(format!(
                "a pool region of {region_len} bytes exceeds the 2 GiB IOVA window"
            )));
        }
        let window = iova_window(index);
        let rx_ring = DescriptorRing::new(RX_RING_DESCS)?;
        let tx_ring = DescriptorRing::new(TX_RING_DESCS)?;
        let tx_ring_iova = window + rx_ring.memory().len() as u64;
        let pool_iova = window + POOL_IOVA_OFFSET;
        let mut queue = Self {
            rx: RxRing::new(rx_ring, shared.family.rx_ring(index).tail, pool_iova),
            tx: TxRing::new(tx_ring, shared.family.tx_ring(index).tail, pool_iova, MAX_FRAME_BYTES),
            pool,
            shared,
            index,
            stats: QueueStats::default(),
            bursts_since_counters: Cell::new(0),
            mappings: Vec::with_capacity(3),
        };
        // Each mapping is recorded as soon as it exists, so a failure below
        // unmaps what was mapped (in Drop).
        let rx_memory = (queue.rx.ring().memory().rw_base(), queue.rx.ring().memory().len());
        let tx_memory = (queue.tx.ring().memory().rw_base(), queue.tx.ring().memory().len());
        let pool_memory = queue.pool.region().rw_base();
        queue.map(rx_memory.0, window, rx_memory.1)?;
        queue.map(tx_memory.0, tx_ring_iova, tx_memory.1)?;
        queue.map(pool_memory, pool_iova, region_len)?;
        let (family, regs) = (queue.shared.family, queue.shared.regs());
        family.configure_rx_queue(regs, index);
        enable_ring(regs, family.rx_ring(index), window, queue.rx.ring().bytes())
            .map_err(|e| queue.shared.failed(e))?;
        family.configure_tx_queue(regs, index);
        enable_ring(regs, family.tx_ring(index), tx_ring_iova, queue.tx.ring().bytes())
            .map_err(|e| queue.shared.failed(e))?;
        queue.rx.replenish(regs, &queue.pool, &mut queue.stats);
        // Start the hardware counters from zero.
        family.read_counters(regs, index);
        tracing::debug!(queue = index, posted = queue.rx.posted(), "NIC queue enabled");
        Ok(queue)
    }

    fn map(&mut self, vaddr: std::ptr::NonNull<u8>, iova: u64, len: usize) -> Result<(), DriverError> {
        self.shared.vfio.map_dma(vaddr, iova, len)?;
        self.mappings.push((iova, len));
        Ok(())
    }

    fn read_hardware_counters(&mut self) {
        let counters = self.shared.family.read_counters(self.shared.regs(), self.index);
        self.stats.rx_drops += counters.rx_missed;
        self.stats.hw_rx_packets += counters.rx_packets;
        self.stats.hw_rx_bytes += counters.rx_bytes;
        self.stats.hw_tx_packets += counters.tx_packets;
        self.stats.hw_tx_bytes += counters.tx_bytes;
    }
}

impl NetQueue for NicQueue {
    fn rx_burst(&mut self, batch: &mut Vec<PacketBuf>, max: usize) -> usize {
        let regs = self.shared.vfio.bar0();
        let got = self.rx.receive(regs, &self.pool, batch, max, &mut self.stats);
        if got == 0 {
            self.stats.empty_polls += 1;
        }
        let bursts = self.bursts_since_counters.get() + 1;
        self.bursts_since_counters.set(bursts % COUNTER_READ_BURSTS);
        if bursts == COUNTER_READ_BURSTS {
            self.read_hardware_counters();
        }
        got
    }

    fn tx_burst(&mut self, batch: &mut Vec<PacketBuf>) -> usize {
        let regs = self.shared.vfio.bar0();
        self.tx.transmit(regs, &self.pool, batch, &mut self.stats)
    }

    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        // Interrupts stay masked: the queue is polled.
        None
    }

    fn pool(&self) -> &PacketPool {
        &self.pool
    }

    fn queue_index(&self) -> u16 {
        self.index
    }

    fn mac(&self) -> [u8; 6] {
        self.shared.mac
    }

    fn max_frame_len(&self) -> usize {
        MAX_FRAME_BYTES
    }

    fn stats(&self) -> QueueStats {
        self.stats
    }
}

impl Drop for NicQueue {
    fn drop(&mut self) {
        let (family, regs) = (self.shared.family, self.shared.regs());
        // The device stops using the rings and buffers before their memory goes.
        disable_ring(regs, family.rx_ring(self.index));
        disable_ring(regs, family.tx_ring(self.index));
        for &(iova, len) in &self.mappings {
            self.shared.vfio.unmap_dma(iova, len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specifications_parse() {
        let config: NicConfig = "igb:00:05.0,queues=2".parse().unwrap();
        assert_eq!(config.family, NicFamily::Igb);
        assert_eq!(config.address, "0000:00:05.0");
        assert_eq!(config.queues, Some(2));
        assert_eq!(config.queue_count(2).unwrap(), 2);
        assert!(config.queue_count(1).is_err());
        let config: NicConfig = "ixgbe:0000:3B:00.1,hugepages=require".parse().unwrap();
        assert_eq!((config.family, config.address.as_str()), (NicFamily::Ixgbe, "0000:3b:00.1"));
        assert_eq!(config.huge_pages, HugePages::Require);
        assert_eq!(config.queue_count(4).unwrap(), 4);
    }

    #[test]
    fn bad_specifications_say_what_is_wrong() {
        for (spec, expect) in [
            ("igb:", "PCI address"),
            ("igb:../../etc", "PCI address"),
            ("igb:00:05.8", "PCI address"),
            ("igb:0000:00:05.0,queues=0", "queues="),
            ("igb:0000:00:05.0,queues=9", "at most 8"),
            ("ixgbe:0000:00:05.0,queues=17", "at most 16"),
            ("igb:0000:00:05.0,mode=x", "unknown option"),
            ("e1000:0000:00:05.0", "expected igb"),
        ] {
            let err = spec.parse::<NicConfig>().unwrap_err().to_string();
            assert!(err.contains(expect), "{spec}: {err}");
        }
    }

    #[test]
    fn queue_windows_do_not_overlap() {
        let pool_end = |q| iova_window(q) + POOL_IOVA_OFFSET + (1 << 31);
        for q in 0..16 {
            assert!(pool_end(q) <= iova_window(q + 1));
            // Rings sit below the pool region.
            let rings = (usize::from(RX_RING_DESCS) + usize::from(TX_RING_DESCS)) * ring::DESCRIPTOR_BYTES;
            assert!(rings as u64 <= POOL_IOVA_OFFSET);
        }
    }
}
