//! Summaries over repetitions: the median and the range of a figure measured
//! several times, and of the ratio of two figures repetition by repetition.

use serde::{Deserialize, Serialize};

/// The median of a figure over repetitions, with its smallest and largest value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The median (the mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

impl Spread {
    /// The spread of `values` (NaNs left out); `None` when there is none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Spread { median, min: v[0], max: v[n - 1], n })
    }

    /// The spread of `a[i] / b[i]` over the repetitions both have (pairs whose
    /// divisor is not positive are left out): a ratio taken within one round
    /// of the interleaved servers, so that a slow minute weighs on both sides.
    pub fn of_ratios(a: &[f64], b: &[f64]) -> Option<Spread> {
        Spread::of(a.iter().zip(b).filter(|(_, d)| **d > 0.0).map(|(x, d)| x / d))
    }

    /// `median [min-max]` with each number written by `number`.
    pub fn show(&self, number: impl Fn(f64) -> String) -> String {
        if self.n == 1 {
            number(self.median)
        } else {
            format!("{} [{}-{}]", number(self.median), number(self.min), number(self.max))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = Spread::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = Spread::of([4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.5, 1.0, 4.0, 4));
        assert_eq!(Spread::of([]), None);
        assert_eq!(Spread::of([f64::NAN]), None);
    }

    #[test]
    fn ratios_pair_repetitions_and_skip_empty_divisors() {
        let s = Spread::of_ratios(&[200.0, 300.0, 90.0], &[100.0, 100.0, 0.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.5, 2.0, 3.0, 2));
    }

    #[test]
    fn shows_a_range_only_for_several_values() {
        let one = Spread::of([1.5]).unwrap();
        assert_eq!(one.show(|v| format!("{v:.1}")), "1.5");
        let three = Spread::of([1.0, 2.0, 4.0]).unwrap();
        assert_eq!(three.show(|v| format!("{v:.0}")), "2 [1-4]");
    }
}
