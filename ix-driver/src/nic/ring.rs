//! The advanced receive and transmit descriptor rings that the 82576 (igb) and
//! 82599 (ixgbe) share: batched receive into pool frames with replenishing at
//! least [`RX_REPLENISH_MIN_DESCS`] at a time, batched transmit with one tail
//! write per burst and lazy reclaim of completed descriptors.

use std::sync::atomic::{Ordering, fence};

use crate::pool::{FRAME_HEADROOM_BYTES, FRAME_STRIDE_BYTES, PacketBuf, PacketPool, TxBuf};
use crate::queue::QueueStats;
use crate::region::{HugePages, Region};

use super::regs::Registers;

/// Bytes of one advanced descriptor.
pub(crate) const DESCRIPTOR_BYTES: usize = 16;
/// Receive descriptors are handed back to the device at least this many at a
/// time (IX replenished 32 at once).
pub(crate) const RX_REPLENISH_MIN_DESCS: u16 = 32;
/// The fewest descriptors a ring may have: room for two replenish batches.
pub(crate) const RING_DESCS_MIN: u16 = 64;
/// Bytes the device may write into one receive buffer (SRRCTL.BSIZEPACKET is in
/// KiB): a standard frame fits, a larger one spans descriptors and is dropped.
pub(crate) const RX_BUFFER_BYTES: u32 = 2048;

const _: () = assert!(FRAME_HEADROOM_BYTES + RX_BUFFER_BYTES <= FRAME_STRIDE_BYTES);

/// Receive write-back status: descriptor done.
const RX_STATUS_DD: u64 = 1 << 0;
/// Receive write-back status: end of packet.
const RX_STATUS_EOP: u64 = 1 << 1;
/// Transmit write-back status (bit 0 of the upper double word): done.
const TX_STATUS_DD: u64 = 1 << 32;
/// Transmit command: advanced data descriptor (DTYP = 0011b, DEXT).
const TX_CMD_ADVANCED_DATA: u32 = (0b0011 << 20) | (1 << 29);
/// Transmit command: end of packet, insert FCS, report status.
const TX_CMD_EOP_IFCS_RS: u32 = (1 << 24) | (1 << 25) | (1 << 27);
/// Shift of the payload length in a transmit descriptor's `olinfo_status`.
const TX_PAYLEN_SHIFT: u32 = 14;

/// A ring of advanced descriptors in memory the device reaches by DMA.
#[derive(Debug)]
pub(crate) struct DescriptorRing {
    memory: Region,
    count: u16,
}

impl DescriptorRing {
    /// Allocates zeroed memory for `count` descriptors.
    ///
    /// # Errors
    /// [`DriverError::Config`](crate::error::DriverError::Config) for a count that is
    /// not a power of two of at least [`RING_DESCS_MIN`]; the region's errors.
    pub(crate) fn new(count: u16) -> Result<Self, crate::error::DriverError> {
        if !count.is_power_of_two() || count < RING_DESCS_MIN {
            return Err(crate::error::DriverError::Config(format!(
                "a descriptor ring needs a power of two of at least {RING_DESCS_MIN} descriptors, not {count}"
            )));
        }
        let memory = Region::new(usize::from(count) * DESCRIPTOR_BYTES, HugePages::Never)?;
        Ok(Self { memory, count })
    }

    /// Descriptors in the ring.
    pub(crate) fn count(&self) -> u16 {
        self.count
    }

    /// The memory, for DMA mapping.
    pub(crate) fn memory(&self) -> &Region {
        &self.memory
    }

    /// Bytes the descriptors take (what the ring length register holds).
    pub(crate) fn bytes(&self) -> u32 {
        u32::from(self.count) * DESCRIPTOR_BYTES as u32
    }

    fn word(&self, index: u16, word: usize) -> *mut u64 {
        assert!(index < self.count && word < 2, "descriptor {index} word {word} outside a ring of {}", self.count);
        // SAFETY: `index < count` and `word < 2`, so the address lies inside the
        // ring's memory of `count * 16` bytes, 8-byte aligned (page-aligned base).
        unsafe { self.memory.rw_base().as_ptr().add(usize::from(index) * DESCRIPTOR_BYTES + word * 8).cast() }
    }

    /// Writes both words of descriptor `index`.
    pub(crate) fn write(&self, index: u16, low: u64, high: u64) {
        let (w0, w1) = (self.word(index, 0), self.word(index, 1));
        // SAFETY: in-bounds aligned words (see `word`); the device may read them
        // concurrently, hence volatile stores.
        unsafe {
            w0.write_volatile(low.to_le());
        }
        // SAFETY: as above.
        unsafe {
            w1.write_volatile(high.to_le());
        }
    }

    /// Reads one word of descriptor `index` (0: low, 1: high).
    pub(crate) fn read(&self, index: u16, word: usize) -> u64 {
        let w = self.word(index, word);
        // SAFETY: an in-bounds aligned word (see `word`); the device may write it
        // concurrently, hence a volatile load.
        u64::from_le(unsafe { w.read_volatile() })
    }
}

/// A receive ring: descriptors `next..tail` (modulo the ring) belong to the
/// device, each with the pool frame it fills; the rest are empty.
#[derive(Debug)]
pub(crate) struct RxRing {
    ring: DescriptorRing,
    frames: Vec<Option<TxBuf>>,
    /// The next descriptor to look at for a received frame.
    next: u16,
    /// The next descriptor to hand to the device (the tail register's value).
    tail: u16,
    /// Descriptors the device holds.
    posted: u16,
    tail_register: u32,
    /// IOVA of the pool's region offset 0.
    pool_iova: u64,
    /// Inside a frame that spans descriptors: its pieces are dropped up to EOP.
    discarding: bool,
}

impl RxRing {
    pub(crate) fn new(ring: DescriptorRing, tail_register: u32, pool_iova: u64) -> Self {
        let count = usize::from(ring.count());
        Self {
            ring,
            frames: (0..count).map(|_| None).collect(),
            next: 0,
            tail: 0,
            posted: 0,
            tail_register,
            pool_iova,
            discarding: false,
        }
    }

    pub(crate) fn ring(&self) -> &DescriptorRing {
        &self.ring
    }

    /// Descriptors the device holds now.
    pub(crate) fn posted(&self) -> u16 {
        self.posted
    }

    fn wrap(&self, index: u16) -> u16 {
        (index + 1) & (self.ring.count() - 1)
    }

    /// Moves up to `max` received frames to `batch`, then replenishes. Frames
    /// that span descriptors, or whose length is out of range, are dropped and
    /// counted in `stats.rx_drops`.
    pub(crate) fn receive(
        &mut self,
        regs: &dyn Registers,
        pool: &PacketPool,
        batch: &mut Vec<PacketBuf>,
        max: usize,
        stats: &mut QueueStats,
    ) -> usize {
        let mut got = 0;
        while got < max && self.posted > 0 {
            let status = self.ring.read(self.next, 1);
            if status & RX_STATUS_DD == 0 {
                break;
            }
            // The frame's bytes and the rest of the write-back were written
            // before DD: read them only after seeing it.
            fence(Ordering::Acquire);
            let index = self.next;
            self.next = self.wrap(index);
            self.posted -= 1;
            let Some(mut frame) = self.frames[usize::from(index)].take() else {
                // No frame was posted here: a device writing where it was not
                // asked to. Nothing to hand over.
                stats.rx_drops += 1;
                continue;
            };
            let len = ((status >> 32) & 0xffff) as u32;
            let end_of_packet = status & RX_STATUS_EOP != 0;
            if !end_of_packet {
                if !self.discarding {
                    self.discarding = true;
                    stats.rx_drops += 1;
                }
                continue;
            }
            if std::mem::take(&mut self.discarding) {
                continue; // the last piece of a dropped frame
            }
            if len == 0 || len > RX_BUFFER_BYTES {
                stats.rx_drops += 1;
                continue;
            }
            frame.set_window(FRAME_HEADROOM_BYTES, FRAME_HEADROOM_BYTES + len);
            stats.rx_packets += 1;
            stats.rx_bytes += u64::from(len);
            batch.push(frame.freeze());
            got += 1;
        }
        self.replenish(regs, pool, stats);
        got
    }

    /// Hands empty frames to the device when at least
    /// [`RX_REPLENISH_MIN_DESCS`] descriptors are free, with one tail write.
    /// Returns how many were handed over.
    pub(crate) fn replenish(&mut self, regs: &dyn Registers, pool: &PacketPool, stats: &mut QueueStats) -> u16 {
        // One descriptor stays empty: head == tail means "the device has none".
        let free = self.ring.count() - 1 - self.posted;
        if free < RX_REPLENISH_MIN_DESCS.min(self.ring.count() - 1) {
            return 0;
        }
        let mut given = 0;
        while given < free {
            let Ok(frame) = pool.alloc() else {
                stats.pool_exhausted += 1;
                break;
            };
            let offset = u64::from(frame.frame_index()) * u64::from(FRAME_STRIDE_BYTES);
            let buffer = self.pool_iova + offset + u64::from(FRAME_HEADROOM_BYTES);
            // Read format: packet buffer address, header buffer address (unused).
            self.ring.write(self.tail, buffer, 0);
            self.frames[usize::from(self.tail)] = Some(frame);
            self.tail = self.wrap(self.tail);
            self.posted += 1;
            given += 1;
        }
        if given > 0 {
            // The descriptors must be in memory before the device sees the tail.
            fence(Ordering::Release);
            regs.write(self.tail_register, u32::from(self.tail));
        }
        given
    }
}

/// A transmit ring: descriptors `clean..tail` hold frames the device sends or
/// has sent; they are reclaimed lazily, when room runs short.
#[derive(Debug)]
pub(crate) struct TxRing {
    ring: DescriptorRing,
    frames: Vec<Option<PacketBuf>>,
    /// The oldest descriptor not yet reclaimed.
    clean: u16,
    /// The next descriptor to fill (the tail register's value).
    tail: u16,
    /// Descriptors between `clean` and `tail`.
    in_flight: u16,
    tail_register: u32,
    pool_iova: u64,
    max_frame_len: usize,
}

impl TxRing {
    pub(crate) fn new(ring: DescriptorRing, tail_register: u32, pool_iova: u64, max_frame_len: usize) -> Self {
        let count = usize::from(ring.count());
        Self {
            ring,
            frames: (0..count).map(|_| None).collect(),
            clean: 0,
            tail: 0,
            in_flight: 0,
            tail_register,
            pool_iova,
            max_frame_len,
        }
    }

    pub(crate) fn ring(&self) -> &DescriptorRing {
        &self.ring
    }

    /// Descriptors not yet reclaimed.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> u16 {
        self.in_flight
    }

    fn free(&self) -> u16 {
        self.ring.count() - 1 - self.in_flight
    }

    fn wrap(&self, index: u16) -> u16 {
        (index + 1) & (self.ring.count() - 1)
    }

    /// Returns the frames of completed descriptors to their pool; returns how
    /// many.
    pub(crate) fn reclaim(&mut self) -> u16 {
        let mut done = 0;
        while self.in_flight > 0 && self.ring.read(self.clean, 1) & TX_STATUS_DD != 0 {
            self.frames[usize::from(self.clean)] = None;
            self.clean = self.wrap(self.clean);
            self.in_flight -= 1;
            done += 1;
        }
        done
    }

    /// Queues frames from the front of `batch` and writes the tail once.
    /// Frames longer than the device carries, empty ones and ones from another
    /// pool are taken, dropped and counted; frames that find no free descriptor
    /// stay in `batch`. Returns how many frames were taken.
    pub(crate) fn transmit(
        &mut self,
        regs: &dyn Registers,
        pool: &PacketPool,
        batch: &mut Vec<PacketBuf>,
        stats: &mut QueueStats,
    ) -> usize {
        // Lazy reclaim: only when the burst might not fit, or half the ring waits.
        if usize::from(self.free()) < batch.len() || self.in_flight >= self.ring.count() / 2 {
            self.reclaim();
        }
        let mut taken = 0;
        let mut queued = 0;
        for frame in batch.iter() {
            if frame.is_empty() || frame.len() > self.max_frame_len || !pool.same_pool(frame) {
                // The device reaches only this pool's region; the stack builds
                // every frame there, so another pool's frame is a caller's bug.
                stats.tx_drops += 1;
                taken += 1;
                continue;
            }
            if self.free() == 0 {
                break;
            }
            let len = frame.len() as u32;
            let address = self.pool_iova + frame.region_offset() as u64;
            let command = u64::from(len | TX_CMD_ADVANCED_DATA | TX_CMD_EOP_IFCS_RS);
            let olinfo = u64::from(len << TX_PAYLEN_SHIFT);
            self.ring.write(self.tail, address, command | (olinfo << 32));
            self.frames[usize::from(self.tail)] = Some(frame.clone());
            self.tail = self.wrap(self.tail);
            self.in_flight += 1;
            stats.tx_packets += 1;
            stats.tx_bytes += u64::from(len);
            taken += 1;
            queued += 1;
        }
        batch.drain(..taken);
        if queued > 0 {
            fence(Ordering::Release);
            regs.write(self.tail_register, u32::from(self.tail));
        }
        taken
    }
}
