//! The ledger's encodings are pinned: the canonical (postcard) bytes behind every hash and state
//! root, and the JSON of genesis files, transactions, refusals and the validator API's views.
//! Stored ledgers, genesis files and signatures depend on them, so a change of types (`NodeId`,
//! `Amount` and `Ppm` were `u32`/`u64`/`u32` aliases before they were newtypes) must leave every
//! byte as it was. The expected values below were computed before that change.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod common;

use common::{CHAIN, Chain, genesis, key, register, reveal_0, validator_key};
use umbra_ledger::{
    Action, Amount, GenesisNode, Hash, NodeId, NodeKind, Params, Ppm, TxError, UNIT, canonical,
    sphinx_key_message,
};

// written so that the test compiled with the old aliases as it does with the newtypes
fn node_id(id: u32) -> NodeId {
    NodeId(id)
}

fn micro(amount: u64) -> Amount {
    Amount(amount)
}

fn ppm(value: u32) -> Ppm {
    Ppm(value)
}

fn digest(bytes: &[u8]) -> String {
    Hash::of(&[bytes]).to_string()
}

fn params() -> Params {
    Params {
        epoch_length_ms: 1_000,
        epochs_per_interval: 4,
        rotation_epochs: 2,
        mixes_per_layer: 1,
        active_gateways: 1,
        staking_supply: 4_000 * UNIT,
        ..Params::default()
    }
}

/// A chain that used every action: nodes registered (one in genesis), bonded, delegated to,
/// updated, measured and rotated; epochs with rewards, reveals and topology signatures;
/// undelegations and an unbonding settled.
fn busy_chain() -> Chain {
    let mut genesis = genesis(params(), 6, 5_000 * UNIT, 1);
    let (_, info) = common::node_info(9, NodeKind::Gateway);
    genesis.nodes.push(GenesisNode {
        owner: key(6).public(),
        pledge: 200 * UNIT,
        node: info,
    });
    let mut chain = Chain::new(genesis);
    for n in 1..=4u8 {
        let owner = key(n);
        chain
            .act(&owner, register(&owner.public(), n, NodeKind::Mix))
            .unwrap();
        let node = node_id(u32::from(n) + 1);
        chain
            .act(
                &owner,
                Action::Bond {
                    node,
                    amount: u64::from(n) * 100 * UNIT,
                },
            )
            .unwrap();
    }
    chain
        .act(
            &key(5),
            Action::Delegate {
                node: node_id(2),
                amount: 300 * UNIT + micro(17),
            },
        )
        .unwrap();
    chain
        .act(
            &key(1),
            Action::UpdateNode {
                node: node_id(2),
                operating_cost: 7 * UNIT,
                profit_margin: ppm(150_000),
            },
        )
        .unwrap();
    chain
        .act(
            &key(2),
            Action::Transfer {
                to: key(1).public(),
                amount: micro(1_234_567),
            },
        )
        .unwrap();
    chain
        .act(
            &key(4),
            Action::Delegate {
                node: node_id(3),
                amount: 50 * UNIT,
            },
        )
        .unwrap();
    chain.advance();
    let next = common::sphinx_key(202);
    let node_signature = key(151).sign(&sphinx_key_message(CHAIN, node_id(2), 1, &next));
    chain
        .act(
            &key(1),
            Action::AnnounceSphinxKey {
                node: node_id(2),
                rotation: 1,
                sphinx_key: next,
                node_signature,
            },
        )
        .unwrap();
    for _ in 0..5 {
        let epoch = chain.state.epoch().number;
        let scores = (1..=5)
            .map(|id| (node_id(id), ppm(900_000 + 10_000 * id)))
            .collect();
        chain
            .act(
                &key(50),
                Action::SubmitPerformance {
                    epoch,
                    scores,
                    evidence: umbra_ledger::Hash([7; 32]),
                },
            )
            .unwrap();
        let reveal = reveal_0(chain.state.beacon_reveals(0));
        chain
            .act(&validator_key(0), Action::RevealBeacon { reveal })
            .unwrap();
        let signature = validator_key(0).sign(&chain.state.epoch().document.signing_message());
        chain
            .act(&validator_key(0), Action::SignTopology { epoch, signature })
            .unwrap();
        chain.advance();
    }
    chain
        .act(&key(5), Action::Undelegate { node: node_id(2) })
        .unwrap();
    chain
        .act(&key(3), Action::Unbond { node: node_id(4) })
        .unwrap();
    chain.advance();
    chain
        .act(
            &key(5),
            Action::Delegate {
                node: node_id(5),
                amount: micro(999),
            },
        )
        .unwrap();
    // node 2 missed its announcements: it makes up for the current rotation, and the next
    let current = chain.state.epoch().rotation;
    for rotation in [current, current + 1] {
        let sphinx_key = common::sphinx_key(200 + rotation as u8);
        let node_signature = key(151).sign(&sphinx_key_message(
            CHAIN,
            node_id(2),
            rotation,
            &sphinx_key,
        ));
        chain
            .act(
                &key(1),
                Action::AnnounceSphinxKey {
                    node: node_id(2),
                    rotation,
                    sphinx_key,
                    node_signature,
                },
            )
            .unwrap();
    }
    chain
}

#[test]
fn state_roots_and_block_hashes_are_unchanged() {
    let chain = busy_chain();
    // what the pinned bytes cover
    assert!(chain.state.delegations().count() > 0);
    assert!(!chain.state.pending().is_empty());
    assert!(chain.state.history().any(|report| {
        report
            .nodes
            .iter()
            .any(|node| node.payout.delegators > micro(0))
    }));
    assert!(chain.state.nodes().any(|node| node.sphinx_keys.len() == 2));
    assert_eq!(
        chain.genesis.hash().to_string(),
        "FUBYFkiuBZ7HPtg898oqXWe8q33tUi7NYARjwnqtDJbg",
        "the canonical encoding of the genesis"
    );
    assert_eq!(
        chain.state.root().to_string(),
        "4etBoseZxbdz7uWwhy734bRaABJYsvEcdPhVKfSsGpx9",
        "the canonical encoding of the state"
    );
    assert_eq!(
        chain.state.last_block().to_string(),
        "BwAu7jPGWcUJ9bYJacmuHNt65U1hzxhUfiuRpPM27zA6",
        "the canonical encoding of the blocks"
    );
    assert_eq!(chain.replay_root(), chain.state.root());
}

#[test]
fn json_is_unchanged() {
    let chain = busy_chain();
    let checks = [
        ("genesis file", digest(chain.genesis.to_json().as_bytes())),
        (
            "blocks",
            digest(&serde_json::to_vec(&chain.blocks).unwrap()),
        ),
        (
            "epoch",
            digest(&serde_json::to_vec(chain.state.epoch()).unwrap()),
        ),
        (
            "history",
            digest(&serde_json::to_vec(&chain.state.history().collect::<Vec<_>>()).unwrap()),
        ),
        (
            "nodes",
            digest(&serde_json::to_vec(&chain.state.nodes().collect::<Vec<_>>()).unwrap()),
        ),
        (
            "accounts",
            digest(&serde_json::to_vec(chain.state.accounts()).unwrap()),
        ),
        (
            "signed topology",
            digest(&serde_json::to_vec(&chain.state.signed_topology_document()).unwrap()),
        ),
    ];
    let expected = [
        (
            "genesis file",
            "6ZvzSF1xXHUx72gUipouvzhCK6KYifxv1MAPaM3iHmfC",
        ),
        ("blocks", "9nnCs7eahSmr6q2LeZ9cXxobwVdsWJN1XrNa9e8DTccd"),
        ("epoch", "8v9sHJ43nGAmHxkdrNtXHQh3SW7cVqdpBtwktfqQsUow"),
        ("history", "H7pQfWydRpqe5u6k7RbZZm6drMWxekBD9Hfax2WcBC3Z"),
        ("nodes", "7Qnsqko3iyniAg7AJ95uMq5tUd6kQTviYEXqZHLLKygV"),
        ("accounts", "4Ux2PJ7mpv9QpmE1TuUcY53Ziog6PYTJQMWVZHRSUjp6"),
        (
            "signed topology",
            "33TpB9nqT19sWYWRPqe4bFeez9kKrprwC5cS1bymkXbe",
        ),
    ];
    let checks: Vec<(&str, &str)> = checks
        .iter()
        .map(|(what, value)| (*what, value.as_str()))
        .collect();
    assert_eq!(checks, expected);
}

#[test]
fn numbers_stay_plain_numbers() {
    // the JSON a person or another program writes and reads
    let bond = Action::Bond {
        node: node_id(7),
        amount: micro(12_500_000),
    };
    assert_eq!(
        serde_json::to_string(&bond).unwrap(),
        r#"{"type":"bond","node":7,"amount":12500000}"#
    );
    let update = Action::UpdateNode {
        node: node_id(3),
        operating_cost: 40 * UNIT,
        profit_margin: ppm(200_000),
    };
    assert_eq!(
        serde_json::to_string(&update).unwrap(),
        r#"{"type":"update_node","node":3,"operating_cost":40000000,"profit_margin":200000}"#
    );
    let scores = Action::SubmitPerformance {
        epoch: 4,
        scores: vec![(node_id(1), ppm(999_999)), (node_id(2), ppm(0))],
        evidence: umbra_ledger::Hash([7; 32]),
    };
    let json = serde_json::to_string(&scores).unwrap();
    assert_eq!(
        json,
        r#"{"type":"submit_performance","epoch":4,"scores":[[1,999999],[2,0]],"evidence":"US517G5965aydkZ46HS38QLi7UQiSojurfbQfKCELFx"}"#
    );
    assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), scores);
    let refusal = TxError::InsufficientBalance {
        need: micro(5),
        have: micro(3),
    };
    assert_eq!(
        serde_json::to_string(&refusal).unwrap(),
        r#"{"error":"insufficient_balance","need":5,"have":3}"#
    );
    assert_eq!(
        serde_json::to_string(&TxError::UnknownNode { node: node_id(77) }).unwrap(),
        r#"{"error":"unknown_node","node":77}"#
    );
    // and the canonical bytes: postcard varints, as for the integers they were
    assert_eq!(
        canonical(&(node_id(300), micro(1_000_000), ppm(128))),
        [0xac, 0x02, 0xc0, 0x84, 0x3d, 0x80, 0x01]
    );
    assert_eq!(
        serde_json::to_string(&chain_performance()).unwrap(),
        r#"{"1":{"0":500000},"2":{"0":1000000}}"#
    );
}

/// Scores submitted this epoch: a map keyed by node id, written with string keys in JSON.
fn chain_performance() -> std::collections::BTreeMap<NodeId, std::collections::BTreeMap<u32, Ppm>> {
    let mut chain = Chain::new(genesis(params(), 2, 5_000 * UNIT, 1));
    for n in 1..=2u8 {
        let owner = key(n);
        chain
            .act(&owner, register(&owner.public(), n, NodeKind::Mix))
            .unwrap();
    }
    let scores = vec![(node_id(1), ppm(500_000)), (node_id(2), PPM_FULL)];
    chain
        .act(
            &key(50),
            Action::SubmitPerformance {
                epoch: 0,
                scores,
                evidence: umbra_ledger::Hash([7; 32]),
            },
        )
        .unwrap();
    chain.state.submitted_performance().clone()
}

const PPM_FULL: Ppm = umbra_ledger::PPM;

#[test]
fn the_api_views_read_back_what_they_write() {
    use umbra_ledger::api::{AccountView, DelegationView, EpochView, NodeView, StatusView};
    fn round_trip<T>(value: &T) -> serde_json::Value
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let json = serde_json::to_value(value).unwrap();
        let back: T = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(&back, value);
        json
    }
    let chain = busy_chain();
    let state = &chain.state;
    let status = round_trip(&StatusView::of(state));
    assert_eq!(status["epoch"], state.epoch().number);
    let epoch = round_trip(&EpochView::of(state));
    assert!(
        epoch["pending"]
            .as_array()
            .is_some_and(|pending| !pending.is_empty())
    );
    let delegations = DelegationView::all(state);
    assert!(!delegations.is_empty());
    round_trip(&delegations);
    let delegator = delegations[0].delegator;
    let account = round_trip(&AccountView::of(state, delegator, 9));
    // the fields the validator served before the views were typed, and no others
    let keys = |value: &serde_json::Value| {
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(
        keys(&account),
        ["address", "balance", "delegations", "next_nonce", "nonce"]
    );
    let nodes = round_trip(&NodeView::all(state));
    assert_eq!(
        keys(&nodes[0]),
        [
            "active",
            "delegations",
            "id",
            "info",
            "owner",
            "performance",
            "pledge",
            "profit_margin",
            "sphinx_keys",
            "stake",
            "unbonding",
            "operating_cost",
        ]
        .iter()
        .map(|key| key.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    // `active` is `{"layer": n}` (`null` for a gateway) for a member of the active set, else null
    for node in nodes.as_array().unwrap() {
        let id = NodeId(node["id"].as_u64().unwrap() as u32);
        match state
            .epoch()
            .active
            .members()
            .find(|(member, _)| *member == id)
        {
            Some((_, layer)) => assert_eq!(node["active"], serde_json::json!({ "layer": layer })),
            None => assert!(node["active"].is_null()),
        }
    }
}

#[test]
fn ticket_actions_are_hex_in_json_and_raw_in_the_canonical_encoding() {
    let cases = [
        (
            Action::AnnounceIssuer {
                period: 3,
                key: vec![0x0a, 0xbc],
            },
            r#"{"type":"announce_issuer","period":3,"key":"0abc"}"#,
        ),
        (
            Action::BuyTickets { count: 5 },
            r#"{"type":"buy_tickets","count":5}"#,
        ),
        (
            Action::Redeem {
                gateway: node_id(2),
                tickets: vec![vec![1], vec![0xff, 0]],
            },
            r#"{"type":"redeem","gateway":2,"tickets":["01","ff00"]}"#,
        ),
    ];
    for (action, json) in cases {
        assert_eq!(serde_json::to_string(&action).unwrap(), json);
        assert_eq!(serde_json::from_str::<Action>(json).unwrap(), action);
    }
    // postcard writes the tag, then the fields: byte strings with a varint length
    assert_eq!(
        canonical(&Action::AnnounceIssuer {
            period: 3,
            key: vec![0x0a, 0xbc],
        }),
        [&[15u8][..], b"announce_issuer", &[3, 2, 0x0a, 0xbc]].concat()
    );
    let refusal = TxError::BadTicket {
        index: 4,
        reason: "malformed".into(),
    };
    assert_eq!(
        serde_json::to_string(&refusal).unwrap(),
        r#"{"error":"bad_ticket","index":4,"reason":"malformed"}"#
    );
    assert!(serde_json::from_str::<Action>(r#"{"type":"buy_tickets","count":5,"x":1}"#).is_err());
    assert!(
        serde_json::from_str::<Action>(r#"{"type":"announce_issuer","period":3,"key":"0g"}"#)
            .is_err()
    );
}
