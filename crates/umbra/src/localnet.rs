//! `umbra localnet`: a whole mixnet on this machine, each node its own process, with demo
//! traffic and a client for the user's own applications.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use umbra_client::TrafficPreset;
use umbra_net::client_daemon;
use umbra_net::localnet::{Kind, Layout, Processes, Shape, get};
use umbra_net::metrics::sample;
use umbra_sdk::{ClientBuilder, ClientEvent, MixnetClient};

/// How long the nodes may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long each node may take to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// The user's client's folder in the network's.
const USER_CLIENT: &str = "client";

/// What `umbra localnet` was asked.
pub(crate) struct Options {
    pub(crate) dir: PathBuf,
    pub(crate) shape: Shape,
    pub(crate) demo: bool,
    pub(crate) demo_interval: Duration,
}

pub(crate) fn run(options: Options) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the umbra binary")?;
    let reused = options.dir.join(umbra_net::localnet::LAYOUT_FILE).exists();
    let layout = Layout::create_or_open(&options.dir, &options.shape)?;
    println!(
        "{} the network in {}",
        if reused { "Reusing" } else { "Created" },
        options.dir.display()
    );
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
    let mut processes = Processes::new(&exe, layout.clone());
    processes.start_all()?;
    let user = start_user_client(&exe, &layout)?;
    let mut user = Some(user);
    let result = match wait_until_up(&mut processes, &stop) {
        Ok(()) => {
            print_summary(&layout, user.as_ref().map(|u| &u.1));
            runtime.block_on(watch(&mut processes, &layout, &options, &stop))
        }
        Err(error) => Err(error),
    };
    println!();
    println!("Stopping every node...");
    if let Some((mut child, _)) = user.take() {
        terminate(&mut child);
    }
    let stopped = processes.stop_all(STOP_GRACE);
    let unclean: Vec<String> = stopped
        .iter()
        .filter(|(_, status)| !status.success())
        .map(|(name, status)| format!("{name} ({status})"))
        .collect();
    if unclean.is_empty() {
        println!("Stopped cleanly. Run the same command to start this network again.");
    } else {
        println!(
            "Stopped; not cleanly: {}. See {}.",
            unclean.join(", "),
            layout.dir.join("logs").display()
        );
    }
    result
}

/// The user's client daemon: created on the first run, then reused.
fn start_user_client(
    exe: &Path,
    layout: &Layout,
) -> anyhow::Result<(std::process::Child, UserClient)> {
    let dir = layout.dir.join(USER_CLIENT);
    if !dir.join(client_daemon::CONFIG_FILE).exists() {
        let gateway = layout
            .nodes
            .iter()
            .find(|n| n.kind == Kind::Gateway)
            .context("the network has no gateway")?;
        let api = match std::net::TcpListener::bind("127.0.0.1:1977") {
            Ok(listener) => listener.local_addr()?,
            Err(_) => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?,
        };
        client_daemon::init(
            &dir,
            &layout.topology_file(),
            &gateway.id.to_string(),
            api,
            TrafficPreset::Nym,
        )?;
    }
    let daemon = client_daemon::ClientDaemon::load(&dir)?;
    let info = UserClient {
        address: daemon.address().to_string(),
        api: daemon.config().api.listen_address,
        dir: dir.clone(),
    };
    let log = layout.open_log(USER_CLIENT)?;
    let mut command = std::process::Command::new(exe);
    command
        .args(["client", "run", "--data-dir"])
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command.spawn().context("starting the client")?;
    Ok((child, info))
}

struct UserClient {
    address: String,
    api: SocketAddr,
    dir: PathBuf,
}

fn terminate(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for every node's `/health`, showing progress; fails if one exits or takes too long.
fn wait_until_up(processes: &mut Processes, stop: &CancellationToken) -> anyhow::Result<()> {
    let names: Vec<String> = processes
        .layout()
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect();
    let total = names.len();
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut shown = usize::MAX;
    loop {
        if let Some((name, status)) = processes.exited().into_iter().next() {
            let log = processes.layout().log_file(&name);
            let tail = last_lines(&log, 5);
            bail!(
                "{name} stopped while starting ({status}). Its log ({}) ends:\n{tail}",
                log.display()
            );
        }
        let up = names.iter().filter(|n| processes.is_healthy(n)).count();
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
            let down: Vec<&String> = names.iter().filter(|n| !processes.is_healthy(n)).collect();
            bail!(
                "after {START_TIMEOUT:?}, not up: {down:?}; see their logs in {}",
                processes.layout().dir.join("logs").display()
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

fn print_summary(layout: &Layout, user: Option<&UserClient>) {
    println!();
    println!(
        "{:<11} {:<9} {:<22} {:<27} metrics",
        "node", "role", "node links", "clients"
    );
    for node in &layout.nodes {
        let role = match (node.kind, node.layer) {
            (Kind::Mix, Some(layer)) => format!("layer {layer}"),
            _ => "gateway".to_owned(),
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
    println!("Topology: {}", layout.topology_file().display());
    println!("Logs:     {}", layout.dir.join("logs").display());
    if let Some(user) = user {
        println!();
        println!(
            "Your client ({}) serves applications at ws://{} (docs/client-api.md).",
            user.dir.display(),
            user.api
        );
        println!("Its address: {}", user.address);
    }
    println!();
    println!(
        "Chat through it: cargo run -p umbra-sdk --example chat -- --topology {}",
        layout.topology_file().display()
    );
    println!("Ctrl-C stops everything.");
    println!();
}

/// Runs the demo and watches the nodes until Ctrl-C.
async fn watch(
    processes: &mut Processes,
    layout: &Layout,
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
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                if let Some(demo) = demo.as_mut() {
                    demo.send().await;
                }
            }
            _ = report.tick() => print_report(layout),
            line = next_demo_event(&mut demo) => {
                if let Some(line) = line {
                    println!("{line}");
                }
            }
        }
        for (name, status) in processes.exited() {
            println!(
                "[net] {name} stopped unexpectedly ({status}); see {}",
                layout.log_file(&name).display()
            );
        }
    }
    if let Some(demo) = demo {
        demo.stop().await;
    }
    Ok(())
}

async fn next_demo_event(demo: &mut Option<Demo>) -> Option<String> {
    match demo {
        Some(demo) => demo.next().await,
        None => std::future::pending().await,
    }
}

/// Totals over every node's metrics.
fn print_report(layout: &Layout) {
    let mut forwarded = 0.0;
    let mut clients = 0.0;
    let mut up = 0;
    for node in &layout.nodes {
        let Some(page) = get(node.http, "/metrics") else {
            continue;
        };
        up += 1;
        forwarded += sample(&page, "umbra_mixnode_packets_forwarded_total").unwrap_or(0.0);
        clients += sample(&page, "umbra_gateway_clients_connected").unwrap_or(0.0);
    }
    println!(
        "[net] {up}/{} nodes answering; mix nodes have forwarded {forwarded:.0} packets; {clients:.0} clients connected",
        layout.nodes.len()
    );
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
        let topology = layout.topology()?;
        let gateways: Vec<String> = topology.gateways().map(|g| g.id.0.to_string()).collect();
        let gateway = |i: usize| gateways[i % gateways.len()].clone();
        let alice = ClientBuilder::new(topology.clone())
            .storage(&layout.dir.join("demo-alice"))
            .gateway(gateway(0))
            .connect()
            .await?;
        let bob = ClientBuilder::new(topology)
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
                    if let Some(tag) = reply_to {
                        let answer = format!("answer to {text}");
                        if let Err(error) = self.bob.reply(tag, answer).await {
                            println!("[demo] bob cannot answer: {error}");
                        }
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
