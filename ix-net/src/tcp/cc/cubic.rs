//! CUBIC congestion control (RFC 9438): after a loss the window follows a cubic
//! curve of the time since the loss, concave up to the old maximum W_max and
//! convex past it, never slower than the Reno-friendly estimate W_est.

use super::Window;

/// β_cubic = 7/10, the multiplicative decrease factor (RFC 9438 §4.6).
const BETA_NUM: u64 = 7;
const BETA_DEN: u64 = 10;
/// (1 + β_cubic) / 2 = 17/20, the fast convergence factor (RFC 9438 §4.7).
const CONVERGE_NUM: u64 = 17;
const CONVERGE_DEN: u64 = 20;
/// α_cubic = 3 (1 − β) / (1 + β) = 9/17 (RFC 9438 §4.3).
const ALPHA_NUM: u64 = 9;
const ALPHA_DEN: u64 = 17;
/// C = 0.4 segments per second cubed (RFC 9438 §5.1).
const C_NUM: i128 = 4;
const C_DEN: i128 = 10;
/// Cubes of times in microseconds are in units of 10^-18 s^3.
const MICROS3_PER_SEC3: i128 = 1_000_000_000_000_000_000;
/// |t − K| is clamped to this, so that the cube times the MSS fits an `i128`
/// (about 18 minutes, long past any window that fits a `u32`).
const CUBIC_MAX_ELAPSED_MICROS: i128 = 1 << 30;
/// Fractional bits kept on W_est, whose per-ACK growth is well below a byte.
const W_EST_FRACTION_BITS: u32 = 10;

/// CUBIC's state: the shared window, W_max, and the current congestion
/// avoidance epoch.
///
/// Time is `now_micros` from the caller's clock. The epoch starts at the first
/// ACK of congestion avoidance after a loss (or after slow start ends). While
/// the sender is application limited the window does not grow and, when it is
/// limited again by the window, the epoch start moves forward by the time spent
/// limited by the application, so the curve resumes where it paused.
#[derive(Debug, Clone)]
pub struct Cubic {
    pub(super) window: Window,
    /// The window just before the last reduction, lowered by fast convergence.
    w_max_bytes: u32,
    /// The window just before the last reduction; α_cubic becomes 1 once W_est
    /// reaches it (RFC 9438 §4.3).
    cwnd_prior_bytes: u32,
    epoch: Option<Epoch>,
    /// The latest smoothed RTT the connection gave, microseconds.
    rtt_micros: u64,
    /// When the sender became application limited, if it is.
    app_limited_since_micros: Option<u64>,
}

/// One congestion avoidance stage.
#[derive(Debug, Clone, Copy)]
struct Epoch {
    start_micros: u64,
    /// K: when the curve reaches W_max, from the epoch start.
    k_micros: u64,
    /// W_est in bytes, with `W_EST_FRACTION_BITS` fractional bits.
    w_est_scaled: u64,
    /// Growth owed but not yet a whole byte, as a numerator over `cwnd`.
    growth_credit: u64,
}

impl Cubic {
    /// A fresh CUBIC window (RFC 6928 initial window, no W_max yet).
    ///
    /// # Panics
    /// If `mss` is 0.
    pub fn new(mss: u32) -> Self {
        Self {
            window: Window::new(mss),
            w_max_bytes: 0,
            cwnd_prior_bytes: 0,
            epoch: None,
            rtt_micros: 0,
            app_limited_since_micros: None,
        }
    }

    /// The congestion window in bytes.
    pub fn cwnd(&self) -> u32 {
        self.window.cwnd
    }

    /// The slow start threshold in bytes.
    pub fn ssthresh(&self) -> u32 {
        self.window.ssthresh
    }

    /// W_max in bytes: the window at the last loss, lowered by fast convergence
    /// when that loss came below the one before (0 before any loss).
    pub fn w_max(&self) -> u32 {
        self.w_max_bytes
    }

    /// New data acknowledged outside recovery; see
    /// [`CongestionControl::on_ack`](super::CongestionControl::on_ack).
    pub fn on_ack(&mut self, now_micros: u64, bytes_acked: u32, rtt_micros: Option<u64>, bytes_in_flight: u32) {
        if let Some(rtt_micros) = rtt_micros {
            self.rtt_micros = rtt_micros;
        }
        if self.window.is_app_limited(bytes_in_flight) {
            self.app_limited_since_micros.get_or_insert(now_micros);
            return;
        }
        if let (Some(since), Some(epoch)) = (self.app_limited_since_micros.take(), &mut self.epoch) {
            epoch.start_micros += now_micros.saturating_sub(since);
        }
        let left = self.window.slow_start(bytes_acked);
        if left > 0 {
            self.congestion_avoidance(now_micros, left);
        }
        self.window.limit_to_flight(bytes_in_flight);
    }

    /// Fast retransmit: W_max from the window (with fast convergence),
    /// `ssthresh = max(β × flight, 2 × MSS)`, `cwnd = ssthresh`.
    pub fn on_congestion_event(&mut self, bytes_in_flight: u32) {
        self.record_loss();
        self.window.reduce_to(scale(bytes_in_flight, BETA_NUM, BETA_DEN));
    }

    /// Retransmission timeout: as a congestion event for W_max and `ssthresh`,
    /// but `cwnd` is one MSS and slow start follows (RFC 9438 §4.8).
    pub fn on_retransmit_timeout(&mut self, bytes_in_flight: u32) {
        self.record_loss();
        self.window.collapse_to_loss_window(scale(bytes_in_flight, BETA_NUM, BETA_DEN));
    }

    /// W_max with fast convergence (RFC 9438 §4.7), and a new epoch to come.
    fn record_loss(&mut self) {
        let cwnd = self.window.cwnd;
        self.w_max_bytes = if cwnd < self.w_max_bytes { scale(cwnd, CONVERGE_NUM, CONVERGE_DEN) } else { cwnd };
        self.cwnd_prior_bytes = cwnd;
        self.epoch = None;
        self.app_limited_since_micros = None;
    }

    fn start_epoch(&mut self, now_micros: u64) -> Epoch {
        let cwnd = self.window.cwnd;
        // Slow start ended above the last W_max (or there was no loss yet): the
        // curve starts at its plateau, K = 0 (RFC 9438 §4.10).
        self.w_max_bytes = self.w_max_bytes.max(cwnd);
        let deficit_segments = f64::from(self.w_max_bytes - cwnd) / f64::from(self.window.mss);
        let k_seconds = (deficit_segments * C_DEN as f64 / C_NUM as f64).cbrt();
        Epoch {
            start_micros: now_micros,
            k_micros: (k_seconds * 1e6) as u64,
            w_est_scaled: u64::from(cwnd) << W_EST_FRACTION_BITS,
            growth_credit: 0,
        }
    }

    fn congestion_avoidance(&mut self, now_micros: u64, bytes_acked: u32) {
        let mut epoch = match self.epoch {
            Some(epoch) => epoch,
            None => self.start_epoch(now_micros),
        };
        let cwnd = u64::from(self.window.cwnd);
        let acked = u64::from(bytes_acked);
        let w_est = self.grow_w_est(&mut epoch, acked);
        let t_micros = now_micros.saturating_sub(epoch.start_micros);
        let curve = |t| w_cubic_bytes(self.w_max_bytes, self.window.mss, t, epoch.k_micros);
        if curve(t_micros) < w_est {
            // Reno-friendly region: follow W_est.
            self.window.cwnd = clamp_u32(w_est);
            epoch.growth_credit = 0;
        } else {
            // Concave or convex region: close (target − cwnd) per window.
            let target = curve(t_micros + self.rtt_micros).clamp(cwnd, cwnd + cwnd / 2);
            epoch.growth_credit += (target - cwnd) * acked;
            let growth = epoch.growth_credit / cwnd;
            epoch.growth_credit %= cwnd;
            self.window.cwnd = clamp_u32(cwnd + growth);
        }
        self.epoch = Some(epoch);
    }

    /// W_est += α × MSS × acked / cwnd (RFC 9438 §4.3, in bytes); returns it
    /// in whole bytes.
    fn grow_w_est(&self, epoch: &mut Epoch, acked: u64) -> u64 {
        let cwnd = u128::from(self.window.cwnd);
        let (num, den) = if epoch.w_est_scaled >> W_EST_FRACTION_BITS >= u64::from(self.cwnd_prior_bytes) {
            (1, 1)
        } else {
            (ALPHA_NUM, ALPHA_DEN)
        };
        let step = (u128::from(num * acked) * u128::from(self.window.mss)) << W_EST_FRACTION_BITS;
        let step = step / (u128::from(den) * cwnd);
        epoch.w_est_scaled = epoch.w_est_scaled.saturating_add(step.min(u64::MAX.into()) as u64);
        epoch.w_est_scaled >> W_EST_FRACTION_BITS
    }
}

/// W_cubic(t) = C × (t − K)³ + W_max, in bytes (RFC 9438 §4.2).
fn w_cubic_bytes(w_max_bytes: u32, mss: u32, t_micros: u64, k_micros: u64) -> u64 {
    let dt = (i128::from(t_micros) - i128::from(k_micros)).clamp(-CUBIC_MAX_ELAPSED_MICROS, CUBIC_MAX_ELAPSED_MICROS);
    let offset = C_NUM * i128::from(mss) * dt * dt * dt / (C_DEN * MICROS3_PER_SEC3);
    (i128::from(w_max_bytes) + offset).clamp(0, i128::from(u32::MAX)) as u64
}

/// `value × num / den` without overflow, saturating at `u32::MAX`.
fn scale(value: u32, num: u64, den: u64) -> u32 {
    clamp_u32(u64::from(value) * num / den)
}

fn clamp_u32(value: u64) -> u32 {
    value.min(u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{CongestionControl, sim};
    use super::*;

    const MSS: u32 = 1000;

    /// A CUBIC window of `segments` that has just lost at that size and left
    /// recovery.
    fn after_loss_at(segments: u32) -> CongestionControl {
        let mut cubic = Cubic::new(MSS);
        cubic.window.cwnd = segments * MSS;
        cubic.on_congestion_event(segments * MSS);
        let mut cc = CongestionControl::Cubic(cubic);
        cc.on_recovery_exit();
        cc
    }

    fn cubic(cc: &CongestionControl) -> &Cubic {
        match cc {
            CongestionControl::Cubic(c) => c,
            CongestionControl::NewReno(_) => unreachable!("the tests build CUBIC windows"),
        }
    }

    /// The RFC's curve in segments, in floating point, as a reference.
    fn rfc_w_cubic_segments(w_max: f64, t_seconds: f64) -> f64 {
        let k = (w_max * (1.0 - 0.7) / 0.4).cbrt();
        0.4 * (t_seconds - k).powi(3) + w_max
    }

    /// Runs round trips from `start_micros` for `seconds`; returns
    /// (seconds since start, cwnd in segments) after each.
    fn run(cc: &mut CongestionControl, rtt: Duration, seconds: f64) -> Vec<(f64, f64)> {
        let rtt_micros = rtt.as_micros() as u64;
        let rounds = (seconds * 1e6 / rtt_micros as f64) as u64;
        let mut now = 0;
        (0..rounds)
            .map(|_| {
                now = sim::round(cc, now, rtt, MSS);
                (now as f64 / 1e6, f64::from(cc.cwnd()) / f64::from(MSS))
            })
            .collect()
    }

    #[test]
    fn loss_multiplies_by_beta() {
        let cc = after_loss_at(100);
        assert_eq!(cc.ssthresh(), 70 * MSS);
        assert_eq!(cc.cwnd(), 70 * MSS);
        assert_eq!(cubic(&cc).w_max(), 100 * MSS);
    }

    #[test]
    fn fast_convergence_lowers_w_max() {
        let mut cubic = Cubic::new(MSS);
        cubic.window.cwnd = 100 * MSS;
        cubic.on_congestion_event(100 * MSS);
        assert_eq!(cubic.w_max(), 100 * MSS);
        // The next loss comes below W_max: release bandwidth, W_max = 0.85 cwnd.
        cubic.window.cwnd = 80 * MSS;
        cubic.on_congestion_event(80 * MSS);
        assert_eq!(cubic.w_max(), 68 * MSS);
        // A loss above W_max takes the window as is.
        cubic.window.cwnd = 90 * MSS;
        cubic.on_congestion_event(90 * MSS);
        assert_eq!(cubic.w_max(), 90 * MSS);
    }

    #[test]
    fn window_follows_the_rfc_curve() {
        // W_max = 1000 segments, 100 ms: K = 9.1 s, and the Reno estimate stays
        // below the curve (it adds 9/17 segment per round trip).
        let mut cc = after_loss_at(1000);
        let rtt = Duration::from_millis(100);
        let mut worst = 0.0_f64;
        for (t, cwnd) in run(&mut cc, rtt, 16.0) {
            let expected = rfc_w_cubic_segments(1000.0, t);
            let error = (cwnd - expected).abs() / expected;
            assert!(error <= 0.005, "t = {t:.2} s: cwnd {cwnd:.2} segments, RFC curve {expected:.2}");
            worst = worst.max(error);
        }
        assert!(cc.cwnd() > 1100 * MSS, "the run reaches the convex region");
        assert!(worst > 0.0, "the window moved");
    }

    #[test]
    fn growth_is_concave_then_convex() {
        let mut cc = after_loss_at(200);
        let k = (200.0_f64 * 0.3 / 0.4).cbrt();
        let trace = run(&mut cc, Duration::from_millis(100), 2.0 * k + 0.5);
        let at = |t: f64| trace.iter().find(|(s, _)| *s >= t).map(|(_, w)| *w).unwrap();
        let quarter = k / 4.0;
        let growth = |from: f64| at(from + quarter) - at(from);
        // Concave: each quarter of K adds less than the one before.
        assert!(growth(0.0) > growth(quarter));
        assert!(growth(quarter) > growth(2.0 * quarter));
        assert!(growth(2.0 * quarter) > growth(3.0 * quarter));
        // The plateau around W_max.
        assert!((at(k) - 200.0).abs() < 2.0, "at K: {}", at(k));
        // Convex: each quarter past K adds more than the one before.
        assert!(growth(k) < growth(k + quarter));
        assert!(growth(k + quarter) < growth(k + 2.0 * quarter));
        assert!(growth(k + 2.0 * quarter) < growth(k + 3.0 * quarter));
    }

    #[test]
    fn reno_friendly_region_dominates_short_paths() {
        // A small window on a 1 ms path: the cubic curve barely moves in 0.1 s,
        // while Reno would add α = 9/17 segment per round trip, then 1 once it
        // passes the window before the loss.
        let mut cc = after_loss_at(20);
        let trace = run(&mut cc, Duration::from_millis(1), 0.1);
        let mut w_est = 14.0_f64;
        for (t, cwnd) in trace {
            w_est += if w_est >= 20.0 { 1.0 } else { 9.0 / 17.0 };
            let curve = rfc_w_cubic_segments(20.0, t);
            assert!(cwnd > curve, "t = {t}: cwnd {cwnd} not above the curve {curve}");
            assert!((cwnd - w_est).abs() <= 1.0, "t = {t}: cwnd {cwnd}, Reno estimate {w_est}");
        }
        assert!(cc.cwnd() > 100 * MSS);
    }

    #[test]
    fn epoch_starts_at_the_first_ack_after_the_loss() {
        let mut cc = after_loss_at(100);
        // A long recovery: the first ACK of avoidance comes 30 s after the loss.
        let now = 30_000_000;
        cc.on_ack(now, MSS, Some(100_000), cc.cwnd());
        assert!(cc.cwnd() < 71 * MSS, "jumped to {}", cc.cwnd());
    }

    #[test]
    fn growth_is_clamped_to_half_the_window_per_round_trip() {
        // Far past K the curve is steep; cwnd still at most grows 1.5x per RTT.
        let mut cc = after_loss_at(100);
        let rtt = Duration::from_secs(2);
        let mut now = 0;
        for _ in 0..8 {
            let before = cc.cwnd();
            now = sim::round(&mut cc, now, rtt, MSS);
            assert!(cc.cwnd() <= before + before / 2 + MSS, "{before} -> {}", cc.cwnd());
        }
        assert!(cc.cwnd() > 200 * MSS);
    }

    #[test]
    fn application_limited_time_does_not_count() {
        let rtt = Duration::from_millis(50);
        let mut steady = after_loss_at(100);
        let mut paused = after_loss_at(100);
        let mut now = 0;
        for _ in 0..20 {
            sim::round(&mut paused, now, rtt, MSS);
            now = sim::round(&mut steady, now, rtt, MSS);
        }
        assert_eq!(steady.cwnd(), paused.cwnd());
        // Ten seconds with one segment in flight: no growth, the clock is stopped.
        let before = paused.cwnd();
        for i in 0..100 {
            paused.on_ack(now + i * 100_000, MSS, Some(rtt.as_micros() as u64), MSS);
        }
        assert_eq!(paused.cwnd(), before);
        let mut later = now + 10_000_000;
        for _ in 0..20 {
            now = sim::round(&mut steady, now, rtt, MSS);
            later = sim::round(&mut paused, later, rtt, MSS);
        }
        // Equal up to the one ACK interval that opened the pause.
        assert!(steady.cwnd().abs_diff(paused.cwnd()) <= MSS / 10, "{} vs {}", steady.cwnd(), paused.cwnd());
    }

    #[test]
    fn timeout_restarts_from_one_segment_with_a_new_epoch() {
        let mut cc = after_loss_at(100);
        run(&mut cc, Duration::from_millis(100), 2.0);
        let cwnd = cc.cwnd();
        cc.on_retransmit_timeout(0, cwnd);
        assert_eq!(cc.cwnd(), MSS);
        assert_eq!(cc.ssthresh(), cwnd * 7 / 10);
        // Slow start back to ssthresh, then the curve again from below W_max.
        let trace = run(&mut cc, Duration::from_millis(100), 1.0);
        assert!(trace.iter().any(|&(_, w)| w * f64::from(MSS) >= f64::from(cwnd * 7 / 10)));
        assert!(cubic(&cc).w_max() > cc.ssthresh());
    }
}
