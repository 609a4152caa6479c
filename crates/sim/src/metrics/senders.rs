//! Metric (b): for each real packet delivered, the adversary's distribution over which client
//! sent it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::flow::Flow;
use super::summary::{Guess, score};
use super::targets::GuessReport;
use super::{MetricsConfig, SendersConfig, Window};
use crate::trace::{End, Observer, Origin, PacketId, Place};

/// Labels every packet with its sender (uniform prior: each packet is one-hot on the client
/// that made it) and carries the labels through the pools (see [`crate::metrics`]) — the
/// `sender_estimates` of Piotrowska's simulator, there over three labels (`Other, A, B`), here
/// over clients.
///
/// # Cost, and the choice made
///
/// A pool's vector over senders holds about one entry per client that sent through it, and a
/// leaving packet copies it: O(labelled clients) per hop. With every client labelled (the
/// default, [`SendersConfig::sampled`] empty) this is exact, and costs about `N` entries per
/// hop — fine for 100 clients (a few hundred million entry copies for 100 clients × 60 s ×
/// 55 packets/s × 5 hops), too slow for 1,000. For large `N`, label only a sample of `L`
/// clients: the others share one label, their mass is taken as spread evenly over them, and
/// only packets of sampled clients are scored. The probability given to the true sender is then
/// still exact; the entropy is an upper bound (evening out the unlabelled clients' shares can
/// only raise it), and the top guess counts the unlabelled clients as tied at their average.
///
/// Packets made by gateways (acks) and mixes (their loops) carry a label of their own, "not a
/// client": a delivered real message certainly came from a client, so the distribution is
/// normalised over the clients' mass. Entries at or below [`MetricsConfig::prune_below`] are
/// dropped as packets leave pools; what each scored packet lost so is exactly `1 − Σ p`, reported
/// as [`SenderReport::pruned_mass_max`]: every entry before normalisation is at most that
/// below its exact value.
#[derive(Debug)]
pub struct SenderEntropy {
    window: Window,
    clients: u32,
    /// Client → label; clients not in it share `other`.
    label_of: HashMap<u32, u32>,
    other: u32,
    not_client: u32,
    flow: Flow,
    scored: HashMap<PacketId, u32>,
    guesses: Vec<Guess>,
    pruned_max: f64,
    unscorable: u64,
}

/// What [`SenderEntropy`] found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SenderReport {
    /// Real packets delivered and scored.
    pub messages: usize,
    /// The distributions over senders, scored at the true sender.
    pub senders: Option<GuessReport>,
    /// The largest mass a scored packet lost to pruning (each entry, before normalisation over
    /// the clients, is at most this below its exact value).
    pub pruned_mass_max: f64,
    /// Delivered real packets whose vector held no client's mass (all of it pruned).
    pub unscorable: u64,
    /// Events that broke the trace's contract (a packet leaving, or ending in, an empty pool);
    /// 0 in a sound run.
    pub anomalies: u64,
}

impl SenderEntropy {
    /// Labels the clients of `config.senders`.
    pub fn new(config: &MetricsConfig) -> Self {
        let SendersConfig { clients, sampled } = &config.senders;
        let label_of: HashMap<u32, u32> = if sampled.is_empty() {
            (0..*clients).map(|c| (c, c)).collect()
        } else {
            sampled
                .iter()
                .enumerate()
                .map(|(i, &c)| (c, i as u32))
                .collect()
        };
        let other = label_of.len() as u32;
        Self {
            window: Window::of(config),
            clients: *clients,
            label_of,
            other,
            not_client: other + 1,
            flow: Flow::new(config.prune_below, config.corrupt()),
            scored: HashMap::new(),
            guesses: Vec::new(),
            pruned_max: 0.0,
            unscorable: 0,
        }
    }

    fn label(&self, from: Place) -> u32 {
        match from {
            Place::Client(c) => self.label_of.get(&c).copied().unwrap_or(self.other),
            Place::Gateway(_) | Place::Mix { .. } => self.not_client,
        }
    }

    fn score(&mut self, packet: PacketId, truth: u32) {
        let labels = self.flow.labels(packet);
        let total: f64 = labels.iter().map(|e| e.1).sum();
        self.pruned_max = self.pruned_max.max(1.0 - total);
        let unlabelled = f64::from(self.clients.saturating_sub(self.other));
        let cells = labels
            .iter()
            .filter(|e| e.0 != self.not_client)
            .map(|&(l, p)| {
                if l == self.other {
                    (p / unlabelled.max(1.0), unlabelled, false)
                } else {
                    (p, 1.0, l == truth)
                }
            });
        match score(cells) {
            Some(g) => self.guesses.push(g),
            None => self.unscorable += 1,
        }
    }

    /// The results so far.
    pub fn report(&self) -> SenderReport {
        SenderReport {
            messages: self.guesses.len(),
            senders: GuessReport::of(&self.guesses),
            pruned_mass_max: self.pruned_max,
            unscorable: self.unscorable,
            anomalies: self.flow.anomalies,
        }
    }
}

impl Observer for SenderEntropy {
    fn sent(&mut self, at: f64, from: Place, packet: PacketId, origin: Origin) {
        let label = self.label(from);
        if matches!(origin, Origin::Real { .. }) && self.window.contains(at) && label < self.other {
            self.scored.insert(packet, label);
        }
        self.flow.start(at, from, packet, [(label, 1.0)]);
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
