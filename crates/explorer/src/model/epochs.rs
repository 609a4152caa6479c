//! The epochs: the current one and each past one the ledger keeps, with its active set, the
//! seed it was drawn with, the rewards it paid, the monitors' submissions and who signed its
//! topology.
//!
//! The ledger's epoch reports do not keep the seed or the topology's signatures; the explorer
//! records them for the epochs it saw while they were current, so older epochs show them as
//! unknown.

use serde::Serialize;
use umbra_ledger::{Amount, Hash, NodeId, PublicKey};

use super::Links;
use crate::snapshot::Snapshot;

/// Past epochs on one page: a day of hour-long epochs. Each lists its whole active set, so a
/// page of a ledger's full week (168 epochs) of a large network would weigh megabytes.
pub const EPOCHS_PER_PAGE: usize = 24;

/// The epochs page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EpochsPage {
    /// The current epoch (its rewards are not paid yet).
    pub current: EpochRow,
    /// The past epochs of this page, newest first.
    pub past: Vec<EpochRow>,
    /// This page's number, from 1 (the newest epochs).
    pub page: usize,
    /// How many pages the past epochs the ledger keeps fill (at least 1).
    pub pages: usize,
    /// How many past epochs the ledger keeps.
    pub total_past: usize,
}

/// One epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EpochRow {
    /// The epoch.
    pub epoch: u64,
    /// Its budget.
    pub budget: Amount,
    /// Its active mix nodes by layer.
    pub layers: [Vec<NodeId>; 3],
    /// Its active gateways.
    pub gateways: Vec<NodeId>,
    /// The seed its active set was drawn with, if known.
    pub seed: Option<Hash>,
    /// Who signed its topology, if known (names from genesis).
    pub signers: Option<Vec<Signer>>,
    /// What it paid operators (past epochs).
    pub operator_rewards: Amount,
    /// What it paid delegators (past epochs).
    pub delegator_rewards: Amount,
    /// How many active nodes a monitor measured (past epochs).
    pub measured: usize,
    /// The monitors' submissions (past epochs).
    pub monitors: Vec<Submission>,
}

/// A validator that signed a topology.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Signer {
    /// Its key.
    pub key: PublicKey,
    /// Its name in genesis.
    pub name: String,
}

/// A monitor's submission for an epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Submission {
    /// The monitor.
    pub monitor: PublicKey,
    /// Its evidence's hash.
    pub evidence: Hash,
    /// Where the evidence is published, if known.
    pub evidence_url: Option<String>,
    /// How many nodes it scored.
    pub scored: usize,
}

impl EpochsPage {
    /// Page `page` (from 1; past the last, the last) of the epochs of `snapshot`: the current
    /// epoch, then [`EPOCHS_PER_PAGE`] past ones, newest first.
    pub fn build(snapshot: &Snapshot, links: &Links, page: usize) -> EpochsPage {
        let data = &snapshot.data;
        let signers = |keys: &[PublicKey]| {
            keys.iter()
                .map(|key| Signer {
                    key: *key,
                    name: snapshot
                        .genesis
                        .validators
                        .iter()
                        .find(|validator| validator.key == *key)
                        .map(|validator| validator.name.clone())
                        .unwrap_or_default(),
                })
                .collect::<Vec<_>>()
        };
        let epoch = &data.epoch;
        let current_signers = data
            .topology
            .as_ref()
            .filter(|signed| signed.document.epoch == epoch.epoch)
            .map(|signed| {
                let keys: Vec<PublicKey> = signed
                    .certificate
                    .signatures
                    .iter()
                    .map(|(key, _)| *key)
                    .collect();
                signers(&keys)
            });
        let current = EpochRow {
            epoch: epoch.epoch,
            budget: epoch.budget,
            layers: epoch.active.layers.clone(),
            gateways: epoch.active.gateways.clone(),
            seed: Some(epoch.seed),
            signers: current_signers,
            operator_rewards: Amount::ZERO,
            delegator_rewards: Amount::ZERO,
            measured: 0,
            monitors: Vec::new(),
        };
        let total_past = data.history.len();
        let pages = total_past.div_ceil(EPOCHS_PER_PAGE).max(1);
        let page = page.clamp(1, pages);
        let past = data
            .history
            .iter()
            .rev()
            .skip((page - 1) * EPOCHS_PER_PAGE)
            .take(EPOCHS_PER_PAGE)
            .map(|report| {
                let seen = snapshot.seen.get(&report.epoch);
                let mut layers: [Vec<NodeId>; 3] = Default::default();
                let mut gateways = Vec::new();
                for entry in &report.nodes {
                    match entry.layer {
                        Some(layer @ 1..=3) => layers[usize::from(layer - 1)].push(entry.node),
                        _ => gateways.push(entry.node),
                    }
                }
                EpochRow {
                    epoch: report.epoch,
                    budget: report.budget,
                    layers,
                    gateways,
                    seed: seen.and_then(|seen| seen.seed),
                    signers: seen
                        .filter(|seen| !seen.signers.is_empty())
                        .map(|seen| signers(&seen.signers)),
                    operator_rewards: report.nodes.iter().map(|node| node.payout.operator).sum(),
                    delegator_rewards: report.nodes.iter().map(|node| node.payout.delegators).sum(),
                    measured: report.nodes.iter().filter(|node| node.measured).count(),
                    monitors: report
                        .monitors
                        .iter()
                        .map(|submission| Submission {
                            monitor: submission.monitor,
                            evidence: submission.evidence,
                            evidence_url: links.evidence_url(&submission.monitor, report.epoch),
                            scored: submission.scores.len(),
                        })
                        .collect(),
                }
            })
            .collect();
        EpochsPage {
            current,
            past,
            page,
            pages,
            total_past,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::{self, umb};

    #[test]
    fn epochs_newest_first_with_what_was_seen() {
        let snapshot = fixture::snapshot();
        let page = EpochsPage::build(&snapshot, &Links::default(), 1);
        assert_eq!((page.page, page.pages, page.total_past), (1, 1, 2));
        assert_eq!(page.current.epoch, 3);
        assert_eq!(page.current.seed, Some(Hash([9; 32])));
        let current_signers = page.current.signers.as_ref().unwrap();
        assert_eq!(current_signers.len(), 1);
        assert_eq!(current_signers[0].name, "one");
        let epochs: Vec<u64> = page.past.iter().map(|row| row.epoch).collect();
        assert_eq!(epochs, [2, 1]);
        let two = &page.past[0];
        assert_eq!(
            two.layers,
            [vec![NodeId(1)], vec![NodeId(2)], vec![NodeId(3)]]
        );
        assert_eq!(two.gateways, [NodeId(5)]);
        assert_eq!(two.operator_rewards, umb(35));
        assert_eq!(two.delegator_rewards, Amount(6_960_000));
        assert_eq!(two.seed, Some(Hash([8; 32])));
        assert_eq!(two.signers.as_ref().unwrap().len(), 2);
        assert_eq!(two.monitors.len(), 1);
        assert_eq!(two.monitors[0].scored, 1);
        // epoch 1 ended before the explorer looked
        assert_eq!(page.past[1].seed, None);
        assert_eq!(page.past[1].signers, None);
    }

    #[test]
    fn past_epochs_come_a_page_at_a_time_newest_first() {
        let mut snapshot = fixture::snapshot();
        let template = snapshot.data.history[1].clone();
        snapshot.data.history = (0..60)
            .map(|epoch| {
                let mut report = template.clone();
                report.epoch = epoch;
                report
            })
            .collect();
        let snapshot = crate::snapshot::Snapshot::new(
            std::sync::Arc::clone(&snapshot.genesis),
            snapshot.data.clone(),
            snapshot.seen.clone(),
            snapshot.fetched_ms,
            snapshot.validator.clone(),
        );
        let links = Links::default();
        let numbers = |page: &EpochsPage| page.past.iter().map(|row| row.epoch).collect::<Vec<_>>();
        let first = EpochsPage::build(&snapshot, &links, 1);
        assert_eq!((first.page, first.pages, first.total_past), (1, 3, 60));
        assert_eq!(numbers(&first), (36..60).rev().collect::<Vec<_>>());
        let last = EpochsPage::build(&snapshot, &links, 3);
        assert_eq!(numbers(&last), (0..12).rev().collect::<Vec<_>>());
        // out of range: the nearest page, and the current epoch on every page
        assert_eq!(EpochsPage::build(&snapshot, &links, 9).page, 3);
        assert_eq!(EpochsPage::build(&snapshot, &links, 0).page, 1);
        assert_eq!(last.current, first.current);
    }
}
