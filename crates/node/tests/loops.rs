//! Mix nodes' own loops (Loopix λ_M) on loopback, on real Noise links: three mix nodes, one per
//! layer, and a real gateway. Each node's loops cross the other layers and the gateway and come
//! back; `/metrics` counts them; when the gateway goes, every node sees its loops vanish and
//! says so in `/health`, and when it is back, the alarm ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{WAIT, free_address, http_get, test_config};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umbra_mixnode::CoverConfig;
use umbra_net::metrics::sample;
use umbra_node::gateway::{self, Gateway, GatewayNodeConfig};
use umbra_node::mixnode::{self, Mixnode};
use umbra_topology::{Layer, NodeDescriptor, NodeId, Role, Topology};

type Running = (
    CancellationToken,
    JoinHandle<Result<(), umbra_net::NodeError>>,
);

struct LoopNet {
    root: std::path::PathBuf,
    mix_http: Vec<SocketAddr>,
    mixes: Vec<Running>,
    gateway_dir: std::path::PathBuf,
    /// The gateway's addresses: for mix nodes, for clients, for HTTP.
    gateway_at: [SocketAddr; 3],
    gateway: Option<Running>,
}

impl LoopNet {
    fn run_gateway(&mut self, listeners: [tokio::net::TcpListener; 3]) {
        let [nodes, clients, http] = listeners;
        let gateway = Gateway::load(&self.gateway_dir).unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(gateway.run_with(
            nodes,
            clients,
            Some(http),
            stop.clone().cancelled_owned(),
        ));
        self.gateway = Some((stop, task));
    }
}

/// Three mix nodes sending loops fast (40/s, 2 ms per hop, lost after 1 s, alarm over 20
/// loops), and a gateway.
async fn start(name: &str) -> LoopNet {
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
        config.cover = CoverConfig {
            loop_rate: 40.0,
            mean_hop_delay: Duration::from_millis(2),
            loop_deadline: Duration::from_secs(1),
            loss_window: 20,
            loss_alarm: 0.2,
        };
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
    };
    net.run_gateway([gateway_listener, client_listener, gateway_http_listener]);
    net
}

async fn stop((stop, task): Running) {
    stop.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Polls `address`'s `/metrics` until `done` holds of it; returns the page.
async fn wait_until(address: SocketAddr, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = http_get(address, "/metrics").await.1;
        if done(&page) || tokio::time::Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn value(page: &str, series: &str) -> f64 {
    sample(page, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_come_back_and_their_loss_is_seen() {
    let mut net = start("back").await;
    for (i, http) in net.mix_http.iter().enumerate() {
        let page = wait_until(*http, |page| {
            value(page, "umbra_mixnode_loops_returned_total") >= 30.0
        })
        .await;
        let returned = value(&page, "umbra_mixnode_loops_returned_total");
        assert!(returned >= 30.0, "mix {i}: {returned} loops back");
        let sent = value(&page, "umbra_mixnode_loops_sent_total");
        let lost = value(&page, "umbra_mixnode_loops_lost_total");
        let pending = value(&page, "umbra_mixnode_loops_pending");
        assert!(sent >= returned + lost, "mix {i}: {page}");
        assert!(
            lost <= 2.0,
            "mix {i}: {lost} loops lost of {sent} ({pending} out)"
        );
        assert_eq!(value(&page, "umbra_mixnode_loop_loss_alarm"), 0.0);
        assert!(value(&page, "umbra_mixnode_loop_round_trip_seconds_count") >= 30.0);
        // the loops are the node's own: nothing ended here that was not
        assert_eq!(
            sample(
                &page,
                "umbra_mixnode_packets_dropped_total{reason=\"final_hop\"}"
            ),
            None,
            "mix {i}"
        );
        let (status, health) = http_get(*http, "/health").await;
        assert!(status.contains("200"), "{status}");
        assert!(
            health.contains("\"status\":\"ok\"")
                && health.contains("\"loops\":{\"sent\":")
                && health.contains("\"alarm\":false"),
            "{health}"
        );
    }
    // every loop crosses the gateway once, into the first layer (its counters are published
    // every 250 ms)
    let gateway = wait_until(net.gateway_at[2], |page| {
        value(page, "umbra_gateway_packets_relayed_total") >= 90.0
    })
    .await;
    assert!(
        value(&gateway, "umbra_gateway_packets_relayed_total") >= 90.0,
        "{gateway}"
    );

    // the gateway goes: every loop is lost, and every node says so (and keeps serving)
    stop(net.gateway.take().unwrap()).await;
    for (i, http) in net.mix_http.iter().enumerate() {
        let page = wait_until(*http, |page| {
            value(page, "umbra_mixnode_loop_loss_alarm") == 1.0
        })
        .await;
        assert_eq!(
            value(&page, "umbra_mixnode_loop_loss_alarm"),
            1.0,
            "mix {i}: {page}"
        );
        assert!(value(&page, "umbra_mixnode_loop_recent_loss_ratio") > 0.2);
        let (status, health) = http_get(*http, "/health").await;
        assert!(status.contains("200"), "still serving: {status}");
        assert!(
            health.contains("\"status\":\"degraded\"")
                && health.contains("under attack or badly connected")
                && health.contains("\"alarm\":true"),
            "{health}"
        );
    }

    // the gateway is back: the loops come back, and the alarm ends
    let mut listeners = Vec::new();
    for address in net.gateway_at {
        listeners.push(tokio::net::TcpListener::bind(address).await.unwrap());
    }
    net.run_gateway(listeners.try_into().unwrap());
    for (i, http) in net.mix_http.iter().enumerate() {
        let page = wait_until(*http, |page| {
            value(page, "umbra_mixnode_loop_loss_alarm") == 0.0
        })
        .await;
        assert_eq!(
            value(&page, "umbra_mixnode_loop_loss_alarm"),
            0.0,
            "mix {i}: {page}"
        );
        assert!(value(&page, "umbra_mixnode_loop_recent_loss_ratio") <= 0.1);
        let health = http_get(*http, "/health").await.1;
        assert!(health.contains("\"status\":\"ok\""), "{health}");
    }
    for running in net.mixes.drain(..) {
        stop(running).await;
    }
    // its link to the first layer, now gone, would hold it for the 10 s a stopping node gives
    // its links to drain
    if let Some((_, task)) = net.gateway.take() {
        task.abort();
    }
    let _ = std::fs::remove_dir_all(&net.root);
}
