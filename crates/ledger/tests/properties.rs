//! Properties of the state machine under random sequences of valid and invalid transactions.

mod common;

use common::tickets::{announce, issuer_keys};
use common::{CHAIN, Chain, genesis, key, register, reveal_0, validator_key};
use proptest::prelude::*;
use umbra_ledger::{
    Action, Amount, Block, NodeId, NodeKind, Params, Ppm, SigningKey, TicketParams, Transaction,
    UNIT,
};

#[derive(Clone, Debug)]
enum Op {
    Transfer {
        from: u8,
        to: u8,
        amount: u64,
    },
    Register {
        owner: u8,
        node: u8,
        gateway: bool,
    },
    Bond {
        owner: u8,
        node: u32,
        amount: u64,
    },
    Unbond {
        owner: u8,
        node: u32,
    },
    Delegate {
        from: u8,
        node: u32,
        amount: u64,
    },
    Undelegate {
        from: u8,
        node: u32,
    },
    Update {
        owner: u8,
        node: u32,
        cost: u64,
        margin: u32,
    },
    Performance {
        monitor: u8,
        node: u32,
        score: u32,
    },
    Advance,
    Reveal {
        good: bool,
    },
    SignTopology {
        good: bool,
    },
    /// Validator 0 announces issuer key `key` for the current period (or the next).
    Announce {
        next: bool,
        key: usize,
    },
    Buy {
        from: u8,
        count: u32,
    },
    /// The owner of `node` redeems `count` tickets of those issued so far, from one `pick` chooses;
    /// the first again if `twice`, the first altered if `forge`.
    Redeem {
        node: u32,
        pick: usize,
        count: usize,
        twice: bool,
        forge: bool,
    },
}

#[derive(Clone, Debug)]
struct Step {
    op: Op,
    /// 0: as it should be; 1: signed with another key; 2: a wrong nonce.
    corruption: u8,
    wait_ms: u64,
}

fn account() -> impl Strategy<Value = u8> {
    1u8..=5
}

fn node_id() -> impl Strategy<Value = u32> {
    1u32..=7
}

/// Mostly node 1, the genesis gateway.
fn gateway() -> impl Strategy<Value = u32> {
    prop_oneof![3 => Just(1u32), 1 => node_id()]
}

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![0..1_000u64, 0..2_000 * UNIT.0, Just(u64::MAX)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (account(), account(), amount()).prop_map(|(from, to, amount)| Op::Transfer {
            from,
            to,
            amount
        }),
        (account(), 1u8..=6, any::<bool>()).prop_map(|(owner, node, gateway)| Op::Register {
            owner,
            node,
            gateway
        }),
        (account(), node_id(), amount()).prop_map(|(owner, node, amount)| Op::Bond {
            owner,
            node,
            amount
        }),
        (account(), node_id()).prop_map(|(owner, node)| Op::Unbond { owner, node }),
        (account(), node_id(), amount()).prop_map(|(from, node, amount)| Op::Delegate {
            from,
            node,
            amount
        }),
        (account(), node_id()).prop_map(|(from, node)| Op::Undelegate { from, node }),
        (account(), node_id(), 0..100 * UNIT.0, 0u32..1_200_000).prop_map(
            |(owner, node, cost, margin)| Op::Update {
                owner,
                node,
                cost,
                margin
            }
        ),
        (
            prop_oneof![Just(50u8), Just(51u8), account()],
            node_id(),
            0u32..1_100_000
        )
            .prop_map(|(monitor, node, score)| Op::Performance {
                monitor,
                node,
                score
            }),
        Just(Op::Advance),
        Just(Op::Advance),
        any::<bool>().prop_map(|good| Op::Reveal { good }),
        any::<bool>().prop_map(|good| Op::SignTopology { good }),
        (any::<bool>(), 0usize..3).prop_map(|(next, key)| Op::Announce { next, key }),
        (account(), 0u32..4).prop_map(|(from, count)| Op::Buy { from, count }),
        (account(), 1u32..4).prop_map(|(from, count)| Op::Buy { from, count }),
        (
            gateway(),
            any::<usize>(),
            1usize..4,
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(node, pick, count, twice, forge)| Op::Redeem {
                node,
                pick,
                count,
                twice,
                forge
            }),
        (gateway(), any::<usize>(), 1usize..4).prop_map(|(node, pick, count)| Op::Redeem {
            node,
            pick,
            count,
            twice: false,
            forge: false
        }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (
        op(),
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        prop_oneof![Just(0u64), 0..3_000u64],
    )
        .prop_map(|(op, corruption, wait_ms)| Step {
            op,
            corruption,
            wait_ms,
        })
}

fn build(chain: &Chain, step: &Step, tickets: &[Vec<u8>]) -> Transaction {
    let (signer, action): (SigningKey, Action) = match step.op.clone() {
        Op::Transfer { from, to, amount } => (
            key(from),
            Action::Transfer {
                to: key(to).public(),
                amount: Amount(amount),
            },
        ),
        Op::Register {
            owner,
            node,
            gateway,
        } => {
            let kind = if gateway {
                NodeKind::Gateway
            } else {
                NodeKind::Mix
            };
            (key(owner), register(&key(owner).public(), node, kind))
        }
        Op::Bond {
            owner,
            node,
            amount,
        } => (
            key(owner),
            Action::Bond {
                node: NodeId(node),
                amount: Amount(amount),
            },
        ),
        Op::Unbond { owner, node } => (key(owner), Action::Unbond { node: NodeId(node) }),
        Op::Delegate { from, node, amount } => (
            key(from),
            Action::Delegate {
                node: NodeId(node),
                amount: Amount(amount),
            },
        ),
        Op::Undelegate { from, node } => (key(from), Action::Undelegate { node: NodeId(node) }),
        Op::Update {
            owner,
            node,
            cost,
            margin,
        } => (
            key(owner),
            Action::UpdateNode {
                node: NodeId(node),
                operating_cost: Amount(cost),
                profit_margin: Ppm(margin),
            },
        ),
        Op::Performance {
            monitor,
            node,
            score,
        } => (
            key(monitor),
            Action::SubmitPerformance {
                epoch: chain.state.epoch().number,
                scores: vec![(NodeId(node), Ppm(score))],
                evidence: umbra_ledger::Hash([7; 32]),
            },
        ),
        Op::Advance => (key(1), Action::AdvanceEpoch),
        Op::Reveal { good } => {
            let revealed = chain.state.beacon_reveals(0);
            let reveal = if good {
                reveal_0(revealed)
            } else {
                umbra_ledger::Hash([revealed as u8; 32])
            };
            (validator_key(0), Action::RevealBeacon { reveal })
        }
        Op::SignTopology { good } => {
            let message = chain.state.epoch().document.signing_message();
            let signature = if good {
                validator_key(0).sign(&message)
            } else {
                key(1).sign(&message)
            };
            (
                validator_key(0),
                Action::SignTopology {
                    epoch: chain.state.epoch().number,
                    signature,
                },
            )
        }
        Op::Announce { next, key } => (
            validator_key(0),
            announce(chain.state.ticket_period() + u64::from(next), key),
        ),
        Op::Buy { from, count } => (key(from), Action::BuyTickets { count }),
        Op::Redeem {
            node,
            pick,
            count,
            twice,
            forge,
        } => {
            let owner = chain
                .state
                .node(NodeId(node))
                .and_then(|entry| (1..=5).find(|&n| key(n).public() == entry.owner))
                .unwrap_or(1);
            let mut chosen: Vec<Vec<u8>> = if tickets.is_empty() {
                vec![vec![1]]
            } else {
                // mostly the newest tickets (older ones may have expired), sometimes any
                let start = match pick % 3 {
                    0 => pick % tickets.len(),
                    _ => tickets.len().saturating_sub(1 + pick % 4),
                };
                (0..count)
                    .map(|i| tickets[(start + i) % tickets.len()].clone())
                    .collect()
            };
            if twice {
                chosen.push(chosen[0].clone());
            }
            if forge {
                let last = chosen[0].len() - 1;
                chosen[0][last] ^= 1;
            }
            (
                key(owner),
                Action::Redeem {
                    gateway: NodeId(node),
                    tickets: chosen,
                },
            )
        }
    };
    let nonce = chain.state.account(&signer.public()).nonce;
    match step.corruption {
        1 => {
            let mut transaction = Transaction::sign(CHAIN, &key(99), nonce, action);
            transaction.signer = signer.public();
            transaction
        }
        2 => Transaction::sign(CHAIN, &signer, nonce + 1, action),
        _ => Transaction::sign(CHAIN, &signer, nonce, action),
    }
}

fn small_params() -> Params {
    Params {
        epoch_length_ms: 1_000,
        epochs_per_interval: 4,
        rotation_epochs: 3,
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

/// The chain the properties start from: accounts 1..=5, one validator that announced its
/// ticket key for period 0, and a bonded gateway (node 1, owned by account 5) that can redeem.
fn start() -> Chain {
    let mut genesis = genesis(small_params(), 5, 5_000 * UNIT, 1);
    let (_, node) = common::node_info(9, NodeKind::Gateway);
    genesis.nodes.push(umbra_ledger::GenesisNode {
        owner: key(5).public(),
        pledge: 100 * UNIT,
        node,
    });
    let mut chain = Chain::new(genesis);
    assert_eq!(chain.act(&validator_key(0), announce(0, 0)), Ok(()));
    chain
}

/// After `transaction` applied: a purchase's tickets, signed by validator 0 with the key it
/// announced for the period, join `tickets`.
fn collect_tickets(chain: &Chain, transaction: &Transaction, tickets: &mut Vec<Vec<u8>>) {
    let Action::BuyTickets { count } = transaction.action else {
        return;
    };
    let period = chain.state.ticket_period();
    let Some(announced) = chain
        .state
        .tickets()
        .issuers()
        .get(&period)
        .and_then(|keys| keys.get(&0))
    else {
        return;
    };
    let Some(secret) = issuer_keys()
        .iter()
        .position(|key| key.public_key() == announced)
    else {
        return;
    };
    // validator 0 holds key `secret`: issue with it under validator index 0
    let signers = [(0u16, &issuer_keys()[secret])];
    tickets.extend(
        common::tickets::issue_on(
            umbra_tickets::ChainTag::of(CHAIN),
            transaction.hash(),
            period,
            count,
            &signers,
            tickets.len() as u8,
        )
        .iter()
        .map(umbra_tickets::Ticket::to_bytes),
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Balances + pledges + delegations + pending delegations + pool = supply, always; a refused
    /// transaction changes nothing; replaying the blocks from genesis gives the same root.
    #[test]
    fn conserved_atomic_and_deterministic(steps in prop::collection::vec(step(), 1..60)) {
        let mut chain = start();
        let supply = u128::from(chain.state.supply());
        let mut applied = 0;
        let mut tickets = Vec::new();
        let mut redeemed = 0;
        for step in &steps {
            let transaction = build(&chain, step, &tickets);
            // what the transaction does alone, at the time of its block
            let outcome = chain.block_after(step.wait_ms, vec![transaction.clone()]).remove(0);
            if outcome.is_ok() {
                collect_tickets(&chain, &transaction, &mut tickets);
                if matches!(transaction.action, Action::Redeem { .. }) {
                    redeemed += 1;
                }
            }
            if step.corruption == 1 {
                prop_assert_eq!(&outcome, &Err(umbra_ledger::TxError::BadSignature));
            }
            if step.corruption == 2 {
                prop_assert!(matches!(outcome, Err(umbra_ledger::TxError::BadNonce { .. })), "{:?}", outcome);
            }
            // applied again to the state it produced: it is now a replay and changes nothing
            let mut again = chain.state.clone();
            prop_assert!(again.apply(&transaction).is_err());
            prop_assert_eq!(&again, &chain.state);
            prop_assert_eq!(chain.state.accounted_tokens(), supply);
            if outcome.is_ok() {
                applied += 1;
            }
        }
        eprintln!("applied {applied} of {}, {redeemed} redemptions", steps.len());
        prop_assert_eq!(chain.replay_root(), chain.state.root());
        prop_assert_eq!(chain.replay_root(), chain.state.root());
    }

    /// `State::check` decides exactly as applying the transaction to a copy of the state in a
    /// block at the same time would: the same acceptance, the same refusal. Checked at the
    /// block's time and at a time before the last block (`check` then uses the last block's).
    #[test]
    fn check_decides_as_applying_to_a_clone(steps in prop::collection::vec(step(), 1..60)) {
        let mut chain = start();
        let mut accepted = 0;
        let mut tickets = Vec::new();
        for step in &steps {
            let transaction = build(&chain, step, &tickets);
            let time_ms = chain.state.time_ms() + step.wait_ms;
            let block = Block {
                height: chain.state.height() + 1,
                time_ms,
                parent: chain.state.last_block(),
                transactions: vec![transaction.clone()],
            };
            let mut trial = chain.state.clone();
            let applied = trial.apply_block(&block).unwrap().remove(0);
            prop_assert_eq!(&chain.state.check(&transaction, time_ms), &applied);
            let at_last_block = Block { time_ms: chain.state.time_ms(), ..block };
            let mut trial = chain.state.clone();
            let applied = trial.apply_block(&at_last_block).unwrap().remove(0);
            prop_assert_eq!(&chain.state.check(&transaction, 0), &applied);
            if applied.is_ok() {
                accepted += 1;
            }
            if chain.block_after(step.wait_ms, vec![transaction.clone()]).remove(0).is_ok() {
                collect_tickets(&chain, &transaction, &mut tickets);
            }
        }
        eprintln!("accepted {accepted} of {}", steps.len());
    }

    /// Refused transactions leave the state exactly as it was.
    #[test]
    fn refused_transactions_change_nothing(steps in prop::collection::vec(step(), 1..40)) {
        let mut chain = start();
        let mut tickets = Vec::new();
        for step in &steps {
            let transaction = build(&chain, step, &tickets);
            let mut trial = chain.state.clone();
            if trial.apply(&transaction).is_err() {
                prop_assert_eq!(&trial, &chain.state);
            }
            if chain.block_after(step.wait_ms, vec![transaction.clone()]).remove(0).is_ok() {
                collect_tickets(&chain, &transaction, &mut tickets);
            }
        }
    }
}
