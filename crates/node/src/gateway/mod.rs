//! The gateway daemon: the pure core of [`umbra_gateway`] with client sessions over WebSocket,
//! links to the mix nodes, and the inbox in redb.
//!
//! Tasks and threads: the tokio runtime runs the client sessions (one task each), the links
//! (outbound to every first-layer node, inbound from the last layer) and the HTTP endpoint;
//! one task owns the [`GatewayCore`] and carries out what it asks; `umbra-sphinx-N` threads
//! unwrap the packets that end here; the `umbra-inbox` thread owns the database.
//!
//! With a ledger (the `[ledger]` section), the gateway fetches and verifies each epoch's
//! topology (see [`umbra_net::directory`]) and follows it: its links to the first layer and its
//! Sphinx keys change with the epochs (see [`crate::epoch`]). With a static topology file
//! (private test networks) nothing changes while it runs.
//!
//! A data directory holds `config.toml`, `identity.key`, `sphinx.key` (and `sphinx-<n>.key`),
//! `noise.key`, `genesis.json` (or the topology file), `inbox.redb` (what is stored for
//! clients that are away) and `replay/`.

mod config;
mod inbox;
mod rules;
mod tickets;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use umbra_gateway::{Action, ClientId, Counters, GatewayCore, SessionId, Sizes};
use umbra_hop::Unwrapped;
use umbra_sphinx::NodeAddress;
use umbra_topology::{Layer, NodeDescriptor, Role, Topology};
use umbra_wire::frame::{Frame, FrameHeader, KeyRotation};
use umbra_wire::gateway::{ClientFrame, FRAME_LEN, Hello, VERSION};

pub use crate::runtime::Initialised;
pub use config::{GatewayNodeConfig, SessionConfig, TicketConfig};
pub use tickets::{MAX_CREDITS, StoreCounts, StoreError, TICKETS_FILE, TicketStore};

use crate::epoch::{EpochNode, PeerSet, Placement};
use crate::runtime::{self, HopStatus, Node, Source};
use inbox::{Inbox, InboxEvent, InboxOp};
use umbra_net::NodeError;
use umbra_net::directory::{Current, Directory, LedgerConfig};
use umbra_net::link::PeerLink;
use umbra_net::metrics::Exposition;
use umbra_net::noise::NoiseKeypair;
use umbra_net::session;

pub use crate::runtime::CONFIG_FILE;
/// The node kind's command, for messages.
const KIND: &str = "gateway";
/// The inbox database in a data directory.
pub const INBOX_FILE: &str = "inbox.redb";
/// Frames waiting for a Sphinx thread; beyond this the gateway is overloaded and drops them.
const FRAME_QUEUE: usize = 16_384;
/// Inputs waiting for the core.
const CORE_QUEUE: usize = 8192;
/// Frames a push session's queue holds beyond the deliveries in flight; a client that lets
/// more pile up is not reading, and its session is closed.
const SESSION_SLACK: usize = 1024;
/// Frames a shaped session's queue holds (a few seconds of its schedule at most): its frames
/// go out one by one as they are due, so a queue this long means the client is not reading.
const SHAPED_QUEUE: usize = 256;
/// How long a stopping gateway waits for its links to send what is queued.
const LINK_DRAIN: Duration = Duration::from_secs(10);
/// How often the core publishes its counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// Creates a gateway in `data_dir`: fresh keys (identity, Sphinx, Noise) and a commented
/// `config.toml`, following the ledger `ledger` describes (its genesis file copied from
/// `genesis`) or, without one, a static topology file. Refuses a directory that already holds a
/// node.
pub fn init(
    data_dir: &Path,
    listen_address: SocketAddr,
    client_listen_address: SocketAddr,
    http_address: SocketAddr,
    ledger: Option<(&LedgerConfig, &Path)>,
) -> Result<Initialised, NodeError> {
    runtime::init(
        data_dir,
        CONFIG_FILE,
        &GatewayNodeConfig::template(
            listen_address,
            client_listen_address,
            http_address,
            ledger.map(|(l, _)| l),
        ),
        ledger.map(|(_, genesis)| genesis),
    )
}

/// A gateway read from its data directory, ready to run.
pub struct Gateway {
    data_dir: PathBuf,
    config: GatewayNodeConfig,
    noise: NoiseKeypair,
    source: Source,
    inbox: Inbox,
    recovered: inbox::Recovered,
    /// Spent tickets and clients' credit (with a ledger).
    tickets: Option<TicketStore>,
}

impl Gateway {
    /// Reads the gateway in `data_dir`, checking everything it needs: its configuration, keys,
    /// its genesis file (with a ledger) or the topology file (which must list it as a gateway,
    /// with its keys), and its inbox. Every error names the file and what is wrong.
    pub fn load(data_dir: &Path) -> Result<Gateway, NodeError> {
        let config_path = data_dir.join(CONFIG_FILE);
        umbra_net::config::require_config(&config_path, data_dir, KIND)?;
        let config = GatewayNodeConfig::load(&config_path)?;
        let (noise, source) = Source::load(
            data_dir,
            KIND,
            config.ledger.as_ref(),
            config.topology.as_deref(),
            |made| made.gateway_descriptor(config.listen_address, config.client_listen_address),
            |topology, me, topology_path| {
                if me.role != Role::Gateway {
                    return Err(NodeError::invalid(
                        topology_path,
                        format!(
                            "lists this node ({}) as a mix node; a gateway has the role \"gateway\"",
                            me.id
                        ),
                    ));
                }
                if topology.layer(Layer::ALL[0]).next().is_none() {
                    return Err(NodeError::invalid(
                        topology_path,
                        "lists no first-layer mix node: the gateway would have nowhere to send its clients' packets",
                    ));
                }
                Ok(())
            },
        )?;
        let (inbox, recovered) =
            Inbox::open(&data_dir.join(INBOX_FILE), config.clients.inbox_expiry)?;
        let tickets = match &config.ledger {
            Some(_) => Some(TicketStore::open(&data_dir.join(tickets::TICKETS_FILE))?),
            None => None,
        };
        Ok(Gateway {
            data_dir: data_dir.to_owned(),
            config,
            noise,
            source,
            inbox,
            recovered,
            tickets,
        })
    }

    /// The gateway's configuration.
    pub fn config(&self) -> &GatewayNodeConfig {
        &self.config
    }

    /// Binds the configured addresses and runs until `shutdown`; see [`Gateway::run_with`].
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), NodeError> {
        let nodes = runtime::bind(self.config.listen_address).await?;
        let clients = runtime::bind(self.config.client_listen_address).await?;
        let http = runtime::bind_http(&self.config.http).await?;
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
            noise,
            source,
            inbox,
            recovered,
            tickets,
        } = self;
        let ledger = match &config.ledger {
            Some(ledger) => Some((
                Arc::new(Directory::from_config(ledger, &data_dir)?),
                crate::epoch::read_identity(&data_dir, KIND)?,
            )),
            None => None,
        };
        let tickets_file = data_dir.join(tickets::TICKETS_FILE);
        let mut shutdown = std::pin::pin!(shutdown);
        let started = Node::start(
            data_dir,
            KIND,
            noise,
            source,
            &config.replay,
            &config.links,
            &mut shutdown,
        )
        .await?;
        let Some(mut node) = started else {
            // stopped before the ledger served a topology
            return Ok(());
        };

        // outbound: a link to every first-layer node
        let first_layer = first_layers(&node.first.topology, None);
        let peers = by_routing_address(&first_layer, node.peers.update(&first_layer));
        log_place(&node.first, &node.placement);

        let mut core = GatewayCore::new(
            config.clients.clone(),
            tokio::time::Instant::now().into_std(),
            first_layer.iter().map(NodeDescriptor::routing_address),
            recovered.clients,
            recovered.next_delivery,
            rand::random(),
        );
        // whether tickets are demanded is settled before the first client is served
        let mut fetched = None;
        if let Some((directory, _)) = &ledger {
            match rules::fetch(directory).await {
                Ok(rules) => {
                    core.set_ticket_rules(rules.rules(&directory.trust().chain_id));
                    fetched = Some(rules);
                }
                Err(error) => {
                    warn!(%error, "cannot read the ticket rules yet; clients get no credit until they are read")
                }
            }
        }
        if let Some(store) = &tickets {
            let credits = store.credits().map_err(|error| NodeError::Invalid {
                path: tickets_file.clone(),
                problem: format!("clients' credit cannot be read: {error}"),
            })?;
            core.restore_credits(credits.into_iter().map(|(c, b)| (ClientId(c), b)));
        }
        let (input, inputs) = mpsc::channel::<Input>(CORE_QUEUE);
        let (frames_in, frames_out) = crossbeam_channel::bounded::<(Instant, Frame)>(FRAME_QUEUE);
        let (inbox_ops, inbox_queue) = crossbeam_channel::unbounded::<InboxOp>();
        let status = Arc::new(GatewayStatus {
            hop: HopStatus::new(&node, frames_out.clone()),
            counters: Mutex::new(Counters::default()),
            connected: AtomicUsize::new(0),
            sizes: Mutex::new(Sizes::default()),
            inbox: Mutex::new((0, 0)),
            sessions: Mutex::new(HashMap::new()),
            malformed: AtomicU64::new(0),
            tickets: tickets.clone(),
        });

        let inbox_events = input.clone();
        let inbox_thread = runtime::spawn_thread("umbra-inbox", move || {
            inbox.run(inbox_queue, |event| {
                let _ = inbox_events.blocking_send(Input::Inbox(event));
            })
        })?;

        let worker_output = input.clone();
        let workers = runtime::spawn_workers(
            &config.workers,
            &status.hop.stale,
            frames_out,
            Arc::clone(&node.unwrapper),
            move |results| {
                worker_output
                    .blocking_send(Input::Unwrapped(results))
                    .is_ok()
            },
        )?;
        let threads = workers.len();

        let mut background = Vec::new();
        if let (Some((directory, identity)), Some(store)) = (ledger, &tickets) {
            let chain_id = directory.trust().chain_id.clone();
            let to_core = input.clone();
            background.push(tokio::spawn(rules::follow(
                Arc::clone(&directory),
                fetched,
                node.stop.clone(),
                move |rules| match to_core.try_send(Input::TicketRules(rules.rules(&chain_id))) {
                    Ok(()) => rules::Handed::Taken,
                    Err(mpsc::error::TrySendError::Full(_)) => rules::Handed::Busy,
                    Err(mpsc::error::TrySendError::Closed(_)) => rules::Handed::Closed,
                },
            )));
            background.push(tokio::spawn(tickets::redeem(
                store.clone(),
                directory,
                identity,
                config.tickets.redeem_interval,
                node.stop.clone(),
            )));
        }

        let shell = CoreShell {
            core,
            tickets: tickets.clone(),
            input: input.clone(),
            sessions: HashMap::new(),
            peers,
            rotation: crate::epoch::stamp(&node.first),
            inbox: inbox_ops,
            pending_stores: 0,
            status: Arc::clone(&status),
            stopping: None,
        };
        let core_task = tokio::spawn(shell.run(inputs));

        let sessions = TaskTracker::new();
        let acceptor = tokio::spawn(serve_clients(
            client_listener,
            Arc::clone(&node.keys),
            config.sessions.clone(),
            config.clients.max_unconfirmed + SESSION_SLACK,
            input.clone(),
            Arc::clone(&status),
            node.stop.clone(),
            sessions.clone(),
        ));
        let epochs = GatewayEpochs {
            core: input.clone(),
            status: Arc::clone(&status),
        };
        let overloaded = Arc::clone(&status.hop.overloaded);
        let mut serving = node
            .serve(
                node_listener,
                http_listener,
                &config.links,
                frames_in,
                &overloaded,
                Arc::clone(&status) as Arc<dyn umbra_http::Status>,
                config.storage.replay_save_interval,
                epochs,
            )
            .await;
        info!(workers = threads, "gateway running");

        shutdown.await;
        info!("stopping: closing sessions, storing what clients had not confirmed");
        status.hop.stopping.store(true, Ordering::Relaxed);
        serving.stop().await?;
        let _ = acceptor.await;
        sessions.close();
        sessions.wait().await;
        // the links' readers are gone, so the workers drain and stop
        runtime::join_threads("Sphinx thread", workers).await?;
        let (done, stopped) = oneshot::channel();
        let _ = input.send(Input::Stop(done)).await;
        drop(input);
        let _ = stopped.await;
        let counters = core_task
            .await
            .map_err(|_| NodeError::Panicked("gateway core task"))?;
        for task in background {
            let _ = task.await;
        }
        // the core is gone with its end of the inbox queue: the inbox thread finishes
        runtime::join_threads("inbox thread", vec![inbox_thread]).await?;
        serving.finish(LINK_DRAIN).await?;
        info!(
            forwarded = counters.forwarded,
            pushed = counters.pushed,
            stored = counters.stored,
            "gateway stopped"
        );
        Ok(())
    }
}

/// The first-layer nodes client packets may enter by: those of `current` and, while packets
/// built with it may still come, of `previous`.
fn first_layers(current: &Topology, previous: Option<&Topology>) -> Vec<NodeDescriptor> {
    let mut nodes: Vec<NodeDescriptor> = current.layer(Layer::FIRST).cloned().collect();
    for node in previous.into_iter().flat_map(|t| t.layer(Layer::FIRST)) {
        if !nodes
            .iter()
            .any(|known| known.mix_address == node.mix_address)
        {
            nodes.push(node.clone());
        }
    }
    nodes
}

fn by_routing_address(
    nodes: &[NodeDescriptor],
    mut links: HashMap<SocketAddr, PeerLink>,
) -> HashMap<NodeAddress, PeerLink> {
    nodes
        .iter()
        .filter_map(|node| {
            let link = links.remove(&node.mix_address)?;
            Some((node.routing_address(), link))
        })
        .collect()
}

fn log_place(current: &Current, placement: &Placement) {
    match &placement.me {
        Some(me) => info!(
            epoch = current.epoch_number(),
            node = me.id.0,
            "serving as a gateway"
        ),
        None => info!(
            epoch = current.epoch_number(),
            "not in this epoch's active set: idle (up, serving connected clients; nobody can send to them until it is active)"
        ),
    }
}

/// What a gateway changes in each new epoch: its links to the first layer (of this epoch and,
/// while packets built with it may still come, the last), the key rotation it stamps frames
/// with, and its place.
struct GatewayEpochs {
    core: mpsc::Sender<Input>,
    status: Arc<GatewayStatus>,
}

impl EpochNode for GatewayEpochs {
    async fn apply(
        &mut self,
        current: &Current,
        previous: &Current,
        placement: &Placement,
        peers: &mut PeerSet,
    ) -> bool {
        let first_layer = first_layers(&current.topology, Some(&previous.topology));
        let links = by_routing_address(&first_layer, peers.update(&first_layer));
        let update = Input::Epoch {
            peers: links,
            first_layer: first_layer
                .iter()
                .map(NodeDescriptor::routing_address)
                .collect(),
            rotation: crate::epoch::stamp(current),
        };
        if self.core.send(update).await.is_err() {
            return false;
        }
        self.status.hop.set_place(current, placement);
        true
    }

    fn log(&self, current: &Current, placement: &Placement) {
        log_place(current, placement);
    }
}

/// What reaches the core task.
enum Input {
    Connected {
        client: ClientId,
        hello: Hello,
        outbox: mpsc::Sender<Outbound>,
        cancel: CancellationToken,
        reply: oneshot::Sender<SessionId>,
    },
    FromClient {
        client: ClientId,
        session: SessionId,
        frame: ClientFrame,
    },
    Disconnected {
        client: ClientId,
        session: SessionId,
    },
    Unwrapped(Vec<(Instant, Unwrapped)>),
    Inbox(InboxEvent),
    /// The ticket rules, read again (none: the network gives a free allowance).
    TicketRules(Option<umbra_gateway::TicketRules>),
    /// A spent ticket was recorded (`Ok(fresh)`) or could not be.
    TicketRecorded {
        client: ClientId,
        session: SessionId,
        serial: [u8; 32],
        result: Result<bool, String>,
    },
    /// A new epoch: links and first layer, and the key rotation to stamp frames with.
    Epoch {
        peers: HashMap<NodeAddress, PeerLink>,
        first_layer: Vec<NodeAddress>,
        rotation: KeyRotation,
    },
    Stop(oneshot::Sender<()>),
}

/// What a session task sends its client.
enum Outbound {
    /// A frame's plaintext, written on its own as soon as it comes.
    Frame(Vec<u8>),
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
    /// Spent tickets and clients' credit on disk (with a ledger).
    tickets: Option<TicketStore>,
    /// The core's own input, for what blocking writes answer.
    input: mpsc::Sender<Input>,
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
            let due = self.core.poll_timeout();
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.handle(input),
                    None => break,
                },
                _ = publish.tick() => self.publish(),
                () = sleep_until(due) => {}
            }
            self.core
                .handle_timeout(tokio::time::Instant::now().into_std());
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
        // tokio's clock (which a test may pause), the one the core's timers sleep on
        let now = tokio::time::Instant::now().into_std();
        match input {
            Input::Connected {
                client,
                hello,
                outbox,
                cancel,
                reply,
            } => {
                if self.stopping.is_some() {
                    cancel.cancel();
                    return;
                }
                let id = self.core.client_connected(now, client, hello);
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
                frame,
            } => self.core.handle_client(now, client, session, frame),
            Input::Disconnected { client, session } => {
                self.core.client_disconnected(now, client, session);
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
            Input::TicketRules(rules) => self.core.set_ticket_rules(rules),
            Input::TicketRecorded {
                client,
                session,
                serial,
                result,
            } => {
                // counted with the writes a stopping gateway waits for
                self.pending_stores = self.pending_stores.saturating_sub(1);
                match result {
                    Ok(fresh) => self.core.ticket_recorded(client, session, serial, fresh),
                    Err(error) => {
                        warn!(%error, "a spent ticket could not be recorded; nothing was credited");
                        self.core.ticket_not_recorded(client, session, serial);
                    }
                }
            }
            Input::Epoch {
                peers,
                first_layer,
                rotation,
            } => {
                self.peers = peers;
                self.core.set_first_layer(first_layer);
                self.rotation = rotation;
            }
            Input::Stop(done) => {
                // what connected clients have not confirmed is stored, and acked once written
                for (client, session) in self.sessions.drain() {
                    session.cancel.cancel();
                    self.core.client_disconnected(now, client, session.id);
                }
                self.stopping = Some(done);
            }
        }
    }

    fn carry_out(&mut self) {
        while let Some(action) = self
            .core
            .poll_transmit(tokio::time::Instant::now().into_std())
        {
            match action {
                Action::SpendTicket {
                    client,
                    session,
                    serial,
                    period,
                    ticket,
                    credit_after,
                } => {
                    let Some(store) = self.tickets.clone() else {
                        self.core.ticket_not_recorded(client, session, serial);
                        continue;
                    };
                    let input = self.input.clone();
                    self.pending_stores += 1;
                    // on disk (fsynced) before the client is credited
                    tokio::task::spawn_blocking(move || {
                        let result = store
                            .spend(serial, period, &ticket, client.0, credit_after)
                            .map_err(|error| error.to_string());
                        let _ = input.blocking_send(Input::TicketRecorded {
                            client,
                            session,
                            serial,
                            result,
                        });
                    });
                }
                Action::SaveCredits { credits } => {
                    if let Some(store) = self.tickets.clone() {
                        let credits: Vec<([u8; 32], u64)> =
                            credits.into_iter().map(|(c, b)| (c.0, b)).collect();
                        tokio::task::spawn_blocking(move || {
                            if let Err(error) = store.save_credits(&credits) {
                                warn!(%error, "clients' credit could not be saved");
                            }
                        });
                    }
                }
                Action::ToClient {
                    client,
                    session,
                    frame,
                } => {
                    let Some(handle) = self.sessions.get(&client).filter(|s| s.id == session)
                    else {
                        continue;
                    };
                    if handle.outbox.try_send(Outbound::Frame(frame)).is_err() {
                        // not reading: its session ends, and what it did not confirm is stored
                        debug!("a client's session queue is full; closing it");
                        handle.cancel.cancel();
                        self.sessions.remove(&client);
                        self.core.client_disconnected(
                            tokio::time::Instant::now().into_std(),
                            client,
                            session,
                        );
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
                Action::Forget { clients } => {
                    let _ = self.inbox.send(InboxOp::Forget(clients));
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
        *self
            .status
            .sizes
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.core.sizes();
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
        // the client's first frame says how it wants to receive
        let first = tokio::select! {
            first = tokio::time::timeout(self.timeout, receiver.recv()) => first,
            () = self.cancel.cancelled() => return,
        };
        let hello = match first.map(|read| read.map(|bytes| bytes.map(|b| ClientFrame::decode(&b))))
        {
            Ok(Ok(Some(Ok(ClientFrame {
                hello: Some(hello),
                forward: None,
                received: None,
                spend: None,
            }))))
                if hello.version == VERSION =>
            {
                hello
            }
            Ok(Ok(Some(Ok(ClientFrame {
                hello: Some(hello), ..
            }))))
                if hello.version != VERSION =>
            {
                self.status.count_session("unknown_version");
                sender
                    .close(
                        "this gateway speaks version 3 of the client protocol: update the client",
                    )
                    .await;
                return;
            }
            Err(_) => {
                self.status.count_session("timeout");
                return;
            }
            _ => {
                self.status.count_session("no_hello");
                self.status.malformed.fetch_add(1, Ordering::Relaxed);
                debug!("a client did not open its session with a hello; closing it");
                return;
            }
        };
        self.status.count_session("accepted");
        let shaped = hello.schedule.is_shaped();
        let client = ClientId(key.0);
        let (outbox, mut outgoing) =
            mpsc::channel(if shaped { SHAPED_QUEUE } else { self.queue_len });
        let (reply, id) = oneshot::channel();
        let connected = Input::Connected {
            client,
            hello,
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
                    Some(Outbound::Frame(frame)) => {
                        if sender.send(&frame).await.is_err() {
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
                // a shaped session's frames are all one size: anything else is not our client
                let decoded = if shaped && bytes.len() != FRAME_LEN {
                    Err(format!("a {}-byte frame on a shaped session", bytes.len()))
                } else {
                    match ClientFrame::decode(&bytes) {
                        Ok(frame) if frame.hello.is_none() => Ok(frame),
                        Ok(_) => Err("a second hello".to_owned()),
                        Err(error) => Err(error.to_string()),
                    }
                };
                match decoded {
                    Ok(frame) => {
                        let input = Input::FromClient {
                            client,
                            session,
                            frame,
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

/// Sleeps until `deadline`; forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await,
        None => std::future::pending().await,
    }
}

/// What the HTTP endpoint shows.
struct GatewayStatus {
    hop: HopStatus,
    counters: Mutex<Counters>,
    connected: AtomicUsize,
    /// What the core holds (each bounded by a setting).
    sizes: Mutex<Sizes>,
    inbox: Mutex<(u64, u64)>,
    /// Session attempts, by outcome.
    sessions: Mutex<HashMap<&'static str, u64>>,
    malformed: AtomicU64,
    /// Spent tickets on disk, for their counts.
    tickets: Option<TicketStore>,
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
        self.hop.links.event("send_failed", reason);
    }
}

impl umbra_http::Status for GatewayStatus {
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
        let sizes = *self.sizes.lock().unwrap_or_else(PoisonError::into_inner);
        page.gauge(
            "umbra_gateway_clients_known",
            "Clients remembered (their messages are kept while they are away); bounded by clients.max_clients.",
            sizes.known_clients as f64,
        );
        page.gauge(
            "umbra_gateway_stores_pending",
            "Deliveries being written to the inbox; bounded by clients.max_pending_stores.",
            sizes.pending_stores as f64,
        );
        page.counter(
            "umbra_gateway_clients_forgotten_total",
            "Clients forgotten: long unseen with nothing stored, or pushed out by newer ones.",
            counters.clients_forgotten,
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
        page.counter(
            "umbra_gateway_tickets_accepted_total",
            "Bandwidth tickets clients spent here, recorded and credited.",
            counters.tickets_accepted,
        );
        page.counters(
            "umbra_gateway_tickets_refused_total",
            "Tickets not credited, by reason (the client is told).",
            "reason",
            counters
                .tickets_refused
                .iter()
                .map(|(reason, n)| (*reason, *n)),
        );
        page.counter(
            "umbra_gateway_credited_bytes_total",
            "Bytes of credit given for accepted tickets.",
            counters.credited_bytes,
        );
        if let Some(Ok(stored)) = self.tickets.as_ref().map(TicketStore::counts) {
            page.gauge(
                "umbra_gateway_tickets_waiting",
                "Spent tickets on disk waiting to be redeemed on the ledger.",
                stored.waiting as f64,
            );
            page.counter(
                "umbra_gateway_tickets_redeemed_total",
                "Spent tickets redeemed on the ledger (its operator paid for each one first redeemed).",
                stored.redeemed,
            );
            page.counter(
                "umbra_gateway_tickets_dropped_total",
                "Spent tickets dropped unredeemed (their key period expired first, or the ledger refused them).",
                stored.dropped,
            );
        }
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
        page.counters(
            "umbra_gateway_frames_sent_total",
            "Frames sent to clients, by what they carried (padding only, or something).",
            "carrying",
            [
                ("nothing", counters.idle_frames),
                (
                    "something",
                    counters.frames.saturating_sub(counters.idle_frames),
                ),
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
        page.counter(
            "umbra_gateway_packets_relayed_total",
            "Packets from the last layer routed on into the first (mix nodes' loop cover).",
            counters.relayed,
        );
        page.counters(
            "umbra_gateway_packets_dropped_total",
            "Packets from mix nodes dropped, by reason.",
            "reason",
            counters
                .dropped
                .iter()
                .map(|(reason, n)| (*reason, *n))
                .chain(self.hop.dropped()),
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
        let place = self.hop.place();
        page.gauge(
            "umbra_gateway_active",
            "Whether the gateway is in this epoch's active set.",
            f64::from(u8::from(place.node.is_some())),
        );
        self.hop.render(&mut page, "umbra_gateway");
        page.finish()
    }

    fn health(&self) -> (bool, String) {
        let connected = self.connected.load(Ordering::Relaxed);
        self.hop.health(
            &format!("\"role\":\"gateway\",\"clients_connected\":{connected}"),
            None,
        )
    }
}
