//! The replicated chain on one validator: the ledger state, the mempool and the block store,
//! whichever sequencer decides the blocks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use crate::ValidatorError;
use umbra_ledger::{
    Block, Genesis, Hash, PublicKey, SignedTopology, State, Transaction, TxError, ValidatorKey,
};
use umbra_net::NodeError;

use crate::store::{Receipt, Store};

/// How many transactions wait in the mempool at most.
pub const MEMPOOL_LIMIT: usize = 50_000;
/// How many transactions of one account wait at most.
pub const PER_ACCOUNT_LIMIT: usize = 256;

/// Why a submitted transaction was not accepted into the mempool.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    /// The ledger would refuse it.
    #[error("{0}")]
    Invalid(TxError),
    /// Too many waiting.
    #[error("the mempool is full ({0} transactions wait); try again in a moment")]
    Full(usize),
    /// Too many of this account's waiting.
    #[error("this account already has {0} transactions waiting; wait for them to commit")]
    AccountFull(usize),
}

struct Inner {
    state: State,
    queue: VecDeque<(Hash, Transaction)>,
    queued: HashSet<Hash>,
    /// Per signer: the nonce its next transaction must have, when it has some queued.
    next_nonce: HashMap<PublicKey, (u64, usize)>,
    /// The latest topology whose certificate holds: the current epoch's once more than 2/3 of
    /// the voting power signed it, the previous epoch's until then.
    certified: Option<SignedTopology>,
}

impl Inner {
    /// Keeps the current epoch's topology as the certified one once its certificate holds.
    fn certify(&mut self, validators: &[ValidatorKey]) {
        let signed = self.state.signed_topology_document();
        if let Some(certified) = &self.certified
            && certified.document == signed.document
            && certified.certificate.signatures.len() == signed.certificate.signatures.len()
        {
            return;
        }
        if signed.verify(self.state.chain_id(), validators).is_ok() {
            self.certified = Some(signed);
        }
    }
}

/// A validator's chain.
pub struct Chain {
    genesis: Genesis,
    validators: Vec<ValidatorKey>,
    inner: Mutex<Inner>,
    store: Store,
    arrived: tokio::sync::Notify,
    relay: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Transaction>>>,
}

impl Chain {
    /// Opens the chain: the genesis state, then every stored block applied again in order.
    pub fn open(genesis: Genesis, store_path: &Path) -> Result<Chain, ValidatorError> {
        let validators = genesis.validator_keys();
        let mut inner = Inner {
            state: State::genesis(&genesis)?,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            next_nonce: HashMap::new(),
            certified: None,
        };
        let store = Store::open(store_path, genesis.hash())?;
        let last = store.height()?;
        for height in 1..=last {
            let block = store.block(height)?.ok_or_else(|| {
                NodeError::invalid(store_path, format!("block {height} of {last} is missing"))
            })?;
            inner.state.apply_block(&block).map_err(|error| {
                NodeError::invalid(store_path, format!("stored block {height}: {error}"))
            })?;
            inner.certify(&validators);
        }
        Ok(Chain {
            genesis,
            validators,
            inner: Mutex::new(inner),
            store,
            arrived: tokio::sync::Notify::new(),
            relay: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // a panic while holding the lock would be a bug; the state is still consistent then,
        // because every change to it is made by apply_block under the lock
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// Reads the state.
    pub fn read<R>(&self, read: impl FnOnce(&State) -> R) -> R {
        read(&self.lock().state)
    }

    /// The topology to serve: the latest one whose certificate holds (the current epoch's once
    /// more than 2/3 of the voting power signed it, the previous epoch's until then), with the
    /// current epoch's number. None before the first epoch is certified.
    pub fn certified_topology(&self) -> (Option<SignedTopology>, u64) {
        let inner = self.lock();
        (inner.certified.clone(), inner.state.epoch().number)
    }

    /// Accepts a transaction into the mempool if it could apply: its signature verifies, its
    /// nonce is the signer's next (counting the signer's queued ones), and — when it is the
    /// signer's only one — the ledger would apply it to the current state at `now_ms`. Submitting the same
    /// transaction twice is harmless.
    pub fn submit(&self, transaction: Transaction, now_ms: u64) -> Result<Hash, Rejected> {
        self.accept(transaction, now_ms, true)
    }

    /// Like [`submit`](Self::submit), for a transaction another validator relayed: it is not
    /// relayed again.
    pub fn submit_relayed(&self, transaction: Transaction, now_ms: u64) -> Result<Hash, Rejected> {
        self.accept(transaction, now_ms, false)
    }

    /// Hands every transaction accepted from now on through [`submit`](Self::submit) to
    /// `relay`, for the other validators.
    pub fn relay_to(&self, relay: tokio::sync::mpsc::UnboundedSender<Transaction>) {
        *self
            .relay
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(relay);
    }

    fn accept(&self, transaction: Transaction, now_ms: u64, relay: bool) -> Result<Hash, Rejected> {
        let hash = transaction.hash();
        let mut inner = self.lock();
        if inner.queued.contains(&hash) {
            return Ok(hash);
        }
        if inner.queue.len() >= MEMPOOL_LIMIT {
            return Err(Rejected::Full(inner.queue.len()));
        }
        if !transaction.signature_is_valid(inner.state.chain_id()) {
            return Err(Rejected::Invalid(TxError::BadSignature));
        }
        let queued = inner.next_nonce.get(&transaction.signer).copied();
        match queued {
            Some((expected, count)) => {
                if count >= PER_ACCOUNT_LIMIT {
                    return Err(Rejected::AccountFull(count));
                }
                if transaction.nonce != expected {
                    return Err(Rejected::Invalid(TxError::BadNonce {
                        expected,
                        got: transaction.nonce,
                    }));
                }
            }
            None => inner
                .state
                .check(&transaction, now_ms)
                .map_err(Rejected::Invalid)?,
        }
        let entry = inner
            .next_nonce
            .entry(transaction.signer)
            .or_insert((transaction.nonce, 0));
        entry.0 = transaction.nonce + 1;
        entry.1 += 1;
        inner.queued.insert(hash);
        if relay
            && let Some(relay) = self
                .relay
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .as_ref()
        {
            let _ = relay.send(transaction.clone());
        }
        inner.queue.push_back((hash, transaction));
        drop(inner);
        self.arrived.notify_one();
        Ok(hash)
    }

    /// Resolves when a transaction has been queued since the last call.
    pub async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// The nonce `account`'s next transaction should carry.
    pub fn next_nonce(&self, account: &PublicKey) -> u64 {
        let inner = self.lock();
        inner
            .next_nonce
            .get(account)
            .map(|&(nonce, _)| nonce)
            .unwrap_or_else(|| inner.state.account(account).nonce)
    }

    /// Whether `hash` waits in the mempool.
    pub fn is_queued(&self, hash: &Hash) -> bool {
        self.lock().queued.contains(hash)
    }

    /// How many transactions wait.
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// The next block this validator would propose: up to `limit` queued transactions at
    /// `time_ms` (never before the last block's time).
    pub fn propose(&self, time_ms: u64, limit: usize) -> Block {
        let inner = self.lock();
        Block {
            height: inner.state.height() + 1,
            time_ms: time_ms.max(inner.state.time_ms()),
            parent: inner.state.last_block(),
            transactions: inner
                .queue
                .iter()
                .take(limit)
                .map(|(_, transaction)| transaction.clone())
                .collect(),
        }
    }

    /// Commits a decided block: applies it, stores it durably with its receipts, and drops
    /// from the mempool what it included and what can no longer apply.
    pub fn commit(&self, block: &Block) -> Result<Vec<Result<(), TxError>>, ValidatorError> {
        self.commit_certified(block, None)
    }

    /// Commits a decided block with the certificate that decided it.
    pub fn commit_certified(
        &self,
        block: &Block,
        certificate: Option<&[u8]>,
    ) -> Result<Vec<Result<(), TxError>>, ValidatorError> {
        let mut inner = self.lock();
        let mut next = inner.state.clone();
        let outcomes = next.apply_block(block).map_err(ValidatorError::Diverged)?;
        self.store.append(block, &outcomes, certificate)?;
        inner.state = next;
        inner.certify(&self.validators);
        let included: HashSet<Hash> = block.transactions.iter().map(Transaction::hash).collect();
        let waiting = std::mem::take(&mut inner.queue);
        inner.queued.clear();
        inner.next_nonce.clear();
        for (hash, transaction) in waiting {
            if included.contains(&hash) {
                continue;
            }
            let expected = inner
                .next_nonce
                .get(&transaction.signer)
                .map(|&(nonce, _)| nonce)
                .unwrap_or_else(|| inner.state.account(&transaction.signer).nonce);
            if transaction.nonce != expected {
                // a transaction before it failed or another validator's block took its nonce:
                // it can never apply, its sender must sign it again
                continue;
            }
            let entry = inner
                .next_nonce
                .entry(transaction.signer)
                .or_insert((expected, 0));
            entry.0 = expected + 1;
            entry.1 += 1;
            inner.queued.insert(hash);
            inner.queue.push_back((hash, transaction));
        }
        Ok(outcomes)
    }

    /// A committed transaction's receipt.
    pub fn receipt(&self, hash: &Hash) -> Result<Option<Receipt>, ValidatorError> {
        self.store.receipt(hash)
    }

    /// The block store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A committed block.
    pub fn block(&self, height: u64) -> Result<Option<Block>, ValidatorError> {
        self.store.block(height)
    }
}
