//! The queue abstraction every backend implements: burst receive into a caller's
//! batch, burst transmit, the descriptor to block on when idle, and counters.

use std::os::fd::BorrowedFd;

use crate::pool::{PacketBuf, PacketPool};

/// Bytes of the Ethernet header in front of every frame a queue carries
/// (destination and source MAC, EtherType; no VLAN tag): the shortest frame,
/// and what a frame adds to the MTU.
pub const ETHERNET_HEADER_BYTES: usize = 14;

/// Receive bound per burst unless configured otherwise (IX's B).
pub const DEFAULT_BATCH_PACKETS: usize = 64;

/// Counters of one queue. Each queue is owned by one core, so these are plain
/// integers; the runtime publishes snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Frames received and handed to the caller.
    pub rx_packets: u64,
    /// Bytes in those frames.
    pub rx_bytes: u64,
    /// Frames the queue saw but could not hand over (too long, backend error).
    pub rx_drops: u64,
    /// Frames transmitted.
    pub tx_packets: u64,
    /// Bytes in those frames.
    pub tx_bytes: u64,
    /// Frames given to transmit that were dropped (too long, backend error).
    pub tx_drops: u64,
    /// Receive bursts cut short because the pool had no free frame.
    pub pool_exhausted: u64,
    /// Receive bursts that returned no frame.
    pub empty_polls: u64,
    /// Frames received, as the device itself counted them (its statistics
    /// registers, `igb`/`ixgbe` only; zero on other backends). Read every few
    /// bursts, so a little behind [`QueueStats::rx_packets`]. On the `igb`
    /// (82576) the device counts for the whole port: queue 0 carries it.
    pub hw_rx_packets: u64,
    /// Bytes of those frames, as the device counted them (with the Ethernet
    /// header and CRC).
    pub hw_rx_bytes: u64,
    /// Frames transmitted, as the device counted them (as `hw_rx_packets`).
    pub hw_tx_packets: u64,
    /// Bytes of those frames, as the device counted them.
    pub hw_tx_bytes: u64,
}

/// One receive/transmit queue pair of a network device, owned by one core.
pub trait NetQueue {
    /// Moves up to `max` received frames to the end of `batch` and returns how
    /// many. Never blocks and never waits to fill the batch.
    fn rx_burst(&mut self, batch: &mut Vec<PacketBuf>, max: usize) -> usize;

    /// Transmits frames from the front of `batch`, removing those it took, and
    /// returns how many it took. Frames it could not take now (the device is
    /// full) stay in `batch` for the next round; frames it can never send
    /// (oversized) are taken, dropped and counted in [`QueueStats::tx_drops`].
    fn tx_burst(&mut self, batch: &mut Vec<PacketBuf>) -> usize;

    /// A descriptor that becomes readable when frames may be waiting, for the
    /// idle policy to block on; `None` when the queue can only be polled.
    fn wait_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Clears the readiness of [`NetQueue::wait_fd`] after a wake-up, where the
    /// descriptor needs it (an eventfd), and leaves it readable when frames
    /// are already waiting: the idle path calls it just before it blocks, and
    /// a frame that arrived since the last burst must still wake it. A no-op
    /// by default.
    fn ack_wakeup(&mut self) {}

    /// The pool receive frames are taken from.
    fn pool(&self) -> &PacketPool;

    /// This queue's index within its device.
    fn queue_index(&self) -> u16;

    /// The device's MAC address.
    fn mac(&self) -> [u8; 6];

    /// The largest frame, Ethernet header included, the device carries.
    fn max_frame_len(&self) -> usize;

    /// The queue's counters.
    fn stats(&self) -> QueueStats;
}
