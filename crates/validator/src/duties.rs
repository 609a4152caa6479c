//! What a validator submits itself: its beacon reveal and its topology signature each epoch, and
//! the transaction that ends an epoch whose time is over, and its ticket issuance keys for the
//! current and the next key period.

use std::sync::Arc;

use tracing::warn;
use umbra_ledger::beacon::{CHAIN_LENGTH, step};
use umbra_ledger::{Action, Hash, PublicKey, SigningKey, State, Transaction};

use crate::chain::Chain;
use crate::signing::IssuerKeys;

/// Values of the beacon chain every this many steps, so a reveal costs at most this many hashes.
const CHECKPOINT_EVERY: u64 = 1024;

/// A validator's own duties.
pub struct Duties {
    key: SigningKey,
    index: Option<usize>,
    checkpoints: Vec<Hash>,
    issuer_keys: Option<Arc<IssuerKeys>>,
}

/// The periods (of the current and the next) for which validator `index` announced no key.
fn unannounced(state: &State, index: usize) -> Vec<u64> {
    let Ok(validator) = u16::try_from(index) else {
        // a ticket names its signers by u16: a validator beyond that cannot issue
        return Vec::new();
    };
    let current = state.ticket_period();
    [current, current.saturating_add(1)]
        .into_iter()
        .filter(|period| {
            !state
                .tickets()
                .issuers()
                .get(period)
                .is_some_and(|keys| keys.contains_key(&validator))
        })
        .collect()
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
            issuer_keys: None,
        }
    }

    /// The duties, announcing the ticket issuance keys of `keys` too.
    pub fn with_issuer_keys(mut self, keys: Arc<IssuerKeys>) -> Duties {
        self.issuer_keys = Some(keys);
        self
    }

    /// Makes the issuance keys the current and the next key period lack (and this validator
    /// did not announce), off the async runtime, so that [`Duties::due`] can announce them;
    /// drops the keys of expired periods. A key that cannot be saved is retried next time.
    pub async fn prepare_issuer_keys(&self, chain: &Chain) {
        let (Some(keys), Some(index)) = (&self.issuer_keys, self.index) else {
            return;
        };
        let (current, wanted) =
            chain.read(|state| (state.ticket_period(), unannounced(state, index)));
        keys.retain_live(current);
        let missing: Vec<u64> = wanted
            .into_iter()
            .filter(|&period| keys.get(period).is_none())
            .collect();
        if missing.is_empty() {
            return;
        }
        let keys = Arc::clone(keys);
        let made = tokio::task::spawn_blocking(move || {
            missing
                .into_iter()
                .try_for_each(|period| keys.ensure(period).map(drop))
        })
        .await;
        match made {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, "cannot make a ticket issuance key"),
            Err(_) => warn!("the task making a ticket issuance key panicked"),
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
        if let Some(keys) = &self.issuer_keys {
            for period in unannounced(state, index) {
                if let Some(secret) = keys.get(period) {
                    due.push(sign(Action::AnnounceIssuer {
                        period,
                        key: secret.public_key().as_bytes().to_vec(),
                    }));
                }
            }
        }
        due
    }
}
