//! A node's page: its keys and addresses, what it is worth to delegate to, and its record —
//! layer, performance, rewards and each monitor's score with the evidence behind it, epoch
//! by epoch — so an operator sees why its score and rewards are what they are.

use serde::Serialize;
use umbra_ledger::state::Pending;
use umbra_ledger::{Amount, Hash, Key32, NodeId, Ppm, PublicKey};

use super::evidence::{EvidenceSection, Evidences};
use super::{Links, NodeSummary, earned_per_thousand};
use crate::snapshot::Snapshot;

/// A node's page.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodePage {
    /// What the tables show of it.
    pub summary: NodeSummary,
    /// Its static Noise key.
    pub noise_key: Key32,
    /// Its Sphinx keys by key rotation.
    pub sphinx_keys: Vec<(u32, Key32)>,
    /// Where other nodes reach it.
    pub mix_address: String,
    /// Where clients connect (gateways).
    pub client_address: Option<String>,
    /// The performance below which a node is left out of the active set.
    pub threshold: Ppm,
    /// The scores monitors submitted for it so far in the current epoch.
    pub current_scores: Vec<ScoreView>,
    /// The past epochs it was active in, newest first.
    pub history: Vec<NodeEpochRow>,
    /// Why its score is what it is: each monitor's evidence of its latest finished epoch.
    pub evidence: EvidenceSection,
    /// The delegations to it.
    pub delegations: Vec<DelegationRow>,
    /// What changes for it at the end of the epoch.
    pub pending: Vec<PendingChange>,
}

/// One monitor's score for the node in one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScoreView {
    /// The monitor's account.
    pub monitor: PublicKey,
    /// Its score.
    pub score: Ppm,
    /// The hash of the evidence it submitted with it (none for the current epoch's, which
    /// the ledger records per monitor but publishes with the epoch's report).
    pub evidence: Option<Hash>,
    /// Where the monitor publishes that evidence, if the explorer knows the monitor.
    pub evidence_url: Option<String>,
}

/// One past epoch of the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeEpochRow {
    /// The epoch.
    pub epoch: u64,
    /// Its layer (mix nodes).
    pub layer: Option<u8>,
    /// The performance its reward used.
    pub performance: Ppm,
    /// Whether a monitor measured it (otherwise its last performance was used).
    pub measured: bool,
    /// Its stake.
    pub stake: Amount,
    /// Its pledge.
    pub pledge: Amount,
    /// The delegations.
    pub delegations: Amount,
    /// What the operator earned.
    pub operator_reward: Amount,
    /// What the delegators earned together.
    pub delegator_reward: Amount,
    /// What 1,000 UMB delegated earned in the epoch.
    pub per_thousand: Amount,
    /// Each monitor's score.
    pub scores: Vec<ScoreView>,
}

/// A delegation to the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DelegationRow {
    /// The delegating account.
    pub delegator: PublicKey,
    /// What was delegated.
    pub amount: Amount,
    /// What it is worth now.
    pub value: Amount,
    /// Its rewards so far: value − amount.
    pub rewards: Amount,
}

/// A change waiting for the epoch's end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum PendingChange {
    /// A delegation joins.
    Delegate {
        /// Who.
        delegator: PublicKey,
        /// How much.
        amount: Amount,
    },
    /// A delegation leaves.
    Undelegate {
        /// Who.
        delegator: PublicKey,
    },
    /// The node leaves.
    Unbond,
}

impl PendingChange {
    /// The change `pending` makes to node `id`, if it concerns it.
    pub fn of(pending: &Pending, id: NodeId) -> Option<PendingChange> {
        match *pending {
            Pending::Delegate {
                delegator,
                node,
                amount,
            } if node == id => Some(PendingChange::Delegate { delegator, amount }),
            Pending::Undelegate { delegator, node } if node == id => {
                Some(PendingChange::Undelegate { delegator })
            }
            Pending::Unbond { node } if node == id => Some(PendingChange::Unbond),
            _ => None,
        }
    }
}

impl NodePage {
    /// Node `id`'s page in `snapshot`, if it is registered, without the monitors' evidence
    /// (its section says none was fetched).
    pub fn build(snapshot: &Snapshot, links: &Links, id: NodeId) -> Option<NodePage> {
        NodePage::build_with(snapshot, links, &Evidences::new(), id)
    }

    /// Node `id`'s page in `snapshot`, if it is registered, with what `evidences` holds of
    /// the monitors' evidence.
    pub fn build_with(
        snapshot: &Snapshot,
        links: &Links,
        evidences: &Evidences,
        id: NodeId,
    ) -> Option<NodePage> {
        let node = snapshot.node(id)?;
        let monitors = snapshot.monitors();
        let current_scores = snapshot
            .data
            .epoch
            .performance
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|(&index, &score)| {
                Some(ScoreView {
                    monitor: *monitors.get(index as usize)?,
                    score,
                    evidence: None,
                    evidence_url: None,
                })
            })
            .collect();
        let history = snapshot
            .history_of(id)
            .rev()
            .map(|(report, entry)| NodeEpochRow {
                epoch: report.epoch,
                layer: entry.layer,
                performance: entry.performance,
                measured: entry.measured,
                stake: entry.stake,
                pledge: entry.pledge,
                delegations: entry.delegations,
                operator_reward: entry.payout.operator,
                delegator_reward: entry.payout.delegators,
                per_thousand: earned_per_thousand(report, entry),
                scores: report
                    .monitors
                    .iter()
                    .filter_map(|submission| {
                        let &(_, score) = submission.scores.iter().find(|(node, _)| *node == id)?;
                        Some(ScoreView {
                            monitor: submission.monitor,
                            score,
                            evidence: Some(submission.evidence),
                            evidence_url: links.evidence_url(&submission.monitor, report.epoch),
                        })
                    })
                    .collect(),
            })
            .collect();
        let delegations = snapshot
            .delegations_to(id)
            .map(|delegation| DelegationRow {
                delegator: delegation.delegator,
                amount: delegation.amount,
                value: delegation.value,
                rewards: Amount(delegation.value.0.saturating_sub(delegation.amount.0)),
            })
            .collect();
        Some(NodePage {
            summary: NodeSummary::of(snapshot, node),
            noise_key: node.info.noise_key,
            sphinx_keys: node.sphinx_keys.iter().map(|(&r, &k)| (r, k)).collect(),
            mix_address: node.info.mix_address.to_string(),
            client_address: node.info.client_address.map(|address| address.to_string()),
            threshold: snapshot.genesis.params.performance_threshold,
            current_scores,
            history,
            evidence: EvidenceSection::build(snapshot, links, evidences, id),
            delegations,
            pending: snapshot
                .data
                .epoch
                .pending
                .iter()
                .filter_map(|pending| PendingChange::of(pending, id))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixture::{self, umb};

    fn links() -> Links {
        Links {
            monitors: [(fixture::monitors()[0], "http://127.0.0.1:8090/".to_owned())].into(),
            validator: "http://127.0.0.1:7000".into(),
        }
    }

    #[test]
    fn a_nodes_record_is_the_ledgers_epoch_by_epoch() {
        let snapshot = fixture::snapshot();
        let page = NodePage::build(&snapshot, &links(), NodeId(1)).unwrap();
        assert_eq!(page.summary.moniker, "alice");
        assert_eq!(page.mix_address, "127.0.0.1:1701");
        assert_eq!(page.threshold, Ppm(800_000));
        // newest first, with the figures of each report
        let epochs: Vec<u64> = page.history.iter().map(|row| row.epoch).collect();
        assert_eq!(epochs, [2, 1]);
        let latest = &page.history[0];
        assert_eq!(latest.layer, Some(1));
        assert_eq!(latest.stake, umb(1_010) + umb(303));
        assert_eq!(latest.operator_reward, umb(10));
        assert_eq!(latest.delegator_reward, Amount(6_060_000));
        assert_eq!(latest.per_thousand, umb(20));
        // epoch 2: only monitor 1 submitted, and not for node 1
        assert!(latest.scores.is_empty());
        // epoch 1: both monitors scored it; only the first's evidence has a known home
        let first = &page.history[1];
        assert_eq!(first.scores.len(), 2);
        assert_eq!(first.scores[0].score, Ppm(950_000));
        assert_eq!(first.scores[0].evidence, Some(Hash([1; 32])));
        assert_eq!(
            first.scores[0].evidence_url.as_deref(),
            Some("http://127.0.0.1:8090/evidence/1")
        );
        assert_eq!(first.scores[1].score, Ppm(960_000));
        assert_eq!(first.scores[1].evidence_url, None);
        // this epoch so far: monitor 1 said 94 %
        assert_eq!(page.current_scores.len(), 1);
        assert_eq!(page.current_scores[0].monitor, fixture::monitors()[0]);
        assert_eq!(page.current_scores[0].score, Ppm(940_000));
        // its delegation, with its rewards
        assert_eq!(page.delegations.len(), 1);
        assert_eq!(page.delegations[0].rewards, Amount(9_060_000));
    }

    #[test]
    fn pending_changes_and_unknown_nodes() {
        let snapshot = fixture::snapshot();
        let bob = NodePage::build(&snapshot, &links(), NodeId(2)).unwrap();
        assert_eq!(
            bob.pending,
            [PendingChange::Delegate {
                delegator: fixture::delegator(),
                amount: umb(50)
            }]
        );
        assert!(NodePage::build(&snapshot, &links(), NodeId(77)).is_none());
    }
}
