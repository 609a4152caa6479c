//! The block store: every committed block and every transaction's receipt, in redb. A block and
//! its receipts are written in one durable transaction, so a crash never leaves half a block.

use std::path::{Path, PathBuf};

use crate::ValidatorError;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use umbra_ledger::{Block, Hash, TxError};
use umbra_net::NodeError;

const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const RECEIPTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("receipts");
const CERTIFICATES: TableDefinition<u64, &[u8]> = TableDefinition::new("certificates");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Purchases this validator signed tickets for: tx hash → [`Served`] (JSON).
const SERVED: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("served");

/// What this validator answered a purchase's signing request with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    /// The purchase's key period.
    pub period: u64,
    /// The hash of the blinded messages signed ([`crate::signing::blinded_hash`]).
    pub blinded: Hash,
    /// The answer.
    pub answer: crate::signing::SignAnswer,
}

/// Where a committed transaction ended up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The block.
    pub height: u64,
    /// Its place in the block.
    pub index: u32,
    /// `None` if applied; the ledger's refusal otherwise.
    pub error: Option<TxError>,
}

/// The block store.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store at `path` for the chain whose genesis hash is `genesis`;
    /// refuses a store of another chain.
    pub fn open(path: &Path, genesis: Hash) -> Result<Store, ValidatorError> {
        let broken = |error: &dyn std::fmt::Display| {
            NodeError::invalid(path, format!("the block store cannot be opened: {error}"))
        };
        umbra_net::files::prepare_private_file(path)?;
        let db = Database::create(path).map_err(|error| broken(&error))?;
        let store = Store {
            db,
            path: path.to_owned(),
        };
        let txn = store.db.begin_write().map_err(|error| broken(&error))?;
        {
            let mut meta = txn.open_table(META).map_err(|error| broken(&error))?;
            let stored = meta
                .get("genesis")
                .map_err(|error| broken(&error))?
                .map(|value| value.value().to_vec());
            match stored {
                Some(bytes) if bytes != genesis.0 => {
                    return Err(NodeError::invalid(
                        path,
                        "holds the blocks of another chain (its genesis differs from genesis.json); \
                         move it away to start this chain afresh",
                    ).into());
                }
                Some(_) => {}
                None => {
                    meta.insert("genesis", &genesis.0[..])
                        .map_err(|error| broken(&error))?;
                }
            }
            txn.open_table(BLOCKS).map_err(|error| broken(&error))?;
            txn.open_table(RECEIPTS).map_err(|error| broken(&error))?;
            txn.open_table(CERTIFICATES)
                .map_err(|error| broken(&error))?;
            txn.open_table(SERVED).map_err(|error| broken(&error))?;
        }
        txn.commit().map_err(|error| broken(&error))?;
        Ok(store)
    }

    fn error(&self, error: impl std::fmt::Display) -> ValidatorError {
        NodeError::invalid(&self.path, format!("block store: {error}")).into()
    }

    /// Stores a block, its transactions' outcomes and (under BFT) its commit certificate,
    /// durably.
    pub fn append(
        &self,
        block: &Block,
        outcomes: &[Result<(), TxError>],
        certificate: Option<&[u8]>,
    ) -> Result<(), ValidatorError> {
        let bytes = serde_json::to_vec(block).map_err(|error| self.error(error))?;
        let txn = self.db.begin_write().map_err(|error| self.error(error))?;
        {
            let mut blocks = txn.open_table(BLOCKS).map_err(|error| self.error(error))?;
            blocks
                .insert(block.height, bytes.as_slice())
                .map_err(|error| self.error(error))?;
            if let Some(certificate) = certificate {
                txn.open_table(CERTIFICATES)
                    .map_err(|error| self.error(error))?
                    .insert(block.height, certificate)
                    .map_err(|error| self.error(error))?;
            }
            let mut receipts = txn
                .open_table(RECEIPTS)
                .map_err(|error| self.error(error))?;
            for (index, (transaction, outcome)) in
                block.transactions.iter().zip(outcomes).enumerate()
            {
                let receipt = Receipt {
                    height: block.height,
                    index: index as u32,
                    error: outcome.clone().err(),
                };
                let bytes = serde_json::to_vec(&receipt).map_err(|error| self.error(error))?;
                receipts
                    .insert(&transaction.hash().0, bytes.as_slice())
                    .map_err(|error| self.error(error))?;
            }
        }
        txn.commit().map_err(|error| self.error(error))
    }

    /// The block at `height` as stored (JSON).
    pub fn block_bytes(&self, height: u64) -> Result<Option<Vec<u8>>, ValidatorError> {
        let txn = self.db.begin_read().map_err(|error| self.error(error))?;
        let blocks = txn.open_table(BLOCKS).map_err(|error| self.error(error))?;
        Ok(blocks
            .get(height)
            .map_err(|error| self.error(error))?
            .map(|bytes| bytes.value().to_vec()))
    }

    /// The commit certificate stored with the block at `height`.
    pub fn certificate(&self, height: u64) -> Result<Option<Vec<u8>>, ValidatorError> {
        let txn = self.db.begin_read().map_err(|error| self.error(error))?;
        let certificates = txn
            .open_table(CERTIFICATES)
            .map_err(|error| self.error(error))?;
        Ok(certificates
            .get(height)
            .map_err(|error| self.error(error))?
            .map(|bytes| bytes.value().to_vec()))
    }

    /// The block at `height`.
    pub fn block(&self, height: u64) -> Result<Option<Block>, ValidatorError> {
        let txn = self.db.begin_read().map_err(|error| self.error(error))?;
        let blocks = txn.open_table(BLOCKS).map_err(|error| self.error(error))?;
        let Some(bytes) = blocks.get(height).map_err(|error| self.error(error))? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|error| self.error(format!("block {height} is unreadable: {error}")))
    }

    /// The height of the last stored block (0 if none).
    pub fn height(&self) -> Result<u64, ValidatorError> {
        let txn = self.db.begin_read().map_err(|error| self.error(error))?;
        let blocks = txn.open_table(BLOCKS).map_err(|error| self.error(error))?;
        let last = blocks.last().map_err(|error| self.error(error))?;
        Ok(last.map(|(height, _)| height.value()).unwrap_or(0))
    }

    /// A transaction's receipt.
    pub fn receipt(&self, hash: &Hash) -> Result<Option<Receipt>, ValidatorError> {
        let txn = self.db.begin_read().map_err(|error| self.error(error))?;
        let receipts = txn
            .open_table(RECEIPTS)
            .map_err(|error| self.error(error))?;
        let Some(bytes) = receipts.get(&hash.0).map_err(|error| self.error(error))? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|error| self.error(error))
    }

    /// What this validator answered the signing request for purchase `tx` with.
    pub fn served(&self, tx: &Hash) -> Result<Option<Served>, ValidatorError> {
        let txn = self.db.begin_read().map_err(|error| self.error(error))?;
        let served = txn.open_table(SERVED).map_err(|error| self.error(error))?;
        let Some(bytes) = served.get(&tx.0).map_err(|error| self.error(error))? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|error| self.error(error))
    }

    /// Records the answer to purchase `tx` durably, unless one is recorded already; returns
    /// the recorded answer (the one given, or the earlier one).
    pub fn record_served(&self, tx: &Hash, answer: &Served) -> Result<Served, ValidatorError> {
        let txn = self.db.begin_write().map_err(|error| self.error(error))?;
        let recorded = {
            let mut served = txn.open_table(SERVED).map_err(|error| self.error(error))?;
            let earlier = served
                .get(&tx.0)
                .map_err(|error| self.error(error))?
                .map(|bytes| serde_json::from_slice::<Served>(bytes.value()));
            match earlier {
                Some(earlier) => earlier.map_err(|error| self.error(error))?,
                None => {
                    let bytes = serde_json::to_vec(answer).map_err(|error| self.error(error))?;
                    served
                        .insert(&tx.0, bytes.as_slice())
                        .map_err(|error| self.error(error))?;
                    answer.clone()
                }
            }
        };
        txn.commit().map_err(|error| self.error(error))?;
        Ok(recorded)
    }

    /// Drops the signing records whose period `expired` says is over; returns how many.
    pub fn prune_served(
        &self,
        mut expired: impl FnMut(u64) -> bool,
    ) -> Result<usize, ValidatorError> {
        let txn = self.db.begin_write().map_err(|error| self.error(error))?;
        let mut dropped = 0;
        {
            let mut served = txn.open_table(SERVED).map_err(|error| self.error(error))?;
            served
                .retain(|_, bytes| {
                    // an unreadable record is dropped too: it could never be answered again
                    let keep = serde_json::from_slice::<Served>(bytes)
                        .is_ok_and(|record| !expired(record.period));
                    dropped += usize::from(!keep);
                    keep
                })
                .map_err(|error| self.error(error))?;
        }
        txn.commit().map_err(|error| self.error(error))?;
        Ok(dropped)
    }
}
