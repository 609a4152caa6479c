//! The client shell: the pure core of [`umbra_client`] on a real session with its gateway.
//!
//! One task owns the [`Client`] core. It keeps a session open with the gateway (reconnecting
//! with backoff when it drops), sends a frame in each slot of the core's streams, hands the
//! core what the gateway's frames deliver, and turns the core's events into [`ClientEvent`]s.
//! While the session is down the core's streams pause (the task then wakes only for its
//! reconnection and the core's timers); overdue retransmissions go out once it is back.
//!
//! What crosses the link has one size and a schedule that does not depend on what the
//! application does (see [`umbra_wire::gateway`]): every frame the client sends is
//! [`FRAME_LEN`](umbra_wire::gateway::FRAME_LEN) bytes and goes out alone, in a slot of its Poisson streams, carrying the
//! slot's packet and the confirmation of the gateway's frames read so far; the gateway sends
//! frames of the same size on the schedule the client asks for at the start
//! (`traffic.receive_interval`, `traffic.receive_schedule`).
//!
//! Messages the application sends can be kept in an outbox on disk (redb): written before the
//! send is accepted, removed once every packet is acknowledged or the message is given up on.
//! A client restarted after a crash sends what was still in it again, under the same ids
//! (the recipient may then get a message twice: delivery is at least once). Entries are
//! sealed each under its own key, wiped once the message is done with (see
//! [`crate::outbox_keys`]): a delivered message leaves nothing readable in the file. The
//! bytes of messages under way are bounded ([`ClientSetup::max_pending_bytes`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use umbra_client::{
    Client, ClientKeys, ClientStats, Event, Isolation, MessageId, SendError, SenderTag, TestLoop,
};
use umbra_topology::NoiseKey;
use umbra_wire::ClientAddress;
use umbra_wire::gateway::{ClientFrame, DownlinkReader, Hello, Record, Schedule, VERSION};

use crate::outbox_keys::OutboxKeys;
use crate::spending::Spender;
use umbra_net::noise::NoiseKeypair;
use umbra_net::session::{self, SessionReceiver, SessionSender};
use umbra_net::{LinkError, NodeError};

/// How the client reaches its gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionConfig {
    /// How long the WebSocket and Noise handshakes may take.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// After a failed connection: wait this long, doubling per failure up to the maximum.
    #[serde(with = "humantime_serde")]
    pub reconnect_initial: Duration,
    /// The longest wait between attempts.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            handshake_timeout: Duration::from_secs(10),
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
        }
    }
}

/// What happened, for the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// A message arrived; with `reply_to`, its anonymous sender can be replied to.
    Received {
        /// The message.
        message: Vec<u8>,
        /// The sender's tag, if it attached SURBs.
        reply_to: Option<SenderTag>,
    },
    /// A reply arrived through SURBs this client sent to `from`.
    Reply {
        /// Whom the SURBs went to.
        from: ClientAddress,
        /// The group they went under ([`ClientHandle::send_isolated`]).
        isolation: Isolation,
        /// The reply.
        message: Vec<u8>,
    },
    /// Every packet of message `id` was acknowledged by the recipient's gateway.
    Sent(u64),
    /// Message `id` was given up on.
    Failed {
        /// The message.
        id: u64,
        /// Why.
        reason: String,
    },
    /// A session with the gateway is open.
    Connected {
        /// Bytes the client may still send today (`u64::MAX`: no limit).
        allowance: u64,
        /// Deliveries the gateway stored while the client was away, coming now.
        waiting: u32,
    },
    /// The session dropped; the client reconnects by itself.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// The gateway refused packets (the client is over its allowance, say).
    Refused {
        /// How many, since the last time it said.
        count: u32,
        /// The gateway's explanation.
        detail: String,
    },
    /// The gateway demands bandwidth tickets and said the session's credit: at the start of
    /// each session, and after each ticket the client spent (which it does by itself when
    /// the credit runs low).
    Credit {
        /// Bytes of packets the client may still send.
        balance: u64,
    },
    /// The credit is running low and the ticket wallet is empty: once the credit is gone the
    /// gateway refuses the client's packets. Buy tickets (`umbra client buy`).
    OutOfTickets,
    /// A test loop ([`ClientHandle::queue_test_loop`]) was handed to the gateway's session.
    TestLoopSent(u64),
    /// A test loop this client expected ([`ClientHandle::expect_test_loop`]) arrived.
    TestLoopArrived(u64),
}

/// Why a command did not go through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The core refused the message.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The message could not be written to the outbox.
    #[error("the message could not be written to the outbox: {0}")]
    Outbox(String),
    /// Accepting the message would hold more bytes waiting for delivery than allowed.
    #[error(
        "refused: {pending} bytes of messages are waiting for delivery, and this one's {size} would go over the limit of {limit} bytes (setting `max_pending_bytes`); send it once `sent` or `failed` events have come for earlier ones, or raise the limit"
    )]
    TooMuchPending {
        /// Bytes of messages accepted and not yet delivered or given up on.
        pending: usize,
        /// The refused message's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The client has stopped.
    #[error("the client has stopped")]
    Stopped,
}

/// The state of a running client.
#[derive(Clone, Debug)]
pub struct ClientStatus {
    /// Whether a session with the gateway is open.
    pub connected: bool,
    /// What the core counted.
    pub stats: ClientStats,
    /// Messages accepted and not yet acknowledged or given up on.
    pub pending: usize,
    /// Their bytes.
    pub pending_bytes: usize,
    /// Bytes sent to the gateway (Noise messages, without WebSocket and TCP/IP framing).
    pub bytes_sent: u64,
    /// Bytes received from the gateway (likewise).
    pub bytes_received: u64,
    /// Times the client's task woke up (for tests: a disconnected client must not spin).
    pub wakeups: u64,
    /// Events waiting for the application to take them, beyond the channel's own room.
    pub events_waiting: usize,
    /// Connections to the gateway tried so far (one per session, plus one per failure).
    pub connection_attempts: u64,
    /// The session's bandwidth credit in bytes, when the gateway demands tickets.
    pub credit: Option<u64>,
    /// What spending tickets did.
    pub tickets: crate::spending::SpendStats,
}

enum Command {
    Send {
        to: ClientAddress,
        isolation: Isolation,
        message: Vec<u8>,
        surbs: u16,
        reply: oneshot::Sender<Result<u64, CommandError>>,
    },
    Reply {
        to: SenderTag,
        message: Vec<u8>,
        reply: oneshot::Sender<Result<u64, CommandError>>,
    },
    Status(oneshot::Sender<ClientStatus>),
    QueueTestLoop(TestLoop, oneshot::Sender<Result<[u8; 16], SendError>>),
    ExpectTestLoop([u8; 16], u64),
}

/// A handle on a running client; clone it freely.
#[derive(Clone, Debug)]
pub struct ClientHandle {
    commands: mpsc::Sender<Command>,
    address: ClientAddress,
}

impl ClientHandle {
    /// The client's address, for others to send to.
    pub fn address(&self) -> ClientAddress {
        self.address
    }

    /// Sends `message` to `to`, with `surbs` SURBs (0 for none) so `to` can reply without
    /// learning who sent it. Returns the message's id once it is accepted (and, with an
    /// outbox, on disk); [`ClientEvent::Sent`] follows once it is delivered.
    pub async fn send(
        &self,
        to: ClientAddress,
        message: Vec<u8>,
        surbs: u16,
    ) -> Result<u64, CommandError> {
        self.send_isolated(to, Isolation::DEFAULT, message, surbs)
            .await
    }

    /// [`ClientHandle::send`] in the isolation group `isolation`: `to` gets the SURBs under
    /// the sender tag kept for that group, and cannot link it to the client's other groups;
    /// replies through them come back as [`ClientEvent::Reply`] naming the group.
    pub async fn send_isolated(
        &self,
        to: ClientAddress,
        isolation: Isolation,
        message: Vec<u8>,
        surbs: u16,
    ) -> Result<u64, CommandError> {
        self.ask(|reply| Command::Send {
            to,
            isolation,
            message,
            surbs,
            reply,
        })
        .await?
    }

    /// Replies through the SURBs of the anonymous sender `to`.
    pub async fn reply(&self, to: SenderTag, message: Vec<u8>) -> Result<u64, CommandError> {
        self.ask(|reply| Command::Reply { to, message, reply })
            .await?
    }

    /// The client's state.
    pub async fn status(&self) -> Result<ClientStatus, CommandError> {
        self.ask(Command::Status).await
    }

    /// Queues a test loop of the network monitor for the next slot of the real stream
    /// ([`umbra_client::Client::queue_test_loop`]); returns the id its fragment carries, for
    /// the receiving client's [`ClientHandle::expect_test_loop`]. [`ClientEvent::TestLoopSent`]
    /// follows when it leaves.
    pub async fn queue_test_loop(&self, test: TestLoop) -> Result<[u8; 16], CommandError> {
        Ok(self
            .ask(|reply| Command::QueueTestLoop(test, reply))
            .await??)
    }

    /// Expects test loop `id`, whose fragment carries `fragment`; its arrival is
    /// [`ClientEvent::TestLoopArrived`].
    pub async fn expect_test_loop(&self, fragment: [u8; 16], id: u64) -> Result<(), CommandError> {
        self.commands
            .send(Command::ExpectTestLoop(fragment, id))
            .await
            .map_err(|_| CommandError::Stopped)
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| CommandError::Stopped)?;
        answer.await.map_err(|_| CommandError::Stopped)
    }
}

/// Where and how the client connects.
#[derive(Clone, Debug)]
pub struct ClientSetup {
    /// The gateway's WebSocket address (its `client_address` in the topology).
    pub gateway_address: SocketAddr,
    /// The gateway's static Noise key.
    pub gateway_key: NoiseKey,
    /// Connection timeouts and backoff.
    pub connection: ConnectionConfig,
    /// The outbox file, if sent messages are to survive a restart.
    pub outbox: Option<PathBuf>,
    /// Bytes of messages accepted and not yet delivered or given up on, at most (see
    /// [`DEFAULT_MAX_PENDING_BYTES`]); sends beyond are refused with
    /// [`CommandError::TooMuchPending`].
    pub max_pending_bytes: usize,
    /// New topologies, each epoch, when the client follows the ledger (see
    /// [`umbra_net::directory::follow`]); routes are drawn from each as it comes.
    pub topologies:
        Option<tokio::sync::watch::Receiver<std::sync::Arc<umbra_net::directory::Current>>>,
    /// Where bandwidth tickets come from when the gateway demands them (none: the client has
    /// no wallet, and a gateway that demands tickets refuses its packets).
    pub tickets: Option<std::sync::Arc<dyn crate::spending::TicketSource>>,
}

/// The default bound on bytes of messages accepted and not yet delivered or given up on: four
/// messages of the largest size.
pub const DEFAULT_MAX_PENDING_BYTES: usize = 64 << 20;

/// Starts the client: a task driving `core` until `stop`. `keys` must be the core's keys.
pub fn start(
    core: Client,
    keys: &ClientKeys,
    setup: ClientSetup,
    stop: CancellationToken,
) -> Result<(ClientHandle, mpsc::Receiver<ClientEvent>, JoinHandle<()>), NodeError> {
    let (commands_in, commands) = mpsc::channel(256);
    let (events_in, events) = mpsc::channel(EVENT_CHANNEL);
    let handle = ClientHandle {
        commands: commands_in,
        address: core.address(),
    };
    let driver = Driver::new(core, keys, setup, events_in)?;
    let task = tokio::spawn(driver.run(commands, stop));
    Ok((handle, events, task))
}

/// An open session with the gateway.
struct Session {
    sender: SessionSender<TcpStream>,
    receiver: SessionReceiver<TcpStream>,
    /// The gateway's frames, back into records.
    reader: DownlinkReader,
    /// The last frame whose receipt the gateway was told.
    confirmed: Option<u64>,
}

/// Opens a session and says how the client wants to receive: its first frame.
async fn open(
    address: SocketAddr,
    noise: NoiseKeypair,
    key: NoiseKey,
    timeout: Duration,
    schedule: Schedule,
) -> Result<Session, LinkError> {
    let (mut sender, receiver) = session::connect(address, &noise, &key, timeout).await?;
    let hello = ClientFrame {
        hello: Some(Hello {
            version: VERSION,
            schedule,
        }),
        ..ClientFrame::default()
    };
    sender.send(&encode(&hello, schedule)?).await?;
    Ok(Session {
        sender,
        receiver,
        reader: DownlinkReader::new(),
        confirmed: None,
    })
}

fn encode(frame: &ClientFrame, schedule: Schedule) -> Result<Vec<u8>, LinkError> {
    frame
        .encode(schedule.is_shaped())
        .map_err(|error| LinkError::Handshake(error.to_string()))
}

/// The next topology published, or `None` when the publisher is gone; never resolves without
/// a publisher.
async fn next_topology(
    topologies: &mut Option<
        tokio::sync::watch::Receiver<std::sync::Arc<umbra_net::directory::Current>>,
    >,
) -> Option<std::sync::Arc<umbra_net::directory::Current>> {
    match topologies {
        Some(receiver) => match receiver.changed().await {
            Ok(()) => Some(std::sync::Arc::clone(&receiver.borrow_and_update())),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

struct Driver {
    core: Client,
    /// Spends bandwidth tickets when the gateway demands them.
    spender: Spender,
    noise: NoiseKeypair,
    setup: ClientSetup,
    events: Events,
    outbox: Option<Outbox>,
    /// The core's ids of messages under way, to the ids the application knows.
    ids: HashMap<MessageId, u64>,
    /// The size of each message under way, by the application's id.
    sizes: HashMap<u64, usize>,
    /// Their sum: bounded by `setup.max_pending_bytes`.
    pending_bytes: usize,
    next_id: u64,
    bytes_sent: u64,
    bytes_received: u64,
    wakeups: u64,
    connection_attempts: u64,
    /// What the client asks the gateway for.
    schedule: Schedule,
}

/// Events the application has not taken yet, in the channel.
const EVENT_CHANNEL: usize = 256;
/// Events waiting for room in the channel, at most (beyond it the client reads nothing more
/// from its gateway, which keeps what comes meanwhile), and their messages' bytes.
const EVENT_BACKLOG: usize = 1024;
const EVENT_BACKLOG_BYTES: usize = 64 << 20;

/// The application's events: a bounded channel, and what waits for room in it. An
/// application that does not take its events cannot grow the client's memory: while too much
/// waits, the driver reads nothing more from the gateway, whose queue then fills and whose
/// inbox keeps the rest until the application catches up.
struct Events {
    channel: mpsc::Sender<ClientEvent>,
    backlog: VecDeque<ClientEvent>,
    backlog_bytes: usize,
}

impl Events {
    fn new(channel: mpsc::Sender<ClientEvent>) -> Events {
        Events {
            channel,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
        }
    }

    fn size(event: &ClientEvent) -> usize {
        match event {
            ClientEvent::Received { message, .. } | ClientEvent::Reply { message, .. } => {
                message.len()
            }
            _ => 0,
        }
    }

    /// Passes `event` on, or keeps it until there is room (dropped if nobody listens).
    fn send(&mut self, event: ClientEvent) {
        if self.backlog.is_empty() {
            match self.channel.try_send(event) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(event)) => self.keep(event),
            }
        } else {
            self.keep(event);
        }
    }

    fn keep(&mut self, event: ClientEvent) {
        self.backlog_bytes += Events::size(&event);
        self.backlog.push_back(event);
    }

    /// Whether so much waits that the driver must stop taking deliveries.
    fn is_full(&self) -> bool {
        self.backlog.len() >= EVENT_BACKLOG || self.backlog_bytes >= EVENT_BACKLOG_BYTES
    }

    /// Moves what waits into the channel while it has room.
    fn flush(&mut self) {
        while let Some(event) = self.backlog.pop_front() {
            let size = Events::size(&event);
            match self.channel.try_send(event) {
                Ok(()) => self.backlog_bytes -= size,
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.backlog.push_front(event);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.backlog.clear();
                    self.backlog_bytes = 0;
                    return;
                }
            }
        }
    }
}

/// Resolves when the application has taken an event while others wait for room; never
/// without a backlog.
async fn room(events: &Events) {
    if events.backlog.is_empty() {
        return std::future::pending().await;
    }
    if let Ok(permit) = events.channel.reserve().await {
        drop(permit);
    }
}

/// Bytes a Noise transport message adds to its plaintext.
const NOISE_TAG: u64 = 16;
/// Messages sent to the gateway in one go, at most.
const MAX_BURST: usize = 64;

impl Driver {
    /// A driver of `core`, its outbox opened, not yet running.
    fn new(
        core: Client,
        keys: &ClientKeys,
        setup: ClientSetup,
        events: mpsc::Sender<ClientEvent>,
    ) -> Result<Driver, NodeError> {
        let outbox = setup.outbox.as_deref().map(Outbox::open).transpose()?;
        let schedule = core.config().traffic.downlink_schedule();
        let spender = Spender::new(setup.tickets.clone(), now());
        Ok(Driver {
            core,
            spender,
            noise: NoiseKeypair::from_private(*keys.identity_secret()),
            setup,
            events: Events::new(events),
            outbox,
            ids: HashMap::new(),
            sizes: HashMap::new(),
            pending_bytes: 0,
            next_id: 1,
            bytes_sent: 0,
            bytes_received: 0,
            wakeups: 0,
            connection_attempts: 0,
            schedule,
        })
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>, stop: CancellationToken) {
        self.resume();
        let mut session: Option<Session> = None;
        let mut connecting: Option<JoinHandle<Result<Session, LinkError>>> = None;
        let mut backoff = self.setup.connection.reconnect_initial;
        let mut retry_at = Instant::now();
        let mut topologies = self.setup.topologies.take();
        self.core.handle_disconnected();
        loop {
            self.wakeups += 1;
            if session.is_none() && connecting.is_none() && Instant::now() >= retry_at {
                let (address, key, timeout) = (
                    self.setup.gateway_address,
                    self.setup.gateway_key,
                    self.setup.connection.handshake_timeout,
                );
                let noise = NoiseKeypair::from_private(*self.noise.private_bytes());
                let schedule = self.schedule;
                self.connection_attempts += 1;
                connecting = Some(tokio::spawn(open(address, noise, key, timeout, schedule)));
            }
            let wake = self.core.poll_timeout().map(Instant::from_std);
            tokio::select! {
                // the application's commands, then what the gateway sends, before sending
                // more: a client behind its schedule must still take its deliveries (and
                // confirm them) promptly
                biased;
                () = stop.cancelled() => break,
                command = commands.recv() => match command {
                    Some(command) => self.command(command, session.is_some()),
                    None => break,
                },
                () = room(&self.events) => self.events.flush(),
                received = receive(&mut session), if !self.events.is_full() => match received {
                    Ok(Some(bytes)) => {
                        self.bytes_received += bytes.len() as u64 + NOISE_TAG;
                        if let Err(reason) = self.handle_frame(&mut session, &bytes).await {
                            self.disconnected(&mut session, reason);
                            retry_at = Instant::now() + backoff;
                        }
                    }
                    Ok(None) => self.disconnected(&mut session, "the gateway closed the session".into()),
                    Err(error) => self.disconnected(&mut session, error.to_string()),
                },
                result = join(&mut connecting) => {
                    connecting = None;
                    match result {
                        Ok(Ok(opened)) => {
                            debug!("session with the gateway open");
                            session = Some(opened);
                            self.spender.session_started();
                            self.core.handle_connected(now());
                            backoff = self.setup.connection.reconnect_initial;
                        }
                        Ok(Err(error)) => {
                            warn!(%error, retry_in = ?backoff, "cannot connect to the gateway");
                            retry_at = Instant::now() + backoff;
                            backoff = (backoff * 2).min(self.setup.connection.reconnect_max);
                        }
                        Err(_) => retry_at = Instant::now() + backoff,
                    }
                }
                () = sleep_until(wake) => {}
                () = tokio::time::sleep_until(retry_at), if session.is_none() && connecting.is_none() => {}
                changed = next_topology(&mut topologies) => match changed {
                    Some(current) => match self.core.handle_topology(now(), current.topology.clone()) {
                        Ok(()) => info!(epoch = current.epoch_number(), rotation = current.topology.key_rotation(), "routing with the new epoch's topology"),
                        Err(error) => warn!(%error, epoch = current.epoch_number(), "the new topology cannot be used; keeping the last one"),
                    },
                    None => topologies = None,
                },
            }
            let now = now();
            self.core.handle_timeout(now);
            if let Err(reason) = self.send_slots(&mut session, now).await {
                self.disconnected(&mut session, reason);
                retry_at = Instant::now() + backoff;
            }
            self.pass_events();
        }
        // confirm what was received, so the gateway does not keep it
        if let Some(open) = &mut session {
            if open.reader.last_seq() != open.confirmed {
                let frame = ClientFrame {
                    received: open.reader.last_seq(),
                    ..ClientFrame::default()
                };
                if let Ok(bytes) = encode(&frame, self.schedule) {
                    let _ = open.sender.send(&bytes).await;
                }
            }
            open.sender.close("the client is stopping").await;
        }
        if let Some(task) = connecting {
            task.abort();
        }
    }

    /// Sends a frame for each slot of the core's streams that is due, each on its own: the
    /// slot's packet (if any) and the confirmation of the frames read so far. A bounded burst,
    /// so deliveries are read between bursts when the task is behind.
    async fn send_slots(
        &mut self,
        session: &mut Option<Session>,
        now: std::time::Instant,
    ) -> Result<(), String> {
        let Some(open) = session else {
            return Ok(());
        };
        let no_cover = self.core.config().traffic.insecure_no_cover;
        let mut sent = 0;
        while sent < MAX_BURST
            && let Some(transmit) = self.core.poll_transmit(now)
        {
            let unconfirmed = open.reader.last_seq() != open.confirmed;
            // a slot without the application's data may carry a stretch of a ticket instead
            // of its cover packet: the same frame, at the same time
            let (spend, notice) = if transmit.cover {
                self.spender.next_chunk(now)
            } else {
                (None, None)
            };
            if notice.is_some() {
                warn!(
                    "bandwidth credit is running low and the ticket wallet is empty; buy tickets with `umbra client buy`"
                );
                self.events.send(ClientEvent::OutOfTickets);
            }
            // an empty slot still sends its frame: only without cover does it stay silent
            if transmit.packet.is_none() && spend.is_none() && no_cover && !unconfirmed {
                continue;
            }
            let forward = if spend.is_some() {
                None
            } else {
                transmit.packet
            };
            if let Some((_, packet)) = &forward {
                self.spender.packet_sent(packet.as_bytes().len() as u64);
            }
            let frame = ClientFrame {
                hello: None,
                forward,
                received: open.reader.last_seq(),
                spend,
            };
            let bytes = encode(&frame, self.schedule).map_err(|e| e.to_string())?;
            open.confirmed = open.reader.last_seq();
            self.bytes_sent += bytes.len() as u64 + NOISE_TAG;
            sent += 1;
            open.sender
                .send(&bytes)
                .await
                .map_err(|error| error.to_string())?;
        }
        Ok(())
    }

    /// Sends again what the outbox kept from before a restart.
    fn resume(&mut self) {
        let Some(outbox) = &self.outbox else { return };
        let (kept, next_id) = match outbox.load() {
            Ok(loaded) => loaded,
            Err(error) => {
                warn!(%error, "cannot read the outbox; messages kept in it are not sent again");
                return;
            }
        };
        self.next_id = next_id;
        if !kept.is_empty() {
            info!(messages = kept.len(), "sending again what the outbox kept");
        }
        let now = now();
        for (id, entry) in kept {
            // counted even beyond the limit: they were accepted before the restart
            self.sizes.insert(id, entry.len());
            self.pending_bytes += entry.len();
            let sent = match entry {
                Entry::Send {
                    to,
                    isolation,
                    surbs,
                    message,
                } => self.core.send_isolated(now, &to, isolation, message, surbs),
                Entry::Reply { to, message } => self.core.reply(now, to, message),
            };
            match sent {
                Ok(core_id) => {
                    self.ids.insert(core_id, id);
                }
                Err(error) => self.finish(id, Some(format!("after a restart: {error}"))),
            }
        }
    }

    fn command(&mut self, command: Command, connected: bool) {
        let now = now();
        match command {
            Command::Send {
                to,
                isolation,
                message,
                surbs,
                reply,
            } => {
                let entry = Entry::Send {
                    to,
                    isolation,
                    surbs,
                    message,
                };
                let _ = reply.send(self.accept(now, entry));
            }
            Command::Reply { to, message, reply } => {
                let _ = reply.send(self.accept(now, Entry::Reply { to, message }));
            }
            Command::Status(reply) => {
                let _ = reply.send(ClientStatus {
                    connected,
                    stats: self.core.stats().clone(),
                    pending: self.ids.len(),
                    pending_bytes: self.pending_bytes,
                    bytes_sent: self.bytes_sent,
                    bytes_received: self.bytes_received,
                    wakeups: self.wakeups,
                    events_waiting: self.events.backlog.len(),
                    connection_attempts: self.connection_attempts,
                    credit: self.spender.credit(),
                    tickets: self.spender.stats(),
                });
            }
            Command::QueueTestLoop(test, reply) => {
                let _ = reply.send(self.core.queue_test_loop(test));
            }
            Command::ExpectTestLoop(fragment, id) => {
                self.core.expect_test_loop(now, fragment, id);
            }
        }
    }

    /// Writes a message to the outbox (if kept), then hands it to the core.
    fn accept(&mut self, now: std::time::Instant, entry: Entry) -> Result<u64, CommandError> {
        let size = entry.len();
        let limit = self.setup.max_pending_bytes;
        if self.pending_bytes.saturating_add(size) > limit {
            return Err(CommandError::TooMuchPending {
                pending: self.pending_bytes,
                size,
                limit,
            });
        }
        let id = self.next_id;
        if let Some(outbox) = &self.outbox {
            outbox
                .put(id, &entry)
                .map_err(|error| CommandError::Outbox(error.to_string()))?;
        }
        let sent = match entry {
            Entry::Send {
                to,
                isolation,
                surbs,
                message,
            } => self.core.send_isolated(now, &to, isolation, message, surbs),
            Entry::Reply { to, message } => self.core.reply(now, to, message),
        };
        match sent {
            Ok(core_id) => {
                self.next_id += 1;
                self.ids.insert(core_id, id);
                self.sizes.insert(id, size);
                self.pending_bytes += size;
                Ok(id)
            }
            Err(error) => {
                if let Some(outbox) = &self.outbox {
                    let _ = outbox.remove(id);
                }
                Err(error.into())
            }
        }
    }

    /// A frame from the gateway: its records to the core and the application. On a push
    /// session its receipt is confirmed at once.
    async fn handle_frame(
        &mut self,
        session: &mut Option<Session>,
        bytes: &[u8],
    ) -> Result<(), String> {
        let Some(open) = session else {
            return Ok(());
        };
        let records = open.reader.read(bytes).map_err(|error| {
            format!("the gateway sent a frame that cannot be read ({error}); reconnecting")
        })?;
        let now = now();
        for record in records {
            match record {
                Record::Deliver(delivery) => self.core.handle_delivery(now, delivery),
                Record::Welcome {
                    allowance,
                    waiting,
                    schedule,
                } => {
                    info!(waiting, ?schedule, "connected to the gateway");
                    self.events
                        .send(ClientEvent::Connected { allowance, waiting });
                }
                Record::Refused {
                    reason,
                    count,
                    detail,
                } => {
                    warn!(%detail, count, "the gateway refused packets");
                    self.spender.refused(now, reason);
                    self.events.send(ClientEvent::Refused { count, detail });
                }
                Record::Credit {
                    balance,
                    ticket_bytes,
                } => {
                    debug!(balance, "the gateway said the session's credit");
                    self.spender.credited(balance, ticket_bytes);
                    self.events.send(ClientEvent::Credit { balance });
                }
            }
        }
        if !self.schedule.is_shaped() {
            let frame = ClientFrame {
                received: open.reader.last_seq(),
                ..ClientFrame::default()
            };
            let bytes = encode(&frame, self.schedule).map_err(|e| e.to_string())?;
            open.confirmed = open.reader.last_seq();
            self.bytes_sent += bytes.len() as u64 + NOISE_TAG;
            open.sender
                .send(&bytes)
                .await
                .map_err(|error| error.to_string())?;
        }
        Ok(())
    }

    fn disconnected(&mut self, session: &mut Option<Session>, reason: String) {
        if session.take().is_some() {
            self.core.handle_disconnected();
            info!(%reason, "disconnected from the gateway; reconnecting");
            self.events.send(ClientEvent::Disconnected { reason });
        }
    }

    fn pass_events(&mut self) {
        while let Some(event) = self.core.poll_event() {
            let event = match event {
                Event::Received { message, reply_to } => {
                    ClientEvent::Received { message, reply_to }
                }
                Event::Reply {
                    from,
                    isolation,
                    message,
                } => ClientEvent::Reply {
                    from,
                    isolation,
                    message,
                },
                Event::Sent(core_id) => match self.ids.remove(&core_id) {
                    Some(id) => {
                        self.finish(id, None);
                        continue;
                    }
                    None => continue,
                },
                Event::Failed {
                    id: core_id,
                    reason,
                } => match self.ids.remove(&core_id) {
                    Some(id) => {
                        self.finish(id, Some(reason.to_string()));
                        continue;
                    }
                    None => continue,
                },
                Event::TestLoopSent(id) => ClientEvent::TestLoopSent(id),
                Event::TestLoopArrived(id) => ClientEvent::TestLoopArrived(id),
            };
            self.events.send(event);
        }
    }

    /// A message is done with: out of the outbox, and the application told.
    fn finish(&mut self, id: u64, failure: Option<String>) {
        if let Some(size) = self.sizes.remove(&id) {
            self.pending_bytes -= size;
        }
        if let Some(outbox) = &self.outbox
            && let Err(error) = outbox.remove(id)
        {
            warn!(%error, "cannot remove a message from the outbox; it may be sent again after a restart");
        }
        self.events.send(match failure {
            None => ClientEvent::Sent(id),
            Some(reason) => ClientEvent::Failed { id, reason },
        });
    }
}

async fn receive(session: &mut Option<Session>) -> Result<Option<Vec<u8>>, LinkError> {
    match session {
        Some(open) => open.receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Now, by tokio's clock (which a test may pause): the core's time and the task's timers are
/// then one clock.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Sleeps until `deadline`; forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn join<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// A message kept in the outbox.
enum Entry {
    Send {
        to: ClientAddress,
        isolation: Isolation,
        surbs: u16,
        message: Vec<u8>,
    },
    Reply {
        to: SenderTag,
        message: Vec<u8>,
    },
}

impl Entry {
    /// The message's size.
    fn len(&self) -> usize {
        match self {
            Entry::Send { message, .. } | Entry::Reply { message, .. } => message.len(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Entry::Send {
                to,
                isolation,
                surbs,
                message,
            } => {
                // kind 1 is a send in the default group; 3 names its group after the kind
                let mut out = if *isolation == Isolation::DEFAULT {
                    vec![1]
                } else {
                    let mut out = vec![3];
                    out.extend_from_slice(&isolation.0.to_be_bytes());
                    out
                };
                out.extend_from_slice(&surbs.to_be_bytes());
                out.extend_from_slice(&to.identity);
                out.extend_from_slice(&to.encryption);
                out.extend_from_slice(&to.gateway);
                out.extend_from_slice(message);
                out
            }
            Entry::Reply { to, message } => {
                let mut out = vec![2];
                out.extend_from_slice(&to.0);
                out.extend_from_slice(message);
                out
            }
        }
    }

    fn decode(bytes: &[u8]) -> Option<Entry> {
        // a send: surbs (u16) ‖ the address (3 × 32) ‖ the message
        let send = |isolation: Isolation, rest: &[u8]| -> Option<Entry> {
            let key = |at: usize| -> Option<[u8; 32]> { rest.get(at..at + 32)?.try_into().ok() };
            Some(Entry::Send {
                isolation,
                surbs: u16::from_be_bytes(rest.get(..2)?.try_into().ok()?),
                to: ClientAddress {
                    identity: key(2)?,
                    encryption: key(34)?,
                    gateway: key(66)?,
                },
                message: rest.get(98..)?.to_vec(),
            })
        };
        match *bytes.first()? {
            1 => send(Isolation::DEFAULT, bytes.get(1..)?),
            3 => {
                let group = u64::from_be_bytes(bytes.get(1..9)?.try_into().ok()?);
                send(Isolation(group), bytes.get(9..)?)
            }
            2 => Some(Entry::Reply {
                to: SenderTag(bytes.get(1..17)?.try_into().ok()?),
                message: bytes.get(17..)?.to_vec(),
            }),
            _ => None,
        }
    }
}

const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
const OUTBOX_META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The first byte of an entry sealed under its key in the key file (older entries are plain).
const SEALED: u8 = 0x10;

type OutboxError = Box<dyn std::error::Error + Send + Sync>;

/// Messages accepted and not yet done with, on disk, each sealed under its own key (see
/// [`crate::outbox_keys`]): once a message is done with, its key is wiped and what redb keeps
/// of it in free pages cannot be read.
struct Outbox {
    db: Database,
    keys: std::sync::Mutex<OutboxKeys>,
}

impl Outbox {
    fn open(path: &Path) -> Result<Outbox, NodeError> {
        let fail = |error: &dyn std::fmt::Display| {
            NodeError::invalid(
                path,
                format!(
                    "cannot open the outbox: {error}. Move the file away to start with an empty outbox (messages in it are then not sent again)"
                ),
            )
        };
        umbra_net::files::prepare_private_file(path)?;
        let db = Database::create(path).map_err(|e| fail(&e))?;
        let keys = OutboxKeys::open(&path.with_extension("keys"))?;
        let outbox = Outbox {
            db,
            keys: std::sync::Mutex::new(keys),
        };
        outbox.create_tables().map_err(|e| fail(&e))?;
        Ok(outbox)
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, OutboxKeys> {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn create_tables(&self) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        txn.open_table(OUTBOX)?;
        txn.open_table(OUTBOX_META)?;
        txn.commit()?;
        Ok(())
    }

    fn put(&self, id: u64, entry: &Entry) -> Result<(), OutboxError> {
        // the key is on disk before what it seals
        let plaintext = zeroize::Zeroizing::new(entry.encode());
        let mut sealed = vec![SEALED];
        sealed.extend(self.keys().seal(id, &plaintext)?);
        let txn = self.db.begin_write()?;
        txn.open_table(OUTBOX)?.insert(id, &sealed[..])?;
        txn.open_table(OUTBOX_META)?.insert("next_id", id + 1)?;
        txn.commit()?;
        Ok(())
    }

    fn remove(&self, id: u64) -> Result<(), OutboxError> {
        // the key first: once it is gone, the entry is unreadable whatever happens next
        let erased = self.keys().erase(id);
        let txn = self.db.begin_write()?;
        txn.open_table(OUTBOX)?.remove(id)?;
        txn.commit()?;
        Ok(erased?)
    }

    /// What is kept, oldest first, and the next id to give. Entries whose key is gone (the
    /// client stopped between wiping a key and removing its entry) are removed, and keys
    /// whose entry never made it to disk are wiped.
    fn load(&self) -> Result<(Vec<(u64, Entry)>, u64), OutboxError> {
        let mut kept = Vec::new();
        let mut unreadable = Vec::new();
        let next = {
            let txn = self.db.begin_read()?;
            let keys = self.keys();
            for row in txn.open_table(OUTBOX)?.iter()? {
                let (id, bytes) = row?;
                let (id, bytes) = (id.value(), bytes.value());
                let entry = match bytes.split_first() {
                    Some((&SEALED, sealed)) => keys
                        .open_sealed(id, sealed)
                        .and_then(|plaintext| Entry::decode(&plaintext)),
                    _ => Entry::decode(bytes),
                };
                match entry {
                    Some(entry) => kept.push((id, entry)),
                    None => unreadable.push(id),
                }
            }
            txn.open_table(OUTBOX_META)?
                .get("next_id")?
                .map_or(1, |v| v.value())
        };
        for &id in &unreadable {
            warn!(id, "an outbox entry cannot be read; removed");
            self.remove(id)?;
        }
        let kept_ids: std::collections::HashSet<u64> = kept.iter().map(|(id, _)| *id).collect();
        let orphans: Vec<u64> = self
            .keys()
            .ids()
            .into_iter()
            .filter(|id| !kept_ids.contains(id))
            .collect();
        for id in orphans {
            self.keys().erase(id)?;
        }
        let above = kept.last().map_or(1, |(id, _)| id + 1);
        Ok((kept, next.max(above)))
    }
}

#[cfg(test)]
impl ClientHandle {
    /// A handle on no client (its commands fail), for tests of what is built on handles.
    pub(crate) fn detached(address: ClientAddress) -> ClientHandle {
        let (commands, _) = mpsc::channel(1);
        ClientHandle { commands, address }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use umbra_client::ClientConfig;
    use umbra_sphinx::PrivateKey;
    use umbra_topology::{Kind, NodeDescriptor, Topology};

    use super::*;

    const GATEWAY: [u8; 32] = [9; 32];

    fn topology() -> Topology {
        let node = |id: u32, layer: Option<u8>| {
            NodeDescriptor::from_entry(umbra_topology::Entry {
                id,
                kind: if layer.is_some() {
                    Kind::Mix
                } else {
                    Kind::Gateway
                },
                layer,
                mix_address: SocketAddr::from(([127, 0, 0, 1], 1000 + id as u16)),
                client_address: layer
                    .is_none()
                    .then(|| SocketAddr::from(([127, 0, 0, 1], 2000 + id as u16))),
                sphinx_key: *PrivateKey::from_bytes([id as u8; 32])
                    .public_key()
                    .as_bytes(),
                noise_key: if layer.is_none() {
                    GATEWAY
                } else {
                    [id as u8; 32]
                },
            })
            .unwrap()
        };
        Topology::new(
            0,
            vec![
                node(1, Some(1)),
                node(2, Some(2)),
                node(3, Some(3)),
                node(9, None),
            ],
        )
        .unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("umbra-client-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A driver not started, so that its parts can be driven by hand.
    fn driver(
        max_pending_bytes: usize,
        outbox: Option<PathBuf>,
    ) -> (Driver, mpsc::Receiver<ClientEvent>) {
        let keys = ClientKeys::generate(&mut rand::rng());
        let core = Client::new(
            ClientConfig::default(),
            keys.clone(),
            GATEWAY,
            topology(),
            [7; 32],
            std::time::Instant::now(),
        )
        .unwrap();
        let (events_in, events) = mpsc::channel(EVENT_CHANNEL);
        let setup = ClientSetup {
            gateway_address: SocketAddr::from(([127, 0, 0, 1], 1)),
            gateway_key: NoiseKey(GATEWAY),
            connection: ConnectionConfig::default(),
            outbox,
            max_pending_bytes,
            topologies: None,
            tickets: None,
        };
        (Driver::new(core, &keys, setup, events_in).unwrap(), events)
    }

    fn peer() -> ClientAddress {
        ClientAddress {
            identity: [1; 32],
            encryption: ClientKeys::generate(&mut rand::rng()).encryption_public(),
            gateway: GATEWAY,
        }
    }

    fn send(size: usize) -> Entry {
        Entry::Send {
            to: peer(),
            isolation: Isolation::DEFAULT,
            surbs: 0,
            message: vec![7; size],
        }
    }

    #[test]
    fn pending_bytes_are_bounded_and_freed_when_a_message_is_done() {
        let (mut driver, mut events) = driver(100_000, None);
        let now = std::time::Instant::now();
        assert_eq!(driver.accept(now, send(60_000)).unwrap(), 1);
        match driver.accept(now, send(60_000)) {
            Err(
                refused @ CommandError::TooMuchPending {
                    pending: 60_000,
                    size: 60_000,
                    limit: 100_000,
                },
            ) => {
                let said = refused.to_string();
                assert!(
                    said.contains("100000") && said.contains("max_pending_bytes"),
                    "{said}"
                );
            }
            other => panic!("not refused: {other:?}"),
        }
        // up to the limit exactly
        assert_eq!(driver.accept(now, send(40_000)).unwrap(), 2);
        assert_eq!(driver.pending_bytes, 100_000);
        driver.finish(1, None);
        assert_eq!(driver.pending_bytes, 40_000);
        assert_eq!(events.try_recv().unwrap(), ClientEvent::Sent(1));
        driver.finish(2, Some("given up".into()));
        assert_eq!(driver.pending_bytes, 0);
        assert_eq!(driver.accept(now, send(100_000)).unwrap(), 3);
        assert!(matches!(
            driver.accept(now, send(1)),
            Err(CommandError::TooMuchPending { .. })
        ));
    }

    #[test]
    fn what_the_outbox_kept_counts_after_a_restart() {
        let dir = temp_dir("pending-restart");
        let path = dir.join("outbox.redb");
        {
            let (mut driver, _events) = driver(100_000, Some(path.clone()));
            driver
                .accept(std::time::Instant::now(), send(70_000))
                .unwrap();
        }
        let (mut driver, _events) = driver(100_000, Some(path));
        driver.resume();
        assert_eq!(driver.pending_bytes, 70_000);
        assert!(
            driver
                .accept(std::time::Instant::now(), send(40_000))
                .is_err()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Whether `needle` occurs in any file of `dir`.
    fn on_disk(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| {
                let bytes = std::fs::read(path).unwrap();
                bytes.windows(needle.len()).any(|window| window == needle)
            })
            .collect()
    }

    #[test]
    fn a_message_done_with_leaves_no_plaintext_in_the_outbox() {
        let dir = temp_dir("outbox-plaintext");
        let path = dir.join("outbox.redb");
        let marker = b"a secret that must not outlive its delivery";
        let mut secret = Vec::new();
        while secret.len() < 100_000 {
            secret.extend_from_slice(marker);
        }
        let to = peer();
        let outbox = Outbox::open(&path).unwrap();
        outbox
            .put(
                1,
                &Entry::Send {
                    to,
                    isolation: Isolation(7),
                    surbs: 3,
                    message: secret.clone(),
                },
            )
            .unwrap();
        // a later message still under way keeps the first one's pages inside the file
        outbox
            .put(
                2,
                &Entry::Reply {
                    to: SenderTag([5; 16]),
                    message: vec![b'-'; 100_000],
                },
            )
            .unwrap();
        drop(outbox);

        // a restart reads both back
        let outbox = Outbox::open(&path).unwrap();
        let (kept, next) = outbox.load().unwrap();
        assert_eq!(next, 3);
        match &kept[..] {
            [
                (
                    1,
                    Entry::Send {
                        to: to_1,
                        isolation: Isolation(7),
                        surbs: 3,
                        message,
                    },
                ),
                (2, Entry::Reply { message: reply, .. }),
            ] => {
                assert_eq!((to_1, message), (&to, &secret));
                assert_eq!(reply.len(), 100_000);
            }
            _ => panic!("the outbox did not keep both"),
        }
        // the first is delivered; the second is not yet
        outbox.remove(1).unwrap();
        assert_eq!(on_disk(&dir, marker), Vec::<PathBuf>::new());
        drop(outbox);
        assert_eq!(on_disk(&dir, marker), Vec::<PathBuf>::new());
        let outbox = Outbox::open(&path).unwrap();
        let (kept, _) = outbox.load().unwrap();
        assert!(matches!(&kept[..], [(2, _)]));
        outbox.remove(2).unwrap();
        drop(outbox);
        let keys = std::fs::read(dir.join("outbox.keys")).unwrap();
        assert!(keys.iter().all(|&b| b == 0), "a key left behind");
        #[cfg(unix)]
        for file in ["outbox.redb", "outbox.keys"] {
            assert_eq!(umbra_net::testing::mode(&dir.join(file)), 0o600, "{file}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
