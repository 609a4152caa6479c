//! A whole network on loopback for the end-to-end tests and benchmarks: every node its own
//! `umbra` process, clients in the test process on real sessions.

#![allow(dead_code, unreachable_pub)] // each user takes what it needs

pub mod apps;
pub mod ethereum;
pub mod localnet;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umbra::network::{Kind, Layout, Processes, Shape};
use umbra_client::{Client, ClientConfig, ClientKeys, TrafficConfig};
use umbra_client_daemons::client::{
    self, ClientEvent, ClientHandle, ClientSetup, ConnectionConfig,
};
use umbra_topology::Topology;

/// How long anything may take before a test gives up.
pub const WAIT: Duration = Duration::from_secs(90);

pub struct Net {
    pub dir: PathBuf,
    pub processes: Processes,
    pub topology: Topology,
}

impl Net {
    /// A new network of `shape` in a fresh folder, every node started and healthy.
    pub fn start(name: &str, shape: Shape) -> Net {
        let dir = std::env::temp_dir().join(format!("umbra-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = Layout::create_or_open(&dir, &shape).unwrap();
        let topology = layout.topology().unwrap();
        let mut processes = Processes::new(env!("CARGO_BIN_EXE_umbra").as_ref(), layout);
        processes.start_all().unwrap();
        let net = Net {
            dir,
            processes,
            topology,
        };
        let names: Vec<String> = net.names(None);
        for name in &names {
            net.wait_healthy(name);
        }
        net
    }

    /// The nodes' names, of one kind or all.
    pub fn names(&self, kind: Option<Kind>) -> Vec<String> {
        self.processes
            .layout()
            .nodes
            .iter()
            .filter(|n| kind.is_none_or(|k| n.kind == k))
            .map(|n| n.name.clone())
            .collect()
    }

    pub fn wait_healthy(&self, name: &str) {
        let deadline = std::time::Instant::now() + WAIT;
        while !self.processes.is_healthy(name) {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} is not healthy; see {}",
                self.processes.layout().log_file(name).display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Restarts a node after it stopped, and waits for it.
    pub fn restart(&mut self, name: &str) {
        self.processes.start(name).unwrap();
        self.wait_healthy(name);
    }

    /// A gateway's descriptor (0 or 1).
    pub fn gateway(&self, index: usize) -> umbra_topology::NodeDescriptor {
        self.topology.gateways().nth(index).unwrap().clone()
    }

    /// Starts a client of gateway `gateway` with `keys`.
    pub fn client(&self, gateway: usize, keys: &ClientKeys, config: ClientConfig) -> TestClient {
        self.client_with_outbox(gateway, keys, config, None)
    }

    pub fn client_with_outbox(
        &self,
        gateway: usize,
        keys: &ClientKeys,
        config: ClientConfig,
        outbox: Option<PathBuf>,
    ) -> TestClient {
        let gateway = self.gateway(gateway);
        let core = Client::new(
            config,
            keys.clone(),
            gateway.noise_key.0,
            self.topology.clone(),
            rand::random(),
            std::time::Instant::now(),
        )
        .unwrap();
        let stop = CancellationToken::new();
        let setup = ClientSetup {
            gateway_address: gateway.client_address.unwrap(),
            gateway_key: gateway.noise_key,
            connection: ConnectionConfig {
                reconnect_initial: Duration::from_millis(100),
                reconnect_max: Duration::from_millis(500),
                ..ConnectionConfig::default()
            },
            outbox,
            max_pending_bytes: client::DEFAULT_MAX_PENDING_BYTES,
            topologies: None,
            tickets: None,
        };
        let (handle, events, task) = client::start(core, keys, setup, stop.clone()).unwrap();
        TestClient {
            handle,
            events,
            stop,
            task,
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.processes.stop_all(Duration::from_secs(10));
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Fast traffic for tests: a packet every 2 ms, 2 ms per hop, acks waited for 1 s beyond the
/// route's delays.
pub fn fast_config() -> ClientConfig {
    let mut config = ClientConfig {
        traffic: TrafficConfig {
            mean_hop_delay: Duration::from_millis(2),
            mean_ack_delay: Duration::from_millis(2),
            mean_send_interval: Duration::from_millis(2),
            mean_loop_interval: Duration::from_millis(100),
            receive_interval: Duration::from_millis(2),
            ..TrafficConfig::default()
        },
        ..ClientConfig::default()
    };
    config.acks.extra_wait = Duration::from_secs(1);
    config.acks.reply_wait = Duration::from_secs(2);
    config
}

pub struct TestClient {
    pub handle: ClientHandle,
    pub events: mpsc::Receiver<ClientEvent>,
    pub stop: CancellationToken,
    pub task: JoinHandle<()>,
}

impl TestClient {
    /// The next event `select` picks, skipping the others.
    pub async fn next<T>(&mut self, mut select: impl FnMut(ClientEvent) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("the awaited event did not come")
                .expect("the client stopped");
            if let Some(found) = select(event) {
                return found;
            }
        }
    }

    pub async fn connected(&mut self) -> u32 {
        self.next(|e| match e {
            ClientEvent::Connected { waiting, .. } => Some(waiting),
            _ => None,
        })
        .await
    }

    pub async fn received(&mut self) -> (Vec<u8>, Option<umbra_client::SenderTag>) {
        self.next(|e| match e {
            ClientEvent::Received { message, reply_to } => Some((message, reply_to)),
            _ => None,
        })
        .await
    }

    pub async fn sent(&mut self, id: u64) {
        self.next(|e| match e {
            ClientEvent::Sent(sent) if sent == id => Some(()),
            ClientEvent::Failed { id: failed, reason } if failed == id => {
                panic!("message {id} failed: {reason}")
            }
            _ => None,
        })
        .await
    }

    /// Waits until every message of `ids` is acknowledged, in any order.
    pub async fn all_sent(&mut self, ids: &[u64]) {
        let mut waiting: std::collections::HashSet<u64> = ids.iter().copied().collect();
        while !waiting.is_empty() {
            let id = self
                .next(|e| match e {
                    ClientEvent::Sent(id) => Some(id),
                    ClientEvent::Failed { id, reason } => panic!("message {id} failed: {reason}"),
                    _ => None,
                })
                .await;
            waiting.remove(&id);
        }
    }

    /// Stops the client cleanly.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Ends the client as a crash would: its task dies with the session, nothing said.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// CPU time of a process so far: utime and stime, fields 14 and 15 of /proc/<pid>/stat, in
/// clock ticks (100 per second).
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
