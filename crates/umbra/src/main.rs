//! `umbra`: one command for every role of the Umbra mixnet.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
mod explorer_cli;
mod ledger_cli;
mod localnet;
mod monitor_cli;
mod node_cli;
mod sim_cli;
mod tickets_cli;

use umbra::network::Shape;
use umbra_client::TrafficPreset;
use umbra_client_daemons::daemon::{self, ClientDaemon, DaemonRole, NewRole};
use umbra_net::directory::{LedgerConfig, ValidatorUrl};
use umbra_net::socks5::Socks5Proxy;
use umbra_node::gateway::{self, Gateway};
use umbra_node::mixnode::{self, Mixnode};
use umbra_sdk::ClientAddress;

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
    /// A gateway: clients' door to the mixnet; keeps messages for clients that are away.
    Gateway {
        #[command(subcommand)]
        command: GatewayCommand,
    },
    /// A client: sends and receives through the mixnet for applications, over a local
    /// WebSocket API.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// A SOCKS5 proxy: carries applications' TCP connections (browsers, wallets, chat) through
    /// the mixnet to an exit service.
    Socks5 {
        #[command(subcommand)]
        command: Socks5Command,
    },
    /// An exit service: opens the TCP connections SOCKS5 proxies ask for, under an exit
    /// policy, and answers them only through SURBs.
    Exit {
        #[command(subcommand)]
        command: ExitCommand,
    },
    /// A validator: keeps the ledger (accounts, nodes, stake, epochs, rewards) and serves the
    /// signed topology.
    Validator {
        #[command(subcommand)]
        command: ledger_cli::ValidatorCommand,
    },
    /// A network monitor: tests every node with packets like any client's, submits each
    /// node's score to the ledger every epoch, and publishes the evidence.
    Monitor {
        #[command(subcommand)]
        command: monitor_cli::MonitorCommand,
    },
    /// The explorer: the network, its nodes, stake, performance and rewards as web pages
    /// (and their JSON twins), read from the validators.
    Explorer {
        #[command(subcommand)]
        command: explorer_cli::ExplorerCommand,
    },
    /// Simulate a network on a virtual clock with the nodes' and clients' own cores, and
    /// measure the anonymity a global observer is left with (docs/anonymity.md).
    Sim(sim_cli::SimArgs),
    /// Sign a transaction with an account key, submit it to a validator and wait until it is
    /// committed.
    Tx {
        /// The validator's API (http://host:port).
        #[arg(long, default_value = "http://127.0.0.1:7000", global = true)]
        validator: ValidatorUrl,
        /// The account's key file.
        #[arg(long, global = true)]
        key: Option<PathBuf>,
        /// Send the transaction through a SOCKS5 proxy, e.g. `umbra socks5`'s into the
        /// mixnet, so that the validator sees its exit and never your address.
        #[arg(long, global = true, value_name = "socks5h://HOST:PORT")]
        proxy: Option<Socks5Proxy>,
        #[command(subcommand)]
        command: ledger_cli::TxCommand,
    },
    /// Ledger accounts: create a key, show a balance.
    Account {
        #[command(subcommand)]
        command: ledger_cli::AccountCommand,
    },
    /// A whole mixnet on this machine: 3 layers of mix nodes, gateways, demo clients and a
    /// client for your applications, each its own process, until Ctrl-C.
    Localnet {
        /// The folder for the network's keys, configuration, state and logs; reused when it
        /// holds a network already.
        #[arg(long, default_value = "localnet")]
        dir: PathBuf,
        /// Mix nodes per layer (for a new network).
        #[arg(long, default_value_t = 3)]
        mixes_per_layer: usize,
        /// Gateways (for a new network).
        #[arg(long, default_value_t = 2)]
        gateways: usize,
        /// No demo clients.
        #[arg(long)]
        no_demo: bool,
        /// How often the demo sends a message.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        demo_interval: std::time::Duration,
        /// Epoch length of a new network: a minute lets you watch layers change and (every
        /// --rotation-epochs epochs) Sphinx keys rotate.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        epoch_length: std::time::Duration,
        /// Epochs per Sphinx key rotation of a new network.
        #[arg(long, default_value_t = 3)]
        rotation_epochs: u32,
        /// Validators of a new network: 1 runs a solo validator, more run BFT consensus
        /// (Malachite) among them, each its own process.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
        validators: u16,
        /// Network monitors of a new network (default 1; 0 runs none): each tests every node
        /// and submits its scores, and the ledger records each node's lower median of them.
        #[arg(long, value_parser = clap::value_parser!(u16).range(0..=umbra::network::MAX_MONITORS as i64))]
        monitors: Option<u16>,
        /// Traffic settings of the client, SOCKS5 proxy and exit when they are created: nym
        /// (15 ms per hop, a packet every 20 ms), low-latency (5 ms, 10 ms) or bulk (15 ms,
        /// 1 ms).
        #[arg(long, default_value = "nym", value_parser = parse_preset)]
        traffic: TrafficPreset,
    },
}

/// A new client daemon's network and gateway (client, SOCKS5 proxy or exit alike).
#[derive(clap::Args)]
struct NewDaemonArgs {
    /// Where it keeps its keys, configuration and outbox.
    #[arg(long)]
    data_dir: PathBuf,
    /// A validator's API: it follows the ledger (give --genesis too).
    #[arg(long, conflicts_with = "topology")]
    validator: Vec<ValidatorUrl>,
    /// The network's genesis file (the trust root), with --validator.
    #[arg(long, requires = "validator")]
    genesis: Option<PathBuf>,
    /// A static topology file instead of a ledger (private test networks).
    #[arg(long)]
    topology: Option<PathBuf>,
    /// The gateway to connect through: its id or Noise key in the topology.
    #[arg(long)]
    gateway: String,
    /// Traffic settings: nym (15 ms per hop, a packet every 20 ms), low-latency (5 ms,
    /// 10 ms) or bulk (15 ms, 1 ms).
    #[arg(long, default_value = "nym", value_parser = parse_preset)]
    traffic: TrafficPreset,
}

/// Run or show an existing client daemon.
#[derive(clap::Args)]
struct DataDir {
    /// The directory `init` created.
    #[arg(long)]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Create a client: fresh keys, the network's genesis file (or a topology file) and a
    /// commented config.toml.
    Init {
        #[command(flatten)]
        new: NewDaemonArgs,
        /// Where applications will connect (WebSocket API; keep it on loopback). Default
        /// 127.0.0.1:1977, or a free port when that one is taken; port 0 picks a free port.
        #[arg(long)]
        api: Option<SocketAddr>,
    },
    /// Run the client in the data directory until Ctrl-C or SIGTERM.
    Run(DataDir),
    /// Print the client's address.
    Address(DataDir),
    /// Buy bandwidth tickets into the ticket wallet of a client, SOCKS5 proxy or exit (its
    /// tickets.redb), from the validators its [ledger] section names. Purchases a crash left
    /// unfinished are finished first, without paying again.
    Buy {
        #[command(flatten)]
        dir: DataDir,
        /// The key file of the account that pays (`umbra account new --out FILE` makes one).
        #[arg(long)]
        account: PathBuf,
        /// How many tickets (1 to 4096).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
        tickets: u32,
    },
}

#[derive(Subcommand)]
enum Socks5Command {
    /// Create a SOCKS5 proxy: a mixnet client of its own, fresh keys and a commented
    /// config.toml naming the exit service.
    Init {
        #[command(flatten)]
        new: NewDaemonArgs,
        /// Where applications will connect (keep it on loopback). Default 127.0.0.1:1080, or a
        /// free port when that one is taken; port 0 picks a free port.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The exit service's address (`umbra exit address` prints it).
        #[arg(long)]
        exit: String,
    },
    /// Run the proxy in the data directory until Ctrl-C or SIGTERM.
    Run(DataDir),
    /// Print the proxy's own mixnet address.
    Address(DataDir),
}

#[derive(Subcommand)]
enum ExitCommand {
    /// Create an exit service: a mixnet client of its own that opens the TCP connections
    /// proxies ask for, under an exit policy.
    Init {
        #[command(flatten)]
        new: NewDaemonArgs,
        /// A file of exit policy rules (docs/exit-policy.md), copied into the data directory.
        /// Without one, every public address and port is accepted.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Let connections through to loopback and private addresses: anyone who can reach
        /// the exit then reaches this machine and its network. For local test networks only.
        #[arg(long)]
        insecure_allow_private: bool,
    },
    /// Run the exit service in the data directory until Ctrl-C or SIGTERM.
    Run(DataDir),
    /// Print the exit's address (what proxies name in `--exit`).
    Address(DataDir),
}

/// Where a new node's ledger is.
#[derive(clap::Args)]
struct LedgerArgs {
    /// A validator's API (repeat for several, tried in turn). Without it the node reads a
    /// static topology file (private test networks).
    #[arg(long = "validator")]
    validators: Vec<ValidatorUrl>,
    /// The network's genesis file (the node's trust root), copied into the node's directory.
    #[arg(long)]
    genesis: Option<PathBuf>,
}

impl LedgerArgs {
    fn config(&self) -> anyhow::Result<Option<(LedgerConfig, PathBuf)>> {
        match (&self.genesis, self.validators.is_empty()) {
            (Some(genesis), false) => Ok(Some((
                LedgerConfig {
                    validators: self.validators.clone(),
                    genesis: umbra_net::directory::GENESIS_FILE.into(),
                },
                genesis.clone(),
            ))),
            (None, true) => Ok(None),
            (None, false) => anyhow::bail!(
                "--validator needs --genesis FILE: the network's genesis file, whose validator set the node checks every topology against"
            ),
            (Some(_), true) => anyhow::bail!("--genesis needs at least one --validator URL"),
        }
    }
}

fn print_registration(
    made: &umbra_node::runtime::Initialised,
    role: &str,
    data_dir: &std::path::Path,
    ledger: bool,
) {
    println!("  identity key: {}", made.identity_key);
    println!(
        "  Sphinx key:   {}",
        umbra_ledger::Key32(*made.sphinx_key.as_bytes())
    );
    println!("  Noise key:    {}", made.noise_key);
    println!();
    if ledger {
        println!("Register it on the ledger as your account's, bonding its pledge:");
        println!(
            "  umbra {role} register --data-dir {} --validator <URL> --account <account.key> --pledge 100{}",
            data_dir.display(),
            if role == "gateway" {
                " [--mix-address HOST:PORT --client-address HOST:PORT]"
            } else {
                " [--mix-address HOST:PORT]"
            }
        );
        println!(
            "Then run it: umbra {role} run --data-dir {}",
            data_dir.display()
        );
    }
}

fn parse_preset(text: &str) -> Result<TrafficPreset, String> {
    match text {
        "nym" => Ok(TrafficPreset::Nym),
        "low-latency" => Ok(TrafficPreset::LowLatency),
        "bulk" => Ok(TrafficPreset::Bulk),
        other => Err(format!(
            "{other:?} is not a preset: nym, low-latency or bulk"
        )),
    }
}

#[derive(Subcommand)]
enum GatewayCommand {
    /// Create a gateway: fresh keys and a commented config.toml in the data directory.
    Init {
        /// Where the gateway keeps its keys, configuration, inbox and state.
        #[arg(long)]
        data_dir: PathBuf,
        /// Where mix nodes will connect.
        #[arg(long, default_value = "0.0.0.0:1790")]
        listen: SocketAddr,
        /// Where clients will connect (WebSocket).
        #[arg(long, default_value = "0.0.0.0:9000")]
        clients: SocketAddr,
        /// Where /metrics and /health will be served.
        #[arg(long, default_value = "127.0.0.1:8001")]
        http: SocketAddr,
        /// The address mix nodes reach this gateway at, for the topology entry printed
        /// (default: --listen).
        #[arg(long)]
        public_address: Option<SocketAddr>,
        /// The address clients reach this gateway at, for the topology entry printed
        /// (default: --clients).
        #[arg(long)]
        public_client_address: Option<SocketAddr>,
        #[command(flatten)]
        ledger: LedgerArgs,
    },
    /// Register the gateway on the ledger as your account's and bond its pledge.
    Register {
        #[command(flatten)]
        args: node_cli::RegisterArgs,
        /// The address clients reach this gateway at (default: `client_listen_address` in its
        /// config.toml).
        #[arg(long)]
        client_address: Option<SocketAddr>,
    },
    /// Run the gateway in the data directory until Ctrl-C or SIGTERM.
    Run {
        /// The directory `umbra gateway init` created.
        #[arg(long)]
        data_dir: PathBuf,
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
        #[command(flatten)]
        ledger: LedgerArgs,
    },
    /// Register the mix node on the ledger as your account's and bond its pledge.
    Register {
        #[command(flatten)]
        args: node_cli::RegisterArgs,
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
    // localnet's nodes log to files; its own screen is for the summary and the demo
    let default_level = match cli.command {
        Command::Localnet { .. } => "warn",
        _ => "info",
    };
    // the consensus engine reports every height at info; its warnings are what an operator needs
    let default_filter = format!("{default_level},arc_malachitebft=warn,libp2p=warn,ractor=warn");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        // colours only on a terminal: node logs go to files
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // each cause once: a message that already quotes its cause is not followed by it
            let mut message = error.to_string();
            for cause in error.chain().skip(1) {
                let cause = cause.to_string();
                if !message.contains(&cause) {
                    message = format!("{message}: {cause}");
                }
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Mixnode { command } => match command {
            MixnodeCommand::Register { args } => {
                let config =
                    mixnode::MixnodeConfig::load(&args.data_dir.join(mixnode::CONFIG_FILE))?;
                node_cli::register(
                    args,
                    umbra_ledger::NodeKind::Mix,
                    config.listen_address,
                    None,
                )
            }
            MixnodeCommand::Init {
                data_dir,
                listen,
                http,
                public_address,
                ledger,
            } => {
                let ledger = ledger.config()?;
                let made = mixnode::init(
                    &data_dir,
                    listen,
                    http,
                    ledger
                        .as_ref()
                        .map(|(config, genesis)| (config, genesis.as_path())),
                )?;
                println!("Created a mix node in {}.", data_dir.display());
                println!(
                    "Configuration: {} (every setting is commented)",
                    made.config.display()
                );
                print_registration(&made, "mixnode", &data_dir, ledger.is_some());
                if ledger.is_some() {
                    return Ok(());
                }
                println!(
                    "Without --validator, the node reads a static topology file (private test networks)."
                );
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
                run_until_signal(|shutdown| node.run(shutdown))
            }
        },
        Command::Client { command } => client(command),
        Command::Socks5 { command } => socks5(command),
        Command::Exit { command } => exit(command),
        Command::Validator { command } => ledger_cli::validator(command),
        Command::Monitor { command } => monitor_cli::monitor(command),
        Command::Explorer { command } => explorer_cli::explorer(command),
        Command::Sim(args) => sim_cli::sim(args),
        Command::Tx {
            validator,
            key,
            proxy,
            command,
        } => {
            let key = key.context(
                "--key FILE is needed: the key file of the account that signs (`umbra account new --out FILE` makes one)",
            )?;
            ledger_cli::tx(validator, proxy, &key, command)
        }
        Command::Account { command } => ledger_cli::account(command),
        Command::Localnet {
            dir,
            mixes_per_layer,
            gateways,
            no_demo,
            demo_interval,
            epoch_length,
            rotation_epochs,
            validators,
            monitors,
            traffic,
        } => localnet::run(localnet::Options {
            epoch_length,
            rotation_epochs,
            validators: usize::from(validators),
            monitors: monitors.map(usize::from),
            dir,
            shape: Shape {
                mixes_per_layer,
                gateways,
            },
            demo: !no_demo,
            demo_interval,
            traffic,
        }),
        Command::Gateway { command } => match command {
            GatewayCommand::Register {
                args,
                client_address,
            } => {
                let config =
                    gateway::GatewayNodeConfig::load(&args.data_dir.join(gateway::CONFIG_FILE))?;
                node_cli::register(
                    args,
                    umbra_ledger::NodeKind::Gateway,
                    config.listen_address,
                    Some(client_address.unwrap_or(config.client_listen_address)),
                )
            }
            GatewayCommand::Init {
                data_dir,
                listen,
                clients,
                http,
                public_address,
                public_client_address,
                ledger,
            } => {
                let ledger = ledger.config()?;
                let made = gateway::init(
                    &data_dir,
                    listen,
                    clients,
                    http,
                    ledger
                        .as_ref()
                        .map(|(config, genesis)| (config, genesis.as_path())),
                )?;
                println!("Created a gateway in {}.", data_dir.display());
                println!(
                    "Configuration: {} (every setting is commented)",
                    made.config.display()
                );
                print_registration(&made, "gateway", &data_dir, ledger.is_some());
                if ledger.is_some() {
                    return Ok(());
                }
                println!(
                    "Without --validator, the gateway reads a static topology file (private test networks)."
                );
                println!(
                    "Add this gateway to the topology file ({}), with its id:",
                    data_dir.join("topology.json").display()
                );
                println!(
                    "  {}",
                    made.gateway_descriptor(
                        public_address.unwrap_or(listen),
                        public_client_address.unwrap_or(clients)
                    )
                );
                println!();
                println!(
                    "Then run it: umbra gateway run --data-dir {}",
                    data_dir.display()
                );
                Ok(())
            }
            GatewayCommand::Run { data_dir } => {
                let node = Gateway::load(&data_dir)?;
                run_until_signal(|shutdown| node.run(shutdown))
            }
        },
    }
}

fn client(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Init { new, api } => {
            let data_dir = new.data_dir.clone();
            let (api, note) =
                daemon::choose_listen_address(api, daemon::DEFAULT_API_ADDRESS, "--api")?;
            if let Some(note) = note {
                println!("Note: {note}.");
            }
            let address = init_daemon(new, NewRole::Client { api })?;
            println!("Created a client in {}.", data_dir.display());
            println!("Its address (give it to whoever should reach you):");
            println!("  {address}");
            println!();
            println!("Run it: umbra client run --data-dir {}", data_dir.display());
            println!("Then connect applications to ws://{api} (see docs/client-api.md).");
            Ok(())
        }
        ClientCommand::Run(dir) => run_daemon(&dir.data_dir, DaemonRole::Client),
        ClientCommand::Address(dir) => print_address(&dir.data_dir, DaemonRole::Client),
        ClientCommand::Buy {
            dir,
            account,
            tickets,
        } => tickets_cli::buy(&dir.data_dir, &account, tickets),
    }
}

fn socks5(command: Socks5Command) -> anyhow::Result<()> {
    match command {
        Socks5Command::Init { new, listen, exit } => {
            let data_dir = new.data_dir.clone();
            let exit: ClientAddress = exit.trim().parse().map_err(|error| {
                anyhow::anyhow!(
                    "--exit {exit:?} is not a client address ({error}); give the exit service's address, as `umbra exit address --data-dir DIR` prints it"
                )
            })?;
            let (listen, note) = daemon::choose_listen_address(
                listen,
                umbra_client_daemons::socks5::DEFAULT_LISTEN_ADDRESS,
                "--listen",
            )?;
            if let Some(note) = note {
                println!("Note: {note}.");
            }
            init_daemon(new, NewRole::Socks5 { listen, exit })?;
            println!("Created a SOCKS5 proxy in {}.", data_dir.display());
            println!("Run it: umbra socks5 run --data-dir {}", data_dir.display());
            println!(
                "Then point applications at socks5h://{listen} (names are resolved at the exit), e.g. curl -x socks5h://{listen} https://example.org"
            );
            Ok(())
        }
        Socks5Command::Run(dir) => run_daemon(&dir.data_dir, DaemonRole::Socks5),
        Socks5Command::Address(dir) => print_address(&dir.data_dir, DaemonRole::Socks5),
    }
}

fn exit(command: ExitCommand) -> anyhow::Result<()> {
    match command {
        ExitCommand::Init {
            new,
            policy,
            insecure_allow_private,
        } => {
            let data_dir = new.data_dir.clone();
            let address = init_daemon(
                new,
                NewRole::Exit {
                    policy: policy.as_deref(),
                    insecure_allow_private,
                },
            )?;
            println!("Created an exit service in {}.", data_dir.display());
            match &policy {
                Some(file) => println!(
                    "Its exit policy: {} (copied into the directory; edit it there)",
                    file.display()
                ),
                None => println!(
                    "It accepts every public address and port; to restrict it, write rules (docs/exit-policy.md) and set [exit.policy] file in its config.toml."
                ),
            }
            if insecure_allow_private {
                println!(
                    "INSECURE: it connects to loopback and private addresses too (local testing only)."
                );
            }
            println!("Its address (give it to proxies: umbra socks5 init --exit ...):");
            println!("  {address}");
            println!();
            println!("Run it: umbra exit run --data-dir {}", data_dir.display());
            Ok(())
        }
        ExitCommand::Run(dir) => run_daemon(&dir.data_dir, DaemonRole::Exit),
        ExitCommand::Address(dir) => print_address(&dir.data_dir, DaemonRole::Exit),
    }
}

/// Creates a client daemon in `role`, its topology from a file or (fetched and verified) from
/// the ledger.
fn init_daemon(new: NewDaemonArgs, role: NewRole<'_>) -> anyhow::Result<ClientAddress> {
    let NewDaemonArgs {
        data_dir,
        validator,
        genesis,
        topology,
        gateway,
        traffic,
    } = new;
    Ok(match (topology, genesis) {
        (Some(topology), _) => daemon::init(
            &data_dir,
            daemon::InitSource::File(&topology),
            &gateway,
            role,
            traffic,
        )?,
        (None, Some(genesis)) => {
            let ledger = LedgerConfig {
                validators: validator,
                genesis: umbra_net::directory::GENESIS_FILE.into(),
            };
            let trust = umbra_net::directory::TrustRoot::read(&genesis)?;
            let directory = umbra_net::directory::Directory::new(ledger.validators.clone(), trust);
            let current = runtime()?.block_on(async {
                let stop = tokio_util::sync::CancellationToken::new();
                directory.first(&stop).await
            })?;
            daemon::init(
                &data_dir,
                daemon::InitSource::Ledger {
                    ledger: &ledger,
                    genesis: &genesis,
                    topology: &current.topology,
                },
                &gateway,
                role,
                traffic,
            )?
        }
        (None, None) => anyhow::bail!(
            "give --validator URL --genesis FILE (the network's ledger), or --topology FILE (a private test network)"
        ),
    })
}

/// Runs the client daemon in `data_dir`, which must be a `role`, until Ctrl-C or SIGTERM;
/// prints its address first.
fn run_daemon(data_dir: &std::path::Path, role: DaemonRole) -> anyhow::Result<()> {
    let daemon = load_daemon(data_dir, role)?;
    println!("{}", daemon.address());
    run_until_signal(|shutdown| daemon.run(shutdown))
}

/// Reads the client daemon in `data_dir`, which must exist and be a `role`.
fn load_daemon(data_dir: &std::path::Path, role: DaemonRole) -> anyhow::Result<ClientDaemon> {
    let config = data_dir.join(daemon::CONFIG_FILE);
    if !config.exists() {
        anyhow::bail!(
            "{}: missing; create {} first with `umbra {} init --data-dir {}`",
            config.display(),
            role.name(),
            role.command(),
            data_dir.display()
        );
    }
    let daemon = ClientDaemon::load(data_dir)?;
    daemon.expect_role(role)?;
    Ok(daemon)
}

fn print_address(data_dir: &std::path::Path, role: DaemonRole) -> anyhow::Result<()> {
    let daemon = load_daemon(data_dir, role)?;
    println!("{}", daemon.address());
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("umbra-io")
        .build()
        .context("starting the async runtime")
}

/// Ctrl-C and SIGTERM, caught from the moment this is made (made within a runtime).
pub(crate) struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt()).context("listening for Ctrl-C")?,
                terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Resolves at the first of them.
    pub(crate) async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs a daemon until Ctrl-C or SIGTERM, which are caught from the start (a signal that
/// comes while it starts up stops it as soon as it runs).
fn run_until_signal<F, E>(daemon: impl FnOnce(Shutdown) -> F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = Result<(), E>>,
    E: Into<anyhow::Error>,
{
    runtime()?.block_on(async {
        let signals = Signals::new()?;
        daemon(Box::pin(signals.recv())).await.map_err(Into::into)
    })
}

/// The shutdown future handed to a daemon.
type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
