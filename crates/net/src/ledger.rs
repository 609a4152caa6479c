//! Talking to a validator's HTTP API: fetch and verify the topology, read accounts, submit
//! transactions and wait for their receipts.
//!
//! The API's types are the ledger's ([`umbra_ledger::api`]); requests go through the shells'
//! one HTTP client ([`crate::http_client`]); validators are reached at `http://host:port`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use umbra_ledger::api::{AccountView, ApiError, NodeView, Submitted, TxStatus};
use umbra_ledger::{Hash, PublicKey, SignedTopology, Transaction, TxError, ValidatorKey};

use crate::http_client::{self, HttpError, Limits, Server};

/// Why a request to a validator failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// No connection.
    #[error("cannot reach the validator at {address}: {reason}")]
    Unreachable {
        /// The validator.
        address: Server,
        /// Why.
        reason: String,
    },
    /// The validator answered with an error.
    #[error("the validator refused: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its explanation.
        message: String,
    },
    /// An answer that is not what the API promises.
    #[error("the validator at {address} answered something unreadable: {reason}")]
    Garbled {
        /// The validator.
        address: Server,
        /// What was wrong.
        reason: String,
    },
    /// The topology's certificate does not hold.
    #[error("the topology from {address} is not trustworthy: {error}")]
    Untrusted {
        /// The validator.
        address: Server,
        /// Why.
        error: umbra_ledger::CertificateError,
    },
    /// The transaction was committed and refused by the ledger.
    #[error("{0}")]
    Failed(TxError),
    /// No receipt in time.
    #[error("the transaction was not committed within {0:?}")]
    Timeout(Duration),
}

/// A validator's API.
#[derive(Clone, Debug)]
pub struct LedgerClient {
    address: Server,
    timeout: Duration,
}

impl LedgerClient {
    /// The validator at `address`.
    pub fn new(address: SocketAddr) -> LedgerClient {
        LedgerClient::to(Server::Direct(address))
    }

    /// The validator `server` names: at an address, or through a SOCKS5 proxy (the mixnet),
    /// so that the validator sees the proxy's exit, not this machine.
    pub fn to(server: Server) -> LedgerClient {
        LedgerClient {
            address: server,
            timeout: Duration::from_secs(10),
        }
    }

    /// Waits up to `timeout` for each answer (10 s by default; give a request through the
    /// mixnet more).
    pub fn with_timeout(mut self, timeout: Duration) -> LedgerClient {
        self.timeout = timeout;
        self
    }

    /// The validator's address.
    pub fn address(&self) -> &Server {
        &self.address
    }

    /// `GET path`, decoded.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, LedgerError> {
        let (status, body) = self.request(hyper::Method::GET, path, None).await?;
        self.decode(status, &body)
    }

    /// `POST path` with a JSON body, decoded.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, LedgerError> {
        let body = serde_json::to_vec(body).map_err(|error| LedgerError::Garbled {
            address: self.address.clone(),
            reason: error.to_string(),
        })?;
        let (status, answer) = self.request(hyper::Method::POST, path, Some(body)).await?;
        self.decode(status, &answer)
    }

    /// The current topology, checked against `validators` (from genesis) for chain `chain_id`.
    pub async fn topology(
        &self,
        chain_id: &str,
        validators: &[ValidatorKey],
    ) -> Result<SignedTopology, LedgerError> {
        let signed: SignedTopology = self.get("/topology").await?;
        signed
            .verify(chain_id, validators)
            .map_err(|error| LedgerError::Untrusted {
                address: self.address.clone(),
                error,
            })?;
        Ok(signed)
    }

    /// An account.
    pub async fn account(&self, key: &PublicKey) -> Result<AccountView, LedgerError> {
        self.get(&format!("/accounts/{key}")).await
    }

    /// Every registered node.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, LedgerError> {
        self.get("/nodes").await
    }

    /// The node registered with `identity` as its identity key, if any.
    pub async fn node_with_identity(
        &self,
        identity: &PublicKey,
    ) -> Result<Option<NodeView>, LedgerError> {
        Ok(self
            .nodes()
            .await?
            .into_iter()
            .find(|node| node.info.identity_key == *identity))
    }

    /// The chain id the validator serves (`GET /status`).
    pub async fn chain_id(&self) -> Result<String, LedgerError> {
        let status: serde_json::Value = self.get("/status").await?;
        status
            .get("chain_id")
            .and_then(|value| value.as_str().map(str::to_owned))
            .ok_or_else(|| LedgerError::Garbled {
                address: self.address.clone(),
                reason: "its /status names no chain_id".into(),
            })
    }

    /// Submits a transaction; returns its hash.
    pub async fn submit(&self, transaction: &Transaction) -> Result<Hash, LedgerError> {
        let submitted: Submitted = self.post("/tx", transaction).await?;
        Ok(submitted.hash)
    }

    /// Waits until `hash` is committed: `Ok` if the ledger applied it, its refusal otherwise.
    pub async fn wait_for(&self, hash: &Hash, timeout: Duration) -> Result<u64, LedgerError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.get::<TxStatus>(&format!("/tx/{hash}")).await? {
                TxStatus::Committed {
                    height,
                    error: None,
                    ..
                } => return Ok(height),
                TxStatus::Committed {
                    error: Some(error), ..
                } => return Err(LedgerError::Failed(error)),
                TxStatus::Pending => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(LedgerError::Timeout(timeout));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn decode<T: DeserializeOwned>(&self, status: u16, body: &[u8]) -> Result<T, LedgerError> {
        if !(200..300).contains(&status) {
            let message = match serde_json::from_slice::<ApiError>(body) {
                Ok(error) => match error.refusal {
                    Some(refusal) => return Err(LedgerError::Failed(refusal)),
                    None => error.error,
                },
                Err(_) => String::from_utf8_lossy(body).into_owned(),
            };
            return Err(LedgerError::Refused { status, message });
        }
        serde_json::from_slice(body).map_err(|error| LedgerError::Garbled {
            address: self.address.clone(),
            reason: error.to_string(),
        })
    }

    async fn request(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), LedgerError> {
        let limits = Limits {
            timeout: self.timeout,
            max_body: MAX_RESPONSE,
        };
        match http_client::request_to(&self.address, method, path, body, limits).await {
            Ok(response) => Ok((response.status, response.body)),
            // an answer that is not HTTP, or too long; a connection cut is `Unreachable`
            Err(ref error @ HttpError::Exchange(ref cause)) if cause.is_parse() => {
                Err(LedgerError::Garbled {
                    address: self.address.clone(),
                    reason: error.to_string(),
                })
            }
            Err(error @ HttpError::TooLong { .. }) => Err(LedgerError::Garbled {
                address: self.address.clone(),
                reason: error.to_string(),
            }),
            Err(error) => Err(LedgerError::Unreachable {
                address: self.address.clone(),
                reason: error.to_string(),
            }),
        }
    }
}

/// The longest answer read: a topology or the node list of a large network fits.
const MAX_RESPONSE: usize = 64 << 20;
