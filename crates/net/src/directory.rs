//! Where the network's topology comes from: the validators, or a static file.
//!
//! With validators (the `[ledger]` section of a node's or client's configuration), each
//! epoch's topology document is fetched from the first validator that serves one whose commit
//! certificate verifies against the validator set of the genesis file — the trust root, which
//! never comes from the network. A document that fails verification is refused and the next
//! validator is tried; while none serves a good one, the daemon keeps the last good one. After
//! the epoch's `end_ms` the next one is fetched (retrying with backoff until the validators
//! have certified it).
//!
//! A static topology file (`topology = "topology.json"`) is for private test networks: it
//! never changes, so there are no epochs, no layer changes and no key rotation.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use umbra_ledger::{CertificateError, Genesis, SignedTopology, TopologyDocument, ValidatorKey};
use umbra_topology::Topology;

use crate::err::NodeError;
use crate::http_client::Server;
use crate::ledger::{LedgerClient, LedgerError};
use crate::socks5::Socks5Proxy;

/// The genesis file a node or client keeps in its data directory.
pub const GENESIS_FILE: &str = "genesis.json";

/// Where the ledger is: the `[ledger]` section of a configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// Validators' APIs (`http://host:port`), tried in turn.
    pub validators: Vec<ValidatorUrl>,
    /// The network's genesis file (relative to the data directory): the chain id and the
    /// validator set that signs every topology. Get it from the network's operators, not
    /// from a validator you do not trust.
    #[serde(default = "default_genesis")]
    pub genesis: PathBuf,
}

fn default_genesis() -> PathBuf {
    PathBuf::from(GENESIS_FILE)
}

impl LedgerConfig {
    /// Checks the settings; an error names the setting.
    pub fn validate(&self) -> Result<(), crate::config::SourceError> {
        if self.validators.is_empty() {
            return Err(crate::config::SourceError::NoValidators);
        }
        Ok(())
    }
}

/// A validator's API address: `http://host:port` (or `host:port`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ValidatorUrl {
    host: String,
    port: u16,
}

impl ValidatorUrl {
    /// The validator at `address`.
    pub fn from_address(address: SocketAddr) -> ValidatorUrl {
        ValidatorUrl {
            host: address.ip().to_string(),
            port: address.port(),
        }
    }

    /// The addresses its host name resolves to, the first one.
    pub async fn resolve(&self) -> Result<SocketAddr, LedgerError> {
        let unreachable = |reason: String| LedgerError::Unreachable {
            address: SocketAddr::from(([0, 0, 0, 0], self.port)).into(),
            reason: format!("{self}: {reason}"),
        };
        let mut addresses = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        addresses
            .next()
            .ok_or_else(|| unreachable("the name resolves to no address".into()))
    }

    /// A client of this validator: straight to it (its name resolved here), or through
    /// `proxy` (with `socks5h://`, the proxy resolves the name; nothing is looked up here).
    pub async fn client(&self, proxy: Option<&Socks5Proxy>) -> Result<LedgerClient, LedgerError> {
        Ok(match proxy {
            None => LedgerClient::new(self.resolve().await?),
            Some(proxy) => LedgerClient::to(Server::proxied(proxy.clone(), &self.host, self.port)),
        })
    }
}

impl fmt::Display for ValidatorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

/// Why a validator's address could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidatorUrlError {
    /// `https://` was given.
    #[error(
        "{text:?}: validators are reached over plain http (the topology is verified by its signatures, not by TLS); write http://host:port"
    )]
    Https {
        /// What was given.
        text: String,
    },
    /// Not `host:port`.
    #[error("{text:?} is not a validator address: write http://host:port")]
    NotHostPort {
        /// What was given.
        text: String,
    },
    /// The port is not a number.
    #[error("{text:?}: {port:?} is not a port number")]
    BadPort {
        /// What was given.
        text: String,
        /// The port part.
        port: String,
    },
}

impl FromStr for ValidatorUrl {
    type Err = ValidatorUrlError;

    fn from_str(text: &str) -> Result<ValidatorUrl, ValidatorUrlError> {
        let text = text.trim();
        if text.starts_with("https://") {
            return Err(ValidatorUrlError::Https {
                text: text.to_owned(),
            });
        }
        let rest = text.strip_prefix("http://").unwrap_or(text);
        let rest = rest.trim_end_matches('/');
        if let Ok(address) = rest.parse::<SocketAddr>() {
            return Ok(ValidatorUrl::from_address(address));
        }
        let not_host_port = || ValidatorUrlError::NotHostPort {
            text: text.to_owned(),
        };
        let (host, port) = rest.rsplit_once(':').ok_or_else(not_host_port)?;
        let port = port
            .parse::<u16>()
            .map_err(|_| ValidatorUrlError::BadPort {
                text: text.to_owned(),
                port: port.to_owned(),
            })?;
        if host.is_empty() || host.contains('/') {
            return Err(not_host_port());
        }
        Ok(ValidatorUrl {
            host: host.to_owned(),
            port,
        })
    }
}

impl Serialize for ValidatorUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ValidatorUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What a node or client trusts, from the genesis file: the chain and its validators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustRoot {
    /// The chain id every signature covers.
    pub chain_id: String,
    /// The validators and their voting power.
    pub validators: Vec<ValidatorKey>,
    /// Epochs per Sphinx key rotation.
    pub rotation_epochs: u32,
    /// The epoch length.
    pub epoch_length: Duration,
}

impl TrustRoot {
    /// The trust root of `genesis`.
    pub fn from_genesis(genesis: &Genesis) -> TrustRoot {
        TrustRoot {
            chain_id: genesis.chain_id.clone(),
            validators: genesis.validator_keys(),
            rotation_epochs: genesis.params.rotation_epochs.max(1),
            epoch_length: Duration::from_millis(genesis.params.epoch_length_ms),
        }
    }

    /// Reads a genesis file; an error names it.
    pub fn read(path: &Path) -> Result<TrustRoot, NodeError> {
        let text = std::fs::read_to_string(path).map_err(|source| NodeError::Read {
            path: path.to_owned(),
            source,
        })?;
        let genesis = Genesis::from_json(&text).map_err(|problem| {
            NodeError::invalid(path, format!("not a genesis file: {problem}"))
        })?;
        Ok(TrustRoot::from_genesis(&genesis))
    }
}

/// The epoch a topology from the ledger is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch {
    /// Its number.
    pub number: u64,
    /// When it started (ms since the Unix epoch).
    pub start_ms: u64,
    /// When it is due to end.
    pub end_ms: u64,
    /// Its Sphinx key rotation.
    pub rotation: u32,
    /// Epochs per rotation (from genesis).
    pub rotation_epochs: u32,
}

impl Epoch {
    /// Whether the epoch is its rotation's first (the previous rotation's keys may still be
    /// in use by packets built just before it began).
    pub fn is_first_of_rotation(&self) -> bool {
        self.number
            .is_multiple_of(u64::from(self.rotation_epochs.max(1)))
    }

    /// Epochs left in the rotation after this one.
    pub fn epochs_left_in_rotation(&self) -> u64 {
        let per = u64::from(self.rotation_epochs.max(1));
        per - 1 - self.number % per
    }
}

/// A topology to route with, and (from the ledger) the epoch and document it came from.
#[derive(Clone, Debug)]
pub struct Current {
    /// The topology.
    pub topology: Topology,
    /// Its epoch (none for a static file).
    pub epoch: Option<Epoch>,
    /// The verified document (none for a static file).
    pub document: Option<TopologyDocument>,
}

impl Current {
    /// A static topology.
    pub fn fixed(topology: Topology) -> Current {
        Current {
            topology,
            epoch: None,
            document: None,
        }
    }

    /// The epoch's number, for logs (none for a static file).
    pub fn epoch_number(&self) -> Option<u64> {
        self.epoch.map(|epoch| epoch.number)
    }
}

/// Why no validator served a topology to use.
#[derive(Debug, thiserror::Error)]
#[error("no validator served a topology to use: {}", self.describe())]
pub struct FetchError {
    /// Each validator's failure.
    pub failures: Vec<(ValidatorUrl, FetchFailure)>,
}

/// Why one validator's topology was not used.
#[derive(Debug, thiserror::Error)]
pub enum FetchFailure {
    /// It could not be fetched.
    #[error("{0}")]
    Ledger(LedgerError),
    /// It is certified but cannot be routed with.
    #[error("the certified topology of epoch {epoch} is unusable: {reason}")]
    Unusable {
        /// The epoch.
        epoch: u64,
        /// Why.
        reason: String,
    },
}

impl FetchError {
    fn describe(&self) -> String {
        self.failures
            .iter()
            .map(|(url, failure)| format!("{url}: {failure}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Whether every validator answered, and none with a topology that verifies: the genesis
    /// file is not this network's, or the validators are lying. Retrying will not help. A
    /// topology with too few signatures is not a refusal: an older validator serves the new
    /// epoch's document before the others have signed it, and a moment later it is certified.
    pub fn is_refusal(&self) -> bool {
        !self.failures.is_empty()
            && self.failures.iter().all(|(_, failure)| {
                matches!(
                    failure,
                    FetchFailure::Ledger(LedgerError::Untrusted { error, .. })
                        if !matches!(error, CertificateError::NotEnoughPower { .. })
                ) || matches!(
                    failure,
                    FetchFailure::Ledger(LedgerError::Garbled { .. })
                        | FetchFailure::Unusable { .. }
                )
            })
    }
}

/// The validators and the trust root their topologies are checked against.
#[derive(Clone, Debug)]
pub struct Directory {
    validators: Vec<ValidatorUrl>,
    trust: TrustRoot,
}

impl Directory {
    /// A directory of these validators, trusted as `trust` says.
    pub fn new(validators: Vec<ValidatorUrl>, trust: TrustRoot) -> Directory {
        Directory { validators, trust }
    }

    /// The directory a `[ledger]` section describes, its genesis file read from `data_dir`.
    pub fn from_config(config: &LedgerConfig, data_dir: &Path) -> Result<Directory, NodeError> {
        let trust = TrustRoot::read(&data_dir.join(&config.genesis))?;
        Ok(Directory::new(config.validators.clone(), trust))
    }

    /// The trust root.
    pub fn trust(&self) -> &TrustRoot {
        &self.trust
    }

    /// The validators.
    pub fn validators(&self) -> &[ValidatorUrl] {
        &self.validators
    }

    /// A client of the first validator that answers `/health`.
    pub async fn any_validator(&self) -> Result<LedgerClient, FetchError> {
        let mut failures = Vec::new();
        for url in &self.validators {
            let reached = async {
                let client = LedgerClient::new(url.resolve().await?);
                client.get::<serde_json::Value>("/health").await?;
                Ok::<_, LedgerError>(client)
            };
            match reached.await {
                Ok(client) => return Ok(client),
                Err(error) => failures.push((url.clone(), FetchFailure::Ledger(error))),
            }
        }
        Err(FetchError { failures })
    }

    /// The current epoch's topology from the first validator whose copy verifies.
    pub async fn fetch(&self) -> Result<Current, FetchError> {
        let mut failures = Vec::new();
        for url in &self.validators {
            match self.fetch_from(url).await {
                Ok(current) => return Ok(current),
                Err(failure) => failures.push((url.clone(), failure)),
            }
        }
        Err(FetchError { failures })
    }

    async fn fetch_from(&self, url: &ValidatorUrl) -> Result<Current, FetchFailure> {
        let client = LedgerClient::new(url.resolve().await.map_err(FetchFailure::Ledger)?);
        let signed = client
            .topology(&self.trust.chain_id, &self.trust.validators)
            .await
            .map_err(FetchFailure::Ledger)?;
        self.current(signed)
    }

    /// A verified document as the topology to route with.
    fn current(&self, signed: SignedTopology) -> Result<Current, FetchFailure> {
        let document = signed.document;
        let topology = document
            .to_topology()
            .map_err(|error| FetchFailure::Unusable {
                epoch: document.epoch,
                reason: error.to_string(),
            })?;
        Ok(Current {
            topology,
            epoch: Some(Epoch {
                number: document.epoch,
                start_ms: document.start_ms,
                end_ms: document.end_ms,
                rotation: document.rotation,
                rotation_epochs: self.trust.rotation_epochs,
            }),
            document: Some(document),
        })
    }

    /// The first topology: retried while validators cannot be reached (with backoff, until
    /// `stop`), refused at once when every validator answers and none with a topology that
    /// verifies.
    pub async fn first(&self, stop: &CancellationToken) -> Result<Current, NodeError> {
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.fetch().await {
                Ok(current) => return Ok(current),
                Err(error) if error.is_refusal() => return Err(NodeError::Untrusted(error)),
                Err(error) => {
                    warn!(%error, retry_in = ?backoff, "no topology yet");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => {
                    return Err(NodeError::Stopped("a topology was fetched"));
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

/// When to look for the next epoch's topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refresh {
    /// How long after an epoch's `end_ms` to ask first (the validators need a block or two to
    /// end the epoch and certify the next document).
    pub settle: Duration,
    /// The first wait after a failed or premature attempt; doubled per failure.
    pub retry_initial: Duration,
    /// The longest wait between attempts.
    pub retry_max: Duration,
}

impl Refresh {
    /// For nodes: early and often, so a node holds the new epoch's keys and links before its
    /// clients route with them.
    pub fn node(trust: &TrustRoot) -> Refresh {
        Refresh {
            settle: Duration::from_millis(100),
            retry_initial: Duration::from_millis(100),
            retry_max: (trust.epoch_length / 10)
                .clamp(Duration::from_millis(500), Duration::from_secs(30)),
        }
    }

    /// For clients: a little after the nodes.
    pub fn client(trust: &TrustRoot) -> Refresh {
        Refresh {
            settle: (trust.epoch_length / 10)
                .clamp(Duration::from_millis(300), Duration::from_secs(2)),
            retry_initial: Duration::from_millis(250),
            retry_max: (trust.epoch_length / 10)
                .clamp(Duration::from_millis(500), Duration::from_secs(30)),
        }
    }

    /// How long to wait before the next attempt, at `now_ms`, for the epoch ending at `end_ms`,
    /// after `failures` attempts that found no newer epoch.
    pub fn next_attempt(&self, now_ms: u64, end_ms: u64, failures: u32) -> Duration {
        if failures == 0 {
            let due = end_ms.saturating_add(self.settle.as_millis() as u64);
            return Duration::from_millis(due.saturating_sub(now_ms));
        }
        let doublings = (failures - 1).min(16);
        (self.retry_initial * 2u32.pow(doublings)).min(self.retry_max)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// Follows the epochs from `first` on: fetches each next epoch's topology after the current
/// one ends and publishes it; a topology that fails verification is logged and refused, and
/// the last good one stays. Stops at `stop`.
pub fn follow(
    directory: Arc<Directory>,
    first: Current,
    refresh: Refresh,
    stop: CancellationToken,
) -> (watch::Receiver<Arc<Current>>, JoinHandle<()>) {
    let (publish, updates) = watch::channel(Arc::new(first));
    let task = tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            let (number, end_ms) = {
                let current = publish.borrow();
                let epoch = current.epoch;
                (
                    epoch.map_or(0, |epoch| epoch.number),
                    epoch.map_or(u64::MAX, |epoch| epoch.end_ms),
                )
            };
            let wait = refresh.next_attempt(now_ms(), end_ms, failures);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => return,
            }
            match directory.fetch().await {
                Ok(next) if next.epoch_number().is_some_and(|n| n > number) => {
                    failures = 0;
                    info!(
                        epoch = next.epoch_number(),
                        rotation = next.topology.key_rotation(),
                        mix_nodes = next
                            .topology
                            .nodes()
                            .iter()
                            .filter(|n| n.layer().is_some())
                            .count(),
                        gateways = next.topology.gateways().count(),
                        "new epoch's topology verified"
                    );
                    if publish.send(Arc::new(next)).is_err() {
                        return;
                    }
                }
                // not certified yet, or a validator behind the others: ask again soon
                Ok(_) => failures += 1,
                Err(error) => {
                    failures += 1;
                    warn!(%error, keeping_epoch = number, "refreshing the topology failed; keeping the last good one");
                }
            }
        }
    });
    (updates, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validator_urls_parse_or_say_why() {
        let url: ValidatorUrl = "http://127.0.0.1:7000".parse().unwrap();
        assert_eq!(url.to_string(), "http://127.0.0.1:7000");
        let url: ValidatorUrl = "validator.example:7000/".parse().unwrap();
        assert_eq!(url.to_string(), "http://validator.example:7000");
        let url: ValidatorUrl = "http://[::1]:7000".parse().unwrap();
        assert_eq!(url.to_string(), "http://[::1]:7000");
        assert!(
            "https://a:1"
                .parse::<ValidatorUrl>()
                .unwrap_err()
                .to_string()
                .contains("plain http")
        );
        assert!(
            "http://a"
                .parse::<ValidatorUrl>()
                .unwrap_err()
                .to_string()
                .contains("host:port")
        );
        assert!(
            "a:port"
                .parse::<ValidatorUrl>()
                .unwrap_err()
                .to_string()
                .contains("not a port")
        );
    }

    #[test]
    fn the_next_epoch_is_asked_for_after_the_current_ends_then_with_backoff() {
        let refresh = Refresh {
            settle: Duration::from_millis(100),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_millis(500),
        };
        assert_eq!(
            refresh.next_attempt(1_000, 3_000, 0),
            Duration::from_millis(2_100)
        );
        assert_eq!(refresh.next_attempt(5_000, 3_000, 0), Duration::ZERO);
        assert_eq!(
            refresh.next_attempt(5_000, 3_000, 1),
            Duration::from_millis(100)
        );
        assert_eq!(
            refresh.next_attempt(5_000, 3_000, 3),
            Duration::from_millis(400)
        );
        assert_eq!(
            refresh.next_attempt(5_000, 3_000, 30),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn epochs_know_their_place_in_the_rotation() {
        let epoch = |number| Epoch {
            number,
            start_ms: 0,
            end_ms: 0,
            rotation: 0,
            rotation_epochs: 3,
        };
        assert!(epoch(3).is_first_of_rotation());
        assert!(!epoch(4).is_first_of_rotation());
        assert_eq!(epoch(3).epochs_left_in_rotation(), 2);
        assert_eq!(epoch(5).epochs_left_in_rotation(), 0);
    }
}
