//! The overview: the current epoch and its countdown, the active set by layer, the nodes, the
//! stake and its saturation, last epoch's rewards, the monitors' reliability over recent
//! epochs, the validators and the monitors.

use serde::Serialize;
use umbra_ledger::{Amount, Hash, NodeKind, PPM, Ppm, PublicKey};

use super::{Links, NodeRef, ratio_ppm};
use crate::snapshot::Snapshot;

/// The overview page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Overview {
    /// The chain.
    pub chain_id: String,
    /// The last block's height.
    pub height: u64,
    /// The last block's time (ms since the Unix epoch).
    pub block_time_ms: u64,
    /// The current epoch.
    pub epoch: EpochClock,
    /// The current active set.
    pub active_set: ActiveSetView,
    /// How many nodes there are.
    pub counts: NodeCounts,
    /// The stake of every node together.
    pub total_stake: Amount,
    /// The staking supply the saturation point is computed from.
    pub staking_supply: Amount,
    /// Total stake over the staking supply, in ppm.
    pub stake_share: u64,
    /// The stake at which a node is saturated.
    pub saturation_point: Amount,
    /// The reward pool left.
    pub reward_pool: Amount,
    /// Every token.
    pub supply: Amount,
    /// The rewards paid in the last epoch that ended.
    pub last_rewards: Option<RewardsPaid>,
    /// The monitors' verdicts per past epoch, oldest first.
    pub reliability: Vec<ReliabilityPoint>,
    /// The validators, from genesis, and whether each signed the current topology.
    pub validators: Vec<ValidatorStatus>,
    /// The monitors genesis names.
    pub monitors: Vec<MonitorStatus>,
}

/// The current epoch and how long it has left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EpochClock {
    /// Its number.
    pub number: u64,
    /// Its Sphinx key rotation.
    pub rotation: u32,
    /// When it started (ms since the Unix epoch).
    pub start_ms: u64,
    /// When it may end.
    pub end_ms: u64,
    /// Milliseconds until then, at the time the page was built (0 once due).
    pub remaining_ms: u64,
    /// Its reward budget.
    pub budget: Amount,
}

/// The active set by layer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ActiveSetView {
    /// Mix nodes of layers 1, 2 and 3.
    pub layers: [Vec<NodeRef>; 3],
    /// Gateways.
    pub gateways: Vec<NodeRef>,
}

/// Numbers of nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeCounts {
    /// Registered mix nodes.
    pub mix_nodes: usize,
    /// Registered gateways.
    pub gateways: usize,
    /// Nodes with a pledge.
    pub bonded: usize,
    /// Nodes in the active set.
    pub active: usize,
}

/// What an epoch paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RewardsPaid {
    /// The epoch.
    pub epoch: u64,
    /// To the operators.
    pub operators: Amount,
    /// To the delegators.
    pub delegators: Amount,
    /// Both.
    pub total: Amount,
    /// The epoch's budget.
    pub budget: Amount,
}

/// The monitors' verdict on one past epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ReliabilityPoint {
    /// The epoch.
    pub epoch: u64,
    /// The mean performance of the active nodes a monitor measured (none if none was).
    pub mean_performance: Option<Ppm>,
    /// The lowest of them.
    pub worst_performance: Option<Ppm>,
    /// How many active nodes a monitor measured.
    pub measured: usize,
    /// How many nodes were active.
    pub active: usize,
}

/// A validator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValidatorStatus {
    /// Its name in genesis.
    pub name: String,
    /// Its key.
    pub key: PublicKey,
    /// Its voting power.
    pub power: u64,
    /// Whether its signature is on the certified topology the validator serves (`None`
    /// before any topology was certified).
    pub signed_topology: Option<bool>,
}

/// A monitor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MonitorStatus {
    /// Its account.
    pub account: PublicKey,
    /// Whether it submitted scores in the current epoch so far.
    pub submitted_this_epoch: bool,
    /// The hash of its last evidence on the ledger, with its epoch.
    pub last_evidence: Option<(u64, Hash)>,
    /// Where its evidence is published, if the explorer was told.
    pub evidence_base: Option<String>,
}

impl Overview {
    /// The overview of `snapshot` at `now_ms`.
    pub fn build(snapshot: &Snapshot, links: &Links, now_ms: u64) -> Overview {
        let data = &snapshot.data;
        let epoch = &data.epoch;
        let refs = |ids: &[umbra_ledger::NodeId]| {
            ids.iter()
                .map(|&id| NodeRef::of(snapshot, id))
                .collect::<Vec<_>>()
        };
        let active_set = ActiveSetView {
            layers: [
                refs(&epoch.active.layers[0]),
                refs(&epoch.active.layers[1]),
                refs(&epoch.active.layers[2]),
            ],
            gateways: refs(&epoch.active.gateways),
        };
        let counts = NodeCounts {
            mix_nodes: count(snapshot, |node| node.info.kind == NodeKind::Mix),
            gateways: count(snapshot, |node| node.info.kind == NodeKind::Gateway),
            bonded: count(snapshot, |node| !node.pledge.is_zero()),
            active: count(snapshot, |node| node.active.is_some()),
        };
        let total_stake: Amount = data.nodes.iter().map(|node| node.stake).sum();
        let staking_supply = snapshot.genesis.params.staking_supply;
        let last_rewards = data.history.last().map(|report| {
            let operators: Amount = report.nodes.iter().map(|node| node.payout.operator).sum();
            let delegators: Amount = report.nodes.iter().map(|node| node.payout.delegators).sum();
            RewardsPaid {
                epoch: report.epoch,
                operators,
                delegators,
                total: operators + delegators,
                budget: report.budget,
            }
        });
        let reliability = data
            .history
            .iter()
            .map(|report| {
                let measured: Vec<u32> = report
                    .nodes
                    .iter()
                    .filter(|node| node.measured)
                    .map(|node| node.performance.0)
                    .collect();
                let sum: u64 = measured.iter().map(|&score| u64::from(score)).sum();
                ReliabilityPoint {
                    epoch: report.epoch,
                    mean_performance: (!measured.is_empty())
                        .then(|| Ppm((sum / measured.len() as u64) as u32)),
                    worst_performance: measured.iter().min().map(|&score| Ppm(score)),
                    measured: measured.len(),
                    active: report.nodes.len(),
                }
            })
            .collect();
        let signers: Option<Vec<PublicKey>> = data.topology.as_ref().map(|signed| {
            signed
                .certificate
                .signatures
                .iter()
                .map(|(key, _)| *key)
                .collect()
        });
        let validators = snapshot
            .genesis
            .validators
            .iter()
            .map(|validator| ValidatorStatus {
                name: validator.name.clone(),
                key: validator.key,
                power: validator.power,
                signed_topology: signers
                    .as_ref()
                    .map(|signers| signers.contains(&validator.key)),
            })
            .collect();
        let monitors = snapshot
            .monitors()
            .iter()
            .enumerate()
            .map(|(index, account)| MonitorStatus {
                account: *account,
                submitted_this_epoch: epoch
                    .performance
                    .values()
                    .any(|scores| scores.contains_key(&(index as u32))),
                last_evidence: data.history.iter().rev().find_map(|report| {
                    let submission = report
                        .monitors
                        .iter()
                        .find(|submission| submission.monitor == *account)?;
                    Some((report.epoch, submission.evidence))
                }),
                evidence_base: links.monitors.get(account).cloned(),
            })
            .collect();
        Overview {
            chain_id: data.status.chain_id.clone(),
            height: data.status.height,
            block_time_ms: data.status.time_ms,
            epoch: EpochClock {
                number: epoch.epoch,
                rotation: epoch.rotation,
                start_ms: epoch.start_ms,
                end_ms: epoch.end_ms,
                remaining_ms: epoch.end_ms.saturating_sub(now_ms),
                budget: epoch.budget,
            },
            active_set,
            counts,
            total_stake,
            staking_supply,
            stake_share: ratio_ppm(total_stake, staking_supply),
            saturation_point: snapshot.saturation_point(),
            reward_pool: data.status.reward_pool,
            supply: data.status.supply,
            last_rewards,
            reliability,
            validators,
            monitors,
        }
    }
}

fn count(snapshot: &Snapshot, keep: impl Fn(&umbra_ledger::api::NodeView) -> bool) -> usize {
    snapshot.data.nodes.iter().filter(|node| keep(node)).count()
}

/// `PPM` as a number, for charts' scales.
pub const FULL_SCORE: u32 = PPM.0;

#[cfg(test)]
mod tests {
    use umbra_ledger::NodeId;

    use super::*;
    use crate::model::fixture::{self, umb};

    #[test]
    fn the_overview_holds_the_ledgers_figures() {
        let snapshot = fixture::snapshot();
        let links = Links {
            monitors: [(fixture::monitors()[0], "http://127.0.0.1:8090".to_owned())].into(),
            validator: "http://127.0.0.1:7000".into(),
        };
        let overview = Overview::build(&snapshot, &links, 1_150_000);
        assert_eq!(overview.epoch.number, 3);
        assert_eq!(overview.epoch.remaining_ms, 30_000);
        assert_eq!(overview.height, 120);
        assert_eq!(overview.active_set.layers[1][0].id, NodeId(2));
        assert_eq!(overview.active_set.layers[1][0].moniker, "bob");
        assert_eq!(overview.active_set.gateways[0].id, NodeId(5));
        assert_eq!(
            overview.counts,
            NodeCounts {
                mix_nodes: 4,
                gateways: 1,
                bonded: 5,
                active: 4
            }
        );
        let stake: Amount = snapshot.data.nodes.iter().map(|node| node.stake).sum();
        assert_eq!(overview.total_stake, stake);
        assert_eq!(overview.saturation_point, umb(10_000));
        // epoch 2 paid 10 + 12 + 2 + 11 UMB to operators, 6.06 + 0.9 to delegators
        let last = overview.last_rewards.unwrap();
        assert_eq!(last.epoch, 2);
        assert_eq!(last.operators, umb(35));
        assert_eq!(last.delegators, Amount(6_960_000));
        assert_eq!(last.total, Amount(41_960_000));
        assert_eq!(overview.reliability.len(), 2);
        // (950 000 + 990 000 + 800 000 + 1 000 000) / 4
        assert_eq!(overview.reliability[1].mean_performance, Some(Ppm(935_000)));
        assert_eq!(
            overview.reliability[1].worst_performance,
            Some(Ppm(800_000))
        );
        assert_eq!(overview.validators[0].signed_topology, Some(true));
        assert_eq!(overview.validators[1].signed_topology, Some(false));
        assert!(overview.monitors[0].submitted_this_epoch);
        assert!(!overview.monitors[1].submitted_this_epoch);
        assert_eq!(
            overview.monitors[0].last_evidence,
            Some((2, Hash(fixture::evidence().hash().0)))
        );
        assert_eq!(overview.monitors[1].last_evidence, Some((1, Hash([2; 32]))));
        assert_eq!(
            overview.monitors[0].evidence_base.as_deref(),
            Some("http://127.0.0.1:8090")
        );
    }
}
