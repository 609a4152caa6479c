//! A small network on loopback for the integration tests and the throughput benchmark:
//! mix nodes run in-process on real Noise links between a sender (a node that dials the
//! first mix node) and a sink (the exit gateway, which processes the last Sphinx layer).

#![allow(dead_code, unreachable_pub)] // each user takes what it needs

pub mod loops;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umbra_net::link::{Admission, LinkConfig, LinkCounters, Peer, PeerLink, serve_inbound};
use umbra_net::metrics::sample;
use umbra_net::noise::NoiseKeypair;
use umbra_node::mixnode::{self, Mixnode, MixnodeConfig};
use umbra_sphinx::{
    Delay, Destination, DestinationAddress, Hop, PacketBuilder, PacketSize, PrivateKey, Processed,
    SurbId,
};
use umbra_topology::{Layer, NodeDescriptor, NodeId, Role, Topology};
use umbra_wire::frame::{Frame, FrameHeader};

pub const WAIT: Duration = Duration::from_secs(20);

/// A mix node's slot: its directory and addresses, and the task when it runs.
pub struct Mix {
    pub dir: PathBuf,
    pub address: SocketAddr,
    pub http: SocketAddr,
    pub running: Option<(
        CancellationToken,
        JoinHandle<Result<(), umbra_net::NodeError>>,
    )>,
}

pub struct Net {
    pub node_runtime: Option<tokio::runtime::Handle>,
    pub root: PathBuf,
    pub topology: Topology,
    pub mixes: Vec<Mix>,
    pub sender_keys: Arc<NoiseKeypair>,
    pub sink: Sink,
}

pub struct Sink {
    pub sphinx: PrivateKey,
    pub node: NodeDescriptor,
    pub frames: mpsc::UnboundedReceiver<Frame>,
    pub stop: CancellationToken,
}

pub async fn free_address() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    (listener, address)
}

pub fn test_config(listen: SocketAddr, http: SocketAddr, queue_len: usize) -> MixnodeConfig {
    let mut config = MixnodeConfig::new(listen, http);
    config.mixing.replay.expected_packets_per_second = 50;
    config.mixing.replay.retention = Duration::from_secs(3600);
    config.links.queue_len = queue_len;
    config.links.reconnect_initial = Duration::from_millis(50);
    config.links.reconnect_max = Duration::from_millis(200);
    config.links.handshake_timeout = Duration::from_secs(2);
    config.workers.threads = 2;
    // the nodes' own loops would reach the sink, which is no gateway (tests/loops.rs has them)
    config.cover.loop_rate = 0.0;
    config
}

impl Net {
    /// Three mix nodes (started), a sender's key in the topology, and a listening sink.
    pub async fn start(name: &str, queue_len: usize) -> Net {
        Net::start_with(
            name,
            &Layer::ALL,
            |config| config.links.queue_len = queue_len,
            None,
        )
        .await
    }

    /// Mix nodes of the given layers, configured by `tweak`, between the sender and the sink.
    /// The sender dials the first of them; packets cross them all.
    /// With `node_runtime`, the nodes run on that runtime (the benchmark accounts for their
    /// threads apart from its own).
    pub async fn start_with(
        name: &str,
        layers: &[Layer],
        tweak: impl Fn(&mut MixnodeConfig),
        node_runtime: Option<tokio::runtime::Handle>,
    ) -> Net {
        let root = std::env::temp_dir().join(format!("umbra-net-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut nodes = Vec::new();
        let mut mixes = Vec::new();
        let mut listeners = Vec::new();
        for &layer in layers {
            let (listener, address) = free_address().await;
            let (http_listener, http) = free_address().await;
            let dir = root.join(format!("mix{}", layer.number()));
            let made = mixnode::init(&dir, address, http, None).unwrap();
            let mut config = test_config(address, http, 2000);
            tweak(&mut config);
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
            mixes.push(Mix {
                dir,
                address,
                http,
                running: None,
            });
            listeners.push((listener, http_listener));
        }
        let sender_keys = Arc::new(NoiseKeypair::generate());
        nodes.push(NodeDescriptor {
            id: NodeId(10),
            role: Role::Gateway,
            mix_address: "127.0.0.1:9".parse().unwrap(),
            client_address: Some("127.0.0.1:10".parse().unwrap()),
            sphinx_key: PrivateKey::generate(&mut rand::rng()).public_key(),
            noise_key: sender_keys.public(),
        });
        let (sink_listener, sink_address) = free_address().await;
        let sink_keys = Arc::new(NoiseKeypair::generate());
        let sink_sphinx = PrivateKey::generate(&mut rand::rng());
        let sink_node = NodeDescriptor {
            id: NodeId(20),
            role: Role::Gateway,
            mix_address: sink_address,
            client_address: Some("127.0.0.1:11".parse().unwrap()),
            sphinx_key: sink_sphinx.public_key(),
            noise_key: sink_keys.public(),
        };
        nodes.push(sink_node.clone());
        let topology = Topology::new(1, nodes).unwrap();
        for mix in &mixes {
            std::fs::write(mix.dir.join("topology.json"), topology.to_json()).unwrap();
        }

        let (frames_in, frames) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let admit = admission(&topology);
        tokio::spawn(serve_inbound(
            sink_listener,
            sink_keys,
            LinkConfig::default(),
            admit,
            move |frame| {
                let _ = frames_in.send(frame);
            },
            Arc::new(LinkCounters::default()),
            stop.clone(),
        ));
        let mut net = Net {
            node_runtime,
            root,
            topology,
            mixes,
            sender_keys,
            sink: Sink {
                sphinx: sink_sphinx,
                node: sink_node,
                frames,
                stop,
            },
        };
        for (i, (listener, http)) in listeners.into_iter().enumerate() {
            net.run_mix(i, listener, http);
        }
        net
    }

    pub fn run_mix(&mut self, i: usize, listener: TcpListener, http: TcpListener) {
        let node = Mixnode::load(&self.mixes[i].dir).unwrap();
        let stop = CancellationToken::new();
        let run = node.run_with(listener, Some(http), stop.clone().cancelled_owned());
        let task = match &self.node_runtime {
            Some(runtime) => runtime.spawn(run),
            None => tokio::spawn(run),
        };
        self.mixes[i].running = Some((stop, task));
    }

    /// Stops mix `i` gracefully and waits for it.
    pub async fn stop_mix(&mut self, i: usize) {
        let (stop, task) = self.mixes[i].running.take().unwrap();
        stop.cancel();
        tokio::time::timeout(WAIT, task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    pub async fn restart_mix(&mut self, i: usize) {
        let listener = TcpListener::bind(self.mixes[i].address).await.unwrap();
        let http = TcpListener::bind(self.mixes[i].http).await.unwrap();
        self.run_mix(i, listener, http);
    }

    /// The mix nodes' descriptors, in route order.
    pub fn route_nodes(&self) -> Vec<NodeDescriptor> {
        self.mixes
            .iter()
            .filter_map(|mix| self.topology.node_at(mix.address).cloned())
            .collect()
    }

    /// A link from the sender to the first mix node.
    pub fn sender(&self) -> (PeerLink, Arc<LinkCounters>) {
        let nodes = self.route_nodes();
        let layer1 = &nodes[0];
        let counters = Arc::new(LinkCounters::default());
        let config = LinkConfig {
            reconnect_initial: Duration::from_millis(50),
            reconnect_max: Duration::from_millis(200),
            queue_len: 10_000,
            ..LinkConfig::default()
        };
        let peer = Peer {
            address: layer1.mix_address,
            noise_key: layer1.noise_key,
            name: "layer 1".into(),
        };
        let (link, _task) = PeerLink::spawn(
            peer,
            Arc::clone(&self.sender_keys),
            &config,
            Arc::clone(&counters),
        );
        (link, counters)
    }

    /// A packet through the mix nodes to the sink, each mix holding it `delay`.
    pub fn packet(&self, message: &[u8], delay: Duration) -> Frame {
        self.packet_with_delays(message, &vec![delay; self.mixes.len()])
    }

    /// A packet through the mix nodes to the sink, mix i holding it `delays[i]`.
    pub fn packet_with_delays(&self, message: &[u8], delays: &[Duration]) -> Frame {
        let mut route: Vec<Hop> = self.route_nodes().iter().map(NodeDescriptor::hop).collect();
        route.push(self.sink.node.hop());
        let delays: Vec<Delay> = delays
            .iter()
            .map(|d| Delay::from_duration(*d))
            .chain([Delay::ZERO])
            .collect();
        let destination = Destination::new(DestinationAddress::new([5; 32]), SurbId::default());
        let packet = PacketBuilder::new(PacketSize::Regular)
            .build(&mut rand::rng(), &route, &delays, &destination, message)
            .unwrap();
        Frame {
            header: FrameHeader::v7(packet.size()),
            packet,
        }
    }

    /// The next message the sink receives.
    pub async fn receive(&mut self) -> Vec<u8> {
        let frame = tokio::time::timeout(WAIT, self.sink.frames.recv())
            .await
            .expect("the sink got nothing")
            .unwrap();
        match self.sink.sphinx.process(frame.packet).unwrap() {
            Processed::Final { payload, .. } => payload.into_plaintext().unwrap(),
            Processed::Forward { .. } => panic!("the sink is the last hop"),
        }
    }

    /// Whether the sink receives anything within `wait`.
    pub async fn nothing_arrives(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.sink.frames.recv())
            .await
            .is_err()
    }

    pub async fn metrics(&self, i: usize) -> String {
        http_get(self.mixes[i].http, "/metrics").await.1
    }

    pub async fn stop(mut self) {
        for i in 0..self.mixes.len() {
            if self.mixes[i].running.is_some() {
                self.stop_mix(i).await;
            }
        }
        self.sink.stop.cancel();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub fn admission(topology: &Topology) -> Admission {
    let topology = topology.clone();
    Arc::new(move |key| {
        topology
            .node_with_noise_key(key)
            .map(|node| node.id.to_string())
    })
}

pub async fn http_get(address: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// Polls a metric of mix `i` until it reaches `at_least`.
pub async fn wait_for_metric(net: &Net, i: usize, series: &str, at_least: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let value = sample(&net.metrics(i).await, series).unwrap_or(0.0);
        if value >= at_least || tokio::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
