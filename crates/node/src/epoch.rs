//! A node through the epochs: where it stands in each epoch's topology (its layer, or idle),
//! the links that follow from it, whom it admits, its Sphinx keys across key rotations, and
//! the task that applies each new epoch, whatever the kind of node.
//!
//! Packets built with one epoch's topology may still be in flight in the next, so a node
//! forwards to the next hops of both its current and its previous placement, and admits links
//! from the nodes of both epochs. A Sphinx key is kept one epoch past its rotation: a packet
//! built just before the rotation still unwraps.
//!
//! Keys: `sphinx.key` is the key the node registered with; every key it makes later is
//! `sphinx-<rotation>.key`. In the last epochs of a rotation the node makes the next rotation's
//! key and announces it on the ledger (an `announce_sphinx_key` transaction its identity key
//! signs), so the next rotation's documents list it; when a rotation ends, the key of the
//! rotation before it is deleted (with its replay filter): what it decrypted can no longer be
//! decrypted from this machine.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use umbra_hop::{ReplayFilterConfig, RotationKey, Unwrapper};
use umbra_ledger::{
    Action, Key32, NodeId as LedgerNodeId, SigningKey, Transaction, sphinx_key_message,
};
use umbra_sphinx::PrivateKey;
use umbra_topology::{Layer, NodeDescriptor, NoiseKey, Role, Topology};
use umbra_wire::frame::KeyRotation;

use umbra_net::NodeError;
use umbra_net::directory::{self, Current, Directory, Refresh};
use umbra_net::keys::{read_key, write_new_key};
use umbra_net::link::{Admission, LinkConfig, LinkCounters, Peer, PeerLink, PeerStatus};
use umbra_net::metrics::Exposition;
use umbra_net::noise::NoiseKeypair;

/// The node identity key file (ed25519): it signs the node's registration and key
/// announcements.
pub const IDENTITY_KEY_FILE: &str = "identity.key";

/// Where a node stands in an epoch and what follows from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// This node as the epoch's topology lists it; none when it is not in the active set.
    pub me: Option<NodeDescriptor>,
    /// The nodes it may forward to: the next hops of its current and previous placements.
    pub next_hops: Vec<NodeDescriptor>,
    /// The nodes it takes links from (every node of the current and previous topologies), by
    /// Noise key, with a name for logs.
    pub admitted: HashMap<NoiseKey, String>,
}

/// Where the node with Noise key `noise` stands in `current`, given where it stood in
/// `previous`.
pub fn place(noise: &NoiseKey, current: &Topology, previous: Option<&Topology>) -> Placement {
    let me = current.node_with_noise_key(noise).cloned();
    let mut next_hops: Vec<NodeDescriptor> = Vec::new();
    let mut add = |topology: &Topology| {
        if let Some(node) = topology.node_with_noise_key(noise) {
            for hop in next_hops_of(topology, node.role) {
                if !next_hops
                    .iter()
                    .any(|known| known.mix_address == hop.mix_address)
                {
                    next_hops.push(hop);
                }
            }
        }
    };
    add(current);
    if let Some(previous) = previous {
        add(previous);
    }
    let mut admitted = HashMap::new();
    for topology in previous.into_iter().chain(std::iter::once(current)) {
        for node in topology.nodes() {
            if node.noise_key != *noise {
                admitted.insert(node.noise_key, node.id.to_string());
            }
        }
    }
    Placement {
        me,
        next_hops,
        admitted,
    }
}

/// The nodes a node of `role` sends to: a gateway to the first layer, each layer to the next,
/// the last layer to the gateways.
pub fn next_hops_of(topology: &Topology, role: Role) -> Vec<NodeDescriptor> {
    match role {
        Role::Gateway => topology.layer(Layer::FIRST).cloned().collect(),
        Role::Mix(layer) => match layer.next() {
            Some(next) => topology.layer(next).cloned().collect(),
            None => topology.gateways().cloned().collect(),
        },
    }
}

/// The key rotation packets entering the mixnet are sent under (clients' through a gateway,
/// mix nodes' own loops). Clients build packets with the keys of the topology they hold, and in
/// a rotation's first epoch some still hold the last rotation's: the frame then says
/// "unknown", and each node tries its current key, then its previous one. A mix node's loops
/// are stamped alike, so that their frames look like clients'.
pub(crate) fn stamp(current: &Current) -> KeyRotation {
    match current.epoch {
        Some(epoch) if epoch.is_first_of_rotation() => KeyRotation::Unknown,
        _ => KeyRotation::of(current.topology.key_rotation()),
    }
}

/// The nodes admitted to link in, shared with the listener.
#[derive(Clone, Default)]
pub(crate) struct Admitted(Arc<RwLock<HashMap<NoiseKey, String>>>);

impl Admitted {
    pub(crate) fn set(&self, admitted: HashMap<NoiseKey, String>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = admitted;
    }

    pub(crate) fn admission(&self) -> Admission {
        let admitted = Arc::clone(&self.0);
        Arc::new(move |key: &NoiseKey| {
            admitted
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(key)
                .cloned()
        })
    }
}

/// The outbound links of a node, kept as its next hops change.
pub(crate) struct PeerSet {
    keys: Arc<NoiseKeypair>,
    config: LinkConfig,
    counters: Arc<LinkCounters>,
    links: HashMap<(SocketAddr, NoiseKey), PeerLink>,
    tasks: Vec<JoinHandle<()>>,
    status: Arc<Mutex<Vec<(String, PeerStatus)>>>,
}

impl PeerSet {
    pub(crate) fn new(
        keys: &Arc<NoiseKeypair>,
        config: &LinkConfig,
        counters: &Arc<LinkCounters>,
    ) -> PeerSet {
        PeerSet {
            keys: Arc::clone(keys),
            config: config.clone(),
            counters: Arc::clone(counters),
            links: HashMap::new(),
            tasks: Vec::new(),
            status: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// What metrics show of the links.
    pub(crate) fn status(&self) -> Arc<Mutex<Vec<(String, PeerStatus)>>> {
        Arc::clone(&self.status)
    }

    /// Keeps links to exactly `nodes` (reusing those already up); returns the links by address
    /// for whoever sends. A link dropped here ends once its queue is sent and every copy of it
    /// is gone.
    pub(crate) fn update(&mut self, nodes: &[NodeDescriptor]) -> HashMap<SocketAddr, PeerLink> {
        let mut kept = HashMap::new();
        let mut status = Vec::new();
        for node in nodes {
            let key = (node.mix_address, node.noise_key);
            let link = match self.links.remove(&key) {
                Some(link) => link,
                None => {
                    let peer = Peer {
                        address: node.mix_address,
                        noise_key: node.noise_key,
                        name: node.id.to_string(),
                    };
                    let (link, task) = PeerLink::spawn(
                        peer,
                        Arc::clone(&self.keys),
                        &self.config,
                        Arc::clone(&self.counters),
                    );
                    self.tasks.push(task);
                    link
                }
            };
            status.push((node.id.to_string(), link.status()));
            kept.insert(key, link);
        }
        self.links = kept;
        self.tasks.retain(|task| !task.is_finished());
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = status;
        self.links
            .iter()
            .map(|((address, _), link)| (*address, link.clone()))
            .collect()
    }

    /// Lets go of every link; returns their tasks, which end once their queues are sent.
    pub(crate) fn close(self) -> Vec<JoinHandle<()>> {
        self.tasks
    }
}

/// Reads the node identity key, naming the file when it is missing.
pub fn read_identity(data_dir: &Path, role: &str) -> Result<SigningKey, NodeError> {
    let path = data_dir.join(IDENTITY_KEY_FILE);
    if !path.exists() {
        return Err(NodeError::invalid(
            &path,
            format!(
                "missing: this node has no identity key (it was created before nodes registered on the ledger); create a new node with `umbra {role} init`"
            ),
        ));
    }
    Ok(SigningKey::from_seed(read_key(&path)?))
}

/// The file of the Sphinx key a node made for `rotation`.
fn rotation_key_file(data_dir: &Path, rotation: u32) -> PathBuf {
    data_dir.join(format!("sphinx-{rotation}.key"))
}

/// The private key in `data_dir` whose public key is `public`: the registered one or one
/// made for a rotation.
fn find_key(data_dir: &Path, public: &Key32) -> Option<(PrivateKey, PathBuf)> {
    let entries = std::fs::read_dir(data_dir).ok()?;
    entries.flatten().find_map(|entry| {
        let name = entry.file_name().to_string_lossy().into_owned();
        let sphinx = name == crate::runtime::SPHINX_KEY_FILE
            || (name.starts_with("sphinx-") && name.ends_with(".key"));
        if !sphinx {
            return None;
        }
        let key = PrivateKey::from_bytes(read_key(&entry.path()).ok()?);
        (key.public_key().as_bytes() == &public.0).then(|| (key, entry.path()))
    })
}

/// A node's Sphinx keys on a ledger network: which the unwrapper holds, which to announce.
pub(crate) struct KeyRing {
    data_dir: PathBuf,
    identity: SigningKey,
    directory: Arc<Directory>,
    unwrapper: Arc<Unwrapper>,
    replay: ReplayFilterConfig,
    config_path: PathBuf,
    /// The rotation and public key of the unwrapper's current and previous keys.
    current: (u32, Key32),
    previous: Option<(u32, Key32)>,
    node: Option<LedgerNodeId>,
    role: &'static str,
}

/// How long a key announcement may take to be committed.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(20);

impl KeyRing {
    /// The keys for `current`: the one the ledger lists for its rotation if this node holds
    /// it, otherwise the registered key (the node is then not serving until it announces one
    /// it holds).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        data_dir: &Path,
        identity: SigningKey,
        directory: Arc<Directory>,
        registered: Option<PrivateKey>,
        current: &Current,
        me: Option<&NodeDescriptor>,
        replay: &ReplayFilterConfig,
        config_path: &Path,
        role: &'static str,
    ) -> Result<(KeyRing, Arc<Unwrapper>), NodeError> {
        let rotation = current.topology.key_rotation();
        let key = me
            .and_then(|me| find_key(data_dir, &Key32(*me.sphinx_key.as_bytes())))
            .map(|(key, _)| key)
            .or_else(|| {
                let path = rotation_key_file(data_dir, rotation);
                read_key(&path).ok().map(PrivateKey::from_bytes)
            })
            .or(registered)
            .unwrap_or_else(|| PrivateKey::generate(&mut rand::rng()));
        let filter = Arc::new(crate::runtime::load_filter(
            data_dir,
            rotation,
            replay,
            config_path,
        )?);
        let public = Key32(*key.public_key().as_bytes());
        let unwrapper = Arc::new(Unwrapper::new(RotationKey::new(key, filter), None));
        Ok((
            KeyRing {
                data_dir: data_dir.to_owned(),
                identity,
                directory,
                unwrapper: Arc::clone(&unwrapper),
                replay: replay.clone(),
                config_path: config_path.to_owned(),
                current: (rotation, public),
                previous: None,
                node: None,
                role,
            },
            unwrapper,
        ))
    }

    /// Brings the keys in line with a new epoch: loads the key the topology lists for this
    /// node when the rotation changed, and forgets the previous rotation's key after the first
    /// epoch of a rotation.
    pub(crate) fn enter(&mut self, current: &Current, me: Option<&NodeDescriptor>) {
        let Some(epoch) = current.epoch else { return };
        if let Err(error) = self.load_listed(current, me) {
            error!(%error, "cannot load this epoch's Sphinx key");
        }
        if !epoch.is_first_of_rotation() {
            self.retire_previous();
        }
    }

    /// Announces the keys the ledger lacks (see [`KeyRing::enter`]); a failure is logged and
    /// retried next epoch.
    pub(crate) async fn announce(&mut self, current: &Current) {
        if let Err(error) = self.announce_missing(current).await {
            warn!(%error, "announcing a Sphinx key failed; retrying next epoch");
        }
    }

    /// Switches to the key the topology lists for this node, if it is not the current one.
    fn load_listed(
        &mut self,
        current: &Current,
        me: Option<&NodeDescriptor>,
    ) -> Result<(), NodeError> {
        let Some(me) = me else { return Ok(()) };
        let listed = Key32(*me.sphinx_key.as_bytes());
        if listed == self.current.1 {
            return Ok(());
        }
        let rotation = current.topology.key_rotation();
        let Some((key, _)) = find_key(&self.data_dir, &listed) else {
            return Err(NodeError::MissingSphinxKey {
                key: listed.to_string(),
                rotation,
                dir: self.data_dir.clone(),
            });
        };
        let filter = Arc::new(crate::runtime::load_filter(
            &self.data_dir,
            rotation,
            &self.replay,
            &self.config_path,
        )?);
        let _retired = self.unwrapper.rotate(RotationKey::new(key, filter));
        if let Some((old_rotation, old_key)) = self.previous {
            self.delete(old_rotation, &old_key);
        }
        self.previous = Some(self.current);
        self.current = (rotation, listed);
        info!(
            rotation,
            "Sphinx key rotated; the previous key is kept for one more epoch"
        );
        Ok(())
    }

    fn retire_previous(&mut self) {
        if let Some((rotation, key)) = self.previous.take() {
            self.unwrapper.retire_previous();
            self.delete(rotation, &key);
            info!(
                rotation,
                "the previous rotation's Sphinx key is retired and deleted"
            );
        }
    }

    /// Deletes a retired key's file and its replay filter.
    fn delete(&self, rotation: u32, key: &Key32) {
        if let Some((_, path)) = find_key(&self.data_dir, key)
            && let Err(error) = std::fs::remove_file(&path)
        {
            warn!(path = %path.display(), %error, "cannot delete a retired Sphinx key");
        }
        let _ = std::fs::remove_file(crate::runtime::replay_file(&self.data_dir, rotation));
    }

    /// Announces this rotation's key if the ledger lacks one this node holds, and, in a
    /// rotation's last two epochs, the next rotation's.
    async fn announce_missing(&mut self, current: &Current) -> Result<(), NodeError> {
        let Some(epoch) = current.epoch else {
            return Ok(());
        };
        let client = self
            .directory
            .any_validator()
            .await
            .map_err(NodeError::Unreachable)?;
        let record = match self.node {
            Some(id) => client.get(&format!("/nodes/{id}")).await.ok(),
            None => client
                .node_with_identity(&self.identity.public())
                .await
                .map_err(|source| NodeError::Ledger {
                    doing: "looking this node up",
                    source,
                })?,
        };
        let Some(record): Option<umbra_ledger::api::NodeView> = record else {
            info!(
                identity = %self.identity.public(),
                "this node is not registered on the ledger; register it with `umbra {} register`",
                self.role
            );
            return Ok(());
        };
        self.node = Some(record.id);
        let mut wanted = vec![epoch.rotation];
        if epoch.epochs_left_in_rotation() <= 1 {
            wanted.push(epoch.rotation + 1);
        }
        for rotation in wanted {
            let listed = record.sphinx_keys.get(&rotation);
            if listed.is_some_and(|key| find_key(&self.data_dir, key).is_some()) {
                continue;
            }
            let path = rotation_key_file(&self.data_dir, rotation);
            let key = match read_key(&path) {
                Ok(bytes) => PrivateKey::from_bytes(bytes),
                Err(_) => {
                    let key = PrivateKey::generate(&mut rand::rng());
                    write_new_key(&path, key.as_bytes())?;
                    key
                }
            };
            let public = Key32(*key.public_key().as_bytes());
            let chain_id = &self.directory.trust().chain_id;
            let node_signature = self
                .identity
                .sign(&sphinx_key_message(chain_id, record.id, rotation, &public));
            let nonce = client
                .account(&self.identity.public())
                .await
                .map_err(|source| NodeError::Ledger {
                    doing: "reading this node's account",
                    source,
                })?
                .next_nonce;
            let transaction = Transaction::sign(
                chain_id,
                &self.identity,
                nonce,
                Action::AnnounceSphinxKey {
                    node: record.id,
                    rotation,
                    sphinx_key: public,
                    node_signature,
                },
            );
            let announced = async {
                let hash = client.submit(&transaction).await?;
                client.wait_for(&hash, ANNOUNCE_TIMEOUT).await
            };
            announced.await.map_err(|source| NodeError::Ledger {
                doing: "announcing a Sphinx key",
                source,
            })?;
            info!(node = record.id.0, rotation, key = %public, "Sphinx key announced on the ledger");
        }
        Ok(())
    }

    /// The rotations of the keys held now (current, previous).
    pub(crate) fn rotations(&self) -> (u32, Option<u32>) {
        (self.current.0, self.previous.map(|(rotation, _)| rotation))
    }
}

/// Where a node stands, for `/health` and `/metrics`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place {
    pub(crate) node: Option<u32>,
    /// The mix node's layer; none for a gateway or an idle node.
    pub(crate) layer: Option<Layer>,
    pub(crate) epoch: Option<u64>,
    pub(crate) rotation: u32,
}

impl Place {
    pub(crate) fn of(current: &Current, placement: &Placement) -> Place {
        Place {
            node: placement.me.as_ref().map(|me| me.id.0),
            layer: placement.me.as_ref().and_then(NodeDescriptor::layer),
            epoch: current.epoch_number(),
            rotation: current.topology.key_rotation(),
        }
    }

    /// The gauges every node shows of its epoch and key rotation.
    pub(crate) fn render(&self, page: &mut Exposition) {
        if let Some(epoch) = self.epoch {
            page.gauge(
                "umbra_node_epoch",
                "The epoch of the topology in use.",
                epoch as f64,
            );
        }
        page.gauge(
            "umbra_node_key_rotation",
            "The Sphinx key rotation of the topology in use.",
            f64::from(self.rotation),
        );
    }
}

/// What a kind of node does with each new epoch, besides taking its keys and admitting the
/// epoch's nodes: its links, its core, what it shows.
pub(crate) trait EpochNode: Send + 'static {
    /// Updates `peers` for `placement` in `current` (after `previous`) and hands the links to
    /// the node's core; false when the core is gone, and with it the need to follow.
    fn apply(
        &mut self,
        current: &Current,
        previous: &Current,
        placement: &Placement,
        peers: &mut PeerSet,
    ) -> impl Future<Output = bool> + Send;

    /// Logs where the node stands in `current`.
    fn log(&self, current: &Current, placement: &Placement);
}

/// What follows the epochs while a node runs.
pub(crate) enum Follower {
    /// The ledger's epochs: the task applying them (it hands back the links when it ends) and
    /// the task fetching them.
    Ledger(JoinHandle<PeerSet>, JoinHandle<()>),
    /// A static topology: the links, fixed.
    Fixed(PeerSet),
}

impl Follower {
    /// With a ledger (`ledger`), takes and announces the keys of `first`, then follows the
    /// epochs after it until `stop`, applying each to `node`; without one, keeps `peers` as
    /// they are.
    pub(crate) async fn start(
        ledger: Option<(Arc<Directory>, KeyRing)>,
        first: Current,
        noise_key: NoiseKey,
        peers: PeerSet,
        admitted: Admitted,
        node: impl EpochNode,
        stop: &CancellationToken,
    ) -> Follower {
        let Some((directory, mut ring)) = ledger else {
            return Follower::Fixed(peers);
        };
        let refresh = Refresh::node(directory.trust());
        let (updates, fetcher) = directory::follow(directory, first.clone(), refresh, stop.clone());
        let me = first.topology.node_with_noise_key(&noise_key).cloned();
        ring.enter(&first, me.as_ref());
        ring.announce(&first).await;
        let applier = tokio::spawn(follow_epochs(
            updates,
            Arc::new(first),
            noise_key,
            ring,
            peers,
            admitted,
            node,
            stop.clone(),
        ));
        Follower::Ledger(applier, fetcher)
    }

    /// Once `stop` has come: waits for the tasks to end and hands back the links.
    pub(crate) async fn finish(self) -> Result<PeerSet, NodeError> {
        match self {
            Follower::Ledger(applier, fetcher) => {
                let _ = fetcher.await;
                applier
                    .await
                    .map_err(|_| NodeError::Panicked("epoch follower"))
            }
            Follower::Fixed(peers) => Ok(peers),
        }
    }
}

/// Applies each new epoch: the node's Sphinx keys, whom it admits, and (through `node`) its
/// links and core. Returns the links when `stop` comes or the node's core is gone.
#[allow(clippy::too_many_arguments)]
async fn follow_epochs(
    mut updates: watch::Receiver<Arc<Current>>,
    mut previous: Arc<Current>,
    noise_key: NoiseKey,
    mut ring: KeyRing,
    mut peers: PeerSet,
    admitted: Admitted,
    mut node: impl EpochNode,
    stop: CancellationToken,
) -> PeerSet {
    loop {
        tokio::select! {
            changed = updates.changed() => if changed.is_err() { return peers },
            () = stop.cancelled() => return peers,
        }
        let current = Arc::clone(&updates.borrow_and_update());
        let placement = place(&noise_key, &current.topology, Some(&previous.topology));
        // keys first: packets built with the new topology may arrive as soon as links change
        ring.enter(&current, placement.me.as_ref());
        admitted.set(placement.admitted.clone());
        if !node
            .apply(&current, &previous, &placement, &mut peers)
            .await
        {
            return peers;
        }
        let (rotation, kept) = ring.rotations();
        info!(key_rotation = rotation, previous_key = ?kept, "Sphinx keys held");
        // last: it waits for the ledger, and the new epoch's links must not
        ring.announce(&current).await;
        node.log(&current, &placement);
        previous = current;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use umbra_topology::{Entry, Kind, NodeId};

    fn node(id: u32, layer: Option<u8>) -> NodeDescriptor {
        let sphinx = PrivateKey::from_bytes([id as u8; 32]);
        NodeDescriptor::from_entry(Entry {
            id,
            kind: if layer.is_some() {
                Kind::Mix
            } else {
                Kind::Gateway
            },
            layer,
            mix_address: SocketAddr::from(([127, 0, 0, 1], 2000 + id as u16)),
            client_address: layer
                .is_none()
                .then(|| SocketAddr::from(([127, 0, 0, 1], 3000 + id as u16))),
            sphinx_key: *sphinx.public_key().as_bytes(),
            noise_key: [id as u8; 32],
        })
        .unwrap()
    }

    fn topology(rotation: u32, layers: [&[u32]; 3], gateways: &[u32]) -> Topology {
        let mut nodes = Vec::new();
        for (layer, ids) in (1u8..).zip(layers) {
            nodes.extend(ids.iter().map(|&id| node(id, Some(layer))));
        }
        nodes.extend(gateways.iter().map(|&id| node(id, None)));
        Topology::new(rotation, nodes).unwrap()
    }

    #[test]
    fn a_node_forwards_to_its_next_layer_in_both_epochs_and_admits_both() {
        let before = topology(0, [&[1], &[2], &[3]], &[9]);
        let after = topology(0, [&[2], &[3], &[1]], &[9]);
        // node 2 moves from layer 2 to layer 1
        let placed = place(&NoiseKey([2; 32]), &after, Some(&before));
        assert_eq!(placed.me.as_ref().unwrap().role, Role::Mix(Layer::FIRST));
        let hops: Vec<u32> = placed.next_hops.iter().map(|n| n.id.0).collect();
        assert_eq!(hops, vec![3]);
        // node 1 moves from layer 1 to layer 3: it sends to the gateway now, to node 2 still
        let placed = place(&NoiseKey([1; 32]), &after, Some(&before));
        let mut hops: Vec<u32> = placed.next_hops.iter().map(|n| n.id.0).collect();
        hops.sort_unstable();
        assert_eq!(hops, vec![2, 9]);
        assert!(placed.admitted.contains_key(&NoiseKey([9; 32])));
        assert!(!placed.admitted.contains_key(&NoiseKey([1; 32])));
    }

    #[test]
    fn a_node_out_of_the_active_set_is_idle_but_finishes_the_last_epoch() {
        let before = topology(0, [&[1], &[2], &[3]], &[9]);
        let after = topology(0, [&[4], &[2], &[3]], &[9]);
        let placed = place(&NoiseKey([1; 32]), &after, Some(&before));
        assert!(placed.me.is_none());
        assert_eq!(placed.next_hops.len(), 1);
        let later = place(&NoiseKey([1; 32]), &after, Some(&after));
        assert!(later.me.is_none() && later.next_hops.is_empty());
        assert!(later.admitted.contains_key(&NoiseKey([4; 32])));
        assert_eq!(
            later.admitted.get(&NoiseKey([2; 32])),
            Some(&NodeId(2).to_string())
        );
    }
}
