//! A whole network on this machine: the folders, keys, configurations and topology of its
//! nodes, made once and reused on the next run. `umbra localnet` runs each node as its own
//! process; the end-to-end tests do the same.
//!
//! A network follows a ledger ([`Layout::create_or_open_with_ledger`]: the validators' API
//! addresses are chosen here, every node's configuration names them and the genesis file,
//! and each node has an operator account, `operators/<node>.key`), or, for tests of the
//! nodes alone, a static topology file ([`Layout::create_or_open`]).
//!
//! The folder holds `localnet.json` (what is where), `genesis.json` or `topology.json`, one
//! folder per node (`mix-<layer>-<n>`, `gateway-<n>`), one per network monitor (`monitor`,
//! `monitor-2`, …, with a ledger), and `logs/`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use umbra_topology::{Layer, NodeDescriptor, NodeId, Role, Topology};

use umbra_net::NodeError;
use umbra_net::directory::{GENESIS_FILE, LedgerConfig, ValidatorUrl};
use umbra_net::keys::write_new_key;
use umbra_node::gateway::{self, GatewayNodeConfig};
use umbra_node::mixnode::{self, MixnodeConfig};

/// Why a local network could not be made, opened or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalnetError {
    /// A file, a key or a node's configuration.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A shape without a node in some layer, or without a gateway.
    #[error("a network needs at least one mix node per layer and one gateway")]
    EmptyShape,
    /// The topology made of the nodes does not hold.
    #[error("the new topology is invalid: {0}")]
    Topology(#[from] umbra_topology::TopologyError),
    /// Every port of the range is taken.
    #[error("no free port between {low} and {high} on 127.0.0.1")]
    NoFreePort {
        /// The lowest port tried.
        low: u16,
        /// The highest.
        high: u16,
    },
    /// More monitors than a network on one machine may have.
    #[error("{0} monitors are too many for a network on one machine: at most {MAX_MONITORS}")]
    TooManyMonitors(usize),
    /// The layout names no such node.
    #[error("no node named {0}")]
    NoSuchNode(String),
    /// A node's process could not be started.
    #[error("cannot start {}: {source}", exe.display())]
    Spawn {
        /// The program.
        exe: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The file describing a local network.
pub const LAYOUT_FILE: &str = "localnet.json";
/// The topology file, in the network's folder and each node's.
pub use umbra_net::config::TOPOLOGY_FILE;

/// The shape of a new local network.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Mix nodes in each of the three layers.
    pub mixes_per_layer: usize,
    /// Gateways.
    pub gateways: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            mixes_per_layer: 3,
            gateways: 2,
        }
    }
}

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A mix node.
    Mix,
    /// A gateway.
    Gateway,
}

/// One node of the network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalNode {
    /// Its name, also its folder's.
    pub name: String,
    /// Its id in the topology.
    pub id: u32,
    /// What it is.
    pub kind: Kind,
    /// Its layer, for a mix node.
    pub layer: Option<u8>,
    /// Where other nodes connect.
    pub listen: SocketAddr,
    /// Where clients connect, for a gateway.
    pub client: Option<SocketAddr>,
    /// Its `/metrics` and `/health`.
    pub http: SocketAddr,
}

/// A local network's layout.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Layout {
    /// The network's folder.
    #[serde(skip)]
    pub dir: PathBuf,
    /// Its nodes.
    pub nodes: Vec<LocalNode>,
    /// The validators' API addresses (none: a static topology file).
    #[serde(default)]
    pub validators: Vec<SocketAddr>,
    /// The network monitors, in a network following a ledger (networks made before there were
    /// monitors have none; those made before there could be several have the field `monitor`,
    /// holding one).
    #[serde(default, alias = "monitor", deserialize_with = "one_or_many")]
    pub monitors: Vec<LocalMonitor>,
}

/// A network monitor of a local network, named in genesis: its folder is its name, and its
/// account key `operators/<name>.key`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalMonitor {
    /// `monitor` for the first, then `monitor-2`, `monitor-3`, … (layouts made when there
    /// was only one do not name it).
    #[serde(default = "first_monitor_name")]
    pub name: String,
    /// Where it serves `/metrics`, `/health` and the evidence.
    pub http: SocketAddr,
}

/// The first monitor's name, its folder's and its key's; the others add `-2`, `-3`, ….
pub const MONITOR: &str = "monitor";

/// The most monitors a local network may have: each keeps a client session with every
/// gateway, sending all the time, and they all share this machine.
pub const MAX_MONITORS: usize = 5;

/// The name of the `n`th monitor (from 1).
pub fn monitor_name(n: usize) -> String {
    if n <= 1 {
        MONITOR.to_owned()
    } else {
        format!("{MONITOR}-{n}")
    }
}

fn first_monitor_name() -> String {
    monitor_name(1)
}

/// The monitors of a layout: a list, or the single monitor of an older layout's `monitor`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<LocalMonitor>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(LocalMonitor),
        Many(Vec<LocalMonitor>),
    }
    Ok(match Option::<OneOrMany>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(monitor)) => vec![monitor],
        Some(OneOrMany::Many(monitors)) => monitors,
    })
}

/// The folder of operator account keys in a network's folder.
pub const OPERATORS_DIR: &str = "operators";

impl Layout {
    /// The network in `dir`: the one made there before, or a new one of `shape` with a static
    /// topology file.
    pub fn create_or_open(dir: &Path, shape: &Shape) -> Result<Layout, LocalnetError> {
        Layout::open_or(dir, || Layout::create(dir, shape, 0, 0))
    }

    /// The network in `dir`: the one made there before, or a new one of `shape` following the
    /// ledger of `validators` validators (their API addresses are chosen here), measured by
    /// `monitors` network monitors (their accounts made here, for genesis to name). Node ids
    /// are 0 until [`Layout::set_node_id`] records the ledger's.
    pub fn create_or_open_with_ledger(
        dir: &Path,
        shape: &Shape,
        validators: usize,
        monitors: usize,
    ) -> Result<Layout, LocalnetError> {
        Layout::open_or(dir, || {
            Layout::create(dir, shape, validators.max(1), monitors)
        })
    }

    fn open_or(
        dir: &Path,
        create: impl FnOnce() -> Result<Layout, LocalnetError>,
    ) -> Result<Layout, LocalnetError> {
        let file = dir.join(LAYOUT_FILE);
        if file.exists() {
            let json = std::fs::read_to_string(&file).map_err(|source| NodeError::Read {
                path: file.clone(),
                source,
            })?;
            let mut layout: Layout = serde_json::from_str(&json).map_err(|error| {
                NodeError::invalid(
                    &file,
                    format!("{error}; delete the folder to make a new network"),
                )
            })?;
            layout.dir = dir.to_owned();
            return Ok(layout);
        }
        create()
    }

    fn create(
        dir: &Path,
        shape: &Shape,
        validator_count: usize,
        monitor_count: usize,
    ) -> Result<Layout, LocalnetError> {
        if shape.mixes_per_layer == 0 || shape.gateways == 0 {
            return Err(LocalnetError::EmptyShape);
        }
        if monitor_count > MAX_MONITORS {
            return Err(LocalnetError::TooManyMonitors(monitor_count));
        }
        let mut nodes = Vec::new();
        let mut descriptors = Vec::new();
        let mut ports = Ports::default();
        let validators = (0..validator_count)
            .map(|_| ports.take())
            .collect::<Result<Vec<_>, _>>()?;
        let ledger = (!validators.is_empty()).then(|| LedgerConfig {
            validators: validators
                .iter()
                .map(|address| ValidatorUrl::from_address(*address))
                .collect(),
            genesis: PathBuf::from(GENESIS_FILE),
        });
        let mut id = 0;
        for layer in Layer::ALL {
            for n in 1..=shape.mixes_per_layer {
                id += 1;
                let node = LocalNode {
                    name: format!("mix-{}-{n}", layer.number()),
                    id,
                    kind: Kind::Mix,
                    layer: Some(layer.number()),
                    listen: ports.take()?,
                    client: None,
                    http: ports.take()?,
                };
                let node_dir = dir.join(&node.name);
                let made = mixnode::init(&node_dir, node.listen, node.http, None)?;
                let mut config = match &ledger {
                    Some(ledger) => {
                        MixnodeConfig::with_ledger(node.listen, node.http, ledger.clone())
                    }
                    None => MixnodeConfig::new(node.listen, node.http),
                };
                tune(
                    &mut config.mixing.replay,
                    &mut config.links,
                    &mut config.workers,
                );
                write_config(&node_dir.join(mixnode::CONFIG_FILE), &config)?;
                descriptors.push(NodeDescriptor {
                    id: NodeId(id),
                    role: Role::Mix(layer),
                    mix_address: node.listen,
                    client_address: None,
                    sphinx_key: made.sphinx_key,
                    noise_key: made.noise_key,
                });
                nodes.push(node);
            }
        }
        for n in 1..=shape.gateways {
            id += 1;
            let node = LocalNode {
                name: format!("gateway-{n}"),
                id,
                kind: Kind::Gateway,
                layer: None,
                listen: ports.take()?,
                client: Some(ports.take()?),
                http: ports.take()?,
            };
            let client = node.client.unwrap_or(node.listen);
            let node_dir = dir.join(&node.name);
            let made = gateway::init(&node_dir, node.listen, client, node.http, None)?;
            let mut config = match &ledger {
                Some(ledger) => {
                    GatewayNodeConfig::with_ledger(node.listen, client, node.http, ledger.clone())
                }
                None => GatewayNodeConfig::new(node.listen, client, node.http),
            };
            tune(&mut config.replay, &mut config.links, &mut config.workers);
            // spent tickets are claimed soon, so a short run shows the whole loop
            config.tickets.redeem_interval = std::time::Duration::from_secs(5);
            write_config(&node_dir.join(gateway::CONFIG_FILE), &config)?;
            descriptors.push(NodeDescriptor {
                id: NodeId(id),
                role: Role::Gateway,
                mix_address: node.listen,
                client_address: Some(client),
                sphinx_key: made.sphinx_key,
                noise_key: made.noise_key,
            });
            nodes.push(node);
        }
        let mut monitors = Vec::new();
        if ledger.is_some() {
            let operators = dir.join(OPERATORS_DIR);
            std::fs::create_dir_all(&operators).map_err(|source| NodeError::Write {
                path: operators.clone(),
                source,
            })?;
            // ids come from the ledger at registration
            for node in &mut nodes {
                node.id = 0;
                let key = umbra_ledger::SigningKey::generate(&mut rand::rng());
                write_new_key(&operators.join(format!("{}.key", node.name)), &key.seed())?;
            }
            // the monitors' accounts, which genesis names as monitors
            for n in 1..=monitor_count {
                let monitor = LocalMonitor {
                    name: monitor_name(n),
                    http: ports.take()?,
                };
                let key = umbra_ledger::SigningKey::generate(&mut rand::rng());
                write_new_key(
                    &operators.join(format!("{}.key", monitor.name)),
                    &key.seed(),
                )?;
                monitors.push(monitor);
            }
        } else {
            let topology = Topology::new(1, descriptors)?;
            let json = topology.to_json();
            for path in std::iter::once(dir.join(TOPOLOGY_FILE)).chain(
                nodes
                    .iter()
                    .map(|node| dir.join(&node.name).join(TOPOLOGY_FILE)),
            ) {
                write(&path, &json)?;
            }
        }
        let layout = Layout {
            dir: dir.to_owned(),
            nodes,
            validators,
            monitors,
        };
        layout.save()?;
        Ok(layout)
    }

    /// Writes `localnet.json`.
    pub fn save(&self) -> Result<(), NodeError> {
        let json = serde_json::to_string_pretty(self)
            .map_err(|error| NodeError::invalid(self.dir.join(LAYOUT_FILE), error.to_string()))?;
        write(&self.dir.join(LAYOUT_FILE), &json)
    }

    /// Records the ledger's id of the node `name`.
    pub fn set_node_id(&mut self, name: &str, id: u32) {
        if let Some(node) = self.nodes.iter_mut().find(|node| node.name == name) {
            node.id = id;
        }
    }

    /// The key file of the account that owns `node` (a network following a ledger).
    pub fn operator_key(&self, node: &LocalNode) -> PathBuf {
        self.dir
            .join(OPERATORS_DIR)
            .join(format!("{}.key", node.name))
    }

    /// The key file of the account that buys bandwidth tickets for the network's clients
    /// (a network following a ledger; funded in genesis).
    pub fn tickets_key(&self) -> PathBuf {
        self.dir.join(OPERATORS_DIR).join("tickets.key")
    }

    /// The key file of `monitor`'s account (a network following a ledger).
    pub fn monitor_key(&self, monitor: &LocalMonitor) -> PathBuf {
        self.dir
            .join(OPERATORS_DIR)
            .join(format!("{}.key", monitor.name))
    }

    /// A monitor's folder.
    pub fn monitor_dir(&self, monitor: &LocalMonitor) -> PathBuf {
        self.dir.join(&monitor.name)
    }

    /// The network's genesis file (a network following a ledger).
    pub fn genesis_file(&self) -> PathBuf {
        self.dir.join(GENESIS_FILE)
    }

    /// Copies the genesis file at `genesis` into the network's folder and every node's.
    pub fn install_genesis(&self, genesis: &Path) -> Result<(), LocalnetError> {
        for target in std::iter::once(self.genesis_file()).chain(
            self.nodes
                .iter()
                .map(|node| self.node_dir(node).join(GENESIS_FILE)),
        ) {
            std::fs::copy(genesis, &target).map_err(|source| NodeError::Write {
                path: target.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// The `[ledger]` settings of the network's nodes and clients.
    pub fn ledger_config(&self) -> Option<LedgerConfig> {
        (!self.validators.is_empty()).then(|| LedgerConfig {
            validators: self
                .validators
                .iter()
                .map(|address| ValidatorUrl::from_address(*address))
                .collect(),
            genesis: PathBuf::from(GENESIS_FILE),
        })
    }

    /// The network's topology.
    pub fn topology(&self) -> Result<Topology, NodeError> {
        umbra_net::config::read_topology(&self.dir.join(TOPOLOGY_FILE))
    }

    /// The path of the topology file.
    pub fn topology_file(&self) -> PathBuf {
        self.dir.join(TOPOLOGY_FILE)
    }

    /// A node's folder.
    pub fn node_dir(&self, node: &LocalNode) -> PathBuf {
        self.dir.join(&node.name)
    }

    /// The log file of a node (or anything else run in the network).
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{name}.log"))
    }

    /// The command that runs `node` with the `umbra` binary at `exe`, its output going to its
    /// log file (appended).
    pub fn command(
        &self,
        exe: &Path,
        node: &LocalNode,
    ) -> Result<std::process::Command, LocalnetError> {
        let role = match node.kind {
            Kind::Mix => "mixnode",
            Kind::Gateway => "gateway",
        };
        let log = self.open_log(&node.name)?;
        let err = log.try_clone().map_err(|source| NodeError::Write {
            path: self.log_file(&node.name),
            source,
        })?;
        let mut command = std::process::Command::new(exe);
        command
            .args([role, "run", "--data-dir"])
            .arg(self.node_dir(node))
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err);
        // its own process group: a Ctrl-C in the terminal reaches whoever runs the network,
        // which stops the nodes in order, not every node at once
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        Ok(command)
    }

    /// Opens a log file for appending.
    pub fn open_log(&self, name: &str) -> Result<std::fs::File, NodeError> {
        let path = self.log_file(name);
        let write_error = |source| NodeError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_error)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(write_error)
    }
}

/// Settings for nodes sharing one machine: small replay filters (a node's default is sized
/// for 2000 packets/s over 25 h, half a gigabyte), quick reconnection, one Sphinx thread.
fn tune(
    replay: &mut umbra_hop::ReplayFilterConfig,
    links: &mut umbra_net::link::LinkConfig,
    workers: &mut umbra_node::runtime::WorkerConfig,
) {
    replay.expected_packets_per_second = 500;
    replay.retention = Duration::from_secs(3 * 3600);
    links.reconnect_initial = Duration::from_millis(200);
    links.reconnect_max = Duration::from_secs(2);
    workers.threads = 1;
}

/// A port free now, below the range the system draws outgoing connections' ports from (so
/// the nodes' own connections cannot take it before the node listens on it).
#[derive(Default)]
struct Ports(std::collections::HashSet<u16>);

impl Ports {
    /// A port free now and not given before.
    fn take(&mut self) -> Result<SocketAddr, LocalnetError> {
        loop {
            let address = free_port()?;
            if self.0.insert(address.port()) {
                return Ok(address);
            }
        }
    }
}

/// A port on 127.0.0.1 free now, below the range of outgoing connections' ports.
pub fn free_port() -> Result<SocketAddr, LocalnetError> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = ephemeral_low.saturating_sub(12_000).max(1024);
    for _ in 0..1000 {
        let port = rand::random_range(low..ephemeral_low.max(low + 1));
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        if TcpListener::bind(address).is_ok() {
            return Ok(address);
        }
    }
    Err(LocalnetError::NoFreePort {
        low,
        high: ephemeral_low,
    })
}

fn write_config<T: Serialize>(path: &Path, config: &T) -> Result<(), NodeError> {
    let text =
        toml::to_string(config).map_err(|error| NodeError::invalid(path, error.to_string()))?;
    write(
        path,
        &format!(
            "# Written by `umbra localnet`; see `umbra mixnode init` or `umbra gateway init` for every setting explained.\n{text}"
        ),
    )
}

fn write(path: &Path, text: &str) -> Result<(), NodeError> {
    std::fs::write(path, text).map_err(|source| NodeError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The nodes of a layout, running as processes of the `umbra` binary. Dropping it kills what
/// still runs.
pub struct Processes {
    exe: PathBuf,
    layout: Layout,
    children: Vec<(String, std::process::Child)>,
}

impl Processes {
    /// None running yet; `exe` is the `umbra` binary.
    pub fn new(exe: &Path, layout: Layout) -> Processes {
        Processes {
            exe: exe.to_owned(),
            layout,
            children: Vec::new(),
        }
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn node(&self, name: &str) -> Result<&LocalNode, LocalnetError> {
        self.layout
            .nodes
            .iter()
            .find(|node| node.name == name)
            .ok_or_else(|| LocalnetError::NoSuchNode(name.to_owned()))
    }

    /// Starts the node `name`.
    pub fn start(&mut self, name: &str) -> Result<(), LocalnetError> {
        let node = self.node(name)?.clone();
        let child = self
            .layout
            .command(&self.exe, &node)?
            .spawn()
            .map_err(|source| LocalnetError::Spawn {
                exe: self.exe.clone(),
                source,
            })?;
        self.children.push((node.name, child));
        Ok(())
    }

    /// The running nodes' process ids.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.children
            .iter()
            .map(|(name, child)| (name.clone(), child.id()))
            .collect()
    }

    /// Starts every node.
    pub fn start_all(&mut self) -> Result<(), LocalnetError> {
        let names: Vec<String> = self.layout.nodes.iter().map(|n| n.name.clone()).collect();
        names.iter().try_for_each(|name| self.start(name))
    }

    /// Whether the node answers `/health` with 200.
    pub fn is_healthy(&self, name: &str) -> bool {
        self.node(name).is_ok_and(|node| health(node.http))
    }

    /// Nodes whose process has ended, with how; they are forgotten.
    pub fn exited(&mut self) -> Vec<(String, std::process::ExitStatus)> {
        let mut ended = Vec::new();
        self.children
            .retain_mut(|(name, child)| match child.try_wait() {
                Ok(Some(status)) => {
                    ended.push((name.clone(), status));
                    false
                }
                _ => true,
            });
        ended
    }

    /// Asks the node to stop (SIGTERM) and waits up to `grace`, then kills it.
    pub fn terminate(&mut self, name: &str, grace: Duration) -> Option<std::process::ExitStatus> {
        let at = self.children.iter().position(|(n, _)| n == name)?;
        let (_, mut child) = self.children.remove(at);
        Some(stop(&mut child, grace))
    }

    /// Kills the node at once (SIGKILL), as a crash would.
    pub fn kill(&mut self, name: &str) {
        if let Some(at) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.children.remove(at);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks every node to stop, waits up to `grace` for each, and kills what remains.
    pub fn stop_all(&mut self, grace: Duration) -> Vec<(String, std::process::ExitStatus)> {
        for (_, child) in &self.children {
            terminate(child);
        }
        self.children
            .drain(..)
            .map(|(name, mut child)| (name, stop(&mut child, grace)))
            .collect()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Asks a process to stop (SIGTERM), as Ctrl-C or a service manager would.
pub fn terminate(child: &std::process::Child) {
    #[cfg(target_os = "linux")]
    {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(child),
            rustix::process::Signal::TERM,
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = child;
}

fn stop(child: &mut std::process::Child, grace: Duration) -> std::process::ExitStatus {
    terminate(child);
    let deadline = std::time::Instant::now() + grace;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
        }
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
        if std::time::Instant::now() >= deadline + Duration::from_secs(5)
            && let Ok(status) = child.wait()
        {
            return status;
        }
    }
}

/// `GET /health` answers 200.
pub fn health(address: SocketAddr) -> bool {
    get(address, "/health").is_some()
}

/// The body of `GET path`, if it answers 200 within a couple of seconds.
pub fn get(address: SocketAddr, path: &str) -> Option<String> {
    let limits = umbra_net::http_client::Limits {
        timeout: Duration::from_secs(2),
        max_body: 16 << 20,
    };
    let response = umbra_net::http_client::get_blocking(address, path, limits).ok()?;
    (response.status == 200).then(|| String::from_utf8_lossy(&response.body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_made_when_there_was_one_monitor_opens_with_that_monitor() {
        let json = r#"{"nodes": [], "validators": ["127.0.0.1:7000"], "monitor": {"http": "127.0.0.1:1234"}}"#;
        let layout: Layout = serde_json::from_str(json).unwrap();
        assert_eq!(layout.monitors.len(), 1);
        assert_eq!(layout.monitors[0].name, MONITOR);
        assert_eq!(layout.monitors[0].http, "127.0.0.1:1234".parse().unwrap());
        // and it is written back as a list
        let again: serde_json::Value = serde_json::to_value(&layout).unwrap();
        assert_eq!(again["monitors"][0]["name"], "monitor");
        assert!(again.get("monitor").is_none());
    }

    #[test]
    fn a_layout_opens_with_several_monitors_or_none() {
        let json = r#"{"nodes": [], "monitors": [
            {"name": "monitor", "http": "127.0.0.1:1234"},
            {"name": "monitor-2", "http": "127.0.0.1:1235"}]}"#;
        let layout: Layout = serde_json::from_str(json).unwrap();
        let names: Vec<&str> = layout.monitors.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["monitor", "monitor-2"]);
        let layout: Layout = serde_json::from_str(r#"{"nodes": []}"#).unwrap();
        assert!(layout.monitors.is_empty());
    }

    #[test]
    fn a_network_of_too_many_monitors_is_refused_before_anything_is_written() {
        let dir =
            std::env::temp_dir().join(format!("umbra-too-many-monitors-{}", std::process::id()));
        let made = Layout::create_or_open_with_ledger(&dir, &Shape::default(), 1, MAX_MONITORS + 1);
        assert!(matches!(made, Err(LocalnetError::TooManyMonitors(n)) if n == MAX_MONITORS + 1));
        assert!(!dir.exists());
    }

    #[test]
    fn monitors_after_the_first_are_numbered_from_2() {
        let names: Vec<String> = (1..=3).map(monitor_name).collect();
        assert_eq!(names, ["monitor", "monitor-2", "monitor-3"]);
    }
}
