//! The receive reassembly queue: out-of-order segments held as zero-copy
//! `PacketBuf` views, each byte once, until the hole before them is filled.

use std::collections::VecDeque;

use ix_driver::PacketBuf;

/// Chunks the queue holds at most unless configured otherwise.
pub const ASSEMBLER_MAX_CHUNKS: usize = 256;
/// Bytes the queue holds at most unless configured otherwise. The advertised
/// window normally bounds it first; this is the backstop.
pub const ASSEMBLER_MAX_BYTES: usize = 1 << 20;
/// Chunk slots an emptied queue keeps for the next hole; the rest is freed.
pub const ASSEMBLER_RETAINED_CHUNKS: usize = 8;

/// `a` comes before `b` in sequence space.
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// What [`Assembler::insert`] did with a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// New bytes are held (after trimming to the window and to what was held).
    Stored {
        /// Bytes not held before.
        new_bytes: u32,
    },
    /// No new byte: everything was below `rcv_nxt` or already held, or the
    /// segment was empty. The peer retransmitted; a D-SACK may report it.
    Duplicate,
    /// Nothing of the segment lies inside `[rcv_nxt, rcv_wnd_end)`.
    OutsideWindow,
    /// Holding the new bytes would pass the chunk or byte bound: nothing of the
    /// segment is held, and [`Assembler::refused`] counts it. The peer will
    /// retransmit.
    Full,
}

/// One held piece: the view and the sequence number of its first byte.
#[derive(Debug)]
struct Chunk {
    seq: u32,
    data: PacketBuf,
}

impl Chunk {
    fn end(&self) -> u32 {
        self.seq.wrapping_add(self.data.len() as u32)
    }
}

/// Out-of-order data above `rcv_nxt`, sorted by sequence number, disjoint.
///
/// Overlaps keep the bytes already held and trim the new segment; a segment
/// spanning several held chunks is cut into the pieces that fill the gaps
/// between them (views sharing its frame, no copy). The storage grows with
/// what is held and shrinks to [`ASSEMBLER_RETAINED_CHUNKS`] slots when the
/// queue empties: a connection that never sees a hole allocates nothing for
/// it, which matters at 100k+ connections per core. At most `max_chunks`
/// chunks and `max_bytes` bytes are held: a segment that would pass either is
/// refused whole and counted.
#[derive(Debug)]
pub struct Assembler {
    chunks: VecDeque<Chunk>,
    held_bytes: usize,
    max_chunks: usize,
    max_bytes: usize,
    refused: u64,
}

impl Default for Assembler {
    fn default() -> Self {
        Self::new()
    }
}

impl Assembler {
    /// A queue with the default bounds, [`ASSEMBLER_MAX_CHUNKS`] and
    /// [`ASSEMBLER_MAX_BYTES`].
    pub fn new() -> Self {
        Self::with_limits(ASSEMBLER_MAX_CHUNKS, ASSEMBLER_MAX_BYTES)
    }

    /// A queue holding at most `max_chunks` chunks and `max_bytes` bytes.
    pub fn with_limits(max_chunks: usize, max_bytes: usize) -> Self {
        Self { chunks: VecDeque::new(), held_bytes: 0, max_chunks, max_bytes, refused: 0 }
    }

    /// Chunk slots allocated (held or free), for memory accounting.
    pub fn capacity(&self) -> usize {
        self.chunks.capacity()
    }

    /// Frees the storage beyond [`ASSEMBLER_RETAINED_CHUNKS`] once nothing is
    /// held.
    fn release_if_empty(&mut self) {
        if self.chunks.is_empty() && self.chunks.capacity() > ASSEMBLER_RETAINED_CHUNKS {
            self.chunks.shrink_to(ASSEMBLER_RETAINED_CHUNKS);
        }
    }

    /// Holds the new bytes of the segment `[seq, seq + data.len())` that lie in
    /// `[rcv_nxt, rcv_wnd_end)`. Held chunks below `rcv_nxt` are dropped first
    /// (the caller may have delivered those bytes directly).
    pub fn insert(&mut self, seq: u32, data: PacketBuf, rcv_nxt: u32, rcv_wnd_end: u32) -> InsertOutcome {
        self.discard_below(rcv_nxt);
        let len = data.len() as u32;
        let below = rcv_nxt.wrapping_sub(seq);
        let (start, skip) = if seq_lt(seq, rcv_nxt) { (rcv_nxt, below) } else { (seq, 0) };
        if skip >= len {
            return InsertOutcome::Duplicate;
        }
        let window = rcv_wnd_end.wrapping_sub(rcv_nxt);
        let (a, b) = (start.wrapping_sub(rcv_nxt), (start.wrapping_sub(rcv_nxt)).saturating_add(len - skip));
        if a >= window {
            return InsertOutcome::OutsideWindow;
        }
        let b = b.min(window);
        // First pass: what would be added.
        let first = self.chunks.partition_point(|c| c.end().wrapping_sub(rcv_nxt) <= a);
        let (mut pieces, mut new_bytes) = (0usize, 0u32);
        let mut cursor = (first, a);
        while let Some((index, gap_start, gap_end)) = self.next_gap(cursor.0, cursor.1, b, rcv_nxt) {
            pieces += 1;
            new_bytes += gap_end - gap_start;
            cursor = (index, gap_end);
        }
        if pieces == 0 {
            return InsertOutcome::Duplicate;
        }
        if self.chunks.len() + pieces > self.max_chunks || self.held_bytes + new_bytes as usize > self.max_bytes {
            self.refused += 1;
            return InsertOutcome::Full;
        }
        // Second pass: insert each gap's piece, a view into the segment.
        let data_offset = |rel: u32| (rel - a + skip) as usize;
        let mut cursor = (first, a);
        while let Some((index, gap_start, gap_end)) = self.next_gap(cursor.0, cursor.1, b, rcv_nxt) {
            let piece = data.slice(data_offset(gap_start)..data_offset(gap_end));
            self.chunks.insert(index, Chunk { seq: rcv_nxt.wrapping_add(gap_start), data: piece });
            cursor = (index + 1, gap_end);
        }
        self.held_bytes += new_bytes as usize;
        InsertOutcome::Stored { new_bytes }
    }

    /// The next gap in `[from, to)` (offsets from `rcv_nxt`) not covered by the
    /// chunks from `index` on: the index to insert its piece at, and its bounds.
    fn next_gap(&self, mut index: usize, mut from: u32, to: u32, rcv_nxt: u32) -> Option<(usize, u32, u32)> {
        while let Some(chunk) = self.chunks.get(index) {
            let start = chunk.seq.wrapping_sub(rcv_nxt);
            if start >= to {
                break;
            }
            if start > from {
                return Some((index, from, start));
            }
            from = from.max(chunk.end().wrapping_sub(rcv_nxt));
            index += 1;
        }
        (from < to).then_some((index, from, to))
    }

    /// Takes the held chunk that starts at `rcv_nxt`, after dropping what lies
    /// below it (a chunk that straddles `rcv_nxt` is trimmed to start there).
    /// Call again with the advanced `rcv_nxt` for the next one: chunks are
    /// not merged, each is the view one segment brought.
    pub fn pop_contiguous(&mut self, rcv_nxt: u32) -> Option<PacketBuf> {
        self.discard_below(rcv_nxt);
        if self.chunks.front()?.seq != rcv_nxt {
            return None;
        }
        let chunk = self.chunks.pop_front()?;
        self.held_bytes -= chunk.data.len();
        self.release_if_empty();
        Some(chunk.data)
    }

    /// Drops held bytes below `rcv_nxt`.
    fn discard_below(&mut self, rcv_nxt: u32) {
        while let Some(front) = self.chunks.front_mut() {
            if !seq_lt(rcv_nxt, front.end()) {
                self.held_bytes -= front.data.len();
                self.chunks.pop_front();
                self.release_if_empty();
            } else {
                if seq_lt(front.seq, rcv_nxt) {
                    let cut = rcv_nxt.wrapping_sub(front.seq) as usize;
                    front.data.advance(cut);
                    front.seq = rcv_nxt;
                    self.held_bytes -= cut;
                }
                return;
            }
        }
    }

    /// The held sequence ranges `(start, end)`, lowest first, adjacent chunks
    /// joined: what SACK blocks report.
    pub fn ranges(&self) -> HeldRanges<'_> {
        HeldRanges { chunks: self.chunks.iter().peekable() }
    }

    /// Bytes held.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Chunks held.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Segments refused because a bound was reached, since construction.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Drops everything held (the frames go back to their pool when no other
    /// view holds them).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.held_bytes = 0;
        self.release_if_empty();
    }
}

/// Iterator over an [`Assembler`]'s held ranges; see [`Assembler::ranges`].
#[derive(Debug)]
pub struct HeldRanges<'a> {
    chunks: std::iter::Peekable<std::collections::vec_deque::Iter<'a, Chunk>>,
}

impl Iterator for HeldRanges<'_> {
    type Item = (u32, u32);

    fn next(&mut self) -> Option<(u32, u32)> {
        let first = self.chunks.next()?;
        let mut end = first.end();
        while let Some(next) = self.chunks.next_if(|c| c.seq == end) {
            end = next.end();
        }
        Some((first.seq, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ix_driver::{HugePages, PacketPool, PoolConfig};
    use proptest::prelude::*;

    /// A frame holding `len` bytes of a known stream, byte i being `i as u8`.
    fn stream(pool: &PacketPool, len: usize) -> PacketBuf {
        let mut tx = pool.alloc().expect("a free frame");
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        tx.extend_from_slice(&bytes).expect("fits a frame");
        tx.freeze()
    }

    fn pool() -> PacketPool {
        PacketPool::new(PoolConfig { frames: 8, huge_pages: HugePages::Never }).expect("pool")
    }

    /// A test fixture: the stream `data` starts at sequence number `isn`.
    struct Fixture {
        data: PacketBuf,
        isn: u32,
    }

    impl Fixture {
        /// Bytes `[from, to)` of the stream as a segment.
        fn seg(&self, from: u32, to: u32) -> (u32, PacketBuf) {
            (self.isn.wrapping_add(from), self.data.slice(from as usize..to as usize))
        }

        fn insert(&self, asm: &mut Assembler, from: u32, to: u32, rcv_nxt: u32) -> InsertOutcome {
            let (seq, buf) = self.seg(from, to);
            asm.insert(seq, buf, self.isn.wrapping_add(rcv_nxt), self.isn.wrapping_add(1000))
        }

        /// Held ranges as stream offsets.
        fn ranges(&self, asm: &Assembler) -> Vec<(u32, u32)> {
            asm.ranges().map(|(s, e)| (s.wrapping_sub(self.isn), e.wrapping_sub(self.isn))).collect()
        }

        /// Pops everything contiguous from `rcv_nxt`; checks the bytes.
        fn drain(&self, asm: &mut Assembler, mut rcv_nxt: u32) -> u32 {
            while let Some(chunk) = asm.pop_contiguous(self.isn.wrapping_add(rcv_nxt)) {
                let end = rcv_nxt + chunk.len() as u32;
                assert_eq!(&*chunk, &self.data[rcv_nxt as usize..end as usize]);
                rcv_nxt = end;
            }
            rcv_nxt
        }
    }

    const ISNS: [u32; 3] = [0, u32::MAX - 300, 0x8000_0000 - 10];

    fn fixtures(pool: &PacketPool) -> impl Iterator<Item = Fixture> + '_ {
        ISNS.into_iter().map(|isn| Fixture { data: stream(pool, 2000), isn })
    }

    #[test]
    fn in_order_segments_pop_as_they_come() {
        let pool = pool();
        for f in fixtures(&pool) {
            let mut asm = Assembler::new();
            for k in 0..5 {
                assert_eq!(
                    f.insert(&mut asm, k * 100, k * 100 + 100, k * 100),
                    InsertOutcome::Stored { new_bytes: 100 }
                );
                assert_eq!(f.drain(&mut asm, k * 100), k * 100 + 100);
            }
            assert!(asm.is_empty());
            assert_eq!(asm.held_bytes(), 0);
        }
    }

    #[test]
    fn reverse_order_fills_then_drains_at_once() {
        let pool = pool();
        for f in fixtures(&pool) {
            let mut asm = Assembler::new();
            for k in (1..5).rev() {
                f.insert(&mut asm, k * 100, k * 100 + 100, 0);
                assert_eq!(f.drain(&mut asm, 0), 0, "hole at 0");
            }
            assert_eq!(f.ranges(&asm), [(100, 500)]);
            f.insert(&mut asm, 0, 100, 0);
            assert_eq!(f.drain(&mut asm, 0), 500);
        }
    }

    #[test]
    fn duplicates_add_nothing() {
        let pool = pool();
        for f in fixtures(&pool) {
            let mut asm = Assembler::new();
            f.insert(&mut asm, 100, 200, 0);
            assert_eq!(f.insert(&mut asm, 100, 200, 0), InsertOutcome::Duplicate);
            assert_eq!(f.insert(&mut asm, 120, 180, 0), InsertOutcome::Duplicate);
            assert_eq!(f.insert(&mut asm, 10, 50, 60), InsertOutcome::Duplicate, "below rcv_nxt");
            assert_eq!(f.insert(&mut asm, 10, 10, 0), InsertOutcome::Duplicate, "empty");
            assert_eq!((asm.len(), asm.held_bytes()), (1, 100));
        }
    }

    #[test]
    fn overlaps_keep_held_bytes_and_trim_the_new() {
        let pool = pool();
        // (new segment, bytes it adds, ranges after) with [100, 200) held.
        let cases = [
            ((50, 150), 50, vec![(50, 200)]),    // overlaps the front
            ((150, 250), 50, vec![(100, 250)]),  // overlaps the back
            ((50, 250), 100, vec![(50, 250)]),   // covers it
            ((100, 150), 0, vec![(100, 200)]),   // inside, same start
            ((200, 300), 100, vec![(100, 300)]), // adjacent after
            ((40, 100), 60, vec![(40, 200)]),    // adjacent before
        ];
        for f in fixtures(&pool) {
            for ((from, to), added, after) in &cases {
                let mut asm = Assembler::new();
                f.insert(&mut asm, 100, 200, 0);
                let outcome = f.insert(&mut asm, *from, *to, 0);
                let expected =
                    if *added == 0 { InsertOutcome::Duplicate } else { InsertOutcome::Stored { new_bytes: *added } };
                assert_eq!(outcome, expected, "{from}..{to}");
                assert_eq!(&f.ranges(&asm), after, "{from}..{to}");
                assert_eq!(asm.held_bytes() as u32, 100 + added);
                // Filling the hole below drains exactly the stream's bytes.
                f.insert(&mut asm, 0, after[0].0, 0);
                assert_eq!(f.drain(&mut asm, 0), after[0].1);
            }
        }
    }

    #[test]
    fn a_segment_spanning_holes_fills_each_gap() {
        let pool = pool();
        for f in fixtures(&pool) {
            let mut asm = Assembler::new();
            f.insert(&mut asm, 100, 150, 0);
            f.insert(&mut asm, 200, 250, 0);
            f.insert(&mut asm, 300, 350, 0);
            assert_eq!(f.insert(&mut asm, 120, 400, 0), InsertOutcome::Stored { new_bytes: 150 });
            assert_eq!(asm.len(), 6);
            assert_eq!(f.ranges(&asm), [(100, 400)]);
            f.insert(&mut asm, 0, 100, 0);
            assert_eq!(f.drain(&mut asm, 0), 400);
        }
    }

    #[test]
    fn window_trims_the_segment() {
        let pool = pool();
        for f in fixtures(&pool) {
            let mut asm = Assembler::new();
            let wnd_end = f.isn.wrapping_add(300);
            let (seq, buf) = f.seg(250, 400);
            assert_eq!(asm.insert(seq, buf, f.isn, wnd_end), InsertOutcome::Stored { new_bytes: 50 });
            let (seq, buf) = f.seg(300, 400);
            assert_eq!(asm.insert(seq, buf, f.isn, wnd_end), InsertOutcome::OutsideWindow);
            // Partly below rcv_nxt: the old bytes go.
            let (seq, buf) = f.seg(50, 150);
            let rcv_nxt = f.isn.wrapping_add(100);
            assert_eq!(asm.insert(seq, buf, rcv_nxt, wnd_end), InsertOutcome::Stored { new_bytes: 50 });
            assert_eq!(f.ranges(&asm), [(100, 150), (250, 300)]);
        }
    }

    #[test]
    fn pop_trims_a_chunk_that_straddles_rcv_nxt() {
        let pool = pool();
        for f in fixtures(&pool) {
            let mut asm = Assembler::new();
            f.insert(&mut asm, 100, 200, 0);
            f.insert(&mut asm, 300, 400, 0);
            // The caller delivered [0, 150) directly.
            let chunk = asm.pop_contiguous(f.isn.wrapping_add(150)).expect("the rest of the chunk");
            assert_eq!(&*chunk, &f.data[150..200]);
            assert_eq!(asm.held_bytes(), 100);
            assert_eq!(asm.pop_contiguous(f.isn.wrapping_add(200)), None);
            // Delivering past a whole chunk drops it.
            assert_eq!(asm.pop_contiguous(f.isn.wrapping_add(500)), None);
            assert!(asm.is_empty());
            assert_eq!(asm.held_bytes(), 0);
        }
    }

    #[test]
    fn bounds_refuse_and_count() {
        let pool = pool();
        for f in fixtures(&pool) {
            let mut asm = Assembler::with_limits(3, 250);
            for k in 1..=3 {
                assert!(matches!(f.insert(&mut asm, k * 100, k * 100 + 50, 0), InsertOutcome::Stored { .. }));
            }
            assert_eq!(f.insert(&mut asm, 500, 550, 0), InsertOutcome::Full, "chunk bound");
            // Growing a chunk in place still needs a chunk per piece.
            assert_eq!(f.insert(&mut asm, 150, 160, 0), InsertOutcome::Full);
            asm.clear();
            assert_eq!(f.insert(&mut asm, 100, 300, 0), InsertOutcome::Stored { new_bytes: 200 });
            assert_eq!(f.insert(&mut asm, 300, 360, 0), InsertOutcome::Full, "byte bound");
            assert_eq!(asm.refused(), 3);
            assert_eq!(asm.held_bytes(), 200);
        }
    }

    #[test]
    fn storage_grows_with_holes_and_is_freed_when_they_fill() {
        let pool = pool();
        let f = Fixture { data: stream(&pool, 2000), isn: 7 };
        let mut asm = Assembler::with_limits(256, 1 << 20);
        assert_eq!(asm.capacity(), 0, "a queue that holds nothing allocates nothing");
        for k in (0..90).rev() {
            f.insert(&mut asm, k * 10 + 10, k * 10 + 15, 0);
        }
        assert_eq!(asm.len(), 90);
        assert!(asm.capacity() >= 90);
        // The holes fill: everything is delivered, the storage goes back.
        assert!(matches!(f.insert(&mut asm, 0, 1000, 0), InsertOutcome::Stored { .. }));
        assert_eq!(f.drain(&mut asm, 0), 1000);
        assert!(asm.is_empty());
        assert!(asm.capacity() <= ASSEMBLER_RETAINED_CHUNKS, "capacity {} kept", asm.capacity());
        // Clearing a full queue frees its storage too.
        for k in 0..60 {
            f.insert(&mut asm, 10 + k * 8, 14 + k * 8, 0);
        }
        assert!(asm.capacity() >= 60);
        asm.clear();
        assert!(asm.capacity() <= ASSEMBLER_RETAINED_CHUNKS);
    }

    proptest! {
        /// Random overlapping slices of a stream, in random order with
        /// repeats, drain to exactly the stream.
        #[test]
        fn any_arrival_order_reassembles_the_stream(
            isn in any::<u32>(),
            len in 1usize..1500,
            cuts in prop::collection::vec(0.0f64..1.0, 0..12),
            extra in prop::collection::vec((0.0f64..1.0, 0.0f64..1.0), 0..20),
            seed in any::<u64>(),
        ) {
            let pool = pool();
            let f = Fixture { data: stream(&pool, len), isn };
            // A partition of the stream, so every byte arrives at least once.
            let mut points: Vec<u32> = cuts.iter().map(|c| (c * len as f64) as u32).collect();
            points.extend([0, len as u32]);
            points.sort_unstable();
            let mut segments: Vec<(u32, u32)> = points.windows(2).map(|w| (w[0], w[1])).collect();
            // Plus random overlapping slices.
            for (a, b) in extra {
                let (a, b) = ((a * len as f64) as u32, (b * len as f64) as u32);
                segments.push((a.min(b), a.max(b)));
            }
            shuffle(&mut segments, seed);
            let mut asm = Assembler::new();
            let mut rcv_nxt = 0;
            for (from, to) in segments {
                let (seq, buf) = f.seg(from, to);
                asm.insert(seq, buf, isn.wrapping_add(rcv_nxt), isn.wrapping_add(len as u32));
                let held: usize = f.ranges(&asm).iter().map(|(s, e)| (e - s) as usize).sum();
                prop_assert_eq!(held, asm.held_bytes());
                rcv_nxt = f.drain(&mut asm, rcv_nxt);
            }
            prop_assert_eq!(rcv_nxt, len as u32);
            prop_assert!(asm.is_empty());
            prop_assert_eq!(asm.held_bytes(), 0);
        }
    }

    /// A Fisher–Yates shuffle with a small xorshift generator.
    fn shuffle<T>(items: &mut [T], mut state: u64) {
        state |= 1;
        for i in (1..items.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            items.swap(i, (state % (i as u64 + 1)) as usize);
        }
    }
}
