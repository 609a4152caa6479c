//! Epochs: the draw of the active set, layers, key rotation, the beacon, and topology
//! certificates.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod common;

use common::{CHAIN, Chain, genesis, key, register, reveal_0, submit_scores, validator_key};
use umbra_ledger::{
    Action, Amount, CertificateError, Hash, NodeId, NodeKind, Params, Ppm, SignedTopology, UNIT,
    sphinx_key_message,
};

fn params() -> Params {
    Params {
        epoch_length_ms: 1_000,
        epochs_per_interval: 100,
        rotation_epochs: 1_000,
        mixes_per_layer: 4,
        active_gateways: 2,
        staking_supply: 14_000 * UNIT,
        ..Params::default()
    }
}

/// 20 mix nodes (ids 1..=20) and 4 gateways (21..=24), owned by accounts 1..=24, each pledging
/// 100 UMB more than the one before.
fn network(validators: u8) -> Chain {
    network_with(params(), validators)
}

fn network_with(params: Params, validators: u8) -> Chain {
    let mut chain = Chain::new(genesis(params, 24, 10_000 * UNIT, validators));
    for n in 1..=24u8 {
        let kind = if n <= 20 {
            NodeKind::Mix
        } else {
            NodeKind::Gateway
        };
        let owner = key(n);
        chain
            .act(&owner, register(&owner.public(), n, kind))
            .unwrap();
        let amount = 100 * UNIT * u64::from(n);
        chain
            .act(
                &owner,
                Action::Bond {
                    node: NodeId(u32::from(n)),
                    amount,
                },
            )
            .unwrap();
    }
    chain.advance();
    chain
}

#[test]
fn the_active_set_is_drawn_and_dealt_into_layers() {
    let chain = network(1);
    let active = &chain.state.epoch().active;
    for layer in &active.layers {
        assert_eq!(layer.len(), 4);
        assert!(layer.iter().all(|&id| (1..=20).contains(&id.0)));
    }
    assert_eq!(active.gateways.len(), 2);
    assert!(active.gateways.iter().all(|&id| (21..=24).contains(&id.0)));
    let mut all: Vec<NodeId> = active.members().map(|(id, _)| id).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 14, "no node twice");
    let document = &chain.state.epoch().document;
    assert_eq!(document.nodes.len(), 14);
    assert_eq!(document.epoch, 1);
    let topology = document.to_topology().unwrap();
    assert_eq!(topology.nodes().len(), 14);
}

#[test]
fn heavier_nodes_are_drawn_more_often() {
    // over many epochs the 5 heaviest mix nodes (pledges 1600..2000) serve far more often than
    // the 5 lightest (100..500): weight is stake saturation × performance^20
    let mut chain = network(1);
    let mut counts = [0u32; 21];
    for _ in 0..60 {
        for &id in chain.state.epoch().active.layers.iter().flatten() {
            counts[id.0 as usize] += 1;
        }
        chain.advance();
    }
    let light: u32 = counts[1..=5].iter().sum();
    let heavy: u32 = counts[16..=20].iter().sum();
    assert!(
        heavy > 2 * light,
        "heavy {heavy}, light {light}: {counts:?}"
    );
}

fn is_active(chain: &Chain, node: NodeId) -> bool {
    chain
        .state
        .epoch()
        .active
        .members()
        .any(|(id, _)| id == node)
}

#[test]
fn a_node_below_the_threshold_is_left_out_then_measured_again_once_recovered() {
    // threshold 80 %, recovery 10 points an epoch out of the active set (the defaults)
    let mut chain = network(1);
    assert_eq!(
        (
            chain.state.params().performance_threshold,
            chain.state.params().performance_recovery
        ),
        (Ppm(800_000), Ppm(100_000))
    );
    let bad = NodeId(20); // the heaviest mix node: drawn whenever it may be
    while !is_active(&chain, bad) {
        chain.advance();
    }
    submit_scores(&mut chain, 50, vec![(bad, Ppm(500_000))]);
    submit_scores(&mut chain, 51, vec![(bad, Ppm(500_000))]);
    chain.advance();
    // left out while below the threshold, regaining 10 points each epoch out
    for expected in [500_000, 600_000, 700_000] {
        assert_eq!(chain.state.node(bad).unwrap().performance, Ppm(expected));
        assert!(!is_active(&chain, bad), "drawn at {expected} ppm");
        chain.advance();
    }
    // from 80 % it may be drawn again (weight 0.8^20 of its stake's, then more as it regains)
    let mut epochs = 0;
    while !is_active(&chain, bad) {
        chain.advance();
        epochs += 1;
        assert!(epochs <= 10, "never drawn again");
    }
    assert!(chain.state.node(bad).unwrap().performance >= Ppm(800_000));
    // every other mix node, measured at 100 % or never, stayed eligible all along
    assert!((1..20).all(|id| chain.state.node(NodeId(id)).unwrap().performance == Ppm(1_000_000)));
}

#[test]
fn when_too_few_pass_the_threshold_the_best_below_it_keep_every_layer_and_a_gateway() {
    // (no recovery here: a node left out keeps its score, so the draw below sees them all)
    let params = Params {
        mixes_per_layer: 2,
        performance_recovery: Ppm(0),
        ..params()
    };
    let mut chain = network_with(params, 1);
    // every node is active at some point: score whichever are active, over a few epochs
    // mix nodes 1..=18 at 30 % + 1 point per id (18 the best of them), 19 and 20 at 100 %;
    // gateways at 50 % + 1 point per id (24 the best)
    let score = |id: u32| match id {
        19 | 20 => Ppm(1_000_000),
        1..=18 => Ppm(300_000 + 10_000 * id),
        _ => Ppm(500_000 + 10_000 * id),
    };
    let mut measured = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let active: Vec<NodeId> = chain
            .state
            .epoch()
            .active
            .members()
            .map(|(id, _)| id)
            .collect();
        let scores: Vec<(NodeId, Ppm)> = active.iter().map(|&id| (id, score(id.0))).collect();
        measured.extend(active);
        submit_scores(&mut chain, 50, scores.clone());
        submit_scores(&mut chain, 51, scores);
        chain.advance();
        if measured.len() == 24 {
            break;
        }
    }
    assert_eq!(measured.len(), 24, "not every node was measured");
    let active = &chain.state.epoch().active;
    let mut mixes: Vec<NodeId> = active.layers.iter().flatten().copied().collect();
    mixes.sort();
    // 19 and 20 pass; of those below, the best makes up the three the layers need
    let below: Vec<NodeId> = mixes
        .iter()
        .copied()
        .filter(|id| chain.state.node(*id).unwrap().performance < Ppm(800_000))
        .collect();
    assert!(
        mixes.contains(&NodeId(19)) && mixes.contains(&NodeId(20)),
        "{mixes:?}"
    );
    assert_eq!(mixes.len(), 3, "{mixes:?}");
    assert_eq!(below.len(), 1, "{mixes:?}");
    let best_below = (1..=18)
        .map(NodeId)
        .max_by_key(|id| {
            (
                chain.state.node(*id).unwrap().performance,
                std::cmp::Reverse(*id),
            )
        })
        .unwrap();
    assert_eq!(below, vec![best_below]);
    assert!(active.layers.iter().all(|layer| layer.len() == 1));
    // no gateway passes: the best one serves alone
    assert_eq!(active.gateways.len(), 1);
    let best_gateway = (21..=24)
        .map(NodeId)
        .max_by_key(|id| {
            (
                chain.state.node(*id).unwrap().performance,
                std::cmp::Reverse(*id),
            )
        })
        .unwrap();
    assert_eq!(active.gateways, vec![best_gateway]);
}

#[test]
fn the_seed_follows_the_validators_reveals() {
    // two chains identical but for one reveal draw different seeds from then on
    let mut with = network(1);
    let mut without = network(1);
    assert_eq!(with.state.epoch().seed, without.state.epoch().seed);
    with.act(
        &validator_key(0),
        Action::RevealBeacon {
            reveal: reveal_0(0),
        },
    )
    .unwrap();
    without
        .act(
            &key(30),
            Action::Transfer {
                to: key(31).public(),
                amount: Amount(1),
            },
        )
        .unwrap_err();
    with.advance();
    without.advance();
    assert_ne!(with.state.epoch().seed, without.state.epoch().seed);
    // a value that is not the next one down the chain is refused, and so is a second reveal
    let outcome = with.act(
        &validator_key(0),
        Action::RevealBeacon {
            reveal: reveal_0(0),
        },
    );
    assert_eq!(outcome, Err(umbra_ledger::TxError::BadReveal));
    with.act(
        &validator_key(0),
        Action::RevealBeacon {
            reveal: reveal_0(1),
        },
    )
    .unwrap();
    let outcome = with.act(
        &validator_key(0),
        Action::RevealBeacon {
            reveal: reveal_0(2),
        },
    );
    assert_eq!(outcome, Err(umbra_ledger::TxError::AlreadyDone));
    // only validators reveal
    let outcome = with.act(
        &key(1),
        Action::RevealBeacon {
            reveal: reveal_0(2),
        },
    );
    assert_eq!(outcome, Err(umbra_ledger::TxError::NotValidator));
}

#[test]
fn sphinx_keys_rotate_announced_one_epoch_ahead() {
    let rotating = Params {
        rotation_epochs: 3,
        ..params()
    };
    let mut chain = network_with(rotating, 1);
    // epoch 1 of rotation 0 (epochs 0, 1, 2). Node 1 announces its key for rotation 1.
    assert_eq!(chain.state.epoch().rotation, 0);
    let next = common::sphinx_key(201);
    let signature = key(151).sign(&sphinx_key_message(CHAIN, NodeId(1), 1, &next));
    let announce = Action::AnnounceSphinxKey {
        node: NodeId(1),
        rotation: 1,
        sphinx_key: next,
        node_signature: signature,
    };
    chain.act(&key(1), announce).unwrap();
    // a key for a rotation two ahead, or signed by another node's key, is refused
    let signature = key(151).sign(&sphinx_key_message(CHAIN, NodeId(1), 2, &next));
    let early = Action::AnnounceSphinxKey {
        node: NodeId(1),
        rotation: 2,
        sphinx_key: next,
        node_signature: signature,
    };
    assert!(matches!(
        chain.act(&key(1), early),
        Err(umbra_ledger::TxError::WrongRotation { .. })
    ));
    let forged = key(152).sign(&sphinx_key_message(CHAIN, NodeId(1), 1, &next));
    let forged = Action::AnnounceSphinxKey {
        node: NodeId(1),
        rotation: 1,
        sphinx_key: next,
        node_signature: forged,
    };
    assert_eq!(
        chain.act(&key(1), forged),
        Err(umbra_ledger::TxError::BadNodeSignature)
    );

    // epoch 2 is the rotation's last: its document announces the next key of node 1, if active
    chain.advance();
    assert_eq!(chain.state.epoch().number, 2);
    for node in &chain.state.epoch().document.nodes {
        let expected = if node.id == NodeId(1) {
            Some(next)
        } else {
            None
        };
        assert_eq!(node.next_sphinx_key, expected, "node {}", node.id);
    }
    // epoch 3, rotation 1: only node 1 has a key for it, so only node 1 can be drawn
    chain.advance();
    assert_eq!(chain.state.epoch().rotation, 1);
    let document = &chain.state.epoch().document;
    assert_eq!(document.nodes.len(), 1);
    assert_eq!(document.nodes[0].sphinx_key, next);
}

fn signed(chain: &mut Chain, validators: &[u8]) -> SignedTopology {
    let epoch = chain.state.epoch().number;
    let message = chain.state.epoch().document.signing_message();
    for &n in validators {
        let signature = validator_key(n).sign(&message);
        chain
            .act(&validator_key(n), Action::SignTopology { epoch, signature })
            .unwrap();
    }
    chain.state.signed_topology_document()
}

#[test]
fn a_topology_needs_more_than_two_thirds_of_the_validators() {
    let mut chain = network(4);
    let validators = chain.state.validators().to_vec();
    // 2 of 4 is not enough; 3 of 4 is
    let two = signed(&mut chain, &[0, 1]);
    assert_eq!(
        two.verify(CHAIN, &validators),
        Err(CertificateError::NotEnoughPower {
            signed: 2,
            total: 4
        })
    );
    let three = signed(&mut chain, &[2]);
    three.verify(CHAIN, &validators).unwrap();

    // a forged signature, an altered document, a stranger's or a doubled signature: refused
    let mut forged = three.clone();
    forged.certificate.signatures[0].1 = key(9).sign(&forged.document.signing_message());
    assert!(matches!(
        forged.verify(CHAIN, &validators),
        Err(CertificateError::BadSignature { .. })
    ));
    let mut altered = three.clone();
    altered.document.nodes[0].mix_address = "10.0.0.1:1789".parse().unwrap();
    assert!(matches!(
        altered.verify(CHAIN, &validators),
        Err(CertificateError::BadSignature { .. })
    ));
    let mut stranger = two.clone();
    stranger.certificate.signatures.push((
        key(9).public(),
        key(9).sign(&two.document.signing_message()),
    ));
    assert!(matches!(
        stranger.verify(CHAIN, &validators),
        Err(CertificateError::UnknownSigner { .. })
    ));
    let mut doubled = two.clone();
    doubled
        .certificate
        .signatures
        .push(doubled.certificate.signatures[0]);
    assert!(matches!(
        doubled.verify(CHAIN, &validators),
        Err(CertificateError::DuplicateSigner { .. })
    ));
    let mut missing = three.clone();
    missing.certificate.signatures.clear();
    assert!(matches!(
        missing.verify(CHAIN, &validators),
        Err(CertificateError::NotEnoughPower { signed: 0, .. })
    ));
    assert!(matches!(
        three.verify("another-chain", &validators),
        Err(CertificateError::WrongChain { .. })
    ));

    // the JSON a validator serves reads back to the same, still valid, document
    let json = serde_json::to_string(&three).unwrap();
    let read: SignedTopology = serde_json::from_str(&json).unwrap();
    read.verify(CHAIN, &validators).unwrap();

    // a validator's signature of the wrong document is refused by the ledger itself
    let epoch = chain.state.epoch().number;
    let wrong = validator_key(3).sign(b"something else");
    let outcome = chain.act(
        &validator_key(3),
        Action::SignTopology {
            epoch,
            signature: wrong,
        },
    );
    assert_eq!(outcome, Err(umbra_ledger::TxError::BadTopologySignature));
}

#[test]
fn unbonding_returns_pledge_and_delegations_at_the_boundary() {
    let mut chain = network(1);
    let owner = key(5);
    let delegator = key(30);
    chain
        .act(
            &key(1),
            Action::Transfer {
                to: delegator.public(),
                amount: 50 * UNIT,
            },
        )
        .unwrap();
    chain
        .act(
            &delegator,
            Action::Delegate {
                node: NodeId(5),
                amount: 40 * UNIT,
            },
        )
        .unwrap();
    chain.advance();
    let pledge = chain.state.node(NodeId(5)).unwrap().pledge;
    let balance = chain.state.account(&owner.public()).balance;
    chain
        .act(&owner, Action::Unbond { node: NodeId(5) })
        .unwrap();
    // leaving nodes take no new delegations, and a stranger cannot unbond someone's node
    assert_eq!(
        chain.act(
            &delegator,
            Action::Delegate {
                node: NodeId(5),
                amount: UNIT
            }
        ),
        Err(umbra_ledger::TxError::Unbonding { node: NodeId(5) })
    );
    assert_eq!(
        chain.act(
            &key(6),
            Action::Unbond {
                node: NodeId(6 + 100)
            }
        ),
        Err(umbra_ledger::TxError::UnknownNode { node: NodeId(106) })
    );
    assert_eq!(
        chain.act(&key(6), Action::Unbond { node: NodeId(7) }),
        Err(umbra_ledger::TxError::NotOwner { node: NodeId(7) })
    );
    let delegated = chain
        .state
        .delegations()
        .find(|entry| entry.1 == delegator.public())
        .unwrap()
        .3;
    chain.advance();
    assert!(chain.state.node(NodeId(5)).is_none());
    // no monitor spoke, so no node was measured; rewards used the initial performance: the
    // pledge and the delegation may have grown by the epoch's rewards
    assert!(chain.state.account(&owner.public()).balance >= balance + pledge);
    assert!(chain.state.account(&delegator.public()).balance >= 10 * UNIT + delegated);
    assert_eq!(chain.state.delegations().count(), 0);
    assert!(
        !chain
            .state
            .epoch()
            .document
            .nodes
            .iter()
            .any(|node| node.id == NodeId(5))
    );
    assert_eq!(
        chain.state.accounted_tokens(),
        u128::from(chain.state.supply())
    );
}

#[test]
fn the_state_root_covers_everything() {
    let mut one = network(1);
    let mut two = network(1);
    assert_eq!(one.state.root(), two.state.root());
    one.act(
        &key(1),
        Action::Transfer {
            to: key(2).public(),
            amount: Amount(1),
        },
    )
    .unwrap();
    two.act(
        &key(1),
        Action::Transfer {
            to: key(2).public(),
            amount: Amount(2),
        },
    )
    .unwrap();
    assert_ne!(one.state.root(), two.state.root());
    assert_ne!(one.state.root(), Hash([0; 32]));
}

#[test]
fn a_transaction_read_from_json_has_the_same_hash() {
    let action = Action::Transfer {
        to: key(2).public(),
        amount: Amount(5),
    };
    let transaction = umbra_ledger::Transaction::sign(CHAIN, &key(1), 3, action);
    let json = serde_json::to_string(&transaction).unwrap();
    let read: umbra_ledger::Transaction = serde_json::from_str(&json).unwrap();
    assert_eq!(read, transaction);
    assert_eq!(read.hash(), transaction.hash());
}
