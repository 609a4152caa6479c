#![doc = include_str!("../README.md")]

pub mod api;
pub mod chain;
pub mod duties;
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
use umbra_ledger::beacon::BeaconChain;
use umbra_ledger::{
    Genesis, GenesisAccount, GenesisValidator, Hash, Params, PublicKey, SigningKey, UNIT,
};
use umbra_net::NodeError;
use umbra_net::keys::{read_key, write_new_key};
use umbra_net::node::{ensure_new, read_toml, require_config};

use crate::api::Counters;
use crate::chain::Chain;
use crate::duties::Duties;

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
    ) -> impl Future<Output = Result<(), NodeError>> + Send;
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
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        ValidatorConfig {
            listen_address: SocketAddr::from(([127, 0, 0, 1], 7000)),
            block_interval: Duration::from_millis(250),
            max_block_transactions: 5_000,
        }
    }
}

const CONFIG_TEMPLATE: &str = "\
# Umbra validator configuration. Every setting is optional; the values shown are the defaults.

# Where the HTTP API (transactions, accounts, nodes, epochs, the signed topology, /metrics,
# /health) listens. Put it behind a TLS-terminating proxy to serve it beyond this machine.
listen_address = \"{listen}\"

# How often a block is cut when transactions wait, and the most transactions in one block.
block_interval = \"250ms\"
max_block_transactions = 5000
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
}

/// Creates a validator's keys, configuration and (unless given one) a solo genesis.
pub fn init(data_dir: &Path, options: &InitOptions) -> Result<Initialised, NodeError> {
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
        &CONFIG_TEMPLATE.replace("{listen}", &options.listen_address.to_string()),
    )?;
    let genesis_path = data_dir.join(GENESIS_FILE);
    let account = match &options.genesis {
        Some(source) => {
            let text = std::fs::read_to_string(source).map_err(|source_error| NodeError::Read {
                path: source.clone(),
                source: source_error,
            })?;
            Genesis::from_json(&text).map_err(|problem| NodeError::invalid(source, problem))?;
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

fn write_file(path: &Path, text: &str) -> Result<(), NodeError> {
    std::fs::write(path, text).map_err(|source| NodeError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Reads a genesis file, naming the file in any error.
pub fn read_genesis(path: &Path) -> Result<Genesis, NodeError> {
    let text = std::fs::read_to_string(path).map_err(|source| NodeError::Read {
        path: path.to_owned(),
        source,
    })?;
    Genesis::from_json(&text).map_err(|problem| NodeError::invalid(path, problem))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs the validator in `data_dir` with the solo sequencer until `shutdown`.
pub async fn run(data_dir: &Path, shutdown: CancellationToken) -> Result<(), NodeError> {
    let config_path = data_dir.join(CONFIG_FILE);
    require_config(&config_path, data_dir, "validator")?;
    let config: ValidatorConfig = read_toml(&config_path)?;
    if config.block_interval.is_zero() || config.max_block_transactions == 0 {
        return Err(NodeError::invalid(
            &config_path,
            "block_interval and max_block_transactions must be more than zero",
        ));
    }
    let genesis = read_genesis(&data_dir.join(GENESIS_FILE))?;
    let key = SigningKey::from_seed(read_key(&data_dir.join(VALIDATOR_KEY_FILE))?);
    let secret = read_key(&data_dir.join(BEACON_KEY_FILE))?;
    let chain = Arc::new(Chain::open(genesis, &data_dir.join(STORE_FILE))?);
    let duties = tokio::task::spawn_blocking({
        let chain = Arc::clone(&chain);
        move || chain.read(|state| Duties::new(key, secret, state))
    })
    .await
    .map_err(|error| NodeError::Other(error.to_string()))?;
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
        ));
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
        "validator running (solo)"
    );
    let counters = Arc::new(Counters::default());
    let api = tokio::spawn(api::serve(
        listener,
        Arc::clone(&chain),
        Arc::clone(&counters),
        shutdown.clone(),
    ));
    let sequencer = solo::Solo {
        block_interval: config.block_interval,
        max_block_transactions: config.max_block_transactions,
    };
    let result = sequencer
        .run(Arc::clone(&chain), duties, counters, shutdown.clone())
        .await;
    shutdown.cancel();
    let _ = api.await;
    info!("validator stopped");
    result
}
