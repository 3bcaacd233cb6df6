//! Congestion control: how many bytes a TCP sender may keep in flight, grown on
//! ACKs and cut on loss. CUBIC (RFC 9438, the default) and NewReno (RFC 5681,
//! RFC 6582) behind one enum, so the connection dispatches without `dyn`.

mod cubic;
mod newreno;

pub use cubic::Cubic;
pub use newreno::NewReno;

/// The most an initial window may be in bytes, whatever the MSS (RFC 6928).
pub const INITIAL_WINDOW_MAX_BYTES: u32 = 14_600;
/// Segments in the initial window when the MSS is small (RFC 6928).
pub const INITIAL_WINDOW_SEGMENTS: u32 = 10;
/// Appropriate byte counting limit L, in segments: an ACK grows the window in
/// slow start by at most this many MSS, whatever it acknowledges (RFC 3465).
pub const ABC_LIMIT_SEGMENTS: u32 = 2;

/// Which algorithm a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CongestionAlgorithm {
    /// CUBIC, RFC 9438: the default of Linux, Windows and Apple stacks.
    #[default]
    Cubic,
    /// NewReno, RFC 5681 and RFC 6582: additive increase of one MSS per window.
    NewReno,
}

/// The congestion window of one connection, in bytes.
///
/// The connection calls [`on_ack`](Self::on_ack) for new data acknowledged
/// outside loss recovery, [`on_congestion_event`](Self::on_congestion_event)
/// when fast retransmit starts a recovery, [`on_recovery_exit`](Self::on_recovery_exit)
/// when the recovery point is acknowledged, and
/// [`on_retransmit_timeout`](Self::on_retransmit_timeout) when the RTO fires.
///
/// A congestion event sets `cwnd = ssthresh` at once; a SACK sender then paces
/// its recovery by Proportional Rate Reduction over the pipe (RFC 6937,
/// `tcp/recovery.rs`), not by this window, and a sender without SACK can
/// emulate RFC 6582's window inflation with
/// [`inflate_in_recovery`](Self::inflate_in_recovery), undone on exit.
///
/// Both algorithms stop growing the window while the sender is application
/// limited: an ACK grows `cwnd` only while `cwnd < 2 × bytes_in_flight`, and
/// never past that bound (a simple form of RFC 7661's rule that a window the
/// sender does not use is not validated).
///
/// Time is the caller's clock in microseconds. CUBIC reads it only on ACKs
/// (its epoch starts at the first ACK after a loss); `new`, the congestion
/// event and the timeout take `now_micros` too so that the connection's calls
/// stay the same for algorithms that time those events.
#[derive(Debug, Clone)]
pub enum CongestionControl {
    /// CUBIC state.
    Cubic(Cubic),
    /// NewReno state.
    NewReno(NewReno),
}

impl CongestionControl {
    /// A fresh window for a new connection: the RFC 6928 initial window and an
    /// unbounded slow start threshold.
    ///
    /// # Panics
    /// If `mss` is 0.
    pub fn new(algorithm: CongestionAlgorithm, mss: u32, now_micros: u64) -> Self {
        let _ = now_micros; // see the type's note on time
        match algorithm {
            CongestionAlgorithm::Cubic => Self::Cubic(Cubic::new(mss)),
            CongestionAlgorithm::NewReno => Self::NewReno(NewReno::new(mss)),
        }
    }

    /// The algorithm in use.
    pub fn algorithm(&self) -> CongestionAlgorithm {
        match self {
            Self::Cubic(_) => CongestionAlgorithm::Cubic,
            Self::NewReno(_) => CongestionAlgorithm::NewReno,
        }
    }

    /// The congestion window in bytes.
    pub fn cwnd(&self) -> u32 {
        self.window().cwnd
    }

    /// The slow start threshold in bytes (`u32::MAX` until the first loss).
    pub fn ssthresh(&self) -> u32 {
        self.window().ssthresh
    }

    /// The sender's maximum segment size in bytes.
    pub fn mss(&self) -> u32 {
        self.window().mss
    }

    /// Whether the window is below the slow start threshold.
    pub fn in_slow_start(&self) -> bool {
        self.window().in_slow_start()
    }

    /// New data was acknowledged outside loss recovery: grows the window by slow
    /// start or congestion avoidance.
    ///
    /// `bytes_in_flight` is what was in flight when the ACK arrived, the bytes
    /// it acknowledges included; `rtt_micros` is the connection's current
    /// smoothed RTT when it has one (CUBIC keeps the last one given).
    pub fn on_ack(&mut self, now_micros: u64, bytes_acked: u32, rtt_micros: Option<u64>, bytes_in_flight: u32) {
        match self {
            Self::Cubic(c) => c.on_ack(now_micros, bytes_acked, rtt_micros, bytes_in_flight),
            Self::NewReno(r) => r.on_ack(bytes_acked, bytes_in_flight),
        }
    }

    /// Fast retransmit started a loss recovery: lowers `ssthresh` and sets
    /// `cwnd` to it. Call once per recovery, not for further losses in it.
    pub fn on_congestion_event(&mut self, now_micros: u64, bytes_in_flight: u32) {
        let _ = now_micros; // see the type's note on time
        match self {
            Self::Cubic(c) => c.on_congestion_event(bytes_in_flight),
            Self::NewReno(r) => r.on_congestion_event(bytes_in_flight),
        }
    }

    /// Adds `bytes` to the window during a recovery without SACK (RFC 6582
    /// step 3: three MSS on entry, one per further duplicate ACK).
    pub fn inflate_in_recovery(&mut self, bytes: u32) {
        let window = self.window_mut();
        window.cwnd = window.cwnd.saturating_add(bytes);
    }

    /// The recovery ended: deflates the window to `ssthresh`.
    pub fn on_recovery_exit(&mut self) {
        let window = self.window_mut();
        window.cwnd = window.ssthresh;
    }

    /// The retransmission timer fired: `ssthresh` from the flight, `cwnd` to
    /// one MSS (the loss window of RFC 5681), back to slow start.
    pub fn on_retransmit_timeout(&mut self, now_micros: u64, bytes_in_flight: u32) {
        let _ = now_micros; // see the type's note on time
        match self {
            Self::Cubic(c) => c.on_retransmit_timeout(bytes_in_flight),
            Self::NewReno(r) => r.on_retransmit_timeout(bytes_in_flight),
        }
    }

    fn window(&self) -> &Window {
        match self {
            Self::Cubic(c) => &c.window,
            Self::NewReno(r) => &r.window,
        }
    }

    fn window_mut(&mut self) -> &mut Window {
        match self {
            Self::Cubic(c) => &mut c.window,
            Self::NewReno(r) => &mut r.window,
        }
    }
}

/// What both algorithms share: the window, the threshold, slow start and the
/// application-limited rule.
#[derive(Debug, Clone)]
struct Window {
    mss: u32,
    cwnd: u32,
    ssthresh: u32,
}

impl Window {
    fn new(mss: u32) -> Self {
        assert!(mss > 0, "congestion control needs a non-zero MSS");
        Self { mss, cwnd: initial_window_bytes(mss), ssthresh: u32::MAX }
    }

    fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    /// The most the window may reach given what the sender had in flight.
    fn flight_cap(bytes_in_flight: u32) -> u32 {
        bytes_in_flight.saturating_mul(2)
    }

    /// Whether the sender is using too little of its window for it to grow.
    fn is_app_limited(&self, bytes_in_flight: u32) -> bool {
        self.cwnd >= Self::flight_cap(bytes_in_flight)
    }

    /// Slow start with appropriate byte counting (RFC 3465, L = 2 MSS), never
    /// past `ssthresh`. Returns the acknowledged bytes slow start did not use,
    /// for congestion avoidance.
    fn slow_start(&mut self, bytes_acked: u32) -> u32 {
        if !self.in_slow_start() {
            return bytes_acked;
        }
        let growth = bytes_acked.min(self.mss.saturating_mul(ABC_LIMIT_SEGMENTS));
        let room = self.ssthresh - self.cwnd;
        if growth < room {
            self.cwnd += growth;
            0
        } else {
            self.cwnd = self.ssthresh;
            bytes_acked - room.min(bytes_acked)
        }
    }

    /// Keeps growth within what the flight justifies.
    fn limit_to_flight(&mut self, bytes_in_flight: u32) {
        self.cwnd = self.cwnd.min(Self::flight_cap(bytes_in_flight).max(self.mss));
    }

    /// The floor every reduction respects: two segments.
    fn min_ssthresh(&self) -> u32 {
        self.mss.saturating_mul(2)
    }

    /// A loss detected by fast retransmit: `cwnd = ssthresh`.
    fn reduce_to(&mut self, ssthresh: u32) {
        self.ssthresh = ssthresh.max(self.min_ssthresh());
        self.cwnd = self.ssthresh;
    }

    /// A retransmission timeout: `cwnd` is the one-segment loss window.
    fn collapse_to_loss_window(&mut self, ssthresh: u32) {
        self.ssthresh = ssthresh.max(self.min_ssthresh());
        self.cwnd = self.mss;
    }
}

/// RFC 6928: min(10 × MSS, max(2 × MSS, 14600 bytes)).
fn initial_window_bytes(mss: u32) -> u32 {
    let ten = mss.saturating_mul(INITIAL_WINDOW_SEGMENTS);
    let two = mss.saturating_mul(2);
    ten.min(two.max(INITIAL_WINDOW_MAX_BYTES))
}

/// A test driver: acknowledges a whole window per round trip, one ACK per
/// `ack_bytes`, with time spread evenly over the round trip.
#[cfg(test)]
pub(crate) mod sim {
    use super::CongestionControl;
    use std::time::Duration;

    /// Runs one round trip starting at `now_micros`; returns the time after it.
    pub fn round(cc: &mut CongestionControl, now_micros: u64, rtt: Duration, ack_bytes: u32) -> u64 {
        let flight = cc.cwnd();
        let acks = flight.div_ceil(ack_bytes).max(1);
        let rtt_micros = rtt.as_micros() as u64;
        let mut left = flight;
        for i in 1..=acks {
            let bytes = left.min(ack_bytes);
            left -= bytes;
            let at = now_micros + rtt_micros * u64::from(i) / u64::from(acks);
            cc.on_ack(at, bytes, Some(rtt_micros), cc.cwnd());
        }
        now_micros + rtt_micros
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MSS: u32 = 1000;
    const RTT: Duration = Duration::from_millis(10);

    fn both() -> [CongestionControl; 2] {
        [
            CongestionControl::new(CongestionAlgorithm::Cubic, MSS, 0),
            CongestionControl::new(CongestionAlgorithm::NewReno, MSS, 0),
        ]
    }

    #[test]
    fn default_algorithm_is_cubic() {
        assert_eq!(CongestionAlgorithm::default(), CongestionAlgorithm::Cubic);
        let cc = CongestionControl::new(CongestionAlgorithm::default(), MSS, 0);
        assert_eq!(cc.algorithm(), CongestionAlgorithm::Cubic);
    }

    #[test]
    fn initial_window_follows_rfc_6928() {
        assert_eq!(initial_window_bytes(1000), 10_000);
        assert_eq!(initial_window_bytes(1460), 14_600);
        assert_eq!(initial_window_bytes(9000), 18_000);
        for cc in both() {
            assert_eq!(cc.cwnd(), 10 * MSS);
            assert_eq!(cc.ssthresh(), u32::MAX);
            assert!(cc.in_slow_start());
        }
    }

    #[test]
    fn slow_start_doubles_each_round_trip() {
        for mut cc in both() {
            let mut now = 0;
            for _ in 0..5 {
                let before = cc.cwnd();
                now = sim::round(&mut cc, now, RTT, MSS);
                assert_eq!(cc.cwnd(), 2 * before, "{:?}", cc.algorithm());
            }
        }
    }

    #[test]
    fn slow_start_doubles_with_delayed_acks_too() {
        for mut cc in both() {
            let before = cc.cwnd();
            sim::round(&mut cc, 0, RTT, 2 * MSS);
            assert_eq!(cc.cwnd(), 2 * before);
        }
    }

    #[test]
    fn stretch_ack_counts_at_most_two_segments() {
        for mut cc in both() {
            let before = cc.cwnd();
            cc.on_ack(1, 5 * MSS, Some(RTT.as_micros() as u64), before);
            assert_eq!(cc.cwnd(), before + ABC_LIMIT_SEGMENTS * MSS);
        }
    }

    #[test]
    fn slow_start_stops_at_ssthresh() {
        let mut cc = CongestionControl::new(CongestionAlgorithm::NewReno, MSS, 0);
        cc.on_retransmit_timeout(0, 8 * MSS);
        assert_eq!(cc.ssthresh(), 4 * MSS);
        for i in 0..3 {
            cc.on_ack(i, MSS, None, 4 * MSS);
        }
        assert_eq!(cc.cwnd(), 4 * MSS);
        assert!(!cc.in_slow_start());
    }

    #[test]
    fn app_limited_sender_does_not_grow() {
        for mut cc in both() {
            let before = cc.cwnd();
            // Only two segments in flight out of a ten-segment window.
            for i in 0..20 {
                cc.on_ack(i, MSS, Some(RTT.as_micros() as u64), 2 * MSS);
            }
            assert_eq!(cc.cwnd(), before, "{:?}", cc.algorithm());
            // Six in flight: growth allowed, but not past twice the flight.
            for i in 20..40 {
                cc.on_ack(i, MSS, Some(RTT.as_micros() as u64), 6 * MSS);
            }
            assert_eq!(cc.cwnd(), 12 * MSS, "{:?}", cc.algorithm());
        }
    }

    #[test]
    fn recovery_inflation_is_undone_on_exit() {
        for mut cc in both() {
            cc.on_congestion_event(0, 20 * MSS);
            let ssthresh = cc.ssthresh();
            assert_eq!(cc.cwnd(), ssthresh);
            cc.inflate_in_recovery(3 * MSS);
            cc.inflate_in_recovery(MSS);
            assert_eq!(cc.cwnd(), ssthresh + 4 * MSS);
            cc.on_recovery_exit();
            assert_eq!(cc.cwnd(), ssthresh);
        }
    }

    #[test]
    fn retransmit_timeout_collapses_to_one_segment() {
        for mut cc in both() {
            cc.on_retransmit_timeout(0, 30 * MSS);
            assert_eq!(cc.cwnd(), MSS);
            assert!(cc.ssthresh() >= 2 * MSS);
            assert!(cc.in_slow_start());
        }
    }

    #[test]
    fn reductions_never_go_below_two_segments() {
        for mut cc in both() {
            cc.on_congestion_event(0, MSS);
            assert_eq!(cc.ssthresh(), 2 * MSS);
            assert_eq!(cc.cwnd(), 2 * MSS);
        }
    }
}
