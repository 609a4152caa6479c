//! The mix node daemon: the pure core of [`umbra_mixnode`] on real Noise links.
//!
//! Threads: the tokio runtime runs the links and the HTTP endpoint; `umbra-sphinx-N` threads
//! (one per core by default) take frames off the links and unwrap them in batches; one
//! `umbra-mix-core` thread owns the [`MixCore`], feeds it the results and hands each packet
//! to its next hop's link when it is due. The core thread sleeps on its input queue with a
//! timeout, which wakes it within tens of microseconds of a packet's due time (tokio's timers
//! tick in milliseconds).
//!
//! With a ledger (the `[ledger]` section), the node fetches and verifies each epoch's topology
//! (see [`umbra_net::directory`]) and follows it: its layer, its links and its Sphinx keys change
//! with the epochs (see [`crate::epoch`]); a node the epoch's active set leaves out stays up,
//! idle. With a static topology file (private test networks) nothing changes while it runs.
//!
//! A data directory holds `config.toml`, `identity.key`, `sphinx.key` (and `sphinx-<n>.key`
//! for later key rotations), `noise.key`, `genesis.json` (or the topology file) and `replay/`,
//! where each key rotation's replay filter is saved.

mod config;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tokio::net::TcpListener;
use tracing::{info, warn};
use umbra_mixnode::{Counters, Histogram, MixCore, Unwrapped};
use umbra_topology::{Layer, NodeDescriptor, Role};
use umbra_wire::frame::Frame;

pub use crate::runtime::{HttpConfig, StorageConfig, WorkerConfig};
pub use config::MixnodeConfig;

use crate::epoch::{EpochNode, PeerSet, Placement};
use crate::runtime::{self, HopStatus, Node, Source};
use umbra_net::NodeError;
use umbra_net::directory::{Current, LedgerConfig};
use umbra_net::link::PeerLink;
use umbra_net::metrics::Exposition;
use umbra_net::noise::NoiseKeypair;

pub use crate::runtime::{CONFIG_FILE, NOISE_KEY_FILE, SPHINX_KEY_FILE};
/// The node kind's command, for messages.
const KIND: &str = "mixnode";
/// Frames waiting for a Sphinx thread; beyond this the node is overloaded and drops them.
const FRAME_QUEUE: usize = 16_384;
/// How long a stopping node waits for its links to send what is queued.
const LINK_DRAIN: Duration = Duration::from_secs(10);

pub use crate::runtime::Initialised;

/// Creates a node in `data_dir`: fresh keys (identity, Sphinx, Noise) and a commented
/// `config.toml`, following the ledger `ledger` describes (its genesis file copied from
/// `genesis`) or, without one, a static topology file. Refuses a directory that already holds a
/// node.
pub fn init(
    data_dir: &Path,
    listen_address: SocketAddr,
    http_address: SocketAddr,
    ledger: Option<(&LedgerConfig, &Path)>,
) -> Result<Initialised, NodeError> {
    runtime::init(
        data_dir,
        CONFIG_FILE,
        &MixnodeConfig::template(listen_address, http_address, ledger.map(|(l, _)| l)),
        ledger.map(|(_, genesis)| genesis),
    )
}

/// A mix node read from its data directory, ready to run.
pub struct Mixnode {
    data_dir: PathBuf,
    config: MixnodeConfig,
    noise: NoiseKeypair,
    source: Source,
}

impl Mixnode {
    /// Reads the node in `data_dir`, checking everything it needs: its configuration, keys,
    /// and its genesis file (with a ledger) or the topology file (which must list it, as a mix
    /// node, with its keys). Every error names the file and what is wrong.
    pub fn load(data_dir: &Path) -> Result<Mixnode, NodeError> {
        let config_path = data_dir.join(CONFIG_FILE);
        umbra_net::config::require_config(&config_path, data_dir, KIND)?;
        let config = MixnodeConfig::load(&config_path)?;
        let (noise, source) = Source::load(
            data_dir,
            KIND,
            config.ledger.as_ref(),
            config.topology.as_deref(),
            |made| made.mix_descriptor(config.listen_address),
            |_, me, topology_path| match me.role {
                Role::Mix(_) => Ok(()),
                Role::Gateway => Err(NodeError::invalid(
                    topology_path,
                    format!(
                        "lists this node ({}) as a gateway; a mix node serves in a layer",
                        me.id
                    ),
                )),
            },
        )?;
        Ok(Mixnode {
            data_dir: data_dir.to_owned(),
            config,
            noise,
            source,
        })
    }

    /// The node's configuration.
    pub fn config(&self) -> &MixnodeConfig {
        &self.config
    }

    /// Binds the configured addresses and runs until `shutdown`; see [`Mixnode::run_with`].
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), NodeError> {
        let listener = runtime::bind(self.config.listen_address).await?;
        let http = runtime::bind_http(&self.config.http).await?;
        self.run_with(listener, http, shutdown).await
    }

    /// Runs on the given sockets until `shutdown` resolves, then stops gracefully: it takes no
    /// new frames, forwards every packet it accepted as each comes due (at most the delay cap
    /// later), lets its links send what is queued, saves the replay filter and returns. With
    /// a ledger, it first fetches and verifies the topology, and refuses to run when every
    /// validator answers with one that does not verify against its genesis file.
    pub async fn run_with(
        self,
        listener: TcpListener,
        http_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), NodeError> {
        let Mixnode {
            data_dir,
            config,
            noise,
            source,
        } = self;
        let mut shutdown = std::pin::pin!(shutdown);
        // the first topology, the keys, and the follower of the epochs
        let started = Node::start(
            data_dir,
            KIND,
            noise,
            source,
            &config.mixing.replay,
            &config.links,
            &mut shutdown,
        )
        .await?;
        let Some(mut node) = started else {
            // stopped before the ledger served a topology
            return Ok(());
        };
        let peer_links = node.peers.update(&node.placement.next_hops);

        let core = MixCore::new(
            &config.mixing,
            node.placement.next_hops.iter().map(|node| node.mix_address),
        );
        let (frames_in, frames_out) = crossbeam_channel::bounded::<(Instant, Frame)>(FRAME_QUEUE);
        let (results_in, results_out) =
            crossbeam_channel::bounded::<Vec<(Instant, Unwrapped)>>(1024);
        let (updates_in, updates_out) = crossbeam_channel::unbounded::<CoreUpdate>();
        let status = Arc::new(NodeStatus {
            hop: HopStatus::new(&node, frames_out.clone()),
            counters: Mutex::new(Counters::default()),
            processing: Mutex::new(Histogram::default()),
            queued: AtomicUsize::new(0),
        });
        log_placement(&node.first, &node.placement);

        let workers = runtime::spawn_workers(
            &config.workers,
            &status.hop.stale,
            frames_out,
            Arc::clone(&node.unwrapper),
            move |results| results_in.send(results).is_ok(),
        )?;
        let threads = workers.len();
        let core_status = Arc::clone(&status);
        let core_thread = runtime::spawn_thread("umbra-mix-core", move || {
            run_core(core, results_out, updates_out, peer_links, &core_status)
        })?;

        let epochs = MixEpochs {
            core: updates_in,
            status: Arc::clone(&status),
        };
        let overloaded = Arc::clone(&status.hop.overloaded);
        let mut serving = node
            .serve(
                listener,
                http_listener,
                &config.links,
                frames_in,
                &overloaded,
                Arc::clone(&status) as Arc<dyn umbra_http::Status>,
                config.storage.replay_save_interval,
                epochs,
            )
            .await;
        info!(workers = threads, "mix node running");

        shutdown.await;
        info!("stopping: refusing new frames, forwarding what is queued");
        status.hop.stopping.store(true, Ordering::Relaxed);
        serving.stop().await?;
        // the links' readers are gone, so the workers drain and stop, then the core empties
        // its delay queue and drops the links' queues
        runtime::join_threads("Sphinx thread", workers).await?;
        let core = runtime::join_threads("core thread", vec![core_thread])
            .await?
            .remove(0);
        serving.finish(LINK_DRAIN).await?;
        let counters = core.counters();
        info!(
            received = counters.received,
            forwarded = counters.forwarded,
            "mix node stopped"
        );
        Ok(())
    }
}

/// New links and next hops for the core thread.
struct CoreUpdate {
    peers: HashMap<SocketAddr, PeerLink>,
    next_hops: Vec<SocketAddr>,
}

/// What a mix node changes in each new epoch: its place (layer or idle), and its core's links
/// and next hops.
struct MixEpochs {
    core: crossbeam_channel::Sender<CoreUpdate>,
    status: Arc<NodeStatus>,
}

impl EpochNode for MixEpochs {
    async fn apply(
        &mut self,
        current: &Current,
        _previous: &Current,
        placement: &Placement,
        peers: &mut PeerSet,
    ) -> bool {
        let links = peers.update(&placement.next_hops);
        let update = CoreUpdate {
            peers: links,
            next_hops: placement.next_hops.iter().map(|n| n.mix_address).collect(),
        };
        if self.core.send(update).is_err() {
            warn!("the core thread is gone; no longer following the epochs");
            return false;
        }
        self.status.hop.set_place(current, placement);
        true
    }

    fn log(&self, current: &Current, placement: &Placement) {
        log_placement(current, placement);
    }
}

fn log_placement(current: &Current, placement: &Placement) {
    match placement.me.as_ref().and_then(NodeDescriptor::layer) {
        Some(layer) => info!(
            epoch = current.epoch_number(),
            node = %placement.me.as_ref().map_or(0, |me| me.id.0),
            %layer,
            next_hops = placement.next_hops.len(),
            "serving in {layer}"
        ),
        None => info!(
            epoch = current.epoch_number(),
            finishing = placement.next_hops.len(),
            "not in this epoch's active set: idle (up, forwarding only what the last epoch sent)"
        ),
    }
}

/// The core thread: feeds the core, hands due packets to their links, publishes counters;
/// returns once its input is closed and its queue is empty.
fn run_core(
    mut core: MixCore,
    input: Receiver<Vec<(Instant, Unwrapped)>>,
    updates: Receiver<CoreUpdate>,
    mut peers: HashMap<SocketAddr, PeerLink>,
    status: &NodeStatus,
) -> MixCore {
    const PUBLISH_EVERY: Duration = Duration::from_millis(100);
    let mut open = true;
    let mut published = Instant::now();
    let mut processing = Histogram::default();
    loop {
        let now = Instant::now();
        let wait = core.poll_timeout().map_or(PUBLISH_EVERY, |due| {
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
        // a new epoch: links and next hops (the old links end once their queues are sent)
        while let Ok(update) = updates.try_recv() {
            peers = update.peers;
            core.set_next_hops(update.next_hops);
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
        core.handle_unwrapped(now, unwrapped);
    }
}

/// What the HTTP endpoint shows.
struct NodeStatus {
    hop: HopStatus,
    counters: Mutex<Counters>,
    processing: Mutex<Histogram>,
    queued: AtomicUsize,
}

impl umbra_http::Status for NodeStatus {
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
        page.counters(
            "umbra_mixnode_packets_dropped_total",
            "Packets dropped, by reason.",
            "reason",
            counters
                .dropped
                .iter()
                .map(|(reason, n)| (*reason, *n))
                .chain(self.hop.dropped()),
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
        let place = self.hop.place();
        page.gauge(
            "umbra_mixnode_layer",
            "The layer the node serves in this epoch (0: not in the active set).",
            f64::from(place.layer.map_or(0, Layer::number)),
        );
        self.hop.render(&mut page, "umbra_mixnode");
        page.finish()
    }

    fn health(&self) -> (bool, String) {
        let layer = self.hop.place().layer.map(|layer| layer.number());
        let layer = layer.map_or_else(|| "null".to_owned(), |n| n.to_string());
        self.hop.health(&format!("\"layer\":{layer}"))
    }
}
