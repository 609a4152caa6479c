//! `umbra localnet`: a whole mixnet on this machine, each node its own process, with demo
//! traffic and a client for the user's own applications.
//!
//! The network follows a ledger: a solo validator (or, with `--validators N`, N validators
//! agreeing by BFT consensus) runs as a process (`umbra validator run`),
//! its genesis funds one account per node operator, and every node is registered and bonded
//! through transactions before it starts; nodes, the client daemon and the demo clients fetch
//! and verify each epoch's topology from the validator. Genesis names the network monitors (one,
//! or `--monitors N`), each of which tests every node each epoch and submits their scores; the
//! ledger records each node's lower median of them (docs/monitor.md).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use umbra::network::{Kind, Layout, LocalMonitor, Shape, get, health};
use umbra_client::TrafficPreset;
use umbra_client_daemons::daemon;
use umbra_ledger::{Amount, GenesisAccount, Params, SigningKey};
use umbra_net::directory::{Current, Directory, TrustRoot};
use umbra_net::keys::{read_key, write_new_key};
use umbra_net::ledger::LedgerClient;
use umbra_net::metrics::sample;
use umbra_node::registration::{self, Registration};
use umbra_sdk::{ClientBuilder, ClientEvent, MixnetClient};

use supervisor::{Event, Restarts, Stage, Supervisor};

mod supervisor;

/// How long the nodes may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long each node may take to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// The user's client's folder in the network's (and its log's name).
const USER_CLIENT: &str = "client";
/// The SOCKS5 proxy's folder.
const SOCKS5: &str = "socks5";
/// The exit service's folder.
const EXIT: &str = "exit";

/// What `umbra localnet` was asked.
pub(crate) struct Options {
    pub(crate) validators: usize,
    /// For a new network (none: one).
    pub(crate) monitors: Option<usize>,
    pub(crate) epoch_length: Duration,
    pub(crate) rotation_epochs: u32,
    pub(crate) dir: PathBuf,
    pub(crate) shape: Shape,
    pub(crate) demo: bool,
    pub(crate) demo_interval: Duration,
    pub(crate) traffic: TrafficPreset,
}

pub(crate) fn run(options: Options) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the umbra binary")?;
    let reused = options.dir.join(umbra::network::LAYOUT_FILE).exists();
    let mut layout = Layout::create_or_open_with_ledger(
        &options.dir,
        &options.shape,
        options.validators,
        options.monitors.unwrap_or(1),
    )?;
    if layout.validators.is_empty() {
        bail!(
            "{} holds a network with a static topology file (made by an older umbra); delete the folder to make a new one",
            options.dir.display()
        );
    }
    println!(
        "{} the network in {}",
        if reused { "Reusing" } else { "Created" },
        options.dir.display()
    );
    if let Some(asked) = options.monitors
        && asked != layout.monitors.len()
    {
        // genesis names the monitors, so only a new network can have another number
        println!(
            "This network was made with {} monitor(s); --monitors {asked} applies to a new network only (delete the folder to make one).",
            layout.monitors.len()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("umbra-localnet")
        .build()
        .context("starting the async runtime")?;
    // from here on, Ctrl-C and SIGTERM stop the network in order, even while it starts
    let stop = CancellationToken::new();
    let signals = runtime.block_on(async { crate::Signals::new() })?;
    runtime.spawn({
        let stop = stop.clone();
        async move {
            signals.recv().await;
            stop.cancel();
        }
    });
    let mut supervisor = Supervisor::default();
    let result = start_and_watch(
        &exe,
        &mut layout,
        &options,
        reused,
        &runtime,
        &stop,
        &mut supervisor,
    );
    println!();
    println!("Stopping every node...");
    let layers = runtime.block_on(current_layers(&layout));
    let stopped = supervisor.stop(STOP_GRACE, |name, stage| match stage {
        Stage::Layer(_) => Stage::Layer(layers.get(name).copied().unwrap_or(0)),
        other => other,
    });
    let unclean: Vec<String> = stopped
        .iter()
        .filter(|(_, status)| !status.success())
        .map(|(name, status)| format!("{name} ({status})"))
        .collect();
    if unclean.is_empty() && result.is_ok() {
        println!("Stopped cleanly. Run the same command to start this network again.");
    } else if unclean.is_empty() {
        println!("Stopped.");
    } else {
        println!(
            "Stopped; not cleanly: {}. See {}.",
            unclean.join(", "),
            layout.dir.join("logs").display()
        );
    }
    result
}

/// Buys bandwidth tickets into the network's clients' wallets (before each client starts: a
/// wallet is open in one process at a time), when the ledger demands them.
struct TicketBuyer {
    validators: Vec<umbra_net::directory::ValidatorUrl>,
    account: SigningKey,
}

impl TicketBuyer {
    /// The buyer, if the network demands tickets.
    async fn new(layout: &Layout) -> anyhow::Result<Option<TicketBuyer>> {
        let api = *layout
            .validators
            .first()
            .context("the network has no validator")?;
        let stats: umbra_ledger::api::TicketStatsView = LedgerClient::new(api)
            .get("/tickets")
            .await
            .context("reading the ticket rules from the validator")?;
        if !stats.tickets_required {
            return Ok(None);
        }
        let key = layout.tickets_key();
        let seed = read_key(&key).with_context(|| {
            format!(
                "the network demands bandwidth tickets but has no account to buy them with ({} is missing): delete {} to make a new network",
                key.display(),
                layout.dir.display()
            )
        })?;
        Ok(Some(TicketBuyer {
            validators: layout
                .validators
                .iter()
                .map(|address| umbra_net::directory::ValidatorUrl::from_address(*address))
                .collect(),
            account: SigningKey::from_seed(seed),
        }))
    }

    /// Fills `name`'s wallet (in `dir`) when it holds fewer than half of
    /// [`TICKETS_PER_CLIENT`]; finishes a purchase a crash left unfinished first.
    async fn top_up(&self, name: &str, dir: &Path) -> anyhow::Result<()> {
        umbra_net::files::create_private_dir(dir)?;
        let wallet =
            umbra_client_daemons::tickets::TicketWallet::open(&dir.join(daemon::TICKETS_FILE))?;
        wallet.resume(&self.validators, CHAIN_ID).await?;
        let unspent = wallet.counts()?.unspent;
        if unspent >= u64::from(TICKETS_PER_CLIENT / 2) {
            return Ok(());
        }
        let bought = wallet
            .buy(
                &self.validators,
                CHAIN_ID,
                &self.account,
                TICKETS_PER_CLIENT,
            )
            .await
            .with_context(|| format!("buying bandwidth tickets for {name}"))?;
        println!(
            "[tickets] bought {} for {name} ({} MB each, key period {})",
            bought.count,
            TICKET_BYTES >> 20,
            bought.period
        );
        Ok(())
    }
}

/// Starts the validators, registers the nodes, starts them and the user's daemons, then runs
/// the demo and watches every process until `stop` (or until one keeps dying).
fn start_and_watch(
    exe: &Path,
    layout: &mut Layout,
    options: &Options,
    reused: bool,
    runtime: &tokio::runtime::Runtime,
    stop: &CancellationToken,
    supervisor: &mut Supervisor,
) -> anyhow::Result<()> {
    start_validators(exe, layout, options, reused, supervisor, stop)?;
    runtime.block_on(register_nodes(layout))?;
    for node in &layout.nodes {
        let stage = match node.kind {
            Kind::Mix => Stage::Layer(node.layer.unwrap_or(0)),
            Kind::Gateway => Stage::Gateways,
        };
        let (exe, layout, node) = (exe.to_owned(), layout.clone(), node.clone());
        let log = layout.log_file(&node.name);
        let name = node.name.clone();
        supervisor.start(
            &name,
            stage,
            log,
            Box::new(move || Ok(layout.command(&exe, &node)?)),
        )?;
    }
    wait_until_up(supervisor, layout, stop)?;
    let current = runtime.block_on(wait_until_active(layout, stop))?;
    let buyer = runtime.block_on(TicketBuyer::new(layout))?;
    let top_up = |name: &str, dir: &Path| match &buyer {
        Some(buyer) => runtime.block_on(buyer.top_up(name, dir)),
        None => Ok(()),
    };
    let mut daemons = start_daemons(
        exe,
        layout,
        &current,
        options.traffic,
        supervisor,
        stop,
        &top_up,
    )?;
    daemons.monitors = start_monitors(exe, layout, supervisor, &top_up)?;
    daemons.explorer = Some(start_explorer(exe, layout, supervisor)?);
    print_summary(layout, &daemons, options);
    runtime.block_on(watch(supervisor, layout, &daemons, options, stop))
}

/// How often localnet's monitor sends a test packet, on average: with 2 mix nodes a layer and
/// epochs of 20 s (about 15 s of them measured), about 375 packets through each mix node an
/// epoch — what a score within ± 5 points at 95 % confidence needs for a node at 95 % (358,
/// `umbra_monitor::packets_per_node`), and enough to tell a node dropping half its packets
/// from a healthy one beyond doubt. They ride in slots the monitor's clients send anyway (50 a
/// second each, as any client's): half of those of its two clients.
const MONITOR_ROUTE_INTERVAL: Duration = Duration::from_millis(20);

/// Creates each network monitor on the first run (its account is one genesis names, its
/// settings fit the network's epochs) and starts it; where the monitors started serve their
/// evidence. A monitor made before whose port another program holds now moves to a free one.
fn start_monitors(
    exe: &Path,
    layout: &Layout,
    supervisor: &mut Supervisor,
    top_up: &TopUp<'_>,
) -> anyhow::Result<Vec<RunningMonitor>> {
    let mut running = Vec::new();
    for monitor in &layout.monitors {
        running.extend(start_monitor(exe, layout, monitor, supervisor, top_up)?);
    }
    Ok(running)
}

/// Creates `monitor` if new and starts it, unless the epochs are too short for it.
fn start_monitor(
    exe: &Path,
    layout: &Layout,
    monitor: &LocalMonitor,
    supervisor: &mut Supervisor,
    top_up: &TopUp<'_>,
) -> anyhow::Result<Option<RunningMonitor>> {
    let dir = layout.monitor_dir(monitor);
    let config = dir.join(umbra_monitor_daemon::config::CONFIG_FILE);
    let trust = TrustRoot::read(&layout.genesis_file())?;
    if !config.exists() {
        let ledger = layout
            .ledger_config()
            .context("the network has no validator")?;
        let mut settings = umbra_monitor_daemon::monitor_config_for_epoch(trust.epoch_length);
        settings.mean_route_interval = MONITOR_ROUTE_INTERVAL;
        umbra_monitor_daemon::init(
            &dir,
            umbra_monitor_daemon::InitOptions {
                ledger,
                genesis: &layout.genesis_file(),
                http: monitor.http,
                monitor: settings,
                account_seed: Some(read_key(&layout.monitor_key(monitor))?),
            },
        )?;
    }
    let daemon = umbra_monitor_daemon::MonitorDaemon::load(&dir)?;
    let settings = &daemon.config().monitor;
    let needs = settings.loss_deadline + settings.submit_margin;
    if needs >= trust.epoch_length {
        // it would measure nothing, and its clients would only load the machine
        println!(
            "No network monitor ({}): epochs of {} leave it no time to measure (it stops loss_deadline + submit_margin, {}, before each epoch's end; see {}).",
            monitor.name,
            humantime::format_duration(trust.epoch_length),
            humantime::format_duration(needs),
            config.display()
        );
        return Ok(None);
    }
    let http = free_listen_address(daemon.http_address(), &config, &monitor.name)?;
    top_up(&monitor.name, &dir)?;
    supervise_role(exe, layout, supervisor, &monitor.name, "monitor", &dir)?;
    Ok(Some(RunningMonitor { dir, http }))
}

/// The explorer's folder in the network's (and its log's name).
const EXPLORER: &str = "explorer";
/// Where localnet's explorer is served if the port is free: the explorer's default.
const EXPLORER_ADDRESS: SocketAddr = umbra_explorer::config::DEFAULT_HTTP_ADDRESS;
/// How often localnet's explorer reads the validator (besides right after each epoch's end):
/// often, as its epochs are short and the validator is on this machine.
const EXPLORER_REFRESH: Duration = Duration::from_secs(1);

/// Creates the explorer on the first run (following the validators, linking each monitor's
/// evidence) and starts it; returns where it serves its pages. An explorer made before whose
/// port another program holds now moves to a free one.
fn start_explorer(
    exe: &Path,
    layout: &Layout,
    supervisor: &mut Supervisor,
) -> anyhow::Result<SocketAddr> {
    let dir = layout.dir.join(EXPLORER);
    let config = dir.join(umbra_explorer::config::CONFIG_FILE);
    if !config.exists() {
        let ledger = layout
            .ledger_config()
            .context("the network has no validator")?;
        let monitors = layout
            .monitors
            .iter()
            .map(|monitor| {
                Ok(umbra_explorer::MonitorLink {
                    account: SigningKey::from_seed(read_key(&layout.monitor_key(monitor))?)
                        .public(),
                    evidence_url: format!("http://{}", monitor.http),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        umbra_explorer::init(
            &dir,
            umbra_explorer::InitOptions {
                ledger,
                genesis: &layout.genesis_file(),
                http: port_or_any(EXPLORER_ADDRESS.port())?,
                monitors,
            },
        )?;
        let mut explorer = umbra_explorer::Explorer::load(&dir)?.config().clone();
        explorer.refresh.interval = EXPLORER_REFRESH;
        umbra_net::files::write_private(
            &config,
            umbra_explorer::config::template(&explorer).as_bytes(),
        )?;
    }
    let http = free_listen_address(
        umbra_explorer::Explorer::load(&dir)?.http_address(),
        &config,
        "the explorer",
    )?;
    supervise_role(exe, layout, supervisor, EXPLORER, "explorer", &dir)?;
    Ok(http)
}

/// Starts `umbra <role> run --data-dir <dir>` under the supervisor as `name` (its log
/// `logs/<name>.log`), among the daemons that stop first.
fn supervise_role(
    exe: &Path,
    layout: &Layout,
    supervisor: &mut Supervisor,
    name: &str,
    role: &'static str,
    dir: &Path,
) -> anyhow::Result<()> {
    let launch_layout = layout.clone();
    let (exe, log_name, run_dir) = (exe.to_owned(), name.to_owned(), dir.to_owned());
    supervisor.start(
        name,
        Stage::Daemons,
        layout.log_file(name),
        Box::new(move || {
            let log = launch_layout.open_log(&log_name)?;
            let mut run = std::process::Command::new(&exe);
            run.args([role, "run", "--data-dir"])
                .arg(&run_dir)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(log);
            Ok(run)
        }),
    )?;
    Ok(())
}

/// Where a daemon made before listens: `http` if it is free, else a free port, written into
/// its `config` (and said, naming `name`).
fn free_listen_address(http: SocketAddr, config: &Path, name: &str) -> anyhow::Result<SocketAddr> {
    if std::net::TcpListener::bind(http).is_ok() {
        return Ok(http);
    }
    let free = port_or_any(0)?;
    move_listen_address(config, http, free)?;
    println!(
        "{http} is taken by another program: {name} listens on {free} instead (written to {})",
        config.display()
    );
    Ok(free)
}

/// A monitor started.
struct RunningMonitor {
    /// Its folder.
    dir: PathBuf,
    /// Where it serves its evidence, `/health` and `/metrics`.
    http: SocketAddr,
}

/// The current layer of each mix node (by name), from the validators; empty if they do not
/// answer in time.
async fn current_layers(layout: &Layout) -> HashMap<String, u8> {
    let Some(ledger) = layout.ledger_config() else {
        return HashMap::new();
    };
    let Ok(trust) = TrustRoot::read(&layout.genesis_file()) else {
        return HashMap::new();
    };
    let directory = Directory::new(ledger.validators, trust);
    let Ok(Ok(current)) = tokio::time::timeout(Duration::from_secs(2), directory.fetch()).await
    else {
        return HashMap::new();
    };
    layout
        .nodes
        .iter()
        .filter_map(|node| {
            let layer = current
                .topology
                .nodes()
                .iter()
                .find(|entry| entry.id.0 == node.id)?
                .layer()?;
            Some((node.name.clone(), layer.number()))
        })
        .collect()
}

/// The user's daemons, started after the nodes: the exit, the SOCKS5 proxy, the client.
struct Daemons {
    started: Vec<Daemon>,
    /// The network monitors started.
    monitors: Vec<RunningMonitor>,
    /// Where the explorer serves its pages.
    explorer: Option<SocketAddr>,
}

impl Daemons {
    fn get(&self, name: &str) -> Option<&Daemon> {
        self.started.iter().find(|d| d.name == name)
    }
}

/// One of the user's client daemons.
struct Daemon {
    name: &'static str,
    address: String,
    listen: Option<SocketAddr>,
    dir: PathBuf,
}

/// Starts the exit service (connecting to loopback too: the whole network is here), the
/// SOCKS5 proxy using it, and the client for applications; each is created on the first run,
/// then reused. The exit is on the last gateway of the current epoch and the others on the
/// first, so their traffic crosses the whole network. Returns once the proxy and the client
/// listen.
/// Fills a client's ticket wallet before it starts: its name and folder.
type TopUp<'a> = dyn Fn(&str, &Path) -> anyhow::Result<()> + 'a;

fn start_daemons(
    exe: &Path,
    layout: &Layout,
    current: &Current,
    preset: TrafficPreset,
    supervisor: &mut Supervisor,
    stop: &CancellationToken,
    top_up: &TopUp<'_>,
) -> anyhow::Result<Daemons> {
    let mut daemons = Daemons {
        started: Vec::new(),
        monitors: Vec::new(),
        explorer: None,
    };
    let exit = start_daemon(
        exe,
        layout,
        current,
        preset,
        supervisor,
        EXIT,
        0,
        top_up,
        || {
            Ok(daemon::NewRole::Exit {
                policy: None,
                insecure_allow_private: true,
            })
        },
    )?;
    let exit_address: umbra_sdk::ClientAddress =
        exit.address.parse().context("reading the exit's address")?;
    daemons.started.push(exit);
    daemons.started.push(start_daemon(
        exe,
        layout,
        current,
        preset,
        supervisor,
        SOCKS5,
        SOCKS5_PORT,
        top_up,
        || {
            Ok(daemon::NewRole::Socks5 {
                listen: port_or_any(SOCKS5_PORT)?,
                exit: exit_address,
            })
        },
    )?);
    daemons.started.push(start_daemon(
        exe,
        layout,
        current,
        preset,
        supervisor,
        USER_CLIENT,
        CLIENT_API_PORT,
        top_up,
        || {
            Ok(daemon::NewRole::Client {
                api: port_or_any(CLIENT_API_PORT)?,
            })
        },
    )?);
    for daemon in &daemons.started {
        if let Some(listen) = daemon.listen {
            wait_until_listening(supervisor, layout, daemon.name, listen, stop)?;
        }
    }
    Ok(daemons)
}

/// The port the user's client serves applications on, when it is free.
const CLIENT_API_PORT: u16 = 1977;
/// The port of the SOCKS5 proxy, when it is free.
const SOCKS5_PORT: u16 = 1080;

/// `127.0.0.1:port` if it is free, else any free port.
fn port_or_any(port: u16) -> anyhow::Result<SocketAddr> {
    Ok(match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(listener) => listener.local_addr()?,
        Err(_) => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?,
    })
}

/// Creates the daemon `name` (if new, in the role `role` says) and starts it. A daemon made
/// before whose port another program holds now moves to a free one (`preferred` if it can),
/// its configuration rewritten.
#[allow(clippy::too_many_arguments)]
fn start_daemon(
    exe: &Path,
    layout: &Layout,
    current: &Current,
    preset: TrafficPreset,
    supervisor: &mut Supervisor,
    name: &'static str,
    preferred: u16,
    top_up: &TopUp<'_>,
    role: impl FnOnce() -> anyhow::Result<daemon::NewRole<'static>>,
) -> anyhow::Result<Daemon> {
    let dir = layout.dir.join(name);
    if !dir.join(daemon::CONFIG_FILE).exists() {
        // of the gateways serving this epoch (with short epochs, not every one may be yet)
        let gateways: Vec<_> = current.topology.gateways().collect();
        let gateway = if name == EXIT {
            gateways.last()
        } else {
            gateways.first()
        }
        .context("no gateway serves the current epoch")?;
        let ledger = layout
            .ledger_config()
            .context("the network has no validator")?;
        daemon::init(
            &dir,
            daemon::InitSource::Ledger {
                ledger: &ledger,
                genesis: &layout.genesis_file(),
                topology: &current.topology,
            },
            &gateway.id.0.to_string(),
            role()?,
            preset,
        )?;
    }
    let mut daemon = daemon::ClientDaemon::load(&dir)?;
    if let Some(configured) = daemon.listen_address()
        && std::net::TcpListener::bind(configured).is_err()
    {
        let free = port_or_any(preferred)?;
        let config = dir.join(daemon::CONFIG_FILE);
        move_listen_address(&config, configured, free)?;
        daemon = daemon::ClientDaemon::load(&dir)?;
        if daemon.listen_address() != Some(free) {
            bail!(
                "{configured} is taken by another program, and {} could not be moved to {free}: set its listen_address to a free port",
                config.display()
            );
        }
        println!(
            "{configured} is taken by another program: {name} listens on {free} instead (written to {})",
            config.display()
        );
    }
    let info = Daemon {
        name,
        address: daemon.address().to_string(),
        listen: daemon.listen_address(),
        dir: dir.clone(),
    };
    top_up(name, &dir)?;
    let command = daemon.role().command();
    let launch_layout = layout.clone();
    let exe = exe.to_owned();
    supervisor.start(
        name,
        Stage::Daemons,
        layout.log_file(name),
        Box::new(move || {
            let log = launch_layout.open_log(name)?;
            let mut run = std::process::Command::new(&exe);
            run.args([command, "run", "--data-dir"])
                .arg(&dir)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(log);
            Ok(run)
        }),
    )?;
    Ok(info)
}

/// Rewrites the `listen_address = "<from>"` line of a daemon's configuration to `to`.
fn move_listen_address(config: &Path, from: SocketAddr, to: SocketAddr) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let quoted = format!("\"{from}\"");
    let rewritten: Vec<String> = text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("listen_address") && line.contains(&quoted) {
                line.replace(&quoted, &format!("\"{to}\""))
            } else {
                line.to_owned()
            }
        })
        .collect();
    std::fs::write(config, rewritten.join("\n") + "\n")
        .with_context(|| format!("writing {}", config.display()))
}

/// Waits until the daemon `name` accepts connections at `listen`; fails if it exits first.
fn wait_until_listening(
    supervisor: &mut Supervisor,
    layout: &Layout,
    name: &str,
    listen: SocketAddr,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if let Some((exited, status)) = supervisor.exited() {
            return Err(stopped_while_starting(layout, &exited, status));
        }
        if std::net::TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if stop.is_cancelled() {
            bail!("stopped while starting");
        }
        if started.elapsed() > START_TIMEOUT {
            bail!(
                "{name} does not listen at {listen} after {START_TIMEOUT:?}; see {}",
                layout.log_file(name).display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The error for a process that exited while the network started: its log's last lines.
fn stopped_while_starting(
    layout: &Layout,
    name: &str,
    status: std::process::ExitStatus,
) -> anyhow::Error {
    let log = layout.log_file(name);
    anyhow::anyhow!(
        "{name} stopped while starting ({status}). Its log ({}) ends:\n{}",
        log.display(),
        last_lines(&log, 5)
    )
}

/// What each node operator's genesis account holds.
const OPERATOR_BALANCE: Amount = Amount::from_umb(1_000);
/// What the account that buys the clients' tickets holds in genesis.
const TICKETS_BALANCE: Amount = Amount::from_umb(10_000);
/// Bytes a ticket buys on a local network: less than Nym's 200 MB, so a client spends a few in
/// an hour's run and the report shows them redeemed.
const TICKET_BYTES: u64 = 50 << 20;
/// Tickets bought for each client at start, when its wallet holds fewer than half of them.
const TICKETS_PER_CLIENT: u32 = 40;
/// Each node's pledge.
const PLEDGE: Amount = Amount::from_umb(100);
/// The stake the rewards are measured against: a local network's few nodes, pledging 100 UMB
/// each, hold a real share of it (Nym's 500 M would leave each node's reward far below its
/// operating cost, so that its delegators never earned), and a node is saturated at about
/// 1,042 UMB of stake.
const STAKING_SUPPLY: Amount = Amount::from_umb(250_000);
/// The chain id of a local network.
const CHAIN_ID: &str = "umbra-localnet";
/// How long epoch 0 lasts after the network is made: long enough to register every node, so
/// epoch 1 has them all, short enough not to keep the user waiting.
const FIRST_EPOCH: Duration = Duration::from_secs(8);

/// The ledger of the network: its validators (one runs solo, several run BFT consensus), made
/// on the first run with a genesis that funds every node operator's account, started as
/// processes, up when this returns.
fn start_validators(
    exe: &Path,
    layout: &mut Layout,
    options: &Options,
    reused: bool,
    supervisor: &mut Supervisor,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let count = layout.validators.len();
    if reused && count != options.validators && options.validators != 1 {
        bail!(
            "{} holds a network with {count} validator(s); delete the folder to make one with {}",
            options.dir.display(),
            options.validators
        );
    }
    let names: Vec<String> = (1..=count).map(|n| format!("validator-{n}")).collect();
    let dirs: Vec<PathBuf> = names.iter().map(|name| layout.dir.join(name)).collect();
    if !reused || !dirs[0].join(umbra_validator::CONFIG_FILE).exists() {
        make_validators(layout, &dirs, options)?;
    }
    for ((name, dir), api) in names.iter().zip(dirs).zip(layout.validators.clone()) {
        let (exe, launch_layout, launch_name) = (exe.to_owned(), layout.clone(), name.clone());
        supervisor.start(
            name,
            Stage::Validators,
            layout.log_file(name),
            Box::new(move || {
                let log = launch_layout.open_log(&launch_name)?;
                let mut command = std::process::Command::new(&exe);
                command
                    .args(["validator", "run", "--data-dir"])
                    .arg(&dir)
                    .stdin(std::process::Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log);
                Ok(command)
            }),
        )?;
        let started = Instant::now();
        while get(api, "/health").is_none() {
            if let Some((exited, status)) = supervisor.exited() {
                return Err(stopped_while_starting(layout, &exited, status));
            }
            if stop.is_cancelled() {
                bail!("stopped while starting");
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "{name} did not answer at http://{api} within {START_TIMEOUT:?}; see {}",
                    layout.log_file(name).display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Makes the validators' folders and the chain's genesis: an account for every node
/// operator, and an epoch 0 that ends soon after the nodes are registered.
fn make_validators(layout: &Layout, dirs: &[PathBuf], options: &Options) -> anyhow::Result<()> {
    let mut params = Params {
        epoch_length_ms: options.epoch_length.as_millis() as u64,
        rotation_epochs: options.rotation_epochs.max(1),
        staking_supply: STAKING_SUPPLY,
        ..Params::default()
    };
    // clients pay for bandwidth: the whole loop of tickets on one machine
    params.tickets.required = true;
    params.tickets.bytes = TICKET_BYTES;
    let several = dirs.len() > 1;
    let p2p = if several {
        dirs.iter()
            .map(|_| umbra::network::free_port())
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    for (index, dir) in dirs.iter().enumerate() {
        let others = |addresses: &[SocketAddr]| -> Vec<SocketAddr> {
            addresses
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(_, address)| *address)
                .collect()
        };
        let consensus = several.then(|| umbra_validator::bft::ConsensusSettings {
            peers: others(&p2p),
            relay_to: others(&layout.validators),
            ..umbra_validator::bft::ConsensusSettings::new(p2p[index])
        });
        umbra_validator::init(
            dir,
            &umbra_validator::InitOptions {
                listen_address: layout.validators[index],
                genesis: None,
                chain_id: CHAIN_ID.into(),
                params: params.clone(),
                consensus,
            },
        )?;
    }
    let mut genesis = if several {
        umbra_validator::build_genesis(dirs, CHAIN_ID, params)?
    } else {
        umbra_validator::read_genesis(&dirs[0].join(umbra_validator::GENESIS_FILE))?
    };
    for node in &layout.nodes {
        let key = SigningKey::from_seed(read_key(&layout.operator_key(node))?);
        genesis.accounts.push(GenesisAccount {
            address: key.public(),
            balance: OPERATOR_BALANCE,
        });
    }
    for monitor in &layout.monitors {
        let key = SigningKey::from_seed(read_key(&layout.monitor_key(monitor))?);
        genesis.monitors.push(key.public());
    }
    let buyer = match read_key(&layout.tickets_key()) {
        Ok(seed) => SigningKey::from_seed(seed),
        Err(_) => {
            let key = SigningKey::generate(&mut rand::rng());
            write_new_key(&layout.tickets_key(), &key.seed())?;
            key
        }
    };
    genesis.accounts.push(GenesisAccount {
        address: buyer.public(),
        balance: TICKETS_BALANCE,
    });
    let first = (FIRST_EPOCH.as_millis() as u64).min(genesis.params.epoch_length_ms);
    genesis.genesis_time_ms = genesis
        .genesis_time_ms
        .saturating_sub(genesis.params.epoch_length_ms - first);
    for dir in dirs {
        let path = dir.join(umbra_validator::GENESIS_FILE);
        std::fs::write(&path, genesis.to_json())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    layout.install_genesis(&dirs[0].join(umbra_validator::GENESIS_FILE))?;
    Ok(())
}

/// Registers and bonds every node not yet registered, each with its operator's account.
async fn register_nodes(layout: &mut Layout) -> anyhow::Result<()> {
    let api = *layout
        .validators
        .first()
        .context("the network has no validator")?;
    let client = LedgerClient::new(api);
    let mut changed = false;
    for node in layout.nodes.clone() {
        let owner = SigningKey::from_seed(read_key(&layout.operator_key(&node))?);
        let registration = Registration {
            kind: match node.kind {
                Kind::Mix => umbra_ledger::NodeKind::Mix,
                Kind::Gateway => umbra_ledger::NodeKind::Gateway,
            },
            mix_address: node.listen,
            client_address: node.client,
            moniker: node.name.clone(),
            pledge: PLEDGE,
        };
        let done = registration::register(&layout.node_dir(&node), &client, &owner, &registration)
            .await
            .with_context(|| format!("registering {}", node.name))?;
        if done.node.0 != node.id {
            layout.set_node_id(&node.name, done.node.0);
            changed = true;
        }
    }
    if changed {
        layout.save()?;
    }
    Ok(())
}

/// Waits until the validator serves a topology with every layer and a gateway (the epoch after
/// registration), saying so.
async fn wait_until_active(layout: &Layout, stop: &CancellationToken) -> anyhow::Result<Current> {
    let ledger = layout
        .ledger_config()
        .context("the network has no validator")?;
    let directory = Directory::new(ledger.validators, TrustRoot::read(&layout.genesis_file())?);
    let started = Instant::now();
    let mut said = false;
    loop {
        if let Ok(current) = directory.fetch().await {
            let topology = &current.topology;
            let layers: std::collections::BTreeSet<u8> = topology
                .nodes()
                .iter()
                .filter_map(|node| node.layer().map(|layer| layer.number()))
                .collect();
            let layers = layers.len() == 3;
            if layers && topology.gateways().next().is_some() {
                return Ok(current);
            }
            if !said {
                said = true;
                eprintln!(
                    "Waiting for the next epoch, the first with the registered nodes (epoch {} ends in {} s)...",
                    current.epoch_number().unwrap_or(0),
                    current.epoch.map_or(0, |epoch| epoch
                        .end_ms
                        .saturating_sub(umbra_net::directory::now_ms())
                        / 1000)
                );
            }
        }
        if stop.is_cancelled() {
            bail!("stopped while starting");
        }
        if started.elapsed() > START_TIMEOUT * 3 {
            bail!(
                "no epoch with every layer and a gateway within {:?}",
                START_TIMEOUT * 3
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for every node's `/health`, showing progress; fails if one exits or takes too long.
fn wait_until_up(
    supervisor: &mut Supervisor,
    layout: &Layout,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let total = layout.nodes.len();
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut shown = usize::MAX;
    loop {
        if let Some((name, status)) = supervisor.exited() {
            if tty {
                eprintln!();
            }
            return Err(stopped_while_starting(layout, &name, status));
        }
        let up = layout.nodes.iter().filter(|n| health(n.http)).count();
        if up != shown {
            shown = up;
            let width = 30;
            let filled = width * up / total;
            let bar = format!(
                "[{}{}] {up}/{total} nodes up",
                "#".repeat(filled),
                "-".repeat(width - filled)
            );
            if tty {
                eprint!("\r{bar}");
                let _ = std::io::stderr().flush();
            } else {
                eprintln!("{bar}");
            }
        }
        if up == total {
            if tty {
                eprintln!();
            }
            return Ok(());
        }
        if stop.is_cancelled() {
            if tty {
                eprintln!();
            }
            bail!("stopped while starting");
        }
        if started.elapsed() > START_TIMEOUT {
            let down: Vec<&String> = layout
                .nodes
                .iter()
                .filter(|n| !health(n.http))
                .map(|n| &n.name)
                .collect();
            bail!(
                "after {START_TIMEOUT:?}, not up: {down:?}; see their logs in {}",
                layout.dir.join("logs").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn last_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn print_summary(layout: &Layout, daemons: &Daemons, options: &Options) {
    println!();
    let sequencer = if layout.validators.len() == 1 {
        "solo".to_owned()
    } else {
        format!("BFT, 1 of {}", layout.validators.len())
    };
    // a reused network keeps the epochs it was made with, whatever the options say now
    let (epoch_length, rotation_epochs) = TrustRoot::read(&layout.genesis_file())
        .map_or((options.epoch_length, options.rotation_epochs), |trust| {
            (trust.epoch_length, trust.rotation_epochs)
        });
    for (n, api) in layout.validators.iter().enumerate() {
        println!(
            "validator-{} ({sequencer})  API http://{api}  (epochs of {}, Sphinx keys rotate every {} epochs)",
            n + 1,
            humantime::format_duration(epoch_length),
            rotation_epochs
        );
    }
    if let Some(explorer) = daemons.explorer {
        println!(
            "Explorer  http://{explorer}/  (the network, its nodes, stake, performance and rewards; docs/explorer.md)"
        );
    }
    println!(
        "{:<11} {:<9} {:<22} {:<27} metrics",
        "node", "role", "node links", "clients"
    );
    for node in &layout.nodes {
        let role = match node.kind {
            Kind::Mix => format!("mix #{}", node.id),
            Kind::Gateway => format!("gw #{}", node.id),
        };
        let clients = node
            .client
            .map_or_else(|| "-".to_owned(), |address| format!("ws://{address}"));
        println!(
            "{:<11} {:<9} {:<22} {:<27} http://{}/metrics",
            node.name, role, node.listen, clients, node.http
        );
    }
    println!();
    println!(
        "Layers are drawn anew each epoch: http://<metrics>/health shows each mix node's layer."
    );
    println!("Genesis:  {}", layout.genesis_file().display());
    println!("Logs:     {}", layout.dir.join("logs").display());
    println!();
    if let Some(client) = daemons.get(USER_CLIENT)
        && let Some(api) = client.listen
    {
        println!(
            "Your client ({}) serves applications at ws://{api} (docs/client-api.md).",
            client.dir.display(),
        );
        println!("Its address: {}", client.address);
    }
    if let Some(proxy) = daemons.get(SOCKS5)
        && let Some(listen) = proxy.listen
    {
        println!(
            "SOCKS5 proxy: socks5h://{listen} (through the mixnet to the exit service in {}, which may reach this machine's own services too)",
            layout.dir.join(EXIT).display()
        );
        println!("  try: curl -x socks5h://{listen} http://<a server on this machine>/");
    }
    if let Some(exit) = daemons.get(EXIT) {
        println!(
            "Exit service's address (for the SDK's streams, crates/sdk/examples/json_rpc.rs): {}",
            exit.address
        );
    }
    for monitor in &daemons.monitors {
        println!(
            "Network monitor ({}): evidence of each epoch at http://{http}/evidence; the last scores at http://{http}/health (docs/monitor.md)",
            monitor.dir.display(),
            http = monitor.http,
        );
    }
    if daemons.monitors.len() > 1 {
        println!(
            "The ledger records each node's lower median of the {} monitors' scores: one monitor, fooled or lying, cannot move it.",
            daemons.monitors.len()
        );
    }
    if layout.monitors.is_empty() {
        println!(
            "No network monitor: this network's genesis names none (it was made with --monitors 0, or by an older umbra; delete the folder to make a network with one)."
        );
    }
    println!();
    if let Some(api) = layout.validators.first() {
        // the gateways demand bandwidth tickets: each chatter buys a few with the tickets account
        let chat = format!(
            "cargo run --release -p umbra-sdk --example chat -- --validator http://{api} --genesis {} --account {}",
            layout.genesis_file().display(),
            layout.tickets_key().display()
        );
        println!("Chat through it, in two more terminals (the first prints bob's address):");
        println!(
            "  {chat} --storage {}",
            layout.dir.join("chat-bob").display()
        );
        println!(
            "  {chat} --storage {} --to <bob's address>",
            layout.dir.join("chat-alice").display()
        );
    }
    println!("Ctrl-C stops everything.");
    println!();
}

/// Runs the demo and watches every process until Ctrl-C: one that exits is reported at once
/// and started again; one that keeps exiting stops the network.
async fn watch(
    supervisor: &mut Supervisor,
    layout: &Layout,
    daemons: &Daemons,
    options: &Options,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let demo = if options.demo {
        match Demo::start(layout).await {
            Ok(demo) => Some(demo),
            Err(error) => {
                println!("[demo] cannot start the demo clients: {error:#}");
                None
            }
        }
    } else {
        None
    };
    let mut demo = demo;
    let mut tick = tokio::time::interval(options.demo_interval);
    let mut report = tokio::time::interval(Duration::from_secs(30));
    report.tick().await;
    let mut supervise = tokio::time::interval(Duration::from_millis(100));
    let result = loop {
        tokio::select! {
            () = stop.cancelled() => break Ok(()),
            _ = tick.tick() => {
                if let Some(demo) = demo.as_mut() {
                    demo.send().await;
                }
            }
            _ = report.tick() => print_report(layout, &daemons.monitors),
            line = next_demo_event(&mut demo) => {
                if let Some(line) = line {
                    println!("{line}");
                }
            }
            _ = supervise.tick() => {
                if let Err(error) = supervise_once(supervisor) {
                    break Err(error);
                }
            }
        }
    };
    if let Some(demo) = demo {
        demo.stop().await;
    }
    result
}

/// Reports what the supervisor noticed; an error when a process keeps exiting.
fn supervise_once(supervisor: &mut Supervisor) -> anyhow::Result<()> {
    for event in supervisor.poll(Instant::now()) {
        match event {
            Event::Exited {
                name,
                status,
                log,
                restart_in,
            } => println!(
                "[net] {name} stopped unexpectedly ({status}); starting it again in {} ms (its log: {})",
                restart_in.as_millis(),
                log.display()
            ),
            Event::Restarted { name } => println!("[net] {name} started again"),
            Event::GaveUp {
                name,
                status,
                times,
                log,
            } => bail!(
                "{name} stopped {times} times within {} s (last: {status}), so the network stops. Its log ({}) ends:\n{}\nFix what it says, then run the same command again.",
                Restarts::WINDOW.as_secs(),
                log.display(),
                last_lines(&log, 5)
            ),
        }
    }
    Ok(())
}

async fn next_demo_event(demo: &mut Option<Demo>) -> Option<String> {
    match demo {
        Some(demo) => demo.next().await,
        None => std::future::pending().await,
    }
}

/// Totals over every node's metrics, and each node's last score: the monitor's, or, with
/// several, what the ledger recorded.
fn print_report(layout: &Layout, monitors: &[RunningMonitor]) {
    let mut forwarded = 0.0;
    let mut clients = 0.0;
    let mut spent = 0.0;
    let mut up = 0;
    for node in &layout.nodes {
        let Some(page) = get(node.http, "/metrics") else {
            continue;
        };
        up += 1;
        forwarded += sample(&page, "umbra_mixnode_packets_forwarded_total").unwrap_or(0.0);
        clients += sample(&page, "umbra_gateway_clients_connected").unwrap_or(0.0);
        spent += sample(&page, "umbra_gateway_tickets_accepted_total").unwrap_or(0.0);
    }
    println!(
        "[net] {up}/{} nodes answering; mix nodes have forwarded {forwarded:.0} packets; {clients:.0} clients connected",
        layout.nodes.len()
    );
    if let Some(line) = tickets_line(layout, spent) {
        println!("{line}");
    }
    let line = match monitors {
        [] => None,
        [monitor] => get(monitor.http, "/health").and_then(|health| scores_line(layout, &health)),
        several => layout
            .validators
            .first()
            .and_then(|api| get(*api, "/epochs"))
            .and_then(|epochs| recorded_line(layout, several.len(), &epochs)),
    };
    if let Some(line) = line {
        println!("{line}");
    }
}

/// Tickets bought and redeemed (the ledger's count) and spent (`spent`, the gateways'), when
/// the network demands them.
fn tickets_line(layout: &Layout, spent: f64) -> Option<String> {
    let stats = get(*layout.validators.first()?, "/tickets")?;
    let stats: umbra_ledger::api::TicketStatsView = serde_json::from_str(&stats).ok()?;
    stats.tickets_required.then(|| {
        format!(
            "[tickets] {} bought, {spent:.0} spent at gateways, {} redeemed by their operators ({} double spends); fee pool {}",
            stats.bought, stats.redeemed, stats.double_spends, stats.fee_pool
        )
    })
}

/// The name of the node with the ledger's id `id`.
fn node_name(layout: &Layout, id: u64) -> String {
    layout
        .nodes
        .iter()
        .find(|n| u64::from(n.id) == id)
        .map_or_else(|| format!("#{id}"), |n| n.name.clone())
}

/// The monitor's last scores, one per node by name, from its `/health`.
fn scores_line(layout: &Layout, health: &str) -> Option<String> {
    let health: serde_json::Value = serde_json::from_str(health).ok()?;
    let last = health.get("last_report")?;
    let epoch = last.get("epoch")?.as_u64()?;
    let scores: Vec<String> = last
        .get("nodes")?
        .as_array()?
        .iter()
        .filter_map(|node| {
            let name = node_name(layout, node.get("node")?.as_u64()?);
            Some(
                match node.get("score").and_then(serde_json::Value::as_f64) {
                    Some(score) => format!("{name} {:.1}%", score * 100.0),
                    None => format!("{name} unscored"),
                },
            )
        })
        .collect();
    Some(format!(
        "[monitor] scores of epoch {epoch}: {}",
        scores.join(", ")
    ))
}

/// The performance the ledger recorded for each node in the last epoch it reported, from a
/// validator's `/epochs`: the lower median of the `monitors` monitors' scores, or, for a node
/// none measured, its last performance kept.
fn recorded_line(layout: &Layout, monitors: usize, epochs: &str) -> Option<String> {
    let epochs: serde_json::Value = serde_json::from_str(epochs).ok()?;
    let last = epochs
        .as_array()?
        .iter()
        .max_by_key(|report| report.get("epoch").and_then(serde_json::Value::as_u64))?;
    let epoch = last.get("epoch")?.as_u64()?;
    let mut nodes: Vec<(u64, String)> = last
        .get("nodes")?
        .as_array()?
        .iter()
        .filter_map(|node| {
            let id = node.get("node")?.as_u64()?;
            let percent = node.get("performance")?.as_u64()? as f64 / 10_000.0;
            let measured = node.get("measured")?.as_bool()?;
            Some((
                id,
                format!(
                    "{} {percent:.1}%{}",
                    node_name(layout, id),
                    if measured { "" } else { " (kept)" }
                ),
            ))
        })
        .collect();
    // in the layout's order (the ledger's is the active set's), so epochs read alike
    let place = |id: u64| {
        layout
            .nodes
            .iter()
            .position(|node| u64::from(node.id) == id)
            .unwrap_or(usize::MAX)
    };
    nodes.sort_by_key(|(id, _)| (place(*id), *id));
    let scores: Vec<String> = nodes.into_iter().map(|(_, score)| score).collect();
    Some(format!(
        "[monitor] performance the ledger recorded for epoch {epoch}, the lower median of {monitors} monitors' scores: {}",
        scores.join(", ")
    ))
}

/// Two clients on different gateways: alice asks, bob answers through alice's SURBs.
struct Demo {
    alice: MixnetClient,
    bob: MixnetClient,
    asked: HashMap<u64, Instant>,
    next: u64,
}

impl Demo {
    async fn start(layout: &Layout) -> anyhow::Result<Demo> {
        let ledger = layout
            .ledger_config()
            .context("the network has no validator")?;
        let builder =
            || ClientBuilder::from_ledger(ledger.validators.clone(), &layout.genesis_file());
        let gateways: Vec<String> = layout
            .nodes
            .iter()
            .filter(|node| node.kind == Kind::Gateway)
            .map(|node| node.id.to_string())
            .collect();
        let gateway = |i: usize| gateways[i % gateways.len()].clone();
        if let Some(buyer) = TicketBuyer::new(layout).await? {
            buyer
                .top_up("alice", &layout.dir.join("demo-alice"))
                .await?;
            buyer.top_up("bob", &layout.dir.join("demo-bob")).await?;
        }
        let alice = builder()?
            .storage(&layout.dir.join("demo-alice"))
            .gateway(gateway(0))
            .connect()
            .await?;
        let bob = builder()?
            .storage(&layout.dir.join("demo-bob"))
            .gateway(gateway(1))
            .connect()
            .await?;
        println!(
            "[demo] alice (gateway {}) asks bob (gateway {}) a question every few seconds; bob answers through the SURBs alice attaches, never learning her address",
            gateway(0),
            gateway(1)
        );
        Ok(Demo {
            alice,
            bob,
            asked: HashMap::new(),
            next: 1,
        })
    }

    async fn send(&mut self) {
        let n = self.next;
        self.next += 1;
        let question = format!("question {n}");
        match self
            .alice
            .send_with_surbs(&self.bob.address(), question, 2)
            .await
        {
            Ok(_) => {
                self.asked.insert(n, Instant::now());
            }
            Err(error) => println!("[demo] alice cannot send: {error}"),
        }
    }

    /// The next line to print.
    async fn next(&mut self) -> Option<String> {
        tokio::select! {
            event = self.bob.next_event() => match event? {
                ClientEvent::Received { message, reply_to } => {
                    let text = String::from_utf8_lossy(&message).into_owned();
                    let n = text.strip_prefix("question ").and_then(|n| n.parse::<u64>().ok());
                    let latency = n
                        .and_then(|n| self.asked.get(&n))
                        .map_or_else(String::new, |at| format!(" in {} ms", at.elapsed().as_millis()));
                    // answered on a task of its own: this future is raced in a select! and
                    // may be dropped at any await, which would lose this line
                    if let Some(tag) = reply_to {
                        let (bob, answer) = (self.bob.sender(), format!("answer to {text}"));
                        tokio::spawn(async move {
                            if let Err(error) = bob.reply(tag, answer).await {
                                println!("[demo] bob cannot answer: {error}");
                            }
                        });
                    }
                    Some(format!("[demo] alice -> bob    {text:?} arrived{latency}"))
                }
                ClientEvent::Disconnected { reason } => Some(format!("[demo] bob lost his gateway: {reason}")),
                _ => None,
            },
            event = self.alice.next_event() => match event? {
                ClientEvent::Reply { message, .. } => {
                    let text = String::from_utf8_lossy(&message).into_owned();
                    let n = text.strip_prefix("answer to question ").and_then(|n| n.parse::<u64>().ok());
                    let latency = n
                        .and_then(|n| self.asked.remove(&n))
                        .map_or_else(String::new, |at| format!(", {} ms after the question", at.elapsed().as_millis()));
                    Some(format!("[demo] bob -> alice    {text:?} arrived through a SURB{latency}"))
                }
                ClientEvent::Failed { reason, .. } => Some(format!("[demo] a message failed: {reason}")),
                ClientEvent::Disconnected { reason } => Some(format!("[demo] alice lost her gateway: {reason}")),
                _ => None,
            },
        }
    }

    async fn stop(self) {
        self.alice.disconnect().await;
        self.bob.disconnect().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use umbra::network::LocalNode;

    fn layout() -> Layout {
        let node = |name: &str, id| LocalNode {
            name: name.to_owned(),
            id,
            kind: Kind::Mix,
            layer: Some(1),
            listen: "127.0.0.1:1".parse().unwrap(),
            client: None,
            http: "127.0.0.1:2".parse().unwrap(),
        };
        Layout {
            dir: PathBuf::new(),
            nodes: vec![node("mix-1-1", 1), node("mix-1-2", 2)],
            validators: Vec::new(),
            monitors: Vec::new(),
        }
    }

    #[test]
    fn the_report_shows_what_the_ledger_recorded_in_its_last_epoch() {
        let epochs = r#"[
            {"epoch": 3, "nodes": [{"node": 1, "performance": 500000, "measured": true}]},
            {"epoch": 4, "nodes": [{"node": 7, "performance": 1000000, "measured": true},
                                   {"node": 2, "performance": 1000000, "measured": false},
                                   {"node": 1, "performance": 991000, "measured": true}]}
        ]"#;
        assert_eq!(
            recorded_line(&layout(), 3, epochs).unwrap(),
            "[monitor] performance the ledger recorded for epoch 4, the lower median of 3 monitors' scores: mix-1-1 99.1%, mix-1-2 100.0% (kept), #7 100.0%"
        );
        assert_eq!(recorded_line(&layout(), 3, "[]"), None);
    }
}
