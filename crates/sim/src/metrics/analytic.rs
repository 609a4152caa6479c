//! The target entropy of one exponential (Poisson) mix, worked out exactly: the check on
//! [`super::TargetEntropy`].
//!
//! # Derivation
//!
//! Packets arrive as a Poisson process of rate λ and each stays an independent Exp(µ) time:
//! the mix is an M/M/∞ queue, its pool size a birth–death chain with birth rate λ and death
//! rate nµ in state n, stationary law Poisson(ρ), ρ = λ/µ.
//!
//! Follow one target under Piotrowska's rule (see [`crate::metrics`]). Write `M` for the target's
//! mass inside the pool (`n·v`, with `v` the pool's entry for it). The target arrives to find
//! `k ~ Poisson(ρ)` packets inside (arrivals see time averages, PASTA); the pool had no mass for
//! it, so afterwards `n = k+1` and `M = 1`. From then on:
//!
//! * an arrival (probability `p_n = ρ/(ρ+n)` of being the next event) leaves `M` unchanged:
//!   `(n+1)·(n·v + 0)/(n+1) = n·v`;
//! * a departure (probability `q_n = n/(ρ+n)`) carries `M/n` out — one exit packet with
//!   probability `M/n` of being the target — and leaves `M·(1 − 1/n)` in a pool of `n−1`.
//!
//! So the target's entropy, `H = Σ −(M/n)·log2(M/n)` over its departures, depends on the path
//! of the pool size alone. Let `X(n)` be `H` from state `n` with `M = 1`, and scale by the
//! remaining mass `c = 1 − 1/n`: since the masses emitted from then on sum to 1 (the pool
//! empties with probability 1), `Σ −c·m·log2(c·m) = c·Σ −m·log2 m − c·log2 c`. Hence
//!
//! ```text
//! X(n) = X(n+1)                          with probability p_n,
//! X(n) = h(1/n) + (1 − 1/n)·X'(n−1)      with probability q_n,
//! ```
//!
//! where `h` is the binary entropy (`h(1/n) = (1/n)·log2 n − c·log2 c`) and `X'` an independent
//! copy (at `n = 1` the departure carries everything, `h(1) = 0`). Taking expectations gives a
//! tridiagonal linear system for `B(n) = E X(n)`:
//!
//! ```text
//! B(n) − p_n·B(n+1) − q_n·(1 − 1/n)·B(n−1) = q_n·h(1/n),
//! ```
//!
//! and for `S(n) = E X(n)²`:
//!
//! ```text
//! S(n) − p_n·S(n+1) − q_n·(1 − 1/n)²·S(n−1) = q_n·(h(1/n)² + 2·h(1/n)·(1 − 1/n)·B(n−1)).
//! ```
//!
//! The expected entropy is `Σ_k Poisson(k; ρ)·B(k+1)` and its variance
//! `Σ_k Poisson(k; ρ)·S(k+1) − mean²`. We truncate the chain at `n_max = ρ + 12√ρ + 40`, where
//! arrivals stop (the chain is reflected); the stationary mass above it is below 1e-20, and the
//! system is diagonally dominant (`p_n + q_n·c < 1`), so the Thomas algorithm is stable.

use serde::{Deserialize, Serialize};

use super::summary::plogp;

/// The exact target entropy of one Poisson mix.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolEntropy {
    /// Expected entropy (bits) of a target over the packets leaving the mix.
    pub mean: f64,
    /// Its variance over targets (bits²).
    pub variance: f64,
}

/// The expected target entropy (and its variance) of a single exponential mix with Poisson
/// arrivals, `rho = λ/µ` (arrival rate times mean delay). `None` unless `0 < rho ≤ 1e6`.
pub fn pool_entropy(rho: f64) -> Option<PoolEntropy> {
    if !(rho > 0.0 && rho <= 1e6) {
        return None;
    }
    let top = (rho + 12.0 * rho.sqrt() + 40.0).ceil() as usize;
    let rows = |n: usize| {
        let n_f = n as f64;
        let (p, q) = if n == top {
            (0.0, 1.0)
        } else {
            (rho / (rho + n_f), n_f / (rho + n_f))
        };
        let c = 1.0 - 1.0 / n_f;
        let h = plogp(1.0 / n_f) + plogp(c);
        (p, q, c, h)
    };
    // B(1..=top)
    let b = solve(top, |n| {
        let (p, q, c, h) = rows(n);
        (-q * c, -p, q * h)
    });
    let s = solve(top, |n| {
        let (p, q, c, h) = rows(n);
        let before = if n >= 2 { b[n - 2] } else { 0.0 };
        (-q * c * c, -p, q * (h * h + 2.0 * h * c * before))
    });
    let (mut mean, mut second, mut ln_w) = (0.0, 0.0, -rho);
    for k in 0..top {
        let w = ln_w.exp();
        mean += w * b[k];
        second += w * s[k];
        ln_w += rho.ln() - ((k + 1) as f64).ln();
    }
    Some(PoolEntropy {
        mean,
        variance: (second - mean * mean).max(0.0),
    })
}

/// Solves `x(n) + lower(n)·x(n−1) + upper(n)·x(n+1) = rhs(n)` for `n = 1..=top` (Thomas
/// algorithm; `row(n) = (lower, upper, rhs)`, `x(0)` and `x(top+1)` taken as 0). Returns
/// `x(1..=top)` at indices `0..top`.
fn solve(top: usize, row: impl Fn(usize) -> (f64, f64, f64)) -> Vec<f64> {
    let mut upper = vec![0.0; top];
    let mut rhs = vec![0.0; top];
    for n in 1..=top {
        let (lo, up, r) = row(n);
        let i = n - 1;
        let (prev_up, prev_rhs) = if i > 0 {
            (upper[i - 1], rhs[i - 1])
        } else {
            (0.0, 0.0)
        };
        let lo = if n == 1 { 0.0 } else { lo };
        let diag = 1.0 - lo * prev_up;
        upper[i] = up / diag;
        rhs[i] = (r - lo * prev_rhs) / diag;
    }
    let mut x = rhs;
    for i in (0..top.saturating_sub(1)).rev() {
        x[i] -= upper[i] * x[i + 1];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_pools_by_hand() {
        // ρ → 0: the target is alone and leaves alone: entropy 0.
        let e = pool_entropy(1e-9).unwrap();
        assert!(e.mean < 1e-6 && e.variance < 1e-6);
        // Entropy grows with the pool and stays below log2 of the packets it could be.
        let mut last = 0.0;
        for rho in [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0] {
            let e = pool_entropy(rho).unwrap();
            assert!(e.mean > last, "{rho}: {e:?}");
            assert!(e.mean < (2.0 * rho + 2.0).log2() + 1.5, "{rho}: {e:?}");
            last = e.mean;
        }
        assert!(pool_entropy(0.0).is_none());
    }

    #[test]
    fn one_arrival_at_most_by_hand() {
        // Start from B(1) with a chain that allows a single arrival: compare with the formula
        // of the truncated system at top = 2 by direct algebra. B(2) = q·h(1/2) + q·(1/2)·B(1)
        // with p_2 = 0 (reflected), q_2 = 1: B(2) = 1 + B(1)/2; B(1) = p_1·B(2) (h(1) = 0).
        let p1 = 0.3;
        let x = solve(2, |n| {
            if n == 1 {
                (0.0, -p1, 0.0)
            } else {
                (-0.5, 0.0, 1.0)
            }
        });
        let b1 = p1 / (1.0 - p1 / 2.0);
        assert!((x[0] - b1).abs() < 1e-12 && (x[1] - (1.0 + b1 / 2.0)).abs() < 1e-12);
    }
}
