//! Attribution: from route outcomes to each node's reliability, with a confidence interval.
//!
//! **Model.** Each node `i` forwards a packet with probability `p_i`, independently of
//! everything else; a route succeeds with probability `q · Π p_h` over its five hops, where
//! `q` is what no node can be blamed for (the monitor's own links, or loss shared by every
//! node of a group). The estimate is the maximum of the likelihood, found by EM over which
//! hop dropped each lost packet (a lost packet reached hop `h` and was dropped there with
//! probability `Π_{j<h} p_j (1 − p_h) / (1 − Π p)`; the M-step is forwarded / arrived for each
//! node), accelerated with SQUAREM (Varadhan and Roland 2008). The log-likelihood is concave in
//! `log p`, so EM reaches the global maximum.
//!
//! **What can be told apart.** Every route crosses exactly one node of each layer and two
//! gateways, so scaling every node of a group by `s` and `q` by `1/s` (`1/s²` for the
//! gateways) changes no route's probability: only ratios within a group are identifiable. The
//! estimate fixes this by giving the best node of each group 100 % and putting the rest in
//! `q`, reported as [`Attribution::unattributed_loss`]: a node is blamed only for loss that
//! sets it apart from the others of its group, never for the monitor's own loss. A node alone
//! in its group cannot be told apart from anything and gets no score.
//!
//! **Confidence.** Each score's interval is a profile-likelihood interval: the scores `t`
//! whose best fit with the node pinned at `t` times its group's best (every other parameter
//! re-fitted) is within `χ²₁(confidence) / 2` of the maximum. Chosen over a Wald interval from
//! the Fisher information because most scores sit at or near 100 %, where the Fisher
//! information is infinite and a Wald interval has zero width; and over a parametric bootstrap
//! because resampling from a fitted 100 % never produces a loss, so it too claims certainty at
//! the boundary. The profile interval at the boundary behaves like the binomial
//! likelihood-ratio interval (about `1 − 1.92 / n` for `n` packets and no loss), accounts for
//! the other nodes' uncertainty (they are re-fitted), and is deterministic, so anyone
//! recomputing it from the evidence gets the same interval.

use std::collections::BTreeMap;

use umbra_topology::NodeId;

use crate::evidence::{Evidence, Fault, FaultReason, Group};

/// What an epoch's evidence says about each node.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribution {
    /// The epoch.
    pub epoch: u64,
    /// One entry per node of the evidence, in its order.
    pub nodes: Vec<NodeScore>,
    /// The loss common to every route, which no node is blamed for: `1 − q`.
    pub unattributed_loss: f64,
    /// Routes judged.
    pub judged: u64,
    /// Of which lost.
    pub lost: u64,
    /// Routes not judged, by the monitor's fault that covered them.
    pub voided: Voided,
    /// The windows found to be mass failures (not judged).
    pub mass_failures: Vec<Fault>,
}

/// Routes not judged, by reason (a route covered by several counts under the first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Voided {
    /// The monitor's session with one of the route's gateways was down.
    pub gateway_down: u64,
    /// The monitor was starved while the route was alive.
    pub starved: u64,
    /// The route's window was a mass failure.
    pub mass_failure: u64,
}

/// One node's result.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeScore {
    /// The node.
    pub node: NodeId,
    /// What it was tested as.
    pub group: Group,
    /// Judged packets through it (a gateway that was entry and exit of a route counts twice).
    pub packets: u64,
    /// How many of them it is estimated to have dropped (expected, at the estimate).
    pub dropped: f64,
    /// The score, or why there is none.
    pub verdict: Verdict,
}

/// A node's score or why it has none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// Its reliability relative to the best of its group, with an interval.
    Scored(Score),
    /// No score: the ledger keeps the node's previous performance.
    Unscored(Unscored),
}

/// A reliability in [0, 1] with its confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// The estimate.
    pub reliability: f64,
    /// The interval's lower end.
    pub lower: f64,
    /// The interval's upper end.
    pub upper: f64,
}

/// Why a node has no score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unscored {
    /// No judged route crossed it.
    NoPackets,
    /// Fewer judged packets than the rules' minimum.
    TooFewPackets,
    /// No other node of its group was measured: its loss cannot be told from the rest.
    AloneInGroup,
}

/// Recomputes every score from the evidence alone: the monitor's report is exactly this.
pub fn attribute(evidence: &Evidence) -> Attribution {
    let judged = judge(evidence);
    let mut p = judged.model.fit_free();
    judged.normalize(&mut p);
    let best = judged.model.loglik(&p);
    let (_, dropped) = judged.model.expected_counts(&p);
    let target = chi_square_1(f64::from(evidence.rules.confidence_ppm) / 1e6) / 2.0;
    let nodes = evidence
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| {
            let packets = judged.packets[index];
            let verdict = judged.verdict(packets, evidence.rules.min_packets, || {
                judged.interval(&p, best, target, index)
            });
            NodeScore {
                node: NodeId(node.id),
                group: node.group,
                packets,
                dropped: dropped[index],
                verdict,
            }
        })
        .collect();
    let monitor = judged.model.monitor();
    Attribution {
        epoch: evidence.epoch,
        nodes,
        unattributed_loss: 1.0 - p[monitor],
        judged: judged.judged,
        lost: judged.lost,
        voided: judged.voided,
        mass_failures: judged.mass_failures,
    }
}

/// The point estimates alone (each node's score relative to its group's best, by evidence
/// order; `None` for nodes without packets), for simulations that need no intervals.
#[cfg(test)]
pub(crate) fn estimate(evidence: &Evidence) -> Vec<Option<f64>> {
    let judged = judge(evidence);
    let mut p = judged.model.fit_free();
    judged.normalize(&mut p);
    (0..evidence.nodes.len())
        .map(|index| (judged.packets[index] > 0).then(|| p[index]))
        .collect()
}

/// One node's score and interval (the evidence's `index`-th node), for simulations.
#[cfg(test)]
pub(crate) fn score_of(evidence: &Evidence, index: usize) -> Option<Score> {
    let judged = judge(evidence);
    let mut p = judged.model.fit_free();
    judged.normalize(&mut p);
    let best = judged.model.loglik(&p);
    let target = chi_square_1(f64::from(evidence.rules.confidence_ppm) / 1e6) / 2.0;
    judged.interval(&p, best, target, index)
}

/// The evidence sorted out: which routes count, and the model they make.
struct Judged {
    model: Model,
    groups: Vec<Group>,
    packets: Vec<u64>,
    judged: u64,
    lost: u64,
    voided: Voided,
    mass_failures: Vec<Fault>,
}

/// Why attribution leaves a route out (see [`Voided`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoidReason {
    /// The monitor's session with one of the route's gateways was down while it was alive.
    GatewayDown,
    /// The monitor was starved while the route was alive.
    Starved,
    /// The route was sent in a window found to be a mass failure.
    MassFailure,
}

/// Which routes attribution judges ([`attribute`] runs exactly this).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteJudgement {
    /// One entry per route of the evidence, in its order: `None` if the route is judged
    /// (counts toward the scores), else why it is not.
    pub voided: Vec<Option<VoidReason>>,
    /// The windows found to be mass failures.
    pub mass_failures: Vec<Fault>,
}

/// Sorts the evidence's routes into judged and voided: first by the monitor's claimed
/// faults (a route alive, from sent to its deadline, during one is not judged), then by the
/// mass failures found among the rest.
pub fn judge_routes(evidence: &Evidence) -> RouteJudgement {
    let rules = evidence.rules;
    // the monitor's claimed faults: a route alive (sent to its deadline, whatever its
    // outcome, so that voiding cannot favour either) during one is not judged
    let mut voided: Vec<Option<VoidReason>> = evidence
        .routes
        .iter()
        .map(|route| {
            let alive = (
                route.sent_ms,
                route.sent_ms.saturating_add(rules.loss_deadline_ms),
            );
            let overlaps = |fault: &Fault| fault.from_ms <= alive.1 && alive.0 <= fault.to_ms;
            evidence
                .faults
                .iter()
                .filter(|fault| overlaps(fault))
                .find_map(|fault| match fault.reason {
                    FaultReason::GatewayDown { gateway }
                        if route.hops[0] == gateway || route.hops[4] == gateway =>
                    {
                        Some(VoidReason::GatewayDown)
                    }
                    FaultReason::Starved { .. } => Some(VoidReason::Starved),
                    _ => None,
                })
        })
        .collect();
    // mass failures: windows of sending time where nearly every judged route was lost
    let mut windows: BTreeMap<u64, (u32, u32)> = BTreeMap::new();
    for (route, _) in evidence
        .routes
        .iter()
        .zip(&voided)
        .filter(|(_, void)| void.is_none())
    {
        let window = windows
            .entry(route.sent_ms / rules.window_ms.max(1))
            .or_default();
        window.0 += 1;
        window.1 += u32::from(route.latency_us.is_none());
    }
    let mut mass_failures = Vec::new();
    for (&window, &(judged, lost)) in &windows {
        if judged >= rules.mass_failure_min_routes.max(1)
            && u64::from(lost) * 1_000_000 >= u64::from(judged) * u64::from(rules.mass_failure_ppm)
        {
            let from_ms = window * rules.window_ms.max(1);
            mass_failures.push(Fault {
                from_ms,
                to_ms: from_ms + rules.window_ms.max(1) - 1,
                reason: FaultReason::MassFailure { lost, judged },
            });
        }
    }
    for (route, void) in evidence.routes.iter().zip(&mut voided) {
        let in_mass_failure = mass_failures
            .iter()
            .any(|fault| fault.from_ms <= route.sent_ms && route.sent_ms <= fault.to_ms);
        if void.is_none() && in_mass_failure {
            *void = Some(VoidReason::MassFailure);
        }
    }
    RouteJudgement {
        voided,
        mass_failures,
    }
}

fn judge(evidence: &Evidence) -> Judged {
    let index: BTreeMap<u32, usize> = evidence
        .nodes
        .iter()
        .enumerate()
        .map(|(index, node)| (node.id, index))
        .collect();
    let RouteJudgement {
        voided: void_reasons,
        mass_failures,
    } = judge_routes(evidence);
    let mut voided = Voided::default();
    for reason in void_reasons.iter().flatten() {
        match reason {
            VoidReason::GatewayDown => voided.gateway_down += 1,
            VoidReason::Starved => voided.starved += 1,
            VoidReason::MassFailure => voided.mass_failure += 1,
        }
    }
    let node_count = evidence.nodes.len();
    let mut packets = vec![0u64; node_count];
    let mut tuples: BTreeMap<[usize; 6], (f64, f64)> = BTreeMap::new();
    let (mut judged, mut lost) = (0, 0);
    for (route, _) in evidence
        .routes
        .iter()
        .zip(&void_reasons)
        .filter(|(_, void)| void.is_none())
    {
        // a route naming an unlisted node cannot be judged (from_json refuses such evidence)
        let mut hops = [node_count; 6];
        let mut known = true;
        for (slot, hop) in hops[1..].iter_mut().zip(route.hops) {
            match index.get(&hop) {
                Some(&at) => *slot = at,
                None => known = false,
            }
        }
        if !known {
            continue;
        }
        for &hop in &hops[1..] {
            packets[hop] += 1;
        }
        judged += 1;
        let tuple = tuples.entry(hops).or_default();
        if route.latency_us.is_some() {
            tuple.0 += 1.0;
        } else {
            tuple.1 += 1.0;
            lost += 1;
        }
    }
    Judged {
        model: Model {
            params: node_count + 1,
            tuples: tuples
                .into_iter()
                .map(|(hops, (ok, lost))| Tuple { hops, ok, lost })
                .collect(),
        },
        groups: evidence.nodes.iter().map(|node| node.group).collect(),
        packets,
        judged,
        lost,
        voided,
        mass_failures,
    }
}

impl Judged {
    /// Gives the best measured node of each group 1 and moves the scale into `q`.
    fn normalize(&self, p: &mut [f64]) {
        let monitor = self.model.monitor();
        for group in [Group::Layer1, Group::Layer2, Group::Layer3, Group::Gateway] {
            let members: Vec<usize> = (0..self.groups.len())
                .filter(|&i| self.groups[i] == group && self.packets[i] > 0)
                .collect();
            let best = members.iter().map(|&i| p[i]).fold(0.0, f64::max);
            if best <= 0.0 {
                continue;
            }
            for &i in &members {
                p[i] /= best;
            }
            let hops_per_route = if group == Group::Gateway { 2 } else { 1 };
            p[monitor] *= best.powi(hops_per_route);
        }
    }

    /// The best other measured node of `index`'s group.
    fn reference(&self, p: &[f64], index: usize) -> Option<usize> {
        (0..self.groups.len())
            .filter(|&j| j != index && self.groups[j] == self.groups[index] && self.packets[j] > 0)
            .fold(None, |best: Option<usize>, j| match best {
                Some(b) if p[b] >= p[j] => Some(b),
                _ => Some(j),
            })
    }

    fn verdict(
        &self,
        packets: u64,
        min_packets: u32,
        interval: impl FnOnce() -> Option<Score>,
    ) -> Verdict {
        if packets == 0 {
            return Verdict::Unscored(Unscored::NoPackets);
        }
        if packets < u64::from(min_packets) {
            return Verdict::Unscored(Unscored::TooFewPackets);
        }
        match interval() {
            Some(score) => Verdict::Scored(score),
            None => Verdict::Unscored(Unscored::AloneInGroup),
        }
    }

    /// The node's score and profile-likelihood interval; `None` if it is alone in its group.
    fn interval(&self, p: &[f64], best: f64, target: f64, index: usize) -> Option<Score> {
        let reference = self.reference(p, index)?;
        // the score s = min(1, p_i / p_ref): pin p_ref = 1 (the group's scale) and p_i = t
        let deviance = |t: f64| {
            let fitted = self.model.fit_pinned(p, &[(reference, 1.0), (index, t)]);
            (best - fitted).max(0.0)
        };
        let is_best = p[index] >= p[reference];
        let estimate = if is_best {
            1.0
        } else {
            p[index] / p[reference]
        };
        let lower = if deviance(0.0) <= target {
            0.0
        } else if deviance(estimate) > target {
            // the node is clearly better than the rest of its group
            estimate
        } else {
            bisect(0.0, estimate, |t| deviance(t) <= target)
        };
        let upper = if is_best || deviance(1.0) <= target {
            1.0
        } else {
            // the first t above the estimate that the data rule out
            bisect(estimate, 1.0, |t| deviance(t) > target)
        };
        Some(Score {
            reliability: estimate,
            lower,
            upper,
        })
    }
}

/// The boundary between `lo` (where `above` is false) and `hi` (where it is true), to 2⁻²⁴.
fn bisect(mut lo: f64, mut hi: f64, above: impl Fn(f64) -> bool) -> f64 {
    for _ in 0..24 {
        let mid = 0.5 * (lo + hi);
        if above(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Routes with the same hops, counted together.
struct Tuple {
    /// The monitor's own factor (index `params − 1`), then the five hops.
    hops: [usize; 6],
    ok: f64,
    lost: f64,
}

/// The likelihood of independent per-node loss over the judged routes.
pub(crate) struct Model {
    params: usize,
    tuples: Vec<Tuple>,
}

/// EM stops when no parameter moved more than this in a round.
const TOLERANCE: f64 = 1e-12;
/// ...or after this many rounds (each three EM steps).
const MAX_ROUNDS: usize = 20_000;

impl Model {
    fn monitor(&self) -> usize {
        self.params - 1
    }

    /// The maximum-likelihood fit, every parameter free.
    fn fit_free(&self) -> Vec<f64> {
        let mut p = vec![0.9; self.params];
        self.fit(&mut p, &vec![false; self.params]);
        p
    }

    /// The best log-likelihood with the given parameters pinned, starting from `start`.
    fn fit_pinned(&self, start: &[f64], pins: &[(usize, f64)]) -> f64 {
        let mut p = start.to_vec();
        let mut pinned = vec![false; self.params];
        for &(index, value) in pins {
            p[index] = value;
            pinned[index] = true;
        }
        self.fit(&mut p, &pinned)
    }

    /// EM with SQUAREM acceleration from `p`; returns the log-likelihood reached.
    fn fit(&self, p: &mut [f64], pinned: &[bool]) -> f64 {
        // free parameters start inside (0, 1): a loss needs some hop that can drop
        for (value, &pin) in p.iter_mut().zip(pinned) {
            if !pin {
                *value = value.clamp(1e-6, 1.0 - 1e-6);
            }
        }
        let n = self.params;
        let (mut p1, mut p2) = (vec![0.0; n], vec![0.0; n]);
        let (mut jump, mut p3) = (vec![0.0; n], vec![0.0; n]);
        for _ in 0..MAX_ROUNDS {
            self.em_step(p, pinned, &mut p1);
            self.em_step(&p1, pinned, &mut p2);
            let r: Vec<f64> = p1.iter().zip(p.iter()).map(|(a, b)| a - b).collect();
            let v: Vec<f64> = (0..n).map(|i| p2[i] - p1[i] - r[i]).collect();
            let r_norm = r.iter().map(|x| x * x).sum::<f64>().sqrt();
            let v_norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            // the SqS3 step length; -1 gives plain EM's two steps
            let alpha = if v_norm > 0.0 {
                -(r_norm / v_norm).max(1.0)
            } else {
                -1.0
            };
            for i in 0..n {
                jump[i] = if pinned[i] {
                    p[i]
                } else {
                    (p[i] - 2.0 * alpha * r[i] + alpha * alpha * v[i]).clamp(0.0, 1.0)
                };
            }
            self.em_step(&jump, pinned, &mut p3);
            let accelerated = self.loglik(&p3);
            let plain = self.loglik(&p2);
            let next = if accelerated.is_finite() && accelerated >= plain {
                &p3
            } else {
                &p2
            };
            let moved = next
                .iter()
                .zip(p.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            p.copy_from_slice(next);
            if moved < TOLERANCE {
                break;
            }
        }
        self.loglik(p)
    }

    /// One EM step from `p` into `out`.
    fn em_step(&self, p: &[f64], pinned: &[bool], out: &mut [f64]) {
        let (arrived, dropped) = self.expected_counts(p);
        for i in 0..self.params {
            out[i] = if pinned[i] || arrived[i] <= 0.0 {
                p[i]
            } else {
                (1.0 - dropped[i] / arrived[i]).clamp(0.0, 1.0)
            };
        }
    }

    /// The E-step: packets expected to have reached and been dropped by each node.
    fn expected_counts(&self, p: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let mut arrived = vec![0.0; self.params];
        let mut dropped = vec![0.0; self.params];
        for tuple in &self.tuples {
            for &hop in &tuple.hops {
                arrived[hop] += tuple.ok;
            }
            if tuple.lost == 0.0 {
                continue;
            }
            let mut prefix = [1.0; 7];
            let mut suffix = [1.0; 7];
            for j in 0..6 {
                prefix[j + 1] = prefix[j] * p[tuple.hops[j]];
                suffix[5 - j] = suffix[6 - j] * p[tuple.hops[5 - j]];
            }
            let loss = 1.0 - prefix[6];
            if loss <= 0.0 {
                continue;
            }
            let weight = tuple.lost / loss;
            for (j, &hop) in tuple.hops.iter().enumerate() {
                arrived[hop] += weight * prefix[j] * (1.0 - suffix[j]);
                dropped[hop] += weight * prefix[j] * (1.0 - p[hop]);
            }
        }
        (arrived, dropped)
    }

    /// The log-likelihood of the judged routes at `p`.
    fn loglik(&self, p: &[f64]) -> f64 {
        let ln = |x: f64| x.max(1e-300).ln();
        self.tuples
            .iter()
            .map(|tuple| {
                let success: f64 = tuple.hops.iter().map(|&hop| p[hop]).product();
                let mut value = 0.0;
                if tuple.ok > 0.0 {
                    value += tuple.ok * ln(success);
                }
                if tuple.lost > 0.0 {
                    value += tuple.lost * ln(1.0 - success);
                }
                value
            })
            .sum()
    }
}

/// The `confidence` quantile of χ² with one degree of freedom: z² for z at (1 + c) / 2.
pub(crate) fn chi_square_1(confidence: f64) -> f64 {
    let z = normal_quantile(0.5 + confidence / 2.0);
    z * z
}

/// The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
pub(crate) fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use umbra_topology::NodeId;

    use super::*;
    use crate::evidence::Fault;
    use crate::sample_size::{NetworkShape, packets_for, packets_per_node};
    use crate::synthetic::{roster, simulate};

    /// The truth as scores: each node's reliability relative to its group's best.
    fn relative(evidence: &Evidence, truth: &BTreeMap<NodeId, f64>) -> Vec<f64> {
        let p = |id: u32| truth.get(&NodeId(id)).copied().unwrap_or(1.0);
        evidence
            .nodes
            .iter()
            .map(|node| {
                let best = evidence
                    .nodes
                    .iter()
                    .filter(|other| other.group == node.group)
                    .map(|other| p(other.id))
                    .fold(0.0, f64::max);
                p(node.id) / best
            })
            .collect()
    }

    fn scored(attribution: &Attribution, node: u32) -> Score {
        match attribution
            .nodes
            .iter()
            .find(|score| score.node == NodeId(node))
            .map(|score| score.verdict)
        {
            Some(Verdict::Scored(score)) => score,
            other => panic!("node {node} has no score: {other:?}"),
        }
    }

    #[test]
    fn a_good_node_next_to_a_bad_one_keeps_its_score() {
        // node 100 (layer 1) drops half; everything else is perfect. 4,000 routes: 2,000
        // through node 100, whose estimate then has a standard deviation of 0.011, so ±0.05 is
        // 4.5 of them (chance 7e-6); the good nodes' estimates are exactly 1 (every loss is on
        // a route through node 100, and the likelihood is highest blaming it alone).
        let roster = roster(2, 3);
        let truth = BTreeMap::from([(NodeId(100), 0.5)]);
        let evidence = simulate(&roster, &truth, 4000, 1, None);
        let attribution = attribute(&evidence);
        let bad = scored(&attribution, 100);
        assert!((bad.reliability - 0.5).abs() < 0.05, "{bad:?}");
        assert!(bad.lower < 0.5 && 0.5 < bad.upper, "{bad:?}");
        for node in attribution.nodes.iter().filter(|n| n.node != NodeId(100)) {
            let Verdict::Scored(score) = node.verdict else {
                panic!("{node:?}")
            };
            assert!(score.reliability >= 0.95, "{node:?}");
            assert!(score.lower >= 0.95, "{node:?}");
        }
        assert!(attribution.unattributed_loss < 0.01);
        assert!(attribution.mass_failures.is_empty());
    }

    #[test]
    fn a_good_node_next_to_a_bad_one_in_a_lossy_network() {
        // every node drops 1 %, node 201 (layer 2) drops half. With 6,000 routes each mix node
        // carries 3,000 packets; a good node's score (relative to its group's best, both 0.99)
        // then has a standard deviation of about 0.004 (sample_size's Fisher figure), so 0.95
        // is over 10 of them away.
        let roster = roster(2, 3);
        let mut truth: BTreeMap<NodeId, f64> =
            roster.nodes().map(|(node, _)| (node, 0.99)).collect();
        truth.insert(NodeId(201), 0.5);
        let evidence = simulate(&roster, &truth, 6000, 2, None);
        let attribution = attribute(&evidence);
        assert!((scored(&attribution, 201).reliability - 0.5 / 0.99).abs() < 0.05);
        for node in [100, 101, 200, 300, 301, 900, 901, 902] {
            assert!(
                scored(&attribution, node).reliability >= 0.95,
                "node {node}"
            );
        }
    }

    /// Random per-node reliabilities in [0.7, 1]; 240,000 routes (120,000 packets per mix
    /// node, 160,000 per gateway). `hardest_case_fits_the_property_test` takes the most
    /// demanding case over a grid of the range (by the Fisher figure of `packets_per_node`) and
    /// checks that 120,000 packets put ±0.05 at 5.3 or more standard deviations (chance 1.2e-7
    /// per node): over 32 cases of 9 nodes, below 1 in 25,000 runs.
    const PROPERTY_ROUTES: usize = 240_000;
    const PROPERTY_TOLERANCE: f64 = 0.05;

    #[test]
    fn hardest_case_fits_the_property_test() {
        let shape = NetworkShape {
            mixes_per_layer: 2,
            gateways: 3,
        };
        // the node studied at most as good as its group's best; every other node anywhere
        let grid = [0.7, 0.8, 0.9, 0.99];
        let mut at_95 = 0;
        for node in grid {
            for reference in grid.into_iter().filter(|&r| r >= node) {
                for companions in grid {
                    let needed =
                        packets_for(shape, node, reference, companions, PROPERTY_TOLERANCE, 0.95);
                    at_95 = at_95.max(needed.expect("a figure"));
                }
            }
        }
        let z = 1.96 * ((PROPERTY_ROUTES / 2) as f64 / at_95 as f64).sqrt();
        println!("hardest case: {at_95} packets at 95 %; the test's are {z:.2} deviations");
        assert!(
            z >= 5.3,
            "±{PROPERTY_TOLERANCE} is only {z:.2} standard deviations"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn estimates_are_near_the_truth(
            reliabilities in proptest::collection::vec(0.7f64..=1.0, 9),
            seed in any::<u64>(),
        ) {
            let roster = roster(2, 3);
            let truth: BTreeMap<NodeId, f64> = roster
                .nodes()
                .map(|(node, _)| node)
                .zip(reliabilities)
                .collect();
            let evidence = simulate(&roster, &truth, PROPERTY_ROUTES, seed, None);
            let estimates = estimate(&evidence);
            for ((node, estimate), truth) in evidence.nodes.iter().zip(estimates).zip(relative(&evidence, &truth)) {
                let estimate = estimate.expect("every node is measured");
                prop_assert!(
                    (estimate - truth).abs() <= PROPERTY_TOLERANCE,
                    "node {}: estimate {estimate}, truth {truth}", node.id
                );
            }
        }
    }

    #[test]
    fn all_routes_failing_in_a_window_attributes_nothing() {
        // window 10 (600 s to 660 s: routes 6,000 to 6,599) loses everything; otherwise node
        // 100 drops 20 % and the rest is perfect
        let roster = roster(2, 3);
        let truth = BTreeMap::from([(NodeId(100), 0.8)]);
        let clean = simulate(&roster, &truth, 12_000, 3, None);
        let blackout = simulate(&roster, &truth, 12_000, 3, Some((600_000, 660_000)));
        let attribution = attribute(&blackout);
        assert_eq!(
            attribution.mass_failures,
            vec![Fault {
                from_ms: 600_000,
                to_ms: 659_999,
                reason: FaultReason::MassFailure {
                    lost: 600,
                    judged: 600
                },
            }]
        );
        assert_eq!(attribution.voided.mass_failure, 600);
        let judgement = judge_routes(&blackout);
        assert_eq!(judgement.mass_failures, attribution.mass_failures);
        for (route, void) in blackout.routes.iter().zip(&judgement.voided) {
            let blacked_out = (600_000..660_000).contains(&route.sent_ms);
            assert_eq!(*void, blacked_out.then_some(VoidReason::MassFailure));
        }
        // the same as the clean epoch without that window's routes
        let mut without = clean.clone();
        without
            .routes
            .retain(|route| !(600_000..660_000).contains(&route.sent_ms));
        let expected = attribute(&without);
        assert_eq!(attribution.nodes, expected.nodes);
        for node in [101, 200, 201, 300, 301, 900, 901, 902] {
            assert!(scored(&attribution, node).reliability >= 0.95);
        }
    }

    #[test]
    fn a_whole_epoch_failing_scores_nobody() {
        let roster = roster(2, 3);
        let evidence = simulate(&roster, &BTreeMap::new(), 3000, 4, Some((0, u64::MAX)));
        let attribution = attribute(&evidence);
        assert_eq!(attribution.judged, 0);
        assert_eq!(attribution.voided.mass_failure, 3000);
        assert!(
            attribution
                .nodes
                .iter()
                .all(|node| node.verdict == Verdict::Unscored(Unscored::NoPackets))
        );
        assert!(attribution.performance().is_empty());
    }

    #[test]
    fn a_dead_node_is_not_taken_for_the_monitor() {
        // node 300 forwards nothing: half of all routes fail, far from the 95 % of a mass
        // failure (with 600 routes a window, 95 % would be 16 standard deviations away)
        let roster = roster(2, 3);
        let truth = BTreeMap::from([(NodeId(300), 0.0)]);
        let attribution = attribute(&simulate(&roster, &truth, 6000, 5, None));
        assert!(attribution.mass_failures.is_empty());
        let dead = scored(&attribution, 300);
        assert!(dead.reliability < 0.01 && dead.upper < 0.01, "{dead:?}");
        assert!(scored(&attribution, 301).reliability >= 0.95);
    }

    #[test]
    fn the_monitors_claimed_faults_void_what_was_alive_then() {
        let roster = roster(2, 3);
        let mut evidence = simulate(&roster, &BTreeMap::new(), 3000, 6, None);
        // gateway 900 down from 100 s to 130 s; starved from 200 s to 201 s
        evidence.faults = vec![
            Fault {
                from_ms: 100_000,
                to_ms: 130_000,
                reason: FaultReason::GatewayDown { gateway: 900 },
            },
            Fault {
                from_ms: 200_000,
                to_ms: 201_000,
                reason: FaultReason::Starved { late_ms: 1000 },
            },
        ];
        let deadline = evidence.rules.loss_deadline_ms;
        let alive = |sent: u64, from: u64, to: u64| sent <= to && from <= sent + deadline;
        let through_900 = evidence
            .routes
            .iter()
            .filter(|r| alive(r.sent_ms, 100_000, 130_000) && r.hops.contains(&900))
            .count() as u64;
        let starved = evidence
            .routes
            .iter()
            .filter(|r| alive(r.sent_ms, 200_000, 201_000))
            .count() as u64;
        let attribution = attribute(&evidence);
        assert_eq!(attribution.voided.gateway_down, through_900);
        assert_eq!(attribution.voided.starved, starved);
        assert_eq!(attribution.judged, 3000 - through_900 - starved);
        // route by route, the same sorting
        let judgement = judge_routes(&evidence);
        let count = |reason| {
            judgement
                .voided
                .iter()
                .filter(|void| **void == Some(reason))
                .count() as u64
        };
        assert_eq!(count(VoidReason::GatewayDown), through_900);
        assert_eq!(count(VoidReason::Starved), starved);
    }

    #[test]
    fn a_node_alone_in_its_group_is_not_scored() {
        let roster = crate::plan::Roster::new(
            [
                vec![NodeId(100)],
                vec![NodeId(200), NodeId(201)],
                vec![NodeId(300), NodeId(301)],
            ],
            vec![NodeId(900), NodeId(901)],
        );
        let truth = BTreeMap::from([(NodeId(100), 0.5)]);
        let attribution = attribute(&simulate(&roster, &truth, 2000, 7, None));
        let alone = attribution
            .nodes
            .iter()
            .find(|node| node.node == NodeId(100))
            .expect("listed");
        assert_eq!(alone.verdict, Verdict::Unscored(Unscored::AloneInGroup));
        // its loss is nobody's: it shows as the monitor's unattributed loss
        assert!((attribution.unattributed_loss - 0.5).abs() < 0.05);
    }

    #[test]
    fn intervals_cover_the_truth() {
        // node 100 at 0.8 among nodes at 0.98, 1,000 routes an epoch (500 packets through it).
        // 100 epochs: a 95 % interval that is right misses the truth fewer than 16 times but
        // with probability 1e-4 (binomial tail), and one that covered only 85 % would pass
        // rarely.
        let roster = roster(2, 3);
        let mut truth: BTreeMap<NodeId, f64> =
            roster.nodes().map(|(node, _)| (node, 0.98)).collect();
        truth.insert(NodeId(100), 0.8);
        let target = 0.8 / 0.98;
        let mut covered = 0;
        for seed in 0..100 {
            let evidence = simulate(&roster, &truth, 1000, 1000 + seed, None);
            let score = score_of(&evidence, 0).expect("a score");
            covered += u32::from(score.lower <= target && target <= score.upper);
        }
        println!("95 % intervals covered the truth in {covered} of 100 epochs");
        assert!(covered >= 85, "covered {covered} of 100");
    }

    #[test]
    fn a_perfect_node_has_a_tight_interval_below_one() {
        // no loss at all: each mix node carries 1,000 packets; the profile interval's lower
        // end is then that of a binomial with no failure, about 1 - 1.92/1000 (a Wald
        // interval would be [1, 1])
        let roster = roster(2, 3);
        let attribution = attribute(&simulate(&roster, &BTreeMap::new(), 2000, 8, None));
        let score = scored(&attribution, 100);
        assert_eq!(score.reliability, 1.0);
        assert_eq!(score.upper, 1.0);
        assert!(score.lower < 1.0 && score.lower > 0.99, "{score:?}");
    }

    #[test]
    fn the_sample_size_figure_holds_in_simulation() {
        // localnet (3×2 mix nodes, 3 gateways), node 100 at 0.5 among nodes at 0.98: with the
        // packets packets_per_node asks for, the estimate is within ±0.05 in 95 % of epochs.
        // 200 epochs: at 95 % fewer than 175 succeed with probability below 1e-5; this fails
        // if the figure were too low by a third (coverage then about 88 %, still passing) —
        // what it guards against is a figure wrong by a factor of two or more (coverage 80 %).
        let shape = NetworkShape {
            mixes_per_layer: 2,
            gateways: 3,
        };
        let packets = packets_per_node(shape, 0.5, 0.98, 0.05, 0.95).expect("a figure");
        let routes = packets as usize * 2;
        let roster = roster(2, 3);
        let mut truth: BTreeMap<NodeId, f64> =
            roster.nodes().map(|(node, _)| (node, 0.98)).collect();
        truth.insert(NodeId(100), 0.5);
        let target = 0.5 / 0.98;
        let within = (0..200)
            .filter(|seed| {
                let evidence = simulate(&roster, &truth, routes, 5000 + seed, None);
                let estimate = estimate(&evidence)[0].expect("measured");
                (estimate - target).abs() <= 0.05
            })
            .count();
        println!("{packets} packets per node: within ±0.05 in {within} of 200 epochs");
        assert!(within >= 175, "within ±0.05 in only {within} of 200 epochs");
    }
}
