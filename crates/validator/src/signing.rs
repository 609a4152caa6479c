//! The validators' ticket signing service (docs/ledger.md, "Bandwidth tickets"): this
//! validator's issuance keys, one RSA key per key period kept in `tickets/period-<p>.der`, and
//! the blind signatures it gives a paid purchase, once.
//!
//! A purchase is signed for one list of blinded messages only: the answer is recorded in the
//! block store (`signed` table) before it is sent, so the same request again gets the same
//! answer and another list is refused. Records and key files are dropped once their key period
//! expired (the current period is at least two past theirs).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use umbra_ledger::{Hash, PublicKey, State};
use umbra_net::NodeError;
use umbra_tickets::{BlindedMessage, IssuerSecretKey, SIGNATURE_LEN, sign_blinded};

use crate::ValidatorError;
use crate::chain::Chain;
use crate::store::Served;

/// The directory (in the data directory) of the issuance keys.
pub const TICKETS_DIR: &str = "tickets";

/// How many signing requests are served at once, at most (each takes up to ~4 s of one core).
pub const MAX_SIGNINGS_AT_ONCE: usize = 4;

/// The largest `POST /tickets/sign` body: 4,096 blinded messages of 256 bytes in hex (2 MiB
/// and some) with room to spare.
pub const SIGN_BODY_LIMIT: usize = 3 * 1024 * 1024;

/// Whether a key or a record of key period `period` expired in period `current`.
pub fn expired(period: u64, current: u64) -> bool {
    current >= period.saturating_add(2)
}

fn key_file(period: u64) -> String {
    format!("period-{period}.der")
}

/// This validator's issuance secret keys, by key period, as saved in its data directory.
pub struct IssuerKeys {
    dir: PathBuf,
    keys: Mutex<BTreeMap<u64, Arc<IssuerSecretKey>>>,
    /// Held while a key is made, so that two callers never make two keys of one period.
    making: Mutex<()>,
}

impl IssuerKeys {
    /// Loads the keys saved in `dir` (created, owner-only, if missing).
    pub fn open(dir: &Path) -> Result<IssuerKeys, ValidatorError> {
        umbra_net::files::create_private_dir(dir)?;
        let read_error = |source| NodeError::Read {
            path: dir.to_owned(),
            source,
        };
        let mut keys = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(read_error)? {
            let path = entry.map_err(read_error)?.path();
            let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            if name.ends_with(".tmp") {
                // a key being written when the validator stopped: never announced
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(period) = name
                .strip_prefix("period-")
                .and_then(|rest| rest.strip_suffix(".der"))
                .and_then(|number| number.parse::<u64>().ok())
            else {
                continue;
            };
            let der = std::fs::read(&path).map_err(|source| NodeError::Read {
                path: path.clone(),
                source,
            })?;
            let key = IssuerSecretKey::from_der(&der).map_err(|error| {
                NodeError::invalid(
                    &path,
                    format!(
                        "is not a ticket issuance key ({error}); restore it from a backup, or \
                         move it away if this validator never announced it"
                    ),
                )
            })?;
            keys.insert(period, Arc::new(key));
        }
        Ok(IssuerKeys {
            dir: dir.to_owned(),
            keys: Mutex::new(keys),
            making: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<IssuerSecretKey>>> {
        self.keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The key of `period`, if this validator has one.
    pub fn get(&self, period: u64) -> Option<Arc<IssuerSecretKey>> {
        self.lock().get(&period).cloned()
    }

    /// The periods this validator has keys for.
    pub fn periods(&self) -> Vec<u64> {
        self.lock().keys().copied().collect()
    }

    /// The key of `period`, generated with the OS RNG and saved first if there is none (slow:
    /// a second or so; call it off the async runtime). A saved key is never replaced.
    pub fn ensure(&self, period: u64) -> Result<Arc<IssuerSecretKey>, ValidatorError> {
        let _making = self
            .making
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(key) = self.get(period) {
            return Ok(key);
        }
        let path = self.dir.join(key_file(period));
        let key = IssuerSecretKey::generate(&mut rand::rng())
            .map_err(|error| NodeError::invalid(&path, format!("cannot generate it: {error}")))?;
        let der = key
            .to_der()
            .map_err(|error| NodeError::invalid(&path, format!("cannot encode it: {error}")))?;
        // written whole then renamed, so a crash never leaves half a key under the real name
        let temporary = self.dir.join(format!("{}.tmp", key_file(period)));
        umbra_net::files::write_private(&temporary, &der)?;
        std::fs::rename(&temporary, &path).map_err(|source| NodeError::Write {
            path: path.clone(),
            source,
        })?;
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        let key = Arc::new(key);
        self.lock().insert(period, Arc::clone(&key));
        Ok(key)
    }

    /// Drops the keys (and their files) of the periods expired in period `current`.
    pub fn retain_live(&self, current: u64) {
        let mut keys = self.lock();
        let old: Vec<u64> = keys
            .keys()
            .copied()
            .filter(|&period| expired(period, current))
            .collect();
        for period in old {
            let path = self.dir.join(key_file(period));
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    keys.remove(&period);
                    debug!(period, "expired ticket issuance key removed");
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    keys.remove(&period);
                }
                Err(error) => {
                    warn!(path = %path.display(), %error, "cannot remove an expired ticket key")
                }
            }
        }
    }
}

/// The body of `POST /tickets/sign`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The hash of the `BuyTickets` transaction that paid (base58, as the API writes hashes).
    pub tx: String,
    /// The purchase's blinded messages for this validator, in hex, one per ticket.
    pub blinded: Vec<String>,
}

/// The answer to `GET /tickets/signer`: whose signing service this is. A client looks the key
/// up in `GET /tickets/issuers` to learn the validator's index, and so which of its blinded
/// copies to send (a copy blinded for another validator's key would be signed, recorded as the
/// purchase's one answer here, and be useless).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignerView {
    /// The validator's ed25519 key.
    pub validator_key: PublicKey,
}

/// The answer to `POST /tickets/sign`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignAnswer {
    /// The key period of the purchase (and of the key that signed).
    pub period: u64,
    /// This validator's index (how tickets name their signers).
    pub validator: u16,
    /// The blind signatures, in hex, in the order of the blinded messages.
    pub signatures: Vec<String>,
}

/// Why a signing request was not answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The body is not a signing request.
    #[error("not a signing request: {0}")]
    BadRequest(String),
    /// The purchase is not in the committed state.
    #[error(
        "no purchase {0}: wait until the buy_tickets transaction is committed (or its key \
         period expired)"
    )]
    NoPurchase(Hash),
    /// Not one blinded message per ticket.
    #[error(
        "purchase {tx} paid for {count} tickets but {got} blinded messages were sent; send \
         one per ticket"
    )]
    WrongCount {
        /// The purchase.
        tx: Hash,
        /// The tickets it paid for.
        count: u32,
        /// The blinded messages sent.
        got: usize,
    },
    /// This validator cannot sign for the period.
    #[error("this validator cannot sign tickets of key period {period}: {reason}")]
    NoKey {
        /// The purchase's key period.
        period: u64,
        /// Why.
        reason: &'static str,
    },
    /// The purchase was answered for another list of blinded messages.
    #[error("this purchase was already signed for other blinded messages")]
    AlreadySigned,
    /// Another request for the same purchase is being answered.
    #[error("another request for this purchase is being answered; send it again in a moment")]
    InProgress,
    /// Too many requests are being answered.
    #[error("{0} signing requests are being answered; send it again in a moment")]
    Busy(usize),
    /// The store or a signing task failed.
    #[error("the signing service failed: {0}")]
    Internal(String),
}

impl SignError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            SignError::BadRequest(_) | SignError::WrongCount { .. } => 400,
            SignError::NoPurchase(_) => 404,
            SignError::AlreadySigned => 409,
            SignError::NoKey { .. } | SignError::InProgress | SignError::Busy(_) => 503,
            SignError::Internal(_) => 500,
        }
    }
}

/// What the state says about a request, read under the chain's lock.
struct Plan {
    period: u64,
    current: u64,
    validator: u16,
}

/// Checks a purchase of `state` against a request of `count` blinded messages: it exists and is
/// live, the count matches, and this validator (`key`) holds the key it announced for the
/// purchase's period; returns that key.
fn plan(
    state: &State,
    key: &PublicKey,
    tx: Hash,
    count: usize,
    issuer: &IssuerKeys,
) -> Result<(Plan, Arc<IssuerSecretKey>), SignError> {
    let purchase = state
        .tickets()
        .purchase(&tx)
        .ok_or(SignError::NoPurchase(tx))?;
    let current = state.ticket_period();
    if expired(purchase.period, current) {
        return Err(SignError::NoPurchase(tx));
    }
    if usize::try_from(purchase.count).ok() != Some(count) {
        return Err(SignError::WrongCount {
            tx,
            count: purchase.count,
            got: count,
        });
    }
    let period = purchase.period;
    let validator = state
        .validators()
        .iter()
        .position(|validator| validator.key == *key)
        .and_then(|index| u16::try_from(index).ok())
        .ok_or(SignError::NoKey {
            period,
            reason: "its key is not a validator's that can issue",
        })?;
    let announced = state
        .tickets()
        .issuers()
        .get(&period)
        .and_then(|keys| keys.get(&validator))
        .ok_or(SignError::NoKey {
            period,
            reason: "it announced no key for that period",
        })?;
    let secret = issuer.get(period).ok_or(SignError::NoKey {
        period,
        reason: "its key file for that period is missing",
    })?;
    if secret.public_key() != announced {
        return Err(SignError::NoKey {
            period,
            reason: "its key file for that period is not the key it announced",
        });
    }
    Ok((
        Plan {
            period,
            current,
            validator,
        },
        secret,
    ))
}

/// The hash that identifies a list of blinded messages.
pub fn blinded_hash(blinded: &[BlindedMessage]) -> Hash {
    let count = (blinded.len() as u64).to_be_bytes();
    let mut parts: Vec<&[u8]> = vec![b"umbra-blinded-list-v1", &count];
    parts.extend(blinded.iter().map(|message| message.0.as_slice()));
    Hash::of(&parts)
}

/// Removes a purchase from the in-flight set when its request ends.
struct InFlight<'a> {
    set: &'a Mutex<HashSet<Hash>>,
    tx: Hash,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.tx);
    }
}

/// The signing service of one validator.
pub struct Signer {
    key: PublicKey,
    keys: Arc<IssuerKeys>,
    in_flight: Mutex<HashSet<Hash>>,
    /// The period the served records were last pruned in, plus one (0: never).
    pruned: AtomicU64,
}

impl Signer {
    /// The service of the validator with ed25519 key `key` and issuance keys `keys`.
    pub fn new(key: PublicKey, keys: Arc<IssuerKeys>) -> Signer {
        Signer {
            key,
            keys,
            in_flight: Mutex::new(HashSet::new()),
            pruned: AtomicU64::new(0),
        }
    }

    /// The ed25519 key of the validator it signs for.
    pub fn validator_key(&self) -> PublicKey {
        self.key
    }

    /// The issuance keys.
    pub fn keys(&self) -> &Arc<IssuerKeys> {
        &self.keys
    }

    fn admit(&self, tx: Hash) -> Result<InFlight<'_>, SignError> {
        let mut set = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if set.contains(&tx) {
            return Err(SignError::InProgress);
        }
        if set.len() >= MAX_SIGNINGS_AT_ONCE {
            return Err(SignError::Busy(set.len()));
        }
        set.insert(tx);
        Ok(InFlight {
            set: &self.in_flight,
            tx,
        })
    }

    /// Answers a signing request against `chain`'s committed state.
    pub async fn sign(
        &self,
        chain: &Arc<Chain>,
        request: SignRequest,
    ) -> Result<SignAnswer, SignError> {
        let tx: Hash = request.tx.parse().map_err(|_| {
            SignError::BadRequest(format!("{:?} is not a transaction hash", request.tx))
        })?;
        if request.blinded.len() > umbra_tickets::MAX_TICKETS_PER_PURCHASE as usize {
            return Err(SignError::BadRequest(format!(
                "{} blinded messages; a purchase has {} tickets at most",
                request.blinded.len(),
                umbra_tickets::MAX_TICKETS_PER_PURCHASE
            )));
        }
        let blinded = request
            .blinded
            .iter()
            .enumerate()
            .map(|(index, text)| match hex::decode(text) {
                Ok(bytes) if bytes.len() == SIGNATURE_LEN => Ok(BlindedMessage(bytes)),
                Ok(bytes) => Err(SignError::BadRequest(format!(
                    "blinded message {index} has {} bytes, not {SIGNATURE_LEN}",
                    bytes.len()
                ))),
                Err(_) => Err(SignError::BadRequest(format!(
                    "blinded message {index} is not hex"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let hash = blinded_hash(&blinded);
        let (plan, secret) =
            chain.read(|state| plan(state, &self.key, tx, blinded.len(), &self.keys))?;
        self.prune(chain, plan.current);
        let store = chain.store();
        if let Some(served) = store.served(&tx).map_err(internal)? {
            return answer_again(served, hash);
        }
        let _in_flight = self.admit(tx)?;
        let signatures = tokio::task::spawn_blocking(move || {
            let mut rng = rand::rng();
            blinded
                .iter()
                .map(|message| sign_blinded(&secret, &mut rng, message).map(|s| hex::encode(s.0)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|_| SignError::Internal("a signing task panicked".into()))?
        .map_err(|error| SignError::BadRequest(error.to_string()))?;
        let answer = SignAnswer {
            period: plan.period,
            validator: plan.validator,
            signatures,
        };
        let served = Served {
            period: plan.period,
            blinded: hash,
            answer,
        };
        // recorded before it is sent; a record made meanwhile wins
        let recorded = store.record_served(&tx, &served).map_err(internal)?;
        answer_again(recorded, hash)
    }

    /// Drops the served records of expired periods, once per period.
    fn prune(&self, chain: &Chain, current: u64) {
        let mark = current.saturating_add(1);
        if self.pruned.swap(mark, Ordering::Relaxed) == mark {
            return;
        }
        match chain
            .store()
            .prune_served(|period| expired(period, current))
        {
            Ok(dropped) => debug!(dropped, current, "expired signing records dropped"),
            Err(error) => warn!(%error, "cannot drop expired signing records"),
        }
    }
}

fn internal(error: ValidatorError) -> SignError {
    SignError::Internal(error.to_string())
}

fn answer_again(served: Served, hash: Hash) -> Result<SignAnswer, SignError> {
    if served.blinded == hash {
        Ok(served.answer)
    } else {
        Err(SignError::AlreadySigned)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::store::Store;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "umbra-validator-signing-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn issuance_keys_are_saved_once_reloaded_and_dropped_when_expired() {
        let dir = temp("keys");
        let keys = IssuerKeys::open(&dir).unwrap();
        assert!(keys.get(3).is_none());
        let made = keys.ensure(3).unwrap();
        // asked again: the same key, not a new one
        assert_eq!(keys.ensure(3).unwrap().public_key(), made.public_key());
        let path = dir.join("period-3.der");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // a half-written key and other files are not keys
        std::fs::write(dir.join("period-4.der.tmp"), b"half").unwrap();
        std::fs::write(dir.join("notes.txt"), b"hello").unwrap();
        let reloaded = IssuerKeys::open(&dir).unwrap();
        assert_eq!(reloaded.periods(), vec![3]);
        assert_eq!(reloaded.get(3).unwrap().public_key(), made.public_key());
        assert!(!dir.join("period-4.der.tmp").exists());
        // live while its tickets can be signed or spent: periods 3 and 4
        reloaded.retain_live(4);
        assert!(path.exists() && reloaded.get(3).is_some());
        reloaded.retain_live(5);
        assert!(!path.exists() && reloaded.get(3).is_none());
        // a broken key file is an error naming it, not a silently new key
        std::fs::write(dir.join("period-6.der"), b"not a key").unwrap();
        let error = IssuerKeys::open(&dir).err().unwrap().to_string();
        assert!(error.contains("period-6.der"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn blinded_lists_hash_apart() {
        let one = BlindedMessage(vec![1; 4]);
        let two = BlindedMessage(vec![2; 4]);
        let joined = BlindedMessage([vec![1; 4], vec![2; 4]].concat());
        let both = blinded_hash(&[one.clone(), two.clone()]);
        assert_eq!(both, blinded_hash(&[one.clone(), two.clone()]));
        assert_ne!(both, blinded_hash(&[two, one]));
        assert_ne!(both, blinded_hash(&[joined]));
    }

    fn served(period: u64, blinded: u8) -> Served {
        Served {
            period,
            blinded: Hash([blinded; 32]),
            answer: SignAnswer {
                period,
                validator: 0,
                signatures: vec![hex::encode([blinded; 4])],
            },
        }
    }

    #[test]
    fn the_first_answer_recorded_stays_until_its_period_expires() {
        let dir = temp("served");
        umbra_net::files::create_private_dir(&dir).unwrap();
        let path = dir.join("chain.redb");
        let store = Store::open(&path, Hash([0; 32])).unwrap();
        let (a, b) = (Hash([1; 32]), Hash([2; 32]));
        assert_eq!(store.served(&a).unwrap(), None);
        assert_eq!(
            store.record_served(&a, &served(0, 1)).unwrap(),
            served(0, 1)
        );
        // a second answer for the same purchase: the first one stays
        assert_eq!(
            store.record_served(&a, &served(0, 2)).unwrap(),
            served(0, 1)
        );
        assert_eq!(
            answer_again(served(0, 1), Hash([1; 32])).unwrap(),
            served(0, 1).answer
        );
        assert!(matches!(
            answer_again(served(0, 1), Hash([2; 32])),
            Err(SignError::AlreadySigned)
        ));
        store.record_served(&b, &served(1, 3)).unwrap();
        drop(store);
        // durable
        let store = Store::open(&path, Hash([0; 32])).unwrap();
        assert_eq!(store.served(&a).unwrap(), Some(served(0, 1)));
        assert_eq!(store.prune_served(|period| expired(period, 1)).unwrap(), 0);
        assert_eq!(store.prune_served(|period| expired(period, 2)).unwrap(), 1);
        assert_eq!(store.served(&a).unwrap(), None);
        assert_eq!(store.served(&b).unwrap(), Some(served(1, 3)));
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refusals_have_their_statuses() {
        assert_eq!(SignError::NoPurchase(Hash([0; 32])).status(), 404);
        assert_eq!(SignError::AlreadySigned.status(), 409);
        assert_eq!(
            SignError::WrongCount {
                tx: Hash([0; 32]),
                count: 2,
                got: 1
            }
            .status(),
            400
        );
        assert_eq!(
            SignError::NoKey {
                period: 0,
                reason: "none"
            }
            .status(),
            503
        );
    }
}
