//! One queue of a mem wire as a core sees it: taken from the wire
//! ([`MemWire::queue`]), burst transmit through the switch into the destination
//! inboxes, burst receive from its own inbox into its pool.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::inbox::Pending;
use super::switch::{Forward, forward, mem_port_mac, select_queue};
use super::{ETHERNET_HEADER_BYTES, MemWire, lock, read};
use crate::error::DriverError;
use crate::pool::{PacketBuf, PacketPool};
use crate::queue::{NetQueue, QueueStats};

/// Buffers a queue takes from the wire's free list at once.
const REFILL_BUFFERS: usize = 64;
/// Buffers a queue keeps for itself; more go back to the wire's free list.
const SPARE_MAX_BUFFERS: usize = 256;

/// A queue of a [`MemWire`], owned by one core. Made by [`MemWire::queue`];
/// dropping it gives the queue back (frames in its inbox stay there).
#[derive(Debug)]
pub struct MemQueue {
    wire: Arc<MemWire>,
    port: u16,
    index: u16,
    slot: usize,
    pool: PacketPool,
    stats: QueueStats,
    /// Empty byte buffers ready for frames.
    spare: Vec<Vec<u8>>,
    /// Frames of the current transmit burst, per destination slot.
    staged: Vec<Vec<Vec<u8>>>,
    /// Frames taken from the inbox in the current receive burst.
    received: Vec<Pending>,
}

impl MemWire {
    /// Takes queue `queue` of port `port`, receiving into `pool`. The queue is
    /// the caller's until the returned value drops.
    ///
    /// # Errors
    /// [`DriverError::Config`] when the port or queue does not exist;
    /// [`DriverError::QueueTaken`] when the queue is already taken.
    pub fn queue(self: &Arc<Self>, port: u16, queue: u16, pool: PacketPool) -> Result<MemQueue, DriverError> {
        let slot = self.slot_index(port, queue)?;
        if self.slots[slot].taken.swap(true, Ordering::AcqRel) {
            return Err(DriverError::QueueTaken { backend: "mem", port, queue });
        }
        tracing::debug!(port, queue, "mem queue taken");
        Ok(MemQueue::new(Arc::clone(self), port, queue, slot, pool))
    }
}

impl MemQueue {
    fn new(wire: Arc<MemWire>, port: u16, index: u16, slot: usize, pool: PacketPool) -> Self {
        let slots = wire.slots.len();
        Self {
            wire,
            port,
            index,
            slot,
            pool,
            stats: QueueStats::default(),
            spare: Vec::with_capacity(SPARE_MAX_BUFFERS + REFILL_BUFFERS),
            staged: (0..slots).map(|_| Vec::new()).collect(),
            received: Vec::new(),
        }
    }

    /// This queue's port on the wire.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// When the earliest frame waiting for this queue comes due, in wire-clock
    /// microseconds (possibly already past); `None` when nothing waits.
    pub fn next_due_micros(&self) -> Option<u64> {
        lock(&self.wire.slots[self.slot].inbox).next_due_micros()
    }

    /// [`NetQueue::rx_burst`] that also appends each frame's due time to
    /// `due_micros` (for simulations that check when frames were delivered).
    pub fn rx_burst_with_due(&mut self, batch: &mut Vec<PacketBuf>, due_micros: &mut Vec<u64>, max: usize) -> usize {
        self.receive(batch, Some(due_micros), max)
    }

    fn receive(&mut self, batch: &mut Vec<PacketBuf>, mut due_out: Option<&mut Vec<u64>>, max: usize) -> usize {
        let wire = &*self.wire;
        let now = wire.config.clock.now_micros();
        // Take no more frames than the pool can hold: the rest stay queued.
        let limit = max.min(self.pool.available() as usize);
        let slot = &wire.slots[self.slot];
        let due_left = {
            let mut inbox = lock(&slot.inbox);
            inbox.release_due_held(now);
            while self.received.len() < limit {
                match inbox.pop_due(now) {
                    Some(pending) => self.received.push(pending),
                    None => break,
                }
            }
            inbox.has_due(now)
        };
        if due_left {
            if self.received.len() < max {
                self.stats.pool_exhausted += 1;
            }
            // Keep the descriptor readable while due frames remain.
            slot.wakeup.signal();
        }
        let mut taken = 0;
        for pending in self.received.drain(..) {
            // Cannot fail: the pool had `limit` free frames and only this thread
            // allocates from it; every frame fits (max_frame_len was checked).
            match self.pool.alloc().map(|mut tx| tx.extend_from_slice(&pending.bytes).map(|()| tx)) {
                Ok(Ok(tx)) => {
                    self.stats.rx_packets += 1;
                    self.stats.rx_bytes += pending.bytes.len() as u64;
                    batch.push(tx.freeze());
                    if let Some(out) = due_out.as_deref_mut() {
                        out.push(pending.due_micros);
                    }
                    taken += 1;
                }
                Ok(Err(_)) | Err(_) => self.stats.rx_drops += 1,
            }
            self.spare.push(pending.bytes);
        }
        if taken == 0 {
            self.stats.empty_polls += 1;
        }
        self.trim_spare();
        taken
    }

    /// Copies `frame` into a buffer staged for each destination queue.
    fn stage(&mut self, frame: &[u8], tables: &[crate::rss::RedirectionTable]) -> (u64, u64) {
        let wire = &*self.wire;
        let queues = usize::from(wire.config.queues_per_port);
        let stage_to = |port: u16, spare: &mut Vec<Vec<u8>>, staged: &mut Vec<Vec<Vec<u8>>>| {
            // One queue per port: nothing to steer, no Toeplitz hash to compute.
            let queue = if queues == 1 { 0 } else { select_queue(frame, &wire.toeplitz, &tables[usize::from(port)]) };
            let mut buf = take_buffer(spare, wire);
            buf.extend_from_slice(frame);
            staged[usize::from(port) * queues + usize::from(queue)].push(buf);
        };
        match forward(frame, wire.config.ports) {
            Forward::Port(port) if port != self.port => {
                stage_to(port, &mut self.spare, &mut self.staged);
                (0, 0)
            }
            Forward::Port(_) | Forward::Unknown => (0, 1),
            Forward::Flood => {
                for port in (0..wire.config.ports).filter(|&p| p != self.port) {
                    stage_to(port, &mut self.spare, &mut self.staged);
                }
                (1, 0)
            }
        }
    }

    /// Hands the staged frames to their inboxes, one lock per destination.
    fn deliver_staged(&mut self, now: u64) {
        let wire = &*self.wire;
        for (slot, frames) in wire.slots.iter().zip(self.staged.iter_mut()) {
            if frames.is_empty() {
                continue;
            }
            let landed_in_empty = {
                let mut inbox = lock(&slot.inbox);
                let was_empty = inbox.is_empty();
                for bytes in frames.drain(..) {
                    inbox.offer(self.port, bytes, now, &wire.config.faults, &mut self.spare);
                }
                was_empty && !inbox.is_empty()
            };
            if landed_in_empty {
                slot.wakeup.signal();
            }
        }
    }

    /// Gives buffers beyond this queue's cache back to the wire.
    fn trim_spare(&mut self) {
        if self.spare.len() > SPARE_MAX_BUFFERS {
            let mut free = lock(&self.wire.free_buffers);
            free.extend(self.spare.drain(SPARE_MAX_BUFFERS..));
        }
    }
}

/// An empty buffer from `spare`, refilled from the wire's free list when empty;
/// allocates only while the wire warms up.
fn take_buffer(spare: &mut Vec<Vec<u8>>, wire: &MemWire) -> Vec<u8> {
    if spare.is_empty() {
        let mut free = lock(&wire.free_buffers);
        let from = free.len().saturating_sub(REFILL_BUFFERS);
        spare.extend(free.drain(from..));
    }
    match spare.pop() {
        Some(mut buf) => {
            buf.clear();
            buf
        }
        None => Vec::with_capacity(wire.config.max_frame_len),
    }
}

impl NetQueue for MemQueue {
    fn rx_burst(&mut self, batch: &mut Vec<PacketBuf>, max: usize) -> usize {
        self.receive(batch, None, max)
    }

    /// Takes every frame of `batch`: the wire never fills (a full inbox drops at
    /// the receiver). Frames shorter than an Ethernet header or longer than
    /// `max_frame_len` are dropped and counted in `tx_drops`.
    fn tx_burst(&mut self, batch: &mut Vec<PacketBuf>) -> usize {
        let wire = Arc::clone(&self.wire);
        let now = wire.config.clock.now_micros();
        let taken = batch.len();
        let (mut flooded, mut unicast_drops) = (0, 0);
        {
            let tables = read(&wire.tables);
            for frame in batch.drain(..) {
                if !(ETHERNET_HEADER_BYTES..=wire.config.max_frame_len).contains(&frame.len()) {
                    self.stats.tx_drops += 1;
                    continue;
                }
                self.stats.tx_packets += 1;
                self.stats.tx_bytes += frame.len() as u64;
                let (f, u) = self.stage(&frame, &tables);
                flooded += f;
                unicast_drops += u;
            }
        }
        self.deliver_staged(now);
        if flooded > 0 {
            wire.flooded.fetch_add(flooded, Ordering::Relaxed);
        }
        if unicast_drops > 0 {
            wire.unicast_drops.fetch_add(unicast_drops, Ordering::Relaxed);
        }
        self.trim_spare();
        taken
    }

    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.wire.slots[self.slot].wakeup.as_fd())
    }

    fn ack_wakeup(&mut self) {
        self.wire.slots[self.slot].wakeup.clear();
    }

    fn pool(&self) -> &PacketPool {
        &self.pool
    }

    fn queue_index(&self) -> u16 {
        self.index
    }

    fn mac(&self) -> [u8; 6] {
        mem_port_mac(self.port)
    }

    fn max_frame_len(&self) -> usize {
        self.wire.config.max_frame_len
    }

    /// The counters; `rx_drops` includes frames dropped because the inbox was full.
    fn stats(&self) -> QueueStats {
        let mut stats = self.stats;
        stats.rx_drops += lock(&self.wire.slots[self.slot].inbox).overflow_drops;
        stats
    }
}

impl Drop for MemQueue {
    fn drop(&mut self) {
        lock(&self.wire.free_buffers).append(&mut self.spare);
        self.wire.slots[self.slot].taken.store(false, Ordering::Release);
        tracing::debug!(port = self.port, queue = self.index, "mem queue released");
    }
}
