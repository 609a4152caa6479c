//! The gateway daemon: the pure core of [`umbra_gateway`] with client sessions over WebSocket,
//! links to the mix nodes, and the inbox in redb.
//!
//! Tasks and threads: the tokio runtime runs the client sessions (one task each), the links
//! (outbound to every first-layer node, inbound from the last layer) and the HTTP endpoint;
//! one task owns the [`GatewayCore`] and carries out what it asks; `umbra-sphinx-N` threads
//! unwrap the packets that end here; the `umbra-inbox` thread owns the database.
//!
//! A data directory holds `config.toml`, `sphinx.key`, `noise.key`, the topology file,
//! `inbox.redb` (what is stored for clients that are away) and `replay/`.

mod config;
mod inbox;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use umbra_gateway::{Action, ClientId, Counters, GatewayCore, SessionId};
use umbra_hop::{ReplayFilter, RotationKey, Unwrapped, Unwrapper};
use umbra_sphinx::{NodeAddress, PrivateKey};
use umbra_topology::{Layer, NodeDescriptor, Role, Topology};
use umbra_wire::frame::{Frame, FrameHeader, KeyRotation};
use umbra_wire::gateway::{ClientMessage, GatewayMessage};

pub use crate::node::Initialised;
pub use config::{GatewayNodeConfig, SessionConfig};

use crate::err::NodeError;
use crate::http;
use crate::link::{LinkCounters, PeerLink, PeerStatus};
use crate::metrics::Exposition;
use crate::node;
use crate::noise::NoiseKeypair;
use crate::session;
use inbox::{Inbox, InboxEvent, InboxOp};

/// The configuration file in a data directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The inbox database in a data directory.
pub const INBOX_FILE: &str = "inbox.redb";
/// Frames waiting for a Sphinx thread; beyond this the gateway is overloaded and drops them.
const FRAME_QUEUE: usize = 16_384;
/// Inputs waiting for the core.
const CORE_QUEUE: usize = 8192;
/// Messages a session's queue holds beyond the deliveries in flight; a client that lets more
/// pile up is not reading, and its session is closed.
const SESSION_SLACK: usize = 1024;
/// How long a stopping gateway waits for its links to send what is queued.
const LINK_DRAIN: Duration = Duration::from_secs(10);
/// How often the core publishes its counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// Creates a gateway in `data_dir`: fresh keys and a commented `config.toml`. Refuses a
/// directory that already holds a node.
pub fn init(
    data_dir: &Path,
    listen_address: SocketAddr,
    client_listen_address: SocketAddr,
    http_address: SocketAddr,
) -> Result<Initialised, NodeError> {
    node::init(
        data_dir,
        CONFIG_FILE,
        &GatewayNodeConfig::template(listen_address, client_listen_address, http_address),
    )
}

/// A gateway read from its data directory, ready to run.
pub struct Gateway {
    data_dir: PathBuf,
    config: GatewayNodeConfig,
    sphinx: PrivateKey,
    noise: NoiseKeypair,
    topology: Topology,
    me: NodeDescriptor,
    filter: Arc<ReplayFilter>,
    inbox: Inbox,
    recovered: inbox::Recovered,
}

impl Gateway {
    /// Reads the gateway in `data_dir`, checking everything it needs: its configuration, keys,
    /// the topology (which must list it as a gateway, with its keys), its replay filter and its
    /// inbox. Every error names the file and what is wrong.
    pub fn load(data_dir: &Path) -> Result<Gateway, NodeError> {
        let config_path = data_dir.join(CONFIG_FILE);
        node::require_config(&config_path, data_dir, "gateway")?;
        let config = GatewayNodeConfig::load(&config_path)?;
        let (keys, topology, me, topology_path) =
            node::load_identity(data_dir, &config.topology, |made| {
                made.gateway_descriptor(config.listen_address, config.client_listen_address)
            })?;
        if me.role != Role::Gateway {
            return Err(NodeError::invalid(
                &topology_path,
                format!(
                    "lists this node ({}) as a mix node; a gateway has the role \"gateway\"",
                    me.id
                ),
            ));
        }
        if topology.layer(Layer::ALL[0]).next().is_none() {
            return Err(NodeError::invalid(
                &topology_path,
                "lists no first-layer mix node: the gateway would have nowhere to send its clients' packets",
            ));
        }
        let filter = Arc::new(node::load_filter(
            data_dir,
            topology.key_rotation(),
            &config.replay,
            &config_path,
        )?);
        let (inbox, recovered) =
            Inbox::open(&data_dir.join(INBOX_FILE), config.clients.inbox_expiry)?;
        let node::NodeKeys { sphinx, noise } = keys;
        Ok(Gateway {
            data_dir: data_dir.to_owned(),
            config,
            sphinx,
            noise,
            topology,
            me,
            filter,
            inbox,
            recovered,
        })
    }

    /// The gateway's configuration.
    pub fn config(&self) -> &GatewayNodeConfig {
        &self.config
    }

    /// Binds the configured addresses and runs until `shutdown`; see [`Gateway::run_with`].
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), NodeError> {
        let bind = |address| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| NodeError::Bind { address, source })
        };
        let nodes = bind(self.config.listen_address).await?;
        let clients = bind(self.config.client_listen_address).await?;
        let http = match self.config.http.enabled {
            true => Some(bind(self.config.http.listen_address).await?),
            false => None,
        };
        self.run_with(nodes, clients, http, shutdown).await
    }

    /// Runs on the given sockets until `shutdown` resolves, then stops gracefully: it takes no
    /// new sessions or frames, stores what connected clients had not confirmed, sends the
    /// acknowledgements of everything stored, lets its links send what is queued, saves the
    /// replay filter and returns.
    pub async fn run_with(
        self,
        node_listener: TcpListener,
        client_listener: TcpListener,
        http_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), NodeError> {
        let Gateway {
            data_dir,
            config,
            sphinx,
            noise,
            topology,
            me,
            filter,
            inbox,
            recovered,
        } = self;
        let stop = CancellationToken::new();
        let keys = Arc::new(noise);
        let links = Arc::new(LinkCounters::default());

        // outbound: a link to every first-layer node
        let first_layer: Vec<NodeDescriptor> = topology.layer(Layer::ALL[0]).cloned().collect();
        let node::Peers {
            links: mut peer_links,
            tasks: mut peer_tasks,
            status: peer_status,
        } = node::connect_peers(&first_layer, &keys, &config.links, &links);
        let peers: HashMap<NodeAddress, PeerLink> = first_layer
            .iter()
            .filter_map(|node| {
                let link = peer_links.remove(&node.mix_address)?;
                Some((node.routing_address(), link))
            })
            .collect();

        let core = GatewayCore::new(
            config.clients.clone(),
            first_layer.iter().map(NodeDescriptor::routing_address),
            recovered.clients,
            recovered.next_delivery,
        );
        let (input, inputs) = mpsc::channel::<Input>(CORE_QUEUE);
        let (frames_in, frames_out) = crossbeam_channel::bounded::<(Instant, Frame)>(FRAME_QUEUE);
        let (inbox_ops, inbox_queue) = crossbeam_channel::unbounded::<InboxOp>();
        let unwrapper = Arc::new(Unwrapper::new(
            RotationKey::new(sphinx, Arc::clone(&filter)),
            None,
        ));
        let status = Arc::new(GatewayStatus {
            me: me.clone(),
            counters: Mutex::new(Counters::default()),
            connected: AtomicUsize::new(0),
            inbox: Mutex::new((0, 0)),
            sessions: Mutex::new(HashMap::new()),
            malformed: AtomicU64::new(0),
            overloaded: Arc::new(AtomicU64::new(0)),
            stale: Arc::new(AtomicU64::new(0)),
            links: Arc::clone(&links),
            peers: peer_status,
            waiting: frames_out.clone(),
            unwrapper: Arc::clone(&unwrapper),
            stopping: AtomicBool::new(false),
        });

        let inbox_events = input.clone();
        let inbox_thread = std::thread::Builder::new()
            .name("umbra-inbox".into())
            .spawn(move || {
                inbox.run(inbox_queue, |event| {
                    let _ = inbox_events.blocking_send(Input::Inbox(event));
                })
            })
            .map_err(|error| NodeError::Other(format!("cannot start the inbox thread: {error}")))?;

        let worker_output = input.clone();
        let workers = node::spawn_workers(
            &config.workers,
            &status.stale,
            frames_out,
            Arc::clone(&unwrapper),
            move |results| {
                worker_output
                    .blocking_send(Input::Unwrapped(results))
                    .is_ok()
            },
        )?;
        let threads = workers.len();

        let shell = CoreShell {
            core,
            sessions: HashMap::new(),
            peers,
            rotation: KeyRotation::of(topology.key_rotation()),
            inbox: inbox_ops,
            pending_stores: 0,
            status: Arc::clone(&status),
            stopping: None,
        };
        let core_task = tokio::spawn(shell.run(inputs));

        let inbound = node::serve_links_from(
            node_listener,
            &keys,
            &config.links,
            &topology,
            frames_in,
            &status.overloaded,
            &links,
            &stop,
        );
        let sessions = TaskTracker::new();
        let acceptor = tokio::spawn(serve_clients(
            client_listener,
            Arc::clone(&keys),
            config.sessions.clone(),
            config.clients.max_unconfirmed + SESSION_SLACK,
            input.clone(),
            Arc::clone(&status),
            stop.clone(),
            sessions.clone(),
        ));
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
        info!(node = %me.id, first_layer = first_layer.len(), workers = threads, "gateway running");

        shutdown.await;
        info!("stopping: closing sessions, storing what clients had not confirmed");
        status.stopping.store(true, Ordering::Relaxed);
        stop.cancel();
        let _ = acceptor.await;
        let _ = inbound.await;
        let _ = saver.await;
        sessions.close();
        sessions.wait().await;
        // the links' readers are gone, so the workers drain and stop
        tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await
        .map_err(|error| NodeError::Other(format!("stopping: {error}")))?;
        let (done, stopped) = oneshot::channel();
        let _ = input.send(Input::Stop(done)).await;
        drop(input);
        let _ = stopped.await;
        let counters = core_task
            .await
            .map_err(|error| NodeError::Other(format!("the core task failed: {error}")))?;
        // the core is gone with its end of the inbox queue: the inbox thread finishes
        tokio::task::spawn_blocking(move || inbox_thread.join())
            .await
            .map_err(|error| NodeError::Other(format!("stopping: {error}")))?
            .map_err(|_| NodeError::Other("the inbox thread panicked".into()))?;
        node::drain_peers(&mut peer_tasks, LINK_DRAIN).await;
        if let Some(task) = http_task {
            let _ = task.await;
        }
        node::save_filters(&data_dir, &unwrapper).await?;
        info!(
            forwarded = counters.forwarded,
            pushed = counters.pushed,
            stored = counters.stored,
            "gateway stopped"
        );
        Ok(())
    }
}

/// What reaches the core task.
enum Input {
    Connected {
        client: ClientId,
        outbox: mpsc::Sender<Outbound>,
        cancel: CancellationToken,
        reply: oneshot::Sender<SessionId>,
    },
    FromClient {
        client: ClientId,
        session: SessionId,
        message: ClientMessage,
    },
    Disconnected {
        client: ClientId,
        session: SessionId,
    },
    Unwrapped(Vec<(Instant, Unwrapped)>),
    Inbox(InboxEvent),
    Stop(oneshot::Sender<()>),
}

/// What a session task sends its client.
enum Outbound {
    Message(GatewayMessage),
    Close(&'static str),
}

struct SessionHandle {
    id: SessionId,
    outbox: mpsc::Sender<Outbound>,
    cancel: CancellationToken,
}

/// The core task's state: the core and what carries out its actions.
struct CoreShell {
    core: GatewayCore,
    sessions: HashMap<ClientId, SessionHandle>,
    peers: HashMap<NodeAddress, PeerLink>,
    /// Client packets are built with the keys of the topology's rotation: frames say so.
    rotation: KeyRotation,
    inbox: crossbeam_channel::Sender<InboxOp>,
    pending_stores: usize,
    status: Arc<GatewayStatus>,
    stopping: Option<oneshot::Sender<()>>,
}

impl CoreShell {
    async fn run(mut self, mut inputs: mpsc::Receiver<Input>) -> Counters {
        let mut publish = tokio::time::interval(PUBLISH_EVERY);
        publish.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.handle(input),
                    None => break,
                },
                _ = publish.tick() => self.publish(),
            }
            self.carry_out();
            if self.stopping.is_some() && self.pending_stores == 0 {
                if let Some(done) = self.stopping.take() {
                    let _ = done.send(());
                }
                break;
            }
        }
        self.publish();
        self.core.counters().clone()
    }

    fn handle(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Connected {
                client,
                outbox,
                cancel,
                reply,
            } => {
                if self.stopping.is_some() {
                    cancel.cancel();
                    return;
                }
                let id = self.core.client_connected(now, client);
                if let Some(old) = self
                    .sessions
                    .insert(client, SessionHandle { id, outbox, cancel })
                {
                    let _ = old.outbox.try_send(Outbound::Close(
                        "replaced by a new connection of the same client",
                    ));
                }
                let _ = reply.send(id);
            }
            Input::FromClient {
                client,
                session,
                message,
            } => self.core.handle_client(now, client, session, message),
            Input::Disconnected { client, session } => {
                self.core.client_disconnected(client, session);
                if self.sessions.get(&client).is_some_and(|s| s.id == session) {
                    self.sessions.remove(&client);
                }
            }
            Input::Unwrapped(batch) => {
                for (_, unwrapped) in batch {
                    self.core.unwrapped(unwrapped);
                }
            }
            Input::Inbox(event) => match event {
                InboxEvent::Stored(ids) => {
                    self.pending_stores = self.pending_stores.saturating_sub(ids.len());
                    for (client, id) in ids {
                        self.core.stored(client, id);
                    }
                }
                InboxEvent::Failed(ids) => {
                    self.pending_stores = self.pending_stores.saturating_sub(ids.len());
                    for (client, id, bytes) in ids {
                        self.core.store_failed(client, id, bytes);
                    }
                }
                InboxEvent::Removed(client, count, bytes) => {
                    self.core.removed(client, count, bytes)
                }
                InboxEvent::Loaded {
                    client,
                    session,
                    deliveries,
                    more,
                } => self.core.inbox_loaded(client, session, deliveries, more),
            },
            Input::Stop(done) => {
                // what connected clients have not confirmed is stored, and acked once written
                for (client, session) in self.sessions.drain() {
                    session.cancel.cancel();
                    self.core.client_disconnected(client, session.id);
                }
                self.stopping = Some(done);
            }
        }
    }

    fn carry_out(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::ToClient {
                    client,
                    session,
                    message,
                } => {
                    let Some(handle) = self.sessions.get(&client).filter(|s| s.id == session)
                    else {
                        continue;
                    };
                    if handle.outbox.try_send(Outbound::Message(message)).is_err() {
                        // not reading: its session ends, and what it did not confirm is stored
                        debug!("a client's session queue is full; closing it");
                        handle.cancel.cancel();
                        self.sessions.remove(&client);
                        self.core.client_disconnected(client, session);
                    }
                }
                Action::Forward { first_hop, packet } => {
                    let reason = match self.peers.get(&first_hop) {
                        Some(link) => {
                            let header = FrameHeader::v8(packet.size(), self.rotation);
                            match link.try_send(Frame { header, packet }) {
                                Ok(()) => None,
                                Err(mpsc::error::TrySendError::Full(_)) => Some("link_queue_full"),
                                Err(mpsc::error::TrySendError::Closed(_)) => Some("link_closed"),
                            }
                        }
                        None => Some("no_link"),
                    };
                    if let Some(reason) = reason {
                        self.status.count_send_failure(reason);
                    }
                }
                Action::Store { client, delivery } => {
                    self.pending_stores += 1;
                    let _ = self.inbox.send(InboxOp::Store(client, delivery));
                }
                Action::Delete { client, ids } => {
                    let _ = self.inbox.send(InboxOp::Delete(client, ids));
                }
                Action::Register { client } => {
                    let _ = self.inbox.send(InboxOp::Register(client));
                }
                Action::LoadInbox {
                    client,
                    session,
                    after,
                    limit,
                } => {
                    let _ = self.inbox.send(InboxOp::Load {
                        client,
                        session,
                        after,
                        limit,
                    });
                }
                Action::Close {
                    client,
                    session,
                    reason,
                } => {
                    if let Some(handle) = self.sessions.get(&client).filter(|s| s.id == session) {
                        let _ = handle.outbox.try_send(Outbound::Close(reason));
                        self.sessions.remove(&client);
                    }
                }
            }
        }
    }

    fn publish(&self) {
        *self
            .status
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.core.counters().clone();
        *self
            .status
            .inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.core.inbox_totals();
        self.status
            .connected
            .store(self.core.connected(), Ordering::Relaxed);
    }
}

/// Accepts client sessions until `stop`.
#[allow(clippy::too_many_arguments)]
async fn serve_clients(
    listener: TcpListener,
    keys: Arc<NoiseKeypair>,
    config: SessionConfig,
    queue_len: usize,
    input: mpsc::Sender<Input>,
    status: Arc<GatewayStatus>,
    stop: CancellationToken,
    sessions: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(config.max_sessions));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                warn!(%error, "accepting a client connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            status.count_session("too_many");
            continue;
        };
        let session = Session {
            keys: Arc::clone(&keys),
            timeout: config.handshake_timeout,
            queue_len,
            input: input.clone(),
            status: Arc::clone(&status),
            cancel: stop.child_token(),
        };
        sessions.spawn(async move {
            let _permit = permit;
            session.run(stream).await;
        });
    }
}

/// One client connection.
struct Session {
    keys: Arc<NoiseKeypair>,
    timeout: Duration,
    queue_len: usize,
    input: mpsc::Sender<Input>,
    status: Arc<GatewayStatus>,
    cancel: CancellationToken,
}

impl Session {
    async fn run(self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let accepted = tokio::select! {
            accepted = session::accept(stream, &self.keys, self.timeout) => accepted,
            () = self.cancel.cancelled() => return,
        };
        let (key, mut sender, mut receiver) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                self.status.count_session(error.reason());
                debug!(%error, "a client session failed its handshake");
                return;
            }
        };
        self.status.count_session("accepted");
        let client = ClientId(key.0);
        let (outbox, mut outgoing) = mpsc::channel(self.queue_len);
        let (reply, id) = oneshot::channel();
        let connected = Input::Connected {
            client,
            outbox,
            cancel: self.cancel.clone(),
            reply,
        };
        if self.input.send(connected).await.is_err() {
            return;
        }
        let Ok(session) = id.await else { return };

        let cancel = &self.cancel;
        let writer = async {
            loop {
                let next = tokio::select! {
                    next = outgoing.recv() => next,
                    () = cancel.cancelled() => None,
                };
                match next {
                    Some(Outbound::Message(message)) => {
                        if sender.send(&message.encode()).await.is_err() {
                            break;
                        }
                    }
                    Some(Outbound::Close(reason)) => {
                        sender.close(reason).await;
                        break;
                    }
                    None => {
                        sender.close("the gateway is stopping").await;
                        break;
                    }
                }
            }
            cancel.cancel();
        };
        let reader = async {
            loop {
                let next = tokio::select! {
                    next = receiver.recv() => next,
                    () = cancel.cancelled() => break,
                };
                let bytes = match next {
                    Ok(Some(bytes)) => bytes,
                    Ok(None) => break,
                    Err(error) => {
                        debug!(%error, "a client session failed");
                        break;
                    }
                };
                match ClientMessage::decode(&bytes) {
                    Ok(message) => {
                        let input = Input::FromClient {
                            client,
                            session,
                            message,
                        };
                        if self.input.send(input).await.is_err() {
                            break;
                        }
                    }
                    Err(error) => {
                        self.status.malformed.fetch_add(1, Ordering::Relaxed);
                        debug!(%error, "a client sent a malformed message; closing its session");
                        break;
                    }
                }
            }
            cancel.cancel();
        };
        tokio::join!(writer, reader);
        let _ = self
            .input
            .send(Input::Disconnected { client, session })
            .await;
    }
}

/// What the HTTP endpoint shows.
struct GatewayStatus {
    me: NodeDescriptor,
    counters: Mutex<Counters>,
    connected: AtomicUsize,
    inbox: Mutex<(u64, u64)>,
    /// Session attempts, by outcome.
    sessions: Mutex<HashMap<&'static str, u64>>,
    malformed: AtomicU64,
    overloaded: Arc<AtomicU64>,
    /// Frames dropped for waiting too long for a Sphinx thread.
    stale: Arc<AtomicU64>,
    links: Arc<LinkCounters>,
    peers: Vec<(String, PeerStatus)>,
    waiting: crossbeam_channel::Receiver<(Instant, Frame)>,
    unwrapper: Arc<Unwrapper>,
    stopping: AtomicBool,
}

impl GatewayStatus {
    fn count_session(&self, outcome: &'static str) {
        *self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(outcome)
            .or_default() += 1;
    }

    fn count_send_failure(&self, reason: &'static str) {
        self.links.event("send_failed", reason);
    }
}

impl http::Status for GatewayStatus {
    fn metrics(&self) -> String {
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut page = Exposition::new();
        page.gauge(
            "umbra_gateway_clients_connected",
            "Clients with a session open.",
            self.connected.load(Ordering::Relaxed) as f64,
        );
        let sessions: Vec<(&'static str, u64)> = {
            let map = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            let mut list: Vec<_> = map.iter().map(|(k, v)| (*k, *v)).collect();
            list.sort_unstable();
            list
        };
        page.counters(
            "umbra_gateway_sessions_total",
            "Client connections, by outcome.",
            "outcome",
            sessions,
        );
        page.counter(
            "umbra_gateway_sessions_replaced_total",
            "Sessions replaced by a new connection of the same client.",
            counters.sessions_replaced,
        );
        page.counter(
            "umbra_gateway_client_messages_malformed_total",
            "Client messages that could not be read (the session is closed).",
            self.malformed.load(Ordering::Relaxed),
        );
        page.counter(
            "umbra_gateway_packets_forwarded_total",
            "Client packets sent into the first layer.",
            counters.forwarded,
        );
        page.counters(
            "umbra_gateway_packets_refused_total",
            "Client packets refused, by reason (the client is told).",
            "reason",
            counters.refused.iter().map(|(reason, n)| (*reason, *n)),
        );
        page.counters(
            "umbra_gateway_deliveries_total",
            "Deliveries to clients, by what became of them.",
            "event",
            [
                ("pushed", counters.pushed),
                ("stored", counters.stored),
                ("confirmed", counters.confirmed),
            ],
        );
        page.counter(
            "umbra_gateway_acks_sent_total",
            "Acknowledgements sent back into the mixnet.",
            counters.acks_sent,
        );
        page.counter(
            "umbra_gateway_cover_received_total",
            "Drop-cover packets that ended here.",
            counters.cover,
        );
        let overloaded = self.overloaded.load(Ordering::Relaxed);
        let stale = self.stale.load(Ordering::Relaxed);
        page.counters(
            "umbra_gateway_packets_dropped_total",
            "Packets from mix nodes dropped, by reason.",
            "reason",
            counters
                .dropped
                .iter()
                .map(|(reason, n)| (*reason, *n))
                .chain((overloaded > 0).then_some(("overloaded", overloaded)))
                .chain((stale > 0).then_some(("queued_too_long", stale))),
        );
        let (stored, bytes) = *self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        page.gauge(
            "umbra_gateway_inbox_messages",
            "Deliveries stored for clients that are away.",
            stored as f64,
        );
        page.gauge(
            "umbra_gateway_inbox_bytes",
            "Payload bytes stored for clients that are away.",
            bytes as f64,
        );
        page.gauge(
            "umbra_gateway_unwrap_queue_frames",
            "Frames waiting for a Sphinx thread.",
            self.waiting.len() as f64,
        );
        node::render_hop_metrics(
            &mut page,
            "umbra_gateway",
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
            "{{\"status\":\"{}\",\"node\":{},\"role\":\"gateway\",\"clients_connected\":{},\"peers\":{},\"peers_connected\":{}}}",
            if stopping { "stopping" } else { "ok" },
            self.me.id.0,
            self.connected.load(Ordering::Relaxed),
            self.peers.len(),
            connected
        );
        (!stopping, body)
    }
}
