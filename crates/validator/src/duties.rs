//! What a validator submits itself: its beacon reveal and its topology signature each epoch, and
//! the transaction that ends an epoch whose time is over.

use umbra_ledger::beacon::{CHAIN_LENGTH, step};
use umbra_ledger::{Action, Hash, PublicKey, SigningKey, State, Transaction};

/// Values of the beacon chain every this many steps, so a reveal costs at most this many hashes.
const CHECKPOINT_EVERY: u64 = 1024;

/// A validator's own duties.
pub struct Duties {
    key: SigningKey,
    index: Option<usize>,
    checkpoints: Vec<Hash>,
}

impl Duties {
    /// The duties of the validator with `key` and beacon `secret` in a chain whose validators
    /// are `state`'s. A key that is not a validator's has no duties.
    pub fn new(key: SigningKey, secret: [u8; 32], state: &State) -> Duties {
        let index = state
            .validators()
            .iter()
            .position(|validator| validator.key == key.public());
        let mut checkpoints = Vec::new();
        if index.is_some() {
            let mut value = Hash(secret);
            for steps in 0..=CHAIN_LENGTH {
                if steps % CHECKPOINT_EVERY == 0 {
                    checkpoints.push(value);
                }
                value = step(&value);
            }
        }
        Duties {
            key,
            index,
            checkpoints,
        }
    }

    /// The validator's public key.
    pub fn key(&self) -> PublicKey {
        self.key.public()
    }

    /// Whether the key is one of the validators'.
    pub fn is_validator(&self) -> bool {
        self.index.is_some()
    }

    /// The beacon commitment the secret gives (what genesis must hold).
    pub fn commitment(&self) -> Option<Hash> {
        self.value(CHAIN_LENGTH)
    }

    fn value(&self, steps: u64) -> Option<Hash> {
        let mut value = *self
            .checkpoints
            .get(usize::try_from(steps / CHECKPOINT_EVERY).ok()?)?;
        for _ in 0..steps % CHECKPOINT_EVERY {
            value = step(&value);
        }
        Some(value)
    }

    /// The transactions due now, given the state, the time and this validator's next nonce.
    /// `advance_grace_ms` is how long after an epoch's end a validator other than the one whose
    /// turn it is waits before ending the epoch itself.
    pub fn due(
        &self,
        state: &State,
        now_ms: u64,
        mut nonce: u64,
        advance_grace_ms: u64,
    ) -> Vec<Transaction> {
        let Some(index) = self.index else {
            return Vec::new();
        };
        let chain_id = state.chain_id().to_owned();
        let mut due = Vec::new();
        let mut sign = |action| {
            let transaction = Transaction::sign(&chain_id, &self.key, nonce, action);
            nonce += 1;
            transaction
        };
        let epoch = state.epoch();
        if now_ms >= epoch.end_ms {
            let validators = state.validators().len() as u64;
            let turn = (epoch.number % validators.max(1)) as usize;
            if turn == index || now_ms >= epoch.end_ms.saturating_add(advance_grace_ms) {
                // the reveal and signature for this epoch no longer matter
                due.push(sign(Action::AdvanceEpoch));
                return due;
            }
        }
        if !state.revealed_this_epoch(index) {
            let revealed = state.beacon_reveals(index);
            if let Some(reveal) = CHAIN_LENGTH
                .checked_sub(revealed + 1)
                .and_then(|steps| self.value(steps))
            {
                due.push(sign(Action::RevealBeacon { reveal }));
            }
        }
        if !state.signed_topology(index) {
            let signature = self.key.sign(&epoch.document.signing_message());
            due.push(sign(Action::SignTopology {
                epoch: epoch.number,
                signature,
            }));
        }
        due
    }
}
