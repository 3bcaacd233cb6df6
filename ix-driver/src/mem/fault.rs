//! Fault injection of the mem wire: the configured rates, the per-link counters,
//! and the hand-written seeded generators (SplitMix64 to seed, xoshiro256** to draw).

use crate::error::DriverError;

/// What can go wrong with a frame on its way over the mem wire. Each field is
/// applied independently per frame and per link (source port → destination
/// queue), when the frame is sent.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultConfig {
    /// Probability that a frame is dropped.
    pub loss: f64,
    /// Probability that a frame is delivered twice (both copies identical, due
    /// at the same time).
    pub duplicate: f64,
    /// Probability that a frame is held back until the next frame on the same
    /// link has been queued, or until the receiver polls at or after its due
    /// time, whichever comes first.
    pub reorder: f64,
    /// Probability that one random bit of one random byte of the frame flips.
    pub corrupt: f64,
    /// Fixed delay added to every frame.
    pub delay_micros: u64,
    /// Extra delay drawn uniformly from `0..=jitter_micros` per frame; it can
    /// reorder frames.
    pub jitter_micros: u64,
}

impl FaultConfig {
    /// A perfect wire.
    pub const NONE: Self =
        Self { loss: 0.0, duplicate: 0.0, reorder: 0.0, corrupt: 0.0, delay_micros: 0, jitter_micros: 0 };

    /// Whether every frame is delivered once, intact, in order, after exactly
    /// `delay_micros`: no probability and no jitter to draw.
    pub fn is_perfect(&self) -> bool {
        let chances = [self.loss, self.duplicate, self.reorder, self.corrupt];
        chances.iter().all(|&p| p <= 0.0) && self.jitter_micros == 0
    }

    /// Whether a frame arrives, untouched, the instant it is sent: a perfect
    /// link with no delay.
    pub fn is_instant(&self) -> bool {
        self.is_perfect() && self.delay_micros == 0
    }

    /// Checks every probability is a number in `0.0..=1.0`.
    ///
    /// # Errors
    /// [`DriverError::Config`] naming the first bad field.
    pub fn validate(&self) -> Result<(), DriverError> {
        let fields =
            [("loss", self.loss), ("duplicate", self.duplicate), ("reorder", self.reorder), ("corrupt", self.corrupt)];
        match fields.iter().find(|(_, p)| !(0.0..=1.0).contains(p)) {
            Some((name, p)) => Err(DriverError::Config(format!("fault probability {name} = {p} is not in 0..=1"))),
            None => Ok(()),
        }
    }
}

/// Counts of the faults injected on a link, a queue or the whole wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultStats {
    /// Frames offered to the link (before any fault).
    pub frames: u64,
    /// Frames dropped by injected loss.
    pub lost: u64,
    /// Frames delivered twice.
    pub duplicated: u64,
    /// Frames held back behind a later one.
    pub reordered: u64,
    /// Frames with a bit flipped.
    pub corrupted: u64,
}

impl FaultStats {
    /// Adds another set of counts to this one.
    pub fn add(&mut self, other: &FaultStats) {
        self.frames += other.frames;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.corrupted += other.corrupted;
    }
}

/// What the faults decided for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameFate {
    /// Dropped.
    Lost,
    /// Delivered.
    Delivered {
        /// Microseconds of delay, jitter included.
        delay_micros: u64,
        /// Deliver a second copy.
        duplicate: bool,
        /// Hold back behind the next frame.
        reorder: bool,
        /// Flip this bit (`byte * 8 + bit`) of the frame, if any.
        corrupt_bit: Option<usize>,
    },
}

/// The fault decisions of one link: its own generator and counters.
#[derive(Debug, Clone)]
pub(crate) struct LinkFaults {
    rng: Xoshiro256StarStar,
    pub(crate) stats: FaultStats,
}

impl LinkFaults {
    /// A link whose draws depend only on `seed` and `link_id`.
    pub(crate) fn new(seed: u64, link_id: u64) -> Self {
        Self { rng: Xoshiro256StarStar::for_stream(seed, link_id), stats: FaultStats::default() }
    }

    /// Decides the fate of a frame of `len` bytes and counts it. A zero
    /// probability draws nothing, so a perfect wire costs no random numbers.
    pub(crate) fn decide(&mut self, config: &FaultConfig, len: usize) -> FrameFate {
        self.stats.frames += 1;
        if self.chance(config.loss) {
            self.stats.lost += 1;
            return FrameFate::Lost;
        }
        let corrupt_bit = (len > 0 && self.chance(config.corrupt)).then(|| self.rng.below(len as u64 * 8) as usize);
        let duplicate = self.chance(config.duplicate);
        let reorder = self.chance(config.reorder);
        let jitter = if config.jitter_micros == 0 { 0 } else { self.rng.below(config.jitter_micros.saturating_add(1)) };
        self.stats.corrupted += u64::from(corrupt_bit.is_some());
        self.stats.duplicated += u64::from(duplicate);
        self.stats.reordered += u64::from(reorder);
        FrameFate::Delivered {
            delay_micros: config.delay_micros.saturating_add(jitter),
            duplicate,
            reorder,
            corrupt_bit,
        }
    }

    fn chance(&mut self, probability: f64) -> bool {
        probability > 0.0 && self.rng.unit() < probability
    }
}

/// SplitMix64: turns any 64-bit seed into well-mixed words, used only to fill
/// the state of the main generator.
#[derive(Debug, Clone)]
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// xoshiro256** (Blackman and Vigna): small, fast, and good enough for
/// simulation; not for anything secret.
#[derive(Debug, Clone)]
pub(crate) struct Xoshiro256StarStar {
    s: [u64; 4],
}

impl Xoshiro256StarStar {
    /// An independent stream per `stream` under one `seed`: the seed and the
    /// stream number are mixed before expanding into the state, so neighbouring
    /// streams do not share draws.
    pub(crate) fn for_stream(seed: u64, stream: u64) -> Self {
        let mut mix = SplitMix64 { state: stream };
        let mut expand = SplitMix64 { state: seed ^ mix.next() };
        let s = std::array::from_fn(|_| expand.next());
        Self { s }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2^-32 for the small
    /// `n` used here).
    ///
    /// # Panics
    /// If `n` is zero.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "empty range");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let draw = |seed, stream| {
            let mut rng = Xoshiro256StarStar::for_stream(seed, stream);
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, 3), draw(7, 3));
        assert_ne!(draw(7, 3), draw(7, 4));
        assert_ne!(draw(7, 3), draw(8, 3));
    }

    #[test]
    fn draws_stay_in_range() {
        let mut rng = Xoshiro256StarStar::for_stream(1, 1);
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(rng.below(5) < 5);
        }
        assert_eq!(rng.below(1), 0);
    }

    #[test]
    fn a_perfect_wire_delivers_everything_untouched() {
        let mut link = LinkFaults::new(0, 0);
        for _ in 0..1000 {
            let fate = link.decide(&FaultConfig::NONE, 60);
            assert_eq!(
                fate,
                FrameFate::Delivered { delay_micros: 0, duplicate: false, reorder: false, corrupt_bit: None }
            );
        }
        assert_eq!(link.stats, FaultStats { frames: 1000, ..FaultStats::default() });
    }

    #[test]
    fn certain_faults_always_happen_and_bits_stay_in_the_frame() {
        let config = FaultConfig {
            duplicate: 1.0,
            reorder: 1.0,
            corrupt: 1.0,
            delay_micros: 10,
            jitter_micros: 5,
            ..FaultConfig::NONE
        };
        let mut link = LinkFaults::new(9, 2);
        for _ in 0..1000 {
            match link.decide(&config, 3) {
                FrameFate::Delivered { delay_micros, duplicate: true, reorder: true, corrupt_bit: Some(bit) } => {
                    assert!((10..=15).contains(&delay_micros));
                    assert!(bit < 24);
                }
                other => panic!("unexpected fate {other:?}"),
            }
        }
        let lossy = FaultConfig { loss: 1.0, ..config };
        assert_eq!(link.decide(&lossy, 3), FrameFate::Lost);
    }

    #[test]
    fn out_of_range_probabilities_are_refused() {
        assert!(FaultConfig::NONE.validate().is_ok());
        assert!(FaultConfig { loss: 1.5, ..FaultConfig::NONE }.validate().is_err());
        assert!(FaultConfig { corrupt: f64::NAN, ..FaultConfig::NONE }.validate().is_err());
        assert!(FaultConfig { reorder: -0.1, ..FaultConfig::NONE }.validate().is_err());
    }
}
