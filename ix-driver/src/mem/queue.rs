//! One queue of a mem wire as a core sees it: taken from the wire
//! ([`MemWire::queue`]), burst transmit through the switch into the destination
//! inboxes, burst receive from its own inbox into its pool, and the frames of
//! its pool it posts for senders to write into.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::inbox::{Carried, Inbox, Pending};
use super::posted::PostedFrame;
use super::switch::{Forward, forward, mem_port_mac, select_queue};
use super::{MemWire, lock, read};
use crate::error::DriverError;
use crate::eventfd::EventFd;
use crate::frame_table::FrameTable;
use crate::pool::{PacketBuf, PacketPool, PoolPressure, TxBuf};
use crate::queue::{ETHERNET_HEADER_BYTES, NetQueue, QueueStats};

/// Buffers a queue takes from the wire's free list at once.
const REFILL_BUFFERS: usize = 64;
/// Buffers a queue keeps for itself; more go back to the wire's free list.
const SPARE_MAX_BUFFERS: usize = 256;
/// Frames a queue keeps posted at most: two receive bursts of 64.
const POSTED_FRAMES_MAX: u32 = 128;
/// A queue posts at most 1/N of its pool's frames, so that a small pool keeps
/// nearly all of its frames for the stack (a pool of fewer than N posts none).
const POSTED_POOL_DIVISOR: u32 = 64;

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
    staged: Vec<Vec<PacketBuf>>,
    /// Frames taken from the inbox in the current receive burst.
    received: Vec<Pending>,
    /// Frames of the pool posted to the inbox, by frame index: senders may
    /// write into them, so no handle on them is used until they come back.
    lent: FrameTable<TxBuf>,
    /// Frames to keep posted (see [`POSTED_FRAMES_MAX`]).
    posted_target: u32,
    /// Frames received that a sender wrote into a posted frame.
    received_into_posted: u64,
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
            stats: QueueStats::default(),
            spare: Vec::with_capacity(SPARE_MAX_BUFFERS + REFILL_BUFFERS),
            staged: (0..slots).map(|_| Vec::new()).collect(),
            received: Vec::new(),
            lent: FrameTable::new(pool.capacity()),
            posted_target: (pool.capacity() / POSTED_POOL_DIVISOR).min(POSTED_FRAMES_MAX),
            received_into_posted: 0,
            pool,
        }
    }

    /// This queue's port on the wire.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Frames of this queue's pool posted to the wire now, for senders to
    /// write arriving frames into.
    pub fn posted_frames(&self) -> u32 {
        self.lent.held()
    }

    /// Frames received so far that a sender wrote straight into a posted
    /// frame (the others were copied from a wire buffer on receipt).
    pub fn received_into_posted(&self) -> u64 {
        self.received_into_posted
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
        let slot = &wire.slots[self.slot];
        let due_left = {
            let mut inbox = lock(&slot.inbox);
            inbox.release_due_held(now);
            // A frame in a wire buffer needs a free frame of the pool: take no
            // more of those than the pool holds, the rest stay queued.
            let mut wire_room = self.pool.available() as usize;
            while self.received.len() < max {
                match inbox.pop_due(now, &mut wire_room) {
                    Some(pending) => self.received.push(pending),
                    None => break,
                }
            }
            if self.received.is_empty() {
                // Idle: the frames posted for traffic go back to the pool.
                for posted in inbox.take_back_unwritten() {
                    self.lent.take(posted.frame());
                }
            }
            inbox.has_due(now)
        };
        if due_left {
            if self.received.len() < max {
                self.stats.pool_exhausted += 1;
            }
            // Keep the descriptor readable while due frames remain.
            slot.signal();
        }
        let mut taken = 0;
        for pending in self.received.drain(..) {
            let frame = match pending.carried {
                Carried::Posted { frame, len } => {
                    self.received_into_posted += 1;
                    // Always held: the inbox returns each posted frame once.
                    self.lent.take(frame).map(|mut buf| {
                        buf.commit(len as usize);
                        buf
                    })
                }
                Carried::Wire(bytes) => {
                    // Cannot fail: the pool had a free frame for each such
                    // frame and only this thread allocates from it; every
                    // frame fits (max_frame_len was checked).
                    let copy =
                        self.pool.alloc().ok().and_then(|mut buf| buf.extend_from_slice(&bytes).ok().map(|()| buf));
                    self.spare.push(bytes);
                    copy
                }
            };
            let Some(frame) = frame else {
                self.stats.rx_drops += 1;
                continue;
            };
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += frame.len() as u64;
            batch.push(frame.freeze());
            if let Some(out) = due_out.as_deref_mut() {
                out.push(pending.due_micros);
            }
            taken += 1;
        }
        if taken == 0 {
            self.stats.empty_polls += 1;
        } else {
            post_frames(&mut lock(&slot.inbox), &self.pool, &mut self.lent, self.posted_target);
        }
        self.trim_spare();
        taken
    }

    /// Stages `frame` for each destination queue.
    fn stage(&mut self, frame: PacketBuf, tables: &[crate::rss::RedirectionTable]) -> (u64, u64) {
        let wire = &*self.wire;
        let queues = usize::from(wire.config.queues_per_port);
        let slot_of = |port: u16| {
            // One queue per port: nothing to steer, no Toeplitz hash to compute.
            let queue = if queues == 1 { 0 } else { select_queue(&frame, wire.toeplitz(), &tables[usize::from(port)]) };
            usize::from(port) * queues + usize::from(queue)
        };
        match forward(&frame, wire.config.ports) {
            Forward::Port(port) if port != self.port => {
                let slot = slot_of(port);
                self.staged[slot].push(frame);
                (0, 0)
            }
            Forward::Port(_) | Forward::Unknown => (0, 1),
            Forward::Flood => {
                for port in (0..wire.config.ports).filter(|&p| p != self.port) {
                    let slot = slot_of(port);
                    self.staged[slot].push(frame.clone());
                }
                (1, 0)
            }
        }
    }

    /// Hands the staged frames to their inboxes, one lock per destination:
    /// into a frame the receiver posted when the link delivers at once and
    /// one is free (the only copy), else copied into a wire buffer.
    fn deliver_staged(&mut self, now: u64) {
        let wire = &*self.wire;
        let instant = wire.config.faults.is_instant();
        for (slot, frames) in wire.slots.iter().zip(self.staged.iter_mut()) {
            if frames.is_empty() {
                continue;
            }
            let landed_in_empty = {
                let mut inbox = lock(&slot.inbox);
                let was_empty = inbox.is_empty();
                for frame in frames.drain(..) {
                    if !inbox.offer_into_posted(self.port, &frame, now, instant) {
                        let mut bytes = take_buffer(&mut self.spare, wire);
                        bytes.extend_from_slice(&frame);
                        inbox.offer(self.port, bytes, now, &wire.config.faults, &mut self.spare);
                    }
                }
                was_empty && !inbox.is_empty()
            };
            if landed_in_empty {
                slot.signal();
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

/// Tops up the frames `inbox` holds posted to `target`, from `pool` while it is
/// under no pressure, keeping each in `lent` until it comes back.
fn post_frames(inbox: &mut Inbox, pool: &PacketPool, lent: &mut FrameTable<TxBuf>, target: u32) {
    let wanted = (target as usize).saturating_sub(inbox.posted_len());
    if wanted == 0 || pool.pressure() != PoolPressure::Normal {
        return;
    }
    for _ in 0..wanted {
        let Ok(mut buf) = pool.alloc() else { return };
        // SAFETY: the frame stays in `lent`, out of the pool and untouched,
        // until the inbox hands it back (`MemQueue::receive`) or the queue
        // revokes its postings (`Drop for MemQueue`), both under the inbox's
        // lock after which no sender writes into it.
        let posted = unsafe { PostedFrame::lend(&mut buf) };
        lent.put(buf.frame_index(), buf);
        inbox.post(posted);
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
                let (f, u) = self.stage(frame, &tables);
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
        self.wire.slots[self.slot].wakeup.as_ref().map(EventFd::as_fd)
    }

    /// Clears the eventfd, then looks at the inbox: a frame already due
    /// raises it again. A frame that lands in an empty inbox after the last
    /// receive burst has signalled it, and a core clears it just before it
    /// blocks: without the second look that frame waited for the core's next
    /// timer. A frame a sender adds after the look signals after the clear.
    fn ack_wakeup(&mut self) {
        let slot = &self.wire.slots[self.slot];
        let Some(wakeup) = &slot.wakeup else { return };
        wakeup.clear();
        let now = self.wire.config.clock.now_micros();
        if lock(&slot.inbox).next_due_micros().is_some_and(|due| due <= now) {
            wakeup.signal();
        }
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
    /// Revokes the posted frames first: frames that arrived in them are copied
    /// into wire buffers (and stay in the inbox for the next owner), so no
    /// sender writes into this pool once the queue is gone.
    fn drop(&mut self) {
        let lent = &mut self.lent;
        let unwritten = lock(&self.wire.slots[self.slot].inbox).revoke_posted(|frame, len| {
            let written = lent.take(frame).map(|mut buf| {
                buf.commit(len as usize);
                buf.to_vec()
            });
            written.unwrap_or_default()
        });
        drop(unwritten);
        lock(&self.wire.free_buffers).append(&mut self.spare);
        self.wire.slots[self.slot].taken.store(false, Ordering::Release);
        tracing::debug!(port = self.port, queue = self.index, "mem queue released");
    }
}
