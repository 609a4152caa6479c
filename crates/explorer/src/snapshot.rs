//! What the explorer knows of the ledger at one moment: the validator API's answers, typed
//! (`umbra_ledger::api`), with the indexes every page needs built once.
//!
//! A snapshot is immutable; the poller makes a new one when the ledger moves, and pages are
//! built from whichever snapshot is current. Nothing here does I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use umbra_ledger::api::{DelegationView, EpochView, NodeView, StatusView};
use umbra_ledger::state::{EpochReport, NodeEpochReport};
use umbra_ledger::{Genesis, Hash, NodeId, PublicKey, SignedTopology};

/// What the explorer saw of an epoch while it was current, which the ledger's epoch reports do
/// not keep: the seed its active set was drawn with and who signed its topology.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochSeen {
    /// The seed (the beacon's output) the epoch's active set was drawn with.
    pub seed: Option<Hash>,
    /// The validators whose signatures the epoch's certified topology carried.
    pub signers: Vec<PublicKey>,
}

/// The validator API's answers at one moment.
#[derive(Clone, Debug)]
pub struct LedgerData {
    /// `GET /status`.
    pub status: StatusView,
    /// `GET /nodes`.
    pub nodes: Vec<NodeView>,
    /// `GET /delegations`.
    pub delegations: Vec<DelegationView>,
    /// `GET /epoch`.
    pub epoch: EpochView,
    /// `GET /epochs`: the past epochs the ledger keeps, oldest first.
    pub history: Vec<EpochReport>,
    /// `GET /topology`, once an epoch has been certified.
    pub topology: Option<SignedTopology>,
}

/// One consistent view of the ledger, with its indexes.
#[derive(Debug)]
pub struct Snapshot {
    /// The network's genesis (the explorer's own copy: its trust root).
    pub genesis: Arc<Genesis>,
    /// The ledger's answers.
    pub data: LedgerData,
    /// What the explorer saw of each epoch while it was current.
    pub seen: BTreeMap<u64, EpochSeen>,
    /// When it was fetched (ms since the Unix epoch).
    pub fetched_ms: u64,
    /// The validator that answered (`http://host:port`).
    pub validator: String,
    node_index: BTreeMap<NodeId, usize>,
    /// Per node, `(report, entry)` indexes into `data.history`, oldest first.
    history_index: BTreeMap<NodeId, Vec<(usize, usize)>>,
}

impl Snapshot {
    /// A snapshot of `data`, fetched from `validator` at `fetched_ms`.
    pub fn new(
        genesis: Arc<Genesis>,
        data: LedgerData,
        seen: BTreeMap<u64, EpochSeen>,
        fetched_ms: u64,
        validator: String,
    ) -> Snapshot {
        let node_index = data
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| (node.id, index))
            .collect();
        let mut history_index: BTreeMap<NodeId, Vec<(usize, usize)>> = BTreeMap::new();
        for (report_index, report) in data.history.iter().enumerate() {
            for (entry_index, entry) in report.nodes.iter().enumerate() {
                history_index
                    .entry(entry.node)
                    .or_default()
                    .push((report_index, entry_index));
            }
        }
        Snapshot {
            genesis,
            data,
            seen,
            fetched_ms,
            validator,
            node_index,
            history_index,
        }
    }

    /// Node `id`, if it is registered.
    pub fn node(&self, id: NodeId) -> Option<&NodeView> {
        self.data.nodes.get(*self.node_index.get(&id)?)
    }

    /// Node `id`'s moniker, or an empty string.
    pub fn moniker(&self, id: NodeId) -> &str {
        self.node(id).map_or("", |node| node.info.moniker.as_str())
    }

    /// The epochs node `id` was active in, oldest first, with its record of each.
    pub fn history_of(
        &self,
        id: NodeId,
    ) -> impl DoubleEndedIterator<Item = (&EpochReport, &NodeEpochReport)> + '_ {
        self.history_index
            .get(&id)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|&(report, entry)| {
                let report = self.data.history.get(report)?;
                Some((report, report.nodes.get(entry)?))
            })
    }

    /// The delegations to node `id`.
    pub fn delegations_to(&self, id: NodeId) -> impl Iterator<Item = &DelegationView> + '_ {
        self.data
            .delegations
            .iter()
            .filter(move |delegation| delegation.node == id)
    }

    /// The stake at which a node is saturated: the staking supply over the active set's size.
    pub fn saturation_point(&self) -> umbra_ledger::Amount {
        let params = &self.genesis.params;
        params.staking_supply / params.active_set_size().max(1)
    }

    /// The monitors genesis names, in order (a monitor's index in `GET /epoch`'s scores).
    pub fn monitors(&self) -> &[PublicKey] {
        &self.genesis.monitors
    }
}
