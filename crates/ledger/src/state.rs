//! The ledger's state and how transactions and blocks change it.
//!
//! Every map is a `BTreeMap`, so the canonical encoding of the state — and its hash, the state
//! root — is the same on every validator that applied the same blocks.
//!
//! Delegations earn through a cumulative per-unit ratio, as Nym's: each node keeps `unit_reward`
//! R, the reward one µUMB delegated at R = 0 has earned so far relative to its value. A delegation
//! records the ratio R₀ when it was made, and its value now is `amount × (1 + R) / (1 + R₀)`.
//! When the delegators of a node earn D on delegations worth T in total, R grows by
//! `(1 + R) × D / T`, which raises every delegation's value by the factor `1 + D/T`: rewards
//! compound, and paying a delegator touches only its own record.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::beacon::{self, Draw};
use crate::err::{GenesisError, TxError};
use crate::fixed::{Amount, Fixed, PPM, Ppm, mul_div};
use crate::genesis::{Genesis, Params};
use crate::keys::{Hash, Key32, PublicKey, Signature, canonical};
use crate::rewards::{Payout, RewardInputs, node_reward};
use crate::tickets::{Purchase, RedeemPlan, TicketBook};
use crate::topology::{Certificate, SignedTopology, TopologyDocument, TopologyNode, ValidatorKey};
use crate::tx::{
    Action, NodeId, NodeInfo, NodeKind, Transaction, registration_message, sphinx_key_message,
};

/// An account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Its spendable balance.
    pub balance: Amount,
    /// How many of its transactions the ledger has applied.
    pub nonce: u64,
}

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Its number.
    pub id: NodeId,
    /// The account that owns it.
    pub owner: PublicKey,
    /// What it declared at registration.
    pub info: NodeInfo,
    /// The operator's pledge, with its compounded rewards.
    pub pledge: Amount,
    /// The delegations to it together, with their compounded rewards.
    pub delegations: Amount,
    /// The cumulative per-unit delegation reward R (see the module docs).
    pub unit_reward: Fixed,
    /// Operating cost per interval.
    pub operating_cost: Amount,
    /// Profit margin.
    pub profit_margin: Ppm,
    /// Its performance as last measured (what selection weighs).
    pub performance: Ppm,
    /// Its Sphinx keys by key rotation: the current one and, once announced, the next.
    pub sphinx_keys: BTreeMap<u32, Key32>,
    /// Whether it leaves at the next epoch boundary.
    pub unbonding: bool,
}

impl Node {
    /// Pledge and delegations.
    pub fn stake(&self) -> Amount {
        self.pledge.saturating_add(self.delegations)
    }
}

/// A delegation of one account to one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// The amount at the time of `start_ratio`.
    pub amount: Amount,
    /// The node's unit reward ratio when the amount was set.
    pub start_ratio: Fixed,
}

impl Delegation {
    /// What the delegation is worth at the node's ratio `unit_reward`.
    pub fn value(&self, unit_reward: Fixed) -> Amount {
        let value = mul_div(
            u128::from(self.amount),
            Fixed::ONE.plus(unit_reward).0,
            Fixed::ONE.plus(self.start_ratio).0,
        );
        Amount::try_from(value).unwrap_or(Amount::MAX)
    }
}

/// What happens at the next epoch boundary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pending {
    /// A delegation (its tokens already left the delegator's balance).
    Delegate {
        /// The delegator.
        delegator: PublicKey,
        /// The node.
        node: NodeId,
        /// How much.
        amount: Amount,
    },
    /// An undelegation.
    Undelegate {
        /// The delegator.
        delegator: PublicKey,
        /// The node.
        node: NodeId,
    },
    /// A node leaving.
    Unbond {
        /// The node.
        node: NodeId,
    },
}

/// The active set of an epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveSet {
    /// Mix nodes of layers 1, 2 and 3.
    pub layers: [Vec<NodeId>; 3],
    /// Gateways.
    pub gateways: Vec<NodeId>,
}

impl ActiveSet {
    /// Every active node with its layer (none for gateways).
    pub fn members(&self) -> impl Iterator<Item = (NodeId, Option<u8>)> + '_ {
        self.layers
            .iter()
            .zip(1u8..)
            .flat_map(|(nodes, layer)| nodes.iter().map(move |&id| (id, Some(layer))))
            .chain(self.gateways.iter().map(|&id| (id, None)))
    }
}

/// The current epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    /// Its number (0 from genesis).
    pub number: u64,
    /// When it started.
    pub start_ms: u64,
    /// When it may be ended.
    pub end_ms: u64,
    /// Its Sphinx key rotation.
    pub rotation: u32,
    /// The seed its active set was drawn with.
    pub seed: Hash,
    /// The budget of each epoch of the current interval.
    pub budget: Amount,
    /// The active set.
    pub active: ActiveSet,
    /// The topology document, frozen at the boundary.
    pub document: TopologyDocument,
}

/// One node's record for a past epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEpochReport {
    /// The node.
    pub node: NodeId,
    /// Its layer (mix nodes).
    pub layer: Option<u8>,
    /// The performance its reward used.
    pub performance: Ppm,
    /// Whether a monitor measured it this epoch (otherwise the last measured value was used).
    pub measured: bool,
    /// Its stake during the epoch.
    pub stake: Amount,
    /// The operator's pledge during the epoch (before this epoch's reward).
    pub pledge: Amount,
    /// The delegations during the epoch (before this epoch's reward).
    pub delegations: Amount,
    /// The operating cost its reward covered: the interval's cost over its epochs.
    pub operating_cost: Amount,
    /// Its profit margin.
    pub profit_margin: Ppm,
    /// What it earned.
    pub payout: Payout,
}

/// The scores one monitor submitted for an epoch, and the hash of the evidence it published
/// them with (anyone can fetch the evidence from the monitor and recompute them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorSubmission {
    /// The monitor's account.
    pub monitor: PublicKey,
    /// The hash of its evidence.
    pub evidence: Hash,
    /// Its scores: (node, performance in ppm).
    pub scores: Vec<(NodeId, Ppm)>,
}

/// What happened in a past epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochReport {
    /// The epoch.
    pub epoch: u64,
    /// Its budget.
    pub budget: Amount,
    /// The stake saturation point S its rewards used.
    pub saturation: Amount,
    /// The active set size k its rewards used.
    pub active_set_size: u64,
    /// The Sybil-resistance parameter α its rewards used, in ppm.
    pub sybil_resistance: Ppm,
    /// Every active node.
    pub nodes: Vec<NodeEpochReport>,
    /// What each monitor submitted (a node's performance is the lower median of its scores).
    pub monitors: Vec<MonitorSubmission>,
}

/// The whole ledger state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    chain_id: String,
    params: Params,
    supply: Amount,
    validators: Vec<ValidatorKey>,
    monitors: Vec<PublicKey>,
    accounts: BTreeMap<PublicKey, Account>,
    pool: Amount,
    nodes: BTreeMap<NodeId, Node>,
    next_node_id: NodeId,
    delegations: BTreeMap<(NodeId, PublicKey), Delegation>,
    pending: Vec<Pending>,
    epoch: Epoch,
    beacon_last: Vec<Hash>,
    beacon_reveals: Vec<u64>,
    reveals: BTreeMap<u32, Hash>,
    performance: BTreeMap<NodeId, BTreeMap<u32, Ppm>>,
    /// The evidence hash of each monitor's submission this epoch, by monitor index.
    evidence: BTreeMap<u32, Hash>,
    topology_signatures: BTreeMap<u32, Signature>,
    history: BTreeMap<u64, EpochReport>,
    height: u64,
    time_ms: u64,
    last_block: Hash,
    /// Bandwidth tickets: issuer keys, purchases, the fee pool, spent serials. Left out of the
    /// encoding while empty, so that a chain that never used tickets keeps its state roots.
    #[serde(default, skip_serializing_if = "TicketBook::is_empty")]
    tickets: TicketBook,
}

/// A block: transactions in the order the sequencer committed them, with the time it gave them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Its height (1 for the first block after genesis).
    pub height: u64,
    /// Its time (ms since the Unix epoch); never before the previous block's.
    pub time_ms: u64,
    /// The previous block's hash (the genesis hash for block 1).
    pub parent: Hash,
    /// The transactions.
    pub transactions: Vec<Transaction>,
}

impl Block {
    /// The block's hash.
    pub fn hash(&self) -> Hash {
        Hash::of(&[b"umbra-block-v1", &canonical(self)])
    }
}

/// Why a block could not be applied (the sequencer's fault, never a transaction's).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Out of order.
    #[error("block {got} does not follow block {height}")]
    WrongHeight {
        /// The current height.
        height: u64,
        /// The block's.
        got: u64,
    },
    /// Wrong parent.
    #[error("block {height}'s parent is not the last block")]
    WrongParent {
        /// The block.
        height: u64,
    },
    /// Time went backwards.
    #[error("block {height}'s time {time_ms} is before the last block's {last_ms}")]
    TimeWentBack {
        /// The block.
        height: u64,
        /// Its time.
        time_ms: u64,
        /// The last block's.
        last_ms: u64,
    },
}

/// What an admitted transaction changes: the write-set that [`State::admit`] computes from
/// the borrowed state and [`State::commit`] writes, which cannot fail. It holds what the
/// decision found (a validator's or monitor's index, a node's new pledge), so nothing is looked
/// up twice; an epoch's end is the one effect computed as it is written, since ending an epoch
/// that is over cannot fail.
#[derive(Debug)]
enum Effect<'t> {
    Transfer {
        to: PublicKey,
        amount: Amount,
    },
    RegisterNode {
        node: &'t NodeInfo,
    },
    Bond {
        node: NodeId,
        amount: Amount,
        pledge: Amount,
    },
    Unbond {
        node: NodeId,
    },
    Delegate {
        node: NodeId,
        amount: Amount,
    },
    Undelegate {
        node: NodeId,
    },
    UpdateNode {
        node: NodeId,
        operating_cost: Amount,
        profit_margin: Ppm,
    },
    AnnounceSphinxKey {
        node: NodeId,
        rotation: u32,
        sphinx_key: Key32,
    },
    SubmitPerformance {
        monitor: u32,
        scores: &'t [(NodeId, Ppm)],
        evidence: Hash,
    },
    AdvanceEpoch,
    RevealBeacon {
        index: u32,
        reveal: Hash,
    },
    SignTopology {
        index: u32,
        signature: Signature,
    },
    AnnounceIssuer {
        period: u64,
        validator: u16,
        key: umbra_tickets::IssuerPublicKey,
    },
    BuyTickets {
        tx: Hash,
        count: u32,
        cost: Amount,
    },
    Redeem {
        gateway: NodeId,
        owner: PublicKey,
        plan: RedeemPlan,
    },
}

impl State {
    /// The state at genesis.
    pub fn genesis(genesis: &Genesis) -> Result<State, GenesisError> {
        genesis.params.check()?;
        let mut accounts = BTreeMap::new();
        let mut supply: u128 = u128::from(genesis.reward_pool);
        for account in &genesis.accounts {
            let entry: &mut Account = accounts.entry(account.address).or_default();
            entry.balance = entry.balance.checked_add(account.balance).ok_or(
                GenesisError::BalanceOverflow {
                    account: account.address,
                },
            )?;
            supply += u128::from(account.balance);
        }
        let validators = genesis.validator_keys();
        let mut state = State {
            chain_id: genesis.chain_id.clone(),
            params: genesis.params.clone(),
            supply: Amount::ZERO,
            validators,
            monitors: genesis.monitors.clone(),
            accounts,
            pool: genesis.reward_pool,
            nodes: BTreeMap::new(),
            next_node_id: NodeId(1),
            delegations: BTreeMap::new(),
            pending: Vec::new(),
            epoch: Epoch {
                number: 0,
                start_ms: genesis.genesis_time_ms,
                end_ms: genesis
                    .genesis_time_ms
                    .saturating_add(genesis.params.epoch_length_ms),
                rotation: 0,
                seed: Hash::of(&[b"umbra-genesis-seed-v1", &genesis.hash().0]),
                budget: Amount::ZERO,
                active: ActiveSet::default(),
                document: TopologyDocument {
                    chain_id: genesis.chain_id.clone(),
                    epoch: 0,
                    start_ms: 0,
                    end_ms: 0,
                    rotation: 0,
                    nodes: Vec::new(),
                },
            },
            beacon_last: genesis
                .validators
                .iter()
                .map(|validator| validator.beacon_commitment)
                .collect(),
            beacon_reveals: vec![0; genesis.validators.len()],
            reveals: BTreeMap::new(),
            performance: BTreeMap::new(),
            evidence: BTreeMap::new(),
            topology_signatures: BTreeMap::new(),
            history: BTreeMap::new(),
            height: 0,
            time_ms: genesis.genesis_time_ms,
            last_block: genesis.hash(),
            tickets: TicketBook::default(),
        };
        for entry in &genesis.nodes {
            if let Err(refusal) = state.check_new_node(&entry.node) {
                return Err(GenesisError::BadNode {
                    moniker: entry.node.moniker.clone(),
                    refusal,
                });
            }
            if entry.pledge < state.params.minimum_pledge {
                return Err(GenesisError::PledgeTooLow {
                    moniker: entry.node.moniker.clone(),
                    pledge: entry.pledge,
                    minimum: state.params.minimum_pledge,
                });
            }
            supply += u128::from(entry.pledge);
            let id = state.add_node(entry.owner, entry.node.clone());
            if let Some(node) = state.nodes.get_mut(&id) {
                node.pledge = entry.pledge;
            }
        }
        state.supply = Amount::try_from(supply).map_err(|_| GenesisError::SupplyOverflow)?;
        state.epoch.budget = state.interval_budget();
        state.choose_active_set();
        Ok(state)
    }

    /// Applies a block: each transaction that is valid changes the state, each invalid one
    /// changes nothing. Returns each transaction's outcome.
    pub fn apply_block(&mut self, block: &Block) -> Result<Vec<Result<(), TxError>>, BlockError> {
        if block.height != self.height + 1 {
            return Err(BlockError::WrongHeight {
                height: self.height,
                got: block.height,
            });
        }
        if block.parent != self.last_block {
            return Err(BlockError::WrongParent {
                height: block.height,
            });
        }
        if block.time_ms < self.time_ms {
            return Err(BlockError::TimeWentBack {
                height: block.height,
                time_ms: block.time_ms,
                last_ms: self.time_ms,
            });
        }
        self.height = block.height;
        self.time_ms = block.time_ms;
        self.last_block = block.hash();
        Ok(block
            .transactions
            .iter()
            .map(|transaction| self.apply(transaction))
            .collect())
    }

    /// Applies one transaction at the current block time: all of it or, with an error, nothing.
    pub fn apply(&mut self, transaction: &Transaction) -> Result<(), TxError> {
        let effect = self.admit(transaction, self.time_ms)?;
        self.commit(&transaction.signer, effect);
        Ok(())
    }

    /// Whether `transaction` would apply in a block at `time_ms` (or at the last block's time,
    /// if later), without changing anything.
    ///
    /// It decides exactly as [`State::apply`] does, with the same code: both first decide what
    /// the transaction would change, reading the state only, and `apply` then writes it.
    /// Nothing is copied, so a validator's mempool can check every transaction it is sent.
    pub fn check(&self, transaction: &Transaction, time_ms: u64) -> Result<(), TxError> {
        self.admit(transaction, self.time_ms.max(time_ms))
            .map(|_| ())
    }

    /// Decides whether `transaction` applies at `now_ms`, reading the state only, and returns
    /// what it will change: every refusal is found here, before anything is written.
    fn admit<'t>(&self, transaction: &'t Transaction, now_ms: u64) -> Result<Effect<'t>, TxError> {
        let account = self.account(&transaction.signer);
        if transaction.nonce != account.nonce {
            return Err(TxError::BadNonce {
                expected: account.nonce,
                got: transaction.nonce,
            });
        }
        if !transaction.signature_is_valid(&self.chain_id) {
            return Err(TxError::BadSignature);
        }
        self.admit_action(transaction, now_ms)
    }

    fn admit_action<'t>(
        &self,
        transaction: &'t Transaction,
        now_ms: u64,
    ) -> Result<Effect<'t>, TxError> {
        let signer = &transaction.signer;
        match &transaction.action {
            Action::Transfer { to, amount } => {
                if amount.is_zero() {
                    return Err(TxError::ZeroAmount);
                }
                self.check_balance(signer, *amount)?;
                Ok(Effect::Transfer {
                    to: *to,
                    amount: *amount,
                })
            }
            Action::RegisterNode {
                node,
                node_signature,
            } => {
                let message = registration_message(&self.chain_id, signer, node);
                if !node.identity_key.verifies(&message, node_signature) {
                    return Err(TxError::BadNodeSignature);
                }
                self.check_new_node(node)?;
                Ok(Effect::RegisterNode { node })
            }
            Action::Bond { node, amount } => {
                let current = self.owned_node(signer, *node)?.pledge;
                if amount.is_zero() {
                    return Err(TxError::ZeroAmount);
                }
                let pledge = current.saturating_add(*amount);
                if pledge < self.params.minimum_pledge {
                    return Err(TxError::PledgeTooLow {
                        minimum: self.params.minimum_pledge,
                        pledge,
                    });
                }
                self.check_balance(signer, *amount)?;
                Ok(Effect::Bond {
                    node: *node,
                    amount: *amount,
                    pledge,
                })
            }
            Action::Unbond { node } => {
                let entry = self.owned_node(signer, *node)?;
                if entry.pledge.is_zero() {
                    return Err(TxError::NotBonded { node: *node });
                }
                Ok(Effect::Unbond { node: *node })
            }
            Action::Delegate { node, amount } => {
                let entry = self.live_node(*node)?;
                if entry.pledge.is_zero() {
                    return Err(TxError::NotBonded { node: *node });
                }
                if amount.is_zero() {
                    return Err(TxError::ZeroAmount);
                }
                self.check_balance(signer, *amount)?;
                Ok(Effect::Delegate {
                    node: *node,
                    amount: *amount,
                })
            }
            Action::Undelegate { node } => {
                if !self.nodes.contains_key(node) {
                    return Err(TxError::UnknownNode { node: *node });
                }
                if !self.delegations.contains_key(&(*node, *signer)) {
                    return Err(TxError::NoDelegation { node: *node });
                }
                let already = self.pending.iter().any(|pending| {
                    matches!(pending, Pending::Undelegate { delegator, node: pending_node }
                        if delegator == signer && pending_node == node)
                });
                if already {
                    return Err(TxError::AlreadyPending {
                        what: "an undelegation".into(),
                    });
                }
                Ok(Effect::Undelegate { node: *node })
            }
            Action::UpdateNode {
                node,
                operating_cost,
                profit_margin,
            } => {
                self.owned_node(signer, *node)?;
                if *profit_margin > PPM {
                    return Err(TxError::BadFraction {
                        what: "the profit margin".into(),
                        value: *profit_margin,
                    });
                }
                Ok(Effect::UpdateNode {
                    node: *node,
                    operating_cost: *operating_cost,
                    profit_margin: *profit_margin,
                })
            }
            Action::AnnounceSphinxKey {
                node,
                rotation,
                sphinx_key,
                node_signature,
            } => {
                // the owner, or the node itself: a running node rotates its keys without
                // holding its owner's account key
                let entry = self.live_node(*node)?;
                if entry.owner != *signer && entry.info.identity_key != *signer {
                    return Err(TxError::NotOwner { node: *node });
                }
                let current = self.epoch.rotation;
                if *rotation != current && *rotation != current.saturating_add(1) {
                    return Err(TxError::WrongRotation {
                        current,
                        got: *rotation,
                    });
                }
                let message = sphinx_key_message(&self.chain_id, *node, *rotation, sphinx_key);
                if !entry.info.identity_key.verifies(&message, node_signature) {
                    return Err(TxError::BadNodeSignature);
                }
                check_sphinx_key(sphinx_key)?;
                Ok(Effect::AnnounceSphinxKey {
                    node: *node,
                    rotation: *rotation,
                    sphinx_key: *sphinx_key,
                })
            }
            Action::SubmitPerformance {
                epoch,
                scores,
                evidence,
            } => {
                let monitor = self
                    .monitors
                    .iter()
                    .position(|monitor| monitor == signer)
                    .ok_or(TxError::NotMonitor)?;
                if *epoch != self.epoch.number {
                    return Err(TxError::WrongEpoch {
                        current: self.epoch.number,
                        got: *epoch,
                    });
                }
                for &(node, score) in scores {
                    if !self.nodes.contains_key(&node) {
                        return Err(TxError::UnknownNode { node });
                    }
                    if score > PPM {
                        return Err(TxError::BadFraction {
                            what: "a performance score".into(),
                            value: score,
                        });
                    }
                }
                Ok(Effect::SubmitPerformance {
                    monitor: monitor as u32,
                    scores,
                    evidence: *evidence,
                })
            }
            Action::AdvanceEpoch => {
                if now_ms < self.epoch.end_ms {
                    return Err(TxError::EpochNotOver {
                        ends_at_ms: self.epoch.end_ms,
                        now_ms,
                    });
                }
                Ok(Effect::AdvanceEpoch)
            }
            Action::RevealBeacon { reveal } => {
                let index = self.validator_index(signer)?;
                if self.reveals.contains_key(&index) {
                    return Err(TxError::AlreadyDone);
                }
                if beacon::step(reveal) != self.beacon_last[index as usize] {
                    return Err(TxError::BadReveal);
                }
                Ok(Effect::RevealBeacon {
                    index,
                    reveal: *reveal,
                })
            }
            Action::SignTopology { epoch, signature } => {
                let index = self.validator_index(signer)?;
                if *epoch != self.epoch.number {
                    return Err(TxError::WrongEpoch {
                        current: self.epoch.number,
                        got: *epoch,
                    });
                }
                if self.topology_signatures.contains_key(&index) {
                    return Err(TxError::AlreadyDone);
                }
                if !signer.verifies(&self.epoch.document.signing_message(), signature) {
                    return Err(TxError::BadTopologySignature);
                }
                Ok(Effect::SignTopology {
                    index,
                    signature: *signature,
                })
            }
            Action::AnnounceIssuer { period, key } => {
                let index = self.validator_index(signer)?;
                let (validator, key) =
                    self.tickets
                        .admit_announce(index, self.ticket_period(), *period, key)?;
                Ok(Effect::AnnounceIssuer {
                    period: *period,
                    validator,
                    key,
                })
            }
            Action::BuyTickets { count } => {
                let cost = self.tickets.admit_buy(
                    &self.validators,
                    self.ticket_period(),
                    *count,
                    self.params.tickets.price,
                )?;
                self.check_balance(signer, cost)?;
                Ok(Effect::BuyTickets {
                    tx: transaction.hash(),
                    count: *count,
                    cost,
                })
            }
            Action::Redeem { gateway, tickets } => {
                // the owner, or the gateway itself (as AnnounceSphinxKey): a running gateway
                // redeems without holding its owner's account key; the owner is paid
                let entry = self.live_node(*gateway)?;
                if entry.owner != *signer && entry.info.identity_key != *signer {
                    return Err(TxError::NotOwner { node: *gateway });
                }
                if entry.info.kind != NodeKind::Gateway {
                    return Err(TxError::NotGateway { node: *gateway });
                }
                if entry.pledge.is_zero() {
                    return Err(TxError::NotBonded { node: *gateway });
                }
                let plan = self.tickets.admit_redeem(
                    &self.validators,
                    umbra_tickets::ChainTag::of(&self.chain_id),
                    self.ticket_period(),
                    *gateway,
                    tickets,
                    &self.params.tickets,
                )?;
                Ok(Effect::Redeem {
                    gateway: *gateway,
                    owner: entry.owner,
                    plan,
                })
            }
        }
    }

    /// Writes what [`State::admit`] admitted for `signer`, and counts the signer's nonce.
    fn commit(&mut self, signer: &PublicKey, effect: Effect<'_>) {
        match effect {
            Effect::Transfer { to, amount } => {
                self.debit(signer, amount);
                self.accounts.entry(to).or_default().balance += amount;
            }
            Effect::RegisterNode { node } => {
                self.add_node(*signer, node.clone());
            }
            Effect::Bond {
                node,
                amount,
                pledge,
            } => {
                self.debit(signer, amount);
                if let Some(entry) = self.nodes.get_mut(&node) {
                    entry.pledge = pledge;
                }
            }
            Effect::Unbond { node } => {
                if let Some(entry) = self.nodes.get_mut(&node) {
                    entry.unbonding = true;
                }
                self.pending.push(Pending::Unbond { node });
            }
            Effect::Delegate { node, amount } => {
                self.debit(signer, amount);
                self.pending.push(Pending::Delegate {
                    delegator: *signer,
                    node,
                    amount,
                });
            }
            Effect::Undelegate { node } => {
                self.pending.push(Pending::Undelegate {
                    delegator: *signer,
                    node,
                });
            }
            Effect::UpdateNode {
                node,
                operating_cost,
                profit_margin,
            } => {
                if let Some(entry) = self.nodes.get_mut(&node) {
                    entry.operating_cost = operating_cost;
                    entry.profit_margin = profit_margin;
                }
            }
            Effect::AnnounceSphinxKey {
                node,
                rotation,
                sphinx_key,
            } => {
                if let Some(entry) = self.nodes.get_mut(&node) {
                    entry.sphinx_keys.insert(rotation, sphinx_key);
                }
            }
            Effect::SubmitPerformance {
                monitor,
                scores,
                evidence,
            } => {
                // a monitor's later submission replaces its earlier one in the epoch
                for scores in self.performance.values_mut() {
                    scores.remove(&monitor);
                }
                self.performance.retain(|_, scores| !scores.is_empty());
                self.evidence.insert(monitor, evidence);
                for &(node, score) in scores {
                    self.performance
                        .entry(node)
                        .or_default()
                        .insert(monitor, score);
                }
            }
            Effect::AdvanceEpoch => self.advance_epoch(),
            Effect::RevealBeacon { index, reveal } => {
                let slot = index as usize;
                self.beacon_last[slot] = reveal;
                self.beacon_reveals[slot] += 1;
                self.reveals.insert(index, reveal);
            }
            Effect::SignTopology { index, signature } => {
                self.topology_signatures.insert(index, signature);
            }
            Effect::AnnounceIssuer {
                period,
                validator,
                key,
            } => self.tickets.announce(period, validator, key),
            Effect::BuyTickets { tx, count, cost } => {
                self.debit(signer, cost);
                let purchase = Purchase {
                    buyer: *signer,
                    count,
                    period: self.ticket_period(),
                    height: self.height,
                };
                self.tickets.buy(tx, purchase, cost);
            }
            Effect::Redeem {
                gateway,
                owner,
                plan,
            } => {
                self.tickets.redeem(gateway, &plan, self.height);
                self.accounts.entry(owner).or_default().balance += plan.to_owner;
                self.pool += plan.to_pool;
            }
        }
        self.accounts.entry(*signer).or_default().nonce += 1;
    }

    fn check_balance(&self, account: &PublicKey, amount: Amount) -> Result<(), TxError> {
        let have = self.account(account).balance;
        if have < amount {
            return Err(TxError::InsufficientBalance { need: amount, have });
        }
        Ok(())
    }

    /// Takes `amount` from `account`, whose balance [`State::check_balance`] found enough.
    fn debit(&mut self, account: &PublicKey, amount: Amount) {
        if let Some(entry) = self.accounts.get_mut(account) {
            entry.balance -= amount;
        }
    }

    fn live_node(&self, node: NodeId) -> Result<&Node, TxError> {
        let entry = self.nodes.get(&node).ok_or(TxError::UnknownNode { node })?;
        if entry.unbonding {
            return Err(TxError::Unbonding { node });
        }
        Ok(entry)
    }

    fn owned_node(&self, owner: &PublicKey, node: NodeId) -> Result<&Node, TxError> {
        let entry = self.live_node(node)?;
        if entry.owner != *owner {
            return Err(TxError::NotOwner { node });
        }
        Ok(entry)
    }

    fn validator_index(&self, key: &PublicKey) -> Result<u32, TxError> {
        self.validators
            .iter()
            .position(|validator| validator.key == *key)
            .map(|index| index as u32)
            .ok_or(TxError::NotValidator)
    }

    fn check_new_node(&self, info: &NodeInfo) -> Result<(), TxError> {
        match (info.kind, info.client_address) {
            (NodeKind::Gateway, None) => {
                return Err(TxError::BadNode {
                    reason: "a gateway needs a client address".into(),
                });
            }
            (NodeKind::Mix, Some(_)) => {
                return Err(TxError::BadNode {
                    reason: "a mix node has no client address".into(),
                });
            }
            _ => {}
        }
        check_sphinx_key(&info.sphinx_key)?;
        if info.moniker.len() > 64 {
            return Err(TxError::BadNode {
                reason: "the moniker is longer than 64 bytes".into(),
            });
        }
        for node in self.nodes.values() {
            let clash = if node.info.identity_key == info.identity_key {
                Some("identity key")
            } else if node.info.noise_key == info.noise_key {
                Some("Noise key")
            } else if node.info.mix_address == info.mix_address {
                Some("mix address")
            } else if info.client_address.is_some()
                && node.info.client_address == info.client_address
            {
                Some("client address")
            } else {
                None
            };
            if let Some(what) = clash {
                return Err(TxError::AlreadyRegistered {
                    what: what.into(),
                    node: node.id,
                });
            }
        }
        Ok(())
    }

    fn add_node(&mut self, owner: PublicKey, info: NodeInfo) -> NodeId {
        let id = self.next_node_id;
        self.next_node_id.0 += 1;
        let sphinx_keys = BTreeMap::from([(self.epoch.rotation, info.sphinx_key)]);
        self.nodes.insert(
            id,
            Node {
                id,
                owner,
                info,
                pledge: Amount::ZERO,
                delegations: Amount::ZERO,
                unit_reward: Fixed::ZERO,
                operating_cost: self.params.default_operating_cost,
                profit_margin: self.params.default_profit_margin,
                performance: self.params.initial_performance,
                sphinx_keys,
                unbonding: false,
            },
        );
        id
    }

    fn interval_budget(&self) -> Amount {
        let per_interval = mul_div(
            u128::from(self.pool),
            u128::from(self.params.interval_pool_emission.0),
            u128::from(PPM.0),
        );
        let per_epoch = per_interval / u128::from(self.params.epochs_per_interval.max(1));
        Amount::try_from(per_epoch).unwrap_or(Amount::ZERO)
    }

    /// The saturation point: staking supply / active set size.
    pub fn saturation(&self) -> Amount {
        self.params.staking_supply / self.params.active_set_size().max(1)
    }

    fn advance_epoch(&mut self) {
        self.pay_rewards();
        self.settle_pending();
        let interval_budget = self.interval_budget();
        let epoch = &mut self.epoch;
        epoch.number += 1;
        epoch.start_ms = self.time_ms;
        epoch.end_ms = self.time_ms.saturating_add(self.params.epoch_length_ms);
        epoch.rotation = u32::try_from(epoch.number / u64::from(self.params.rotation_epochs))
            .unwrap_or(u32::MAX);
        let mut seed_input = Vec::new();
        seed_input.extend_from_slice(&epoch.seed.0);
        seed_input.extend_from_slice(&epoch.number.to_le_bytes());
        for reveal in self.reveals.values() {
            seed_input.extend_from_slice(&reveal.0);
        }
        epoch.seed = Hash::of(&[b"umbra-epoch-seed-v1", &seed_input]);
        if epoch
            .number
            .is_multiple_of(u64::from(self.params.epochs_per_interval))
        {
            epoch.budget = interval_budget;
        }
        let rotation = self.epoch.rotation;
        for node in self.nodes.values_mut() {
            node.sphinx_keys
                .retain(|&key_rotation, _| key_rotation >= rotation);
        }
        self.reveals.clear();
        self.performance.clear();
        self.evidence.clear();
        self.topology_signatures.clear();
        self.choose_active_set();
        let keep = u64::from(self.params.history_epochs);
        let current = self.epoch.number;
        self.history.retain(|&epoch, _| epoch + keep >= current);
        // tickets of a period two behind can no longer be accepted: their unspent fees feed
        // the reward pool
        let expired = self.tickets.expire(self.ticket_period());
        self.pool += expired;
    }

    fn pay_rewards(&mut self) {
        let saturation = self.saturation();
        let mut report = EpochReport {
            epoch: self.epoch.number,
            budget: self.epoch.budget,
            saturation,
            active_set_size: self.params.active_set_size(),
            sybil_resistance: self.params.sybil_resistance,
            nodes: Vec::new(),
            monitors: self
                .evidence
                .iter()
                .filter_map(|(&index, &evidence)| {
                    Some(MonitorSubmission {
                        monitor: *self.monitors.get(index as usize)?,
                        evidence,
                        scores: self
                            .performance
                            .iter()
                            .filter_map(|(&node, scores)| Some((node, *scores.get(&index)?)))
                            .collect(),
                    })
                })
                .collect(),
        };
        // monitors' verdicts: the lower median over every monitor genesis names, where a
        // monitor that did not score the node votes for the performance it has, so that no
        // monitor can move a node's performance alone when the others are silent about it
        let monitors = self.monitors.len();
        for (node, scores) in &self.performance {
            let Some(previous) = self.nodes.get(node).map(|entry| entry.performance) else {
                continue;
            };
            let mut values: Vec<Ppm> = scores.values().copied().collect();
            values.resize(monitors.max(values.len()), previous);
            values.sort_unstable();
            if let (Some(entry), Some(&median)) =
                (self.nodes.get_mut(node), values.get((values.len() - 1) / 2))
            {
                entry.performance = median;
            }
        }
        let members: Vec<(NodeId, Option<u8>)> = self.epoch.active.members().collect();
        for &(id, layer) in &members {
            let Some(node) = self.nodes.get_mut(&id) else {
                continue;
            };
            let inputs = RewardInputs {
                budget: self.epoch.budget,
                active_set_size: self.params.active_set_size(),
                saturation,
                sybil_resistance: Fixed::from_ppm(self.params.sybil_resistance),
                pledge: node.pledge,
                delegations: node.delegations,
                performance: Fixed::from_ppm(node.performance),
                operating_cost: node.operating_cost / u64::from(self.params.epochs_per_interval),
                profit_margin: Fixed::from_ppm(node.profit_margin),
            };
            let mut payout = node_reward(&inputs);
            if payout.total() > self.pool {
                payout = Payout::default();
            }
            self.pool -= payout.total();
            node.pledge += payout.operator;
            if !payout.delegators.is_zero() {
                if node.delegations.is_zero() {
                    // nobody to pay: back to the pool
                    self.pool += payout.delegators;
                    payout.delegators = Amount::ZERO;
                } else {
                    let growth =
                        Fixed::ratio(u128::from(payout.delegators), u128::from(node.delegations));
                    node.unit_reward = node
                        .unit_reward
                        .plus(Fixed::ONE.plus(node.unit_reward).times(growth));
                    node.delegations += payout.delegators;
                }
            }
            report.nodes.push(NodeEpochReport {
                node: id,
                layer,
                performance: node.performance,
                measured: self.performance.contains_key(&id),
                stake: inputs.pledge + inputs.delegations,
                pledge: inputs.pledge,
                delegations: inputs.delegations,
                operating_cost: inputs.operating_cost,
                profit_margin: node.profit_margin,
                payout,
            });
        }
        self.history.insert(report.epoch, report);
        // a node out of the active set cannot be measured: it regains some performance each
        // epoch, so that one left out for a fault since repaired is measured again
        let active: BTreeSet<NodeId> = members.iter().map(|&(id, _)| id).collect();
        let (recovery, ceiling) = (
            self.params.performance_recovery,
            self.params.initial_performance,
        );
        for node in self.nodes.values_mut() {
            if !active.contains(&node.id) && node.performance < ceiling {
                node.performance = Ppm(node.performance.0.saturating_add(recovery.0)).min(ceiling);
            }
        }
    }

    fn settle_pending(&mut self) {
        for pending in std::mem::take(&mut self.pending) {
            match pending {
                Pending::Delegate {
                    delegator,
                    node,
                    amount,
                } => {
                    let Some(entry) = self.nodes.get_mut(&node) else {
                        self.accounts.entry(delegator).or_default().balance += amount;
                        continue;
                    };
                    let ratio = entry.unit_reward;
                    let total = match self.delegations.get(&(node, delegator)) {
                        Some(existing) => existing.value(ratio) + amount,
                        None => amount,
                    };
                    entry.delegations += amount;
                    self.delegations.insert(
                        (node, delegator),
                        Delegation {
                            amount: total,
                            start_ratio: ratio,
                        },
                    );
                }
                Pending::Undelegate { delegator, node } => {
                    self.withdraw_delegation(node, delegator);
                }
                Pending::Unbond { node } => {
                    let delegators: Vec<PublicKey> = self
                        .delegations
                        .range((node, PublicKey([0; 32]))..=(node, PublicKey([255; 32])))
                        .map(|((_, delegator), _)| *delegator)
                        .collect();
                    for delegator in delegators {
                        self.withdraw_delegation(node, delegator);
                    }
                    if let Some(entry) = self.nodes.remove(&node) {
                        self.accounts.entry(entry.owner).or_default().balance += entry.pledge;
                        // rounding dust of the delegations goes back to the pool
                        self.pool += entry.delegations;
                    }
                }
            }
        }
    }

    fn withdraw_delegation(&mut self, node: NodeId, delegator: PublicKey) {
        let (Some(entry), Some(delegation)) = (
            self.nodes.get_mut(&node),
            self.delegations.remove(&(node, delegator)),
        ) else {
            return;
        };
        let value = delegation.value(entry.unit_reward).min(entry.delegations);
        entry.delegations -= value;
        self.accounts.entry(delegator).or_default().balance += value;
        let any_left = self
            .delegations
            .range((node, PublicKey([0; 32]))..=(node, PublicKey([255; 32])))
            .next()
            .is_some();
        if !any_left {
            self.pool += entry.delegations;
            entry.delegations = Amount::ZERO;
        }
    }

    /// Draws the active set with the epoch's seed: weighted sampling without replacement, weight
    /// = stake saturation × performance^k; the mix nodes in the order drawn are dealt round-robin
    /// into layers 1, 2, 3. Only bonded nodes that are not leaving and have a Sphinx key for the
    /// epoch's rotation can be drawn, and only those whose performance is at least the
    /// threshold — unless fewer than three mix nodes (one a layer) or no gateway would be left:
    /// then the best of those below the threshold make up the number, so the network keeps
    /// working.
    fn choose_active_set(&mut self) {
        let saturation = u128::from(self.saturation());
        let exponent = self.params.performance_exponent;
        let rotation = self.epoch.rotation;
        let threshold = self.params.performance_threshold;
        let candidates = |kind: NodeKind, at_least: usize| -> Vec<(NodeId, u128)> {
            let mut eligible: Vec<&Node> = self
                .nodes
                .values()
                .filter(|node| {
                    node.info.kind == kind
                        && node.pledge >= self.params.minimum_pledge
                        && !node.unbonding
                        && node.sphinx_keys.contains_key(&rotation)
                })
                .collect();
            // the best first (ties: the older node), so that the fill below takes the best
            eligible.sort_by_key(|node| (std::cmp::Reverse(node.performance), node.id));
            let passing = eligible
                .iter()
                .take_while(|node| node.performance >= threshold)
                .count();
            eligible.truncate(passing.max(at_least));
            eligible
                .into_iter()
                .map(|node| {
                    let stake = Fixed::ratio(u128::from(node.stake()), saturation).at_most_one();
                    let weight = stake.times(Fixed::from_ppm(node.performance).pow(exponent));
                    (node.id, weight.0)
                })
                .filter(|&(_, weight)| weight > 0)
                .collect()
        };
        let mixes = candidates(NodeKind::Mix, 3);
        let gateways = candidates(NodeKind::Gateway, 1);
        let mut draw = Draw::new(self.epoch.seed);
        let chosen_mixes = sample(&mut draw, mixes, 3 * self.params.mixes_per_layer as usize);
        let chosen_gateways = sample(&mut draw, gateways, self.params.active_gateways as usize);
        let mut active = ActiveSet::default();
        for (index, id) in chosen_mixes.into_iter().enumerate() {
            active.layers[index % 3].push(id);
        }
        active.gateways = chosen_gateways;
        self.epoch.active = active;
        self.epoch.document = self.document();
    }

    fn document(&self) -> TopologyDocument {
        let rotation = self.epoch.rotation;
        let last_of_rotation =
            (self.epoch.number + 1).is_multiple_of(u64::from(self.params.rotation_epochs));
        let nodes = self
            .epoch
            .active
            .members()
            .filter_map(|(id, layer)| {
                let node = self.nodes.get(&id)?;
                Some(TopologyNode {
                    id,
                    kind: node.info.kind,
                    layer,
                    identity_key: node.info.identity_key,
                    sphinx_key: *node.sphinx_keys.get(&rotation)?,
                    next_sphinx_key: if last_of_rotation {
                        node.sphinx_keys.get(&(rotation + 1)).copied()
                    } else {
                        None
                    },
                    noise_key: node.info.noise_key,
                    mix_address: node.info.mix_address,
                    client_address: node.info.client_address,
                })
            })
            .collect();
        TopologyDocument {
            chain_id: self.chain_id.clone(),
            epoch: self.epoch.number,
            start_ms: self.epoch.start_ms,
            end_ms: self.epoch.end_ms,
            rotation,
            nodes,
        }
    }

    // ---- queries ----

    /// The current ticket key period.
    pub fn ticket_period(&self) -> u64 {
        self.params.tickets.period(self.epoch.number)
    }

    /// Bandwidth tickets: issuer keys, purchases, the fee pool, spent serials.
    pub fn tickets(&self) -> &TicketBook {
        &self.tickets
    }

    /// The chain's name.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The hash of the whole state.
    pub fn root(&self) -> Hash {
        Hash::of(&[b"umbra-state-v1", &canonical(self)])
    }

    /// The height of the last applied block.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The last block's time.
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// The last block's hash (the genesis hash before any block).
    pub fn last_block(&self) -> Hash {
        self.last_block
    }

    /// An account (empty if it never received anything).
    pub fn account(&self, key: &PublicKey) -> Account {
        self.accounts.get(key).copied().unwrap_or_default()
    }

    /// Every account.
    pub fn accounts(&self) -> &BTreeMap<PublicKey, Account> {
        &self.accounts
    }

    /// A node.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(&id)
    }

    /// Every node.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// Every delegation with its current value.
    pub fn delegations(
        &self,
    ) -> impl Iterator<Item = (NodeId, PublicKey, Delegation, Amount)> + '_ {
        self.delegations
            .iter()
            .map(|(&(node, delegator), delegation)| {
                let ratio = self
                    .nodes
                    .get(&node)
                    .map(|entry| entry.unit_reward)
                    .unwrap_or_default();
                (node, delegator, *delegation, delegation.value(ratio))
            })
    }

    /// What waits for the epoch boundary.
    pub fn pending(&self) -> &[Pending] {
        &self.pending
    }

    /// The reward pool.
    pub fn pool(&self) -> Amount {
        self.pool
    }

    /// All tokens.
    pub fn supply(&self) -> Amount {
        self.supply
    }

    /// The current epoch.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// The validators.
    pub fn validators(&self) -> &[ValidatorKey] {
        &self.validators
    }

    /// How many beacon values validator `index` has revealed so far.
    pub fn beacon_reveals(&self, index: usize) -> u64 {
        self.beacon_reveals.get(index).copied().unwrap_or(0)
    }

    /// Whether validator `index` revealed its beacon value this epoch.
    pub fn revealed_this_epoch(&self, index: usize) -> bool {
        self.reveals.contains_key(&(index as u32))
    }

    /// Whether validator `index` signed this epoch's topology.
    pub fn signed_topology(&self, index: usize) -> bool {
        self.topology_signatures.contains_key(&(index as u32))
    }

    /// The current topology with the signatures collected so far.
    pub fn signed_topology_document(&self) -> SignedTopology {
        SignedTopology {
            document: self.epoch.document.clone(),
            certificate: Certificate {
                signatures: self
                    .topology_signatures
                    .iter()
                    .filter_map(|(&index, signature)| {
                        let validator = self.validators.get(index as usize)?;
                        Some((validator.key, *signature))
                    })
                    .collect(),
            },
        }
    }

    /// Reports of past epochs, oldest first.
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &EpochReport> {
        self.history.values()
    }

    /// The accounts genesis names as network monitors, in genesis order (a monitor's index).
    pub fn monitors(&self) -> &[PublicKey] {
        &self.monitors
    }

    /// The evidence hash of each monitor's submission this epoch, by monitor index.
    pub fn submitted_evidence(&self) -> &BTreeMap<u32, Hash> {
        &self.evidence
    }

    /// Performance scores submitted this epoch, per node and monitor index.
    pub fn submitted_performance(&self) -> &BTreeMap<NodeId, BTreeMap<u32, Ppm>> {
        &self.performance
    }

    /// Every token where it is: balances, pledges, delegations, pending delegations, reward
    /// pool, ticket fee pool. Equal to [`State::supply`] in every reachable state.
    pub fn accounted_tokens(&self) -> u128 {
        let balances: u128 = self
            .accounts
            .values()
            .map(|account| u128::from(account.balance))
            .sum();
        let stake: u128 = self
            .nodes
            .values()
            .map(|node| u128::from(node.pledge) + u128::from(node.delegations))
            .sum();
        let pending: u128 = self
            .pending
            .iter()
            .map(|pending| match pending {
                Pending::Delegate { amount, .. } => u128::from(*amount),
                _ => 0,
            })
            .sum();
        balances + stake + pending + u128::from(self.pool) + u128::from(self.tickets.fee_pool())
    }
}

fn check_sphinx_key(key: &Key32) -> Result<(), TxError> {
    umbra_sphinx::PublicKey::from_bytes(key.0)
        .map(|_| ())
        .map_err(|error| TxError::BadNode {
            reason: format!("the Sphinx key is not a usable X25519 public key: {error}"),
        })
}

/// Weighted sampling without replacement: `count` ids, each drawn with probability proportional
/// to its weight among those not yet drawn.
fn sample(draw: &mut Draw, mut candidates: Vec<(NodeId, u128)>, count: usize) -> Vec<NodeId> {
    let mut chosen = Vec::new();
    let mut total: u128 = candidates.iter().map(|&(_, weight)| weight).sum();
    while chosen.len() < count && !candidates.is_empty() {
        let mut target = draw.below(total);
        let mut index = 0;
        for (position, &(_, weight)) in candidates.iter().enumerate() {
            if target < weight {
                index = position;
                break;
            }
            target -= weight;
        }
        let (id, weight) = candidates.remove(index);
        total -= weight;
        chosen.push(id);
    }
    chosen
}
