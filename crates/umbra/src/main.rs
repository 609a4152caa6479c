//! `umbra`: one command for every role of the Umbra mixnet.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use umbra_net::mixnode::{self, Mixnode};

#[derive(Parser)]
#[command(
    name = "umbra",
    version,
    about = "The Umbra mixnet: nodes, clients and a whole network on one machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A mix node: strips one layer of every packet, drops replays, delays, forwards.
    Mixnode {
        #[command(subcommand)]
        command: MixnodeCommand,
    },
}

#[derive(Subcommand)]
enum MixnodeCommand {
    /// Create a mix node: fresh keys and a commented config.toml in the data directory.
    Init {
        /// Where the node keeps its keys, configuration and state.
        #[arg(long)]
        data_dir: PathBuf,
        /// Where other nodes will connect.
        #[arg(long, default_value = "0.0.0.0:1789")]
        listen: SocketAddr,
        /// Where /metrics and /health will be served.
        #[arg(long, default_value = "127.0.0.1:8000")]
        http: SocketAddr,
        /// The address other nodes reach this node at, for the topology entry printed
        /// (default: --listen).
        #[arg(long)]
        public_address: Option<SocketAddr>,
    },
    /// Run the mix node in the data directory until Ctrl-C or SIGTERM.
    Run {
        /// The directory `umbra mixnode init` created.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Mixnode { command } => match command {
            MixnodeCommand::Init {
                data_dir,
                listen,
                http,
                public_address,
            } => {
                let made = mixnode::init(&data_dir, listen, http)?;
                println!("Created a mix node in {}.", data_dir.display());
                println!(
                    "Configuration: {} (every setting is commented)",
                    made.config.display()
                );
                println!();
                println!(
                    "Add this node to the topology file ({}), with its id and layer:",
                    data_dir.join("topology.json").display()
                );
                println!(
                    "  {}",
                    made.mix_descriptor(public_address.unwrap_or(listen))
                );
                println!();
                println!(
                    "Then run it: umbra mixnode run --data-dir {}",
                    data_dir.display()
                );
                Ok(())
            }
            MixnodeCommand::Run { data_dir } => {
                let node = Mixnode::load(&data_dir)?;
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("umbra-io")
                    .build()
                    .context("starting the async runtime")?;
                runtime.block_on(node.run(shutdown_signal()))?;
                Ok(())
            }
        },
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
