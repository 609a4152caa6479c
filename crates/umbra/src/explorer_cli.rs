//! `umbra explorer init|run`: the explorer (docs/explorer.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;
use clap::Subcommand;
use umbra_explorer::{Explorer, InitOptions, MonitorLink};
use umbra_net::directory::{LedgerConfig, ValidatorUrl};

#[derive(Subcommand)]
pub(crate) enum ExplorerCommand {
    /// Create an explorer: the network's genesis file and a commented config.toml.
    Init {
        /// Where the explorer keeps its configuration.
        #[arg(long)]
        data_dir: PathBuf,
        /// A validator's API (repeat for several, tried in turn).
        #[arg(long = "validator", required = true)]
        validators: Vec<ValidatorUrl>,
        /// The network's genesis file (the trust root), copied into the data directory.
        #[arg(long)]
        genesis: PathBuf,
        /// Where the pages will be served.
        #[arg(long, default_value_t = umbra_explorer::config::DEFAULT_HTTP_ADDRESS)]
        http: SocketAddr,
        /// A monitor's account and where it publishes its evidence, as ACCOUNT=URL (e.g.
        /// 5Hx…=http://monitor.example:8090); repeat for each monitor.
        #[arg(long = "monitor", value_parser = parse_monitor)]
        monitors: Vec<MonitorLink>,
    },
    /// Run the explorer in the data directory until Ctrl-C or SIGTERM.
    Run {
        /// The directory `umbra explorer init` created.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn parse_monitor(text: &str) -> Result<MonitorLink, String> {
    let (account, url) = text.split_once('=').ok_or_else(|| {
        format!("{text:?}: write ACCOUNT=URL, e.g. <base58 key>=http://monitor.example:8090")
    })?;
    let account = account.trim().parse().map_err(|_| {
        format!("{account:?} is not a monitor's account (a base58 ed25519 public key)")
    })?;
    Ok(MonitorLink {
        account,
        evidence_url: url.trim().trim_end_matches('/').to_owned(),
    })
}

pub(crate) fn explorer(command: ExplorerCommand) -> anyhow::Result<()> {
    match command {
        ExplorerCommand::Init {
            data_dir,
            validators,
            genesis,
            http,
            monitors,
        } => {
            if !genesis.exists() {
                bail!(
                    "--genesis {}: no such file; give the network's genesis file (its operators publish it; a validator's folder holds it)",
                    genesis.display()
                );
            }
            let config = umbra_explorer::init(
                &data_dir,
                InitOptions {
                    ledger: LedgerConfig {
                        validators,
                        genesis: umbra_net::directory::GENESIS_FILE.into(),
                    },
                    genesis: &genesis,
                    http,
                    monitors,
                },
            )?;
            println!("Created an explorer in {}.", data_dir.display());
            println!(
                "Configuration: {} (every setting is commented)",
                config.display()
            );
            println!(
                "Run it: umbra explorer run --data-dir {}",
                data_dir.display()
            );
            println!("Its pages will be at http://{http}/");
            Ok(())
        }
        ExplorerCommand::Run { data_dir } => {
            let explorer = Explorer::load(&data_dir)?;
            println!("http://{}/", explorer.http_address());
            crate::run_until_signal(|shutdown| explorer.run(shutdown))
        }
    }
}
