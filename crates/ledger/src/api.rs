//! The validator API's JSON types: what `GET /status`, `GET /accounts/{key}`, `GET /nodes`,
//! `GET /nodes/{id}/performance`, `GET /delegations`, `GET /epoch`, `GET /tx/{hash}`,
//! `GET /tickets`, `GET /tickets/issuers`, `GET /tickets/purchases/{tx}` and `POST /tx` answer. The validator builds each answer with these types (`…View::of(state)`),
//! so what it serves and what `umbra-net`'s `LedgerClient` and the explorer read cannot drift
//! apart. (`GET /epochs`, `/genesis`, `/validators` and `/topology` serve the ledger's own types:
//! [`crate::state::EpochReport`], [`crate::Genesis`], [`crate::GenesisValidator`],
//! [`crate::SignedTopology`].)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rewards::Payout;
use crate::state::{ActiveSet, Node, Pending, State};
use crate::tickets::{DoubleSpend, verify_ticket};
use crate::{
    Account, Amount, Hash, Key32, NodeId, NodeInfo, Ppm, PublicKey, TicketRefusal, TxError,
};
use umbra_tickets::{ChainTag, IssuerPublicKey, IssuerSet, Serial, Ticket};

/// The chain's state in brief, as `GET /status` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// The chain.
    pub chain_id: String,
    /// The height of the last committed block.
    pub height: u64,
    /// The last block's time (ms since the Unix epoch).
    pub time_ms: u64,
    /// The last block's hash.
    pub last_block: Hash,
    /// The state root after it.
    pub state_root: Hash,
    /// The current epoch.
    pub epoch: u64,
    /// When the current epoch may be ended (ms since the Unix epoch).
    pub epoch_ends_ms: u64,
    /// Every token that exists.
    pub supply: Amount,
    /// What is left in the reward pool.
    pub reward_pool: Amount,
}

impl StatusView {
    /// The status of `state`.
    pub fn of(state: &State) -> StatusView {
        StatusView {
            chain_id: state.chain_id().to_owned(),
            height: state.height(),
            time_ms: state.time_ms(),
            last_block: state.last_block(),
            state_root: state.root(),
            epoch: state.epoch().number,
            epoch_ends_ms: state.epoch().end_ms,
            supply: state.supply(),
            reward_pool: state.pool(),
        }
    }
}

/// An account as `GET /accounts/{key}` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// The account.
    pub address: PublicKey,
    /// Balance and nonce.
    #[serde(flatten)]
    pub account: Account,
    /// The nonce to give the next transaction (counting ones waiting in the mempool).
    pub next_nonce: u64,
    /// Its delegations, with what each is worth now.
    #[serde(default)]
    pub delegations: Vec<AccountDelegation>,
}

impl AccountView {
    /// Account `address` in `state`, with `next_nonce` (which counts the mempool, so the
    /// validator knows it and the state does not).
    pub fn of(state: &State, address: PublicKey, next_nonce: u64) -> AccountView {
        AccountView {
            address,
            account: state.account(&address),
            next_nonce,
            delegations: state
                .delegations()
                .filter(|(_, delegator, _, _)| *delegator == address)
                .map(|(node, _, delegation, value)| AccountDelegation {
                    node,
                    amount: delegation.amount,
                    value,
                })
                .collect(),
        }
    }
}

/// One of an account's delegations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDelegation {
    /// The node.
    pub node: NodeId,
    /// What was delegated (since the last change of the delegation).
    pub amount: Amount,
    /// What it is worth now, its rewards compounded.
    pub value: Amount,
}

/// A delegation as `GET /delegations` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationView {
    /// The node.
    pub node: NodeId,
    /// The delegating account.
    pub delegator: PublicKey,
    /// What was delegated (since the last change of the delegation).
    pub amount: Amount,
    /// What it is worth now, its rewards compounded.
    pub value: Amount,
}

impl DelegationView {
    /// Every delegation in `state`, by node and delegator.
    pub fn all(state: &State) -> Vec<DelegationView> {
        state
            .delegations()
            .map(|(node, delegator, delegation, value)| DelegationView {
                node,
                delegator,
                amount: delegation.amount,
                value,
            })
            .collect()
    }
}

/// The current epoch, as `GET /epoch` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochView {
    /// Its number.
    pub epoch: u64,
    /// When it started (ms since the Unix epoch).
    pub start_ms: u64,
    /// When it may be ended.
    pub end_ms: u64,
    /// Its Sphinx key rotation.
    pub rotation: u32,
    /// The budget of each epoch of the current interval.
    pub budget: Amount,
    /// The seed its active set was drawn with (the beacon's output).
    pub seed: Hash,
    /// Its active set.
    pub active: ActiveSet,
    /// What happens at its end: delegations, undelegations, unbonds.
    pub pending: Vec<Pending>,
    /// The scores monitors submitted so far, by node and monitor (its index in genesis's
    /// `monitors`).
    pub performance: BTreeMap<NodeId, BTreeMap<u32, Ppm>>,
}

impl EpochView {
    /// The current epoch of `state`.
    pub fn of(state: &State) -> EpochView {
        let epoch = state.epoch();
        EpochView {
            epoch: epoch.number,
            start_ms: epoch.start_ms,
            end_ms: epoch.end_ms,
            rotation: epoch.rotation,
            budget: epoch.budget,
            seed: epoch.seed,
            active: epoch.active.clone(),
            pending: state.pending().to_vec(),
            performance: state.submitted_performance().clone(),
        }
    }
}

/// A registered node as `GET /nodes` and `GET /nodes/{id}` describe it (the fields a node and
/// its operator need).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The delegations to it together, with their compounded rewards.
    #[serde(default)]
    pub delegations: Amount,
    /// Pledge and delegations.
    #[serde(default)]
    pub stake: Amount,
    /// Its operating cost per interval.
    #[serde(default)]
    pub operating_cost: Amount,
    /// Its profit margin.
    #[serde(default)]
    pub profit_margin: Ppm,
    /// Its performance now (what the next draw of the active set weighs).
    #[serde(default)]
    pub performance: Ppm,
    /// Its place in the current epoch's active set, if it is in it.
    #[serde(default)]
    pub active: Option<ActivePlace>,
}

/// Where an active node serves in the current epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivePlace {
    /// The mix layer (1 to 3), or none for a gateway.
    pub layer: Option<u8>,
}

impl NodeView {
    /// `node` of `state`, with its place in the current active set.
    pub fn of(state: &State, node: &Node) -> NodeView {
        let active = state
            .epoch()
            .active
            .members()
            .find(|(id, _)| *id == node.id)
            .map(|(_, layer)| ActivePlace { layer });
        NodeView {
            id: node.id,
            owner: node.owner,
            info: node.info.clone(),
            pledge: node.pledge,
            unbonding: node.unbonding,
            sphinx_keys: node.sphinx_keys.clone(),
            delegations: node.delegations,
            stake: node.stake(),
            operating_cost: node.operating_cost,
            profit_margin: node.profit_margin,
            performance: node.performance,
            active,
        }
    }

    /// Every node of `state`, by number.
    pub fn all(state: &State) -> Vec<NodeView> {
        state
            .nodes()
            .map(|node| NodeView::of(state, node))
            .collect()
    }
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

/// The validators' ticket keys, as `GET /tickets/issuers` lists them: what a client blinds
/// for and a gateway verifies with. A ticket is good when validators holding more than 2/3 of
/// `total_power` (all the voting power, not only that of those that announced) signed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuersView {
    /// The current key period (tickets bought now are of it).
    pub current_period: u64,
    /// Epochs per key period.
    pub period_epochs: u32,
    /// All voting power.
    pub total_power: u64,
    /// Each period that has keys announced and is not expired (the previous, the current and
    /// the next), oldest first.
    pub periods: Vec<IssuerPeriodView>,
}

/// The keys announced for one key period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerPeriodView {
    /// The key period.
    pub period: u64,
    /// The voting power of the validators that announced keys for it.
    pub announced_power: u64,
    /// Whether they hold more than 2/3 of all voting power (tickets can be bought and
    /// verified).
    pub usable: bool,
    /// Each announcing validator, by index.
    pub issuers: Vec<IssuerView>,
}

/// One validator's ticket key for a period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuerView {
    /// The validator's index in genesis (how tickets name their signers).
    pub validator: u16,
    /// Its ed25519 validator key.
    pub validator_key: PublicKey,
    /// The key's SPKI bytes, in hex ([`umbra_tickets::IssuerPublicKey::from_bytes`]).
    #[serde(with = "crate::hex::bytes")]
    pub key: Vec<u8>,
    /// SHA-256 of the key's bytes, in hex (RFC 9578's `token_key_id`).
    pub key_id: String,
    /// Its voting power.
    pub power: u64,
}

impl IssuersView {
    /// The announced keys of `state`.
    pub fn of(state: &State) -> IssuersView {
        let validators = state.validators();
        let total_power = validators.iter().map(|validator| validator.power).sum();
        let tickets = state.tickets();
        let periods = tickets
            .issuers()
            .iter()
            .map(|(&period, announced)| {
                let announced_power = tickets.announced_power(validators, period);
                IssuerPeriodView {
                    period,
                    announced_power,
                    usable: u128::from(announced_power) * 3 > u128::from(total_power) * 2,
                    issuers: announced
                        .iter()
                        .filter_map(|(&validator, key)| {
                            let entry = validators.get(usize::from(validator))?;
                            Some(IssuerView {
                                validator,
                                validator_key: entry.key,
                                key: key.as_bytes().to_vec(),
                                key_id: crate::hex::encode(&key.key_id().0),
                                power: entry.power,
                            })
                        })
                        .collect(),
                }
            })
            .collect();
        IssuersView {
            current_period: state.ticket_period(),
            period_epochs: state.params().tickets.key_epochs,
            total_power,
            periods,
        }
    }

    /// The issuer set tickets are verified against now: the keys of the current period and
    /// the one before, with their validators' power. A key that does not parse is left out.
    pub fn issuer_set(&self) -> IssuerSet {
        let mut set = IssuerSet::new();
        let live = self.current_period.saturating_sub(1)..=self.current_period;
        for period in self.periods.iter().filter(|p| live.contains(&p.period)) {
            let issuers = period.issuers.iter().filter_map(|issuer| {
                let key = IssuerPublicKey::from_bytes(&issuer.key).ok()?;
                Some((issuer.validator, key, issuer.power))
            });
            // only a period without power fails, and it could verify no ticket
            let _ = set.insert_period(period.period, issuers);
        }
        set
    }

    /// Checks ticket `bytes` on `chain` as the ledger will when it is redeemed (what a gateway
    /// does before serving a client); its serial, or why it is refused.
    pub fn verify(&self, bytes: &[u8], chain: ChainTag) -> Result<Serial, TicketRefusal> {
        let ticket = Ticket::from_bytes(bytes)?;
        let power = |index: u16| {
            self.periods
                .iter()
                .flat_map(|period| &period.issuers)
                .find(|issuer| issuer.validator == index)
                .map(|issuer| issuer.power)
        };
        verify_ticket(&ticket, chain, &self.issuer_set(), power, self.total_power)
    }
}

/// A ticket purchase, as `GET /tickets/purchases/{tx}` describes it: what a validator's
/// signing service checks before blind-signing `count` messages for `buyer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseView {
    /// The paying transaction's hash.
    pub tx: Hash,
    /// The paying account.
    pub buyer: PublicKey,
    /// How many tickets it paid for.
    pub count: u32,
    /// The key period the tickets are of.
    pub period: u64,
    /// The height of the block that paid.
    pub height: u64,
}

impl PurchaseView {
    /// The purchase paid by `tx` in `state`, if there is one and its period is not expired.
    pub fn of(state: &State, tx: Hash) -> Option<PurchaseView> {
        let purchase = state.tickets().purchase(&tx)?;
        Some(PurchaseView {
            tx,
            buyer: purchase.buyer,
            count: purchase.count,
            period: purchase.period,
            height: purchase.height,
        })
    }
}

/// Bandwidth tickets in brief, as `GET /tickets` describes them: the prices and what was
/// bought and redeemed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketStatsView {
    /// Whether gateways demand tickets (otherwise: a free daily allowance).
    pub tickets_required: bool,
    /// The price of a ticket.
    pub price: Amount,
    /// The bytes a ticket buys.
    pub bytes: u64,
    /// The share of a redeemed ticket's price that goes to the reward pool.
    pub pool_share: Ppm,
    /// The current key period.
    pub current_period: u64,
    /// Tickets bought since genesis.
    pub bought: u64,
    /// Tickets redeemed (paid) since genesis.
    pub redeemed: u64,
    /// Repeated redemptions (not paid) since genesis.
    pub double_spends: u64,
    /// Tickets that expired unredeemed since genesis.
    pub expired_unredeemed: u64,
    /// What purchases of live periods paid and redemptions have not taken out.
    pub fee_pool: Amount,
    /// The newest double-spend events, newest first.
    pub recent_double_spends: Vec<DoubleSpend>,
}

impl TicketStatsView {
    /// How many recent double-spend events the view lists.
    pub const RECENT: usize = 20;

    /// The ticket statistics of `state`.
    pub fn of(state: &State) -> TicketStatsView {
        let params = state.params();
        let tickets = state.tickets();
        let counts = tickets.counts();
        TicketStatsView {
            tickets_required: params.tickets.required,
            price: params.tickets.price,
            bytes: params.tickets.bytes,
            pool_share: params.tickets.pool_share,
            current_period: state.ticket_period(),
            bought: counts.bought,
            redeemed: counts.redeemed,
            double_spends: counts.double_spends,
            expired_unredeemed: counts.expired_unredeemed,
            fee_pool: tickets.fee_pool(),
            recent_double_spends: tickets
                .double_spends()
                .iter()
                .rev()
                .take(Self::RECENT)
                .copied()
                .collect(),
        }
    }
}
