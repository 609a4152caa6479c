//! Three mix nodes and a real gateway on loopback, for the loop cover's test and benchmark.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umbra_mixnode::CoverConfig;
use umbra_net::metrics::sample;
use umbra_node::gateway::{self, Gateway, GatewayNodeConfig};
use umbra_node::mixnode::{self, Mixnode};
use umbra_topology::{Layer, NodeDescriptor, NodeId, Role, Topology};

use super::{WAIT, free_address, http_get, test_config};

pub type Running = (
    CancellationToken,
    JoinHandle<Result<(), umbra_net::NodeError>>,
);

pub struct LoopNet {
    pub root: std::path::PathBuf,
    pub mix_http: Vec<SocketAddr>,
    pub mixes: Vec<Running>,
    pub gateway_dir: std::path::PathBuf,
    /// The gateway's addresses: for mix nodes, for clients, for HTTP.
    pub gateway_at: [SocketAddr; 3],
    pub gateway: Option<Running>,
    node_runtime: Option<tokio::runtime::Handle>,
}

impl LoopNet {
    pub fn run_gateway(&mut self, listeners: [tokio::net::TcpListener; 3]) {
        let [nodes, clients, http] = listeners;
        let gateway = Gateway::load(&self.gateway_dir).unwrap();
        let stop = CancellationToken::new();
        let run = gateway.run_with(nodes, clients, Some(http), stop.clone().cancelled_owned());
        let task = match &self.node_runtime {
            Some(runtime) => runtime.spawn(run),
            None => tokio::spawn(run),
        };
        self.gateway = Some((stop, task));
    }
}

/// Three mix nodes, one per layer, sending loops as `cover` says, and a gateway; with
/// `node_runtime`, they run on that runtime (a benchmark accounts for their threads apart).
pub async fn start(
    name: &str,
    cover: &CoverConfig,
    node_runtime: Option<&tokio::runtime::Handle>,
) -> LoopNet {
    let root = std::env::temp_dir().join(format!("umbra-loops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut nodes = Vec::new();
    let mut mix_dirs = Vec::new();
    let mut mix_listeners = Vec::new();
    let mut mix_http = Vec::new();
    for layer in Layer::ALL {
        let (listener, address) = free_address().await;
        let (http_listener, http) = free_address().await;
        let dir = root.join(format!("mix{}", layer.number()));
        let made = mixnode::init(&dir, address, http, None).unwrap();
        let mut config = test_config(address, http, 2000);
        config.workers.threads = 1;
        config.cover = cover.clone();
        std::fs::write(
            dir.join(mixnode::CONFIG_FILE),
            toml::to_string(&config).unwrap(),
        )
        .unwrap();
        nodes.push(NodeDescriptor {
            id: NodeId(u32::from(layer.number())),
            role: Role::Mix(layer),
            mix_address: address,
            client_address: None,
            sphinx_key: made.sphinx_key,
            noise_key: made.noise_key,
        });
        mix_dirs.push(dir);
        mix_listeners.push((listener, http_listener));
        mix_http.push(http);
    }
    let (gateway_listener, gateway_address) = free_address().await;
    let (client_listener, client_address) = free_address().await;
    let (gateway_http_listener, gateway_http) = free_address().await;
    let gateway_dir = root.join("gateway");
    let made = gateway::init(
        &gateway_dir,
        gateway_address,
        client_address,
        gateway_http,
        None,
    )
    .unwrap();
    let mut config = GatewayNodeConfig::new(gateway_address, client_address, gateway_http);
    config.replay.expected_packets_per_second = 50;
    config.replay.retention = Duration::from_secs(3600);
    config.workers.threads = 1;
    config.links.reconnect_initial = Duration::from_millis(50);
    config.links.reconnect_max = Duration::from_millis(200);
    std::fs::write(
        gateway_dir.join(gateway::CONFIG_FILE),
        toml::to_string(&config).unwrap(),
    )
    .unwrap();
    nodes.push(NodeDescriptor {
        id: NodeId(10),
        role: Role::Gateway,
        mix_address: gateway_address,
        client_address: Some(client_address),
        sphinx_key: made.sphinx_key,
        noise_key: made.noise_key,
    });
    let topology = Topology::new(1, nodes).unwrap();
    for dir in mix_dirs.iter().chain([&gateway_dir]) {
        std::fs::write(dir.join("topology.json"), topology.to_json()).unwrap();
    }

    let mut mixes = Vec::new();
    for (dir, (listener, http)) in mix_dirs.iter().zip(mix_listeners) {
        let node = Mixnode::load(dir).unwrap();
        let stop = CancellationToken::new();
        let task =
            tokio::spawn(node.run_with(listener, Some(http), stop.clone().cancelled_owned()));
        mixes.push((stop, task));
    }
    let mut net = LoopNet {
        root,
        mix_http,
        mixes,
        gateway_dir,
        gateway_at: [gateway_address, client_address, gateway_http],
        gateway: None,
        node_runtime: node_runtime.cloned(),
    };
    net.run_gateway([gateway_listener, client_listener, gateway_http_listener]);
    net
}

pub async fn stop((stop, task): Running) {
    stop.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Polls `address`'s `/metrics` until `done` holds of it; returns the page.
pub async fn wait_until(address: SocketAddr, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = http_get(address, "/metrics").await.1;
        if done(&page) || tokio::time::Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn value(page: &str, series: &str) -> f64 {
    sample(page, series).unwrap_or(0.0)
}
