//! Metric (c): sender unlinkability between two challenge senders, ε and δ (Loopix, USENIX
//! Security 2017, §4.3).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::flow::Flow;
use super::summary::Summary;
use super::{ChallengeConfig, MetricsConfig, Window};
use crate::trace::{End, Observer, Origin, PacketId, Place};

const A: u32 = 0;
const B: u32 = 1;

/// Carries two labels, A and B (the challenge senders' packets are one-hot on theirs, every
/// other packet carries none), through the pools (see [`crate::metrics`]), with no pruning.
/// For each real packet of A or B delivered, `p_A` and `p_B` are the adversary's probabilities
/// that it came from A and from B.
///
/// # What is reproduced from `aniampio/Simulator`
///
/// `metrics/anonymity_metrics.py`, `getUnlinkability`: for a packet of A, if `p_B = 0` it counts
/// towards δ; otherwise `ln(p_A/p_B)` is a sample of ε (skipped if the ratio is 0); the same
/// with A and B swapped for B's packets. Her ε is the absolute value of the mean of these
/// signed samples (`getUnlinkability`: `np.abs(np.mean(epsilon))`)
/// ([`ChallengeReport::epsilon_mean`]). Her δ divides by every row of the receiving client's
/// log (she scores the packets reaching one target recipient, which only A sends real messages
/// to); here δ divides by the packets of A and B scored. We also report the spread of `|ε|`:
/// the mean is a noisy average, not the worst case the definition of (ε, δ) speaks of.
#[derive(Debug)]
pub struct Unlinkability {
    config: ChallengeConfig,
    window: Window,
    flow: Flow,
    scored: HashMap<PacketId, u32>,
    epsilon: Vec<f64>,
    excluded: u64,
    packets: u64,
}

/// What [`Unlinkability`] found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChallengeReport {
    /// Real packets of A or B delivered and scored.
    pub packets: u64,
    /// Her ε: `|mean of ln(p_true/p_other)|` over packets not excluded.
    pub epsilon_mean: Option<f64>,
    /// The spread of `|ln(p_A/p_B)|` over packets not excluded.
    pub epsilon_abs: Option<Summary>,
    /// Packets where the other challenge sender had probability 0.
    pub excluded: u64,
    /// δ: `excluded / packets`.
    pub delta: f64,
    /// Events that broke the trace's contract (a packet leaving, or ending in, an empty pool);
    /// 0 in a sound run.
    pub anomalies: u64,
}

impl Unlinkability {
    /// Challenges `config.challenge.a` against `config.challenge.b`.
    pub fn new(config: &MetricsConfig) -> Self {
        Self {
            config: config.challenge.clone(),
            window: Window::of(config),
            // No pruning: a pruned entry would look like an exclusion.
            flow: Flow::new(0.0, config.corrupt()),
            scored: HashMap::new(),
            epsilon: Vec::new(),
            excluded: 0,
            packets: 0,
        }
    }

    fn label(&self, from: Place) -> Option<u32> {
        match from {
            Place::Client(c) if c == self.config.a => Some(A),
            Place::Client(c) if c == self.config.b => Some(B),
            _ => None,
        }
    }

    fn score(&mut self, packet: PacketId, truth: u32) {
        let p = |label| {
            self.flow
                .labels(packet)
                .iter()
                .find(|e| e.0 == label)
                .map_or(0.0, |e| e.1)
        };
        let (p_true, p_other) = if truth == A {
            (p(A), p(B))
        } else {
            (p(B), p(A))
        };
        self.packets += 1;
        if p_other == 0.0 {
            self.excluded += 1;
        } else if p_true != 0.0 {
            self.epsilon.push((p_true / p_other).ln());
        }
    }

    /// The results so far.
    pub fn report(&self) -> ChallengeReport {
        let abs: Vec<f64> = self.epsilon.iter().map(|e| e.abs()).collect();
        ChallengeReport {
            packets: self.packets,
            epsilon_mean: Summary::of(&self.epsilon).map(|s| s.mean.abs()),
            epsilon_abs: Summary::of(&abs),
            excluded: self.excluded,
            anomalies: self.flow.anomalies,
            delta: if self.packets == 0 {
                0.0
            } else {
                self.excluded as f64 / self.packets as f64
            },
        }
    }
}

impl Observer for Unlinkability {
    fn sent(&mut self, at: f64, from: Place, packet: PacketId, origin: Origin) {
        let label = self.label(from);
        if let (Some(l), Origin::Real { .. }, true) = (label, origin, self.window.contains(at)) {
            self.scored.insert(packet, l);
        }
        self.flow.start(at, from, packet, label.map(|l| (l, 1.0)));
    }

    fn link(&mut self, at: f64, arrives: f64, from: Place, to: Place, packet: PacketId, _: u32) {
        self.flow.hop(at, arrives, from, to, packet);
    }

    fn ended(&mut self, at: f64, place: Place, packet: PacketId, end: End) {
        if let Some(truth) = self.scored.remove(&packet)
            && matches!(end, End::Delivered(_))
        {
            self.score(packet, truth);
        }
        self.flow.end(at, place, packet);
    }
}
