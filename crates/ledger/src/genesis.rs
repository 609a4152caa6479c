//! The genesis file: the chain's parameters, first accounts, validators, monitors and nodes.

use serde::{Deserialize, Serialize};

use crate::err::GenesisError;
use crate::fixed::{Amount, PPM, Ppm, UNIT};
use crate::keys::{Hash, PublicKey, canonical};
use crate::tx::NodeInfo;

/// The chain's parameters. Defaults are Nym's mainnet values where Nym has one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// How long an epoch lasts, in milliseconds (Nym: 1 h).
    pub epoch_length_ms: u64,
    /// Epochs per rewarding interval (Nym: 720, 30 days). The epoch budget is set at the start of
    /// each interval; operating costs are per interval.
    pub epochs_per_interval: u32,
    /// Epochs per Sphinx key rotation (Nym: 24).
    pub rotation_epochs: u32,
    /// Mix nodes per layer in the active set (Nym: 40).
    pub mixes_per_layer: u32,
    /// Gateways in the active set (Nym: 50 entry + 70 exit).
    pub active_gateways: u32,
    /// The share of the reward pool paid out per interval, in ppm (Nym: 2 %).
    pub interval_pool_emission: Ppm,
    /// The stake the saturation point is computed from: saturation = staking supply / active set
    /// size. In µUMB.
    pub staking_supply: Amount,
    /// The Sybil-resistance parameter α, in ppm (Nym: 0.3).
    pub sybil_resistance: Ppm,
    /// The exponent k of performance in the selection weight `saturation × performance^k`
    /// (Nym: 20).
    pub performance_exponent: u32,
    /// The smallest pledge a bonded node may have, in µUMB (Nym: 100 NYM).
    pub minimum_pledge: Amount,
    /// A new node's operating cost per interval, in µUMB (Nym: 40 NYM).
    pub default_operating_cost: Amount,
    /// A new node's profit margin, in ppm (Nym: 20 %).
    pub default_profit_margin: Ppm,
    /// The performance a node has before a monitor has measured it, in ppm.
    pub initial_performance: Ppm,
    /// How many past epochs of performance and rewards the ledger keeps for queries.
    pub history_epochs: u32,
    /// The performance, in ppm, below which a node is left out of the active set (unless a
    /// layer would otherwise be empty, or the network without a gateway: then the best of
    /// those below fill it).
    pub performance_threshold: Ppm,
    /// What a node's performance regains, in ppm, for each epoch it spends out of the active
    /// set (where no monitor can measure it), up to `initial_performance`: a node left out
    /// for poor performance comes back to be measured again after a few epochs.
    pub performance_recovery: Ppm,
    /// Bandwidth tickets (docs/ledger.md, "Bandwidth tickets"). Left out of the encodings
    /// while it has its default values, so that the genesis hash and the state root of a chain
    /// made before tickets existed stay as they were.
    #[serde(skip_serializing_if = "TicketParams::is_default")]
    pub tickets: TicketParams,
}

/// The parameters of bandwidth tickets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TicketParams {
    /// The price of one ticket, in µUMB.
    pub price: Amount,
    /// The bytes of mixnet traffic one ticket buys (Nym's mixnet entry ticket: 200 MB). The
    /// ledger only publishes it; gateways meter by it.
    pub bytes: u64,
    /// The share of each redeemed ticket's price that goes to the reward pool, in ppm; the
    /// rest pays the redeeming gateway's owner.
    pub pool_share: Ppm,
    /// How many epochs a ticket key period lasts (the key period of an epoch is
    /// epoch / key_epochs).
    pub key_epochs: u32,
    /// Whether gateways demand tickets (true) or give every client a free daily allowance
    /// (false). The ledger only publishes it.
    pub required: bool,
}

impl Default for TicketParams {
    fn default() -> TicketParams {
        TicketParams {
            price: Amount(100_000),
            bytes: 200_000_000,
            pool_share: Ppm(100_000),
            key_epochs: 168,
            required: false,
        }
    }
}

impl TicketParams {
    /// Whether these are the defaults.
    pub fn is_default(&self) -> bool {
        *self == TicketParams::default()
    }

    /// The key period of `epoch`.
    pub fn period(&self, epoch: u64) -> u64 {
        epoch / u64::from(self.key_epochs.max(1))
    }
}

impl Default for Params {
    fn default() -> Params {
        Params {
            epoch_length_ms: 3_600_000,
            epochs_per_interval: 720,
            rotation_epochs: 24,
            mixes_per_layer: 40,
            active_gateways: 120,
            interval_pool_emission: Ppm(20_000),
            staking_supply: 500_000_000 * UNIT,
            sybil_resistance: Ppm(300_000),
            performance_exponent: 20,
            minimum_pledge: 100 * UNIT,
            default_operating_cost: 40 * UNIT,
            default_profit_margin: Ppm(200_000),
            initial_performance: PPM,
            history_epochs: 168,
            performance_threshold: Ppm(800_000),
            performance_recovery: Ppm(100_000),
            tickets: TicketParams::default(),
        }
    }
}

impl Params {
    /// The size of the active (rewarded) set: k in the rewards formula.
    pub fn active_set_size(&self) -> u64 {
        3 * u64::from(self.mixes_per_layer) + u64::from(self.active_gateways)
    }

    /// Whether the values make sense, and what is wrong if not.
    pub fn check(&self) -> Result<(), GenesisError> {
        let positive = [
            ("epoch_length_ms", self.epoch_length_ms),
            ("epochs_per_interval", u64::from(self.epochs_per_interval)),
            ("rotation_epochs", u64::from(self.rotation_epochs)),
            ("mixes_per_layer", u64::from(self.mixes_per_layer)),
            ("staking_supply", self.staking_supply.0),
            ("tickets.price", self.tickets.price.0),
            ("tickets.bytes", self.tickets.bytes),
            ("tickets.key_epochs", u64::from(self.tickets.key_epochs)),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(GenesisError::ZeroParam { name });
            }
        }
        let fractions = [
            ("interval_pool_emission", self.interval_pool_emission),
            ("sybil_resistance", self.sybil_resistance),
            ("default_profit_margin", self.default_profit_margin),
            ("initial_performance", self.initial_performance),
            ("performance_threshold", self.performance_threshold),
            ("performance_recovery", self.performance_recovery),
            ("tickets.pool_share", self.tickets.pool_share),
        ];
        for (name, value) in fractions {
            if value > PPM {
                return Err(GenesisError::NotAFraction { name, value });
            }
        }
        Ok(())
    }
}

/// An account and its first balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// The account's public key.
    pub address: PublicKey,
    /// Its balance, in µUMB.
    pub balance: Amount,
}

/// A validator: its key, its voting power and the commitment to its beacon chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    /// The validator's ed25519 key (it signs blocks, topology documents and its reveals).
    pub key: PublicKey,
    /// Its voting power.
    pub power: u64,
    /// The last value of its beacon hash chain (see [`crate::beacon`]).
    pub beacon_commitment: Hash,
    /// A name for people.
    #[serde(default)]
    pub name: String,
}

/// A node bonded from the start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisNode {
    /// The owning account.
    pub owner: PublicKey,
    /// Its pledge, in µUMB (comes out of the supply like a balance).
    pub pledge: Amount,
    /// The node.
    pub node: NodeInfo,
}

/// The genesis file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// The chain's name; every signature covers it, so nothing signed for one chain counts on
    /// another.
    pub chain_id: String,
    /// When epoch 0 starts, in milliseconds since the Unix epoch.
    pub genesis_time_ms: u64,
    /// The parameters.
    #[serde(default)]
    pub params: Params,
    /// The reward pool, in µUMB.
    pub reward_pool: Amount,
    /// The first accounts.
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
    /// The validators.
    pub validators: Vec<GenesisValidator>,
    /// The accounts allowed to submit performance.
    #[serde(default)]
    pub monitors: Vec<PublicKey>,
    /// Nodes bonded from the start.
    #[serde(default)]
    pub nodes: Vec<GenesisNode>,
}

impl Genesis {
    /// The validator set clients verify topology certificates against.
    pub fn validator_keys(&self) -> Vec<crate::ValidatorKey> {
        self.validators
            .iter()
            .map(|validator| crate::ValidatorKey {
                key: validator.key,
                power: validator.power,
            })
            .collect()
    }

    /// Reads a genesis file's text, and [checks](Genesis::check) it.
    pub fn from_json(text: &str) -> Result<Genesis, GenesisError> {
        let genesis: Genesis = serde_json::from_str(text).map_err(GenesisError::Json)?;
        genesis.check()?;
        Ok(genesis)
    }

    /// Whether the parameters make sense and there are validators, each with voting power.
    /// (Accounts and nodes are checked as [`State::genesis`](crate::State::genesis) builds the
    /// state from them.)
    pub fn check(&self) -> Result<(), GenesisError> {
        self.params.check()?;
        if self.validators.is_empty() {
            return Err(GenesisError::NoValidators);
        }
        if let Some(validator) = self
            .validators
            .iter()
            .find(|validator| validator.power == 0)
        {
            return Err(GenesisError::ZeroPower {
                key: validator.key,
                name: validator.name.clone(),
            });
        }
        Ok(())
    }

    /// The file's text.
    pub fn to_json(&self) -> String {
        // plain data always serializes
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The hash of the genesis (its canonical encoding).
    pub fn hash(&self) -> Hash {
        Hash::of(&[b"umbra-genesis-v1", &canonical(self)])
    }

    /// All voting power.
    pub fn total_power(&self) -> u64 {
        self.validators
            .iter()
            .map(|validator| validator.power)
            .sum()
    }
}
