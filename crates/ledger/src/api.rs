//! The validator API's JSON types: what `GET /accounts/{key}`, `GET /nodes`,
//! `GET /nodes/{id}/performance`, `GET /tx/{hash}` and `POST /tx` answer. The validator serves them; `umbra-net`'s `LedgerClient` reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rewards::Payout;
use crate::state::State;
use crate::{Account, Amount, Hash, Key32, NodeId, NodeInfo, Ppm, PublicKey, TxError};

/// An account as `GET /accounts/{key}` describes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountView {
    /// The account.
    pub address: PublicKey,
    /// Balance and nonce.
    #[serde(flatten)]
    pub account: Account,
    /// The nonce to give the next transaction (counting ones waiting in the mempool).
    pub next_nonce: u64,
}

/// A registered node as `GET /nodes` and `GET /nodes/{id}` describe it (the fields a node and
/// its operator need).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeView {
    /// Its number.
    pub id: NodeId,
    /// The owning account.
    pub owner: PublicKey,
    /// What it registered.
    pub info: NodeInfo,
    /// The operator's pledge.
    pub pledge: Amount,
    /// Whether it leaves at the next epoch boundary.
    #[serde(default)]
    pub unbonding: bool,
    /// Its Sphinx keys by key rotation.
    #[serde(default)]
    pub sphinx_keys: BTreeMap<u32, Key32>,
}

/// A transaction's fate, as `GET /tx/{hash}` tells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxStatus {
    /// In the mempool.
    Pending,
    /// In a block.
    Committed {
        /// The block.
        height: u64,
        /// What the ledger said: `None` if applied, the error if refused.
        error: Option<TxError>,
        /// The error in words.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

/// The answer to `POST /tx`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Submitted {
    /// The transaction's hash.
    pub hash: Hash,
}

/// An error answer of the API.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// What is wrong, in words.
    pub error: String,
    /// The ledger's refusal, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<TxError>,
}

/// One monitor's score for a node, with the hash of the evidence it was computed from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorScore {
    /// The monitor's account.
    pub monitor: PublicKey,
    /// Its score, in ppm.
    pub score: Ppm,
    /// The hash of the evidence it published with it.
    pub evidence: Hash,
}

/// One past epoch of a node's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEpochView {
    /// The epoch.
    pub epoch: u64,
    /// Its layer (mix nodes).
    pub layer: Option<u8>,
    /// The performance its reward used: the lower median of the monitors' scores, or the
    /// last measured one if no monitor scored it.
    pub performance: Ppm,
    /// Whether a monitor scored it in the epoch.
    pub measured: bool,
    /// Its stake during the epoch.
    pub stake: Amount,
    /// What it earned.
    pub payout: Payout,
    /// Each monitor's score.
    pub scores: Vec<MonitorScore>,
}

/// A node's performance, as `GET /nodes/{id}/performance` describes it: what selection weighs
/// now, the scores submitted so far this epoch, and the past epochs the ledger keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePerformanceView {
    /// The node.
    pub node: NodeId,
    /// Its performance now (what the next draw of the active set weighs).
    pub performance: Ppm,
    /// The performance below which a node is left out of the active set.
    pub threshold: Ppm,
    /// Whether it is in the current epoch's active set.
    pub active: bool,
    /// The scores monitors have submitted for it in the current epoch so far.
    pub current: Vec<MonitorScore>,
    /// The past epochs it was active in, newest first (at most the genesis's
    /// `history_epochs`).
    pub epochs: Vec<NodeEpochView>,
}

impl NodePerformanceView {
    /// The record of node `id` in `state`, if it is registered.
    pub fn of(state: &State, id: NodeId) -> Option<NodePerformanceView> {
        let node = state.node(id)?;
        let monitors = state.monitors();
        let current = state
            .submitted_performance()
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|(&index, &score)| {
                Some(MonitorScore {
                    monitor: *monitors.get(index as usize)?,
                    score,
                    evidence: *state.submitted_evidence().get(&index)?,
                })
            })
            .collect();
        let epochs = state
            .history()
            .rev()
            .filter_map(|report| {
                let entry = report.nodes.iter().find(|entry| entry.node == id)?;
                Some(NodeEpochView {
                    epoch: report.epoch,
                    layer: entry.layer,
                    performance: entry.performance,
                    measured: entry.measured,
                    stake: entry.stake,
                    payout: entry.payout,
                    scores: report
                        .monitors
                        .iter()
                        .filter_map(|submission| {
                            let &(_, score) =
                                submission.scores.iter().find(|(node, _)| *node == id)?;
                            Some(MonitorScore {
                                monitor: submission.monitor,
                                score,
                                evidence: submission.evidence,
                            })
                        })
                        .collect(),
                })
            })
            .collect();
        Some(NodePerformanceView {
            node: id,
            performance: node.performance,
            threshold: state.params().performance_threshold,
            active: state
                .epoch()
                .active
                .members()
                .any(|(member, _)| member == id),
            current,
            epochs,
        })
    }
}
