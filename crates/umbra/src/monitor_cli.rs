//! `umbra monitor init|run`: the network monitor (docs/monitor.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;
use clap::Subcommand;
use umbra_monitor_daemon::{InitOptions, MonitorDaemon};
use umbra_net::directory::{LedgerConfig, ValidatorUrl};

#[derive(Subcommand)]
pub(crate) enum MonitorCommand {
    /// Create a monitor: its account key (genesis must name it in `monitors`), the network's
    /// genesis file and a commented config.toml.
    Init {
        /// Where the monitor keeps its keys, configuration and evidence.
        #[arg(long)]
        data_dir: PathBuf,
        /// A validator's API (repeat for several, tried in turn).
        #[arg(long = "validator", required = true)]
        validators: Vec<ValidatorUrl>,
        /// The network's genesis file (the trust root), copied into the data directory.
        #[arg(long)]
        genesis: PathBuf,
        /// Where /metrics, /health and the evidence will be served (the evidence is meant to
        /// be public).
        #[arg(long, default_value_t = umbra_monitor_daemon::config::DEFAULT_HTTP_ADDRESS)]
        http: SocketAddr,
    },
    /// Run the monitor in the data directory until Ctrl-C or SIGTERM.
    Run {
        /// The directory `umbra monitor init` created.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

pub(crate) fn monitor(command: MonitorCommand) -> anyhow::Result<()> {
    match command {
        MonitorCommand::Init {
            data_dir,
            validators,
            genesis,
            http,
        } => {
            if !genesis.exists() {
                bail!(
                    "--genesis {}: no such file; give the network's genesis file (its operators publish it; a validator's folder holds it)",
                    genesis.display()
                );
            }
            let made = umbra_monitor_daemon::init(
                &data_dir,
                InitOptions {
                    ledger: LedgerConfig {
                        validators,
                        genesis: umbra_net::directory::GENESIS_FILE.into(),
                    },
                    genesis: &genesis,
                    http,
                    monitor: Default::default(),
                    account_seed: None,
                },
            )?;
            println!("Created a network monitor in {}.", data_dir.display());
            println!(
                "Configuration: {} (every setting is commented)",
                made.config.display()
            );
            println!("Its account (the key that signs its scores):");
            println!("  {}", made.account);
            println!();
            println!(
                "The ledger takes scores only from accounts its genesis names in `monitors`: add this one there when the network is made. Without it the monitor still measures and publishes its evidence."
            );
            println!(
                "Run it: umbra monitor run --data-dir {}",
                data_dir.display()
            );
            println!("Its evidence will be at http://{http}/evidence");
            Ok(())
        }
        MonitorCommand::Run { data_dir } => {
            let monitor = MonitorDaemon::load(&data_dir)?;
            println!("{}", monitor.account());
            crate::run_until_signal(|shutdown| monitor.run(shutdown))
        }
    }
}
