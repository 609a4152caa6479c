//! A small ledger with figures chosen by hand, for the view models' tests.
//!
//! Saturation point 10,000 UMB (staking supply 40,000 UMB, k = 4). Mix nodes 1 "alice"
//! (layer 1), 2 "bob" (layer 2), 3 "carol" (layer 3), 4 "dave" (never active); gateway 5
//! "gw". Epochs 1 and 2 are over; 3 is current.
//!
//! [`evidence_of`] is a monitor's evidence of an epoch: two nodes a group (the ledger's 1, 2,
//! 3 and 5, with 6, 7, 8 and 9, which it does not register), 1,600 routes, carol (3) losing
//! every fourth route through her. Monitor 1's submission for epoch 2 carries its hash.

use std::collections::BTreeMap;
use std::sync::Arc;

use umbra_ledger::api::{ActivePlace, DelegationView, EpochView, NodeView, StatusView};
use umbra_ledger::rewards::Payout;
use umbra_ledger::state::{ActiveSet, EpochReport, MonitorSubmission, NodeEpochReport, Pending};
use umbra_ledger::{
    Amount, Certificate, Genesis, GenesisValidator, Hash, Key32, NodeId, NodeInfo, NodeKind,
    Params, Ppm, PublicKey, SignedTopology, SigningKey, TopologyDocument, UNIT,
};

use umbra_monitor::{EVIDENCE_VERSION, Evidence, EvidenceNode, Group, MonitorConfig, RouteOutcome};

use crate::snapshot::{EpochSeen, LedgerData, Snapshot};

pub(crate) fn key(n: u8) -> PublicKey {
    SigningKey::from_seed([n; 32]).public()
}

pub(crate) fn umb(whole: u64) -> Amount {
    Amount(whole * UNIT.0)
}

pub(crate) fn owner() -> PublicKey {
    key(100)
}

pub(crate) fn delegator() -> PublicKey {
    key(101)
}

pub(crate) fn monitors() -> [PublicKey; 2] {
    [key(110), key(111)]
}

pub(crate) fn validators() -> [PublicKey; 2] {
    [key(120), key(121)]
}

pub(crate) fn genesis() -> Genesis {
    Genesis {
        chain_id: "umbra-test".into(),
        genesis_time_ms: 1_000_000,
        params: Params {
            epoch_length_ms: 60_000,
            mixes_per_layer: 1,
            active_gateways: 1,
            staking_supply: umb(40_000),
            ..Params::default()
        },
        reward_pool: umb(1_000_000),
        accounts: Vec::new(),
        validators: validators()
            .iter()
            .zip(["one", "two"])
            .map(|(key, name)| GenesisValidator {
                key: *key,
                power: 1,
                beacon_commitment: Hash([7; 32]),
                name: name.into(),
            })
            .collect(),
        monitors: monitors().to_vec(),
        nodes: Vec::new(),
    }
}

fn node(id: u32, moniker: &str, kind: NodeKind, pledge: u64, delegations: Amount) -> NodeView {
    NodeView {
        id: NodeId(id),
        owner: owner(),
        info: NodeInfo {
            kind,
            identity_key: key(id as u8),
            sphinx_key: Key32([id as u8; 32]),
            noise_key: Key32([id as u8 + 50; 32]),
            mix_address: format!("127.0.0.1:{}", 1700 + id).parse().unwrap(),
            client_address: (kind == NodeKind::Gateway)
                .then(|| format!("127.0.0.1:{}", 9000 + id).parse().unwrap()),
            moniker: moniker.into(),
        },
        pledge: umb(pledge),
        unbonding: false,
        sphinx_keys: BTreeMap::from([(0, Key32([id as u8; 32]))]),
        delegations,
        stake: umb(pledge) + delegations,
        operating_cost: umb(40),
        profit_margin: Ppm(200_000),
        performance: Ppm(1_000_000),
        active: None,
    }
}

fn entry(
    id: u32,
    layer: Option<u8>,
    performance: u32,
    pledge: u64,
    delegations: Amount,
    payout: (Amount, Amount),
) -> NodeEpochReport {
    NodeEpochReport {
        node: NodeId(id),
        layer,
        performance: Ppm(performance),
        measured: true,
        stake: umb(pledge) + delegations,
        pledge: umb(pledge),
        delegations,
        operating_cost: Amount(55_555),
        profit_margin: Ppm(200_000),
        payout: Payout {
            operator: payout.0,
            delegators: payout.1,
        },
    }
}

fn report(
    epoch: u64,
    nodes: Vec<NodeEpochReport>,
    monitors: Vec<MonitorSubmission>,
) -> EpochReport {
    EpochReport {
        epoch,
        budget: umb(1_000),
        saturation: umb(10_000),
        active_set_size: 4,
        sybil_resistance: Ppm(300_000),
        nodes,
        monitors,
    }
}

pub(crate) fn data() -> LedgerData {
    let [m1, m2] = monitors();
    let epoch_2_evidence = Hash(evidence_of(2).hash().0);
    let mut nodes = vec![
        node(1, "alice", NodeKind::Mix, 1_000, Amount(309_060_000)),
        node(2, "bob", NodeKind::Mix, 1_000, Amount::ZERO),
        node(3, "carol", NodeKind::Mix, 200, Amount(300_900_000)),
        node(4, "dave", NodeKind::Mix, 100, Amount::ZERO),
        node(5, "gw", NodeKind::Gateway, 1_000, Amount::ZERO),
    ];
    for (index, (performance, place)) in [
        (950_000, Some(Some(1))),
        (990_000, Some(Some(2))),
        (800_000, Some(Some(3))),
        (1_000_000, None),
        (1_000_000, Some(None)),
    ]
    .into_iter()
    .enumerate()
    {
        nodes[index].performance = Ppm(performance);
        nodes[index].active = place.map(|layer| ActivePlace { layer });
    }
    let history = vec![
        report(
            1,
            vec![
                entry(1, Some(1), 950_000, 1_000, umb(300), (umb(10), umb(3))),
                entry(
                    2,
                    Some(2),
                    990_000,
                    1_000,
                    Amount::ZERO,
                    (umb(12), Amount::ZERO),
                ),
                entry(
                    5,
                    None,
                    1_000_000,
                    1_000,
                    Amount::ZERO,
                    (umb(11), Amount::ZERO),
                ),
            ],
            vec![
                MonitorSubmission {
                    monitor: m1,
                    evidence: Hash([1; 32]),
                    scores: vec![(NodeId(1), Ppm(950_000)), (NodeId(2), Ppm(990_000))],
                },
                MonitorSubmission {
                    monitor: m2,
                    evidence: Hash([2; 32]),
                    scores: vec![(NodeId(1), Ppm(960_000)), (NodeId(5), Ppm(1_000_000))],
                },
            ],
        ),
        report(
            2,
            vec![
                entry(
                    1,
                    Some(1),
                    950_000,
                    1_010,
                    umb(303),
                    (umb(10), Amount(6_060_000)),
                ),
                entry(
                    2,
                    Some(2),
                    990_000,
                    1_012,
                    Amount::ZERO,
                    (umb(12), Amount::ZERO),
                ),
                entry(
                    3,
                    Some(3),
                    800_000,
                    200,
                    umb(300),
                    (umb(2), Amount(900_000)),
                ),
                entry(
                    5,
                    None,
                    1_000_000,
                    1_011,
                    Amount::ZERO,
                    (umb(11), Amount::ZERO),
                ),
            ],
            vec![MonitorSubmission {
                monitor: m1,
                evidence: epoch_2_evidence,
                scores: vec![(NodeId(3), Ppm(800_000))],
            }],
        ),
    ];
    LedgerData {
        status: StatusView {
            chain_id: "umbra-test".into(),
            height: 120,
            time_ms: 1_130_000,
            last_block: Hash([4; 32]),
            state_root: Hash([5; 32]),
            epoch: 3,
            epoch_ends_ms: 1_180_000,
            supply: umb(2_000_000),
            reward_pool: umb(999_000),
        },
        nodes,
        delegations: vec![
            DelegationView {
                node: NodeId(1),
                delegator: delegator(),
                amount: umb(300),
                value: Amount(309_060_000),
            },
            DelegationView {
                node: NodeId(3),
                delegator: delegator(),
                amount: umb(300),
                value: Amount(300_900_000),
            },
        ],
        epoch: EpochView {
            epoch: 3,
            start_ms: 1_120_000,
            end_ms: 1_180_000,
            rotation: 0,
            budget: umb(1_000),
            seed: Hash([9; 32]),
            active: ActiveSet {
                layers: [vec![NodeId(1)], vec![NodeId(2)], vec![NodeId(3)]],
                gateways: vec![NodeId(5)],
            },
            pending: vec![Pending::Delegate {
                delegator: delegator(),
                node: NodeId(2),
                amount: umb(50),
            }],
            performance: BTreeMap::from([(NodeId(1), BTreeMap::from([(0, Ppm(940_000))]))]),
        },
        history,
        topology: Some(SignedTopology {
            document: TopologyDocument {
                chain_id: "umbra-test".into(),
                epoch: 3,
                start_ms: 1_120_000,
                end_ms: 1_180_000,
                rotation: 0,
                nodes: Vec::new(),
            },
            certificate: Certificate {
                signatures: vec![(validators()[0], SigningKey::from_seed([120; 32]).sign(b"x"))],
            },
        }),
    }
}

pub(crate) fn snapshot() -> Snapshot {
    let seen = BTreeMap::from([(
        2,
        EpochSeen {
            seed: Some(Hash([8; 32])),
            signers: validators().to_vec(),
        },
    )]);
    Snapshot::new(
        Arc::new(genesis()),
        data(),
        seen,
        1_130_500,
        "http://127.0.0.1:7000".into(),
    )
}

/// Monitor 1's evidence of epoch 2 (the hash its submission carries).
pub(crate) fn evidence() -> Evidence {
    evidence_of(2)
}

/// A monitor's evidence of `epoch` (see the module's documentation). Layer 1's node 6 is
/// always routed through layer 3's node 8, so it never crosses carol.
pub(crate) fn evidence_of(epoch: u64) -> Evidence {
    let pick = |pair: [u32; 2], bit: usize| pair[bit % 2];
    let mut through_carol = 0;
    let routes = (0..1600usize)
        .map(|i| {
            let layer1 = pick([1, 6], i);
            let layer3 = if layer1 == 6 { 8 } else { pick([3, 8], i / 4) };
            let hops = [
                pick([5, 9], i / 8),
                layer1,
                pick([2, 7], i / 2),
                layer3,
                pick([5, 9], i / 16),
            ];
            let mut lost = false;
            if layer3 == 3 {
                through_carol += 1;
                lost = through_carol % 4 == 0;
            }
            RouteOutcome {
                id: 1000 + i as u64,
                hops,
                sent_ms: 100 * i as u64,
                latency_us: (!lost).then_some(150_000 + i as u64),
            }
        })
        .collect();
    let group = |id: u32| match id {
        1 | 6 => Group::Layer1,
        2 | 7 => Group::Layer2,
        3 | 8 => Group::Layer3,
        _ => Group::Gateway,
    };
    Evidence {
        version: EVIDENCE_VERSION,
        epoch,
        rules: MonitorConfig::default().rules(),
        nodes: [1, 6, 2, 7, 3, 8, 5, 9]
            .into_iter()
            .map(|id| EvidenceNode {
                id,
                group: group(id),
            })
            .collect(),
        routes,
        faults: Vec::new(),
    }
}
