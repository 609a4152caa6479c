//! Talking to a validator's HTTP API: fetch and verify the topology, read accounts, submit
//! transactions and wait for their receipts.
//!
//! A small HTTP/1.1 client over a plain TCP connection (one request per connection), enough for
//! the JSON the validators serve; validators are reached at `http://host:port`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use umbra_ledger::{
    Account, Amount, Hash, Key32, NodeId, NodeInfo, PublicKey, SignedTopology, Transaction,
    TxError, ValidatorKey,
};

/// Why a request to a validator failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// No connection.
    #[error("cannot reach the validator at {address}: {reason}")]
    Unreachable {
        /// The validator.
        address: SocketAddr,
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
        address: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// The topology's certificate does not hold.
    #[error("the topology from {address} is not trustworthy: {error}")]
    Untrusted {
        /// The validator.
        address: SocketAddr,
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

/// A validator's API.
#[derive(Clone, Debug)]
pub struct LedgerClient {
    address: SocketAddr,
    timeout: Duration,
}

impl LedgerClient {
    /// The validator at `address`.
    pub fn new(address: SocketAddr) -> LedgerClient {
        LedgerClient {
            address,
            timeout: Duration::from_secs(10),
        }
    }

    /// The validator's address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `GET path`, decoded.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, LedgerError> {
        let (status, body) = self.request("GET", path, None).await?;
        self.decode(status, &body)
    }

    /// `POST path` with a JSON body, decoded.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, LedgerError> {
        let body = serde_json::to_vec(body).map_err(|error| LedgerError::Garbled {
            address: self.address,
            reason: error.to_string(),
        })?;
        let (status, answer) = self.request("POST", path, Some(&body)).await?;
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
                address: self.address,
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
                address: self.address,
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
            address: self.address,
            reason: error.to_string(),
        })
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), LedgerError> {
        let unreachable = |reason: String| LedgerError::Unreachable {
            address: self.address,
            reason,
        };
        let exchange = async {
            let mut stream = TcpStream::connect(self.address)
                .await
                .map_err(|error| unreachable(error.to_string()))?;
            let body = body.unwrap_or_default();
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                self.address,
                body.len()
            );
            stream
                .write_all(head.as_bytes())
                .await
                .map_err(|error| unreachable(error.to_string()))?;
            stream
                .write_all(body)
                .await
                .map_err(|error| unreachable(error.to_string()))?;
            let mut response = Vec::new();
            stream
                .take(MAX_RESPONSE as u64)
                .read_to_end(&mut response)
                .await
                .map_err(|error| unreachable(error.to_string()))?;
            Ok(response)
        };
        let response = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))??;
        parse_response(&response).ok_or_else(|| LedgerError::Garbled {
            address: self.address,
            reason: "not an HTTP/1.1 response".into(),
        })
    }
}

const MAX_RESPONSE: usize = 64 << 20;

fn parse_response(response: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..split]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let body = &response[split + 4..];
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    if !chunked {
        return Some((status, body.to_vec()));
    }
    let mut rest = body;
    let mut decoded = Vec::new();
    loop {
        let end = rest.windows(2).position(|window| window == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..end]).ok()?.trim(), 16).ok()?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Some((status, decoded));
        }
        decoded.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::parse_response;

    #[test]
    fn responses_are_parsed_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain), Some((200, b"{}".to_vec())));
        let chunked = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Some((404, b"abcde".to_vec())));
        assert_eq!(parse_response(b"garbage"), None);
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"),
            None
        );
    }
}
