//! The inbox of one mem queue: frames in flight ordered by (due time, arrival
//! number), the fault state of every link that ends here, the bounded depth
//! that stands in for a full receive ring, and the frames its queue posted.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

use super::fault::{FaultConfig, FaultStats, FrameFate, LinkFaults};
use super::posted::PostedFrame;

/// Where the bytes of a frame waiting in an inbox are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Carried {
    /// In a buffer of the wire, recycled through it: a frame still in flight
    /// (delayed, held back, duplicated or corrupted on its way), or one that
    /// found no posted frame. The receiver copies it into its pool.
    Wire(Vec<u8>),
    /// Already in frame `frame` of the receiver's pool, which the receiver
    /// posted: `len` bytes at the start of its data area.
    Posted { frame: u32, len: u32 },
}

/// A frame waiting in an inbox.
#[derive(Debug)]
pub(crate) struct Pending {
    /// When the frame may be handed out, in wire-clock microseconds.
    pub(crate) due_micros: u64,
    /// Arrival number in this inbox: breaks ties between equal due times.
    seq: u64,
    /// The frame's bytes.
    pub(crate) carried: Carried,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due_micros, self.seq).cmp(&(other.due_micros, other.seq))
    }
}

/// Frames ready to come due, handed out in (due time, arrival number) order.
/// A frame due no earlier than the last one queued, the only case on a wire
/// without jitter or reordering, goes to a FIFO; others to a heap. Popping takes
/// the earlier of the two heads, so the order is the heap's alone would give
/// at a deque's cost (the heap's sift was 5% of the stack bench's round trip).
#[derive(Debug, Default)]
struct ReadyFrames {
    in_order: VecDeque<Pending>,
    out_of_order: BinaryHeap<Reverse<Pending>>,
    next_seq: u64,
}

impl ReadyFrames {
    fn len(&self) -> usize {
        self.in_order.len() + self.out_of_order.len()
    }

    #[inline]
    fn push(&mut self, due_micros: u64, carried: Carried) {
        let pending = Pending { due_micros, seq: self.next_seq, carried };
        self.next_seq += 1;
        if self.in_order.back().is_none_or(|last| last.due_micros <= due_micros) {
            self.in_order.push_back(pending);
        } else {
            self.out_of_order.push(Reverse(pending));
        }
    }

    /// The frame to hand out next, and whether it is the FIFO's.
    fn first(&self) -> Option<(&Pending, bool)> {
        match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(fifo), Some(Reverse(heap))) => Some(if fifo <= heap { (fifo, true) } else { (heap, false) }),
            (Some(fifo), None) => Some((fifo, true)),
            (None, Some(Reverse(heap))) => Some((heap, false)),
            (None, None) => None,
        }
    }

    /// The first frame if it is due by `now_micros`, and, when it travelled
    /// in a wire buffer, only while `wire_room` (frames of the receiver's pool
    /// left to copy such frames into) is not used up; counts it off.
    #[inline]
    fn pop_due(&mut self, now_micros: u64, wire_room: &mut usize) -> Option<Pending> {
        let (first, in_order) = self.first()?;
        let needs_room = matches!(first.carried, Carried::Wire(_));
        if first.due_micros > now_micros || (needs_room && *wire_room == 0) {
            return None;
        }
        if needs_room {
            *wire_room -= 1;
        }
        if in_order { self.in_order.pop_front() } else { self.out_of_order.pop().map(|r| r.0) }
    }

    /// Moves every frame carried in a posted frame into a wire buffer, its
    /// bytes given by `copy_out(frame, len)`; order and due times stay.
    fn unpost(&mut self, copy_out: &mut impl FnMut(u32, u32) -> Vec<u8>) {
        let unpost = |pending: &mut Pending, copy_out: &mut dyn FnMut(u32, u32) -> Vec<u8>| {
            if let Carried::Posted { frame, len } = pending.carried {
                pending.carried = Carried::Wire(copy_out(frame, len));
            }
        };
        for pending in self.in_order.iter_mut() {
            unpost(pending, copy_out);
        }
        let mut heap = std::mem::take(&mut self.out_of_order).into_vec();
        for Reverse(pending) in heap.iter_mut() {
            unpost(pending, copy_out);
        }
        self.out_of_order = heap.into();
    }
}

/// A frame held back by the reorder fault.
#[derive(Debug)]
struct Held {
    due_micros: u64,
    bytes: Vec<u8>,
}

/// One link into this inbox (from one source port).
#[derive(Debug)]
struct Link {
    faults: LinkFaults,
    /// Frames held back, in the order they were sent.
    held: Vec<Held>,
}

/// Frames for one queue, with the faults of the links that feed it.
#[derive(Debug)]
pub(crate) struct Inbox {
    ready: ReadyFrames,
    /// Indexed by source port.
    links: Box<[Link]>,
    held_frames: usize,
    depth: usize,
    /// Frames dropped because the inbox was full.
    pub(crate) overflow_drops: u64,
    /// Frames of the receiving queue's pool ready for arriving frames.
    posted: Vec<PostedFrame>,
}

impl Inbox {
    /// An empty inbox of `depth` frames fed by one link per `link_ids` entry
    /// (indexed by source port), each drawing its faults from `(seed, link id)`.
    pub(crate) fn new(depth: usize, seed: u64, link_ids: impl Iterator<Item = u64>) -> Self {
        let links = link_ids.map(|id| Link { faults: LinkFaults::new(seed, id), held: Vec::new() });
        Self {
            ready: ReadyFrames::default(),
            links: links.collect(),
            held_frames: 0,
            depth,
            overflow_drops: 0,
            posted: Vec::new(),
        }
    }

    /// Frames in the inbox, held ones included.
    pub(crate) fn len(&self) -> usize {
        self.ready.len() + self.held_frames
    }

    /// Whether no frame waits, held or not.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frames of the receiving queue's pool posted and not yet written.
    pub(crate) fn posted_len(&self) -> usize {
        self.posted.len()
    }

    /// Adds a frame of the receiving queue's pool for an arriving frame.
    pub(crate) fn post(&mut self, frame: PostedFrame) {
        self.posted.push(frame);
    }

    /// Takes back the posted frames when no frame waits here (so none was
    /// written into); none otherwise.
    pub(crate) fn take_back_unwritten(&mut self) -> Vec<PostedFrame> {
        if self.is_empty() { std::mem::take(&mut self.posted) } else { Vec::new() }
    }

    /// Takes back every posted frame, written or not: the unwritten ones are
    /// returned, and each frame waiting in one is moved into a wire buffer
    /// filled by `copy_out(frame, len)`. Afterwards no sender writes into the
    /// receiving queue's pool.
    pub(crate) fn revoke_posted(&mut self, mut copy_out: impl FnMut(u32, u32) -> Vec<u8>) -> Vec<PostedFrame> {
        self.ready.unpost(&mut copy_out);
        std::mem::take(&mut self.posted)
    }

    /// Takes a frame sent from `src_port` at `now_micros` straight into a
    /// frame the receiver posted, as a NIC writes into its receive ring: when
    /// the link is `instant` (no fault, no delay: see
    /// [`FaultConfig::is_instant`]), no frame is held back on it, the inbox
    /// has room and a posted frame is free. Returns false, having done
    /// nothing, otherwise; the frame then goes through [`Inbox::offer`] in a
    /// wire buffer.
    #[inline]
    pub(crate) fn offer_into_posted(&mut self, src_port: u16, frame: &[u8], now_micros: u64, instant: bool) -> bool {
        let link = &mut self.links[usize::from(src_port)];
        if !instant || !link.held.is_empty() || self.ready.len() + self.held_frames >= self.depth {
            return false;
        }
        let Some(posted) = self.posted.pop() else { return false };
        let Some(len) = posted.fill(frame) else {
            self.posted.push(posted);
            return false;
        };
        link.faults.stats.frames += 1;
        self.ready.push(now_micros, Carried::Posted { frame: posted.frame(), len });
        true
    }

    /// Takes a frame sent from `src_port` at `now_micros` through the link's
    /// faults. Buffers the inbox does not keep (lost, overflowing) go to `spare`,
    /// which also supplies the buffer of a duplicate.
    ///
    /// A frame that is not held releases the frames held on its link, right
    /// behind it: each is then due no earlier than the frame that passed it.
    pub(crate) fn offer(
        &mut self,
        src_port: u16,
        mut bytes: Vec<u8>,
        now_micros: u64,
        faults: &FaultConfig,
        spare: &mut Vec<Vec<u8>>,
    ) {
        let link = &mut self.links[usize::from(src_port)];
        if faults.is_perfect() && link.held.is_empty() {
            // What `decide` would say without drawing: delivered once, on
            // time, and no held frame to release behind it.
            link.faults.stats.frames += 1;
            let due_micros = now_micros.saturating_add(faults.delay_micros);
            self.admit(src_port, due_micros, bytes, false, spare);
            return;
        }
        let (delay_micros, duplicate, reorder) = match link.faults.decide(faults, bytes.len()) {
            FrameFate::Lost => {
                spare.push(bytes);
                return;
            }
            FrameFate::Delivered { delay_micros, duplicate, reorder, corrupt_bit } => {
                if let Some(bit) = corrupt_bit {
                    bytes[bit / 8] ^= 1 << (bit % 8);
                }
                (delay_micros, duplicate, reorder)
            }
        };
        let due_micros = now_micros.saturating_add(delay_micros);
        let copy = duplicate.then(|| {
            let mut copy = spare.pop().unwrap_or_default();
            copy.clear();
            copy.extend_from_slice(&bytes);
            copy
        });
        for frame in std::iter::once(bytes).chain(copy) {
            self.admit(src_port, due_micros, frame, reorder, spare);
        }
        if !reorder {
            let link = &mut self.links[usize::from(src_port)];
            self.held_frames -= link.held.len();
            for held in link.held.drain(..) {
                let due = held.due_micros.max(due_micros);
                self.ready.push(due, Carried::Wire(held.bytes));
            }
        }
    }

    /// Queues or holds one frame if the inbox has room, drops it otherwise.
    fn admit(&mut self, src_port: u16, due_micros: u64, bytes: Vec<u8>, hold: bool, spare: &mut Vec<Vec<u8>>) {
        if self.len() >= self.depth {
            self.overflow_drops += 1;
            spare.push(bytes);
        } else if hold {
            self.links[usize::from(src_port)].held.push(Held { due_micros, bytes });
            self.held_frames += 1;
        } else {
            self.ready.push(due_micros, Carried::Wire(bytes));
        }
    }

    /// Releases held frames that are due by `now_micros` although no later frame
    /// has passed them (the reorder fault's "or when it comes due").
    pub(crate) fn release_due_held(&mut self, now_micros: u64) {
        if self.held_frames == 0 {
            return;
        }
        for link in self.links.iter_mut() {
            let mut i = 0;
            while i < link.held.len() {
                if link.held[i].due_micros <= now_micros {
                    let held = link.held.remove(i);
                    self.ready.push(held.due_micros, Carried::Wire(held.bytes));
                    self.held_frames -= 1;
                } else {
                    i += 1;
                }
            }
        }
    }

    /// Takes the earliest frame if it is due by `now_micros`; one carried in
    /// a wire buffer only while `wire_room` is not used up (it counts such
    /// frames off: each needs a frame of the receiver's pool).
    pub(crate) fn pop_due(&mut self, now_micros: u64, wire_room: &mut usize) -> Option<Pending> {
        self.ready.pop_due(now_micros, wire_room)
    }

    /// Whether a frame is due by `now_micros` (held ones not counted: they
    /// are released first by [`Inbox::release_due_held`]).
    pub(crate) fn has_due(&self, now_micros: u64) -> bool {
        self.ready.first().is_some_and(|(first, _)| first.due_micros <= now_micros)
    }

    /// The earliest due time of any frame here, held ones included.
    pub(crate) fn next_due_micros(&self) -> Option<u64> {
        let held = self.links.iter().flat_map(|l| l.held.iter().map(|h| h.due_micros));
        self.ready.first().map(|(p, _)| p.due_micros).into_iter().chain(held).min()
    }

    /// The fault counters of the link from `src_port`.
    pub(crate) fn link_stats(&self, src_port: u16) -> FaultStats {
        self.links[usize::from(src_port)].faults.stats
    }

    /// The fault counters of every link into this inbox, summed.
    pub(crate) fn total_stats(&self) -> FaultStats {
        let mut total = FaultStats::default();
        for link in self.links.iter() {
            total.add(&link.faults.stats);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(inbox: &mut Inbox, now: u64) -> Vec<(u64, u8)> {
        inbox.release_due_held(now);
        let mut room = usize::MAX;
        let first_byte = |p: Pending| match p.carried {
            Carried::Wire(bytes) => (p.due_micros, bytes[0]),
            Carried::Posted { .. } => panic!("no frame was posted"),
        };
        std::iter::from_fn(|| inbox.pop_due(now, &mut room)).map(first_byte).collect()
    }

    #[test]
    fn a_reordered_frame_comes_right_after_the_next_one() {
        let mut inbox = Inbox::new(16, 1, 0..1);
        let mut spare = Vec::new();
        let always = FaultConfig { reorder: 1.0, ..FaultConfig::NONE };
        inbox.offer(0, vec![1], 0, &always, &mut spare);
        inbox.offer(0, vec![2], 0, &always, &mut spare);
        assert_eq!(inbox.len(), 2);
        assert_eq!(inbox.pop_due(0, &mut 1).map(|p| p.carried), None, "both held");
        inbox.offer(0, vec![3], 5, &FaultConfig::NONE, &mut spare);
        // Held frames follow the frame that passed them and are due with it.
        assert_eq!(drain(&mut inbox, 10), [(5, 3), (5, 1), (5, 2)]);
        assert!(inbox.is_empty());
    }

    #[test]
    fn a_held_frame_is_released_when_due_without_a_successor() {
        let mut inbox = Inbox::new(16, 1, 0..1);
        let mut spare = Vec::new();
        let config = FaultConfig { reorder: 1.0, delay_micros: 100, ..FaultConfig::NONE };
        inbox.offer(0, vec![7], 0, &config, &mut spare);
        assert_eq!(inbox.next_due_micros(), Some(100));
        assert_eq!(drain(&mut inbox, 99), []);
        assert_eq!(drain(&mut inbox, 100), [(100, 7)]);
        assert_eq!(inbox.next_due_micros(), None);
    }

    #[test]
    fn a_perfect_link_delivers_each_frame_once_after_the_fixed_delay_and_counts_it() {
        let mut inbox = Inbox::new(16, 1, 0..2);
        let mut spare = Vec::new();
        let delayed = FaultConfig { delay_micros: 7, ..FaultConfig::NONE };
        assert!(delayed.is_perfect() && !FaultConfig { jitter_micros: 1, ..delayed }.is_perfect());
        for (n, now) in [(1u8, 0), (2, 3), (3, 3)] {
            inbox.offer(1, vec![n], now, &delayed, &mut spare);
        }
        assert_eq!(drain(&mut inbox, 9), [(7, 1)]);
        assert_eq!(drain(&mut inbox, 10), [(10, 2), (10, 3)]);
        assert_eq!(inbox.link_stats(1), FaultStats { frames: 3, ..FaultStats::default() });
        assert!(spare.is_empty());
    }

    #[test]
    fn a_full_inbox_drops_and_counts_and_recycles() {
        let mut inbox = Inbox::new(2, 1, 0..1);
        let mut spare = Vec::new();
        let dup = FaultConfig { duplicate: 1.0, ..FaultConfig::NONE };
        inbox.offer(0, vec![1], 0, &dup, &mut spare);
        inbox.offer(0, vec![2], 0, &FaultConfig::NONE, &mut spare);
        assert_eq!(inbox.len(), 2);
        assert_eq!(inbox.overflow_drops, 1);
        assert_eq!(spare, [vec![2]]);
        assert_eq!(drain(&mut inbox, 0), [(0, 1), (0, 1)]);
    }

    #[test]
    fn frames_in_and_out_of_due_order_come_out_by_due_then_arrival() {
        let mut inbox = Inbox::new(64, 1, 0..1);
        let mut spare = Vec::new();
        // Due times as a jittery link gives them: some later, some earlier
        // than the frame before, some equal.
        let dues = [10u64, 20, 10, 40, 15, 40, 30, 50, 20, 50];
        for (n, due) in dues.iter().enumerate() {
            inbox.offer(0, vec![n as u8], *due, &FaultConfig::NONE, &mut spare);
        }
        let mut expected: Vec<(u64, u8)> = dues.iter().enumerate().map(|(n, due)| (*due, n as u8)).collect();
        expected.sort();
        assert_eq!(inbox.next_due_micros(), Some(10));
        assert_eq!(drain(&mut inbox, 25), expected[..5]);
        assert_eq!(drain(&mut inbox, 50), expected[5..]);
        assert!(inbox.is_empty());
    }

    #[test]
    fn equal_due_times_keep_arrival_order_and_jitter_sorts_by_due() {
        let mut inbox = Inbox::new(16, 1, 0..2);
        let mut spare = Vec::new();
        for (n, now) in [(1, 30), (2, 10), (3, 10), (4, 20)] {
            inbox.offer(n % 2, vec![n as u8], now, &FaultConfig::NONE, &mut spare);
        }
        assert_eq!(drain(&mut inbox, 30), [(10, 2), (10, 3), (20, 4), (30, 1)]);
        assert_eq!(inbox.link_stats(0).frames, 2);
        assert_eq!(inbox.total_stats().frames, 4);
    }
}
