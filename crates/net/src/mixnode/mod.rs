//! The mix node daemon: the pure core of [`umbra_mixnode`] on real Noise links.
//!
//! Threads: the tokio runtime runs the links and the HTTP endpoint; `umbra-sphinx-N` threads
//! (one per core by default) take frames off the links and unwrap them in batches; one
//! `umbra-mix-core` thread owns the [`MixCore`], feeds it the results and hands each packet
//! to its next hop's link when it is due. The core thread sleeps on its input queue with a
//! timeout, which wakes it within tens of microseconds of a packet's due time (tokio's timers
//! tick in milliseconds).
//!
//! A data directory holds `config.toml`, `sphinx.key`, `noise.key`, the topology file and
//! `replay/`, where each key rotation's replay filter is saved.

mod config;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;
use umbra_mixnode::{
    Counters, Histogram, MixCore, ReplayFilter, RotationKey, Unwrapped, Unwrapper,
};
use umbra_sphinx::PrivateKey;
use umbra_topology::{Layer, NodeDescriptor, Role, Topology};
use umbra_wire::frame::Frame;

pub use crate::node::{HttpConfig, StorageConfig, WorkerConfig};
pub use config::MixnodeConfig;

use crate::err::NodeError;
use crate::http;
use crate::link::{LinkCounters, PeerLink};
use crate::metrics::Exposition;
use crate::node;
use crate::noise::NoiseKeypair;

/// The configuration file in a data directory.
pub const CONFIG_FILE: &str = "config.toml";
pub use crate::node::{NOISE_KEY_FILE, SPHINX_KEY_FILE};
/// Frames waiting for a Sphinx thread; beyond this the node is overloaded and drops them.
const FRAME_QUEUE: usize = 16_384;
/// How long a stopping node waits for its links to send what is queued.
const LINK_DRAIN: Duration = Duration::from_secs(10);

pub use crate::node::Initialised;

/// Creates a node in `data_dir`: fresh keys and a commented `config.toml`. Refuses a
/// directory that already holds a node.
pub fn init(
    data_dir: &Path,
    listen_address: SocketAddr,
    http_address: SocketAddr,
) -> Result<Initialised, NodeError> {
    node::init(
        data_dir,
        CONFIG_FILE,
        &MixnodeConfig::template(listen_address, http_address),
    )
}

/// A mix node read from its data directory, ready to run.
pub struct Mixnode {
    data_dir: PathBuf,
    config: MixnodeConfig,
    sphinx: PrivateKey,
    noise: NoiseKeypair,
    topology: Topology,
    me: NodeDescriptor,
    layer: Layer,
    filter: Arc<ReplayFilter>,
}

impl Mixnode {
    /// Reads the node in `data_dir`, checking everything it needs: its configuration, keys,
    /// the topology (which must list it, as a mix node, with its keys) and its saved replay
    /// filter. Every error names the file and what is wrong.
    pub fn load(data_dir: &Path) -> Result<Mixnode, NodeError> {
        let config_path = data_dir.join(CONFIG_FILE);
        node::require_config(&config_path, data_dir, "mixnode")?;
        let config = MixnodeConfig::load(&config_path)?;
        let (keys, topology, me, topology_path) =
            node::load_identity(data_dir, &config.topology, |made| {
                made.mix_descriptor(config.listen_address)
            })?;
        let Role::Mix(layer) = me.role else {
            return Err(NodeError::invalid(
                &topology_path,
                format!(
                    "lists this node ({}) as a gateway; a mix node serves in a layer",
                    me.id
                ),
            ));
        };
        let filter = Arc::new(node::load_filter(
            data_dir,
            topology.key_rotation(),
            &config.mixing.replay,
            &config_path,
        )?);
        let node::NodeKeys { sphinx, noise } = keys;
        Ok(Mixnode {
            data_dir: data_dir.to_owned(),
            config,
            sphinx,
            noise,
            topology,
            me,
            layer,
            filter,
        })
    }

    /// The node's configuration.
    pub fn config(&self) -> &MixnodeConfig {
        &self.config
    }

    /// Binds the configured addresses and runs until `shutdown`; see [`Mixnode::run_with`].
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), NodeError> {
        let bind = |address| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| NodeError::Bind { address, source })
        };
        let listener = bind(self.config.listen_address).await?;
        let http = match self.config.http.enabled {
            true => Some(bind(self.config.http.listen_address).await?),
            false => None,
        };
        self.run_with(listener, http, shutdown).await
    }

    /// Runs on the given sockets until `shutdown` resolves, then stops gracefully: it takes no
    /// new frames, forwards every packet it accepted as each comes due (at most the delay cap
    /// later), lets its links send what is queued, saves the replay filter and returns.
    pub async fn run_with(
        self,
        listener: TcpListener,
        http_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), NodeError> {
        let Mixnode {
            data_dir,
            config,
            sphinx,
            noise,
            topology,
            me,
            layer,
            filter,
        } = self;
        let stop = CancellationToken::new();
        let keys = Arc::new(noise);
        let links = Arc::new(LinkCounters::default());

        // outbound: a link to every node of the next layer
        let next: Vec<NodeDescriptor> = match layer.next() {
            Some(next) => topology.layer(next).cloned().collect(),
            None => topology.gateways().cloned().collect(),
        };
        let node::Peers {
            links: peers,
            tasks: mut peer_tasks,
            status: peer_status,
        } = node::connect_peers(&next, &keys, &config.links, &links);

        let unwrapper = Arc::new(Unwrapper::new(
            RotationKey::new(sphinx, Arc::clone(&filter)),
            None,
        ));
        let core = MixCore::new(&config.mixing, next.iter().map(|node| node.mix_address));
        let (frames_in, frames_out) = crossbeam_channel::bounded::<(Instant, Frame)>(FRAME_QUEUE);
        let (results_in, results_out) =
            crossbeam_channel::bounded::<Vec<(Instant, Unwrapped)>>(1024);
        let status = Arc::new(NodeStatus {
            me: me.clone(),
            layer,
            counters: Mutex::new(Counters::default()),
            processing: Mutex::new(Histogram::default()),
            queued: AtomicUsize::new(0),
            overloaded: Arc::new(AtomicU64::new(0)),
            stale: Arc::new(AtomicU64::new(0)),
            links: Arc::clone(&links),
            peers: peer_status,
            unwrapper: Arc::clone(&unwrapper),
            waiting: frames_out.clone(),
            stopping: AtomicBool::new(false),
        });

        let workers = node::spawn_workers(
            &config.workers,
            &status.stale,
            frames_out,
            Arc::clone(&unwrapper),
            move |results| results_in.send(results).is_ok(),
        )?;
        let threads = workers.len();
        let core_status = Arc::clone(&status);
        let core_thread = std::thread::Builder::new()
            .name("umbra-mix-core".into())
            .spawn(move || run_core(core, results_out, peers, &core_status))
            .map_err(|error| NodeError::Other(format!("cannot start the core thread: {error}")))?;

        let inbound = node::serve_links_from(
            listener,
            &keys,
            &config.links,
            &topology,
            frames_in,
            &status.overloaded,
            &links,
            &stop,
        );
        let http_task = http_listener.map(|listener| {
            let status: Arc<dyn http::Status> = Arc::clone(&status) as Arc<dyn http::Status>;
            tokio::spawn(http::serve(listener, status, stop.clone()))
        });
        let saver = tokio::spawn(node::save_periodically(
            data_dir.clone(),
            Arc::clone(&unwrapper),
            config.storage.replay_save_interval,
            stop.clone(),
        ));
        info!(node = %me.id, %layer, peers = next.len(), workers = threads, "mix node running");

        shutdown.await;
        info!("stopping: refusing new frames, forwarding what is queued");
        status.stopping.store(true, Ordering::Relaxed);
        stop.cancel();
        let _ = inbound.await;
        let _ = saver.await;
        // the links' readers are gone, so the workers drain and stop, then the core empties
        // its delay queue and drops the links' queues
        let core = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
            core_thread.join()
        })
        .await
        .map_err(|error| NodeError::Other(format!("stopping: {error}")))?
        .map_err(|_| NodeError::Other("the core thread panicked".into()))?;
        node::drain_peers(&mut peer_tasks, LINK_DRAIN).await;
        if let Some(task) = http_task {
            let _ = task.await;
        }
        node::save_filters(&data_dir, &unwrapper).await?;
        let counters = core.counters();
        info!(
            received = counters.received,
            forwarded = counters.forwarded,
            "mix node stopped"
        );
        Ok(())
    }
}

/// The core thread: feeds the core, hands due packets to their links, publishes counters;
/// returns once its input is closed and its queue is empty.
fn run_core(
    mut core: MixCore,
    input: Receiver<Vec<(Instant, Unwrapped)>>,
    peers: HashMap<SocketAddr, PeerLink>,
    status: &NodeStatus,
) -> MixCore {
    const PUBLISH_EVERY: Duration = Duration::from_millis(100);
    let mut open = true;
    let mut published = Instant::now();
    let mut processing = Histogram::default();
    loop {
        let now = Instant::now();
        let wait = core.next_wakeup().map_or(PUBLISH_EVERY, |due| {
            due.saturating_duration_since(now).min(PUBLISH_EVERY)
        });
        if open {
            match input.recv_timeout(wait) {
                Ok(batch) => {
                    schedule(&mut core, &mut processing, batch);
                    // take whatever else is already waiting before sending
                    while let Ok(batch) = input.try_recv() {
                        schedule(&mut core, &mut processing, batch);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        } else {
            std::thread::sleep(wait);
        }
        let now = Instant::now();
        while let Some(transmit) = core.poll_transmit(now) {
            match peers.get(&transmit.to) {
                Some(peer) => match peer.try_send(transmit.frame) {
                    Ok(()) => {}
                    Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                        core.count_send_failure("link_queue_full")
                    }
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                        core.count_send_failure("link_closed")
                    }
                },
                None => core.count_send_failure("no_link"),
            }
        }
        let finished = !open && core.queued() == 0;
        if finished || now.duration_since(published) >= PUBLISH_EVERY {
            *status
                .counters
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = core.counters().clone();
            *status
                .processing
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = processing.clone();
            status.queued.store(core.queued(), Ordering::Relaxed);
            published = now;
        }
        if finished {
            return core;
        }
    }
}

/// Hands unwrapped packets to the core. A packet's delay counts from now, when the core
/// takes it (as in Nym): its lateness then measures only how exactly the node keeps time,
/// and the time unwrapping took is recorded apart.
fn schedule(core: &mut MixCore, processing: &mut Histogram, batch: Vec<(Instant, Unwrapped)>) {
    let now = Instant::now();
    for (arrived, unwrapped) in batch {
        processing.record(now.saturating_duration_since(arrived));
        core.handle(now, unwrapped);
    }
}

/// What the HTTP endpoint shows.
struct NodeStatus {
    me: NodeDescriptor,
    layer: Layer,
    counters: Mutex<Counters>,
    processing: Mutex<Histogram>,
    queued: AtomicUsize,
    overloaded: Arc<AtomicU64>,
    /// Frames dropped for waiting too long for a Sphinx thread.
    stale: Arc<AtomicU64>,
    links: Arc<LinkCounters>,
    peers: Vec<(String, crate::link::PeerStatus)>,
    unwrapper: Arc<Unwrapper>,
    waiting: Receiver<(Instant, Frame)>,
    stopping: AtomicBool,
}

impl http::Status for NodeStatus {
    fn metrics(&self) -> String {
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut page = Exposition::new();
        page.counter(
            "umbra_mixnode_frames_received_total",
            "Frames the core has seen.",
            counters.received,
        );
        page.counter(
            "umbra_mixnode_packets_forwarded_total",
            "Packets handed to a link when due.",
            counters.forwarded,
        );
        page.counter(
            "umbra_mixnode_packets_replayed_total",
            "Packets dropped as replays.",
            counters.replayed,
        );
        page.counter(
            "umbra_mixnode_packets_expired_total",
            "Packets for a key rotation the node does not hold.",
            counters.expired,
        );
        page.counters(
            "umbra_mixnode_packets_malformed_total",
            "Frames and packets refused as malformed, by reason.",
            "reason",
            counters.malformed.iter().map(|(reason, n)| (*reason, *n)),
        );
        let overloaded = self.overloaded.load(Ordering::Relaxed);
        let stale = self.stale.load(Ordering::Relaxed);
        page.counters(
            "umbra_mixnode_packets_dropped_total",
            "Packets dropped, by reason.",
            "reason",
            counters
                .dropped
                .iter()
                .map(|(reason, n)| (*reason, *n))
                .chain((overloaded > 0).then_some(("overloaded", overloaded)))
                .chain((stale > 0).then_some(("queued_too_long", stale))),
        );
        page.counter(
            "umbra_mixnode_delays_capped_total",
            "Packets whose delay was cut to the maximum.",
            counters.delays_capped,
        );
        page.gauge(
            "umbra_mixnode_delay_queue_packets",
            "Packets waiting for their time.",
            self.queued.load(Ordering::Relaxed) as f64,
        );
        page.gauge(
            "umbra_mixnode_unwrap_queue_frames",
            "Frames waiting for a Sphinx thread.",
            self.waiting.len() as f64,
        );
        page.histogram(
            "umbra_mixnode_forward_lateness_seconds",
            "How long after their due time packets were handed to their link.",
            &Histogram::BOUNDS,
            counters.lateness.counts(),
            counters.lateness.sum().as_secs_f64(),
        );
        let processing = self
            .processing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        page.histogram(
            "umbra_mixnode_processing_seconds",
            "From a frame's arrival to its packet's scheduling: queueing and Sphinx processing.",
            &Histogram::BOUNDS,
            processing.counts(),
            processing.sum().as_secs_f64(),
        );
        node::render_hop_metrics(
            &mut page,
            "umbra_mixnode",
            &self.unwrapper,
            &self.peers,
            &self.links,
        );
        page.finish()
    }

    fn health(&self) -> (bool, String) {
        let stopping = self.stopping.load(Ordering::Relaxed);
        let connected = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.is_connected())
            .count();
        let body = format!(
            "{{\"status\":\"{}\",\"node\":{},\"layer\":{},\"peers\":{},\"peers_connected\":{}}}",
            if stopping { "stopping" } else { "ok" },
            self.me.id.0,
            self.layer.number(),
            self.peers.len(),
            connected
        );
        (!stopping, body)
    }
}
