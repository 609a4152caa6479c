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

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use umbra_mixnode::{
    Counters, Histogram, MixCore, ReplayFilter, RotationKey, Unwrapped, Unwrapper,
};
use umbra_sphinx::{PrivateKey, PublicKey};
use umbra_topology::{Layer, NodeDescriptor, NoiseKey, Role, Topology};
use umbra_wire::frame::Frame;

pub use config::{HttpConfig, MixnodeConfig, StorageConfig, WorkerConfig};

use crate::err::NodeError;
use crate::http;
use crate::keys::{read_key, write_new_key};
use crate::link::{Admission, LinkCounters, Peer, PeerLink, serve_inbound};
use crate::metrics::Exposition;
use crate::noise::NoiseKeypair;

/// The configuration file in a data directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The Sphinx private key file.
pub const SPHINX_KEY_FILE: &str = "sphinx.key";
/// The Noise private key file.
pub const NOISE_KEY_FILE: &str = "noise.key";
const REPLAY_DIR: &str = "replay";
/// Frames waiting for a Sphinx thread; beyond this the node is overloaded and drops them.
const FRAME_QUEUE: usize = 16_384;
/// How long a stopping node waits for its links to send what is queued.
const LINK_DRAIN: Duration = Duration::from_secs(10);

/// What `init` made: the node's public keys, to be listed in the topology.
#[derive(Debug)]
pub struct Initialised {
    /// The Sphinx public key.
    pub sphinx_key: PublicKey,
    /// The Noise public key.
    pub noise_key: NoiseKey,
    /// The configuration file written.
    pub config: PathBuf,
}

impl Initialised {
    /// The node as a topology entry, with its id and layer left for the operator to fill in.
    pub fn descriptor(&self, mix_address: SocketAddr) -> String {
        format!(
            "{{ \"id\": <id>, \"role\": \"mix\", \"layer\": <1, 2 or 3>, \"mix_address\": \"{mix_address}\", \"sphinx_key\": \"{}\", \"noise_key\": \"{}\" }}",
            bs58::encode(self.sphinx_key.as_bytes()).into_string(),
            self.noise_key
        )
    }
}

/// Creates a node in `data_dir`: fresh keys and a commented `config.toml`. Refuses a
/// directory that already holds a node.
pub fn init(
    data_dir: &Path,
    listen_address: SocketAddr,
    http_address: SocketAddr,
) -> Result<Initialised, NodeError> {
    for file in [CONFIG_FILE, SPHINX_KEY_FILE, NOISE_KEY_FILE] {
        let existing = data_dir.join(file);
        if existing.exists() {
            return Err(NodeError::AlreadyInitialised {
                dir: data_dir.to_owned(),
                existing,
            });
        }
    }
    std::fs::create_dir_all(data_dir).map_err(|source| NodeError::Write {
        path: data_dir.to_owned(),
        source,
    })?;
    let sphinx = PrivateKey::generate(&mut rand::rng());
    let noise = NoiseKeypair::generate();
    write_new_key(&data_dir.join(SPHINX_KEY_FILE), sphinx.as_bytes())?;
    write_new_key(&data_dir.join(NOISE_KEY_FILE), noise.private_bytes())?;
    let config = data_dir.join(CONFIG_FILE);
    std::fs::write(
        &config,
        MixnodeConfig::template(listen_address, http_address),
    )
    .map_err(|source| NodeError::Write {
        path: config.clone(),
        source,
    })?;
    Ok(Initialised {
        sphinx_key: sphinx.public_key(),
        noise_key: noise.public(),
        config,
    })
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
        if !config_path.exists() {
            return Err(NodeError::invalid(
                &config_path,
                format!(
                    "missing; create the node first with `umbra mixnode init --data-dir {}`",
                    data_dir.display()
                ),
            ));
        }
        let config = MixnodeConfig::load(&config_path)?;
        let sphinx = PrivateKey::from_bytes(read_key(&data_dir.join(SPHINX_KEY_FILE))?);
        let noise = NoiseKeypair::from_private(read_key(&data_dir.join(NOISE_KEY_FILE))?);

        let topology_path = data_dir.join(&config.topology);
        let json = std::fs::read_to_string(&topology_path).map_err(|source| NodeError::Read {
            path: topology_path.clone(),
            source,
        })?;
        let topology = Topology::from_json(&json)
            .map_err(|error| NodeError::invalid(&topology_path, error.to_string()))?;
        let me = topology
            .node_with_noise_key(&noise.public())
            .cloned()
            .ok_or_else(|| {
                NodeError::invalid(
                    &topology_path,
                    format!(
                        "does not list this node (Noise key {}); add it: {}",
                        noise.public(),
                        Initialised {
                            sphinx_key: sphinx.public_key(),
                            noise_key: noise.public(),
                            config: config_path.clone(),
                        }
                        .descriptor(config.listen_address)
                    ),
                )
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
        if me.sphinx_key != sphinx.public_key() {
            return Err(NodeError::invalid(
                &topology_path,
                format!(
                    "lists Sphinx key {} for this node ({}), but {} holds the key of {}",
                    bs58::encode(me.sphinx_key.as_bytes()).into_string(),
                    me.id,
                    SPHINX_KEY_FILE,
                    bs58::encode(sphinx.public_key().as_bytes()).into_string()
                ),
            ));
        }
        let filter = Arc::new(load_filter(data_dir, topology.key_rotation(), &config)?);
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
        let mut peers = HashMap::new();
        let mut peer_tasks = Vec::new();
        let mut peer_status = Vec::new();
        for node in &next {
            let peer = Peer {
                address: node.mix_address,
                noise_key: node.noise_key,
                name: node.id.to_string(),
            };
            let (link, task) =
                PeerLink::spawn(peer, Arc::clone(&keys), &config.links, Arc::clone(&links));
            peer_status.push((node.id.to_string(), link.status()));
            peers.insert(node.mix_address, link);
            peer_tasks.push(task);
        }

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
            overloaded: AtomicU64::new(0),
            links: Arc::clone(&links),
            peers: peer_status,
            unwrapper: Arc::clone(&unwrapper),
            waiting: frames_out.clone(),
            stopping: AtomicBool::new(false),
        });

        let threads = match config.workers.threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let mut workers = Vec::new();
        for i in 0..threads {
            let (input, output, unwrapper) = (
                frames_out.clone(),
                results_in.clone(),
                Arc::clone(&unwrapper),
            );
            let (batch, nice) = (config.workers.batch_size, config.workers.nice);
            let spawned = std::thread::Builder::new()
                .name(format!("umbra-sphinx-{i}"))
                .spawn(move || {
                    lower_priority(nice);
                    unwrap_frames(input, output, unwrapper, batch)
                })
                .map_err(|error| {
                    NodeError::Other(format!("cannot start a Sphinx thread: {error}"))
                })?;
            workers.push(spawned);
        }
        drop((frames_out, results_in));
        let core_status = Arc::clone(&status);
        let core_thread = std::thread::Builder::new()
            .name("umbra-mix-core".into())
            .spawn(move || run_core(core, results_out, peers, &core_status))
            .map_err(|error| NodeError::Other(format!("cannot start the core thread: {error}")))?;

        // inbound: links from any node the topology lists
        let admit: Admission = {
            let topology = topology.clone();
            Arc::new(move |key: &NoiseKey| {
                topology
                    .node_with_noise_key(key)
                    .map(|node| node.id.to_string())
            })
        };
        let deliver = {
            let status = Arc::clone(&status);
            move |frame: Frame| match frames_in.try_send((Instant::now(), frame)) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => {
                    status.overloaded.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        let inbound = tokio::spawn(serve_inbound(
            listener,
            Arc::clone(&keys),
            config.links.clone(),
            admit,
            deliver,
            Arc::clone(&links),
            stop.clone(),
        ));
        let http_task = http_listener.map(|listener| {
            let status: Arc<dyn http::Status> = Arc::clone(&status) as Arc<dyn http::Status>;
            tokio::spawn(http::serve(listener, status, stop.clone()))
        });
        let saver = tokio::spawn(save_periodically(
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
        let drained = tokio::time::timeout(LINK_DRAIN, async {
            for task in &mut peer_tasks {
                let _ = task.await;
            }
        })
        .await;
        if drained.is_err() {
            warn!("some links are still down after {LINK_DRAIN:?}; the frames they hold are lost");
            for task in &peer_tasks {
                task.abort();
            }
        }
        if let Some(task) = http_task {
            let _ = task.await;
        }
        save_filters(&data_dir, &unwrapper).await?;
        let counters = core.counters();
        info!(
            received = counters.received,
            forwarded = counters.forwarded,
            "mix node stopped"
        );
        Ok(())
    }
}

fn replay_file(data_dir: &Path, rotation: u32) -> PathBuf {
    data_dir
        .join(REPLAY_DIR)
        .join(format!("rotation-{rotation}.bloom"))
}

fn load_filter(
    data_dir: &Path,
    rotation: u32,
    config: &MixnodeConfig,
) -> Result<ReplayFilter, NodeError> {
    let path = replay_file(data_dir, rotation);
    match std::fs::File::open(&path) {
        Ok(file) => {
            let mut reader = std::io::BufReader::new(file);
            let filter = ReplayFilter::load(&mut reader).map_err(|error| {
                NodeError::invalid(
                    &path,
                    format!(
                        "{error}; delete it to start with an empty replay filter (packets seen in the last {:?} could then be replayed once)",
                        config.mixing.replay.retention
                    ),
                )
            })?;
            if filter.rotation() != rotation {
                return Err(NodeError::invalid(
                    &path,
                    format!("holds the filter of rotation {}", filter.rotation()),
                ));
            }
            info!(rotation, tags = filter.inserted(), "replay filter loaded");
            Ok(filter)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            ReplayFilter::new(rotation, &config.mixing.replay)
                .map_err(|error| NodeError::invalid(data_dir.join(CONFIG_FILE), error.to_string()))
        }
        Err(source) => Err(NodeError::Read { path, source }),
    }
}

/// Writes every filter the unwrapper holds, each to a temporary file renamed into place, so a
/// crash mid-write leaves the previous save intact.
async fn save_filters(data_dir: &Path, unwrapper: &Arc<Unwrapper>) -> Result<(), NodeError> {
    let data_dir = data_dir.to_owned();
    let filters = unwrapper.replay_filters();
    tokio::task::spawn_blocking(move || {
        let dir = data_dir.join(REPLAY_DIR);
        std::fs::create_dir_all(&dir).map_err(|source| NodeError::Write {
            path: dir.clone(),
            source,
        })?;
        for filter in filters {
            let path = replay_file(&data_dir, filter.rotation());
            let temporary = path.with_extension("bloom.tmp");
            let write = |source| NodeError::Write {
                path: temporary.clone(),
                source,
            };
            let file = std::fs::File::create(&temporary).map_err(write)?;
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
            filter.save(&mut writer).map_err(write)?;
            let file = writer
                .into_inner()
                .map_err(|error| write(error.into_error()))?;
            file.sync_all().map_err(write)?;
            std::fs::rename(&temporary, &path).map_err(|source| NodeError::Write {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    })
    .await
    .map_err(|error| NodeError::Other(format!("saving the replay filter: {error}")))?
}

async fn save_periodically(
    data_dir: PathBuf,
    unwrapper: Arc<Unwrapper>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        if let Err(error) = save_filters(&data_dir, &unwrapper).await {
            error!(%error, "saving the replay filter failed");
        }
    }
}

/// Makes the calling thread nicer, so time-critical threads get the CPU first.
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        warn!(%error, "cannot lower the Sphinx threads' priority; forwarding may be later under load");
    }
}

/// A Sphinx thread: takes what frames are waiting (up to a batch), unwraps them together.
fn unwrap_frames(
    input: Receiver<(Instant, Frame)>,
    output: Sender<Vec<(Instant, Unwrapped)>>,
    unwrapper: Arc<Unwrapper>,
    batch_size: usize,
) {
    while let Ok(first) = input.recv() {
        let mut times = vec![first.0];
        let mut frames = vec![first.1];
        while frames.len() < batch_size {
            let Ok((at, frame)) = input.try_recv() else {
                break;
            };
            times.push(at);
            frames.push(frame);
        }
        let results = unwrapper.unwrap_batch(frames);
        if output
            .send(times.into_iter().zip(results).collect())
            .is_err()
        {
            return;
        }
        // Let a thread whose timing matters (the core, a link) run now if it is waiting,
        // rather than after this thread's scheduler slice: milliseconds on a busy machine.
        std::thread::yield_now();
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
    overloaded: AtomicU64,
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
        page.counters(
            "umbra_mixnode_packets_dropped_total",
            "Packets dropped, by reason.",
            "reason",
            counters
                .dropped
                .iter()
                .map(|(reason, n)| (*reason, *n))
                .chain((overloaded > 0).then_some(("overloaded", overloaded))),
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
        let filters = self.unwrapper.replay_filters();
        let rotations: Vec<String> = filters.iter().map(|f| f.rotation().to_string()).collect();
        page.gauges(
            "umbra_mixnode_replay_filter_tags",
            "Tags in each key rotation's replay filter.",
            "rotation",
            rotations
                .iter()
                .zip(&filters)
                .map(|(r, f)| (r.as_str(), f.inserted() as f64)),
        );
        page.gauges(
            "umbra_mixnode_replay_filter_bytes",
            "Memory of each key rotation's replay filter.",
            "rotation",
            rotations
                .iter()
                .zip(&filters)
                .map(|(r, f)| (r.as_str(), f.memory_bytes() as f64)),
        );
        page.gauges(
            "umbra_link_peer_connected",
            "Whether the outbound link to each next-layer node is up.",
            "peer",
            self.peers
                .iter()
                .map(|(name, peer)| (name.as_str(), f64::from(u8::from(peer.is_connected())))),
        );
        page.gauges(
            "umbra_link_peer_queue_frames",
            "Frames waiting in each outbound link's queue.",
            "peer",
            self.peers
                .iter()
                .map(|(name, peer)| (name.as_str(), peer.queued() as f64)),
        );
        self.links.render(&mut page);
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
