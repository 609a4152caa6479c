//! How many test packets a node needs for a score of a given precision.
//!
//! The answer comes from the expected Fisher information of the attribution model
//! ([`crate::attribution`]) under the planner's design (every route equally likely: the decks
//! deal each position uniformly and independently), with one node of each group pinned as the
//! group's reference and the monitor's own factor `q` estimated along with every other node.
//! The variance of a score therefore includes what is not known about its companions and its
//! reference, which is why it needs more packets than a node measured alone (`z² p (1 − p) /
//! h²`, [`packets_alone`]). Large-sample (Wald) figures: the tests check them against
//! simulated epochs.

use crate::attribution::normal_quantile;

/// The size of a network as the monitor tests it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkShape {
    /// Active mix nodes in each layer.
    pub mixes_per_layer: usize,
    /// Gateways the monitor sends through.
    pub gateways: usize,
}

/// Packets a mix node must forward in an epoch for its score to be within `± half_width` of
/// the truth with probability `confidence`, when it forwards a share `reliability` of packets
/// and every other node `others` (in (0, 1): a network without loss leaves nothing to
/// estimate). `None` if the shape has a group of fewer than two nodes (no score exists) or the
/// arguments are out of range.
pub fn packets_per_node(
    shape: NetworkShape,
    reliability: f64,
    others: f64,
    half_width: f64,
    confidence: f64,
) -> Option<u64> {
    packets_for(shape, reliability, others, others, half_width, confidence)
}

/// [`packets_per_node`] for a node at `reliability` whose group's best is at `reference`,
/// every other node at `companions`.
pub(crate) fn packets_for(
    shape: NetworkShape,
    reliability: f64,
    reference: f64,
    companions: f64,
    half_width: f64,
    confidence: f64,
) -> Option<u64> {
    let n = shape.mixes_per_layer;
    let g = shape.gateways;
    let in_range = |x: f64, low: f64, high: f64| x > low && x < high;
    if n < 2
        || g < 2
        || !in_range(reliability, 0.0, 1.0 + f64::EPSILON)
        || !in_range(reference, 0.0, 1.0 + f64::EPSILON)
        || !in_range(companions, 0.0, 1.0)
        || !in_range(half_width, 0.0, 1.0)
        || !in_range(confidence, 0.0, 1.0)
    {
        return None;
    }
    // parameters: the mix nodes of layers 1, 2, 3, the gateways, then q; node 0 of layer 1
    // is the one studied, node 1 of layer 1 (its reference) and node 0 of the other groups
    // are pinned
    let count = 3 * n + g + 1;
    let q = count - 1;
    let pinned = [1, n, 2 * n, 3 * n];
    let free: Vec<usize> = (0..count).filter(|i| !pinned.contains(i)).collect();
    let position: Vec<Option<usize>> = (0..count)
        .map(|i| free.iter().position(|&f| f == i))
        .collect();
    let mut p = vec![companions; count];
    p[0] = reliability;
    p[1] = reference;
    p[q] = 1.0;
    let size = free.len();
    let mut information = vec![0.0; size * size];
    let mut gradient = vec![0.0; size];
    let mut tuples = 0u64;
    for a in 0..n {
        for b in n..2 * n {
            for c in 2 * n..3 * n {
                for entry in 3 * n..3 * n + g {
                    for exit in 3 * n..3 * n + g {
                        let hops = [q, entry, a, b, c, exit];
                        let success: f64 = hops.iter().map(|&h| p[h]).product();
                        let variance = success * (1.0 - success);
                        tuples += 1;
                        if variance <= 0.0 {
                            continue;
                        }
                        gradient.fill(0.0);
                        for &hop in &hops {
                            if let Some(at) = position[hop] {
                                gradient[at] += success / p[hop];
                            }
                        }
                        for i in 0..size {
                            if gradient[i] == 0.0 {
                                continue;
                            }
                            for j in 0..size {
                                information[i * size + j] += gradient[i] * gradient[j] / variance;
                            }
                        }
                    }
                }
            }
        }
    }
    for value in &mut information {
        *value /= tuples as f64;
    }
    // the variance of node 0's estimate per route: (I⁻¹)₀₀, node 0 being free parameter 0
    let per_route = solve(&mut information, size, 0)?;
    let z = normal_quantile(0.5 + confidence / 2.0);
    // the score is p / p_ref and p_ref is pinned: its standard error is se(p) / p_ref
    let routes = z * z * per_route / (reference * reference * half_width * half_width);
    Some((routes / n as f64).ceil() as u64)
}

/// Packets a node measured on its own needs (the binomial Wald figure), for comparison.
pub fn packets_alone(reliability: f64, half_width: f64, confidence: f64) -> u64 {
    let z = normal_quantile(0.5 + confidence / 2.0);
    (z * z * reliability * (1.0 - reliability) / (half_width * half_width)).ceil() as u64
}

/// Element `(k, k)` of the inverse of the `size × size` matrix `a` (Gauss–Jordan with partial
/// pivoting on `a | e_k`); `None` if `a` is singular.
fn solve(a: &mut [f64], size: usize, k: usize) -> Option<f64> {
    let mut b = vec![0.0; size];
    b[k] = 1.0;
    for column in 0..size {
        let pivot = (column..size).max_by(|&x, &y| {
            a[x * size + column]
                .abs()
                .total_cmp(&a[y * size + column].abs())
        })?;
        if a[pivot * size + column].abs() < 1e-300 {
            return None;
        }
        for j in 0..size {
            a.swap(column * size + j, pivot * size + j);
        }
        b.swap(column, pivot);
        for row in 0..size {
            if row == column {
                continue;
            }
            let factor = a[row * size + column] / a[column * size + column];
            if factor == 0.0 {
                continue;
            }
            for j in column..size {
                a[row * size + j] -= factor * a[column * size + j];
            }
            b[row] -= factor * b[column];
        }
    }
    Some(b[k] / a[k * size + k])
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCALNET: NetworkShape = NetworkShape {
        mixes_per_layer: 2,
        gateways: 3,
    };

    #[test]
    fn alone_is_the_binomial_figure() {
        // 1.96² · 0.25 / 0.05² = 384.1
        assert_eq!(packets_alone(0.5, 0.05, 0.95), 385);
    }

    #[test]
    fn attribution_needs_more_than_a_node_alone_and_more_for_harder_cases() {
        let needed = |r| packets_per_node(LOCALNET, r, 0.98, 0.05, 0.95).expect("a figure");
        assert!(needed(0.5) > packets_alone(0.5, 0.05, 0.95));
        assert!(needed(0.5) > needed(0.8));
        assert!(needed(0.8) > needed(0.95));
    }

    #[test]
    fn groups_of_one_have_no_figure() {
        let shape = NetworkShape {
            mixes_per_layer: 1,
            gateways: 3,
        };
        assert_eq!(packets_per_node(shape, 0.5, 0.98, 0.05, 0.95), None);
    }

    /// The figures of the report (run with `--nocapture` to see them).
    #[test]
    fn figures() {
        for shape in [
            LOCALNET,
            NetworkShape {
                mixes_per_layer: 2,
                gateways: 2,
            },
            NetworkShape {
                mixes_per_layer: 10,
                gateways: 3,
            },
        ] {
            for reliability in [0.5, 0.8, 0.95] {
                let needed = packets_per_node(shape, reliability, 0.98, 0.05, 0.95);
                println!(
                    "{}×{} mix nodes, {} gateways: a node at {reliability} among nodes at 0.98 \
                     needs {needed:?} packets (alone: {})",
                    3,
                    shape.mixes_per_layer,
                    shape.gateways,
                    packets_alone(reliability, 0.05, 0.95)
                );
                assert!(needed.is_some());
            }
        }
    }
}
