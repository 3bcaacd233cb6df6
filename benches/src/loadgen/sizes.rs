//! Key and value sizes: fixed, or the distributions that mutilate uses to model
//! Facebook's ETC and USR memcached pools (Atikoglu et al., "Workload Analysis of
//! a Large-Scale Key-Value Store", SIGMETRICS 2012), and the workload presets.

use rand::Rng;

/// Largest value a distribution draws, in bytes (the generalized Pareto tail
/// is unbounded; memcached's default item limit is 1 MiB).
pub const VALUE_DRAW_MAX_BYTES: usize = 500_000;

/// A size distribution, sampled by inverse transform from a uniform draw.
#[derive(Debug, Clone, PartialEq)]
pub enum SizeDistribution {
    /// Always this many bytes.
    Fixed(usize),
    /// Generalized extreme value (location, scale, shape), rounded: ETC keys
    /// are GEV(30.7984, 8.20449, 0.078688).
    Gev {
        /// Location (mu).
        loc: f64,
        /// Scale (sigma).
        scale: f64,
        /// Shape (k, not 0).
        shape: f64,
    },
    /// ETC values: sizes 0 to 14 bytes with the measured probabilities
    /// ([`ETC_SMALL_VALUES`]), otherwise generalized Pareto(15, 214.476, 0.348238).
    EtcValue,
    /// One of these sizes, each equally likely.
    OneOf(Vec<usize>),
}

/// ETC's value sizes below 15 bytes and their probabilities (index = size), as
/// mutilate's `fb_value` takes them from Atikoglu et al.
pub const ETC_SMALL_VALUES: [f64; 15] = [
    0.00536, 0.00047, 0.17820, 0.09239, 0.00018, 0.02740, 0.00065, 0.00606, 0.00023, 0.00837, 0.00837, 0.08989,
    0.00092, 0.00326, 0.01980,
];

/// Generalized Pareto quantile at `u` in (0, 1].
fn pareto(u: f64, loc: f64, scale: f64, shape: f64) -> f64 {
    loc + scale * (u.powf(-shape) - 1.0) / shape
}

impl SizeDistribution {
    /// The size at uniform draw `u` in [0, 1), at most `max`.
    pub fn at(&self, u: f64, max: usize) -> usize {
        // Keep u away from 0 and 1, where the quantiles diverge.
        let u = u.clamp(1e-12, 1.0 - 1e-12);
        let size = match self {
            SizeDistribution::Fixed(n) => return (*n).min(max),
            SizeDistribution::Gev { loc, scale, shape } => loc + scale * ((-u.ln()).powf(-shape) - 1.0) / shape,
            SizeDistribution::EtcValue => {
                let mut sum = 0.0;
                for (size, p) in ETC_SMALL_VALUES.iter().enumerate() {
                    sum += p;
                    if u < sum {
                        return size.min(max);
                    }
                }
                // The rest of the mass, rescaled to a fresh uniform draw.
                let rest = (u - sum) / (1.0 - sum);
                pareto(1.0 - rest, 15.0, 214.476, 0.348238)
            }
            SizeDistribution::OneOf(sizes) => {
                let i = ((u * sizes.len() as f64) as usize).min(sizes.len().saturating_sub(1));
                return sizes.get(i).copied().unwrap_or(0).min(max);
            }
        };
        (size.round().max(0.0) as usize).min(max)
    }

    /// A random size, at most `max`.
    pub fn sample(&self, rng: &mut impl Rng, max: usize) -> usize {
        self.at(rng.random::<f64>(), max)
    }
}

/// A named memcached workload: its get share and key and value sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvPreset {
    /// Facebook's ETC pool as mutilate models it: GEV key sizes, the ETC value
    /// distribution, 75% `get` (the IX paper's reading of the paper's mix).
    Etc,
    /// Facebook's USR pool: keys of 16 or 21 bytes, 2-byte values, 99% `get`.
    Usr,
}

impl KvPreset {
    /// `etc` or `usr`, as `ixload --workload` takes it.
    pub fn name(self) -> &'static str {
        match self {
            KvPreset::Etc => "etc",
            KvPreset::Usr => "usr",
        }
    }

    /// The share of `get`s.
    pub fn get_ratio(self) -> f64 {
        match self {
            KvPreset::Etc => 0.75,
            KvPreset::Usr => 0.99,
        }
    }

    /// Key sizes.
    pub fn key_sizes(self) -> SizeDistribution {
        match self {
            KvPreset::Etc => SizeDistribution::Gev { loc: 30.7984, scale: 8.20449, shape: 0.078688 },
            KvPreset::Usr => SizeDistribution::OneOf(vec![16, 21]),
        }
    }

    /// Value sizes.
    pub fn value_sizes(self) -> SizeDistribution {
        match self {
            KvPreset::Etc => SizeDistribution::EtcValue,
            KvPreset::Usr => SizeDistribution::Fixed(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    fn draws(d: &SizeDistribution, n: usize) -> Vec<usize> {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut v: Vec<usize> = (0..n).map(|_| d.sample(&mut rng, VALUE_DRAW_MAX_BYTES)).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn etc_keys_centre_on_the_gev_location() {
        let v = draws(&KvPreset::Etc.key_sizes(), 100_000);
        // GEV median: loc + scale * (ln2^-k - 1) / k = 33.9 bytes.
        let median = v[v.len() / 2];
        assert!((33..=35).contains(&median), "median {median}");
        assert!(
            v[v.len() / 100] >= 15 && v[v.len() * 99 / 100] <= 90,
            "1%: {} 99%: {}",
            v[v.len() / 100],
            v[v.len() * 99 / 100]
        );
    }

    #[test]
    fn etc_values_have_the_small_sizes_and_a_pareto_tail() {
        let n = 200_000;
        let v = draws(&SizeDistribution::EtcValue, n);
        let share = |size: usize| v.iter().filter(|&&s| s == size).count() as f64 / n as f64;
        assert!((share(2) - 0.1782).abs() < 0.005, "{}", share(2));
        assert!((share(11) - 0.08989).abs() < 0.005, "{}", share(11));
        let small: f64 = ETC_SMALL_VALUES.iter().sum();
        let at_least_15 = v.iter().filter(|&&s| s >= 15).count() as f64 / n as f64;
        assert!((at_least_15 - (1.0 - small)).abs() < 0.01, "{at_least_15}");
        // The Pareto part's median: 15 + 214.476 * (2^0.348 - 1) / 0.348 = 179 bytes.
        let tail: Vec<usize> = v.into_iter().filter(|&s| s >= 15).collect();
        let median = tail[tail.len() / 2];
        assert!((170..=190).contains(&median), "median {median}");
        assert!(*tail.last().unwrap() <= VALUE_DRAW_MAX_BYTES);
    }

    #[test]
    fn usr_is_short_keys_and_two_byte_values() {
        let keys = draws(&KvPreset::Usr.key_sizes(), 1000);
        assert!(keys.iter().all(|&k| k == 16 || k == 21) && keys.contains(&16) && keys.contains(&21));
        assert_eq!(KvPreset::Usr.value_sizes().at(0.3, 100), 2);
    }

    #[test]
    fn sizes_respect_the_bound() {
        assert_eq!(SizeDistribution::Fixed(10).at(0.5, 4), 4);
        assert!(SizeDistribution::EtcValue.at(1e-15, 1000) <= 1000);
        assert!(KvPreset::Etc.key_sizes().at(0.999_999_999, 250) <= 250);
    }
}
