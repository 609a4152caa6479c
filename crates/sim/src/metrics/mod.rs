//! Anonymity metrics, scored as a global passive adversary would see the run.
//!
//! Each metric is an [`Observer`]; [`Metrics`] runs the ones its [`MetricsConfig`] turns on
//! and gathers their results in a [`MetricsReport`] (serde, for the results file).
//!
//! # The adversary
//!
//! It sees every link: when a packet leaves one place and reaches the next, never which packet
//! it is. Gateways forward at once, so they are taken as transparent (the adversary links a
//! gateway's input to its output exactly — a conservative simplification). A mix node is a
//! pool: the adversary sees what enters and what leaves, and nothing of which became which,
//! except at the mixes it controls ([`MetricsConfig::corrupt_mixes`]), which are transparent.
//!
//! # Carrying a distribution through a pool
//!
//! Piotrowska's rule (`aniampio/Simulator`, `classes/Node.py`): every pooling mix keeps one
//! vector, the average of the vectors of the packets that entered it since it was last empty
//! (`Node.add_pkt_in_pool`: `(v·n + p)/(n+1)`); a packet leaving takes a copy of it
//! (`Node.forward_packet`), and the vector is forgotten when the pool runs dry. The
//! exponential delay is memoryless, so every packet inside is equally likely to be the next to
//! leave, and the average stays the right distribution for those still inside after one leaves.
//! Beyond her simulator (which has none of these): a packet a mix makes (its loop) enters its
//! pool as it is made, since the adversary cannot tell it from the others; a packet ending inside
//! a mix leaves the pool without a departure (the vector stays; the share of mass it stood for
//! is lost); links have latency, so a packet joins the next pool when it arrives, not when it
//! was sent.
//!
//! # The metrics
//!
//! * [`TargetEntropy`]: (a) the entropy of each target packet over the packets leaving the last
//!   layer — her simulator's figure — and the targets' recipients.
//! * [`SenderEntropy`]: (b) per delivered real packet, the distribution over its sender.
//! * [`Unlinkability`]: (c) ε and δ between two challenge senders (Loopix §4.3).
//! * [`pool_entropy`]: (d) the exact value of (a) for one Poisson mix.
//!
//! # Cost
//!
//! Each metric carries sparse vectors: per hop, work in proportion to the labels a packet
//! carries — a handful of live targets for (a), two for (c), about one per labelled client for
//! (b) (see [`SenderEntropy`] for sampling clients when there are many). Vectors are recycled,
//! not allocated per event. Measured once (release build, not a test): 100 clients × 60 s ×
//! 55 packets/s through three layers of three mixes, all three metrics with every client
//! labelled and 1,000 targets — about 2 million observer calls — took 0.8 s.

mod analytic;
mod challenge;
mod flow;
mod senders;
mod summary;
mod targets;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

pub use analytic::{PoolEntropy, pool_entropy};
pub use challenge::{ChallengeReport, Unlinkability};
pub use senders::{SenderEntropy, SenderReport};
pub use summary::{Summary, ks_critical, ks_p_value, ks_statistic};
pub use targets::{GuessReport, TargetEntropy, TargetReport};

use crate::trace::{End, Observer, Origin, PacketId, Place};

/// What the metrics measure, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Seconds of simulated time before anything is scored (targets are chosen, and packets
    /// scored, only if sent at or after it). Default 0.
    pub warm_up: f64,
    /// Seconds of simulated time after which no packet is chosen or scored any more (those
    /// under way are still followed to their end): the run goes on a while after it, so
    /// that every scored packet is through. Default: none.
    pub until: Option<f64>,
    /// The layer whose leaving packets (a)'s entropy is taken over. Default 3; 1 for a network
    /// of one layer.
    pub last_layer: u8,
    /// The mix nodes the adversary controls: it sees which input became which output.
    pub corrupt_mixes: Vec<MixRef>,
    /// Entries of a carried distribution at or below this are dropped as a packet leaves a pool
    /// (not for ε). Default 1e-9; 0 keeps everything. See each metric for the error it allows.
    pub prune_below: f64,
    /// Metric (a): on by default.
    pub targets: TargetsConfig,
    /// Recipients of (a)'s targets.
    pub receivers: ReceiversConfig,
    /// Metric (b): off by default (about one entry per client per hop).
    pub senders: SendersConfig,
    /// Metric (c): off by default.
    pub challenge: ChallengeConfig,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            warm_up: 0.0,
            until: None,
            last_layer: 3,
            corrupt_mixes: Vec::new(),
            prune_below: 1e-9,
            targets: TargetsConfig::default(),
            receivers: ReceiversConfig::default(),
            senders: SendersConfig::default(),
            challenge: ChallengeConfig::default(),
        }
    }
}

impl MetricsConfig {
    fn corrupt(&self) -> HashSet<Place> {
        self.corrupt_mixes
            .iter()
            .map(|m| Place::Mix {
                layer: m.layer,
                index: m.index,
            })
            .collect()
    }
}

/// When packets are chosen and scored.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    from: f64,
    until: Option<f64>,
}

impl Window {
    pub(crate) fn of(config: &MetricsConfig) -> Self {
        Window {
            from: config.warm_up,
            until: config.until,
        }
    }

    pub(crate) fn contains(self, at: f64) -> bool {
        at >= self.from && self.until.is_none_or(|until| at < until)
    }
}

/// A mix node, by layer and number within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixRef {
    /// 1, 2 or 3.
    pub layer: u8,
    /// Its number within the layer.
    pub index: u32,
}

/// Which packets are targets of (a): the real packets of `clients` sent after the warm-up, the
/// first `max` of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetsConfig {
    /// Measure (a). Default true.
    pub enabled: bool,
    /// Whose packets. Default client 0.
    pub clients: Vec<u32>,
    /// At most this many targets. Default 1,000.
    pub max: usize,
}

impl Default for TargetsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            clients: vec![0],
            max: 1000,
        }
    }
}

/// What the adversary sees of a gateway's downlink.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiversConfig {
    /// The downlink is shaped: a packet reaching a gateway could be going to any of its
    /// clients. Default false: the adversary sees which client got it.
    pub downlink_shaped: bool,
    /// For each gateway (by number), its clients; needed when shaped.
    pub gateway_clients: Vec<Vec<u32>>,
}

/// Metric (b), the distribution over senders.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendersConfig {
    /// Clients in the run; 0 turns (b) off (the default).
    pub clients: u32,
    /// Label only these clients (and score only their packets); empty: all, exact.
    pub sampled: Vec<u32>,
}

/// Metric (c): the two challenge senders.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChallengeConfig {
    /// Measure (c). Default false.
    pub enabled: bool,
    /// Sender A. Default client 0.
    pub a: u32,
    /// Sender B. Default client 1.
    pub b: u32,
}

impl Default for ChallengeConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            a: 0,
            b: 1,
        }
    }
}

/// All the metrics a [`MetricsConfig`] turns on.
#[derive(Debug)]
pub struct Metrics {
    targets: Option<TargetEntropy>,
    senders: Option<SenderEntropy>,
    challenge: Option<Unlinkability>,
}

/// The results, for the results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricsReport {
    /// (a) and the targets' recipients.
    pub targets: Option<TargetReport>,
    /// (b).
    pub senders: Option<SenderReport>,
    /// (c).
    pub challenge: Option<ChallengeReport>,
}

impl Metrics {
    /// The metrics `config` turns on.
    pub fn new(config: &MetricsConfig) -> Self {
        Self {
            targets: config.targets.enabled.then(|| TargetEntropy::new(config)),
            senders: (config.senders.clients > 0).then(|| SenderEntropy::new(config)),
            challenge: config.challenge.enabled.then(|| Unlinkability::new(config)),
        }
    }

    /// The results so far.
    pub fn report(&self) -> MetricsReport {
        MetricsReport {
            targets: self.targets.as_ref().map(TargetEntropy::report),
            senders: self.senders.as_ref().map(SenderEntropy::report),
            challenge: self.challenge.as_ref().map(Unlinkability::report),
        }
    }

    fn each(&mut self, mut f: impl FnMut(&mut dyn Observer)) {
        if let Some(m) = &mut self.targets {
            f(m);
        }
        if let Some(m) = &mut self.senders {
            f(m);
        }
        if let Some(m) = &mut self.challenge {
            f(m);
        }
    }
}

impl Observer for Metrics {
    fn sent(&mut self, at: f64, from: Place, packet: PacketId, origin: Origin) {
        self.each(|m| m.sent(at, from, packet, origin));
    }

    fn link(&mut self, at: f64, arrives: f64, from: Place, to: Place, packet: PacketId, size: u32) {
        self.each(|m| m.link(at, arrives, from, to, packet, size));
    }

    fn ended(&mut self, at: f64, place: Place, packet: PacketId, end: End) {
        self.each(|m| m.ended(at, place, packet, end));
    }
}
