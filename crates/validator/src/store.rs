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
}
