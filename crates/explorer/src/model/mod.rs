//! The pages' view models: pure functions from a [`Snapshot`] (and the time, passed in) to
//! plain structs, which the HTML renderer draws and the `/api/...` routes serve as JSON.
//!
//! Figures are the ledger's own: amounts in µUMB, fractions in ppm, exactly as the validator
//! API gives them. Nothing is rounded here; only the renderer formats.

pub mod account;
pub mod epochs;
pub mod evidence;
pub mod guide;
pub mod node;
pub mod nodes;
pub mod overview;

use std::collections::BTreeMap;

use serde::Serialize;
use umbra_ledger::api::NodeView;
use umbra_ledger::rewards::{RewardInputs, node_reward};
use umbra_ledger::state::{EpochReport, NodeEpochReport};
use umbra_ledger::{Amount, Fixed, NodeId, NodeKind, PPM, Ppm, PublicKey, UNIT, mul_div};

use crate::snapshot::Snapshot;

/// How many of the latest epochs "lately" means: the earnings of a delegation are averaged
/// over them (a day of hourly epochs).
pub const RECENT_EPOCHS: usize = 24;

/// The delegation whose earnings the tables show: 1,000 UMB.
pub const EXAMPLE_DELEGATION: Amount = Amount(1_000 * UNIT.0);

/// What pages link to that the ledger does not know: the monitors' evidence and the
/// validator people should send transactions to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Links {
    /// Each monitor's HTTP base (`http://host:port`), where `/evidence/{epoch}` is served.
    pub monitors: BTreeMap<PublicKey, String>,
    /// The validator the commands of the guide name (`http://host:port`).
    pub validator: String,
}

impl Links {
    /// The URL of monitor `monitor`'s evidence of `epoch`, if its base is known.
    pub fn evidence_url(&self, monitor: &PublicKey, epoch: u64) -> Option<String> {
        let base = self.monitors.get(monitor)?;
        Some(format!("{}/evidence/{epoch}", base.trim_end_matches('/')))
    }
}

/// A node as every page names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeRef {
    /// Its number.
    pub id: NodeId,
    /// Its moniker (may be empty).
    pub moniker: String,
}

impl NodeRef {
    fn of(snapshot: &Snapshot, id: NodeId) -> NodeRef {
        NodeRef {
            id,
            moniker: snapshot.moniker(id).to_owned(),
        }
    }
}

/// One node's line in the tables, and the head of its page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeSummary {
    /// Its number.
    pub id: NodeId,
    /// Its moniker.
    pub moniker: String,
    /// Mix node or gateway.
    pub kind: NodeKind,
    /// Its identity key.
    pub identity: PublicKey,
    /// The owning account.
    pub owner: PublicKey,
    /// Whether it is in the current active set.
    pub active: bool,
    /// Its layer in the current epoch (active mix nodes).
    pub layer: Option<u8>,
    /// The operator's pledge.
    pub pledge: Amount,
    /// The delegations to it, rewards compounded.
    pub delegations: Amount,
    /// Pledge and delegations.
    pub stake: Amount,
    /// Stake over the saturation point, in ppm (above 1 000 000 the excess earns nothing).
    pub saturation: u64,
    /// The profit margin.
    pub profit_margin: Ppm,
    /// The operating cost per interval.
    pub operating_cost: Amount,
    /// Its performance now.
    pub performance: Ppm,
    /// What [`EXAMPLE_DELEGATION`] delegated to it would have earned per epoch, on average
    /// over the latest [`RECENT_EPOCHS`] epochs (see [`delegation_earnings`]); `None` before
    /// the first epoch ended.
    pub earnings_per_thousand: Option<Amount>,
    /// In how many of those epochs it was active.
    pub recent_active_epochs: usize,
    /// How many epochs those were.
    pub recent_epochs: usize,
    /// Whether it leaves at the next epoch boundary.
    pub unbonding: bool,
}

impl NodeSummary {
    /// `node`'s summary in `snapshot`.
    pub fn of(snapshot: &Snapshot, node: &NodeView) -> NodeSummary {
        let earnings = delegation_earnings(snapshot, node.id);
        NodeSummary {
            id: node.id,
            moniker: node.info.moniker.clone(),
            kind: node.info.kind,
            identity: node.info.identity_key,
            owner: node.owner,
            active: node.active.is_some(),
            layer: node.active.and_then(|place| place.layer),
            pledge: node.pledge,
            delegations: node.delegations,
            stake: node.stake,
            saturation: ratio_ppm(node.stake, snapshot.saturation_point()),
            profit_margin: node.profit_margin,
            operating_cost: node.operating_cost,
            performance: node.performance,
            earnings_per_thousand: earnings.map(|earnings| earnings.average),
            recent_active_epochs: earnings.map_or(0, |earnings| earnings.active_epochs),
            recent_epochs: earnings.map_or(0, |earnings| earnings.epochs),
            unbonding: node.unbonding,
        }
    }
}

/// What a delegation of [`EXAMPLE_DELEGATION`] to a node earned lately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DelegationEarnings {
    /// Per epoch, on average over `epochs`.
    pub average: Amount,
    /// The epochs averaged over: the latest [`RECENT_EPOCHS`] the ledger reports (fewer on a
    /// young chain).
    pub epochs: usize,
    /// How many of them the node was active in (it earned nothing in the others).
    pub active_epochs: usize,
}

/// What [`EXAMPLE_DELEGATION`] delegated to node `id` would have earned per epoch lately.
///
/// For each of the latest [`RECENT_EPOCHS`] epoch reports (`GET /epochs`):
///
/// - if the node was active and had delegations D, its delegators were paid P together, and
///   every delegated µUMB earns alike, so 1,000 UMB would have earned `P × 1000 UMB / D`
///   (rounded down, as the ledger rounds);
/// - if it was active without delegations, the delegators' share of its reward had 1,000 UMB
///   been its only delegation: the ledger's own formula ([`node_reward`]) with the epoch's
///   recorded inputs (budget, saturation, k, α, pledge, cost, margin, performance);
/// - if it was not active, nothing.
///
/// The figure is the mean over those epochs, so a node often left out of the active set
/// shows what a delegator to it actually got. It ignores that the extra 1,000 UMB would
/// itself have raised the node's stake (slightly more reward, unless it is saturated).
pub fn delegation_earnings(snapshot: &Snapshot, id: NodeId) -> Option<DelegationEarnings> {
    let history = &snapshot.data.history;
    let recent = &history[history.len().saturating_sub(RECENT_EPOCHS)..];
    let first = recent.first()?.epoch;
    let mut total: u128 = 0;
    let mut active_epochs = 0;
    for (report, entry) in snapshot
        .history_of(id)
        .rev()
        .take_while(|(report, _)| report.epoch >= first)
    {
        active_epochs += 1;
        total += u128::from(earned_per_thousand(report, entry));
    }
    let average = total / recent.len() as u128;
    Some(DelegationEarnings {
        average: Amount(u64::try_from(average).unwrap_or(u64::MAX)),
        epochs: recent.len(),
        active_epochs,
    })
}

/// What [`EXAMPLE_DELEGATION`] delegated to `entry`'s node earned in `report`'s epoch (see
/// [`delegation_earnings`]).
pub fn earned_per_thousand(report: &EpochReport, entry: &NodeEpochReport) -> Amount {
    let earned = if entry.delegations.is_zero() {
        let inputs = RewardInputs {
            budget: report.budget,
            active_set_size: report.active_set_size,
            saturation: report.saturation,
            sybil_resistance: Fixed::from_ppm(report.sybil_resistance),
            pledge: entry.pledge,
            delegations: EXAMPLE_DELEGATION,
            performance: Fixed::from_ppm(entry.performance),
            operating_cost: entry.operating_cost,
            profit_margin: Fixed::from_ppm(entry.profit_margin),
        };
        u128::from(node_reward(&inputs).delegators)
    } else {
        mul_div(
            u128::from(entry.payout.delegators),
            u128::from(EXAMPLE_DELEGATION),
            u128::from(entry.delegations),
        )
    };
    Amount(u64::try_from(earned).unwrap_or(u64::MAX))
}

/// `part / whole` in ppm (not capped at 100 %); 0 when `whole` is 0.
pub fn ratio_ppm(part: Amount, whole: Amount) -> u64 {
    if whole.is_zero() {
        return 0;
    }
    let ratio = mul_div(u128::from(part), u128::from(PPM.0), u128::from(whole));
    u64::try_from(ratio).unwrap_or(u64::MAX)
}

#[cfg(test)]
pub(crate) mod fixture;
