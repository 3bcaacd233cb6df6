//! What differs between the NIC families: one register map each (`igb::Igb` for
//! the 82576, `ixgbe::Ixgbe` for the 82599) behind [`Family`], and the set-up steps
//! both share (ring registers, RSS key and redirection table).

use std::time::Duration;

use crate::rss::RedirectionTable;

use super::regs::{QUEUE_ENABLE, Registers, RingRegisters, poll_register};

/// Hardware counters of one queue, as deltas since the last read (the
/// statistics registers clear on read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct HardwareCounters {
    /// Frames the device dropped for want of a receive descriptor or buffer
    /// room.
    pub rx_missed: u64,
    /// Good frames received.
    pub rx_packets: u64,
    /// Bytes of the good frames received.
    pub rx_bytes: u64,
    /// Good frames transmitted.
    pub tx_packets: u64,
    /// Bytes of the good frames transmitted.
    pub tx_bytes: u64,
}

/// A 64-bit statistics counter split in two registers: the low half is read
/// first, since reading the high half clears both.
pub(crate) fn read_split_counter(regs: &dyn Registers, low: u32, high: u32) -> u64 {
    let low = u64::from(regs.read(low));
    low | (u64::from(regs.read(high)) << 32)
}

/// One NIC family's register map and start-up sequence. Every method is a
/// datasheet step; the shared driver calls them in order: [`Family::reset`],
/// [`Family::start_link`], [`Family::configure`], then per queue
/// [`Family::configure_rx_queue`] / [`Family::configure_tx_queue`] and
/// [`enable_ring`].
pub(crate) trait Family: Sync + std::fmt::Debug {
    /// The backend name (`igb`, `ixgbe`).
    fn name(&self) -> &'static str;
    /// Queue pairs the device has.
    fn max_queues(&self) -> u16;
    /// Entries of the redirection table.
    fn reta_entries(&self) -> usize {
        128
    }
    /// Masks interrupts, resets the device and waits for it to come back.
    ///
    /// # Errors
    /// What did not happen, as a sentence.
    fn reset(&self, regs: &dyn Registers) -> Result<(), String>;
    /// Starts link set-up (auto-negotiation); the caller waits with
    /// [`Family::link_up`].
    ///
    /// # Errors
    /// What did not happen, as a sentence.
    fn start_link(&self, regs: &dyn Registers) -> Result<(), String>;
    /// Whether the link is up.
    fn link_up(&self, regs: &dyn Registers) -> bool;
    /// The station address the device loaded from its EEPROM.
    fn mac_address(&self, regs: &dyn Registers) -> [u8; 6];
    /// Receive filters (own address and broadcast only), RSS over `table`,
    /// receive and transmit enabled globally; queues stay off.
    fn configure(&self, regs: &dyn Registers, key: &[u8; 40], table: &RedirectionTable);
    /// Where this family's per-queue register blocks sit.
    fn queue_layout(&self) -> QueueLayout;
    /// The registers of receive ring `queue`.
    fn rx_ring(&self, queue: u16) -> RingRegisters {
        ring_registers(self.queue_layout().rx_base, queue)
    }
    /// The registers of transmit ring `queue`.
    fn tx_ring(&self, queue: u16) -> RingRegisters {
        ring_registers(self.queue_layout().tx_base, queue)
    }
    /// The split-and-replication control register (SRRCTL) of receive queue
    /// `queue`: buffer size and descriptor type.
    fn srrctl(&self, queue: u16) -> u32 {
        self.queue_layout().rx_register(queue, self.queue_layout().srrctl)
    }
    /// Per-queue receive settings before the ring is enabled: advanced one-buffer
    /// descriptors of [`RX_BUFFER_BYTES`](super::ring::RX_BUFFER_BYTES), drop
    /// when the ring is empty. A family that needs more per queue extends this
    /// with [`Family::configure_rx_queue_extra`].
    fn configure_rx_queue(&self, regs: &dyn Registers, queue: u16) {
        let drop_when_empty = self.queue_layout().srrctl_drop_en;
        regs.write(self.srrctl(queue), SRRCTL_BSIZEPACKET_2K | SRRCTL_DESCTYPE_ADVANCED_ONE_BUFFER | drop_when_empty);
        self.configure_rx_queue_extra(regs, queue);
    }
    /// Family-specific receive-queue settings after SRRCTL; none by default.
    fn configure_rx_queue_extra(&self, _regs: &dyn Registers, _queue: u16) {}
    /// Per-queue transmit settings before the ring is enabled.
    fn configure_tx_queue(&self, regs: &dyn Registers, queue: u16);
    /// Points the statistics registers at the queues, where the device
    /// needs it (queue `n` counted in statistics set `n`). Called once, after
    /// [`Family::configure`].
    fn map_queue_statistics(&self, _regs: &dyn Registers, _queues: u16) {}
    /// Reads (and so clears) the statistics registers of `queue`.
    fn read_counters(&self, regs: &dyn Registers, queue: u16) -> HardwareCounters;
}

/// Distance between two queues' register blocks, on both families.
pub(crate) const QUEUE_STRIDE: u32 = 0x40;

/// SRRCTL fields with the same bits on both families: 2 KiB packet buffers,
/// advanced one-buffer descriptors.
const SRRCTL_BSIZEPACKET_2K: u32 = 2;
const SRRCTL_DESCTYPE_ADVANCED_ONE_BUFFER: u32 = 0b001 << 25;

/// Where one family's per-queue register blocks sit: what differs between
/// the families' otherwise identical queue set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueLayout {
    /// Receive queue 0's block; queue `n`'s is [`QUEUE_STRIDE`] `* n` further.
    pub rx_base: u32,
    /// Transmit queue 0's block, laid out the same way.
    pub tx_base: u32,
    /// SRRCTL's offset inside a receive queue's block.
    pub srrctl: u32,
    /// SRRCTL's drop-when-no-descriptor bit.
    pub srrctl_drop_en: u32,
}

impl QueueLayout {
    /// The register at `offset` inside receive queue `queue`'s block.
    pub(crate) fn rx_register(&self, queue: u16, offset: u32) -> u32 {
        self.rx_base + QUEUE_STRIDE * u32::from(queue) + offset
    }
}

/// The ring registers of queue `queue` when queue 0's block starts at
/// `first`: both families lay a block out the same way (base low and high,
/// length, head, tail, control).
pub(crate) fn ring_registers(first: u32, queue: u16) -> RingRegisters {
    let at = first + QUEUE_STRIDE * u32::from(queue);
    RingRegisters { base_low: at, base_high: at + 4, len: at + 8, head: at + 0x10, tail: at + 0x18, control: at + 0x28 }
}

/// How long a queue's enable bit may take to read back set.
const QUEUE_ENABLE_TIMEOUT: Duration = Duration::from_millis(100);

/// Points `ring` at `iova` (`bytes` long), zeroes head and tail, and enables
/// the queue; waits for the enable bit to read back.
///
/// # Errors
/// When the enable bit does not read back set.
pub(crate) fn enable_ring(regs: &dyn Registers, ring: RingRegisters, iova: u64, bytes: u32) -> Result<(), String> {
    regs.write(ring.base_low, iova as u32);
    regs.write(ring.base_high, (iova >> 32) as u32);
    regs.write(ring.len, bytes);
    regs.write(ring.head, 0);
    regs.write(ring.tail, 0);
    regs.set_bits(ring.control, QUEUE_ENABLE);
    let (_, enabled) = poll_register(regs, ring.control, QUEUE_ENABLE_TIMEOUT, |v| v & QUEUE_ENABLE != 0);
    if enabled { Ok(()) } else { Err(format!("queue control register {:#x} did not enable", ring.control)) }
}

/// Disables a ring (the device stops using its memory) and waits for the
/// enable bit to clear.
pub(crate) fn disable_ring(regs: &dyn Registers, ring: RingRegisters) {
    regs.clear_bits(ring.control, QUEUE_ENABLE);
    let (_, disabled) = poll_register(regs, ring.control, QUEUE_ENABLE_TIMEOUT, |v| v & QUEUE_ENABLE == 0);
    if !disabled {
        tracing::warn!(register = ring.control, "queue did not report disabled");
    }
}

/// RSS registers, at the same offsets on both families.
pub(crate) const MRQC: u32 = 0x5818;
pub(crate) const RXCSUM: u32 = 0x5000;
/// RXCSUM: the descriptor carries the RSS hash instead of a checksum (the
/// stack checks checksums itself).
pub(crate) const RXCSUM_PCSD: u32 = 1 << 13;
const RETA_BASE: u32 = 0x5C00;
const RSSRK_BASE: u32 = 0x5C80;
/// Multicast table array: 128 registers on both families.
pub(crate) const MTA_BASE: u32 = 0x5200;
pub(crate) const MTA_REGISTERS: u32 = 128;
/// MRQC hash field enables (same bits on both families): TCP/IPv4, IPv4,
/// UDP/IPv4.
pub(crate) const MRQC_HASH_IPV4_TCP_UDP: u32 = (1 << 16) | (1 << 17) | (1 << 22);

/// Loads the Toeplitz key (byte 0 in the low byte of the first register) and
/// the redirection table (one byte per entry, four entries a register), then
/// turns RSS on with `mrqc`.
pub(crate) fn program_rss(regs: &dyn Registers, key: &[u8; 40], table: &RedirectionTable, mrqc: u32) {
    for (i, chunk) in key.chunks_exact(4).enumerate() {
        regs.write(RSSRK_BASE + 4 * i as u32, u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]));
    }
    for register in 0..table.len() / 4 {
        let entry = |k: usize| (table.queue(register * 4 + k) & 0x0f) as u8;
        regs.write(RETA_BASE + 4 * register as u32, u32::from_le_bytes([entry(0), entry(1), entry(2), entry(3)]));
    }
    regs.set_bits(RXCSUM, RXCSUM_PCSD);
    regs.write(MRQC, mrqc);
}

/// Clears the multicast table: no multicast group is joined.
pub(crate) fn clear_multicast_table(regs: &dyn Registers) {
    for i in 0..MTA_REGISTERS {
        regs.write(MTA_BASE + 4 * i, 0);
    }
}

/// Reads a station address from a receive-address pair (RAL, RAH).
pub(crate) fn station_address(regs: &dyn Registers, ral: u32, rah: u32) -> [u8; 6] {
    let low = regs.read(ral).to_le_bytes();
    let high = regs.read(rah).to_le_bytes();
    [low[0], low[1], low[2], low[3], high[0], high[1]]
}
