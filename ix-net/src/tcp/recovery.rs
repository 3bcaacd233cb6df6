//! Loss detection of one sender: the record of every segment in flight with its
//! send times, RACK (RFC 8985) time-based loss marking, and Proportional Rate
//! Reduction (RFC 6937) of the window during recovery.

use std::collections::VecDeque;
use std::time::Duration;

use super::seq::SeqNum;
use crate::time::Instant;

/// How a SACK sender decides that a segment was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LossDetection {
    /// RACK-TLP (RFC 8985), as Linux: a segment is lost once a segment sent
    /// after it was delivered and a reordering window has passed; a tail loss
    /// probe after about two smoothed RTTs replaces the retransmission timeout
    /// for losses at the end of a flight.
    #[default]
    Rack,
    /// RFC 6675's DupThresh: a segment is lost once three segments above it
    /// were SACKed (or three duplicate ACKs arrived). No tail loss probe.
    DupThresh,
}

/// Loss recovery settings (see `docs/loss-recovery.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossConfig {
    /// How losses are detected on connections that negotiated SACK; without
    /// SACK a connection always uses duplicate ACKs (RFC 5681, RFC 6582).
    pub detection: LossDetection,
    /// Added to the tail loss probe timeout when a single segment is in
    /// flight, so that a peer delaying its ACK of that segment is not probed
    /// needlessly. RFC 8985 §7.2 calls it WCDelAckT and suggests 200 ms; Linux
    /// adds its RTO minimum (200 ms). Default [`TLP_ACK_DELAY_MICROS`]: a
    /// lost reply is probed within a millisecond of 2·SRTT rather than 200 ms.
    /// This is where each connection starts: every probe its peer reports
    /// as needless (a D-SACK of it) doubles the connection's allowance, up to
    /// [`TLP_ACK_DELAY_MAX_MICROS`].
    pub tlp_ack_delay: Duration,
}

/// Default [`LossConfig::tlp_ack_delay`].
pub const TLP_ACK_DELAY_MICROS: u64 = 500;
/// The most a connection's delayed-ACK allowance grows to: RFC 8985's
/// WCDelAckT, Linux's 200 ms.
pub const TLP_ACK_DELAY_MAX_MICROS: u64 = 200_000;
/// Added to the probe timeout when several segments are in flight: two timer
/// ticks, as Linux adds two jiffies (`TCP_TIMEOUT_MIN`).
pub const TLP_SLACK_MICROS: u64 = 2 * crate::timer::TICK_MICROS;
/// Segments the record holds before new ones are merged into the last one
/// (their send times then count as the later one's).
pub const SENT_LOG_MAX_SEGMENTS: usize = 8192;

impl Default for LossConfig {
    fn default() -> Self {
        Self { detection: LossDetection::Rack, tlp_ack_delay: Duration::from_micros(TLP_ACK_DELAY_MICROS) }
    }
}

/// One segment sent and not yet cumulatively acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentSegment {
    /// First sequence number.
    pub start: SeqNum,
    /// One past the last sequence number (SYN and FIN count).
    pub end: SeqNum,
    /// When the segment was first sent.
    pub first_sent_at: Instant,
    /// When it was last sent (RACK's `xmit_ts`).
    pub sent_at: Instant,
    /// Place of its last transmission among all of the connection's: orders
    /// transmissions within one clock reading (RACK orders those by sequence
    /// number, which puts a retransmission before the later segments sent
    /// at the same instant as it).
    pub order: u64,
    /// Whether it was ever sent more than once.
    pub retransmitted: bool,
    /// The peer reported holding it.
    pub sacked: bool,
    /// Deemed lost and not retransmitted since.
    pub lost: bool,
}

impl SentSegment {
    fn len(&self) -> usize {
        (self.end - self.start).max(0) as usize
    }

    /// Not delivered and still deemed in the network: what `pipe` counts.
    fn in_flight(&self) -> bool {
        !self.sacked && !self.lost
    }
}

/// What one ACK reported delivered, for RTT sampling and RACK.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delivery {
    /// Bytes newly acknowledged or newly SACKed (RFC 6937's DeliveredData).
    pub bytes: usize,
    /// The earliest first transmission among newly and cumulatively
    /// acknowledged segments that were not SACKed before, when none of those
    /// was retransmitted (Karn's rule).
    pub rtt_from: Option<Instant>,
    /// Whether a cumulatively acknowledged segment had been retransmitted.
    pub retransmission_acked: bool,
    /// Of the cumulatively acknowledged segments that were retransmitted, the
    /// one sent last: `(last sent, first sent)`. Timestamps can tell whether
    /// the ACK answers that last copy (RFC 7323 §4).
    pub last_retransmission: Option<(Instant, Instant)>,
    /// The most recently sent delivered segment: `(sent_at, order,
    /// retransmitted)`.
    pub latest: Option<(Instant, u64, bool)>,
    /// A segment never retransmitted was delivered below one delivered before
    /// it (RFC 8985 §6.2 step 3): the path reorders.
    pub reordered: bool,
}

impl Delivery {
    fn add(&mut self, seg: &SentSegment, fack: SeqNum) {
        self.bytes += seg.len();
        if !seg.retransmitted && seg.end < fack {
            self.reordered = true;
        }
        let later = match self.latest {
            None => true,
            Some((at, order, _)) => sent_after(seg.sent_at, seg.order, at, order),
        };
        if later {
            self.latest = Some((seg.sent_at, seg.order, seg.retransmitted));
        }
    }
}

/// RACK's ordering of transmissions (RFC 8985 §6.2 step 2,
/// `RACK_sent_after`): by time, then by the order they were sent in.
fn sent_after(t1: Instant, order1: u64, t2: Instant, order2: u64) -> bool {
    t1 > t2 || (t1 == t2 && order1 > order2)
}

/// Every segment in flight, lowest sequence first, with the pipe estimate kept
/// up to date (RFC 6675 SetPipe, counted as Linux does: sent, less SACKed,
/// less lost, plus lost ones retransmitted).
#[derive(Debug, Default)]
pub struct SentLog {
    segments: VecDeque<SentSegment>,
    in_flight_bytes: usize,
    /// One past the highest byte delivered (RACK's `fack`).
    fack: SeqNum,
    /// The next transmission's [`SentSegment::order`].
    next_order: u64,
}

impl SentLog {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes deemed in the network.
    pub fn pipe(&self) -> usize {
        self.in_flight_bytes
    }

    /// The segments, lowest first.
    pub fn segments(&self) -> impl Iterator<Item = &SentSegment> {
        self.segments.iter()
    }

    /// Whether a segment is deemed lost and waits for its retransmission.
    pub fn has_lost(&self) -> bool {
        self.segments.iter().any(|s| s.lost)
    }

    /// The first segment deemed lost, not SACKed, and not retransmitted since:
    /// `(start, end)`.
    pub fn first_lost(&self) -> Option<(SeqNum, SeqNum)> {
        self.segments.iter().find(|s| s.lost && !s.sacked).map(|s| (s.start, s.end))
    }

    /// The highest segment sent (for a tail loss probe).
    pub fn last(&self) -> Option<(SeqNum, SeqNum)> {
        self.segments.back().map(|s| (s.start, s.end))
    }

    /// Forgets everything (the connection starts over or closes).
    pub fn clear(&mut self) {
        self.segments.clear();
        self.in_flight_bytes = 0;
    }

    /// Records that `[start, end)` went out at `now`: new data is appended, a
    /// retransmission updates the segments it covers (split at its edges).
    pub fn on_send(&mut self, start: SeqNum, end: SeqNum, now: Instant) {
        if end <= start {
            return;
        }
        let appended = self.segments.back().is_none_or(|last| start >= last.end);
        if appended {
            self.append(start, end, now);
            return;
        }
        let order = self.next_order;
        self.split_at(start);
        self.split_at(end);
        let first = self.segments.partition_point(|s| s.end <= start);
        for seg in self.segments.range_mut(first..) {
            if seg.start >= end {
                break;
            }
            if !seg.in_flight() && !seg.sacked {
                self.in_flight_bytes += seg.len();
            }
            seg.lost = false;
            seg.retransmitted = true;
            seg.sent_at = now;
            seg.order = order;
        }
        self.next_order += 1;
        if let Some(last) = self.segments.back() {
            if end > last.end {
                let from = last.end;
                self.append(from, end, now);
            }
        }
    }

    fn append(&mut self, start: SeqNum, end: SeqNum, now: Instant) {
        let len = (end - start) as usize;
        self.in_flight_bytes += len;
        let order = self.next_order;
        self.next_order += 1;
        if self.segments.len() >= SENT_LOG_MAX_SEGMENTS {
            if let Some(last) = self.segments.back_mut().filter(|l| l.in_flight() && l.end == start) {
                last.end = end;
                last.sent_at = now;
                last.order = order;
                return;
            }
        }
        self.segments.push_back(SentSegment {
            start,
            end,
            first_sent_at: now,
            sent_at: now,
            order,
            retransmitted: false,
            sacked: false,
            lost: false,
        });
    }

    /// Makes `seq` a segment boundary if it falls inside one.
    fn split_at(&mut self, seq: SeqNum) {
        let i = self.segments.partition_point(|s| s.end <= seq);
        let Some(seg) = self.segments.get_mut(i) else { return };
        if seg.start < seq && seq < seg.end {
            let mut upper = *seg;
            seg.end = seq;
            upper.start = seq;
            self.segments.insert(i + 1, upper);
        }
    }

    /// The cumulative ACK moved to `ack`: drops the segments below it and
    /// reports what was newly delivered.
    pub fn on_cumulative_ack(&mut self, ack: SeqNum, delivery: &mut Delivery) {
        let mut rtt_from: Option<Instant> = None;
        while let Some(seg) = self.segments.front_mut() {
            if seg.start >= ack {
                break;
            }
            let whole = seg.end <= ack;
            let mut part = *seg;
            if !whole {
                part.end = ack;
                seg.start = ack;
            }
            if part.in_flight() {
                self.in_flight_bytes -= part.len();
            }
            if !part.sacked {
                delivery.retransmission_acked |= part.retransmitted;
                if part.retransmitted && delivery.last_retransmission.is_none_or(|(at, _)| part.sent_at > at) {
                    delivery.last_retransmission = Some((part.sent_at, part.first_sent_at));
                }
                if !part.retransmitted {
                    rtt_from = Some(rtt_from.map_or(part.first_sent_at, |t| t.min(part.first_sent_at)));
                }
                delivery.add(&part, self.fack);
            }
            if whole {
                self.segments.pop_front();
            } else {
                break;
            }
        }
        if !delivery.retransmission_acked {
            delivery.rtt_from = rtt_from;
        }
        self.fack = self.fack.max(ack);
    }

    /// A SACK block `[start, end)` (validated by the caller): marks the
    /// segments inside it and reports what was newly delivered.
    pub fn on_sack_block(&mut self, start: SeqNum, end: SeqNum, delivery: &mut Delivery) {
        let first = self.segments.partition_point(|s| s.end <= start);
        let mut high = self.fack;
        for seg in self.segments.range_mut(first..) {
            if seg.start >= end {
                break;
            }
            if seg.sacked || seg.start < start || seg.end > end {
                continue;
            }
            if seg.in_flight() {
                self.in_flight_bytes -= seg.len();
            }
            seg.sacked = true;
            seg.lost = false;
            delivery.add(seg, self.fack);
            high = high.max(seg.end);
        }
        self.fack = high;
    }

    /// A retransmission timeout: every segment not SACKed is deemed lost, so
    /// the pipe is empty and the go-back retransmissions refill it.
    pub fn mark_all_lost(&mut self) {
        for seg in self.segments.iter_mut().filter(|s| !s.sacked) {
            seg.lost = true;
        }
        self.in_flight_bytes = 0;
    }

    /// Undoes [`mark_all_lost`](Self::mark_all_lost) after a spurious timeout:
    /// segments marked but not retransmitted are in flight again.
    pub fn unmark_lost(&mut self) {
        for seg in self.segments.iter_mut().filter(|s| s.lost) {
            seg.lost = false;
            self.in_flight_bytes += seg.len();
        }
    }

    /// RFC 6675 IsLost over the record: marks lost each segment with at least
    /// `dup_thresh` SACKed segments above it. Returns the segments marked.
    pub fn mark_lost_by_count(&mut self, dup_thresh: usize) -> u32 {
        let mut sacked_above = 0;
        let mut marked = 0;
        for seg in self.segments.iter_mut().rev() {
            if seg.sacked {
                sacked_above += 1;
            } else if sacked_above >= dup_thresh && !seg.lost && !seg.retransmitted {
                seg.lost = true;
                self.in_flight_bytes -= seg.len();
                marked += 1;
            }
        }
        marked
    }

    /// Marks the first segment lost (the third duplicate ACK).
    pub fn mark_first_lost(&mut self) -> bool {
        match self.segments.front_mut() {
            Some(seg) if seg.in_flight() => {
                seg.lost = true;
                self.in_flight_bytes -= seg.len();
                true
            }
            _ => false,
        }
    }
}

/// RACK's state (RFC 8985 §6): the most recently sent segment known
/// delivered, the RTT measured on it, and the reordering window.
#[derive(Debug, Clone, Default)]
pub struct Rack {
    /// `RACK.xmit_ts` and the transmission's order (in place of
    /// `RACK.end_seq`), once a segment was delivered.
    latest: Option<(Instant, u64)>,
    /// `RACK.rtt`: the RTT of that segment's last transmission.
    rtt: Duration,
    /// The smallest RTT seen (RACK.min_RTT; not windowed: a route that gets
    /// slower only widens the window less than it could).
    min_rtt: Option<Duration>,
    reordering_seen: bool,
    /// RFC 8985 §6.2 step 4: the window grows by min_RTT/4 per round trip in
    /// which a D-SACK showed a needless retransmission, and falls back after
    /// 16 recoveries without one.
    reo_wnd_mult: u32,
    reo_wnd_persist: u32,
    dsack_round: Option<SeqNum>,
}

/// Recoveries after which a widened reordering window returns to its base.
const REO_WND_PERSIST_RECOVERIES: u32 = 16;

impl Rack {
    /// Takes what an ACK delivered (RFC 8985 §6.2 steps 2 and 3). A
    /// retransmitted segment delivered sooner than the smallest RTT allows
    /// answers its first copy, and gives no time.
    pub fn on_delivery(&mut self, delivery: &Delivery, now: Instant) {
        self.reordering_seen |= delivery.reordered;
        let Some((sent_at, order, retransmitted)) = delivery.latest else { return };
        let rtt = now.saturating_duration_since(sent_at);
        if retransmitted && self.min_rtt.is_some_and(|min| rtt < min) {
            return;
        }
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        let later = self.latest.is_none_or(|(at, seen)| sent_after(sent_at, order, at, seen));
        if later {
            self.latest = Some((sent_at, order));
            self.rtt = rtt;
        }
    }

    /// A D-SACK arrived; `snd_nxt` marks the round trip it belongs to (RFC
    /// 8985 §6.2 step 4).
    pub fn on_dsack(&mut self, snd_una: SeqNum, snd_nxt: SeqNum) {
        if self.dsack_round.is_some_and(|round| snd_una >= round) {
            self.dsack_round = None;
        }
        if self.dsack_round.is_none() {
            self.dsack_round = Some(snd_nxt);
            self.reo_wnd_mult += 1;
            self.reo_wnd_persist = REO_WND_PERSIST_RECOVERIES;
        }
    }

    /// A recovery ended (RFC 8985 §6.2 step 4).
    pub fn on_recovery_exit(&mut self) {
        if self.reo_wnd_persist > 0 {
            self.reo_wnd_persist -= 1;
            if self.reo_wnd_persist == 0 {
                self.reo_wnd_mult = 0;
            }
        }
    }

    /// The reordering window (RFC 8985 §6.2 step 4): zero until the path was
    /// seen to reorder while recovering (so losses are marked at once), else
    /// min_RTT/4 times the D-SACK multiplier, never more than `srtt`.
    pub fn reo_wnd(&self, in_recovery: bool, srtt: Duration) -> Duration {
        if !self.reordering_seen && in_recovery {
            return Duration::ZERO;
        }
        let base = self.min_rtt.unwrap_or_default() / 4;
        (base * self.reo_wnd_mult.max(1)).min(srtt)
    }

    /// RFC 8985 §6.2 step 5: marks lost every segment sent before the latest
    /// delivered one by more than its RTT plus `reo_wnd`. Returns the segments
    /// marked, and when the next one would be due (the reordering timer).
    pub fn detect_loss(&self, log: &mut SentLog, reo_wnd: Duration, now: Instant) -> (u32, Option<Instant>) {
        let Some((xmit_ts, xmit_order)) = self.latest else { return (0, None) };
        let mut marked = 0;
        let mut next: Option<Instant> = None;
        for seg in log.segments.iter_mut() {
            if !sent_after(xmit_ts, xmit_order, seg.sent_at, seg.order) {
                if seg.retransmitted {
                    continue;
                }
                // Segments above, never retransmitted, were sent later still.
                break;
            }
            if seg.sacked || seg.lost {
                continue;
            }
            let due = seg.sent_at + self.rtt + reo_wnd;
            if due <= now {
                seg.lost = true;
                log.in_flight_bytes -= seg.len();
                marked += 1;
            } else {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        (marked, next)
    }
}

/// Proportional Rate Reduction (RFC 6937): how much a sender in recovery may
/// send on each ACK, so the window falls smoothly to `ssthresh` instead of in
/// one step, and rises back to it by slow start if losses emptied the pipe.
#[derive(Debug, Clone, Default)]
pub struct Prr {
    /// RecoverFS: bytes in flight when recovery began.
    recover_fs: usize,
    /// prr_delivered: bytes delivered since recovery began.
    delivered: usize,
    /// prr_out: bytes sent since recovery began.
    out: usize,
    /// What may still be sent before the next ACK.
    budget: usize,
}

impl Prr {
    /// Recovery begins with `flight` bytes outstanding.
    pub fn start(&mut self, flight: usize) {
        *self = Prr { recover_fs: flight.max(1), ..Prr::default() };
    }

    /// An ACK in recovery delivered `delivered` bytes, leaving `pipe` in
    /// flight; `ssthresh` is the target window (RFC 6937 §3, with the
    /// slow-start reduction bound).
    pub fn on_ack(&mut self, delivered: usize, pipe: usize, ssthresh: usize, mss: usize) {
        self.delivered += delivered;
        let sndcnt = if pipe > ssthresh {
            let target = (self.delivered as u128 * ssthresh as u128).div_ceil(self.recover_fs as u128);
            (target as usize).saturating_sub(self.out)
        } else {
            let limit = self.delivered.saturating_sub(self.out).max(delivered) + mss;
            (ssthresh - pipe).min(limit)
        };
        // The first ACK of a recovery always lets the fast retransmit out.
        self.budget = if self.out == 0 { sndcnt.max(mss) } else { sndcnt };
    }

    /// Whether a segment may go out now.
    pub fn may_send(&self) -> bool {
        self.budget > 0
    }

    /// A segment of `len` bytes went out in recovery.
    pub fn on_sent(&mut self, len: usize) {
        self.out += len;
        self.budget = self.budget.saturating_sub(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: u32) -> SeqNum {
        SeqNum(n)
    }

    fn at(micros: u64) -> Instant {
        Instant::from_micros(micros)
    }

    /// Ten segments of 100 bytes sent 10 us apart from time 0.
    fn flight() -> SentLog {
        let mut log = SentLog::new();
        for i in 0..10 {
            log.on_send(seq(i * 100), seq(i * 100 + 100), at(u64::from(i) * 10));
        }
        log
    }

    #[test]
    fn pipe_counts_sent_less_sacked_and_lost_plus_retransmitted() {
        let mut log = flight();
        assert_eq!(log.pipe(), 1000);
        let mut d = Delivery::default();
        log.on_sack_block(seq(300), seq(500), &mut d);
        assert_eq!((d.bytes, log.pipe()), (200, 800));
        assert_eq!(log.mark_lost_by_count(2), 3);
        assert_eq!(log.pipe(), 500);
        log.on_send(seq(0), seq(100), at(500));
        assert_eq!(log.pipe(), 600);
        assert_eq!(log.first_lost(), Some((seq(100), seq(200))));
    }

    #[test]
    fn karn_no_rtt_from_a_retransmission_and_the_earliest_send_otherwise() {
        let mut log = flight();
        let mut d = Delivery::default();
        log.on_cumulative_ack(seq(300), &mut d);
        assert_eq!(d.rtt_from, Some(at(0)));
        log.on_send(seq(300), seq(400), at(900));
        let mut d = Delivery::default();
        log.on_cumulative_ack(seq(500), &mut d);
        assert_eq!((d.rtt_from, d.retransmission_acked), (None, true));
    }

    #[test]
    fn a_retransmission_shorter_than_the_segment_splits_it() {
        let mut log = flight();
        log.mark_all_lost();
        log.on_send(seq(0), seq(60), at(100));
        assert_eq!(log.pipe(), 60);
        assert_eq!(log.first_lost(), Some((seq(60), seq(100))));
    }

    #[test]
    fn rack_marks_segments_sent_before_a_delivered_one_after_rtt_plus_window() {
        let mut log = flight();
        let mut rack = Rack::default();
        // Segment 5 (sent at 50 us) is SACKed at 150 us: RACK.rtt = 100 us.
        let mut d = Delivery::default();
        log.on_sack_block(seq(500), seq(600), &mut d);
        rack.on_delivery(&d, at(150));
        // Segments 0..5 were sent at 0..40 us: due at 100..140 + window.
        let (marked, next) = rack.detect_loss(&mut log, Duration::from_micros(25), at(150));
        assert_eq!(marked, 3);
        assert_eq!(next, Some(at(30 + 100 + 25)));
        let (marked, next) = rack.detect_loss(&mut log, Duration::from_micros(25), at(165));
        assert_eq!((marked, next), (2, None));
    }

    #[test]
    fn a_lost_retransmission_is_marked_again() {
        let mut log = flight();
        let mut rack = Rack::default();
        log.mark_all_lost();
        log.on_send(seq(0), seq(100), at(200));
        log.on_send(seq(1000), seq(1100), at(210));
        let mut d = Delivery::default();
        log.on_sack_block(seq(1000), seq(1100), &mut d);
        rack.on_delivery(&d, at(310));
        assert_eq!(rack.detect_loss(&mut log, Duration::ZERO, at(310)).0, 1);
        assert_eq!(log.first_lost(), Some((seq(0), seq(100))));
    }

    #[test]
    fn reordering_window_is_zero_in_recovery_until_reordering_is_seen() {
        let mut rack = Rack { min_rtt: Some(Duration::from_micros(400)), ..Rack::default() };
        let srtt = Duration::from_millis(1);
        assert_eq!(rack.reo_wnd(true, srtt), Duration::ZERO);
        assert_eq!(rack.reo_wnd(false, srtt), Duration::from_micros(100));
        rack.on_dsack(seq(0), seq(1000));
        rack.on_dsack(seq(500), seq(2000));
        assert_eq!(rack.reo_wnd(false, srtt), Duration::from_micros(100), "one step per round trip");
        rack.on_dsack(seq(1000), seq(3000));
        assert_eq!(rack.reo_wnd(false, srtt), Duration::from_micros(200));
    }

    #[test]
    fn prr_sends_in_proportion_then_slow_starts_back_to_ssthresh() {
        let mut prr = Prr::default();
        prr.start(10_000);
        // Pipe above ssthresh (7000): 7/10 of what is delivered.
        // The first ACK lets a whole segment out (the fast retransmit).
        prr.on_ack(1000, 8000, 7000, 1000);
        assert_eq!(prr.budget, 1000);
        prr.on_sent(1000);
        assert!(!prr.may_send());
        // Pipe above ssthresh (7000): 7/10 of what is delivered in all.
        prr.on_ack(1000, 7500, 7000, 1000);
        assert_eq!(prr.budget, 400);
        prr.on_sent(1000);
        // Pipe far below ssthresh: bounded by delivered + one MSS.
        prr.on_ack(1000, 2000, 7000, 1000);
        assert_eq!(prr.budget, 2000);
    }
}
