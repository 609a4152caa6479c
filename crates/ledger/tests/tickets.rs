//! Bandwidth tickets on the ledger: issuer keys, purchases, redemptions, double spends, expiry.

#![allow(clippy::unwrap_used, clippy::panic)] // helpers outside #[test] functions

mod common;

use common::tickets::{announce, issue, issue_on, issuer_keys};
use common::{CHAIN, Chain, genesis, key, register, validator_key};
use umbra_ledger::api::{IssuersView, PurchaseView, TicketStatsView};
use umbra_ledger::{
    Action, Amount, Hash, NodeId, NodeKind, PPM, Params, State, TicketParams, TxError, UNIT,
};
use umbra_tickets::{ChainTag, MAX_TICKETS_PER_PURCHASE};

fn params() -> Params {
    Params {
        epoch_length_ms: 1_000,
        epochs_per_interval: 4,
        mixes_per_layer: 1,
        active_gateways: 1,
        staking_supply: 4_000 * UNIT,
        tickets: TicketParams {
            key_epochs: 2,
            ..TicketParams::default()
        },
        ..Params::default()
    }
}

fn price() -> Amount {
    TicketParams::default().price
}

/// The reward pool's part of one ticket.
fn share() -> Amount {
    Amount(price().0 * u64::from(TicketParams::default().pool_share.0) / u64::from(PPM.0))
}

/// Four validators of power 1; accounts 1..=6; gateways 1 (owner 3) and 2 (owner 4) bonded,
/// mix node 3 (owner 5) bonded.
fn chain() -> Chain {
    let mut chain = Chain::new(genesis(params(), 6, 5_000 * UNIT, 4));
    for (owner, n, kind) in [
        (3, 1, NodeKind::Gateway),
        (4, 2, NodeKind::Gateway),
        (5, 3, NodeKind::Mix),
    ] {
        let owner = key(owner);
        chain
            .act(&owner, register(&owner.public(), n, kind))
            .unwrap();
        chain
            .act(
                &owner,
                Action::Bond {
                    node: NodeId(u32::from(n)),
                    amount: 100 * UNIT,
                },
            )
            .unwrap();
    }
    chain
}

/// Validators `validators` announce their keys for `period`.
fn announce_keys(chain: &mut Chain, period: u64, validators: &[u8]) {
    for &v in validators {
        chain
            .act(&validator_key(v), announce(period, usize::from(v)))
            .unwrap();
    }
}

/// `buyer` buys `count` tickets; returns the paying transaction's hash.
fn buy(chain: &mut Chain, buyer: u8, count: u32) -> Hash {
    let transaction = chain.tx(&key(buyer), Action::BuyTickets { count });
    let hash = transaction.hash();
    assert_eq!(chain.block_after(1, vec![transaction]), vec![Ok(())]);
    hash
}

/// Gateway `node`'s identity key redeems `tickets`.
fn redeem(chain: &mut Chain, node: u8, tickets: Vec<Vec<u8>>) -> Result<(), TxError> {
    chain.act(
        &key(150 + node),
        Action::Redeem {
            gateway: NodeId(u32::from(node)),
            tickets,
        },
    )
}

/// Applies `action` by `signer` to a copy of the state: it must be refused and change nothing.
fn refused(chain: &Chain, signer: u8, action: Action) -> TxError {
    let mut trial = chain.state.clone();
    let transaction = chain.tx(&key(signer), action);
    let error = trial.apply(&transaction).unwrap_err();
    assert_eq!(
        trial, chain.state,
        "a refused transaction changed the state"
    );
    error
}

fn redeem_action(node: u8, tickets: Vec<Vec<u8>>) -> Action {
    Action::Redeem {
        gateway: NodeId(u32::from(node)),
        tickets,
    }
}

fn balance(chain: &Chain, n: u8) -> Amount {
    chain.state.account(&key(n).public()).balance
}

#[test]
fn buying_then_redeeming_pays_the_gateway_owner_and_the_pool() {
    let mut chain = chain();
    announce_keys(&mut chain, 0, &[0, 1, 2, 3]);
    let supply = chain.state.accounted_tokens();
    let before = balance(&chain, 1);
    let tx = buy(&mut chain, 1, 3);
    assert_eq!(balance(&chain, 1), before - 3 * price());
    assert_eq!(chain.state.tickets().fee_pool(), 3 * price());
    assert_eq!(
        PurchaseView::of(&chain.state, tx),
        Some(PurchaseView {
            tx,
            buyer: key(1).public(),
            count: 3,
            period: 0,
            height: chain.state.height(),
        })
    );
    assert_eq!(PurchaseView::of(&chain.state, Hash([0; 32])), None);
    // three of four validators sign: more than 2/3
    let tickets = issue(tx, 0, 3, &[0, 1, 3], 1);
    let (owner, pool) = (balance(&chain, 3), chain.state.pool());
    redeem(&mut chain, 1, tickets[..2].to_vec()).unwrap();
    assert_eq!(balance(&chain, 3), owner + 2 * (price() - share()));
    assert_eq!(chain.state.pool(), pool + 2 * share());
    assert_eq!(chain.state.tickets().fee_pool(), price());
    assert_eq!(chain.state.accounted_tokens(), supply);
    // the owner may redeem too; it is paid the same way
    let owner = balance(&chain, 3);
    chain
        .act(&key(3), redeem_action(1, tickets[2..].to_vec()))
        .unwrap();
    assert_eq!(balance(&chain, 3), owner + price() - share());
    assert_eq!(chain.state.tickets().fee_pool(), Amount::ZERO);
    let stats = TicketStatsView::of(&chain.state);
    assert_eq!(
        (stats.bought, stats.redeemed, stats.double_spends),
        (3, 3, 0)
    );
    assert_eq!(chain.state.accounted_tokens(), supply);
    assert_eq!(chain.replay_root(), chain.state.root());
}

#[test]
fn a_ticket_redeemed_twice_pays_only_the_first_gateway() {
    let mut chain = chain();
    announce_keys(&mut chain, 0, &[0, 1, 2, 3]);
    let tx = buy(&mut chain, 1, 2);
    let tickets = issue(tx, 0, 2, &[0, 1, 2, 3], 2);
    redeem(&mut chain, 1, vec![tickets[0].clone()]).unwrap();
    let (first, second, pool) = (balance(&chain, 3), balance(&chain, 4), chain.state.pool());
    // gateway 2 redeems the same ticket: accepted, paid nothing, recorded
    redeem(&mut chain, 2, vec![tickets[0].clone()]).unwrap();
    assert_eq!(
        (balance(&chain, 3), balance(&chain, 4), chain.state.pool()),
        (first, second, pool)
    );
    let events = chain.state.tickets().double_spends();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].first, events[0].second), (NodeId(1), NodeId(2)));
    assert_eq!(events[0].height, chain.state.height());
    assert_eq!(events[0].period, 0);
    // twice in one redemption: the first is paid, the second is a double spend
    redeem(&mut chain, 2, vec![tickets[1].clone(), tickets[1].clone()]).unwrap();
    assert_eq!(balance(&chain, 4), second + price() - share());
    let events = chain.state.tickets().double_spends();
    assert_eq!((events[1].first, events[1].second), (NodeId(2), NodeId(2)));
    let stats = TicketStatsView::of(&chain.state);
    assert_eq!((stats.redeemed, stats.double_spends), (2, 2));
    assert_eq!(stats.recent_double_spends[0], events[1]);
    assert_eq!(
        chain.state.accounted_tokens(),
        u128::from(chain.state.supply())
    );
}

#[test]
fn bad_redemptions_are_refused_whole_and_change_nothing() {
    let mut chain = chain();
    announce_keys(&mut chain, 0, &[0, 1, 2, 3]);
    let tx = buy(&mut chain, 1, 2);
    let good = issue(tx, 0, 1, &[0, 1, 2], 3).remove(0);
    let bad_ticket = |ticket: Vec<u8>| {
        // a good ticket first: the error names the second
        match refused(
            &chain,
            150 + 1,
            redeem_action(1, vec![good.clone(), ticket]),
        ) {
            TxError::BadTicket { index, reason } => {
                assert_eq!(index, 1);
                reason
            }
            other => panic!("refused for {other:?}"),
        }
    };
    let mut forged = good.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(bad_ticket(forged).contains("does not verify"));
    let few = issue(tx, 0, 1, &[0, 1], 4).remove(0);
    assert!(bad_ticket(few).contains("more than 2/3"));
    let keys = issuer_keys();
    let other_chain = issue_on(
        ChainTag::of("another-chain"),
        tx,
        0,
        1,
        &[(0, &keys[0]), (1, &keys[1]), (2, &keys[2])],
        5,
    )[0]
    .to_bytes();
    assert!(bad_ticket(other_chain).contains("chain"));
    let future = issue(tx, 3, 1, &[0, 1, 2], 6).remove(0);
    assert!(bad_ticket(future).contains("not accepted"));
    // signed with a key that is not the validator's for the period
    let wrong_key = issue_on(
        ChainTag::of(CHAIN),
        tx,
        0,
        1,
        &[(0, &keys[1]), (1, &keys[0]), (2, &keys[2])],
        7,
    )[0]
    .to_bytes();
    assert!(bad_ticket(wrong_key).contains("does not verify"));
    assert!(bad_ticket(vec![1, 2, 3]).contains("malformed"));
    // the whole transaction: counts, signer, node
    assert!(matches!(
        refused(&chain, 151, redeem_action(1, Vec::new())),
        TxError::TicketCount { count: 0, .. }
    ));
    assert!(matches!(
        refused(&chain, 151, redeem_action(1, vec![good.clone(); 257])),
        TxError::TicketCount { count: 257, .. }
    ));
    assert_eq!(
        refused(&chain, 152, redeem_action(1, vec![good.clone()])),
        TxError::NotOwner { node: NodeId(1) }
    );
    assert_eq!(
        refused(&chain, 5, redeem_action(3, vec![good.clone()])),
        TxError::NotGateway { node: NodeId(3) }
    );
    // and the good ticket alone is paid
    redeem(&mut chain, 1, vec![good]).unwrap();
}

#[test]
fn tickets_live_one_period_past_their_own_then_expire() {
    let mut chain = chain();
    announce_keys(&mut chain, 0, &[0, 1, 2, 3]);
    announce_keys(&mut chain, 1, &[0, 1, 2, 3]);
    let tx = buy(&mut chain, 1, 3);
    let tickets = issue(tx, 0, 3, &[0, 1, 2, 3], 8);
    redeem(&mut chain, 1, vec![tickets[0].clone()]).unwrap();
    // period 1: period 0's tickets are still good
    chain.advance();
    chain.advance();
    assert_eq!(chain.state.ticket_period(), 1);
    redeem(&mut chain, 1, vec![tickets[1].clone()]).unwrap();
    let tickets_state = chain.state.tickets();
    assert_eq!(tickets_state.spent()[&0].len(), 2);
    assert!(tickets_state.purchase(&tx).is_some());
    assert_eq!(tickets_state.issuers().len(), 2);
    // period 2: period 0 is gone, its unspent fee went to the reward pool
    assert_eq!(chain.state.tickets().fee_pool(), price());
    let supply = chain.state.accounted_tokens();
    chain.advance();
    chain.advance();
    assert_eq!(chain.state.ticket_period(), 2);
    let tickets_state = chain.state.tickets();
    assert!(tickets_state.spent().is_empty());
    assert!(tickets_state.purchases().is_empty());
    assert_eq!(
        tickets_state.issuers().keys().copied().collect::<Vec<_>>(),
        [1]
    );
    assert_eq!(tickets_state.fee_pool(), Amount::ZERO);
    assert_eq!(tickets_state.counts().expired_unredeemed, 1);
    assert_eq!(chain.state.accounted_tokens(), supply);
    let error = refused(&chain, 151, redeem_action(1, vec![tickets[2].clone()]));
    assert!(
        matches!(&error, TxError::BadTicket { index: 0, reason } if reason.contains("not accepted")),
        "{error:?}"
    );
    assert_eq!(chain.replay_root(), chain.state.root());
}

#[test]
fn buying_needs_keys_of_more_than_two_thirds_of_the_power() {
    let mut chain = chain();
    announce_keys(&mut chain, 0, &[0, 1]);
    assert_eq!(
        refused(&chain, 1, Action::BuyTickets { count: 1 }),
        TxError::TicketsUnavailable {
            period: 0,
            announced: 2,
            total: 4
        }
    );
    // keys for the next period do not make this period's tickets available
    announce_keys(&mut chain, 1, &[2, 3]);
    assert!(matches!(
        refused(&chain, 1, Action::BuyTickets { count: 1 }),
        TxError::TicketsUnavailable { .. }
    ));
    announce_keys(&mut chain, 0, &[2]);
    assert!(matches!(
        refused(&chain, 1, Action::BuyTickets { count: 0 }),
        TxError::TicketCount { count: 0, .. }
    ));
    assert!(matches!(
        refused(
            &chain,
            1,
            Action::BuyTickets {
                count: MAX_TICKETS_PER_PURCHASE + 1
            }
        ),
        TxError::TicketCount { .. }
    ));
    // an account without the money
    assert!(matches!(
        refused(&chain, 9, Action::BuyTickets { count: 1 }),
        TxError::InsufficientBalance { .. }
    ));
    buy(&mut chain, 1, MAX_TICKETS_PER_PURCHASE);
}

#[test]
fn issuer_announcements_follow_the_rules() {
    let mut chain = chain();
    let announce_by = |chain: &Chain, v: u8, action: Action| {
        let mut trial = chain.state.clone();
        let error = trial
            .apply(&chain.tx(&validator_key(v), action))
            .unwrap_err();
        assert_eq!(trial, chain.state);
        error
    };
    assert_eq!(refused(&chain, 1, announce(0, 0)), TxError::NotValidator);
    assert_eq!(
        announce_by(&chain, 0, announce(2, 0)),
        TxError::WrongKeyPeriod { current: 0, got: 2 }
    );
    assert!(matches!(
        announce_by(
            &chain,
            0,
            Action::AnnounceIssuer {
                period: 0,
                key: vec![0x30; 300]
            }
        ),
        TxError::BadIssuerKey { .. }
    ));
    announce_keys(&mut chain, 0, &[0]);
    assert_eq!(
        announce_by(&chain, 0, announce(0, 1)),
        TxError::IssuerKeyAlreadySet { period: 0 }
    );
    assert_eq!(
        announce_by(&chain, 1, announce(0, 0)),
        TxError::IssuerKeyTaken {
            period: 0,
            validator: 0
        }
    );
    // the same key for the next period is fine
    chain.act(&validator_key(0), announce(1, 0)).unwrap();
    chain.advance();
    chain.advance();
    assert_eq!(
        announce_by(&chain, 1, announce(0, 1)),
        TxError::WrongKeyPeriod { current: 1, got: 0 }
    );
    let view = IssuersView::of(&chain.state);
    assert_eq!((view.current_period, view.total_power), (1, 4));
    let periods: Vec<_> = view
        .periods
        .iter()
        .map(|p| (p.period, p.announced_power, p.usable))
        .collect();
    assert_eq!(periods, [(0, 1, false), (1, 1, false)]);
    assert_eq!(
        view.periods[0].issuers[0].key,
        issuer_keys()[0].public_key().as_bytes()
    );
}

#[test]
fn the_ticket_views_read_back_what_they_write() {
    fn round_trip<T>(value: &T) -> serde_json::Value
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let json = serde_json::to_value(value).unwrap();
        let back: T = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(&back, value);
        json
    }
    let mut chain = chain();
    announce_keys(&mut chain, 0, &[0, 1, 2, 3]);
    let tx = buy(&mut chain, 1, 1);
    let ticket = issue(tx, 0, 1, &[0, 1, 2, 3], 9).remove(0);
    redeem(&mut chain, 1, vec![ticket.clone()]).unwrap();
    redeem(&mut chain, 2, vec![ticket]).unwrap();
    // a gateway checks with the view what the ledger will accept
    let view = IssuersView::of(&chain.state);
    let tag = ChainTag::of(CHAIN);
    let fresh = issue(tx, 0, 1, &[0, 1, 2], 10).remove(0);
    assert!(view.verify(&fresh, tag).is_ok());
    let few = issue(tx, 0, 1, &[0, 1], 11).remove(0);
    assert!(view.verify(&few, tag).is_err());
    assert!(view.verify(&fresh, ChainTag::of("another-chain")).is_err());
    let issuers = round_trip(&view);
    // keys are hex
    let key = issuers["periods"][0]["issuers"][0]["key"].as_str().unwrap();
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
    round_trip(&PurchaseView::of(&chain.state, tx).unwrap());
    let stats = round_trip(&TicketStatsView::of(&chain.state));
    assert_eq!(stats["double_spends"], 1);
    assert_eq!(stats["price"], price().0);
}

#[test]
fn a_state_without_tickets_encodes_as_before() {
    // the book and default ticket parameters are left out of the canonical encoding
    let chain = chain();
    let mut params = params();
    params.tickets = TicketParams::default();
    let plain = State::genesis(&genesis(params, 1, UNIT, 1)).unwrap();
    let json = serde_json::to_value(plain.params()).unwrap();
    assert!(json.get("tickets").is_none());
    assert!(chain.state.tickets().is_empty());
}

#[test]
fn signers_need_more_than_two_thirds_of_all_the_power() {
    use umbra_ledger::TicketRefusal;
    use umbra_ledger::tickets::verify_ticket;
    // three validators announced and signed; two more (without keys) hold power too
    let keys = issuer_keys();
    let mut issuers = umbra_tickets::IssuerSet::new();
    issuers
        .insert_period(
            0,
            (0..3u16).map(|v| (v, keys[usize::from(v)].public_key().clone(), 1)),
        )
        .unwrap();
    let ticket =
        umbra_tickets::Ticket::from_bytes(&issue(Hash([1; 32]), 0, 1, &[0, 1, 2], 12)[0]).unwrap();
    let tag = ChainTag::of(CHAIN);
    assert_eq!(
        verify_ticket(&ticket, tag, &issuers, |_| Some(1), 5),
        Err(TicketRefusal::TooLittlePower {
            signed: 3,
            total: 5
        })
    );
    assert_eq!(
        verify_ticket(&ticket, tag, &issuers, |_| Some(1), 4),
        Ok(ticket.serial())
    );
}
