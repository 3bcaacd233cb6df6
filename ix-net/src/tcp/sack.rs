//! Selective acknowledgements: the sender's scoreboard of SACKed ranges with the
//! loss recovery rules of RFC 6675 (IsLost, NextSeg, SetPipe) and D-SACK
//! detection (RFC 2883), and the receiver's list of blocks to report (RFC 2018).

/// Ranges the scoreboard remembers. A peer reports at most four blocks per ACK,
/// so 32 disjoint ranges means heavy, scattered loss.
pub const SACK_SCOREBOARD_MAX_RANGES: usize = 32;
/// Blocks a receiver reports at most (four fit in the 40 option bytes without
/// timestamps, three with them).
pub const SACK_BLOCKS_MAX: usize = 4;
/// RFC 6675 DupThresh: how many discontiguous SACKed ranges (or how many
/// segments' worth of SACKed bytes, minus one) above a hole make it lost.
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

/// A stretch of unSACKed sequence space below the highest SACKed byte, and
/// whether RFC 6675 IsLost holds for it (it holds for every byte of a hole or
/// for none, since the same ranges lie above all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hole {
    start: u32,
    end: u32,
    lost: bool,
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
        if seq_le(snd_una, self.una) {
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

    /// RFC 6675 IsLost: whether the segment starting at `seq` is deemed lost,
    /// because [`DUP_THRESH`] discontiguous SACKed ranges lie above it, or more
    /// than `(DUP_THRESH − 1) × mss` SACKed bytes do.
    pub fn is_lost(&self, seq: u32, mss: u32) -> bool {
        let at = self.offset(seq);
        let (mut ranges, mut bytes) = (0, 0u32);
        for &(s, e) in self.ranges().iter().rev() {
            if self.offset(e) <= at + 1 {
                break;
            }
            ranges += 1;
            bytes += e.wrapping_sub(s).min(self.offset(e) - at - 1);
        }
        loss_threshold_met(ranges, bytes, mss)
    }

    /// RFC 6675 NextSeg rule 1: the first unSACKed, lost byte range at or above
    /// `high_rxt` (one past the highest byte retransmitted in this recovery,
    /// `snd_una` if none), below the highest SACKed byte. Returns its start and
    /// a length of at most `mss`, ending at the next SACKed range or `snd_nxt`.
    /// `None` when no such byte exists: rules 2 to 4 (new data, rescue
    /// retransmission) are the connection's.
    pub fn next_seg(&self, high_rxt: u32, snd_nxt: u32, mss: u32) -> Option<(u32, u32)> {
        let from = self.offset(high_rxt);
        for hole in self.holes(mss) {
            if !hole.lost {
                return None;
            }
            if self.offset(hole.end) <= from {
                continue;
            }
            let start = if self.offset(hole.start) < from { high_rxt } else { hole.start };
            let end = if seq_lt(snd_nxt, hole.end) { snd_nxt } else { hole.end };
            let len = self.offset(end).saturating_sub(self.offset(start)).min(mss);
            return (len > 0).then_some((start, len));
        }
        None
    }

    /// RFC 6675 SetPipe: bytes estimated in the network. Each unSACKed byte in
    /// `[snd_una, snd_nxt)` counts once if not lost, and once more if below
    /// `high_rxt` (it was retransmitted).
    ///
    /// # Panics
    /// In debug builds, if `snd_una` is not the point given to the last
    /// [`update`](Self::update) or [`advance_una`](Self::advance_una).
    pub fn pipe(&self, snd_una: u32, snd_nxt: u32, high_rxt: u32, mss: u32) -> u32 {
        debug_assert_eq!(snd_una, self.una, "call update or advance_una first");
        let rxt = self.offset(high_rxt);
        let mut pipe = 0;
        let mut count = |start: u32, end: u32, lost: bool| {
            let (lo, hi) = (self.offset(start), self.offset(end));
            if !lost {
                pipe += hi - lo;
            }
            pipe += rxt.clamp(lo, hi) - lo;
        };
        for hole in self.holes(mss) {
            count(hole.start, hole.end, hole.lost);
        }
        let tail = self.highest_sacked().unwrap_or(self.una);
        if seq_lt(tail, snd_nxt) {
            count(tail, snd_nxt, false);
        }
        pipe
    }

    /// The holes between `una` and the highest SACKed range, lowest first.
    fn holes(&self, mss: u32) -> impl Iterator<Item = Hole> + '_ {
        let mut above_bytes = self.sacked_bytes;
        let mut below_end = self.una;
        self.ranges().iter().enumerate().filter_map(move |(i, &(start, end))| {
            let hole = Hole {
                start: below_end,
                end: start,
                lost: loss_threshold_met((self.len - i) as u32, above_bytes, mss),
            };
            above_bytes -= end.wrapping_sub(start);
            below_end = end;
            (hole.start != hole.end).then_some(hole)
        })
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

/// The IsLost thresholds, given what lies above a byte.
fn loss_threshold_met(ranges_above: u32, bytes_above: u32, mss: u32) -> bool {
    ranges_above >= DUP_THRESH || bytes_above > (DUP_THRESH - 1).saturating_mul(mss)
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
/// before it, none repeated. Fixed size: no allocation.
#[derive(Debug, Clone, Default)]
pub struct SackBlockList {
    blocks: [(u32, u32); SACK_BLOCKS_MAX],
    len: usize,
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

    /// Forgets every block.
    pub fn clear(&mut self) {
        self.len = 0;
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
    fn is_lost_after_three_ranges_above() {
        for una in BASES {
            // Three single-segment ranges above una, small ones.
            let small = |k| (at(una, k), at(una, k).wrapping_add(100));
            let sb = board(una, &[small(2), small(4), small(6)]);
            assert!(sb.is_lost(una, MSS));
            assert!(!sb.is_lost(at(una, 3), MSS), "only two ranges above");
            assert!(!sb.is_sacked(una));
            assert!(sb.is_sacked(at(una, 2)));
            assert!(!sb.is_sacked(at(una, 2).wrapping_add(100)));
        }
    }

    #[test]
    fn is_lost_after_more_than_two_segments_of_bytes_above() {
        for una in BASES {
            let sb = board(una, &[(at(una, 5), at(una, 7))]);
            assert!(!sb.is_lost(una, MSS), "exactly 2 × MSS above is not enough");
            let sb = board(una, &[(at(una, 5), at(una, 7).wrapping_add(1))]);
            assert!(sb.is_lost(una, MSS));
            assert!(sb.is_lost(at(una, 4), MSS));
            // Inside the range, only the bytes above the sequence number count.
            assert!(!sb.is_lost(at(una, 5), MSS));
        }
    }

    #[test]
    fn next_seg_walks_lost_holes_above_high_rxt() {
        for una in BASES {
            // Holes [0,1) [2,3) [4,5); SACKed [1,2) [3,4) [5,8).
            let sb = board(una, &[(at(una, 1), at(una, 2)), (at(una, 3), at(una, 4)), (at(una, 5), at(una, 8))]);
            let nxt = at(una, 20);
            assert_eq!(sb.next_seg(una, nxt, MSS), Some((una, MSS)));
            assert_eq!(sb.next_seg(at(una, 1), nxt, MSS), Some((at(una, 2), MSS)));
            // Part of a hole already retransmitted.
            let mid = at(una, 2).wrapping_add(400);
            assert_eq!(sb.next_seg(mid, nxt, MSS), Some((mid, 600)));
            // The hole at 4 has one range (3 segments) above: still lost by bytes.
            assert_eq!(sb.next_seg(at(una, 3), nxt, MSS), Some((at(una, 4), MSS)));
            // Nothing lost above the last hole.
            assert_eq!(sb.next_seg(at(una, 5), nxt, MSS), None);
            // Segments are at most one MSS.
            assert_eq!(sb.next_seg(una, nxt, 300), Some((una, 300)));
        }
    }

    #[test]
    fn next_seg_skips_holes_not_yet_lost() {
        for una in BASES {
            let sb = board(una, &[(at(una, 2), at(una, 3))]);
            assert_eq!(sb.next_seg(una, at(una, 10), MSS), None);
        }
    }

    #[test]
    fn pipe_counts_unsacked_not_lost_and_retransmitted_bytes() {
        for una in BASES {
            let nxt = at(una, 12);
            // Hole [0,2) lost (4 SACKed segments above), SACKed [2,6), tail [6,12).
            let sb = board(una, &[(at(una, 2), at(una, 6))]);
            assert_eq!(sb.pipe(una, nxt, una, MSS), 6 * MSS);
            // One segment of the hole retransmitted: in flight again.
            assert_eq!(sb.pipe(una, nxt, at(una, 1), MSS), 7 * MSS);
            // No SACK at all: everything is in flight.
            let empty = board(una, &[]);
            assert_eq!(empty.pipe(una, nxt, una, MSS), 12 * MSS);
            // A hole that is not lost counts as in flight.
            let one = board(una, &[(at(una, 2), at(una, 3))]);
            assert_eq!(one.pipe(una, nxt, una, MSS), 11 * MSS);
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
