//! The ledger's side of bandwidth tickets (docs/ledger.md, "Bandwidth tickets"): the
//! validators' ticket keys per key period, purchases paid into the fee pool, and redemptions
//! that pay gateways out of it, with every spent serial remembered until its period expires.
//!
//! [`TicketBook`] is a part of [`State`](crate::State) that decides and writes only what is its
//! own; the state checks signers, balances and nodes, and moves the tokens that leave the book.
//! Every map here is keyed by key period first or bounded by expiry: a period's keys,
//! purchases, spent serials and unspent fees are dropped once its tickets can no longer be
//! accepted.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use umbra_tickets::{ChainTag, IssuerPublicKey, IssuerSet, Serial, Ticket, verify};

use crate::err::{TicketRefusal, TxError};
use crate::fixed::{Amount, PPM, mul_div};
use crate::genesis::TicketParams;
use crate::keys::{Hash, PublicKey};
use crate::topology::ValidatorKey;
use crate::tx::{MAX_REDEEM_TICKETS, NodeId};

/// How many double-spend events the ledger keeps (the newest).
pub const MAX_DOUBLE_SPEND_EVENTS: usize = 1_000;

/// A purchase of tickets, recorded under the hash of the transaction that paid for it: what
/// a validator checks before blind-signing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchase {
    /// The paying account.
    pub buyer: PublicKey,
    /// How many tickets it paid for.
    pub count: u32,
    /// The key period the tickets are of (the current one when it paid).
    pub period: u64,
    /// The height of the block that paid.
    pub height: u64,
}

/// A ticket redeemed a second time: the second redemption paid nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoubleSpend {
    /// The ticket's serial.
    pub serial: Hash,
    /// Its key period.
    pub period: u64,
    /// The gateway that redeemed it first (and was paid).
    pub first: NodeId,
    /// The gateway that redeemed it again.
    pub second: NodeId,
    /// The height of the second redemption.
    pub height: u64,
}

/// Counters since genesis, and the fee pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketCounts {
    /// Tickets bought.
    pub bought: u64,
    /// Tickets redeemed for the first time (paid).
    pub redeemed: u64,
    /// Redemptions of a ticket redeemed before (not paid).
    pub double_spends: u64,
    /// Tickets of expired periods never redeemed (their price went to the reward pool).
    pub expired_unredeemed: u64,
}

/// The ticket part of the ledger state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketBook {
    /// Announced keys: key period → validator index → key.
    issuers: BTreeMap<u64, BTreeMap<u16, IssuerPublicKey>>,
    /// Purchases by the hash of the paying transaction.
    purchases: BTreeMap<Hash, Purchase>,
    /// The fee pool, by key period: what the period's purchases paid and its redemptions have
    /// not yet taken out.
    escrow: BTreeMap<u64, Amount>,
    /// Tickets of each period paid for and not yet redeemed (what expiry counts).
    outstanding: BTreeMap<u64, u64>,
    /// Spent serials: key period → serial → the gateway that redeemed it first.
    spent: BTreeMap<u64, BTreeMap<Hash, NodeId>>,
    /// The newest double-spend events, oldest first.
    double_spends: Vec<DoubleSpend>,
    counts: TicketCounts,
}

/// What an admitted redemption changes.
#[derive(Debug)]
pub(crate) struct RedeemPlan {
    /// First redemptions: (period, serial).
    fresh: Vec<(u64, Hash)>,
    /// Repeated ones: (period, serial, the gateway that redeemed it first).
    repeated: Vec<(u64, Hash, NodeId)>,
    /// What leaves each period's escrow.
    debits: BTreeMap<u64, Amount>,
    /// The gateway owner's part.
    pub(crate) to_owner: Amount,
    /// The reward pool's part.
    pub(crate) to_pool: Amount,
}

impl TicketBook {
    /// Whether nothing ever happened here (then the state's encoding leaves the book out).
    pub fn is_empty(&self) -> bool {
        *self == TicketBook::default()
    }

    /// Decides an [`AnnounceIssuer`](crate::Action::AnnounceIssuer) by validator `index`.
    pub(crate) fn admit_announce(
        &self,
        index: u32,
        current: u64,
        period: u64,
        key: &[u8],
    ) -> Result<(u16, IssuerPublicKey), TxError> {
        if period != current && period != current.saturating_add(1) {
            return Err(TxError::WrongKeyPeriod {
                current,
                got: period,
            });
        }
        // a ticket names its signers by u16: a validator beyond that cannot issue
        let validator = u16::try_from(index).map_err(|_| TxError::NotValidator)?;
        let key = IssuerPublicKey::from_bytes(key).map_err(|error| TxError::BadIssuerKey {
            reason: error.to_string(),
        })?;
        if let Some(announced) = self.issuers.get(&period) {
            if announced.contains_key(&validator) {
                return Err(TxError::IssuerKeyAlreadySet { period });
            }
            if let Some((&other, _)) = announced.iter().find(|(_, other)| **other == key) {
                return Err(TxError::IssuerKeyTaken {
                    period,
                    validator: u32::from(other),
                });
            }
        }
        Ok((validator, key))
    }

    /// Writes an admitted announcement.
    pub(crate) fn announce(&mut self, period: u64, validator: u16, key: IssuerPublicKey) {
        self.issuers
            .entry(period)
            .or_default()
            .insert(validator, key);
    }

    /// Decides a [`BuyTickets`](crate::Action::BuyTickets) of `count` tickets in key period
    /// `current`; returns their price (the caller checks the balance).
    pub(crate) fn admit_buy(
        &self,
        validators: &[ValidatorKey],
        current: u64,
        count: u32,
        price: Amount,
    ) -> Result<Amount, TxError> {
        let max = umbra_tickets::MAX_TICKETS_PER_PURCHASE;
        if count == 0 || count > max {
            return Err(TxError::TicketCount {
                count: u64::from(count),
                max: u64::from(max),
            });
        }
        let announced = self.announced_power(validators, current);
        let total = total_power(validators);
        if u128::from(announced) * 3 <= u128::from(total) * 2 {
            return Err(TxError::TicketsUnavailable {
                period: current,
                announced,
                total,
            });
        }
        // count ≤ 4096: an overflow means a price no balance can pay
        Ok(price.checked_mul(u64::from(count)).unwrap_or(Amount::MAX))
    }

    /// Writes an admitted purchase paid by transaction `tx`.
    pub(crate) fn buy(&mut self, tx: Hash, purchase: Purchase, cost: Amount) {
        let escrow = self.escrow.entry(purchase.period).or_default();
        *escrow = escrow.saturating_add(cost);
        let outstanding = self.outstanding.entry(purchase.period).or_default();
        *outstanding = outstanding.saturating_add(u64::from(purchase.count));
        self.counts.bought = self.counts.bought.saturating_add(u64::from(purchase.count));
        self.purchases.insert(tx, purchase);
    }

    /// Decides a redemption of `tickets` by `gateway` in key period `current` on `chain`: every
    /// ticket must parse and verify for a live period (the current one or the one before),
    /// signed by validators holding more than 2/3 of all voting power; otherwise the whole
    /// redemption is refused, naming the first bad ticket.
    pub(crate) fn admit_redeem(
        &self,
        validators: &[ValidatorKey],
        chain: ChainTag,
        current: u64,
        gateway: NodeId,
        tickets: &[Vec<u8>],
        params: &TicketParams,
    ) -> Result<RedeemPlan, TxError> {
        let (price, share) = (params.price, params.pool_share);
        if tickets.is_empty() || tickets.len() > MAX_REDEEM_TICKETS {
            return Err(TxError::TicketCount {
                count: tickets.len() as u64,
                max: MAX_REDEEM_TICKETS as u64,
            });
        }
        let issuers = self.issuer_set(validators, current);
        let total = total_power(validators);
        let mut plan = RedeemPlan {
            fresh: Vec::new(),
            repeated: Vec::new(),
            debits: BTreeMap::new(),
            to_owner: Amount::ZERO,
            to_pool: Amount::ZERO,
        };
        let mut seen = BTreeSet::new();
        for (index, bytes) in (0u32..).zip(tickets) {
            let refuse = |reason: String| TxError::BadTicket { index, reason };
            let ticket = Ticket::from_bytes(bytes).map_err(|error| refuse(error.to_string()))?;
            let serial = verify_ticket(&ticket, chain, &issuers, power_of(validators), total)
                .map_err(|error| refuse(error.to_string()))?;
            let serial = Hash(serial.0);
            let period = ticket.input.period;
            let first = self
                .spent
                .get(&period)
                .and_then(|spent| spent.get(&serial))
                .copied();
            match first {
                Some(first) => plan.repeated.push((period, serial, first)),
                None if !seen.insert(serial) => plan.repeated.push((period, serial, gateway)),
                None => {
                    // what the period's purchases left: more than its price unless more than
                    // 2/3 of the validators signed tickets nobody paid for
                    let left = self
                        .escrow
                        .get(&period)
                        .copied()
                        .unwrap_or_default()
                        .checked_sub(plan.debits.get(&period).copied().unwrap_or_default())
                        .unwrap_or_default();
                    let paid = price.min(left);
                    let to_pool = Amount::try_from(mul_div(
                        u128::from(paid),
                        u128::from(share.0),
                        u128::from(PPM.0),
                    ))
                    .unwrap_or(paid);
                    *plan.debits.entry(period).or_default() += paid;
                    plan.to_pool += to_pool;
                    plan.to_owner += paid - to_pool;
                    plan.fresh.push((period, serial));
                }
            }
        }
        Ok(plan)
    }

    /// Writes an admitted redemption by `gateway` at `height` (the caller pays out
    /// `plan.to_owner` and `plan.to_pool`).
    pub(crate) fn redeem(&mut self, gateway: NodeId, plan: &RedeemPlan, height: u64) {
        for (period, amount) in &plan.debits {
            if let Some(escrow) = self.escrow.get_mut(period) {
                *escrow = escrow.checked_sub(*amount).unwrap_or_default();
            }
        }
        for &(period, serial) in &plan.fresh {
            self.spent
                .entry(period)
                .or_default()
                .insert(serial, gateway);
            if let Some(outstanding) = self.outstanding.get_mut(&period) {
                *outstanding = outstanding.saturating_sub(1);
            }
        }
        self.counts.redeemed = self.counts.redeemed.saturating_add(plan.fresh.len() as u64);
        for &(period, serial, first) in &plan.repeated {
            self.double_spends.push(DoubleSpend {
                serial,
                period,
                first,
                second: gateway,
                height,
            });
        }
        self.counts.double_spends = self
            .counts
            .double_spends
            .saturating_add(plan.repeated.len() as u64);
        let excess = self
            .double_spends
            .len()
            .saturating_sub(MAX_DOUBLE_SPEND_EVENTS);
        self.double_spends.drain(..excess);
    }

    /// Drops what belongs to periods whose tickets can no longer be accepted now that the key
    /// period is `current` (periods before `current - 1`); returns their unspent fees, which
    /// go to the reward pool.
    pub(crate) fn expire(&mut self, current: u64) -> Amount {
        let oldest_live = current.saturating_sub(1);
        let live = |period: &u64| *period >= oldest_live;
        self.issuers.retain(|period, _| live(period));
        self.purchases.retain(|_, purchase| live(&purchase.period));
        self.spent.retain(|period, _| live(period));
        let mut expired = Amount::ZERO;
        self.escrow.retain(|period, amount| {
            if !live(period) {
                expired += *amount;
            }
            live(period)
        });
        let mut unredeemed: u64 = 0;
        self.outstanding.retain(|period, count| {
            if !live(period) {
                unredeemed = unredeemed.saturating_add(*count);
            }
            live(period)
        });
        self.counts.expired_unredeemed = self.counts.expired_unredeemed.saturating_add(unredeemed);
        expired
    }

    /// The issuer set a ticket is verified against in key period `current`: the announced
    /// keys of the current period and the one before, with their validators' voting power.
    pub fn issuer_set(&self, validators: &[ValidatorKey], current: u64) -> IssuerSet {
        let mut set = IssuerSet::new();
        for period in [current.saturating_sub(1), current] {
            let Some(announced) = self.issuers.get(&period) else {
                continue;
            };
            let issuers = announced.iter().filter_map(|(&index, key)| {
                let power = validators.get(usize::from(index))?.power;
                Some((index, key.clone(), power))
            });
            // only a period without power fails, and such a period can verify no ticket
            let _ = set.insert_period(period, issuers);
        }
        set
    }

    /// The voting power of the validators that announced keys for `period`.
    pub fn announced_power(&self, validators: &[ValidatorKey], period: u64) -> u64 {
        self.issuers
            .get(&period)
            .into_iter()
            .flat_map(|announced| announced.keys())
            .filter_map(|&index| validators.get(usize::from(index)))
            .map(|validator| validator.power)
            .fold(0u64, u64::saturating_add)
    }

    /// Announced keys by key period and validator index (periods not yet expired).
    pub fn issuers(&self) -> &BTreeMap<u64, BTreeMap<u16, IssuerPublicKey>> {
        &self.issuers
    }

    /// The purchase paid by transaction `tx`, while its period is live.
    pub fn purchase(&self, tx: &Hash) -> Option<&Purchase> {
        self.purchases.get(tx)
    }

    /// Every purchase of a live period, by paying transaction.
    pub fn purchases(&self) -> &BTreeMap<Hash, Purchase> {
        &self.purchases
    }

    /// Spent serials of live periods, by period, with the gateway that redeemed each first.
    pub fn spent(&self) -> &BTreeMap<u64, BTreeMap<Hash, NodeId>> {
        &self.spent
    }

    /// The newest double-spend events (at most [`MAX_DOUBLE_SPEND_EVENTS`]), oldest first.
    pub fn double_spends(&self) -> &[DoubleSpend] {
        &self.double_spends
    }

    /// Counters since genesis.
    pub fn counts(&self) -> TicketCounts {
        self.counts
    }

    /// The fee pool: what purchases of live periods paid and redemptions have not taken out.
    pub fn fee_pool(&self) -> Amount {
        self.escrow.values().copied().sum()
    }

    /// The fee pool by key period.
    pub fn escrow(&self) -> &BTreeMap<u64, Amount> {
        &self.escrow
    }
}

/// Checks a ticket as the ledger does before paying for it: [`umbra_tickets::verify`] against
/// `issuers` (the announced keys of the live periods, each with its validator's power), and
/// then that the signers hold more than 2/3 of `total`, all the voting power — not only of
/// those that announced keys, which `verify` weighs against. `power` gives a validator
/// index's voting power. A gateway checks the same way before serving a client.
pub fn verify_ticket(
    ticket: &Ticket,
    chain: ChainTag,
    issuers: &IssuerSet,
    power: impl Fn(u16) -> Option<u64>,
    total: u64,
) -> Result<Serial, TicketRefusal> {
    let serial = verify(ticket, chain, issuers)?;
    // verify found the signers distinct and each a validator of the period
    let signed = ticket
        .signatures
        .iter()
        .filter_map(|(validator, _)| power(*validator))
        .fold(0u64, u64::saturating_add);
    if u128::from(signed) * 3 <= u128::from(total) * 2 {
        return Err(TicketRefusal::TooLittlePower { signed, total });
    }
    Ok(serial)
}

/// A validator index's voting power, from the genesis validator list.
fn power_of(validators: &[ValidatorKey]) -> impl Fn(u16) -> Option<u64> + '_ {
    |index| {
        validators
            .get(usize::from(index))
            .map(|validator| validator.power)
    }
}

/// All voting power.
fn total_power(validators: &[ValidatorKey]) -> u64 {
    validators
        .iter()
        .map(|validator| validator.power)
        .fold(0u64, u64::saturating_add)
}
