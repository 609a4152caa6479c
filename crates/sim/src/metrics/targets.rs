//! Metric (a): the entropy of each target packet over the packets leaving the last layer,
//! exactly as Piotrowska's simulator computes it; and the same targets' recipients.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::flow::{Flow, add_at};
use super::summary::{Guess, Summary, plogp, score};
use super::{MetricsConfig, ReceiversConfig, TargetsConfig, Window};
use crate::trace::{End, Observer, Origin, PacketId, Place};

/// Follows target packets (each its own label) through the pools, and scores them where they
/// leave the last layer and where they reach a client.
///
/// # What is reproduced from `aniampio/Simulator`
///
/// * A target's vector is one-hot on its own index (`Node.simulate_adding_packets_into_buffer`
///   sets `pkt.probability_mass[i] = 1.0`); every other packet carries zeros.
/// * Pools: see [`crate::metrics`] (`Node.add_pkt_in_pool`, `Node.forward_packet`).
/// * At the last mix of a route, each leaving packet adds `−p·log2 p` to the running entropy of
///   every target with `p ≠ 0` (`Node.update_entropy`, called from `forward_packet` when
///   `self.id == packet.route[-2].id`); a target's entropy is that sum at the end of the run
///   (`simulation_modes/test_mode.py` logs `env.entropy`), and the figure she reports is the
///   mean over targets (`metrics/anonymity_metrics.py`, `getEntropy`). Here "the last mix" is
///   any mix of layer [`MetricsConfig::last_layer`], and every packet leaving it counts.
///
/// Her simulator has no gateways, mix loops or packets ending inside a mix; here gateways are
/// transparent, a mix's own packet enters its pool when made, and a packet ending inside a mix
/// leaves the pool without a departure (its share of the mass is lost: see
/// [`TargetReport::exit_mass`]).
///
/// # Pruning
///
/// Entries at or below [`MetricsConfig::prune_below`] are dropped when a packet leaves a pool
/// (her simulator keeps them all: it carries a dense vector over all targets in every packet).
/// With `M` the mass so dropped for a target and `E` the packets that left the last layer, the
/// exact entropy `H` and ours `Ĥ` satisfy `Ĥ − 1.443·M ≤ H ≤ Ĥ + M·log2(E/M)`: the dropped mass
/// would have reached at most `E` exit packets (at most `M·log2(E/M)` bits), `−x·log2 x` is
/// subadditive, and its slope is at least `−log2 e`. The largest such bound over targets is
/// [`TargetReport::entropy_error_bound`].
///
/// # Recipients
///
/// For each target, the adversary's distribution over which client received it: with the
/// downlink not shaped, a packet delivered to client `c` gives `c` its whole vector (the
/// adversary sees the frame leave the gateway as the packet arrives); with it shaped, a packet
/// reaching gateway `g` from a mix spreads its vector evenly over `g`'s clients. The
/// distribution is normalised over the mass that reached clients (the adversary knows a target
/// was delivered, so it is not among what was dropped).
#[derive(Debug)]
pub struct TargetEntropy {
    config: TargetsConfig,
    receivers: ReceiversConfig,
    window: Window,
    last_layer: u8,
    flow: Flow,
    targets: Vec<Target>,
    entropy: Vec<f64>,
    exit_mass: Vec<f64>,
    exits: u64,
    /// Per target: mass by client (not shaped) or by gateway (shaped).
    received: Vec<HashMap<u32, f64>>,
}

#[derive(Clone, Copy, Debug)]
struct Target {
    recipient: u32,
}

/// What [`TargetEntropy`] found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    /// Targets chosen.
    pub targets: usize,
    /// Entropy (bits) of each target over the packets leaving the last layer (her metric; her
    /// figure is the mean).
    pub entropy: Option<Summary>,
    /// Each target's probability mass that left the last layer (1 unless some of it was pruned,
    /// ended inside a mix, or was still inside when the run stopped).
    pub exit_mass: Option<Summary>,
    /// Packets that left the last layer while the metric ran.
    pub exits: u64,
    /// The largest bound over targets on the error pruning can cause in the entropy (bits).
    pub entropy_error_bound: f64,
    /// Recipients: each target scored at its true recipient (targets none of whose mass reached
    /// a client are left out, and so is mass reaching a gateway missing from
    /// [`ReceiversConfig::gateway_clients`] when the downlink is shaped).
    pub recipients: Option<GuessReport>,
    /// Events that broke the trace's contract (a packet leaving, or ending in, an empty pool);
    /// 0 in a sound run.
    pub anomalies: u64,
}

/// A distribution over candidates (senders or recipients), scored against the truth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GuessReport {
    /// Shannon entropy of the distribution, bits.
    pub entropy: Summary,
    /// The probability it gives the true candidate.
    pub truth_probability: Summary,
    /// The chance that the adversary's top guess is right (a tie among `k` counts `1/k`), mean
    /// over messages.
    pub top_guess_right: f64,
}

impl GuessReport {
    pub(crate) fn of(guesses: &[Guess]) -> Option<Self> {
        let values = |f: fn(&Guess) -> f64| guesses.iter().map(f).collect::<Vec<_>>();
        Some(Self {
            entropy: Summary::of(&values(|g| g.entropy))?,
            truth_probability: Summary::of(&values(|g| g.truth))?,
            top_guess_right: Summary::of(&values(|g| g.top_right))?.mean,
        })
    }
}

impl TargetEntropy {
    /// Follows targets chosen by `config.targets`.
    pub fn new(config: &MetricsConfig) -> Self {
        Self {
            config: config.targets.clone(),
            receivers: config.receivers.clone(),
            window: Window::of(config),
            last_layer: config.last_layer,
            flow: Flow::new(config.prune_below, config.corrupt()),
            targets: Vec::new(),
            entropy: Vec::new(),
            exit_mass: Vec::new(),
            exits: 0,
            received: Vec::new(),
        }
    }

    fn is_target(&self, at: f64, from: Place, origin: Origin) -> Option<u32> {
        let Place::Client(client) = from else {
            return None;
        };
        let Origin::Real { to, .. } = origin else {
            return None;
        };
        let chosen = self.window.contains(at)
            && self.targets.len() < self.config.max
            && self.config.clients.contains(&client);
        chosen.then_some(to)
    }

    /// The results so far.
    pub fn report(&self) -> TargetReport {
        let n = self.targets.len();
        let mass = |v: &[f64], i: usize| v.get(i).copied().unwrap_or(0.0);
        let bound = (0..n)
            .map(|i| error_bound(mass(&self.flow.pruned, i), self.exits))
            .fold(0.0, f64::max);
        let recipients: Vec<Guess> = (0..n).filter_map(|i| self.score_recipient(i)).collect();
        TargetReport {
            targets: n,
            entropy: Summary::of(&self.entropy[..n]),
            exit_mass: Summary::of(&self.exit_mass[..n]),
            exits: self.exits,
            entropy_error_bound: bound,
            recipients: GuessReport::of(&recipients),
            anomalies: self.flow.anomalies,
        }
    }

    fn score_recipient(&self, i: usize) -> Option<Guess> {
        let truth = self.targets[i].recipient;
        let received = &self.received[i];
        if !self.receivers.downlink_shaped {
            return score(received.iter().map(|(&c, &w)| (w, 1.0, c == truth)));
        }
        let clients = &self.receivers.gateway_clients;
        score(received.iter().filter_map(|(&g, &w)| {
            let of_g = clients.get(g as usize).filter(|c| !c.is_empty())?;
            let k = of_g.len() as f64;
            Some((w / k, k, of_g.contains(&truth)))
        }))
    }
}

/// The bound on the entropy error from pruned mass `m` with `exits` exit packets.
fn error_bound(m: f64, exits: u64) -> f64 {
    if m <= 0.0 {
        return 0.0;
    }
    let spread = m * ((exits.max(1) as f64) / m).log2();
    (std::f64::consts::LOG2_E * m).max(spread)
}

impl Observer for TargetEntropy {
    fn sent(&mut self, at: f64, from: Place, packet: PacketId, origin: Origin) {
        let label = self.is_target(at, from, origin).map(|recipient| {
            self.targets.push(Target { recipient });
            self.entropy.push(0.0);
            self.exit_mass.push(0.0);
            self.received.push(HashMap::new());
            let label = (self.targets.len() - 1) as u32;
            (label, 1.0)
        });
        self.flow.start(at, from, packet, label);
    }

    fn link(&mut self, at: f64, arrives: f64, from: Place, to: Place, packet: PacketId, _: u32) {
        let labels = self.flow.hop(at, arrives, from, to, packet);
        if matches!(from, Place::Mix { layer, .. } if layer == self.last_layer) {
            self.exits += 1;
            for &(t, p) in labels {
                add_at(&mut self.entropy, t, plogp(p));
                add_at(&mut self.exit_mass, t, p);
            }
        }
        if let (true, Place::Mix { .. }, Place::Gateway(g)) =
            (self.receivers.downlink_shaped, from, to)
        {
            for &(t, p) in labels {
                if let Some(r) = self.received.get_mut(t as usize) {
                    *r.entry(g).or_default() += p;
                }
            }
        }
    }

    fn ended(&mut self, at: f64, place: Place, packet: PacketId, end: End) {
        if let (false, End::Delivered(c)) = (self.receivers.downlink_shaped, end) {
            for &(t, p) in self.flow.labels(packet) {
                if let Some(r) = self.received.get_mut(t as usize) {
                    *r.entry(c).or_default() += p;
                }
            }
        }
        self.flow.end(at, place, packet);
    }
}
