//! The gateway core: sessions, bandwidth, the final hop, delivery, storage decisions, acks,
//! and mix nodes' loops relayed from the last layer into the first.
//!
//! Sans-IO: the shell feeds it what happens (a client connects, sends, confirms; a packet
//! ends here; a write to storage finished; time passes) and carries out the [`Action`]s it is
//! polled for, waking it at [`GatewayCore::poll_timeout`].
//!
//! Each session's downlink keeps the schedule its client chose at the start (see
//! [`umbra_wire::gateway`]): on a shaped session a frame of one size goes out at every tick of
//! the schedule whether or not anything waits, so what a client receives never shows on its
//! link. Deliveries wait in the session's queue for their frames; beyond the session's window
//! they are stored, as for a client that is away, and read back in their turn.
//!
//! A delivery's acknowledgement (its SURB-ACK, sent back through the mixnet to the sender) goes
//! out only once the delivery is safe: confirmed by the connected client, or written to
//! storage for one that is away. Until then nothing is lost if the gateway dies: the sender,
//! never acknowledged, sends again.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};
use umbra_hop::{Final, Forward, Outcome, Unwrapped};
use umbra_sphinx::{NodeAddress, Packet, PacketSize};
use umbra_wire::SurbAck;
use umbra_wire::gateway::{
    ClientFrame, Delivery, DeliveryKind, DownlinkWriter, Hello, Record, Refusal, Schedule,
    SpendAssembler,
};

pub(crate) mod tickets;

use tickets::SpendState;
pub use tickets::{AcceptedTicket, TicketRules, TicketVerifier};

/// A client, by its identity key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub [u8; 32]);

/// Which connection of a client: a new one replaces the old.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// How a gateway treats its clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Bytes a client may send per day; none for no limit.
    pub daily_allowance: Option<u64>,
    /// Deliveries kept for a client that is away, at most.
    pub inbox_max_messages: u64,
    /// Bytes kept for a client that is away, at most.
    pub inbox_max_bytes: u64,
    /// How long a stored delivery is kept (default 24 h).
    #[serde(with = "humantime_serde")]
    pub inbox_expiry: Duration,
    /// Deliveries waiting for a connected client's frames or sent and not yet confirmed, at
    /// most; beyond this, new ones are stored instead and read back in their turn.
    pub max_unconfirmed: usize,
    /// The shortest time between a session's frames a client may ask for; a faster schedule
    /// is slowed to this.
    #[serde(with = "humantime_serde")]
    pub min_frame_interval: Duration,
    /// The longest time between a session's frames: a slower schedule is sped up to this.
    #[serde(with = "humantime_serde")]
    pub max_frame_interval: Duration,
    /// Clients remembered (those that connected, so that what comes for them while they are
    /// away is kept), at most: beyond it, the one seen longest ago with nothing stored is
    /// forgotten. Anyone can connect with a new key; this bounds what that costs.
    pub max_clients: usize,
    /// A client not seen for this long, with nothing stored, is forgotten (what comes for it
    /// afterwards is dropped until it connects again).
    #[serde(with = "humantime_serde")]
    pub forget_clients_after: Duration,
    /// Deliveries being written to storage at once, at most; beyond it, new ones are dropped
    /// unacknowledged (their senders send them again).
    pub max_pending_stores: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            daily_allowance: None,
            inbox_max_messages: 100_000,
            inbox_max_bytes: 256 << 20,
            inbox_expiry: Duration::from_secs(24 * 3600),
            max_unconfirmed: 1024,
            min_frame_interval: Duration::from_millis(1),
            max_frame_interval: Duration::from_secs(10),
            max_clients: 1_000_000,
            forget_clients_after: Duration::from_secs(30 * 24 * 3600),
            max_pending_stores: 16_384,
        }
    }
}

/// What the shell must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a frame to a client's session, now and on its own (one WebSocket message, one
    /// write: frames are never gathered into larger writes).
    ToClient {
        /// The client.
        client: ClientId,
        /// Its session.
        session: SessionId,
        /// The frame's plaintext.
        frame: Vec<u8>,
    },
    /// Send a packet into the mixnet.
    Forward {
        /// The first-layer node.
        first_hop: NodeAddress,
        /// The packet.
        packet: Packet,
    },
    /// Write a delivery to storage, then call [`GatewayCore::stored`].
    Store {
        /// The client.
        client: ClientId,
        /// The delivery.
        delivery: Delivery,
    },
    /// Remove stored deliveries.
    Delete {
        /// The client.
        client: ClientId,
        /// Their ids.
        ids: Vec<u64>,
    },
    /// Remember a client, seen now (a new one, or one connecting again).
    Register {
        /// The client.
        client: ClientId,
    },
    /// Forget clients: long unseen with nothing stored, or pushed out by newer ones.
    Forget {
        /// The clients.
        clients: Vec<ClientId>,
    },
    /// Read a client's stored deliveries with ids above `after`, in order, at most `limit`,
    /// then call [`GatewayCore::inbox_loaded`].
    LoadInbox {
        /// The client.
        client: ClientId,
        /// The session to give them to.
        session: SessionId,
        /// Read past this id (none: from the first).
        after: Option<u64>,
        /// Read at most this many.
        limit: usize,
    },
    /// Record a ticket a client spent, durably, with the client's credit once it counts
    /// (`credit_after`), then call [`GatewayCore::ticket_recorded`] (whether the serial was
    /// new here) or [`GatewayCore::ticket_not_recorded`].
    SpendTicket {
        /// The client.
        client: ClientId,
        /// Its session.
        session: SessionId,
        /// The ticket's serial.
        serial: [u8; 32],
        /// Its key period.
        period: u64,
        /// The ticket, for redemption.
        ticket: Vec<u8>,
        /// The client's credit with the ticket counted.
        credit_after: u64,
    },
    /// Save clients' remaining credit (bytes; 0: none left).
    SaveCredits {
        /// Each client's credit.
        credits: Vec<(ClientId, u64)>,
    },
    /// Close a session.
    Close {
        /// The client.
        client: ClientId,
        /// The session.
        session: SessionId,
        /// Why, in words.
        reason: &'static str,
    },
}

/// What the gateway counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Client packets forwarded into the mixnet.
    pub forwarded: u64,
    /// Client packets refused, by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// Deliveries queued for connected clients.
    pub pushed: u64,
    /// Frames sent to clients.
    pub frames: u64,
    /// Of those, frames that carried nothing (padding on a shaped session's schedule).
    pub idle_frames: u64,
    /// Deliveries written to storage.
    pub stored: u64,
    /// Deliveries confirmed by clients.
    pub confirmed: u64,
    /// SURB-ACKs sent back into the mixnet.
    pub acks_sent: u64,
    /// Drop-cover packets dropped (their acks are sent).
    pub cover: u64,
    /// Packets routed through this gateway from the last layer back into the first (mix
    /// nodes' loop cover, Loopix λ_M), forwarded like clients' packets.
    pub relayed: u64,
    /// Final-hop packets dropped, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Sessions replaced by a new connection of the same client.
    pub sessions_replaced: u64,
    /// Clients forgotten (long unseen, or pushed out by newer ones).
    pub clients_forgotten: u64,
    /// Bandwidth tickets accepted (recorded and credited).
    pub tickets_accepted: u64,
    /// Tickets refused, by reason.
    pub tickets_refused: BTreeMap<&'static str, u64>,
    /// Bytes credited for accepted tickets.
    pub credited_bytes: u64,
}

/// A connected client's session.
///
/// Its stored deliveries are read a window at a time (at most `max_unconfirmed` sent and not
/// confirmed), so a large inbox costs neither the gateway's memory nor the session's queue.
/// While some remain stored, new deliveries are stored behind them: everything reaches the
/// client in the order it arrived.
struct Session {
    id: SessionId,
    /// When its frames go out.
    schedule: Schedule,
    /// Its records, cut into frames.
    writer: DownlinkWriter,
    /// Refusals not yet told, by reason: how many, and the last one's words.
    refusals: BTreeMap<Refusal, (u32, String)>,
    /// The highest stored id read so far.
    read_up_to: Option<u64>,
    /// Stored deliveries may remain past `read_up_to`.
    draining: bool,
    /// A read is under way.
    loading: bool,
    /// Something was stored while a read was under way (the read may have missed it).
    stored_meanwhile: bool,
    /// Deliveries queued or sent, and not yet confirmed.
    unconfirmed: BTreeMap<u64, Held>,
    /// The ticket being received, stretch by stretch.
    spend: SpendAssembler,
    /// Where the session's ticket spending stands.
    spend_state: SpendState,
}

impl Session {
    /// Moves the refusals not yet told into the queue, one record per reason.
    fn tell_refusals(&mut self) {
        for (reason, (count, detail)) in std::mem::take(&mut self.refusals) {
            self.writer.push(&Record::Refused {
                reason,
                count,
                detail,
            });
        }
    }
}

/// A delivery sent to a client, until it confirms it.
enum Held {
    /// Read from storage (and acked when it was stored): deleted once confirmed.
    Stored,
    /// Live: acked once confirmed, stored (and acked) if the session ends first.
    Live(Delivery, Option<SurbAck>),
}

struct Usage {
    day_started: Instant,
    bytes: u64,
}

/// A gateway's state.
pub struct GatewayCore {
    config: GatewayConfig,
    first_layer: HashSet<NodeAddress>,
    /// Clients remembered, with when each was last seen, and the same ordered by it.
    known: HashMap<ClientId, Instant>,
    by_last_seen: BTreeSet<(Instant, ClientId)>,
    /// When clients long unseen are next looked for.
    next_sweep: Instant,
    sessions: HashMap<ClientId, Session>,
    usage: HashMap<ClientId, Usage>,
    inbox: HashMap<ClientId, (u64, u64)>,
    /// SURB-ACKs of deliveries being written, sent once written.
    storing: HashMap<(ClientId, u64), Option<SurbAck>>,
    next_delivery: u64,
    next_session: u64,
    /// When each shaped session's next frame is due (entries of ended sessions are skipped).
    frames_due: BinaryHeap<Reverse<(Instant, ClientId, SessionId)>>,
    /// How tickets are checked, when the gateway demands them (then no daily allowance).
    tickets: Option<TicketRules>,
    /// Clients' bandwidth credit in bytes, from tickets (entries above zero only).
    credits: HashMap<ClientId, u64>,
    /// Clients whose credit changed since it was last saved.
    credits_dirty: BTreeSet<ClientId>,
    /// When changed credits are next saved.
    next_credit_save: Instant,
    rng: ChaCha20Rng,
    actions: VecDeque<Action>,
    counters: Counters,
}

/// A client a gateway remembers, as its storage recalls it at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownClient {
    /// The client.
    pub client: ClientId,
    /// Deliveries stored for it.
    pub stored: u64,
    /// Their payload bytes.
    pub stored_bytes: u64,
    /// How long ago it was last seen.
    pub last_seen_ago: Duration,
}

/// How many entries the core holds, for metrics and tests: each is bounded by a setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sizes {
    /// Clients remembered.
    pub known_clients: usize,
    /// Sessions open.
    pub sessions: usize,
    /// Deliveries being written to storage.
    pub pending_stores: usize,
    /// Clients whose daily allowance is being counted.
    pub allowances: usize,
    /// Clients with an inbox count.
    pub inboxes: usize,
    /// Clients with bandwidth credit.
    pub credits: usize,
}

/// How often clients long unseen and allowances of past days are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

impl GatewayCore {
    /// A gateway forwarding client packets to `first_layer`, starting at `now`. `known` are
    /// the clients it remembers, with what is stored for each; `next_delivery` is above every
    /// stored delivery's id; `seed` seeds the Poisson schedules.
    pub fn new(
        config: GatewayConfig,
        now: Instant,
        first_layer: impl IntoIterator<Item = NodeAddress>,
        known: impl IntoIterator<Item = KnownClient>,
        next_delivery: u64,
        seed: [u8; 32],
    ) -> Self {
        let mut core = GatewayCore {
            first_layer: first_layer.into_iter().collect(),
            known: HashMap::new(),
            by_last_seen: BTreeSet::new(),
            next_sweep: now + SWEEP_EVERY,
            sessions: HashMap::new(),
            usage: HashMap::new(),
            inbox: HashMap::new(),
            storing: HashMap::new(),
            next_delivery,
            next_session: 0,
            frames_due: BinaryHeap::new(),
            tickets: None,
            credits: HashMap::new(),
            credits_dirty: BTreeSet::new(),
            next_credit_save: now + tickets::SAVE_CREDITS_EVERY,
            rng: ChaCha20Rng::from_seed(seed),
            actions: VecDeque::new(),
            counters: Counters::default(),
            config,
        };
        for known in known {
            let seen = now.checked_sub(known.last_seen_ago).unwrap_or(now);
            core.touch(known.client, seen);
            if known.stored > 0 {
                core.inbox
                    .insert(known.client, (known.stored, known.stored_bytes));
            }
        }
        core
    }

    /// Notes that `client` was seen at `at`; whether it is new.
    fn touch(&mut self, client: ClientId, at: Instant) -> bool {
        let previous = self.known.insert(client, at);
        if let Some(previous) = previous {
            self.by_last_seen.remove(&(previous, client));
        }
        self.by_last_seen.insert((at, client));
        previous.is_none()
    }

    /// Whether `client` may be forgotten: not connected, nothing stored or being stored (a
    /// delivery being written counts as stored).
    fn forgettable(&self, client: &ClientId) -> bool {
        !self.sessions.contains_key(client)
            && self.inbox.get(client).is_none_or(|(count, _)| *count == 0)
    }

    /// Forgets clients seen before `before` (all that may be), or the `count` seen longest
    /// ago that may be.
    fn forget(&mut self, before: Option<Instant>, mut count: usize) {
        let mut gone = Vec::new();
        for &(seen, client) in &self.by_last_seen {
            if count == 0 || before.is_some_and(|before| seen >= before) {
                break;
            }
            // credit is paid for: only time (not newcomers pushing) forgets it
            if self.forgettable(&client)
                && (before.is_some() || !self.credits.contains_key(&client))
            {
                gone.push((seen, client));
                count -= 1;
            }
        }
        if gone.is_empty() {
            return;
        }
        for (seen, client) in &gone {
            self.by_last_seen.remove(&(*seen, *client));
            self.known.remove(client);
            self.inbox.remove(client);
            self.usage.remove(client);
            if self.credits.remove(client).is_some() {
                self.credits_dirty.insert(*client);
            }
        }
        self.counters.clients_forgotten += gone.len() as u64;
        self.actions.push_back(Action::Forget {
            clients: gone.into_iter().map(|(_, client)| client).collect(),
        });
    }

    /// How many entries the core holds.
    pub fn sizes(&self) -> Sizes {
        Sizes {
            known_clients: self.known.len(),
            sessions: self.sessions.len(),
            pending_stores: self.storing.len(),
            allowances: self.usage.len(),
            inboxes: self.inbox.len(),
            credits: self.credits.len(),
        }
    }

    /// Replaces the nodes client packets may go to (a new topology).
    pub fn set_first_layer(&mut self, first_layer: impl IntoIterator<Item = NodeAddress>) {
        self.first_layer = first_layer.into_iter().collect();
    }

    /// A client authenticated a new connection and said how it wants to receive; it replaces
    /// any older one at once. The client is welcomed (with the schedule granted: the one it
    /// asked for, within the gateway's bounds), and its stored deliveries follow, oldest first.
    pub fn client_connected(&mut self, now: Instant, client: ClientId, hello: Hello) -> SessionId {
        self.next_session += 1;
        let id = SessionId(self.next_session);
        if let Some(old) = self.sessions.remove(&client) {
            self.counters.sessions_replaced += 1;
            self.actions.push_back(Action::Close {
                client,
                session: old.id,
                reason: "replaced by a new connection of the same client",
            });
            self.spill(client, old);
        }
        // remembered (or seen again), so what comes for it while it is away is kept; a new
        // client beyond the bound pushes out the one seen longest ago with nothing stored
        if self.touch(client, now) && self.known.len() > self.config.max_clients {
            let over = self.known.len() - self.config.max_clients;
            self.forget(None, over);
        }
        self.actions.push_back(Action::Register { client });
        let allowance = self.remaining(now, client);
        let waiting = self.inbox.get(&client).map_or(0, |(count, _)| *count);
        let schedule = self.grant(hello.schedule);
        let mut writer = DownlinkWriter::new(schedule);
        writer.push(&Record::Welcome {
            allowance,
            waiting: u32::try_from(waiting).unwrap_or(u32::MAX),
            schedule,
        });
        if let Some(rules) = &self.tickets {
            writer.push(&Record::Credit {
                balance: allowance,
                ticket_bytes: rules.ticket_bytes,
            });
        }
        if schedule.is_shaped() {
            self.frames_due.push(Reverse((now, client, id)));
        }
        self.sessions.insert(
            client,
            Session {
                id,
                schedule,
                writer,
                refusals: BTreeMap::new(),
                read_up_to: None,
                draining: waiting > 0,
                loading: false,
                stored_meanwhile: false,
                unconfirmed: BTreeMap::new(),
                spend: SpendAssembler::default(),
                spend_state: SpendState::new(now),
            },
        );
        self.flush_push(client);
        self.refill(client);
        id
    }

    /// The schedule a session gets: the one asked for, within the configured bounds.
    fn grant(&self, asked: Schedule) -> Schedule {
        let bound = |interval: Duration| {
            interval.clamp(
                self.config.min_frame_interval,
                self.config.max_frame_interval,
            )
        };
        match asked {
            Schedule::Constant { interval } => Schedule::Constant {
                interval: bound(interval),
            },
            Schedule::Poisson { mean } => Schedule::Poisson { mean: bound(mean) },
            Schedule::InsecurePush => Schedule::InsecurePush,
        }
    }

    /// A session ended; what it had not confirmed is stored.
    pub fn client_disconnected(&mut self, now: Instant, client: ClientId, session: SessionId) {
        if self.sessions.get(&client).is_some_and(|s| s.id == session)
            && let Some(old) = self.sessions.remove(&client)
        {
            self.touch(client, now);
            self.spill(client, old);
        }
    }

    /// Stores what a closed session had not confirmed. The client may have seen some of
    /// them: it drops duplicates.
    fn spill(&mut self, client: ClientId, session: Session) {
        for held in session.unconfirmed.into_values() {
            if let Held::Live(delivery, ack) = held {
                self.store(client, delivery, ack);
            }
        }
    }

    /// Asks for the next window of a session's stored deliveries, when some remain and at
    /// least half the window is free (or all of it is).
    fn refill(&mut self, client: ClientId) {
        let max = self.config.max_unconfirmed;
        let Some(session) = self.sessions.get_mut(&client) else {
            return;
        };
        let free = max.saturating_sub(session.unconfirmed.len());
        if !session.draining
            || session.loading
            || free == 0
            || (free < max / 2 && !session.unconfirmed.is_empty())
        {
            return;
        }
        session.loading = true;
        session.stored_meanwhile = false;
        self.actions.push_back(Action::LoadInbox {
            client,
            session: session.id,
            after: session.read_up_to,
            limit: free,
        });
    }

    /// Stored deliveries read for a session, in order; `more` if the read stopped at its
    /// limit.
    pub fn inbox_loaded(
        &mut self,
        client: ClientId,
        session: SessionId,
        stored: Vec<Delivery>,
        more: bool,
    ) {
        let Some(current) = self.sessions.get_mut(&client).filter(|s| s.id == session) else {
            return;
        };
        current.loading = false;
        current.draining = more || current.stored_meanwhile;
        let mut sent = Vec::with_capacity(stored.len());
        for delivery in stored {
            current.read_up_to = Some(delivery.id);
            // a delivery still unconfirmed from an earlier read of this session is not sent twice
            if current
                .unconfirmed
                .insert(delivery.id, Held::Stored)
                .is_none()
            {
                sent.push(delivery);
            }
        }
        for delivery in sent {
            self.send_delivery(client, delivery);
        }
        self.refill(client);
    }

    /// A frame from a client's session (after its first, the [`Hello`] given to
    /// [`GatewayCore::client_connected`]).
    pub fn handle_client(
        &mut self,
        now: Instant,
        client: ClientId,
        session: SessionId,
        frame: ClientFrame,
    ) {
        let Some(current) = self.sessions.get_mut(&client).filter(|s| s.id == session) else {
            return;
        };
        if let Some(seq) = frame.received {
            let ids = current.writer.confirm(seq);
            self.confirmed(client, &ids);
        }
        if let Some((first_hop, packet)) = frame.forward {
            self.forward(now, client, first_hop, packet);
        }
        if let Some(chunk) = frame.spend {
            self.spend_chunk(now, client, chunk);
        }
    }

    /// Sends the frames that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_credit_save {
            self.next_credit_save = now + tickets::SAVE_CREDITS_EVERY;
            self.save_credits();
        }
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY;
            if let Some(before) = now.checked_sub(self.config.forget_clients_after) {
                self.forget(Some(before), usize::MAX);
            }
            // allowances of a day that is over start again at the next packet anyway
            let day = Duration::from_secs(24 * 3600);
            self.usage
                .retain(|_, usage| now.saturating_duration_since(usage.day_started) < day);
        }
        while let Some(&Reverse((due, client, id))) = self.frames_due.peek() {
            if due > now {
                break;
            }
            self.frames_due.pop();
            let Some(session) = self.sessions.get_mut(&client).filter(|s| s.id == id) else {
                continue;
            };
            session.tell_refusals();
            let idle = session.writer.is_idle();
            let Some(frame) = session.writer.next_frame() else {
                continue;
            };
            let schedule = session.schedule;
            self.counters.frames += 1;
            self.counters.idle_frames += u64::from(idle);
            self.actions.push_back(Action::ToClient {
                client,
                session: id,
                frame,
            });
            // on the schedule's own grid, so a late tick does not shift the ones after it;
            // a session far behind (the process stalled) starts again from now, not in a burst
            let base = if now.saturating_duration_since(due) > Duration::from_secs(1) {
                now
            } else {
                due
            };
            let gap = match schedule {
                Schedule::Constant { interval } => interval,
                Schedule::Poisson { mean } => Exp::new(1.0 / mean.as_secs_f64().max(1e-9))
                    .map_or(mean, |exp| {
                        Duration::from_secs_f64(exp.sample(&mut self.rng))
                    }),
                Schedule::InsecurePush => continue,
            };
            self.frames_due.push(Reverse((base + gap, client, id)));
        }
    }

    /// When the core next has something to do on its own (a session's frame, the hourly sweep
    /// of clients long unseen).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let frame = self.frames_due.peek().map(|Reverse((due, _, _))| *due);
        let mut next = frame.map_or(self.next_sweep, |due| due.min(self.next_sweep));
        if !self.credits_dirty.is_empty() {
            next = next.min(self.next_credit_save);
        }
        Some(next)
    }

    /// Sends what waits for a push session at once, a record per frame.
    fn flush_push(&mut self, client: ClientId) {
        let Some(session) = self
            .sessions
            .get_mut(&client)
            .filter(|s| !s.schedule.is_shaped())
        else {
            return;
        };
        session.tell_refusals();
        let id = session.id;
        while let Some(frame) = session.writer.next_frame() {
            self.counters.frames += 1;
            self.actions.push_back(Action::ToClient {
                client,
                session: id,
                frame,
            });
        }
    }

    fn forward(&mut self, now: Instant, client: ClientId, first_hop: NodeAddress, packet: Packet) {
        let refuse = |core: &mut Self, reason: Refusal, name: &'static str, detail: String| {
            *core.counters.refused.entry(name).or_default() += 1;
            if let Some(session) = core.sessions.get_mut(&client) {
                let told = session.refusals.entry(reason).or_insert((0, String::new()));
                told.0 = told.0.saturating_add(1);
                told.1 = detail;
            }
            core.flush_push(client);
        };
        if !self.first_layer.contains(&first_hop) {
            let detail =
                "the first hop is not a first-layer node of this gateway's topology".to_owned();
            return refuse(self, Refusal::NotFirstLayer, "not_first_layer", detail);
        }
        let len = packet.as_bytes().len() as u64;
        if self.tickets.is_some() {
            if !self.charge(client, len) {
                let detail = "this client has no bandwidth credit left: the gateway forwards packets for tickets; buy some with `umbra client buy` (the client spends them by itself)".to_owned();
                return refuse(self, Refusal::NoCredit, "no_credit", detail);
            }
        } else if let Some(limit) = self.config.daily_allowance {
            let usage = self.usage.entry(client).or_insert(Usage {
                day_started: now,
                bytes: 0,
            });
            if now.saturating_duration_since(usage.day_started) >= Duration::from_secs(24 * 3600) {
                *usage = Usage {
                    day_started: now,
                    bytes: 0,
                };
            }
            if usage.bytes + len > limit {
                let resets = Duration::from_secs(24 * 3600)
                    .saturating_sub(now.saturating_duration_since(usage.day_started));
                let detail = format!(
                    "this client has sent {} of its {limit} bytes for the day; the allowance resets in {} minutes",
                    usage.bytes,
                    resets.as_secs().div_ceil(60)
                );
                return refuse(self, Refusal::AllowanceExhausted, "allowance", detail);
            }
            usage.bytes += len;
        }
        self.counters.forwarded += 1;
        self.actions
            .push_back(Action::Forward { first_hop, packet });
    }

    fn remaining(&mut self, now: Instant, client: ClientId) -> u64 {
        if self.tickets.is_some() {
            return self.credits.get(&client).copied().unwrap_or(0);
        }
        let Some(limit) = self.config.daily_allowance else {
            return u64::MAX;
        };
        match self.usage.get(&client) {
            Some(usage)
                if now.saturating_duration_since(usage.day_started)
                    < Duration::from_secs(24 * 3600) =>
            {
                limit.saturating_sub(usage.bytes)
            }
            _ => limit,
        }
    }

    fn confirmed(&mut self, client: ClientId, ids: &[u64]) {
        let mut stored_ones = Vec::new();
        for &id in ids {
            let held = self
                .sessions
                .get_mut(&client)
                .and_then(|session| session.unconfirmed.remove(&id));
            match held {
                Some(Held::Live(_, ack)) => {
                    self.counters.confirmed += 1;
                    self.send_ack(ack);
                }
                // from storage, and acked when it was stored: forget it
                Some(Held::Stored) => stored_ones.push(id),
                None => {}
            }
        }
        if !stored_ones.is_empty() {
            self.counters.confirmed += stored_ones.len() as u64;
            self.actions.push_back(Action::Delete {
                client,
                ids: stored_ones,
            });
        }
        self.refill(client);
    }

    /// What the unwrapper made of a frame from a mix node.
    pub fn unwrapped(&mut self, unwrapped: Unwrapped) {
        match unwrapped {
            Ok(Outcome::Final(packet)) => self.final_hop(packet),
            Ok(Outcome::Forward(forward)) => self.relay(forward),
            Err(dropped) => self.drop(dropped.reason()),
        }
    }

    /// A packet routed on through this gateway: a mix node's loop, which crosses the gateway
    /// from the last layer back into the first (Loopix λ_M). It goes to its first-layer node at
    /// once, as a client's packet does — a gateway does not mix, whatever delay the header
    /// asks — and under the same frame header, so the first layer cannot tell the two apart.
    /// What the gateway learns is only what Sphinx shows it: a packet from the last layer that
    /// goes on. Any other next hop is refused.
    fn relay(&mut self, forward: Forward) {
        if !self.first_layer.contains(&forward.next_hop) {
            return self.drop("not_first_layer");
        }
        self.counters.relayed += 1;
        self.actions.push_back(Action::Forward {
            first_hop: forward.next_hop,
            packet: forward.packet,
        });
    }

    /// A packet ended at this gateway.
    pub fn final_hop(&mut self, packet: Final) {
        let Final {
            destination,
            surb_id,
            payload,
            size,
        } = packet;
        let to = *destination.as_bytes();
        let (kind, bytes, ack) = if size == PacketSize::Ack {
            match payload.plaintext() {
                Ok(ack_id) => (DeliveryKind::Ack, ack_id.to_vec(), None),
                Err(_) => return self.drop("bad_ack"),
            }
        } else {
            match payload.plaintext() {
                Ok(plaintext) => match SurbAck::split(plaintext) {
                    Some((ack, data)) => (DeliveryKind::Data, data.to_vec(), Some(ack)),
                    None => return self.drop("no_surb_ack"),
                },
                // a reply through a SURB: sealed for its owner alone
                Err(_) => (
                    DeliveryKind::Sealed { surb_id },
                    payload.as_bytes().to_vec(),
                    None,
                ),
            }
        };
        if to == [0; 32] {
            // drop cover: its sender wants its ack like any other packet's
            self.counters.cover += 1;
            return self.send_ack(ack);
        }
        let client = ClientId(to);
        if !self.known.contains_key(&client) {
            return self.drop("unknown_client");
        }
        let id = self.next_delivery;
        self.next_delivery += 1;
        self.deliver(
            client,
            Delivery {
                id,
                kind,
                payload: bytes,
            },
            ack,
        );
    }

    fn deliver(&mut self, client: ClientId, delivery: Delivery, ack: Option<SurbAck>) {
        let max_unconfirmed = self.config.max_unconfirmed;
        match self.sessions.get_mut(&client) {
            Some(session) if !session.draining && session.unconfirmed.len() < max_unconfirmed => {
                session
                    .unconfirmed
                    .insert(delivery.id, Held::Live(delivery.clone(), ack));
                self.send_delivery(client, delivery);
            }
            // behind stored ones, or beyond the window: stored, and read in its turn
            Some(session) => {
                session.draining = true;
                session.stored_meanwhile |= session.loading;
                self.store(client, delivery, ack);
                self.refill(client);
            }
            None => self.store(client, delivery, ack),
        }
    }

    /// Queues a delivery for a connected client's frames.
    fn send_delivery(&mut self, client: ClientId, delivery: Delivery) {
        if let Some(session) = self.sessions.get_mut(&client) {
            self.counters.pushed += 1;
            session.writer.push(&Record::Deliver(delivery));
            self.flush_push(client);
        }
    }

    fn store(&mut self, client: ClientId, delivery: Delivery, ack: Option<SurbAck>) {
        if self.storing.len() >= self.config.max_pending_stores {
            // storage is behind: not acked, so the sender will try again later
            return self.drop("storage_busy");
        }
        let (count, bytes) = self.inbox.entry(client).or_default();
        let len = delivery.payload.len() as u64;
        if *count + 1 > self.config.inbox_max_messages || *bytes + len > self.config.inbox_max_bytes
        {
            // not acked: the sender will try again later
            return self.drop("inbox_full");
        }
        *count += 1;
        *bytes += len;
        self.storing.insert((client, delivery.id), ack);
        self.actions.push_back(Action::Store { client, delivery });
    }

    /// A delivery is written to storage: its ack goes out.
    pub fn stored(&mut self, client: ClientId, id: u64) {
        if let Some(ack) = self.storing.remove(&(client, id)) {
            self.counters.stored += 1;
            self.send_ack(ack);
        }
    }

    /// A delivery could not be written: it is dropped unacknowledged, so its sender sends
    /// it again.
    pub fn store_failed(&mut self, client: ClientId, id: u64, bytes: u64) {
        if self.storing.remove(&(client, id)).is_some() {
            self.removed(client, 1, bytes);
            self.drop("storage_failed");
        }
    }

    /// Stored deliveries were removed (confirmed, or expired).
    pub fn removed(&mut self, client: ClientId, count: u64, bytes: u64) {
        if let Some((stored, stored_bytes)) = self.inbox.get_mut(&client) {
            *stored = stored.saturating_sub(count);
            *stored_bytes = stored_bytes.saturating_sub(bytes);
        }
    }

    fn send_ack(&mut self, ack: Option<SurbAck>) {
        if let Some(ack) = ack {
            self.counters.acks_sent += 1;
            self.actions.push_back(Action::Forward {
                first_hop: ack.first_hop,
                packet: ack.packet,
            });
        }
    }

    fn drop(&mut self, reason: &'static str) {
        *self.counters.dropped.entry(reason).or_default() += 1;
    }

    /// The next thing for the shell to carry out, in order: a frame to a client, a packet into
    /// the mixnet, a write to or read from storage, a session to close. (In the contract's
    /// terms every output of the gateway is a transmit — to a client, a node or the disk — and
    /// their order matters, so they come through one queue.)
    pub fn poll_transmit(&mut self, _now: Instant) -> Option<Action> {
        self.actions.pop_front()
    }

    /// What the gateway has counted.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Deliveries stored (or being written) for all clients, and their payload bytes.
    pub fn inbox_totals(&self) -> (u64, u64) {
        self.inbox
            .values()
            .fold((0, 0), |(count, bytes), (c, b)| (count + c, bytes + b))
    }

    /// Clients connected now.
    pub fn connected(&self) -> usize {
        self.sessions.len()
    }
}

impl umbra_core::Core for GatewayCore {
    type Transmit = Action;
    type Event = std::convert::Infallible;

    fn handle_timeout(&mut self, now: Instant) {
        GatewayCore::handle_timeout(self, now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Action> {
        GatewayCore::poll_transmit(self, now)
    }

    fn poll_event(&mut self) -> Option<Self::Event> {
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        GatewayCore::poll_timeout(self)
    }
}
