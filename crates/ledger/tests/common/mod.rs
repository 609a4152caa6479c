//! A small chain for tests: deterministic keys, a genesis, and helpers to sign and apply.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // test helpers: a failure is a test failure

use umbra_ledger::beacon::BeaconChain;
use umbra_ledger::{
    Action, Amount, Block, Genesis, GenesisAccount, GenesisValidator, Key32, NodeInfo, NodeKind,
    Params, PublicKey, SigningKey, State, Transaction, TxError, UNIT, registration_message,
};

pub mod tickets;

pub const CHAIN: &str = "umbra-test";

/// Key number `n` (deterministic).
pub fn key(n: u8) -> SigningKey {
    SigningKey::from_seed([n; 32])
}

/// The beacon chain of validator number `n`.
pub fn beacon(n: u8) -> BeaconChain {
    BeaconChain::new([100 + n; 32])
}

/// Validator `n`'s beacon commitment (computed once per validator: a million hashes).
pub fn commitment(n: u8) -> umbra_ledger::Hash {
    static COMMITMENTS: std::sync::Mutex<Vec<(u8, umbra_ledger::Hash)>> =
        std::sync::Mutex::new(Vec::new());
    let mut known = COMMITMENTS.lock().unwrap();
    if let Some((_, value)) = known.iter().find(|(number, _)| *number == n) {
        return *value;
    }
    let value = beacon(n).commitment();
    known.push((n, value));
    value
}

/// Validator 0's first 64 beacon reveals, computed once (each costs a million hashes alone).
pub fn reveal_0(revealed: u64) -> umbra_ledger::Hash {
    static REVEALS: std::sync::OnceLock<Vec<umbra_ledger::Hash>> = std::sync::OnceLock::new();
    let reveals = REVEALS.get_or_init(|| {
        let mut values = vec![beacon(0).reveal(63).unwrap()];
        for _ in 0..63 {
            let next = umbra_ledger::beacon::step(values.last().unwrap());
            values.push(next);
        }
        values.reverse();
        values
    });
    reveals[revealed as usize]
}

/// Validator keys are 200 + n.
pub fn validator_key(n: u8) -> SigningKey {
    key(200 + n)
}

/// A genesis with accounts 1..=accounts holding `balance` each, `validators` validators of
/// power 1, and monitors 50 and 51.
pub fn genesis(params: Params, accounts: u8, balance: Amount, validators: u8) -> Genesis {
    Genesis {
        chain_id: CHAIN.into(),
        genesis_time_ms: 1_000_000,
        params,
        reward_pool: 50_000 * UNIT,
        accounts: (1..=accounts)
            .map(|n| GenesisAccount {
                address: key(n).public(),
                balance,
            })
            .collect(),
        validators: (0..validators)
            .map(|n| GenesisValidator {
                key: validator_key(n).public(),
                power: 1,
                beacon_commitment: commitment(n),
                name: format!("validator {n}"),
            })
            .collect(),
        monitors: vec![key(50).public(), key(51).public()],
        nodes: Vec::new(),
    }
}

/// A node's description: identity key 150 + n, addresses from n.
pub fn node_info(n: u8, kind: NodeKind) -> (SigningKey, NodeInfo) {
    let identity = key(150 + n);
    let info = NodeInfo {
        kind,
        identity_key: identity.public(),
        sphinx_key: sphinx_key(n),
        noise_key: Key32([n.wrapping_add(128); 32]),
        mix_address: format!("127.0.0.1:{}", 20_000 + u16::from(n))
            .parse()
            .unwrap(),
        client_address: match kind {
            NodeKind::Gateway => Some(
                format!("127.0.0.1:{}", 30_000 + u16::from(n))
                    .parse()
                    .unwrap(),
            ),
            NodeKind::Mix => None,
        },
        moniker: format!("node-{n}"),
    };
    (identity, info)
}

/// A valid Sphinx public key, number `n`.
pub fn sphinx_key(n: u8) -> Key32 {
    Key32(
        *umbra_sphinx::PrivateKey::from_bytes([n; 32])
            .public_key()
            .as_bytes(),
    )
}

/// The registration action for node `n` owned by `owner`.
pub fn register(owner: &PublicKey, n: u8, kind: NodeKind) -> Action {
    let (identity, node) = node_info(n, kind);
    let node_signature = identity.sign(&registration_message(CHAIN, owner, &node));
    Action::RegisterNode {
        node,
        node_signature,
    }
}

/// A chain: the state and the blocks that made it.
pub struct Chain {
    pub genesis: Genesis,
    pub state: State,
    pub blocks: Vec<Block>,
}

impl Chain {
    pub fn new(genesis: Genesis) -> Chain {
        let state = State::genesis(&genesis).unwrap();
        Chain {
            genesis,
            state,
            blocks: Vec::new(),
        }
    }

    /// A transaction by `signer` with its next nonce.
    pub fn tx(&self, signer: &SigningKey, action: Action) -> Transaction {
        let nonce = self.state.account(&signer.public()).nonce;
        Transaction::sign(CHAIN, signer, nonce, action)
    }

    /// Commits a block of `transactions` at `time_ms` after the last block.
    pub fn block_after(
        &mut self,
        delay_ms: u64,
        transactions: Vec<Transaction>,
    ) -> Vec<Result<(), TxError>> {
        let block = Block {
            height: self.state.height() + 1,
            time_ms: self.state.time_ms() + delay_ms,
            parent: self.state.last_block(),
            transactions,
        };
        let outcome = self.state.apply_block(&block).unwrap();
        self.blocks.push(block);
        outcome
    }

    /// Signs and commits one action in its own block; returns its outcome.
    pub fn act(&mut self, signer: &SigningKey, action: Action) -> Result<(), TxError> {
        let transaction = self.tx(signer, action);
        self.block_after(1, vec![transaction]).remove(0)
    }

    /// Ends the epoch (waiting out its time first).
    pub fn advance(&mut self) {
        let wait = self
            .state
            .epoch()
            .end_ms
            .saturating_sub(self.state.time_ms());
        let transaction = self.tx(&key(1), Action::AdvanceEpoch);
        let outcome = self.block_after(wait, vec![transaction]);
        assert_eq!(outcome, vec![Ok(())]);
    }

    /// The state root of replaying every block from genesis.
    pub fn replay_root(&self) -> umbra_ledger::Hash {
        let mut state = State::genesis(&self.genesis).unwrap();
        for block in &self.blocks {
            state.apply_block(block).unwrap();
        }
        state.root()
    }
}

/// Monitor `monitor` submits `scores` for the current epoch, with an evidence hash of its own.
#[allow(dead_code)] // not every test binary submits scores
pub fn submit_scores(
    chain: &mut Chain,
    monitor: u8,
    scores: Vec<(umbra_ledger::NodeId, umbra_ledger::Ppm)>,
) {
    let epoch = chain.state.epoch().number;
    chain
        .act(
            &key(monitor),
            Action::SubmitPerformance {
                epoch,
                scores,
                evidence: umbra_ledger::Hash::of(&[b"evidence", &[monitor]]),
            },
        )
        .unwrap();
}
