//! The mix node daemon: the pure core of [`umbra_mixnode`] on real Noise links.
//!
//! Threads: the tokio runtime runs the links and the HTTP endpoint; `umbra-sphinx-N` threads
//! (one per core by default) take frames off the links and unwrap them in batches; one
//! `umbra-mix-core` thread owns the [`MixCore`], feeds it the results and hands each packet
//! to its next hop's link when it is due. The core thread sleeps on its input queue with a
//! timeout, which wakes it within tens of microseconds of a packet's due time (tokio's timers
//! tick in milliseconds).
//!
//! Loop cover (the `[cover]` section, Loopix λ_M): the core decides when the node sends a
//! loop of its own and through which nodes; the `umbra-mix-loops` thread builds its Sphinx
//! packet (so that the core thread's timing does not wait on it) and hands it back to the core
//! thread, which sends it like any packet. When the loops come back, the core counts them;
//! when too many of the recent ones do not, the node warns in its log and `/health` says
//! "degraded".
//!
//! With a ledger (the `[ledger]` section), the node fetches and verifies each epoch's topology
//! (see [`umbra_net::directory`]) and follows it: its layer, its links and its Sphinx keys change
//! with the epochs (see [`crate::epoch`]); a node the epoch's active set leaves out stays up,
//! idle. With a static topology file (private test networks) nothing changes while it runs.
//!
//! For tests of the network monitor, `insecure_drop_fraction` makes the node drop that share
//! of the packets it should forward, as a faulty or cheating node would (see
//! [`MixnodeConfig::insecure_drop_fraction`]).
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

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::net::TcpListener;
use tracing::{info, warn};
use umbra_mixnode::{
    Counters, CoverConfig, Event, Histogram, LoopCounters, LoopOrder, LoopRoutes, MixCore,
    Unwrapped,
};
use umbra_topology::{Layer, NodeDescriptor, Role};
use umbra_wire::frame::{Frame, FrameHeader, KeyRotation};

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
/// Loops waiting to be built; beyond this (the builder is starved of CPU) they are not sent,
/// and count as lost.
const LOOP_QUEUE: usize = 256;

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

        let mut core = MixCore::new(
            &config.mixing,
            node.placement.next_hops.iter().map(|node| node.mix_address),
        )
        .with_cover(&config.cover, rand::random());
        if config.insecure_drop_fraction > 0.0 {
            core = core.with_insecure_drop(config.insecure_drop_fraction, rand::random());
        }
        core.set_loop_routes(Instant::now(), loop_routes(&node.first, &node.placement));
        let (frames_in, frames_out) = crossbeam_channel::bounded::<(Instant, Frame)>(FRAME_QUEUE);
        // one queue into the core thread (unwrapped packets, built loops, the stop), so that it
        // waits on a single channel: waiting on two (a crossbeam select) cost about 14 µs of CPU
        // per packet with Poisson delays, where the thread wakes for every packet due
        let (results_in, results_out) = crossbeam_channel::bounded::<CoreInput>(1024);
        let stop_core = results_in.clone();
        let built_in = results_in.clone();
        let (updates_in, updates_out) = crossbeam_channel::unbounded::<CoreUpdate>();
        let status = Arc::new(NodeStatus {
            hop: HopStatus::new(&node, frames_out.clone()),
            counters: Mutex::new(Counters::default()),
            processing: Mutex::new(Histogram::default()),
            queued: AtomicUsize::new(0),
            cover: config.cover.clone(),
        });
        log_placement(&node.first, &node.placement);
        log_cover(&config.cover);
        log_insecure_drop(config.insecure_drop_fraction);

        let workers = runtime::spawn_workers(
            &config.workers,
            &status.hop.stale,
            frames_out,
            Arc::clone(&node.unwrapper),
            move |results| results_in.send(CoreInput::Unwrapped(results)).is_ok(),
        )?;
        let threads = workers.len();
        let (orders_in, orders_out) =
            crossbeam_channel::bounded::<(LoopOrder, KeyRotation)>(LOOP_QUEUE);
        let builder = runtime::spawn_thread("umbra-mix-loops", move || {
            build_loops(&orders_out, &built_in)
        })?;
        let core_status = Arc::clone(&status);
        let shell = CoreShell {
            input: results_out,
            updates: updates_out,
            loops: orders_in,
            peers: peer_links,
            stamp: crate::epoch::stamp(&node.first),
        };
        let core_thread = runtime::spawn_thread("umbra-mix-core", move || {
            run_core(core, shell, &core_status)
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
        // no more unwrapped packets: tell the core thread to finish (off the async threads:
        // the send waits while the queue is full, which the core thread empties)
        let _ = tokio::task::spawn_blocking(move || stop_core.send(CoreInput::Stop)).await;
        let core = runtime::join_threads("core thread", vec![core_thread])
            .await?
            .remove(0);
        // the core thread is gone with the orders' queue: the builder finishes
        runtime::join_threads("loop builder", vec![builder]).await?;
        serving.finish(LINK_DRAIN).await?;
        let counters = core.counters();
        info!(
            received = counters.received,
            forwarded = counters.forwarded,
            loops_sent = counters.loops.sent,
            loops_returned = counters.loops.returned,
            loops_lost = counters.loops.lost,
            "mix node stopped"
        );
        Ok(())
    }
}

/// New links, next hops and loop routes for the core thread, and the key rotation to stamp
/// loops with.
struct CoreUpdate {
    peers: HashMap<SocketAddr, PeerLink>,
    next_hops: Vec<SocketAddr>,
    routes: Option<LoopRoutes>,
    stamp: KeyRotation,
}

/// The nodes the node's loops may take in an epoch: none when it is not in a layer.
fn loop_routes(current: &Current, placement: &Placement) -> Option<LoopRoutes> {
    let me = placement.me.as_ref()?;
    LoopRoutes::new(&current.topology, me)
}

fn log_cover(cover: &CoverConfig) {
    if cover.loop_rate > 0.0 {
        info!(
            loops_per_second = cover.loop_rate,
            "sending loop cover through the network and back"
        );
    } else {
        warn!(
            "loop cover is off ([cover] loop_rate = 0): the node adds no cover of its own and cannot tell whether the network drops its packets"
        );
    }
}

fn log_insecure_drop(fraction: f64) {
    if fraction > 0.0 {
        warn!(
            fraction,
            "insecure_drop_fraction = {fraction}: this node drops {fraction} of what it should forward; for tests only"
        );
    }
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
            routes: loop_routes(current, placement),
            stamp: crate::epoch::stamp(current),
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

/// What the core thread works with besides the core: its inputs, the loop builder's queues,
/// the links, and the key rotation loops are stamped with.
struct CoreShell {
    input: Receiver<CoreInput>,
    updates: Receiver<CoreUpdate>,
    loops: Sender<(LoopOrder, KeyRotation)>,
    peers: HashMap<SocketAddr, PeerLink>,
    stamp: KeyRotation,
}

impl CoreShell {
    /// Hands a frame to the link of `to`, counting it in the core if it cannot go.
    /// Sends one of the node's own loops: only over a link that is up. A loop queued on a
    /// link that is down would be lost anyway (and counted so), and would hold the node's stop
    /// for the link's drain grace.
    fn send_loop(&self, core: &mut MixCore, to: SocketAddr, frame: Frame) {
        match self.peers.get(&to) {
            Some(peer) if !peer.is_connected() => core.count_send_failure("loop_link_down"),
            _ => self.send(core, to, frame),
        }
    }

    fn send(&self, core: &mut MixCore, to: SocketAddr, frame: Frame) {
        match self.peers.get(&to) {
            Some(peer) => match peer.try_send(frame) {
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

    /// Carries out what the core reports: loops to the builder, loss alarms to the log.
    fn carry_out(&self, core: &mut MixCore) {
        while let Some(event) = core.poll_event() {
            match event {
                Event::SendLoop(order) => {
                    if self.loops.try_send((order, self.stamp)).is_err() {
                        // never sent: it will count as lost
                        core.count_send_failure("loop_builder_busy");
                    }
                }
                Event::LoopLossHigh(loss) => warn!(
                    lost = loss.lost,
                    of = loss.of,
                    "{:.0} % of this node's last {} loops did not come back: it is under attack or badly connected",
                    loss.ratio() * 100.0,
                    loss.of
                ),
                Event::LoopLossNormal(loss) => {
                    info!(lost = loss.lost, of = loss.of, "loop loss back to normal")
                }
            }
        }
    }
}

/// The core thread: feeds the core, fires its timers, hands due packets and built loops to
/// their links, publishes counters; returns once its input is closed and its queue is empty.
fn run_core(mut core: MixCore, mut shell: CoreShell, status: &NodeStatus) -> MixCore {
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
            match shell.input.recv_timeout(wait) {
                Ok(input) => {
                    open &= take(&mut core, &mut shell, &mut processing, input);
                    // take whatever else is already waiting before sending
                    while open && let Ok(input) = shell.input.try_recv() {
                        open &= take(&mut core, &mut shell, &mut processing, input);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            if !open {
                // stopping: no new loops (those out are still awaited)
                core.set_loop_routes(Instant::now(), None);
            }
        } else {
            std::thread::sleep(wait);
            // loops the builder finishes after the stop still go out
            while let Ok(input) = shell.input.try_recv() {
                take(&mut core, &mut shell, &mut processing, input);
            }
        }
        // a new epoch: links, next hops and loop routes (the old links end once their queues
        // are sent)
        while let Ok(update) = shell.updates.try_recv() {
            shell.peers = update.peers;
            shell.stamp = update.stamp;
            core.set_next_hops(update.next_hops);
            if open {
                core.set_loop_routes(Instant::now(), update.routes);
            }
        }
        let now = Instant::now();
        core.handle_timeout(now);
        shell.carry_out(&mut core);
        while let Some(transmit) = core.poll_transmit(now) {
            shell.send(&mut core, transmit.to, transmit.frame);
        }
        let finished = !open && core.queued() == 0;
        if finished || now.duration_since(published) >= PUBLISH_EVERY {
            *status
                .counters
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = core.counters();
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

/// The loop builder thread: builds each loop the core orders (the costly Sphinx work, one
/// shared secret per hop) and hands it back to the core thread to send; returns once the core
/// thread is gone.
fn build_loops(orders: &Receiver<(LoopOrder, KeyRotation)>, built: &Sender<CoreInput>) {
    let mut rng = rand::rng();
    for (order, stamp) in orders {
        match order.build(&mut rng) {
            Ok(packet) => {
                let frame = Frame {
                    header: FrameHeader::v8(packet.size(), stamp),
                    packet,
                };
                if built
                    .send(CoreInput::Built(order.first_hop, frame))
                    .is_err()
                {
                    return;
                }
            }
            // the core draws routes of four hops and a short message: this cannot happen
            Err(error) => warn!(%error, "could not build a loop"),
        }
    }
}

/// What reaches the core thread.
enum CoreInput {
    /// Packets the Sphinx threads unwrapped, with when their frames arrived.
    Unwrapped(Vec<(Instant, Unwrapped)>),
    /// One of the node's own loops, built, for its first hop.
    Built(SocketAddr, Frame),
    /// The Sphinx threads are done (the node is stopping): no new loops.
    Stop,
}

/// Takes one input; whether the thread stays open for more.
fn take(
    core: &mut MixCore,
    shell: &mut CoreShell,
    processing: &mut Histogram,
    input: CoreInput,
) -> bool {
    match input {
        CoreInput::Unwrapped(batch) => schedule(core, processing, batch),
        CoreInput::Built(to, frame) => shell.send_loop(core, to, frame),
        CoreInput::Stop => return false,
    }
    true
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
    cover: CoverConfig,
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
        render_loops(&mut page, &counters.loops, &self.cover);
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
        let loops = self
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .loops
            .clone();
        let recent = loops.recent;
        let fields = format!(
            "\"layer\":{layer},\"loops\":{{\"sent\":{},\"returned\":{},\"lost\":{},\"recent_lost\":{},\"recent_of\":{},\"alarm\":{}}}",
            loops.sent, loops.returned, loops.lost, recent.lost, recent.of, loops.alarm
        );
        // still serving: the node is as useful as the network lets it be
        let warning = loops.alarm.then(|| {
            format!(
                "{} of this node's last {} loops did not come back: it is under attack or badly connected",
                recent.lost, recent.of
            )
        });
        self.hop.health(&fields, warning.as_deref())
    }
}

/// The node's loops in `/metrics`.
fn render_loops(page: &mut Exposition, loops: &LoopCounters, cover: &CoverConfig) {
    page.gauge(
        "umbra_mixnode_loop_rate",
        "Loops per second the node sends (Loopix λ_M; 0: none).",
        cover.loop_rate,
    );
    page.counter(
        "umbra_mixnode_loops_sent_total",
        "Loops the node sent through the network and back to itself.",
        loops.sent,
    );
    page.counter(
        "umbra_mixnode_loops_returned_total",
        "Loops that came back within their deadline.",
        loops.returned,
    );
    page.counter(
        "umbra_mixnode_loops_lost_total",
        "Loops not back within their deadline.",
        loops.lost,
    );
    page.gauge(
        "umbra_mixnode_loops_pending",
        "Loops out, neither back nor past their deadline.",
        loops.pending as f64,
    );
    page.gauge(
        "umbra_mixnode_loop_recent_loss_ratio",
        "The share of the most recent loops (see umbra_mixnode_loop_recent_loops) that was lost.",
        loops.recent.ratio(),
    );
    page.gauge(
        "umbra_mixnode_loop_recent_loops",
        "Loops the recent loss is measured over (up to the configured window).",
        loops.recent.of as f64,
    );
    page.gauge(
        "umbra_mixnode_loop_loss_alarm",
        "1 while the recent loss is above the alarm's threshold: under attack or badly connected.",
        f64::from(u8::from(loops.alarm)),
    );
    page.histogram(
        "umbra_mixnode_loop_round_trip_seconds",
        "How long returned loops took, sent to back.",
        &Histogram::BOUNDS,
        loops.round_trip.counts(),
        loops.round_trip.sum().as_secs_f64(),
    );
}
