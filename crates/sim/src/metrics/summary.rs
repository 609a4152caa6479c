//! Summaries of per-message values, scoring one distribution against the truth, and the
//! two-sample Kolmogorov–Smirnov test that compares two samples of one value.

use serde::{Deserialize, Serialize};

/// The spread of one value over the messages scored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// How many values.
    pub count: usize,
    /// Their mean.
    pub mean: f64,
    /// The smallest.
    pub min: f64,
    /// 10th percentile (nearest rank).
    pub p10: f64,
    /// Median (nearest rank).
    pub median: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// The largest.
    pub max: f64,
}

impl Summary {
    /// Summarises `values` (`None` if there are none, or any is NaN).
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() || values.iter().any(|v| v.is_nan()) {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            // Nearest rank: the smallest value with at least a share q of values at or below.
            let r = (q * sorted.len() as f64).ceil() as usize;
            sorted[r.clamp(1, sorted.len()) - 1]
        };
        Some(Self {
            count: sorted.len(),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            min: sorted[0],
            p10: rank(0.10),
            median: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: sorted[sorted.len() - 1],
        })
    }
}

/// The two-sample Kolmogorov–Smirnov statistic: the largest distance between the empirical
/// distribution functions of `a` and `b` (0 if either is empty). Ties count whole: every
/// value equal to a step is taken on both sides before the distance is measured.
pub fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let step = a[i].min(b[j]);
        while i < a.len() && a[i] <= step {
            i += 1;
        }
        while j < b.len() && b[j] <= step {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    d
}

/// The critical value of [`ks_statistic`] at level `alpha` for samples of `n` and `m`
/// independent values, by the asymptotic formula `sqrt(-ln(alpha/2)/2)·sqrt((n+m)/(n·m))`
/// (1.949 times the root at `alpha` = 0.001; good from a few dozen values a side). Two
/// samples of one distribution give a larger statistic with probability below `alpha`.
pub fn ks_critical(alpha: f64, n: usize, m: usize) -> f64 {
    let (n, m) = (n as f64, m as f64);
    (-(alpha / 2.0).ln() / 2.0).sqrt() * ((n + m) / (n * m)).sqrt()
}

/// The two-sample Kolmogorov–Smirnov test's p-value for samples `a` and `b`: the asymptotic
/// Kolmogorov distribution with the effective-size correction of Numerical Recipes §14.3
/// (1 when the statistic is too small for the series to be accurate).
pub fn ks_p_value(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() {
        return 1.0;
    }
    let effective = (n * m / (n + m)).sqrt();
    let lambda = (effective + 0.12 + 0.11 / effective) * ks_statistic(a, b);
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = f64::from(k);
        let term = 2.0 * (-1.0f64).powf(k - 1.0) * (-2.0 * k * k * lambda * lambda).exp();
        sum += term;
        if term.abs() < 1e-12 {
            break;
        }
    }
    sum.clamp(0.0, 1.0)
}

/// `-x·log2 x` (0 at 0).
pub(crate) fn plogp(x: f64) -> f64 {
    if x > 0.0 { -x * x.log2() } else { 0.0 }
}

/// One distribution over candidates (senders, recipients), scored against the true one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Guess {
    /// Shannon entropy, bits.
    pub(crate) entropy: f64,
    /// The probability given to the true candidate.
    pub(crate) truth: f64,
    /// The chance that the adversary's top guess (ties broken at random) is the truth.
    pub(crate) top_right: f64,
}

/// Two values closer than this (relative) are a tie for the top guess.
const TIE: f64 = 1e-12;

/// Scores `cells`: `(weight, how many candidates share it, is the truth among them)`, the
/// weights not yet normalised (each candidate of a cell has `weight / total`).
pub(crate) fn score(cells: impl Iterator<Item = (f64, f64, bool)> + Clone) -> Option<Guess> {
    let total: f64 = cells.clone().map(|(w, k, _)| w * k).sum();
    if total <= 0.0 {
        return None;
    }
    let mut guess = Guess {
        entropy: 0.0,
        truth: 0.0,
        top_right: 0.0,
    };
    let mut top = 0.0_f64;
    for (w, k, truth) in cells.clone() {
        let p = w / total;
        guess.entropy += k * plogp(p);
        top = top.max(p);
        if truth {
            guess.truth = p;
        }
    }
    let floor = top * (1.0 - TIE);
    let ties: f64 = cells
        .filter(|&(w, _, _)| w / total >= floor)
        .map(|(_, k, _)| k)
        .sum();
    if guess.truth >= floor && guess.truth > 0.0 {
        guess.top_right = 1.0 / ties;
    }
    Some(guess)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&values).unwrap();
        assert_eq!(
            (s.min, s.p10, s.median, s.p90, s.p99, s.max),
            (1.0, 10.0, 50.0, 90.0, 99.0, 100.0)
        );
        assert!((s.mean - 50.5).abs() < 1e-12);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn ks_p_value_by_hand() {
        // 100 values a side, one sample shifted by a fifth of its range: D = 0.2, so
        // λ = (√50 + 0.12 + 0.11/√50)·0.2 = 1.44133 and p = 2·Σ(−1)^(k−1)·e^(−2k²λ²) = 0.03138
        let a: Vec<f64> = (0..100).map(f64::from).collect();
        let b: Vec<f64> = (20..120).map(f64::from).collect();
        assert!((ks_statistic(&a, &b) - 0.2).abs() < 1e-12);
        let p = ks_p_value(&a, &b);
        assert!((p - 0.03138).abs() < 2e-5, "{p}");
        assert_eq!(ks_p_value(&a, &a), 1.0);
        assert_eq!(ks_p_value(&a, &[]), 1.0);
        let far: Vec<f64> = (1000..1100).map(f64::from).collect();
        assert!(ks_p_value(&a, &far) < 1e-20);
    }

    #[test]
    fn ks_statistic_is_the_largest_gap_between_the_distributions() {
        // a: 1 2 3 4; b: 3 4 5 6. After 2, a is at 1/2 and b at 0; after 4, 1 and 1/2.
        let a = [4.0, 1.0, 3.0, 2.0];
        let b = [3.0, 6.0, 5.0, 4.0];
        assert!((ks_statistic(&a, &b) - 0.5).abs() < 1e-12);
        assert!((ks_statistic(&b, &a) - 0.5).abs() < 1e-12);
        // the same sample, and one with ties at every step: no distance
        assert_eq!(ks_statistic(&a, &a), 0.0);
        assert!((ks_statistic(&[1.0, 1.0, 2.0], &[1.0, 2.0]) - 1.0 / 6.0).abs() < 1e-12);
        // disjoint samples: all of it
        assert_eq!(ks_statistic(&[1.0, 2.0], &[3.0]), 1.0);
        // the table's value at 0.001
        let c = ks_critical(0.001, 1000, 1000);
        assert!((c - 1.949 * (2.0f64 / 1000.0).sqrt()).abs() < 1e-4, "{c}");
    }

    #[test]
    fn scoring_counts_ties() {
        // Two candidates at 1/6, and the truth tied with another at 1/3.
        let cells = [(1.0, 2.0, false), (2.0, 1.0, true), (2.0, 1.0, false)];
        let g = score(cells.iter().copied()).unwrap();
        let expected = 2.0 * plogp(1.0 / 6.0) + 2.0 * plogp(1.0 / 3.0);
        assert!((g.entropy - expected).abs() < 1e-12);
        assert!((g.truth - 1.0 / 3.0).abs() < 1e-12);
        assert!((g.top_right - 0.5).abs() < 1e-12);
    }
}
