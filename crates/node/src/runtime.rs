//! What every node daemon (mix node, gateway) does alike: its key files, the topology and its
//! own place in it, where the topology comes from (a static file or the ledger) and the keys it
//! starts with, the replay filter on disk, the Sphinx threads, the links to its peers, and
//! the settings of these.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use umbra_hop::{ReplayFilter, ReplayFilterConfig, RotationKey, Unwrapped, Unwrapper};
use umbra_ledger::SigningKey;
use umbra_sphinx::{PrivateKey, PublicKey};
use umbra_topology::{NodeDescriptor, NoiseKey, Topology};
use umbra_wire::frame::Frame;

use crate::epoch::{Admitted, EpochNode, Follower, KeyRing, PeerSet, Place, Placement};
use umbra_net::NodeError;
use umbra_net::config::{ensure_new, read_topology};
use umbra_net::directory::{Current, Directory, LedgerConfig};
use umbra_net::files::{copy_private, create_private_dir, open_private, write_private};
use umbra_net::keys::{read_key, write_new_key};
use umbra_net::link::{Admission, LinkConfig, LinkCounters, PeerStatus, serve_inbound};
use umbra_net::metrics::Exposition;
use umbra_net::noise::NoiseKeypair;

pub use umbra_net::config::CONFIG_FILE;
/// The Sphinx private key file of a node.
pub const SPHINX_KEY_FILE: &str = "sphinx.key";
/// The Noise private key file of a node.
pub const NOISE_KEY_FILE: &str = "noise.key";
const REPLAY_DIR: &str = "replay";

/// What `init` made: the node's public keys, to be listed in the topology.
#[derive(Debug)]
pub struct Initialised {
    /// The Sphinx public key.
    pub sphinx_key: PublicKey,
    /// The Noise public key.
    pub noise_key: NoiseKey,
    /// The identity key (ed25519), which signs the node's registration on the ledger.
    pub identity_key: umbra_ledger::PublicKey,
    /// The configuration file written.
    pub config: PathBuf,
}

impl Initialised {
    /// A mix node's topology entry, with its id and layer left for the operator to fill in.
    pub fn mix_descriptor(&self, mix_address: SocketAddr) -> String {
        format!(
            "{{ \"id\": <id>, \"role\": \"mix\", \"layer\": <1, 2 or 3>, \"mix_address\": \"{mix_address}\", {} }}",
            self.keys()
        )
    }

    /// A gateway's topology entry, with its id left for the operator to fill in.
    pub fn gateway_descriptor(
        &self,
        mix_address: SocketAddr,
        client_address: SocketAddr,
    ) -> String {
        format!(
            "{{ \"id\": <id>, \"role\": \"gateway\", \"mix_address\": \"{mix_address}\", \"client_address\": \"{client_address}\", {} }}",
            self.keys()
        )
    }

    fn keys(&self) -> String {
        format!(
            "\"sphinx_key\": \"{}\", \"noise_key\": \"{}\"",
            bs58::encode(self.sphinx_key.as_bytes()).into_string(),
            self.noise_key
        )
    }
}

/// A node's private keys.
pub(crate) struct NodeKeys {
    pub(crate) sphinx: PrivateKey,
    pub(crate) noise: NoiseKeypair,
}

/// Creates a node in `data_dir`: fresh keys (identity, Sphinx, Noise), `config` written to
/// `config_file`, and the genesis file copied from `genesis` when the node follows a ledger.
/// Refuses a directory that already holds a node.
pub(crate) fn init(
    data_dir: &Path,
    config_file: &str,
    config: &str,
    genesis: Option<&Path>,
) -> Result<Initialised, NodeError> {
    ensure_new(
        data_dir,
        &[
            config_file,
            SPHINX_KEY_FILE,
            NOISE_KEY_FILE,
            crate::epoch::IDENTITY_KEY_FILE,
        ],
    )?;
    if let Some(genesis) = genesis {
        // read before anything is written: a wrong genesis leaves no half-made node
        umbra_net::directory::TrustRoot::read(genesis)?;
    }
    let keys = write_new_keys(data_dir)?;
    let identity = umbra_ledger::SigningKey::generate(&mut rand::rng());
    write_new_key(
        &data_dir.join(crate::epoch::IDENTITY_KEY_FILE),
        &identity.seed(),
    )?;
    if let Some(genesis) = genesis {
        copy_private(genesis, &data_dir.join(umbra_net::directory::GENESIS_FILE))?;
    }
    let path = data_dir.join(config_file);
    write_private(&path, config.as_bytes())?;
    Ok(Initialised {
        sphinx_key: keys.sphinx.public_key(),
        noise_key: keys.noise.public(),
        identity_key: identity.public(),
        config: path,
    })
}

/// Writes fresh keys into a new node's directory.
pub(crate) fn write_new_keys(data_dir: &Path) -> Result<NodeKeys, NodeError> {
    let keys = NodeKeys {
        sphinx: PrivateKey::generate(&mut rand::rng()),
        noise: NoiseKeypair::generate(),
    };
    write_new_key(&data_dir.join(SPHINX_KEY_FILE), keys.sphinx.as_bytes())?;
    write_new_key(&data_dir.join(NOISE_KEY_FILE), keys.noise.private_bytes())?;
    Ok(keys)
}

/// Reads a node's keys.
pub(crate) fn read_keys(data_dir: &Path) -> Result<NodeKeys, NodeError> {
    Ok(NodeKeys {
        sphinx: PrivateKey::from_bytes(read_key(&data_dir.join(SPHINX_KEY_FILE))?),
        noise: NoiseKeypair::from_private(read_key(&data_dir.join(NOISE_KEY_FILE))?),
    })
}

/// Reads a node's Noise key.
pub(crate) fn read_noise_key(data_dir: &Path) -> Result<NoiseKeypair, NodeError> {
    Ok(NoiseKeypair::from_private(read_key(
        &data_dir.join(NOISE_KEY_FILE),
    )?))
}

/// The Sphinx key a node registered with, if it still has it (a node following a ledger
/// deletes it once a later rotation's key has replaced it).
pub(crate) fn read_registered_sphinx_key(data_dir: &Path) -> Result<Option<PrivateKey>, NodeError> {
    let path = data_dir.join(SPHINX_KEY_FILE);
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(PrivateKey::from_bytes(read_key(&path)?)))
}

/// Reads what every node's start needs: its keys, the topology (from `topology`, relative
/// to `data_dir`) and its own entry there; `entry` prints the entry to add when it is missing.
pub(crate) fn load_identity(
    data_dir: &Path,
    topology: &Path,
    entry: impl FnOnce(&Initialised) -> String,
) -> Result<(NodeKeys, Topology, NodeDescriptor, PathBuf), NodeError> {
    let keys = read_keys(data_dir)?;
    let topology_path = data_dir.join(topology);
    let topology = read_topology(&topology_path)?;
    let me = find_self(&topology, &topology_path, &keys, || {
        entry(&Initialised {
            sphinx_key: keys.sphinx.public_key(),
            noise_key: keys.noise.public(),
            identity_key: umbra_ledger::PublicKey([0; 32]),
            config: PathBuf::new(),
        })
    })?;
    Ok((keys, topology, me, topology_path))
}

/// Where a node's topology comes from, read and checked at load.
pub(crate) enum Source {
    /// A static file: the node's place in it is fixed.
    File {
        sphinx: PrivateKey,
        topology: Box<Topology>,
        me: NodeDescriptor,
    },
    /// The ledger.
    Ledger {
        directory: Arc<Directory>,
        identity: SigningKey,
        registered: Option<PrivateKey>,
    },
}

/// What a node starts from: its first topology, its place there and whom it admits, the
/// unwrapper with its Sphinx keys, and with a ledger, the directory and the keys that follow
/// the epochs.
pub(crate) struct Start {
    pub(crate) first: Current,
    pub(crate) placement: Placement,
    pub(crate) admitted: Admitted,
    pub(crate) unwrapper: Arc<Unwrapper>,
    pub(crate) ledger: Option<(Arc<Directory>, KeyRing)>,
}

impl Source {
    /// Reads a node's Noise key and where its topology comes from: the ledger `ledger`
    /// describes, or the static file `topology` (`topology.json` by default), which must list
    /// the node (`entry` prints the entry to add when it does not) in a place `check` accepts
    /// (it names the topology file in its error). `kind` is the node kind's command
    /// (`mixnode`, `gateway`), for messages.
    pub(crate) fn load(
        data_dir: &Path,
        kind: &str,
        ledger: Option<&LedgerConfig>,
        topology: Option<&Path>,
        entry: impl FnOnce(&Initialised) -> String,
        check: impl FnOnce(&Topology, &NodeDescriptor, &Path) -> Result<(), NodeError>,
    ) -> Result<(NoiseKeypair, Source), NodeError> {
        if let Some(ledger) = ledger {
            let noise = read_noise_key(data_dir)?;
            let source = Source::Ledger {
                directory: Arc::new(Directory::from_config(ledger, data_dir)?),
                identity: crate::epoch::read_identity(data_dir, kind)?,
                registered: read_registered_sphinx_key(data_dir)?,
            };
            return Ok((noise, source));
        }
        let topology = topology.unwrap_or(Path::new("topology.json"));
        let (keys, topology, me, topology_path) = load_identity(data_dir, topology, entry)?;
        check(&topology, &me, &topology_path)?;
        let NodeKeys { sphinx, noise } = keys;
        Ok((
            noise,
            Source::File {
                sphinx,
                topology: Box::new(topology),
                me,
            },
        ))
    }

    /// Takes the first topology and the Sphinx keys for it: the file's, or the first topology
    /// the ledger serves (`None` when `shutdown` comes before it), and places the node with
    /// Noise key `noise_key` there. `replay` sizes the replay filters; `kind` is as in
    /// [`Source::load`].
    pub(crate) async fn start(
        self,
        data_dir: &Path,
        kind: &'static str,
        noise_key: &NoiseKey,
        replay: &ReplayFilterConfig,
        stop: &CancellationToken,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<Option<Start>, NodeError> {
        let config_path = data_dir.join(CONFIG_FILE);
        let (first, unwrapper, ledger) = match self {
            Source::File {
                sphinx,
                topology,
                me,
            } => {
                let filter = Arc::new(load_filter(
                    data_dir,
                    topology.key_rotation(),
                    replay,
                    &config_path,
                )?);
                let unwrapper = Arc::new(Unwrapper::new(RotationKey::new(sphinx, filter), None));
                match me.layer() {
                    Some(layer) => info!(node = %me.id, %layer, "topology from a static file"),
                    None => info!(node = %me.id, "topology from a static file"),
                }
                (Current::fixed(*topology), unwrapper, None)
            }
            Source::Ledger {
                directory,
                identity,
                registered,
            } => {
                let first = tokio::select! {
                    first = directory.first(stop) => first?,
                    () = shutdown => return Ok(None),
                };
                let me = first.topology.node_with_noise_key(noise_key).cloned();
                let (ring, unwrapper) = KeyRing::start(
                    data_dir,
                    identity,
                    Arc::clone(&directory),
                    registered,
                    &first,
                    me.as_ref(),
                    replay,
                    &config_path,
                    kind,
                )?;
                (first, unwrapper, Some((directory, ring)))
            }
        };
        let placement = crate::epoch::place(noise_key, &first.topology, None);
        let admitted = Admitted::default();
        admitted.set(placement.admitted.clone());
        Ok(Some(Start {
            first,
            placement,
            admitted,
            unwrapper,
            ledger,
        }))
    }
}

/// This node in the topology, found by its Noise key; its Sphinx key must match. `entry` is
/// what the operator should add when the topology does not list it.
pub(crate) fn find_self(
    topology: &Topology,
    path: &Path,
    keys: &NodeKeys,
    entry: impl FnOnce() -> String,
) -> Result<NodeDescriptor, NodeError> {
    let me = topology
        .node_with_noise_key(&keys.noise.public())
        .cloned()
        .ok_or_else(|| {
            NodeError::invalid(
                path,
                format!(
                    "does not list this node (Noise key {}); add it: {}",
                    keys.noise.public(),
                    entry()
                ),
            )
        })?;
    if me.sphinx_key != keys.sphinx.public_key() {
        return Err(NodeError::invalid(
            path,
            format!(
                "lists Sphinx key {} for this node ({}), but {SPHINX_KEY_FILE} holds the key of {}",
                bs58::encode(me.sphinx_key.as_bytes()).into_string(),
                me.id,
                bs58::encode(keys.sphinx.public_key().as_bytes()).into_string()
            ),
        ));
    }
    Ok(me)
}

pub(crate) fn replay_file(data_dir: &Path, rotation: u32) -> PathBuf {
    data_dir
        .join(REPLAY_DIR)
        .join(format!("rotation-{rotation}.bloom"))
}

/// The replay filter of `rotation`: the saved one, or a new one sized by `config`.
pub(crate) fn load_filter(
    data_dir: &Path,
    rotation: u32,
    config: &ReplayFilterConfig,
    config_file: &Path,
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
                        config.retention
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
            ReplayFilter::new(rotation, config)
                .map_err(|error| NodeError::invalid(config_file, error.to_string()))
        }
        Err(source) => Err(NodeError::Read { path, source }),
    }
}

/// Writes every filter the unwrapper holds, each to a temporary file renamed into place, so a
/// crash mid-write leaves the previous save intact.
pub(crate) async fn save_filters(
    data_dir: &Path,
    unwrapper: &Arc<Unwrapper>,
) -> Result<(), NodeError> {
    let data_dir = data_dir.to_owned();
    let filters = unwrapper.replay_filters();
    tokio::task::spawn_blocking(move || {
        let dir = data_dir.join(REPLAY_DIR);
        create_private_dir(&dir)?;
        for filter in filters {
            let path = replay_file(&data_dir, filter.rotation());
            let temporary = path.with_extension("bloom.tmp");
            let write = |source| NodeError::Write {
                path: temporary.clone(),
                source,
            };
            let file = open_private(&temporary, true)?;
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
    .map_err(|_| NodeError::Panicked("replay filter saver"))?
}

/// Saves the filters every `every` until `stop`.
pub(crate) async fn save_periodically(
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

/// Starts the Sphinx threads: each takes what frames are waiting (up to a batch), unwraps
/// them together and hands the results to `output`; they stop when `input` closes and is
/// empty, or when `output` says so (returns false). Frames that waited longer than
/// `settings.max_queue_wait` are dropped unprocessed and counted in `stale`.
pub(crate) fn spawn_workers<O>(
    settings: &WorkerConfig,
    stale: &Arc<std::sync::atomic::AtomicU64>,
    input: Receiver<(Instant, Frame)>,
    unwrapper: Arc<Unwrapper>,
    output: O,
) -> Result<Vec<std::thread::JoinHandle<()>>, NodeError>
where
    O: Fn(Vec<(Instant, Unwrapped)>) -> bool + Clone + Send + 'static,
{
    let threads = match settings.threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    (0..threads)
        .map(|i| {
            let (input, unwrapper, output) =
                (input.clone(), Arc::clone(&unwrapper), output.clone());
            let (settings, stale) = (settings.clone(), Arc::clone(stale));
            std::thread::Builder::new()
                .name(format!("umbra-sphinx-{i}"))
                .spawn(move || {
                    lower_priority(settings.nice);
                    while let Ok(first) = input.recv() {
                        let mut times = Vec::with_capacity(settings.batch_size);
                        let mut frames = Vec::with_capacity(settings.batch_size);
                        let mut next = Some(first);
                        while let Some((at, frame)) = next.take() {
                            // past this wait, the sender has given up on the packet: under
                            // overload, the queue drains instead of delaying everything more
                            if at.elapsed() > settings.max_queue_wait {
                                stale.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            } else {
                                times.push(at);
                                frames.push(frame);
                            }
                            if frames.len() < settings.batch_size {
                                next = input.try_recv().ok();
                            }
                        }
                        if frames.is_empty() {
                            continue;
                        }
                        let results = unwrapper.unwrap_batch(frames);
                        if !output(times.into_iter().zip(results).collect()) {
                            return;
                        }
                        // Let a thread whose timing matters (a core, a link) run now if it is
                        // waiting, rather than after this thread's scheduler slice: milliseconds
                        // on a busy machine.
                        std::thread::yield_now();
                    }
                })
                .map_err(|source| NodeError::Thread {
                    name: "Sphinx",
                    source,
                })
        })
        .collect()
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

/// What every node's metrics show of its Sphinx hop and links: the replay filters (as
/// `<prefix>_replay_filter_*`), each outbound link, and the link counters.
pub(crate) fn render_hop_metrics(
    page: &mut Exposition,
    prefix: &str,
    unwrapper: &Unwrapper,
    peers: &[(String, PeerStatus)],
    links: &LinkCounters,
) {
    let filters = unwrapper.replay_filters();
    let rotations: Vec<String> = filters.iter().map(|f| f.rotation().to_string()).collect();
    let per_filter = |value: fn(&ReplayFilter) -> f64| {
        rotations
            .iter()
            .zip(&filters)
            .map(move |(r, f)| (r.as_str(), value(f)))
    };
    page.gauges(
        &format!("{prefix}_replay_filter_tags"),
        "Tags in each key rotation's replay filter.",
        "rotation",
        per_filter(|f| f.inserted() as f64),
    );
    page.gauges(
        &format!("{prefix}_replay_filter_bytes"),
        "Memory of each key rotation's replay filter.",
        "rotation",
        per_filter(|f| f.memory_bytes() as f64),
    );
    page.gauges(
        "umbra_link_peer_connected",
        "Whether the outbound link to each next-hop node is up.",
        "peer",
        peers
            .iter()
            .map(|(name, peer)| (name.as_str(), f64::from(u8::from(peer.is_connected())))),
    );
    page.gauges(
        "umbra_link_peer_queue_frames",
        "Frames waiting in each outbound link's queue.",
        "peer",
        peers
            .iter()
            .map(|(name, peer)| (name.as_str(), peer.queued() as f64)),
    );
    links.render(page);
}

/// Accepts links from the nodes `admit` takes, handing their frames (stamped with their
/// arrival) to the Sphinx threads' queue; a frame finding it full is dropped and counted in
/// `overloaded`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn serve_links_with(
    listener: tokio::net::TcpListener,
    keys: &Arc<NoiseKeypair>,
    config: &LinkConfig,
    admit: Admission,
    queue: crossbeam_channel::Sender<(Instant, Frame)>,
    overloaded: &Arc<std::sync::atomic::AtomicU64>,
    counters: &Arc<LinkCounters>,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    let overloaded = Arc::clone(overloaded);
    let deliver = move |frame: Frame| match queue.try_send((Instant::now(), frame)) {
        Ok(()) | Err(crossbeam_channel::TrySendError::Disconnected(_)) => {}
        Err(crossbeam_channel::TrySendError::Full(_)) => {
            overloaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    };
    tokio::spawn(serve_inbound(
        listener,
        Arc::clone(keys),
        config.clone(),
        admit,
        deliver,
        Arc::clone(counters),
        stop.clone(),
    ))
}

/// Binds a listener to `address`; the error names it.
pub(crate) async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, NodeError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| NodeError::Bind { address, source })
}

/// Binds the HTTP endpoint's listener, if `config` enables it.
pub(crate) async fn bind_http(
    config: &HttpConfig,
) -> Result<Option<tokio::net::TcpListener>, NodeError> {
    match config.enabled {
        true => Ok(Some(bind(config.listen_address).await?)),
        false => Ok(None),
    }
}

/// Waits up to `grace` for the links to send what they hold, then gives up on them.
pub(crate) async fn drain_peers(tasks: &mut [JoinHandle<()>], grace: Duration) {
    let drained = tokio::time::timeout(grace, async {
        for task in tasks.iter_mut() {
            let _ = task.await;
        }
    })
    .await;
    if drained.is_err() {
        warn!("some links are still down after {grace:?}; the frames they hold are lost");
        for task in tasks.iter() {
            task.abort();
        }
    }
}

/// Checks the link and worker settings every node has.
pub(crate) fn validate_links_and_workers(
    links: &LinkConfig,
    workers: &WorkerConfig,
) -> Result<(), String> {
    if workers.max_queue_wait.is_zero() {
        return Err("setting `workers.max_queue_wait`: must be above zero (default 500ms)".into());
    }
    if links.queue_len == 0 {
        return Err("setting `links.queue_len`: must be at least 1 (Nym uses 2000)".into());
    }
    if links.reconnect_initial > links.reconnect_max {
        return Err("setting `links.reconnect_initial`: longer than `links.reconnect_max`".into());
    }
    if !(0..=19).contains(&workers.nice) {
        return Err("setting `workers.nice`: must be 0 to 19".into());
    }
    if workers.batch_size == 0 {
        return Err("setting `workers.batch_size`: must be at least 1".into());
    }
    Ok(())
}

/// Where `/metrics` and `/health` are served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Whether to serve them at all.
    pub enabled: bool,
    /// The address.
    pub listen_address: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen_address: SocketAddr::from(([127, 0, 0, 1], 8000)),
        }
    }
}

/// The threads that process Sphinx packets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// How many; 0 means one per CPU core.
    pub threads: usize,
    /// The most packets a thread processes at once (batches share costly field inversions).
    pub batch_size: usize,
    /// The threads' niceness (Linux): above 0, links and the core thread, whose timing
    /// matters, run first when the CPU is busy; the threads lose nothing when it is not.
    pub nice: i32,
    /// A frame that waited longer than this for a thread is dropped unprocessed (counted as
    /// `queued_too_long`): under overload the queue then stays short, and the packets that do
    /// get through are not late.
    #[serde(with = "humantime_serde")]
    pub max_queue_wait: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            threads: 0,
            batch_size: 8,
            nice: 10,
            max_queue_wait: Duration::from_millis(500),
        }
    }
}

/// What is kept on disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// How often the replay filters are saved (they are also saved on shutdown).
    #[serde(with = "humantime_serde")]
    pub replay_save_interval: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            replay_save_interval: Duration::from_secs(600),
        }
    }
}

/// A node up to its first topology, whatever its role: its keys and link counters, the links
/// to its peers (empty until the role asks for some), its first topology and place there, the
/// unwrapper with its Sphinx keys, and the signal that stops everything it spawns.
pub(crate) struct Node {
    pub(crate) data_dir: PathBuf,
    pub(crate) stop: CancellationToken,
    pub(crate) keys: Arc<NoiseKeypair>,
    pub(crate) links: Arc<LinkCounters>,
    pub(crate) peers: PeerSet,
    pub(crate) first: Current,
    pub(crate) placement: Placement,
    pub(crate) unwrapper: Arc<Unwrapper>,
    noise_key: NoiseKey,
    admitted: Admitted,
    ledger: Option<(Arc<Directory>, KeyRing)>,
}

impl Node {
    /// Takes the node's first topology and keys from `source` (see [`Source::start`]); `None`
    /// when `shutdown` comes first.
    pub(crate) async fn start(
        data_dir: PathBuf,
        kind: &'static str,
        noise: NoiseKeypair,
        source: Source,
        replay: &ReplayFilterConfig,
        links_config: &LinkConfig,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Result<Option<Node>, NodeError> {
        let stop = CancellationToken::new();
        let noise_key = noise.public();
        let keys = Arc::new(noise);
        let links = Arc::new(LinkCounters::default());
        let started = source
            .start(&data_dir, kind, &noise_key, replay, &stop, shutdown)
            .await?;
        let Some(Start {
            first,
            placement,
            admitted,
            unwrapper,
            ledger,
        }) = started
        else {
            return Ok(None);
        };
        let peers = PeerSet::new(&keys, links_config, &links);
        Ok(Some(Node {
            data_dir,
            stop,
            keys,
            links,
            peers,
            first,
            placement,
            unwrapper,
            noise_key,
            admitted,
            ledger,
        }))
    }

    /// Serves what every node serves, until [`Serving::stop`]: links from the nodes the epoch
    /// admits, their frames handed to `frames` (dropped and counted in `overloaded` when it is
    /// full); `/metrics` and `/health` from `status` on `http`; the replay filters saved every
    /// `save_interval`; and each new epoch, applied to `epochs`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn serve(
        self,
        listener: tokio::net::TcpListener,
        http: Option<tokio::net::TcpListener>,
        links_config: &LinkConfig,
        frames: crossbeam_channel::Sender<(Instant, Frame)>,
        overloaded: &Arc<std::sync::atomic::AtomicU64>,
        status: Arc<dyn umbra_http::Status>,
        save_interval: Duration,
        epochs: impl EpochNode,
    ) -> Serving {
        let Node {
            data_dir,
            stop,
            keys,
            links,
            peers,
            first,
            unwrapper,
            noise_key,
            admitted,
            ledger,
            ..
        } = self;
        let inbound = serve_links_with(
            listener,
            &keys,
            links_config,
            admitted.admission(),
            frames,
            overloaded,
            &links,
            &stop,
        );
        let http =
            http.map(|listener| tokio::spawn(umbra_http::serve(listener, status, stop.clone())));
        let saver = tokio::spawn(save_periodically(
            data_dir.clone(),
            Arc::clone(&unwrapper),
            save_interval,
            stop.clone(),
        ));
        let follower =
            Follower::start(ledger, first, noise_key, peers, admitted, epochs, &stop).await;
        Serving {
            data_dir,
            stop,
            unwrapper,
            inbound,
            http,
            saver,
            follower: Some(follower),
            peer_tasks: Vec::new(),
        }
    }
}

/// What a node serves while it runs (see [`Node::serve`]), stopped in two steps around the
/// role's own: [`Serving::stop`] first, [`Serving::finish`] last.
pub(crate) struct Serving {
    data_dir: PathBuf,
    stop: CancellationToken,
    unwrapper: Arc<Unwrapper>,
    inbound: JoinHandle<()>,
    http: Option<JoinHandle<std::io::Result<()>>>,
    saver: JoinHandle<()>,
    follower: Option<Follower>,
    peer_tasks: Vec<JoinHandle<()>>,
}

impl Serving {
    /// Takes no new links and follows no more epochs; the links to peers go on sending what
    /// they hold until [`Serving::finish`].
    pub(crate) async fn stop(&mut self) -> Result<(), NodeError> {
        self.stop.cancel();
        if let Some(follower) = self.follower.take() {
            self.peer_tasks = follower.finish().await?.close();
        }
        let _ = (&mut self.inbound).await;
        let _ = (&mut self.saver).await;
        Ok(())
    }

    /// Lets the links send what they hold (for `grace` at most), stops the HTTP endpoint and
    /// saves the replay filters.
    pub(crate) async fn finish(mut self, grace: Duration) -> Result<(), NodeError> {
        if self.follower.is_some() {
            self.stop().await?;
        }
        drain_peers(&mut self.peer_tasks, grace).await;
        if let Some(task) = self.http {
            let _ = task.await;
        }
        save_filters(&self.data_dir, &self.unwrapper).await
    }
}

/// Starts a thread named `name` running `run`.
pub(crate) fn spawn_thread<T: Send + 'static>(
    name: &'static str,
    run: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, NodeError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(run)
        .map_err(|source| NodeError::Thread { name, source })
}

/// Waits, off the runtime, for threads that are ending (`what` names them in the error if
/// one panicked).
pub(crate) async fn join_threads<T: Send + 'static>(
    what: &'static str,
    threads: Vec<std::thread::JoinHandle<T>>,
) -> Result<Vec<T>, NodeError> {
    tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .map(|thread| thread.join().map_err(|_| NodeError::Panicked(what)))
            .collect()
    })
    .await
    .map_err(|_| NodeError::Panicked(what))?
}

/// Reads a node's configuration file and checks it with `validate`, whose problem the error
/// names with the file.
pub(crate) fn load_config<T: serde::de::DeserializeOwned>(
    path: &Path,
    validate: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, NodeError> {
    let config: T = umbra_net::config::read_toml(path)?;
    validate(&config).map_err(|problem| NodeError::invalid(path, problem))?;
    Ok(config)
}

/// Which node's configuration template [`template`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TemplateFor {
    Mixnode,
    Gateway,
}

/// The sections of a configuration template every node has, commented, with their defaults:
/// `[links]`, `[workers]`, `[storage]`.
pub(crate) fn template(node: TemplateFor) -> String {
    let (peers, inbound, saved) = match node {
        TemplateFor::Mixnode => (
            "next-layer node",
            "Inbound links open at once.",
            "How often the replay filters are saved; they are also saved when the node stops.",
        ),
        TemplateFor::Gateway => (
            "first-layer node",
            "Inbound links (from last-layer mix nodes) open at once.",
            "How often the replay filter is saved; it is also saved when the gateway stops. Stored\n# messages are written to inbox.redb before they are acknowledged.",
        ),
    };
    format!(
        r#"[links]
# Frames waiting for each {peers}; beyond this they are dropped and counted.
queue_len = 2000
# After a link fails: wait this long, doubling per failure up to the maximum.
reconnect_initial = "10s"
reconnect_max = "5m"
# How long a Noise handshake may take.
handshake_timeout = "5s"
# {inbound}
max_inbound = 1024

[workers]
# Threads processing Sphinx packets; 0 means one per CPU core.
threads = 0
# The most packets a thread processes at once: batches share costly field inversions, and
# small ones keep the time a packet waits for the others short.
batch_size = 8
# Their niceness (Linux): the links and the core thread, whose timing matters, go first when
# the CPU is busy. 0 runs them at normal priority.
nice = 10
# A frame that waited longer than this for a thread is dropped unprocessed (its sender has
# given up on it): under overload the queue stays short and what gets through is on time.
max_queue_wait = "500ms"

[storage]
# {saved}
replay_save_interval = "10m"
"#
    )
}

/// What every node shows of its Sphinx hop in `/metrics` and `/health`: its place in the
/// epoch, its unwrapping queue and what it dropped there, its links and peers.
pub(crate) struct HopStatus {
    pub(crate) place: std::sync::Mutex<Place>,
    /// Frames dropped for finding the Sphinx threads' queue full.
    pub(crate) overloaded: Arc<std::sync::atomic::AtomicU64>,
    /// Frames dropped for waiting too long for a Sphinx thread.
    pub(crate) stale: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) links: Arc<LinkCounters>,
    peers: Arc<std::sync::Mutex<Vec<(String, PeerStatus)>>>,
    unwrapper: Arc<Unwrapper>,
    waiting: Receiver<(Instant, Frame)>,
    pub(crate) stopping: std::sync::atomic::AtomicBool,
}

impl HopStatus {
    /// The status of `node`, whose Sphinx threads take frames from `waiting`.
    pub(crate) fn new(node: &Node, waiting: Receiver<(Instant, Frame)>) -> HopStatus {
        HopStatus {
            place: std::sync::Mutex::new(Place::of(&node.first, &node.placement)),
            overloaded: Arc::default(),
            stale: Arc::default(),
            links: Arc::clone(&node.links),
            peers: node.peers.status(),
            unwrapper: Arc::clone(&node.unwrapper),
            waiting,
            stopping: Default::default(),
        }
    }

    /// The node's place now.
    pub(crate) fn place(&self) -> Place {
        *self
            .place
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets the node's place in a new epoch.
    pub(crate) fn set_place(&self, current: &Current, placement: &Placement) {
        *self
            .place
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Place::of(current, placement);
    }

    /// Frames dropped before the core saw them, by reason (to add to the core's own).
    pub(crate) fn dropped(&self) -> impl Iterator<Item = (&'static str, u64)> {
        let overloaded = self.overloaded.load(std::sync::atomic::Ordering::Relaxed);
        let stale = self.stale.load(std::sync::atomic::Ordering::Relaxed);
        (overloaded > 0)
            .then_some(("overloaded", overloaded))
            .into_iter()
            .chain((stale > 0).then_some(("queued_too_long", stale)))
    }

    /// Adds the hop's series, named `{prefix}_…`, to `page`.
    pub(crate) fn render(&self, page: &mut Exposition, prefix: &str) {
        page.gauge(
            &format!("{prefix}_unwrap_queue_frames"),
            "Frames waiting for a Sphinx thread.",
            self.waiting.len() as f64,
        );
        self.place().render(page);
        let peers = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        render_hop_metrics(page, prefix, &self.unwrapper, &peers, &self.links);
    }

    /// `/health`: healthy unless stopping; a JSON object with the node's status (`ok`,
    /// `degraded` with a `warning` while it serves but something is wrong, or `stopping`), its
    /// place, `fields` (the role's own, `"name":value` pairs joined by commas) and its peers.
    pub(crate) fn health(&self, fields: &str, warning: Option<&str>) -> (bool, String) {
        let stopping = self.stopping.load(std::sync::atomic::Ordering::Relaxed);
        let (peers, connected) = {
            let peers = self
                .peers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let connected = peers.iter().filter(|(_, peer)| peer.is_connected()).count();
            (peers.len(), connected)
        };
        let place = self.place();
        let number =
            |value: Option<u64>| value.map_or_else(|| "null".to_owned(), |v| v.to_string());
        let status = match (stopping, warning) {
            (true, _) => "stopping",
            (false, Some(_)) => "degraded",
            (false, None) => "ok",
        };
        let warning = warning.map_or_else(String::new, |warning| {
            format!(",\"warning\":{}", serde_json::Value::from(warning))
        });
        let body = format!(
            "{{\"status\":\"{status}\"{warning},\"node\":{},{fields},\"epoch\":{},\"key_rotation\":{},\"peers\":{peers},\"peers_connected\":{connected}}}",
            number(place.node.map(u64::from)),
            number(place.epoch),
            place.rotation,
        );
        (!stopping, body)
    }
}
