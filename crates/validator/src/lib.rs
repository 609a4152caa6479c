#![doc = include_str!("../README.md")]

pub mod api;
pub mod bft;
pub mod chain;
pub mod duties;
mod error;
pub mod signing;
pub mod solo;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::info;
use umbra_http::HttpLimits;
use umbra_ledger::beacon::BeaconChain;
use umbra_ledger::{
    Genesis, GenesisAccount, GenesisValidator, Hash, Params, PublicKey, SigningKey, UNIT,
};
use umbra_net::NodeError;
use umbra_net::config::{ensure_new, read_toml, require_config};
use umbra_net::keys::{read_key, write_new_key};

use crate::api::Counters;
use crate::chain::Chain;
use crate::duties::Duties;
pub use crate::error::ValidatorError;

/// The validator's signing key file.
pub const VALIDATOR_KEY_FILE: &str = "validator.key";
/// The secret of the validator's beacon hash chain.
pub const BEACON_KEY_FILE: &str = "beacon.key";
/// The key of the account a solo `init` funds.
pub const ACCOUNT_KEY_FILE: &str = "account.key";
/// The genesis file.
pub const GENESIS_FILE: &str = "genesis.json";
/// The configuration file.
pub const CONFIG_FILE: &str = "config.toml";
/// The block store.
pub const STORE_FILE: &str = "chain.redb";
/// The consensus engine's write-ahead log (BFT).
pub const WAL_FILE: &str = "consensus.wal";

/// Orders transactions into blocks and commits them to the chain.
pub trait Sequencer {
    /// Runs until `shutdown`, committing each decided block to `chain`, with the validator's
    /// own `duties` submitted along the way.
    fn run(
        self,
        chain: Arc<Chain>,
        duties: Duties,
        counters: Arc<Counters>,
        shutdown: CancellationToken,
    ) -> impl Future<Output = Result<(), ValidatorError>> + Send;
}

/// A validator's `config.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidatorConfig {
    /// Where the HTTP API listens.
    pub listen_address: SocketAddr,
    /// How often a block is cut when transactions wait.
    #[serde(with = "humantime_serde")]
    pub block_interval: Duration,
    /// The most transactions in one block.
    pub max_block_transactions: usize,
    /// Limits on the API's connections.
    pub api: HttpLimits,
    /// BFT consensus with the other validators; required when genesis names more than one.
    pub consensus: Option<bft::ConsensusSettings>,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        ValidatorConfig {
            listen_address: SocketAddr::from(([127, 0, 0, 1], 7000)),
            block_interval: Duration::from_millis(250),
            max_block_transactions: 5_000,
            api: HttpLimits::default(),
            consensus: None,
        }
    }
}

const CONFIG_TEMPLATE: &str = "\
# Umbra validator configuration. Every setting is optional; the values shown are the defaults.

# Where the HTTP API (transactions, accounts, nodes, epochs, the signed topology, /metrics,
# /health) listens. Put it behind a TLS-terminating proxy to serve it beyond this machine.
listen_address = \"{listen}\"

# How often a block is cut when transactions wait (solo), and the most transactions in one block.
block_interval = \"250ms\"
max_block_transactions = 5000

[api]
# Connections to the API at once, at most: beyond, new ones are closed as they come. A request
# whose headers take longer than header_timeout closes its connection (an idle connection is
# closed after as long); one that takes longer than request_timeout in all is answered 408.
max_connections = 1024
header_timeout = \"10s\"
request_timeout = \"30s\"
{consensus}";

const CONSENSUS_TEMPLATE: &str = "
# BFT consensus with the other validators (Malachite). Needed when genesis.json names more than
# one validator; a chain with one validator runs solo and ignores it.
[consensus]
# Where this validator listens for the other validators (TCP), and where they listen.
p2p_address = \"{p2p}\"
peers = [{peers}]
# The other validators' HTTP APIs: transactions this validator accepts are relayed to them.
relay_to = [{relay}]
# How long a proposer with nothing to include waits before proposing an empty block, and how
# long the others wait for a proposal before voting to skip the round.
idle_block_interval = \"2s\"
propose_timeout = \"3s\"
";

/// What `init` made.
#[derive(Debug)]
pub struct Initialised {
    /// The validator's public key.
    pub validator_key: PublicKey,
    /// Its beacon commitment.
    pub beacon_commitment: Hash,
    /// The funded account of a solo genesis, if `init` wrote one.
    pub account: Option<PublicKey>,
    /// The configuration file.
    pub config: PathBuf,
}

/// How `init` sets a validator up.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Where the API will listen.
    pub listen_address: SocketAddr,
    /// A genesis file to copy; without one, `init` writes a solo genesis with this validator and
    /// one funded account.
    pub genesis: Option<PathBuf>,
    /// The chain id of a solo genesis.
    pub chain_id: String,
    /// The parameters of a solo genesis.
    pub params: Params,
    /// BFT networking, for a validator of a chain with several.
    pub consensus: Option<bft::ConsensusSettings>,
}

/// The text of a new `config.toml`.
pub fn config_text(
    listen_address: SocketAddr,
    consensus: Option<&bft::ConsensusSettings>,
) -> String {
    let list = |addresses: &[SocketAddr]| {
        addresses
            .iter()
            .map(|address| format!("\"{address}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let consensus = consensus
        .map(|settings| {
            CONSENSUS_TEMPLATE
                .replace("{p2p}", &settings.p2p_address.to_string())
                .replace("{peers}", &list(&settings.peers))
                .replace("{relay}", &list(&settings.relay_to))
        })
        .unwrap_or_default();
    CONFIG_TEMPLATE
        .replace("{listen}", &listen_address.to_string())
        .replace("{consensus}", &consensus)
}

/// Creates a validator's keys, configuration and (unless given one) a solo genesis.
pub fn init(data_dir: &Path, options: &InitOptions) -> Result<Initialised, ValidatorError> {
    ensure_new(
        data_dir,
        &[
            VALIDATOR_KEY_FILE,
            BEACON_KEY_FILE,
            CONFIG_FILE,
            GENESIS_FILE,
        ],
    )?;
    let mut rng = rand::rng();
    let key = SigningKey::generate(&mut rng);
    let mut secret = [0u8; 32];
    rand::RngExt::fill(&mut rng, &mut secret);
    write_new_key(&data_dir.join(VALIDATOR_KEY_FILE), &key.seed())?;
    write_new_key(&data_dir.join(BEACON_KEY_FILE), &secret)?;
    let beacon_commitment = BeaconChain::new(secret).commitment();
    let config = data_dir.join(CONFIG_FILE);
    write_file(
        &config,
        &config_text(options.listen_address, options.consensus.as_ref()),
    )?;
    let genesis_path = data_dir.join(GENESIS_FILE);
    let account = match &options.genesis {
        // one of several validators: `make_genesis` writes the genesis once all exist
        None if options.consensus.is_some() => None,
        Some(source) => {
            let text = std::fs::read_to_string(source).map_err(|source_error| NodeError::Read {
                path: source.clone(),
                source: source_error,
            })?;
            Genesis::from_json(&text)
                .map_err(|problem| NodeError::invalid(source, problem.to_string()))?;
            write_file(&genesis_path, &text)?;
            None
        }
        None => {
            let account = SigningKey::generate(&mut rng);
            write_new_key(&data_dir.join(ACCOUNT_KEY_FILE), &account.seed())?;
            let genesis = Genesis {
                chain_id: options.chain_id.clone(),
                genesis_time_ms: now_ms(),
                params: options.params.clone(),
                reward_pool: 250_000_000 * UNIT,
                accounts: vec![GenesisAccount {
                    address: account.public(),
                    balance: 1_000_000 * UNIT,
                }],
                validators: vec![GenesisValidator {
                    key: key.public(),
                    power: 1,
                    beacon_commitment,
                    name: "solo".into(),
                }],
                monitors: Vec::new(),
                nodes: Vec::new(),
            };
            write_file(&genesis_path, &genesis.to_json())?;
            Some(account.public())
        }
    };
    Ok(Initialised {
        validator_key: key.public(),
        beacon_commitment,
        account,
        config,
    })
}

/// What a validator contributes to a genesis: its key and beacon commitment, read from its data
/// directory.
pub fn genesis_validator(
    data_dir: &Path,
    name: String,
) -> Result<GenesisValidator, ValidatorError> {
    let key = SigningKey::from_seed(read_key(&data_dir.join(VALIDATOR_KEY_FILE))?);
    let secret = read_key(&data_dir.join(BEACON_KEY_FILE))?;
    Ok(GenesisValidator {
        key: key.public(),
        power: 1,
        beacon_commitment: BeaconChain::new(secret).commitment(),
        name,
    })
}

/// The genesis of a chain whose validators are those initialised in `validator_dirs` (equal
/// voting power), with no accounts yet. Refuses a validator that already has a genesis or
/// blocks.
pub fn build_genesis(
    validator_dirs: &[PathBuf],
    chain_id: &str,
    params: Params,
) -> Result<Genesis, ValidatorError> {
    if validator_dirs.is_empty() {
        return Err(ValidatorError::NoValidators);
    }
    for dir in validator_dirs {
        ensure_new(dir, &[GENESIS_FILE, STORE_FILE])?;
    }
    let validators = validator_dirs
        .iter()
        .enumerate()
        .map(|(index, dir)| genesis_validator(dir, format!("validator-{}", index + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let keys: std::collections::BTreeSet<_> = validators.iter().map(|v| v.key).collect();
    if keys.len() != validators.len() {
        return Err(ValidatorError::DuplicateValidator);
    }
    Ok(Genesis {
        chain_id: chain_id.to_owned(),
        genesis_time_ms: now_ms(),
        params,
        reward_pool: 250_000_000 * UNIT,
        accounts: Vec::new(),
        validators,
        monitors: Vec::new(),
        nodes: Vec::new(),
    })
}

/// Writes the genesis of a chain whose validators are those initialised in `validator_dirs`
/// (equal voting power), with one account funded with 1,000,000 UMB whose key is written to
/// `account_key`, into every validator's directory. Refuses a validator that already has a
/// genesis or blocks.
pub fn make_genesis(
    validator_dirs: &[PathBuf],
    chain_id: &str,
    params: Params,
    account_key: &Path,
) -> Result<Genesis, ValidatorError> {
    let mut genesis = build_genesis(validator_dirs, chain_id, params)?;
    let account = SigningKey::generate(&mut rand::rng());
    write_new_key(account_key, &account.seed())?;
    genesis.accounts.push(GenesisAccount {
        address: account.public(),
        balance: 1_000_000 * UNIT,
    });
    let text = genesis.to_json();
    Genesis::from_json(&text)?;
    for dir in validator_dirs {
        write_file(&dir.join(GENESIS_FILE), &text)?;
    }
    Ok(genesis)
}

fn write_file(path: &Path, text: &str) -> Result<(), ValidatorError> {
    Ok(umbra_net::files::write_private(path, text.as_bytes())?)
}

/// Reads a genesis file, naming the file in any error.
pub fn read_genesis(path: &Path) -> Result<Genesis, ValidatorError> {
    let text = std::fs::read_to_string(path).map_err(|source| NodeError::Read {
        path: path.to_owned(),
        source,
    })?;
    Genesis::from_json(&text)
        .map_err(|problem| NodeError::invalid(path, problem.to_string()).into())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs the validator in `data_dir` with the solo sequencer until `shutdown`.
pub async fn run(data_dir: &Path, shutdown: CancellationToken) -> Result<(), ValidatorError> {
    let config_path = data_dir.join(CONFIG_FILE);
    require_config(&config_path, data_dir, "validator")?;
    let config: ValidatorConfig = read_toml(&config_path)?;
    if config.block_interval.is_zero() || config.max_block_transactions == 0 {
        return Err(NodeError::invalid(
            &config_path,
            "block_interval and max_block_transactions must be more than zero",
        )
        .into());
    }
    let limits = config.api;
    if limits.max_connections == 0
        || limits.header_timeout.is_zero()
        || limits.request_timeout.is_zero()
    {
        return Err(NodeError::invalid(
            &config_path,
            "in [api]: max_connections, header_timeout and request_timeout must be more than zero (defaults 1024, \"10s\", \"30s\")",
        ).into());
    }
    let genesis = read_genesis(&data_dir.join(GENESIS_FILE))?;
    let seed = read_key(&data_dir.join(VALIDATOR_KEY_FILE))?;
    let key = SigningKey::from_seed(seed);
    let secret = read_key(&data_dir.join(BEACON_KEY_FILE))?;
    let chain = Arc::new(Chain::open(genesis, &data_dir.join(STORE_FILE))?);
    let duties = tokio::task::spawn_blocking({
        let chain = Arc::clone(&chain);
        move || chain.read(|state| Duties::new(key, secret, state))
    })
    .await
    .map_err(|_| ValidatorError::Panicked("task reading the ledger"))?;
    let issuer_keys = Arc::new(signing::IssuerKeys::open(
        &data_dir.join(signing::TICKETS_DIR),
    )?);
    let duties = duties.with_issuer_keys(Arc::clone(&issuer_keys));
    let signer = Arc::new(signing::Signer::new(duties.key(), issuer_keys));
    if !duties.is_validator() {
        return Err(NodeError::invalid(
            data_dir.join(VALIDATOR_KEY_FILE),
            "is not the key of any validator genesis.json names",
        )
        .into());
    }
    if let (Some(commitment), Some(expected)) = (
        duties.commitment(),
        chain
            .genesis()
            .validators
            .iter()
            .find(|validator| validator.key == duties.key())
            .map(|validator| validator.beacon_commitment),
    ) && commitment != expected
    {
        return Err(NodeError::invalid(
            data_dir.join(BEACON_KEY_FILE),
            "does not match this validator's beacon commitment in genesis.json",
        )
        .into());
    }
    let listener = tokio::net::TcpListener::bind(config.listen_address)
        .await
        .map_err(|source| NodeError::Bind {
            address: config.listen_address,
            source,
        })?;
    let (height, root) = chain.read(|state| (state.height(), state.root()));
    info!(
        address = %config.listen_address,
        chain = %chain.genesis().chain_id,
        height,
        %root,
        sequencer = if config.consensus.is_some() && chain.genesis().validators.len() > 1 {
            "bft"
        } else {
            "solo"
        },
        "validator running"
    );
    let counters = Arc::new(Counters::default());
    let api = tokio::spawn(api::serve(
        listener,
        Arc::clone(&chain),
        Arc::clone(&counters),
        Some(signer),
        config.api,
        shutdown.clone(),
    ));
    let result = match (chain.genesis().validators.len(), config.consensus) {
        (1, _) => {
            solo::Solo {
                block_interval: config.block_interval,
                max_block_transactions: config.max_block_transactions,
            }
            .run(Arc::clone(&chain), duties, counters, shutdown.clone())
            .await
        }
        (_, Some(settings)) => {
            bft::Bft {
                key: SigningKey::from_seed(seed),
                settings,
                wal: data_dir.join(WAL_FILE),
                max_block_transactions: config.max_block_transactions,
            }
            .run(Arc::clone(&chain), duties, counters, shutdown.clone())
            .await
        }
        (count, None) => Err(NodeError::invalid(
            &config_path,
            format!(
                "genesis.json names {count} validators, so they must agree by BFT consensus: add a \
                 [consensus] section with this validator's p2p_address and the others' peers"
            ),
        )
        .into()),
    };
    shutdown.cancel();
    let _ = api.await;
    info!("validator stopped");
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    fn init_in(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("umbra-validator-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        init(
            &dir,
            &InitOptions {
                listen_address: SocketAddr::from(([127, 0, 0, 1], 7000)),
                genesis: None,
                chain_id: "test".into(),
                params: Params::default(),
                consensus: None,
            },
        )
        .unwrap();
        dir
    }

    #[test]
    fn init_writes_the_defaults_readable_only_by_the_owner() {
        let dir = init_in("init");
        let config: ValidatorConfig = read_toml(&dir.join(CONFIG_FILE)).unwrap();
        assert_eq!(config, ValidatorConfig::default());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            let genesis = read_genesis(&dir.join(GENESIS_FILE)).unwrap();
            drop(Chain::open(genesis, &dir.join(STORE_FILE)).unwrap());
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                assert_eq!(mode(&path), 0o600, "{}", path.display());
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Sends `request` on `stream` a byte a second until the validator closes the connection
    /// (two minutes at most); returns how long that took.
    fn trickle(stream: TcpStream, request: &'static [u8]) -> tokio::task::JoinHandle<Duration> {
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let (mut reader, mut writer) = stream.into_split();
            let writing = tokio::spawn(async move {
                for byte in request {
                    if writer.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                std::future::pending::<()>().await;
            });
            let mut buffer = [0; 256];
            let closed = async { while let Ok(1..) = reader.read(&mut buffer).await {} };
            let _ = tokio::time::timeout(Duration::from_secs(120), closed).await;
            writing.abort();
            start.elapsed()
        })
    }

    /// The status line and body of `GET path`.
    async fn get(address: std::net::SocketAddr, path: &str) -> (String, serde_json::Value) {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let status = answer.lines().next().unwrap_or_default().to_owned();
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        (status, serde_json::from_str(body).unwrap_or_default())
    }

    #[tokio::test]
    async fn the_api_serves_the_ticket_views() {
        let dir = init_in("tickets");
        let genesis = read_genesis(&dir.join(GENESIS_FILE)).unwrap();
        let chain = Arc::new(Chain::open(genesis, &dir.join(STORE_FILE)).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(api::serve(
            listener,
            chain,
            Arc::new(Counters::default()),
            None,
            HttpLimits::default(),
            stop.clone(),
        ));
        let (status, stats) = get(address, "/tickets").await;
        assert!(status.contains("200"), "{status}");
        assert_eq!(stats["bought"], 0);
        assert_eq!(stats["price"], 100_000);
        assert_eq!(stats["tickets_required"], false);
        let (status, issuers) = get(address, "/tickets/issuers").await;
        assert!(status.contains("200"), "{status}");
        assert_eq!(issuers["current_period"], 0);
        assert_eq!(issuers["periods"], serde_json::json!([]));
        let unknown = umbra_ledger::Hash([7; 32]);
        let (status, body) = get(address, &format!("/tickets/purchases/{unknown}")).await;
        assert!(status.contains("404"), "{status}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("no ticket purchase")
        );
        let (status, _) = get(address, "/tickets/purchases/not-a-hash").await;
        assert!(status.contains("400"), "{status}");
        stop.cancel();
        server.await.unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The status line and body of `POST path` with `body`.
    async fn post(
        address: std::net::SocketAddr,
        path: &str,
        body: &str,
    ) -> (String, serde_json::Value) {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let status = answer.lines().next().unwrap_or_default().to_owned();
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        (status, serde_json::from_str(body).unwrap_or_default())
    }

    /// A solo validator running in `dir` as `run` would (API, sequencer, issuance keys).
    struct Running {
        address: SocketAddr,
        chain: Arc<Chain>,
        stop: CancellationToken,
        server: tokio::task::JoinHandle<std::io::Result<()>>,
        solo: tokio::task::JoinHandle<Result<(), ValidatorError>>,
    }

    impl Running {
        async fn start(dir: &Path) -> Running {
            let genesis = read_genesis(&dir.join(GENESIS_FILE)).unwrap();
            let chain = Arc::new(Chain::open(genesis, &dir.join(STORE_FILE)).unwrap());
            let key = SigningKey::from_seed(read_key(&dir.join(VALIDATOR_KEY_FILE)).unwrap());
            let secret = read_key(&dir.join(BEACON_KEY_FILE)).unwrap();
            let keys =
                Arc::new(signing::IssuerKeys::open(&dir.join(signing::TICKETS_DIR)).unwrap());
            let duties = chain
                .read(|state| Duties::new(key, secret, state))
                .with_issuer_keys(Arc::clone(&keys));
            let signer = Arc::new(signing::Signer::new(duties.key(), keys));
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let stop = CancellationToken::new();
            let counters = Arc::new(Counters::default());
            let server = tokio::spawn(api::serve(
                listener,
                Arc::clone(&chain),
                Arc::clone(&counters),
                Some(signer),
                HttpLimits::default(),
                stop.clone(),
            ));
            let solo = tokio::spawn(
                solo::Solo {
                    block_interval: Duration::from_millis(20),
                    max_block_transactions: 100,
                }
                .run(Arc::clone(&chain), duties, counters, stop.clone()),
            );
            Running {
                address,
                chain,
                stop,
                server,
                solo,
            }
        }

        async fn stop(self) {
            self.stop.cancel();
            self.server.await.unwrap().unwrap();
            self.solo.await.unwrap().unwrap();
            assert_eq!(Arc::strong_count(&self.chain), 1, "the chain is still held");
        }

        /// The announced keys of periods 0 and 1 once both are committed.
        async fn announced(&self) -> [Vec<u8>; 2] {
            for _ in 0..600 {
                let (_, issuers) = get(self.address, "/tickets/issuers").await;
                let key = |period: u64| {
                    issuers["periods"]
                        .as_array()?
                        .iter()
                        .find(|view| view["period"] == period)?["issuers"]
                        .as_array()?
                        .iter()
                        .find(|issuer| issuer["validator"] == 0)?["key"]
                        .as_str()
                        .map(|text| hex::decode(text).unwrap())
                };
                if let (Some(current), Some(next)) = (key(0), key(1)) {
                    return [current, next];
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the validator did not announce its ticket keys");
        }

        /// Buys `count` tickets with the solo genesis account; the committed purchase's hash.
        async fn buy(&self, dir: &Path, nonce: u64, count: u32) -> Hash {
            let account = SigningKey::from_seed(read_key(&dir.join(ACCOUNT_KEY_FILE)).unwrap());
            let transaction = umbra_ledger::Transaction::sign(
                "test",
                &account,
                nonce,
                umbra_ledger::Action::BuyTickets { count },
            );
            let hash = self.chain.submit(transaction, now_ms()).unwrap();
            for _ in 0..600 {
                if let Some(receipt) = self.chain.receipt(&hash).unwrap() {
                    assert_eq!(receipt.error, None);
                    return hash;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("the purchase was not committed");
        }
    }

    fn sign_body(tx: Hash, blinded: &[umbra_tickets::BlindedMessage]) -> String {
        let blinded: Vec<String> = blinded.iter().map(|b| hex::encode(&b.0)).collect();
        serde_json::json!({ "tx": tx.to_string(), "blinded": blinded }).to_string()
    }

    /// Finishes the purchase with the validator's answer and checks every ticket verifies.
    fn assemble_and_verify(
        request: &umbra_tickets::PurchaseRequest,
        answer: &serde_json::Value,
        key: &umbra_tickets::IssuerPublicKey,
    ) {
        use umbra_tickets::{BlindSignature, ChainTag, IssuerSet, verify};
        let signatures: Vec<BlindSignature> = answer["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|text| BlindSignature(hex::decode(text.as_str().unwrap()).unwrap()))
            .collect();
        let partials = request.finish(0, &signatures).unwrap();
        let tickets = request.assemble(partials);
        assert_eq!(tickets.len(), request.count() as usize);
        let mut issuers = IssuerSet::new();
        issuers.insert_period(0, [(0, key.clone(), 1)]).unwrap();
        for ticket in &tickets {
            verify(ticket, ChainTag::of("test"), &issuers).unwrap();
        }
    }

    #[tokio::test]
    async fn the_validator_announces_its_ticket_keys_and_signs_each_purchase_once() {
        use rand_core::SeedableRng;
        use umbra_tickets::{ChainTag, IssuerPublicKey, PurchaseRequest, PurchaseSeed, TxId};
        let dir = init_in("signing");
        let running = Running::start(&dir).await;
        let announced = running.announced().await;
        // the announced keys are the saved ones, each file owner-only
        let tickets_dir = dir.join(signing::TICKETS_DIR);
        let files: Vec<Vec<u8>> = (0..2)
            .map(|period| std::fs::read(tickets_dir.join(format!("period-{period}.der"))).unwrap())
            .collect();
        for (saved, announced) in files.iter().zip(&announced) {
            let key = umbra_tickets::IssuerSecretKey::from_der(saved).unwrap();
            assert_eq!(key.public_key().as_bytes(), announced.as_slice());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for period in 0..2 {
                let path = tickets_dir.join(format!("period-{period}.der"));
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600);
            }
        }
        // whose signing service this is
        let (status, signer) = get(running.address, "/tickets/signer").await;
        assert!(status.contains("200"), "{status} {signer}");
        let validator = SigningKey::from_seed(read_key(&dir.join(VALIDATOR_KEY_FILE)).unwrap());
        assert_eq!(signer["validator_key"], validator.public().to_string());
        let key = IssuerPublicKey::from_bytes(&announced[0]).unwrap();
        let issuers = [(0u16, key.clone())];
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);

        let tx = running.buy(&dir, 0, 3).await;
        let seed = PurchaseSeed::generate(&mut rng);
        let request =
            PurchaseRequest::new(&seed, TxId(tx.0), ChainTag::of("test"), 0, 3, &issuers).unwrap();
        let blinded = request.blinded(0).unwrap();
        let body = sign_body(tx, &blinded);
        let (status, answer) = post(running.address, "/tickets/sign", &body).await;
        assert!(status.contains("200"), "{status} {answer}");
        assert_eq!(answer["period"], 0);
        assert_eq!(answer["validator"], 0);
        assemble_and_verify(&request, &answer, &key);

        // the same request again: the same answer
        let (status, again) = post(running.address, "/tickets/sign", &body).await;
        assert!(status.contains("200"), "{status} {again}");
        assert_eq!(again, answer);
        // other blinded messages for the same purchase: refused
        let other = PurchaseRequest::new(
            &PurchaseSeed::generate(&mut rng),
            TxId(tx.0),
            ChainTag::of("test"),
            0,
            3,
            &issuers,
        )
        .unwrap();
        let (status, refused) = post(
            running.address,
            "/tickets/sign",
            &sign_body(tx, &other.blinded(0).unwrap()),
        )
        .await;
        assert!(status.contains("409"), "{status} {refused}");
        assert_eq!(
            refused["error"],
            "this purchase was already signed for other blinded messages"
        );
        // an unknown purchase, even with the most blinded messages a purchase can have
        let unknown = Hash([9; 32]);
        let most = vec![umbra_tickets::BlindedMessage(vec![0xab; 256]); 4096];
        let (status, refused) =
            post(running.address, "/tickets/sign", &sign_body(unknown, &most)).await;
        assert!(status.contains("404"), "{status} {refused}");
        assert!(
            refused["error"]
                .as_str()
                .unwrap()
                .contains("wait until the buy_tickets transaction is committed"),
            "{refused}"
        );
        // not one blinded message per ticket
        let tx2 = running.buy(&dir, 1, 2).await;
        let request2 =
            PurchaseRequest::new(&seed, TxId(tx2.0), ChainTag::of("test"), 0, 2, &issuers).unwrap();
        let blinded2 = request2.blinded(0).unwrap();
        let (status, refused) = post(
            running.address,
            "/tickets/sign",
            &sign_body(tx2, &blinded2[..1]),
        )
        .await;
        assert!(status.contains("400"), "{status} {refused}");
        let (status, refused) = post(running.address, "/tickets/sign", "{\"tx\": 1}").await;
        assert!(status.contains("400"), "{status} {refused}");
        running.stop().await;

        // a restart keeps the keys (and announces nothing new) and the served record
        let running = Running::start(&dir).await;
        assert_eq!(running.announced().await, announced);
        for (period, saved) in files.iter().enumerate() {
            let path = tickets_dir.join(format!("period-{period}.der"));
            assert_eq!(&std::fs::read(path).unwrap(), saved);
        }
        let (status, again) = post(running.address, "/tickets/sign", &body).await;
        assert!(status.contains("200"), "{status} {again}");
        assert_eq!(again, answer);
        let (status, answer2) =
            post(running.address, "/tickets/sign", &sign_body(tx2, &blinded2)).await;
        assert!(status.contains("200"), "{status} {answer2}");
        assemble_and_verify(&request2, &answer2, &key);
        running.stop().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_api_cuts_slow_connections_and_answers_good_requests() {
        // the paused clock moves a millisecond at a time while sockets are in flight
        let _ticks = tokio::spawn(async {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let dir = init_in("slow");
        let genesis = read_genesis(&dir.join(GENESIS_FILE)).unwrap();
        let chain = Arc::new(Chain::open(genesis, &dir.join(STORE_FILE)).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let limits = HttpLimits::default();
        let stop = CancellationToken::new();
        let server = tokio::spawn(api::serve(
            listener,
            chain,
            Arc::new(Counters::default()),
            None,
            limits,
            stop.clone(),
        ));
        const SLOW: &[u8] =
            b"POST /tx HTTP/1.1\r\nHost: validator.example\r\nContent-Length: 2\r\n\r\n{}";
        // one after the other: a burst beyond the listen backlog would be retried by the
        // kernel in real time
        let mut slow = Vec::new();
        for _ in 0..200 {
            slow.push(trickle(TcpStream::connect(address).await.unwrap(), SLOW));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut good = TcpStream::connect(address).await.unwrap();
        good.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        good.read_to_string(&mut answer).await.unwrap();
        assert!(
            answer.contains("200 OK") && answer.contains("healthy"),
            "{answer}"
        );
        for connection in slow {
            let held = connection.await.unwrap();
            assert!(
                held <= limits.header_timeout + Duration::from_secs(2),
                "held {held:?}"
            );
        }
        stop.cancel();
        server.await.unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
