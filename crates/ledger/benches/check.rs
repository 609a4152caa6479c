//! What a validator's mempool pays to admit a transaction: [`State::check`] on a ledger with
//! 10,000 accounts and 1,000 nodes (900 mix nodes, 100 gateways).
//!
//! `cargo bench -p umbra-ledger --bench check` (add `-- --quick` for a short run).

#![allow(missing_docs, clippy::unwrap_used)] // a benchmark: failing loudly is the point

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};

use criterion::{Criterion, criterion_group, criterion_main};
use umbra_ledger::{
    Action, Genesis, GenesisAccount, GenesisNode, GenesisValidator, Hash, Key32, NodeId, NodeInfo,
    NodeKind, Params, SigningKey, State, Transaction, UNIT,
};

const CHAIN: &str = "umbra-bench";
const ACCOUNTS: u32 = 10_000;
const NODES: u32 = 1_000;
const GATEWAYS: u32 = 100;

fn seed(domain: u8, index: u32) -> [u8; 32] {
    let mut seed = [domain; 32];
    seed[..4].copy_from_slice(&index.to_le_bytes());
    seed
}

fn account(index: u32) -> SigningKey {
    SigningKey::from_seed(seed(1, index))
}

fn node(index: u32) -> NodeInfo {
    let gateway = index < GATEWAYS;
    let address = |base: u32| {
        let host = Ipv4Addr::from(0x0a00_0000 + base * 65_536 + index);
        SocketAddr::from((host, 1789))
    };
    NodeInfo {
        kind: if gateway {
            NodeKind::Gateway
        } else {
            NodeKind::Mix
        },
        identity_key: SigningKey::from_seed(seed(2, index)).public(),
        sphinx_key: Key32(
            *umbra_sphinx::PrivateKey::from_bytes(seed(3, index))
                .public_key()
                .as_bytes(),
        ),
        noise_key: Key32(seed(4, index)),
        mix_address: address(1),
        client_address: gateway.then(|| address(2)),
        moniker: format!("node-{index}"),
    }
}

fn ledger() -> State {
    let genesis = Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_000_000,
        params: Params::default(),
        reward_pool: 250_000_000 * UNIT,
        accounts: (0..ACCOUNTS)
            .map(|index| GenesisAccount {
                address: account(index).public(),
                balance: 1_000 * UNIT,
            })
            .collect(),
        validators: vec![GenesisValidator {
            key: SigningKey::from_seed([9; 32]).public(),
            power: 1,
            beacon_commitment: Hash([9; 32]),
            name: "validator".into(),
        }],
        monitors: Vec::new(),
        nodes: (0..NODES)
            .map(|index| GenesisNode {
                owner: account(index).public(),
                pledge: 200 * UNIT,
                node: node(index),
            })
            .collect(),
    };
    State::genesis(&genesis).unwrap()
}

fn check(c: &mut Criterion) {
    let state = ledger();
    assert_eq!(state.accounts().len(), ACCOUNTS as usize);
    assert_eq!(state.nodes().count(), NODES as usize);
    let sender = account(4_321);
    let transfer = Transaction::sign(
        CHAIN,
        &sender,
        0,
        Action::Transfer {
            to: account(1_234).public(),
            amount: 5 * UNIT,
        },
    );
    let delegate = Transaction::sign(
        CHAIN,
        &sender,
        0,
        Action::Delegate {
            node: NodeId(500),
            amount: 5 * UNIT,
        },
    );
    let now_ms = state.time_ms() + 1;
    assert_eq!(state.check(&transfer, now_ms), Ok(()));
    assert_eq!(state.check(&delegate, now_ms), Ok(()));

    let mut group = c.benchmark_group("ledger of 10000 accounts and 1000 nodes");
    group.bench_function("check a transfer", |b| {
        b.iter(|| black_box(&state).check(black_box(&transfer), now_ms))
    });
    group.bench_function("check a delegation", |b| {
        b.iter(|| black_box(&state).check(black_box(&delegate), now_ms))
    });
    // the part of a check no state layout can save: the signature
    group.bench_function("verify a transaction's signature", |b| {
        b.iter(|| black_box(&transfer).signature_is_valid(CHAIN))
    });
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
