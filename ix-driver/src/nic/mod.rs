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
#[cfg(test)]
mod model_registers;

use std::cell::Cell;
use std::os::fd::BorrowedFd;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use regs::Registers;
use regs::RingRegisters;

use crate::error::DriverError;
use crate::pool::{PacketBuf, PacketPool};
use crate::queue::{NetQueue, QueueStats};
use crate::region::HugePages;
use crate::rss::{RSS_DEFAULT_KEY, RedirectionTable, Toeplitz};
use family::{Family, disable_ring, enable_ring};
use igb::Igb;
use ixgbe::Ixgbe;
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
/// Receive bursts between two reads of the hardware statistics registers
/// (a handful of register reads: well under 1% of a burst loop even at 512).
const COUNTER_READ_BURSTS: u32 = 512;

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
    /// Hardware queues: the core count, or a multiple of it, each core then
    /// polling several queues that all receive into its one region (core `c`
    /// owns queues `c`, `c + cores`, `c + 2 cores`...); the runtime's core
    /// count when `None`.
    pub queues: Option<u16>,
    /// Huge pages for the pools.
    pub huge_pages: HugePages,
}

impl NicConfig {
    /// The hardware queue count for a runtime of `cores` cores.
    ///
    /// # Errors
    /// [`DriverError::Config`] when `queues=` is not a multiple of the core
    /// count (each core owns the same number of queues).
    pub fn queue_count(&self, cores: usize) -> Result<u16, DriverError> {
        let cores = u16::try_from(cores).map_err(|_| DriverError::Config(format!("{cores} cores is too many")))?;
        let queues = self.queues.unwrap_or(cores);
        if cores == 0 || queues < cores || queues % cores != 0 {
            return Err(DriverError::Config(format!(
                "{}:{}: queues={queues} but the runtime has {cores} core(s): each core owns the same number of \
                 queues, so queues= must be a multiple of the core count",
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
    /// Cores that took their queues.
    taken: Vec<bool>,
    /// Hardware queues the device was opened for.
    queues: u16,
}

impl NicDevice {
    /// Opens the NIC of `config` for `queues` hardware queues shared out to
    /// `cores` cores, and starts it.
    ///
    /// # Errors
    /// The set-up errors of VFIO, one line each with what to do (see
    /// `vfio::VfioDevice::open`); [`DriverError::Config`] for more queues than
    /// the family spreads over, or a queue count that is not a multiple of
    /// `cores`; [`DriverError::DeviceFailed`] when the NIC does not reset or
    /// its PHY does not answer.
    pub fn open(config: &NicConfig, queues: u16, cores: u16) -> Result<Self, DriverError> {
        let family = config.family.registers();
        if queues == 0 || queues > family.max_queues() {
            return Err(DriverError::Config(format!(
                "{}: {queues} queues asked, the {} spreads over 1 to {}",
                config.address,
                family.name(),
                family.max_queues()
            )));
        }
        if cores == 0 || queues % cores != 0 {
            return Err(DriverError::Config(format!(
                "{}: {queues} queues cannot be shared equally by {cores} core(s)",
                config.address
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
        let shared = Arc::new(Shared { vfio, family, mac, table });
        Ok(Self { shared, taken: vec![false; usize::from(cores)], queues })
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

    /// Takes the queues of core `core`, to be moved to it and built there
    /// with [`NicQueue::new`]: hardware queues `core`, `core + cores`, ...
    ///
    /// # Errors
    /// [`DriverError::Config`] when `core` is out of range or already took them.
    pub fn take_queue(&mut self, core: u16) -> Result<NicQueueSource, DriverError> {
        let cores = self.taken.len() as u16;
        let slot = self
            .taken
            .get_mut(usize::from(core))
            .ok_or_else(|| DriverError::Config(format!("the NIC was opened for {cores} cores: no core {core}")))?;
        if std::mem::replace(slot, true) {
            return Err(DriverError::Config(format!("the queues of core {core} were already taken")));
        }
        let hardware = core_queues(core, cores, self.queues);
        Ok(NicQueueSource { shared: self.shared.clone(), index: core, hardware })
    }
}

/// The hardware queues core `core` of `cores` owns among `queues`: every
/// `cores`-th from `core`, so that a redirection table spreading entries over
/// the queues in turn spreads them over the cores in turn too.
fn core_queues(core: u16, cores: u16, queues: u16) -> Vec<u16> {
    (core..queues).step_by(usize::from(cores.max(1))).collect()
}

/// The core that owns hardware queue `queue` when `cores` cores share them
/// (see [`NicDevice::take_queue`]).
pub fn queue_owner(queue: u16, cores: u16) -> u16 {
    queue % cores.max(1)
}

/// One queue of a [`NicDevice`] on its way to its core. `Send`, unlike
/// [`NicQueue`].
#[derive(Debug)]
pub struct NicQueueSource {
    shared: Arc<Shared>,
    /// The core.
    index: u16,
    /// Its hardware queues, the first of which transmits.
    hardware: Vec<u16>,
}

impl NicQueueSource {
    /// The core these queues belong to (its first hardware queue has the same
    /// index).
    pub fn index(&self) -> u16 {
        self.index
    }

    /// The hardware queues the core polls.
    pub fn hardware_queues(&self) -> &[u16] {
        &self.hardware
    }
}

/// The IOVA window of core `index`'s queues: their rings from its start, its
/// pool region at [`POOL_IOVA_OFFSET`].
fn iova_window(index: u16) -> u64 {
    (u64::from(index) + 1) << 32
}

/// One core's queues of the NIC: one or more receive rings (one per hardware
/// queue it owns) and one transmit ring, all in the core's IOVA window. The
/// device DMAs received frames straight into the core's pool and sends frames
/// from where they sit.
#[derive(Debug)]
pub struct NicQueue {
    /// Receive rings with their hardware queue, polled in turn.
    rx: Vec<(u16, RxRing)>,
    /// The ring the next burst polls first.
    next_rx: usize,
    /// The transmit ring, on the core's first hardware queue.
    tx: TxRing,
    pool: PacketPool,
    shared: Arc<Shared>,
    index: u16,
    stats: QueueStats,
    bursts_since_counters: Cell<u32>,
    /// IOVA ranges mapped for this queue, unmapped on drop.
    mappings: Vec<(u64, usize)>,
    /// Rings enabled on the device, disabled on drop.
    enabled: Vec<RingRegisters>,
}

impl NicQueue {
    /// Maps `pool`'s region and the core's rings into the IOMMU, fills the
    /// receive rings and enables them and the transmit ring.
    ///
    /// # Errors
    /// [`DriverError::Config`] for a pool too small for the receive rings or
    /// too large for the IOVA window; [`DriverError::Os`] when the IOMMU
    /// refuses a mapping (commonly `RLIMIT_MEMLOCK` for a non-root user: raise
    /// it with `ulimit -l`); [`DriverError::DeviceFailed`] when a ring does not
    /// enable.
    pub fn new(source: NicQueueSource, pool: PacketPool) -> Result<Self, DriverError> {
        let NicQueueSource { shared, index, hardware } = source;
        let Some(&tx_queue) = hardware.first() else {
            return Err(DriverError::Config(format!("core {index} owns no queue of the NIC")));
        };
        let rx_descriptors = u32::from(RX_RING_DESCS) * hardware.len() as u32;
        if pool.capacity() <= 2 * rx_descriptors {
            return Err(DriverError::Config(format!(
                "a pool of {} frames is too small for {} receive ring(s) of {} descriptors: use at least {}",
                pool.capacity(),
                hardware.len(),
                RX_RING_DESCS,
                4 * rx_descriptors
            )));
        }
        let region_len = pool.region().len();
        if region_len as u64 > (1 << 32) - POOL_IOVA_OFFSET {
            return Err(DriverError::Config(format!(
                "a pool region of {region_len} bytes exceeds the 2 GiB IOVA window"
            )));
        }
        let window = iova_window(index);
        let pool_iova = window + POOL_IOVA_OFFSET;
        let family = shared.family;
        let rx = hardware
            .iter()
            .map(|&q| Ok((q, RxRing::new(DescriptorRing::new(RX_RING_DESCS)?, family.rx_ring(q).tail, pool_iova))))
            .collect::<Result<Vec<_>, DriverError>>()?;
        let tx_ring = DescriptorRing::new(TX_RING_DESCS)?;
        let mut queue = Self {
            rx,
            next_rx: 0,
            tx: TxRing::new(tx_ring, family.tx_ring(tx_queue).tail, pool_iova, MAX_FRAME_BYTES),
            pool,
            shared,
            index,
            stats: QueueStats::default(),
            bursts_since_counters: Cell::new(0),
            mappings: Vec::with_capacity(hardware.len() + 2),
            enabled: Vec::with_capacity(hardware.len() + 1),
        };
        // Each mapping and ring is recorded as soon as it exists, so a failure
        // below undoes what was done (in Drop). Rings sit one after the other
        // from the window's start: the receive rings, then the transmit ring.
        let mut next_iova = window;
        let mut rx_iovas = Vec::with_capacity(queue.rx.len());
        for i in 0..queue.rx.len() {
            let memory = queue.rx[i].1.ring().memory();
            let (base, len) = (memory.rw_base(), memory.len());
            queue.map(base, next_iova, len)?;
            rx_iovas.push(next_iova);
            next_iova += len as u64;
        }
        let tx_ring_iova = next_iova;
        let tx_memory = (queue.tx.ring().memory().rw_base(), queue.tx.ring().memory().len());
        queue.map(tx_memory.0, tx_ring_iova, tx_memory.1)?;
        let pool_memory = queue.pool.region().rw_base();
        queue.map(pool_memory, pool_iova, region_len)?;
        let regs = queue.shared.regs();
        for (i, &iova) in rx_iovas.iter().enumerate() {
            let hardware_queue = queue.rx[i].0;
            family.configure_rx_queue(regs, hardware_queue);
            let ring = family.rx_ring(hardware_queue);
            queue.enabled.push(ring);
            enable_ring(regs, ring, iova, queue.rx[i].1.ring().bytes()).map_err(|e| queue.shared.failed(e))?;
        }
        family.configure_tx_queue(regs, tx_queue);
        queue.enabled.push(family.tx_ring(tx_queue));
        enable_ring(regs, family.tx_ring(tx_queue), tx_ring_iova, queue.tx.ring().bytes())
            .map_err(|e| queue.shared.failed(e))?;
        for (hardware_queue, ring) in &mut queue.rx {
            ring.replenish(regs, &queue.pool, &mut queue.stats);
            // Start the hardware counters from zero.
            family.read_counters(regs, *hardware_queue);
        }
        let posted: Vec<u16> = queue.rx.iter().map(|(_, ring)| ring.posted()).collect();
        tracing::debug!(core = index, queues = ?hardware, ?posted, "NIC queues enabled");
        Ok(queue)
    }

    fn map(&mut self, vaddr: std::ptr::NonNull<u8>, iova: u64, len: usize) -> Result<(), DriverError> {
        self.shared.vfio.map_dma(vaddr, iova, len)?;
        self.mappings.push((iova, len));
        Ok(())
    }

    fn read_hardware_counters(&mut self) {
        for &(hardware_queue, _) in &self.rx {
            let counters = self.shared.family.read_counters(self.shared.regs(), hardware_queue);
            self.stats.rx_drops += counters.rx_missed;
            self.stats.hw_rx_packets += counters.rx_packets;
            self.stats.hw_rx_bytes += counters.rx_bytes;
            self.stats.hw_tx_packets += counters.tx_packets;
            self.stats.hw_tx_bytes += counters.tx_bytes;
        }
    }
}

impl NetQueue for NicQueue {
    fn rx_burst(&mut self, batch: &mut Vec<PacketBuf>, max: usize) -> usize {
        let regs = self.shared.vfio.bar0();
        // Every ring in turn, the first one changing each burst, so that a
        // busy ring cannot starve the others of the burst's room.
        let rings = self.rx.len();
        let mut got = 0;
        for k in 0..rings {
            if got >= max {
                break;
            }
            let (_, ring) = &mut self.rx[(self.next_rx + k) % rings];
            got += ring.receive(regs, &self.pool, batch, max - got, &mut self.stats);
        }
        self.next_rx = (self.next_rx + 1) % rings;
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
        let regs = self.shared.regs();
        // The device stops using the rings and buffers before their memory goes.
        for &ring in &self.enabled {
            disable_ring(regs, ring);
        }
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
        assert_eq!(config.queue_count(1).unwrap(), 2, "one core may own both queues");
        assert!(config.queue_count(4).is_err(), "fewer queues than cores");
        let config: NicConfig = "ixgbe:00:05.0,queues=6".parse().unwrap();
        assert_eq!(config.queue_count(3).unwrap(), 6);
        assert!(config.queue_count(4).is_err(), "6 queues cannot be shared equally by 4 cores");
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

    #[test]
    fn each_core_owns_every_cores_th_queue_and_the_table_spreads_over_cores_in_turn() {
        assert_eq!(core_queues(0, 2, 8), [0, 2, 4, 6]);
        assert_eq!(core_queues(1, 2, 8), [1, 3, 5, 7]);
        assert_eq!(core_queues(2, 3, 6), [2, 5]);
        assert_eq!(core_queues(0, 1, 4), [0, 1, 2, 3]);
        for queue in 0..8 {
            let owner = queue_owner(queue, 2);
            assert!(core_queues(owner, 2, 8).contains(&queue), "queue {queue} owned by core {owner}");
        }
        // A table over 8 queues names each core as often as a table over 2.
        let table = RedirectionTable::new(128, 8).unwrap();
        let on_core_1 = (0..table.len()).filter(|&e| queue_owner(table.queue(e), 2) == 1).count();
        assert_eq!(on_core_1, 64);
    }
}
