//! Selective acknowledgements: the sender's scoreboard of SACKed ranges with
//! D-SACK detection (RFC 2883), and the receiver's list of blocks to report
//! (RFC 2018). Loss marking from SACK lives in `recovery.rs`.

/// Ranges the scoreboard remembers. A peer reports at most four blocks per ACK,
/// so 32 disjoint ranges means heavy, scattered loss.
pub const SACK_SCOREBOARD_MAX_RANGES: usize = 32;
/// Blocks a receiver reports at most (four fit in the 40 option bytes without
/// timestamps, three with them).
pub const SACK_BLOCKS_MAX: usize = 4;
/// RFC 6675 DupThresh: how many SACKed segments above a segment make it lost
/// (`LossDetection::DupThresh`).
pub const DUP_THRESH: u32 = 3;

/// `a` comes before `b` in sequence space (RFC 9293 §3.4 comparisons).
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn seq_le(a: u32, b: u32) -> bool {
    !seq_lt(b, a)
}

/// What one ACK's SACK blocks changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SackUpdate {
    /// Bytes the scoreboard had not recorded as SACKed before.
    pub newly_sacked_bytes: u32,
    /// The first block was a D-SACK (RFC 2883): the peer received something
    /// twice. It is reported, not recorded.
    pub dsack: bool,
}

/// The sender's record of what the peer holds above the cumulative ACK.
///
/// Ranges are kept sorted, disjoint and not adjacent, inside
/// `[snd_una, snd_nxt)`. Blocks outside that span are ignored, since a hostile
/// peer can claim anything. When all [`SACK_SCOREBOARD_MAX_RANGES`] are in use
/// and a block needs a new one, the highest range is forgotten (or the block, if
/// it would be the highest): the bytes nearest to `snd_una` matter most for
/// recovery, and forgetting a SACK only risks a needless retransmission.
/// A fixed array: no allocation, ever.
#[derive(Debug, Clone)]
pub struct SackScoreboard {
    /// The cumulative ACK point the ranges are measured from.
    una: u32,
    ranges: [(u32, u32); SACK_SCOREBOARD_MAX_RANGES],
    len: usize,
    sacked_bytes: u32,
}

impl Default for SackScoreboard {
    fn default() -> Self {
        Self::new()
    }
}

impl SackScoreboard {
    /// An empty scoreboard.
    pub fn new() -> Self {
        Self { una: 0, ranges: [(0, 0); SACK_SCOREBOARD_MAX_RANGES], len: 0, sacked_bytes: 0 }
    }

    /// The recorded ranges, lowest first, as `(start, end)` with `end` exclusive.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges[..self.len]
    }

    /// Forgets everything (a retransmission timeout, RFC 6675 §5.1, or a new
    /// connection).
    pub fn clear(&mut self) {
        self.len = 0;
        self.sacked_bytes = 0;
    }

    /// Moves the cumulative ACK point to `snd_una`: drops ranges at or below it
    /// and trims one that straddles it.
    pub fn advance_una(&mut self, snd_una: u32) {
        // Nothing recorded (every ACK of a clean path): only the point moves.
        if self.len == 0 || seq_le(snd_una, self.una) {
            self.una = snd_una;
            return;
        }
        self.una = snd_una;
        let gone = self.ranges().iter().take_while(|&&(_, end)| seq_le(end, snd_una)).count();
        let gone_bytes: u32 = self.ranges[..gone].iter().map(|&(s, e)| e.wrapping_sub(s)).sum();
        self.remove(0..gone);
        self.sacked_bytes -= gone_bytes;
        if let Some(first) = self.ranges[..self.len].first_mut() {
            if seq_lt(first.0, snd_una) {
                self.sacked_bytes -= snd_una.wrapping_sub(first.0);
                first.0 = snd_una;
            }
        }
    }

    /// Records the SACK blocks of one ACK. `snd_una` is the cumulative ACK
    /// after this ACK was applied and `snd_nxt` the next sequence number to send.
    ///
    /// The first block is a D-SACK when it lies below `snd_una` or inside the
    /// second block (RFC 2883 §4); it is then reported and not recorded. Other
    /// blocks must satisfy `snd_una <= start < end <= snd_nxt` or are ignored;
    /// a block reaching below `snd_una` is trimmed to it.
    pub fn update(&mut self, snd_una: u32, snd_nxt: u32, blocks: &[(u32, u32)]) -> SackUpdate {
        self.advance_una(snd_una);
        let dsack = is_dsack(snd_una, blocks);
        let skip = usize::from(dsack);
        let mut newly_sacked_bytes = 0;
        for &(start, end) in &blocks[skip..] {
            if !seq_lt(start, end) || !seq_lt(snd_una, end) || seq_lt(snd_nxt, end) {
                continue;
            }
            let start = if seq_lt(start, snd_una) { snd_una } else { start };
            newly_sacked_bytes += self.insert(start, end);
        }
        SackUpdate { newly_sacked_bytes, dsack }
    }

    /// Whether the byte at `seq` is SACKed.
    pub fn is_sacked(&self, seq: u32) -> bool {
        let at = self.offset(seq);
        self.ranges().iter().any(|&(s, e)| self.offset(s) <= at && at < self.offset(e))
    }

    /// Total bytes SACKed above `snd_una`.
    pub fn sacked_bytes(&self) -> u32 {
        self.sacked_bytes
    }

    /// One past the highest SACKed byte, if any byte is SACKed.
    pub fn highest_sacked(&self) -> Option<u32> {
        self.ranges().last().map(|&(_, end)| end)
    }

    /// Distance of `seq` above the cumulative ACK point.
    fn offset(&self, seq: u32) -> u32 {
        seq.wrapping_sub(self.una)
    }

    /// Adds `[start, end)` (inside the window), merging with what it touches;
    /// returns the bytes that were not SACKed before.
    fn insert(&mut self, start: u32, end: u32) -> u32 {
        let (s, e) = (self.offset(start), self.offset(end));
        // Ranges from `first` to `last` (exclusive) overlap or touch the block.
        let first = self.ranges().partition_point(|&(_, re)| self.offset(re) < s);
        let last = self.ranges().partition_point(|&(rs, _)| self.offset(rs) <= e);
        if first == last {
            return self.insert_new(first, start, end);
        }
        let covered: u32 = self.ranges[first..last]
            .iter()
            .map(|&(rs, re)| self.offset(re).min(e).saturating_sub(self.offset(rs).max(s)))
            .sum();
        let merged_start = if self.offset(self.ranges[first].0) < s { self.ranges[first].0 } else { start };
        let merged_end = if self.offset(self.ranges[last - 1].1) > e { self.ranges[last - 1].1 } else { end };
        self.ranges[first] = (merged_start, merged_end);
        self.remove(first + 1..last);
        let new = (e - s) - covered;
        self.sacked_bytes += new;
        new
    }

    /// Puts a range that touches no other at `index`, making room if needed.
    fn insert_new(&mut self, index: usize, start: u32, end: u32) -> u32 {
        if self.len == SACK_SCOREBOARD_MAX_RANGES {
            if index == self.len {
                return 0;
            }
            let (hs, he) = self.ranges[self.len - 1];
            self.sacked_bytes -= he.wrapping_sub(hs);
            self.len -= 1;
        }
        self.ranges.copy_within(index..self.len, index + 1);
        self.ranges[index] = (start, end);
        self.len += 1;
        let new = end.wrapping_sub(start);
        self.sacked_bytes += new;
        new
    }

    /// Removes the ranges at `gone` (not their bytes from the count).
    fn remove(&mut self, gone: std::ops::Range<usize>) {
        let n = gone.len();
        self.ranges.copy_within(gone.end..self.len, gone.start);
        self.len -= n;
    }
}

/// RFC 2883 §4: the first block reports a duplicate when it lies below the
/// cumulative ACK or inside the second block.
fn is_dsack(snd_una: u32, blocks: &[(u32, u32)]) -> bool {
    match blocks {
        [] => false,
        [(start, _), ..] if seq_lt(*start, snd_una) => true,
        [(s0, e0), (s1, e1), ..] => seq_le(*s1, *s0) && seq_le(*e0, *e1),
        [_] => false,
    }
}

/// The receiver's SACK blocks (RFC 2018 §4): the block holding the most
/// recently received segment first, then the blocks most recently reported
/// before it, none repeated; ahead of them, once, a D-SACK block for data
/// received twice (RFC 2883). Fixed size: no allocation.
#[derive(Debug, Clone, Default)]
pub struct SackBlockList {
    blocks: [(u32, u32); SACK_BLOCKS_MAX],
    len: usize,
    /// Data received twice since the last ACK went out (RFC 2883 §4).
    duplicate: Option<(u32, u32)>,
}

impl SackBlockList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// The blocks to send, first block first; a sender with timestamps sends
    /// the first three.
    pub fn blocks(&self) -> &[(u32, u32)] {
        &self.blocks[..self.len]
    }

    /// Forgets every block (a pending D-SACK stays: it is news of its own).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// `[start, end)` arrived again (RFC 2883 §4): the next ACK reports it
    /// first. A duplicate touching the one not yet reported extends it (a
    /// retransmission of several segments is one D-SACK block, as in Linux's
    /// `tcp_dsack_extend`); any other replaces it, since only one block can say
    /// what was duplicated. Empty or inverted ranges are ignored.
    pub fn on_duplicate(&mut self, start: u32, end: u32) {
        if !seq_lt(start, end) {
            return;
        }
        self.duplicate = Some(match self.duplicate {
            Some((s, e)) if seq_le(start, e) && seq_le(s, end) => {
                (if seq_lt(start, s) { start } else { s }, if seq_lt(e, end) { end } else { e })
            }
            _ => (start, end),
        });
    }

    /// The blocks the next ACK carries, at most [`SACK_BLOCKS_MAX`] (the
    /// emitter keeps what fits beside the other options): the pending D-SACK
    /// first, then the SACK blocks when `holding` (data is held out of order).
    pub fn report(&self, holding: bool) -> ([(u32, u32); SACK_BLOCKS_MAX], usize) {
        let mut out = [(0, 0); SACK_BLOCKS_MAX];
        let mut n = 0;
        if let Some(dup) = self.duplicate {
            out[0] = dup;
            n = 1;
        }
        if holding {
            let take = self.len.min(SACK_BLOCKS_MAX - n);
            out[n..n + take].copy_from_slice(&self.blocks[..take]);
            n += take;
        }
        (out, n)
    }

    /// How many blocks [`report`](Self::report) gives now, without building
    /// them.
    pub fn report_len(&self, holding: bool) -> usize {
        let dsack = usize::from(self.duplicate.is_some());
        if holding { dsack + self.len.min(SACK_BLOCKS_MAX - dsack) } else { dsack }
    }

    /// An ACK carried the blocks of [`report`](Self::report): the D-SACK was
    /// said, and is not repeated (RFC 2883 §4.1). Returns whether there was one.
    pub fn on_reported(&mut self) -> bool {
        self.duplicate.take().is_some()
    }

    /// A segment `[seg_start, seg_end)` arrived out of order; `held` are the
    /// contiguous ranges the receiver now holds above `rcv_nxt` (the
    /// reassembly queue's ranges). The held range that overlaps the segment
    /// becomes the first block; earlier blocks that it covers or overlaps are
    /// dropped, since it replaces them. A segment that no held range overlaps
    /// (the queue refused it) changes nothing.
    pub fn on_segment(&mut self, seg_start: u32, seg_end: u32, held: impl IntoIterator<Item = (u32, u32)>) {
        let Some(first) = held.into_iter().find(|&(s, e)| seq_lt(s, seg_end) && seq_lt(seg_start, e)) else {
            return;
        };
        let mut kept = 0;
        for i in 0..self.len {
            let block = self.blocks[i];
            let overlaps = seq_le(first.0, block.1) && seq_le(block.0, first.1);
            if !overlaps && kept < SACK_BLOCKS_MAX - 1 {
                self.blocks[kept] = block;
                kept += 1;
            }
        }
        self.blocks.copy_within(0..kept, 1);
        self.blocks[0] = first;
        self.len = kept + 1;
    }

    /// The cumulative ACK point moved to `rcv_nxt`: drops blocks at or below it.
    pub fn advance(&mut self, rcv_nxt: u32) {
        let mut kept = 0;
        for i in 0..self.len {
            let (start, end) = self.blocks[i];
            if seq_lt(rcv_nxt, end) {
                self.blocks[kept] = (if seq_lt(start, rcv_nxt) { rcv_nxt } else { start }, end);
                kept += 1;
            }
        }
        self.len = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;

    /// A scoreboard with `snd_una` at `una` and the given blocks SACKed.
    fn board(una: u32, blocks: &[(u32, u32)]) -> SackScoreboard {
        let mut sb = SackScoreboard::new();
        sb.update(una, una.wrapping_add(100 * MSS), blocks);
        sb
    }

    /// Sequence numbers `una + k × MSS`.
    fn at(una: u32, k: u32) -> u32 {
        una.wrapping_add(k * MSS)
    }

    /// Bases to run each test at, including across the 2^32 wrap.
    const BASES: [u32; 3] = [1000, u32::MAX - 5 * MSS, 0x7fff_ff00];

    #[test]
    fn blocks_are_recorded_and_merged() {
        for una in BASES {
            let mut sb = board(una, &[(at(una, 2), at(una, 3))]);
            assert_eq!(sb.sacked_bytes(), MSS);
            // Adjacent on the right, overlapping, and bridging two ranges.
            let up = sb.update(una, at(una, 100), &[(at(una, 5), at(una, 6)), (at(una, 3), at(una, 4))]);
            assert_eq!(up, SackUpdate { newly_sacked_bytes: 2 * MSS, dsack: false });
            assert_eq!(sb.ranges(), &[(at(una, 2), at(una, 4)), (at(una, 5), at(una, 6))]);
            let up = sb.update(una, at(una, 100), &[(at(una, 1), at(una, 7))]);
            assert_eq!(up.newly_sacked_bytes, 3 * MSS);
            assert_eq!(sb.ranges(), &[(at(una, 1), at(una, 7))]);
            assert_eq!(sb.sacked_bytes(), 6 * MSS);
            // A repeat adds nothing.
            assert_eq!(sb.update(una, at(una, 100), &[(at(una, 2), at(una, 3))]).newly_sacked_bytes, 0);
            assert_eq!(sb.highest_sacked(), Some(at(una, 7)));
        }
    }

    #[test]
    fn blocks_outside_the_window_are_ignored() {
        for una in BASES {
            let nxt = at(una, 10);
            let mut sb = board(una, &[]);
            let hostile = [
                (at(una, 9), at(una, 11)),                                     // past snd_nxt
                (una.wrapping_sub(5000), una.wrapping_sub(4000)),              // old, not first: no D-SACK
                (at(una, 4), at(una, 3)),                                      // inverted
                (at(una, 5), at(una, 5)),                                      // empty
                (una.wrapping_add(1 << 31), una.wrapping_add((1 << 31) + 10)), // far away
            ];
            let up = sb.update(una, nxt, &[(at(una, 1), at(una, 2))]);
            assert_eq!(up.newly_sacked_bytes, MSS);
            for block in hostile {
                let up = sb.update(una, nxt, &[(at(una, 1), at(una, 2)), block]);
                assert_eq!(up.newly_sacked_bytes, 0, "{block:?}");
            }
            assert_eq!(sb.ranges(), &[(at(una, 1), at(una, 2))]);
            // Up to snd_nxt exactly is fine.
            assert_eq!(sb.update(una, nxt, &[(at(una, 9), nxt)]).newly_sacked_bytes, MSS);
        }
    }

    #[test]
    fn advancing_una_drops_and_trims_ranges() {
        for una in BASES {
            let mut sb = board(una, &[(at(una, 2), at(una, 4)), (at(una, 6), at(una, 8))]);
            sb.advance_una(at(una, 3));
            assert_eq!(sb.ranges(), &[(at(una, 3), at(una, 4)), (at(una, 6), at(una, 8))]);
            assert_eq!(sb.sacked_bytes(), 3 * MSS);
            sb.advance_una(at(una, 6));
            assert_eq!(sb.ranges(), &[(at(una, 6), at(una, 8))]);
            sb.advance_una(at(una, 8));
            assert!(sb.ranges().is_empty());
            assert_eq!(sb.sacked_bytes(), 0);
            assert_eq!(sb.highest_sacked(), None);
        }
    }

    #[test]
    fn dsack_below_the_cumulative_ack_is_reported_not_recorded() {
        for una in BASES {
            let mut sb = board(una, &[]);
            let up = sb.update(una, at(una, 10), &[(una.wrapping_sub(MSS), una), (at(una, 2), at(una, 3))]);
            assert_eq!(up, SackUpdate { newly_sacked_bytes: MSS, dsack: true });
            assert_eq!(sb.ranges(), &[(at(una, 2), at(una, 3))]);
        }
    }

    #[test]
    fn dsack_inside_the_second_block_is_reported() {
        for una in BASES {
            let mut sb = board(una, &[]);
            let blocks = [(at(una, 3), at(una, 4)), (at(una, 2), at(una, 5))];
            let up = sb.update(una, at(una, 10), &blocks);
            assert_eq!(up, SackUpdate { newly_sacked_bytes: 3 * MSS, dsack: true });
            // Two ordinary blocks are not a D-SACK.
            let blocks = [(at(una, 6), at(una, 7)), (at(una, 2), at(una, 5))];
            assert!(!sb.update(una, at(una, 10), &blocks).dsack);
        }
    }

    #[test]
    fn full_scoreboard_forgets_the_highest_range() {
        for una in BASES {
            let mut sb = SackScoreboard::new();
            for k in 0..SACK_SCOREBOARD_MAX_RANGES as u32 {
                sb.update(una, at(una, 100), &[(at(una, 2 * k + 1), at(una, 2 * k + 2))]);
            }
            assert_eq!(sb.ranges().len(), SACK_SCOREBOARD_MAX_RANGES);
            let highest = sb.highest_sacked();
            // Above everything: not recorded.
            assert_eq!(sb.update(una, at(una, 100), &[(at(una, 90), at(una, 91))]).newly_sacked_bytes, 0);
            assert_eq!(sb.highest_sacked(), highest);
            // A low hole filled in part: the top range goes instead.
            let low = (una.wrapping_add(100), una.wrapping_add(200));
            assert_eq!(sb.update(una, at(una, 100), &[low]).newly_sacked_bytes, 100);
            assert_eq!(sb.ranges()[0], low);
            assert_eq!(sb.highest_sacked(), Some(at(una, 62)));
            assert_eq!(sb.sacked_bytes(), 31 * MSS + 100);
        }
    }

    #[test]
    fn clear_forgets_everything() {
        let mut sb = board(7, &[(7 + MSS, 7 + 2 * MSS)]);
        sb.clear();
        assert!(sb.ranges().is_empty());
        assert_eq!(sb.sacked_bytes(), 0);
        assert!(!sb.is_sacked(7 + MSS));
    }

    #[test]
    fn block_list_puts_the_latest_segment_first() {
        for base in BASES {
            let r = |k: u32| (at(base, k), at(base, k + 1));
            let mut list = SackBlockList::new();
            list.on_segment(r(2).0, r(2).1, [r(2)]);
            list.on_segment(r(4).0, r(4).1, [r(2), r(4)]);
            list.on_segment(r(6).0, r(6).1, [r(2), r(4), r(6)]);
            assert_eq!(list.blocks(), &[r(6), r(4), r(2)]);
            // A segment that joins 4 and 6: the merged range first, the old
            // blocks it covers gone.
            list.on_segment(r(5).0, r(5).1, [r(2), (at(base, 4), at(base, 7))]);
            assert_eq!(list.blocks(), &[(at(base, 4), at(base, 7)), r(2)]);
        }
    }

    #[test]
    fn block_list_keeps_four_most_recent() {
        for base in BASES {
            let r = |k: u32| (at(base, 2 * k), at(base, 2 * k + 1));
            let mut list = SackBlockList::new();
            let mut held = Vec::new();
            for k in 1..=6 {
                held.push(r(k));
                list.on_segment(r(k).0, r(k).1, held.iter().copied());
            }
            assert_eq!(list.blocks(), &[r(6), r(5), r(4), r(3)]);
            // A repeat of an old block moves it to the front.
            list.on_segment(r(4).0, r(4).1, held.iter().copied());
            assert_eq!(list.blocks(), &[r(4), r(6), r(5), r(3)]);
        }
    }

    #[test]
    fn a_duplicate_is_reported_first_once_and_extended_while_unsent() {
        for base in BASES {
            let mut list = SackBlockList::new();
            list.on_segment(at(base, 5), at(base, 6), [(at(base, 5), at(base, 6))]);
            list.on_duplicate(at(base, 1), at(base, 2));
            list.on_duplicate(at(base, 2), at(base, 3));
            let (blocks, n) = list.report(true);
            assert_eq!(&blocks[..n], &[(at(base, 1), at(base, 3)), (at(base, 5), at(base, 6))]);
            assert_eq!(list.report(false).1, 1, "a D-SACK goes out with nothing held");
            // A duplicate elsewhere replaces the unsent one.
            list.on_duplicate(at(base, 8), at(base, 9));
            assert_eq!(list.report(false).0[0], (at(base, 8), at(base, 9)));
            list.on_reported();
            let (blocks, n) = list.report(true);
            assert_eq!(&blocks[..n], &[(at(base, 5), at(base, 6))]);
            list.on_duplicate(at(base, 4), at(base, 4));
            assert_eq!(list.report(false).1, 0, "an empty range is no duplicate");
        }
    }

    #[test]
    fn report_len_counts_what_report_gives() {
        for base in BASES {
            let r = |k: u32| (at(base, 2 * k), at(base, 2 * k + 1));
            let mut list = SackBlockList::new();
            let mut held = Vec::new();
            let counts = |list: &SackBlockList| [false, true].map(|h| (list.report_len(h), list.report(h).1));
            assert!(counts(&list).iter().all(|(len, n)| len == n));
            for k in 1..=6 {
                held.push(r(k));
                list.on_segment(r(k).0, r(k).1, held.iter().copied());
                assert!(counts(&list).iter().all(|(len, n)| len == n), "{k} held");
                list.on_duplicate(at(base, 1), at(base, 2));
                assert!(counts(&list).iter().all(|(len, n)| len == n), "{k} held and a duplicate");
                list.on_reported();
            }
        }
    }

    #[test]
    fn block_list_drops_acknowledged_blocks() {
        for base in BASES {
            let mut list = SackBlockList::new();
            list.on_segment(at(base, 2), at(base, 3), [(at(base, 2), at(base, 3))]);
            list.on_segment(at(base, 5), at(base, 7), [(at(base, 2), at(base, 3)), (at(base, 5), at(base, 7))]);
            list.advance(at(base, 3));
            assert_eq!(list.blocks(), &[(at(base, 5), at(base, 7))]);
            list.advance(at(base, 6));
            assert_eq!(list.blocks(), &[(at(base, 6), at(base, 7))]);
            // A segment the queue refused is not reported.
            list.on_segment(at(base, 9), at(base, 10), [(at(base, 6), at(base, 7))]);
            assert_eq!(list.blocks(), &[(at(base, 6), at(base, 7))]);
            list.clear();
            assert!(list.blocks().is_empty());
        }
    }
}
