//! The validator API's JSON types: what `GET /accounts/{key}`, `GET /nodes`, `GET /tx/{hash}`
//! and `POST /tx` answer. The validator serves them; `umbra-net`'s `LedgerClient` reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Account, Amount, Hash, Key32, NodeId, NodeInfo, PublicKey, TxError};

/// An account as `GET /accounts/{key}` describes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountView {
    /// The account.
    pub address: PublicKey,
    /// Balance and nonce.
    #[serde(flatten)]
    pub account: Account,
    /// The nonce to give the next transaction (counting ones waiting in the mempool).
    pub next_nonce: u64,
}

/// A registered node as `GET /nodes` and `GET /nodes/{id}` describe it (the fields a node and
/// its operator need).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeView {
    /// Its number.
    pub id: NodeId,
    /// The owning account.
    pub owner: PublicKey,
    /// What it registered.
    pub info: NodeInfo,
    /// The operator's pledge.
    pub pledge: Amount,
    /// Whether it leaves at the next epoch boundary.
    #[serde(default)]
    pub unbonding: bool,
    /// Its Sphinx keys by key rotation.
    #[serde(default)]
    pub sphinx_keys: BTreeMap<u32, Key32>,
}

/// A transaction's fate, as `GET /tx/{hash}` tells it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxStatus {
    /// In the mempool.
    Pending,
    /// In a block.
    Committed {
        /// The block.
        height: u64,
        /// What the ledger said: `None` if applied, the error if refused.
        error: Option<TxError>,
        /// The error in words.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

/// The answer to `POST /tx`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Submitted {
    /// The transaction's hash.
    pub hash: Hash,
}

/// An error answer of the API.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// What is wrong, in words.
    pub error: String,
    /// The ledger's refusal, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<TxError>,
}
