//! NewReno congestion control (RFC 5681, RFC 6582): slow start, then one MSS of
//! growth per window of acknowledged bytes, and half the flight on loss.

use super::Window;

/// NewReno's state: the shared window plus the bytes acknowledged towards the
/// next one-MSS step of congestion avoidance.
#[derive(Debug, Clone)]
pub struct NewReno {
    pub(super) window: Window,
    /// Bytes acknowledged in congestion avoidance since the last increase
    /// (RFC 5681 §3.1, byte counting).
    avoidance_acked_bytes: u32,
}

impl NewReno {
    /// A fresh NewReno window (RFC 6928 initial window).
    ///
    /// # Panics
    /// If `mss` is 0.
    pub fn new(mss: u32) -> Self {
        Self { window: Window::new(mss), avoidance_acked_bytes: 0 }
    }

    /// The congestion window in bytes.
    pub fn cwnd(&self) -> u32 {
        self.window.cwnd
    }

    /// The slow start threshold in bytes.
    pub fn ssthresh(&self) -> u32 {
        self.window.ssthresh
    }

    /// New data acknowledged outside recovery; see
    /// [`CongestionControl::on_ack`](super::CongestionControl::on_ack).
    pub fn on_ack(&mut self, bytes_acked: u32, bytes_in_flight: u32) {
        if self.window.is_app_limited(bytes_in_flight) {
            return;
        }
        let left = self.window.slow_start(bytes_acked);
        if left > 0 {
            self.congestion_avoidance(left);
        }
        self.window.limit_to_flight(bytes_in_flight);
    }

    /// One MSS per `cwnd` bytes acknowledged, at most one step per ACK.
    fn congestion_avoidance(&mut self, bytes_acked: u32) {
        self.avoidance_acked_bytes = self.avoidance_acked_bytes.saturating_add(bytes_acked);
        if self.avoidance_acked_bytes >= self.window.cwnd {
            self.avoidance_acked_bytes -= self.window.cwnd;
            self.window.cwnd = self.window.cwnd.saturating_add(self.window.mss);
        }
    }

    /// Fast retransmit: `ssthresh = max(flight / 2, 2 × MSS)`, `cwnd = ssthresh`.
    pub fn on_congestion_event(&mut self, bytes_in_flight: u32) {
        self.window.reduce_to(bytes_in_flight / 2);
        self.avoidance_acked_bytes = 0;
    }

    /// Retransmission timeout: `ssthresh = max(flight / 2, 2 × MSS)`, `cwnd = MSS`.
    pub fn on_retransmit_timeout(&mut self, bytes_in_flight: u32) {
        self.window.collapse_to_loss_window(bytes_in_flight / 2);
        self.avoidance_acked_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CongestionAlgorithm, CongestionControl, sim};
    use std::time::Duration;

    const MSS: u32 = 1460;
    const RTT: Duration = Duration::from_millis(20);

    fn after_loss(flight: u32) -> CongestionControl {
        let mut cc = CongestionControl::new(CongestionAlgorithm::NewReno, MSS, 0);
        cc.on_congestion_event(0, flight);
        cc.on_recovery_exit();
        cc
    }

    #[test]
    fn loss_halves_the_flight() {
        let cc = after_loss(40 * MSS);
        assert_eq!(cc.ssthresh(), 20 * MSS);
        assert_eq!(cc.cwnd(), 20 * MSS);
    }

    #[test]
    fn avoidance_adds_one_segment_per_window() {
        let mut cc = after_loss(40 * MSS);
        let mut now = 0;
        for round in 1..=10 {
            now = sim::round(&mut cc, now, RTT, MSS);
            assert_eq!(cc.cwnd(), (20 + round) * MSS, "round {round}");
        }
    }

    #[test]
    fn avoidance_counts_bytes_not_acks() {
        // Delayed ACKs (two segments each) grow the window exactly as fast.
        let mut cc = after_loss(40 * MSS);
        let mut now = 0;
        for _ in 0..6 {
            now = sim::round(&mut cc, now, RTT, 2 * MSS);
        }
        assert_eq!(cc.cwnd(), 26 * MSS);
    }

    #[test]
    fn avoidance_needs_a_full_window_of_bytes() {
        let mut cc = after_loss(40 * MSS);
        for i in 0..19 {
            cc.on_ack(i, MSS, None, 20 * MSS);
        }
        assert_eq!(cc.cwnd(), 20 * MSS);
        cc.on_ack(20, MSS, None, 20 * MSS);
        assert_eq!(cc.cwnd(), 21 * MSS);
    }

    #[test]
    fn timeout_takes_ssthresh_from_the_flight() {
        let mut cc = CongestionControl::new(CongestionAlgorithm::NewReno, MSS, 0);
        cc.on_retransmit_timeout(0, 30 * MSS);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (MSS, 15 * MSS));
    }
}
