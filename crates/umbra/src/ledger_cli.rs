//! `umbra validator`, `umbra tx` and `umbra account`: running a validator and talking to one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use umbra_ledger::{Action, Amount, NodeId, Params, Ppm, PublicKey, SigningKey, Transaction};
use umbra_net::directory::ValidatorUrl;
use umbra_net::keys::{read_key, write_new_key};
use umbra_net::ledger::{LedgerClient, LedgerError};
use umbra_net::socks5::Socks5Proxy;
use umbra_validator::InitOptions;
use umbra_validator::bft::ConsensusSettings;

use crate::run_until_signal;

#[derive(Subcommand)]
pub(crate) enum ValidatorCommand {
    /// Create a validator: its keys, a commented config.toml and, unless --genesis is given, a
    /// genesis for a one-validator chain with one funded account (account.key).
    Init {
        /// Where the validator keeps its keys, configuration and blocks.
        #[arg(long)]
        data_dir: PathBuf,
        /// Where its HTTP API will listen.
        #[arg(long, default_value = "127.0.0.1:7000")]
        listen: SocketAddr,
        /// A genesis file to join instead of starting a new chain.
        #[arg(long)]
        genesis: Option<PathBuf>,
        /// The chain id of a new chain.
        #[arg(long, default_value = "umbra-local")]
        chain_id: String,
        /// Epoch length of a new chain.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        epoch_length: Duration,
        /// One of several validators (BFT): where it listens for the others. No genesis is
        /// written; make it with `umbra validator genesis` once every validator is initialised.
        #[arg(long)]
        p2p: Option<SocketAddr>,
        /// Another validator's p2p address (repeat for each).
        #[arg(long = "peer", requires = "p2p")]
        peers: Vec<SocketAddr>,
        /// Another validator's API address, to relay transactions to (repeat for each).
        #[arg(long = "relay-to", requires = "p2p")]
        relay_to: Vec<SocketAddr>,
    },
    /// Write the genesis of a chain with several validators into each one's directory, with one
    /// account funded with 1000000 UMB.
    Genesis {
        /// A validator's data directory, made by `umbra validator init --p2p` (repeat for each).
        #[arg(long = "validator-dir", required = true)]
        validator_dirs: Vec<PathBuf>,
        /// The chain id.
        #[arg(long, default_value = "umbra-local")]
        chain_id: String,
        /// Epoch length.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        epoch_length: Duration,
        /// Where to write the funded account's key (never over an existing file).
        #[arg(long)]
        account_key: PathBuf,
    },
    /// Run the validator in the data directory until Ctrl-C or SIGTERM.
    Run {
        /// The directory `umbra validator init` created.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum TxCommand {
    /// Send tokens to another account.
    Transfer {
        /// The receiving account (base58).
        #[arg(long)]
        to: String,
        /// How much, in UMB (up to 6 decimals).
        #[arg(long)]
        amount: Amount,
    },
    /// Add to your node's pledge (the first bond must reach the minimum pledge).
    Bond {
        /// Your node's number.
        #[arg(long)]
        node: NodeId,
        /// How much, in UMB.
        #[arg(long)]
        amount: Amount,
    },
    /// Take your node out at the next epoch boundary, returning pledge and delegations.
    Unbond {
        /// Your node's number.
        #[arg(long)]
        node: NodeId,
    },
    /// Delegate stake to a node, from the next epoch boundary on.
    Delegate {
        /// The node's number.
        #[arg(long)]
        node: NodeId,
        /// How much, in UMB.
        #[arg(long)]
        amount: Amount,
    },
    /// Withdraw your delegation to a node, with its rewards, at the next epoch boundary.
    Undelegate {
        /// The node's number.
        #[arg(long)]
        node: NodeId,
    },
    /// Set your node's operating cost and profit margin.
    UpdateNode {
        /// Your node's number.
        #[arg(long)]
        node: NodeId,
        /// Operating cost per interval, in UMB.
        #[arg(long)]
        operating_cost: Amount,
        /// Profit margin, in percent (0 to 100).
        #[arg(long, value_parser = parse_percent)]
        profit_margin: Ppm,
    },
}

#[derive(Subcommand)]
pub(crate) enum AccountCommand {
    /// Create a new account key file and print its address.
    New {
        /// The key file to write (never over an existing one).
        #[arg(long)]
        out: PathBuf,
    },
    /// Show an account's balance, nonce and delegations.
    Show {
        /// The validator's API (http://host:port).
        #[arg(long, default_value = "http://127.0.0.1:7000")]
        validator: ValidatorUrl,
        /// The account's address, or a key file with --key.
        address: Option<String>,
        /// The account's key file.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Ask through a SOCKS5 proxy (the mixnet's), so that the validator does not learn
        /// who looks at the account.
        #[arg(long, value_name = "socks5h://HOST:PORT")]
        proxy: Option<Socks5Proxy>,
    },
}

fn parse_percent(text: &str) -> Result<Ppm, String> {
    let value: f64 = text
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{text:?} is not a percentage: write e.g. 10 or 12.5"))?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("{text:?} is not between 0 and 100 percent"));
    }
    Ok(Ppm((value * 10_000.0).round() as u32))
}

pub(crate) fn validator(command: ValidatorCommand) -> anyhow::Result<()> {
    match command {
        ValidatorCommand::Init {
            data_dir,
            listen,
            genesis,
            chain_id,
            epoch_length,
            p2p,
            peers,
            relay_to,
        } => {
            let params = Params {
                epoch_length_ms: epoch_length.as_millis() as u64,
                ..Params::default()
            };
            let consensus = p2p.map(|p2p| ConsensusSettings {
                peers,
                relay_to,
                ..ConsensusSettings::new(p2p)
            });
            let several = consensus.is_some() && genesis.is_none();
            let made = umbra_validator::init(
                &data_dir,
                &InitOptions {
                    consensus,
                    listen_address: listen,
                    genesis,
                    chain_id,
                    params,
                },
            )?;
            println!("Created a validator in {}.", data_dir.display());
            println!("  key:               {}", made.validator_key);
            println!("  beacon commitment: {}", made.beacon_commitment);
            println!("Configuration: {}", made.config.display());
            if let Some(account) = made.account {
                println!();
                println!(
                    "A new one-validator chain: genesis.json funds one account with 1000000 UMB,"
                );
                println!("  {account}");
                println!(
                    "whose key is {}.",
                    data_dir.join(umbra_validator::ACCOUNT_KEY_FILE).display()
                );
            }
            println!();
            if several {
                println!(
                    "Once every validator is initialised, write the chain's genesis into each:"
                );
                println!(
                    "  umbra validator genesis --validator-dir {} --validator-dir ... --account-key account.key",
                    data_dir.display()
                );
                println!("then run each: umbra validator run --data-dir <dir>");
            } else {
                println!(
                    "Run it: umbra validator run --data-dir {}",
                    data_dir.display()
                );
            }
            Ok(())
        }
        ValidatorCommand::Genesis {
            validator_dirs,
            chain_id,
            epoch_length,
            account_key,
        } => {
            let params = Params {
                epoch_length_ms: epoch_length.as_millis() as u64,
                ..Params::default()
            };
            let genesis =
                umbra_validator::make_genesis(&validator_dirs, &chain_id, params, &account_key)?;
            println!(
                "Wrote the genesis of {chain_id:?} ({} validators) into:",
                genesis.validators.len()
            );
            for dir in &validator_dirs {
                println!("  {}", dir.join(umbra_validator::GENESIS_FILE).display());
            }
            if let Some(account) = genesis.accounts.first() {
                println!(
                    "Funded account {} (1000000 UMB), key {}.",
                    account.address,
                    account_key.display()
                );
            }
            println!("Run each: umbra validator run --data-dir <dir>");
            Ok(())
        }
        ValidatorCommand::Run { data_dir } => run_until_signal(|shutdown| async move {
            let token = tokio_util::sync::CancellationToken::new();
            let cancel = token.clone();
            tokio::spawn(async move {
                shutdown.await;
                cancel.cancel();
            });
            umbra_validator::run(&data_dir, token).await
        }),
    }
}

fn load_account(path: &Path) -> anyhow::Result<SigningKey> {
    Ok(SigningKey::from_seed(read_key(path)?))
}

/// A client of `validator`, straight or through `proxy`: through the mixnet, each request
/// takes a few round trips through the mix layers, so it is given more time.
pub(crate) async fn ledger_client(
    validator: &ValidatorUrl,
    proxy: Option<&Socks5Proxy>,
) -> Result<LedgerClient, LedgerError> {
    let client = validator.client(proxy).await?;
    Ok(match proxy {
        Some(_) => client.with_timeout(PROXIED_TIMEOUT),
        None => client,
    })
}

/// How long one request through a proxy may take.
const PROXIED_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn tx(
    validator: ValidatorUrl,
    proxy: Option<Socks5Proxy>,
    key: &Path,
    command: TxCommand,
) -> anyhow::Result<()> {
    let signer = load_account(key)?;
    let action = match command {
        TxCommand::Transfer { to, amount } => Action::Transfer {
            to: to
                .parse::<PublicKey>()
                .map_err(|problem| anyhow::anyhow!("--to: {problem}"))?,
            amount,
        },
        TxCommand::Bond { node, amount } => Action::Bond { node, amount },
        TxCommand::Unbond { node } => Action::Unbond { node },
        TxCommand::Delegate { node, amount } => Action::Delegate { node, amount },
        TxCommand::Undelegate { node } => Action::Undelegate { node },
        TxCommand::UpdateNode {
            node,
            operating_cost,
            profit_margin,
        } => Action::UpdateNode {
            node,
            operating_cost,
            profit_margin,
        },
    };
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let client = ledger_client(&validator, proxy.as_ref()).await?;
        let chain_id = client
            .get::<serde_json::Value>("/status")
            .await?
            .get("chain_id")
            .and_then(|value| value.as_str().map(str::to_owned))
            .context("the validator's /status names no chain")?;
        let account = client.account(&signer.public()).await?;
        let transaction = Transaction::sign(&chain_id, &signer, account.next_nonce, action);
        let explain = |error: LedgerError| match error {
            LedgerError::Failed(refusal) => anyhow::anyhow!(
                "refused: {refusal}\n(signed by account {} with the key in {}; balance {})",
                signer.public(),
                key.display(),
                account.account.balance
            ),
            other => other.into(),
        };
        let hash = client.submit(&transaction).await.map_err(explain)?;
        let wait = match proxy {
            Some(_) => PROXIED_TIMEOUT,
            None => Duration::from_secs(30),
        };
        let height = client.wait_for(&hash, wait).await.map_err(explain)?;
        println!("committed in block {height}: transaction {hash}");
        Ok(())
    })
}

pub(crate) fn account(command: AccountCommand) -> anyhow::Result<()> {
    match command {
        AccountCommand::New { out } => {
            let key = SigningKey::generate(&mut rand::rng());
            write_new_key(&out, &key.seed())?;
            println!("{}", key.public());
            Ok(())
        }
        AccountCommand::Show {
            validator,
            address,
            key,
            proxy,
        } => {
            let address = match (address, key) {
                (Some(text), None) => text
                    .parse::<PublicKey>()
                    .map_err(|problem| anyhow::anyhow!("{problem}"))?,
                (None, Some(path)) => load_account(&path)?.public(),
                _ => bail!("give either an address or --key FILE"),
            };
            let view: serde_json::Value = crate::runtime()?.block_on(async {
                ledger_client(&validator, proxy.as_ref())
                    .await?
                    .get(&format!("/accounts/{address}"))
                    .await
            })?;
            println!("{}", serde_json::to_string_pretty(&view)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_parse_or_say_why() {
        // amounts parse with `Amount`'s `FromStr`, tested in umbra-ledger
        assert_eq!(parse_percent("12.5"), Ok(Ppm(125_000)));
        assert_eq!(parse_percent("100%"), Ok(Ppm(1_000_000)));
        assert!(parse_percent("101").is_err());
    }
}
