//! The client core: what a client sends when, and what it makes of what arrives.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use umbra_sphinx::{
    Delay, Destination, DestinationAddress, Hop, NodeAddress, Packet, PacketSize, Payload, Surb,
    SurbId, Version,
};
use umbra_topology::{Layer, NodeId, NoiseKey, Topology, TopologyError};
use umbra_wire::gateway::{Delivery, DeliveryKind};
use umbra_wire::{ClientAddress, SURB_ACK_LEN, SurbAck};

use crate::config::ClientConfig;
use crate::err::{ClientError, Failure, NoRoute, SendError};
use crate::fragment::{self, FragmentRef, Limits, Reassembler};
use crate::health::Health;
use crate::keys::ClientKeys;
use crate::message::{Message, Reply, SenderTag};
use crate::ops::{PacketOps, SphinxOps};
use crate::seal::SEAL_OVERHEAD;
use crate::surbs::{Isolation, Issued, Stores, SurbLimits};

/// The packet size clients send: every packet looks the same.
const SIZE: PacketSize = PacketSize::Regular;
/// Bytes of a sealed message in one forward packet, after the SURB-ACK and fragment header.
const FORWARD_PIECE: usize = SIZE.plaintext_capacity() - SURB_ACK_LEN - fragment::HEADER_LEN;
/// Bytes of a reply in one packet through a SURB.
const REPLY_PIECE: usize = SIZE.plaintext_capacity() - fragment::HEADER_LEN;
/// How long an ack id or loop is remembered.
const REMEMBER: Duration = Duration::from_secs(300);
/// How long reply acks wait to be sent together.
const REPLY_ACK_BATCH: Duration = Duration::from_millis(20);

/// One slot of the client's Poisson streams, and the packet to send in it. A slot is empty
/// only when no packet could be built (no route) or, with `insecure_no_cover`, nothing waits.
#[derive(Debug)]
pub struct Transmit {
    /// The packet and its first hop (a first-layer node), for the gateway to forward.
    pub packet: Option<(NodeAddress, Packet)>,
    /// Whether the slot carries no data of the application's: loop or drop cover, or nothing.
    /// The shell may put something of its own for the gateway (a stretch of a bandwidth
    /// ticket) in such a slot instead, and the link shows the same frame at the same time.
    pub cover: bool,
}

/// A message the application sent, as the client numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

/// What happened, for the application.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A message arrived. With `reply_to`, its sender attached SURBs and can be replied to
    /// without the recipient learning who it is.
    Received {
        /// The message.
        message: Vec<u8>,
        /// The anonymous sender's tag, if it can be replied to.
        reply_to: Option<SenderTag>,
    },
    /// A reply arrived through one of the SURBs this client sent to `from`.
    Reply {
        /// Whom the SURBs were sent to.
        from: ClientAddress,
        /// The group they were sent under ([`Client::send_isolated`]).
        isolation: Isolation,
        /// The reply.
        message: Vec<u8>,
    },
    /// Every packet of a message was acknowledged.
    Sent(MessageId),
    /// A message was given up on.
    Failed {
        /// The message.
        id: MessageId,
        /// Why.
        reason: Failure,
    },
    /// A test loop ([`Client::queue_test_loop`]) left in a slot of the real stream.
    TestLoopSent(u64),
    /// A test loop this client expected ([`Client::expect_test_loop`]) arrived.
    TestLoopArrived(u64),
}

/// A test packet of the network monitor (`umbra-monitor`): built exactly as a loop-cover
/// packet is (one fragment of random bytes, a SURB-ACK, the client's hop delays), but over the
/// mix nodes the monitor chose, to another client of the same monitor (its client at the
/// route's exit gateway), and sent in a slot of the real stream. Nothing on the way tells it
/// from a client's loop, except the exit gateway, which sees whom it is delivered to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestLoop {
    /// The monitor's number for it.
    pub id: u64,
    /// The three mix nodes, first layer first.
    pub mixes: [NodeId; 3],
    /// The client it goes to.
    pub to: ClientAddress,
}

/// Test loops waiting for a slot, and test loops expected, at most: a monitor sends one per
/// slot and each is expected for [`REMEMBER`] at most.
const MAX_TEST_LOOPS: usize = 65_536;

/// Counts of what the client did, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Packets of the real stream carrying data.
    pub real_packets: u64,
    /// Packets of the real stream carrying reply data through SURBs.
    pub reply_packets: u64,
    /// Drop-cover packets (empty real-stream slots).
    pub drop_cover: u64,
    /// Loop-cover packets.
    pub loops: u64,
    /// Loops that came back.
    pub loops_returned: u64,
    /// Test loops sent ([`Client::queue_test_loop`]).
    pub test_loops: u64,
    /// The round trip of the last loop that came back.
    pub last_loop_rtt: Option<Duration>,
    /// Acks received for data packets.
    pub acks: u64,
    /// Packets sent again because their ack did not come in time.
    pub retransmissions: u64,
    /// Acks that came after their packet was sent again (counted in `acks` too).
    pub late_acks: u64,
    /// Deliveries that could not be read (wrong key, corrupted, unknown SURB), dropped.
    pub unreadable: u64,
    /// Messages received.
    pub received: u64,
    /// Incomplete messages given up on (timed out, or pushed out by the memory budget).
    pub incomplete_dropped: u64,
    /// Bytes held for incomplete messages.
    pub reassembly_bytes: usize,
    /// SURBs received and dropped unused: made for a topology no longer served, or too old.
    pub stale_surbs: u64,
    /// Anonymous senders whose SURBs were dropped to make room (`surbs.max_senders`), least
    /// recently used first.
    pub evicted_senders: u64,
    /// SURBs dropped to make room (`surbs.max_held`), the least recently used senders' first.
    pub trimmed_surbs: u64,
    /// Keys of SURBs this client issued, dropped unused to make room (`surbs.max_issued`).
    pub evicted_surb_keys: u64,
    /// Requests for SURBs not answered because a top-up to the same tag was still under way.
    pub surb_requests_ignored: u64,
    /// SURBs held from anonymous senders, now.
    pub surbs_held: usize,
    /// Anonymous senders whose SURBs are held, now.
    pub surb_senders: usize,
    /// Keys of SURBs this client issued and may still get replies through, now.
    pub surb_keys: usize,
    /// This client's own sender tags, now.
    pub sender_tags: usize,
}

/// What waits for a slot of the real stream.
#[derive(Debug)]
enum Queued {
    Fragment {
        message: MessageId,
        at: FragmentRef,
        to: ClientAddress,
        bytes: Vec<u8>,
        /// Transmissions so far.
        attempt: u32,
    },
    Reply {
        message: MessageId,
        at: FragmentRef,
        tag: SenderTag,
        bytes: Vec<u8>,
    },
}

#[derive(Debug)]
struct Outgoing {
    fragments: u32,
    acked: u32,
    done: Vec<bool>,
    created: Instant,
    /// Internal messages (SURB top-ups, reply acks) raise no events.
    notify: bool,
}

#[derive(Debug)]
struct InFlight {
    message: MessageId,
    at: FragmentRef,
    to: ClientAddress,
    bytes: Vec<u8>,
    attempt: u32,
    /// The mix nodes of its route and its ack's route.
    mixes: Vec<NodeAddress>,
}

/// The mix nodes of a route (all its hops but the last, a gateway).
fn mixes_of(route: &[Hop]) -> Vec<NodeAddress> {
    route
        .iter()
        .take(route.len().saturating_sub(1))
        .map(|hop| hop.address)
        .collect()
}

/// The most a retransmission's wait is multiplied by: each one waits twice as long as the
/// one before, up to this, so a congested network is not flooded with copies.
const MAX_BACKOFF: u32 = 4;

#[derive(Debug)]
struct ReplyInFlight {
    message: MessageId,
    tag: SenderTag,
    bytes: Vec<u8>,
    deadline: Instant,
}

/// Timers the client keeps, in one heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Retransmit([u8; 16]),
    /// A cover packet's ack is due.
    Probe([u8; 16]),
    ReplyRetransmit(FragmentRef),
}

/// The pure core of a client (see the crate documentation).
pub struct Client {
    config: ClientConfig,
    rng: ChaCha20Rng,
    /// Packet building and sealing: Sphinx, or the simulator's stand-in.
    ops: Arc<dyn PacketOps>,
    keys: ClientKeys,
    address: ClientAddress,
    topology: Topology,
    gateway: NodeId,
    next_real: Instant,
    next_loop: Instant,
    next_message: u64,
    outgoing: HashMap<MessageId, Outgoing>,
    queue: VecDeque<Queued>,
    in_flight: HashMap<[u8; 16], InFlight>,
    /// Ack ids of transmissions sent again before their ack came: a late ack still counts.
    superseded: HashMap<[u8; 16], (MessageId, u32, Instant, Vec<NodeAddress>)>,
    /// Cover packets whose acks are awaited, with the mix nodes they crossed.
    probes: HashMap<[u8; 16], Vec<NodeAddress>>,
    health: Health,
    next_prune: Instant,
    reply_in_flight: HashMap<FragmentRef, ReplyInFlight>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    messages: Reassembler,
    replies: Reassembler,
    loops: HashMap<[u8; 16], Instant>,
    /// Test loops waiting for a slot of the real stream, with their fragment ids.
    test_loops: VecDeque<(TestLoop, [u8; 16])>,
    /// Test loops other clients will send here: fragment id → the monitor's id, since when.
    expected_loops: HashMap<[u8; 16], (u64, Instant)>,
    /// The SURBs this client issued, and its sender tags.
    issued: Issued,
    /// The SURBs anonymous senders gave this client, by their tags.
    stores: Stores,
    /// Replies waiting for a SURB of their tag (only tags with a store).
    waiting_replies: HashMap<SenderTag, VecDeque<Queued>>,
    /// Acks of replies received, to send to the replier, per tag the reply came under: one
    /// message per tag, so the replier cannot link two tags by their acks.
    reply_acks: HashMap<(ClientAddress, SenderTag), (Instant, Vec<FragmentRef>)>,
    /// No session with the gateway: the streams' slots are not kept.
    paused: bool,
    events: VecDeque<Event>,
    stats: ClientStats,
}

impl Client {
    /// A client of the gateway with static Noise key `gateway`, starting at `now`.
    pub fn new(
        config: ClientConfig,
        keys: ClientKeys,
        gateway: [u8; 32],
        topology: Topology,
        seed: [u8; 32],
        now: Instant,
    ) -> Result<Client, ClientError> {
        config.validate()?;
        let gateway_id =
            gateway_of(&topology, &gateway).ok_or(ClientError::GatewayNotInTopology)?;
        let address = ClientAddress {
            identity: keys.identity_public(),
            encryption: keys.encryption_public(),
            gateway,
        };
        let limits = |piece: usize| Limits {
            max_pieces: (config.messages.max_message_size + SEAL_OVERHEAD + 1 + 64 * 1024)
                .div_ceil(piece) as u32,
            budget: config.messages.reassembly_budget,
            timeout: config.messages.reassembly_timeout,
        };
        let mut client = Client {
            messages: Reassembler::new(limits(FORWARD_PIECE)),
            replies: Reassembler::new(limits(REPLY_PIECE)),
            rng: ChaCha20Rng::from_seed(seed),
            ops: Arc::new(SphinxOps),
            keys,
            address,
            gateway: gateway_id,
            next_real: now,
            next_loop: now,
            next_message: 0,
            outgoing: HashMap::new(),
            queue: VecDeque::new(),
            in_flight: HashMap::new(),
            superseded: HashMap::new(),
            probes: HashMap::new(),
            health: Health::default(),
            next_prune: now,
            reply_in_flight: HashMap::new(),
            timers: BinaryHeap::new(),
            loops: HashMap::new(),
            test_loops: VecDeque::new(),
            expected_loops: HashMap::new(),
            issued: Issued::new(limits_of(&config)),
            stores: Stores::new(limits_of(&config), first_layer(&topology).collect()),
            topology,
            waiting_replies: HashMap::new(),
            reply_acks: HashMap::new(),
            paused: false,
            events: VecDeque::new(),
            stats: ClientStats::default(),
            config,
        };
        client.next_real = now + client.interval(client.config.traffic.mean_send_interval);
        client.next_loop = now + client.interval(client.config.traffic.mean_loop_interval);
        Ok(client)
    }

    /// The client, building its packets and sealing its messages with `ops` instead of Sphinx
    /// (the simulator's stand-in: see [`crate::ops`]). Only for a simulation: a client that
    /// does not use [`SphinxOps`] cannot talk to a real network.
    #[must_use]
    pub fn with_packet_ops(mut self, ops: Arc<dyn PacketOps>) -> Self {
        self.ops = ops;
        self
    }

    /// The client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The client's address.
    pub fn address(&self) -> ClientAddress {
        self.address
    }

    /// What the client has done so far.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// Takes a new topology (nodes come and go; routes are drawn from it from now on).
    ///
    /// SURBs made for older topologies stop working (see [`crate::surbs`]): those received
    /// before the previous change are dropped, the SURBs of the anonymous senders this client
    /// replied to within `surbs.top_up_within` are asked for if few are left, and the peers it
    /// gave SURBs to within that time get fresh ones.
    pub fn handle_topology(&mut self, now: Instant, topology: Topology) -> Result<(), ClientError> {
        self.gateway = gateway_of(&topology, &self.address.gateway)
            .ok_or(ClientError::GatewayNotInTopology)?;
        if topology == self.topology {
            return Ok(());
        }
        let previous = std::mem::replace(&mut self.topology, topology);
        let first_hops: HashSet<NodeAddress> = first_layer(&self.topology)
            .chain(first_layer(&previous))
            .collect();
        self.stores.change_topology(first_hops);
        let within = self.config.surbs.top_up_within;
        // the repliers this client talked to hold SURBs of the old topology: fresh ones, enough
        // to answer and to ask for more (a proxy with many groups sends this many times over)
        let count = self.config.surbs.refill_below.max(1);
        for (tag, to) in self.issued.used_recently(now, within) {
            self.top_up(now, tag, &to, count);
        }
        // the senders it replied to: ask for more while one SURB is left to ask with
        let below = usize::from(self.config.surbs.refill_below);
        for tag in self.stores.replied_recently(now, within) {
            if self.stores.len(&tag) > 0
                && self
                    .stores
                    .should_request(now, &tag, below, self.config.acks.reply_wait)
            {
                self.request_surbs(now, tag);
            }
        }
        self.update_gauges();
        Ok(())
    }

    /// Sends `message` to `to`, attaching `surbs` SURBs (0 for none) so `to` can reply without
    /// learning who sent it. The message goes out over the next slots of the real stream.
    /// SURBs go under the sender tag of [`Isolation::DEFAULT`].
    pub fn send(
        &mut self,
        now: Instant,
        to: &ClientAddress,
        message: Vec<u8>,
        surbs: u16,
    ) -> Result<MessageId, SendError> {
        self.send_isolated(now, to, Isolation::DEFAULT, message, surbs)
    }

    /// [`Client::send`] in the isolation group `isolation`: SURBs go under the sender tag this
    /// client keeps for `to` in that group, so `to` cannot link what it gets under different
    /// groups; replies through them come back as [`Event::Reply`] naming the group.
    pub fn send_isolated(
        &mut self,
        now: Instant,
        to: &ClientAddress,
        isolation: Isolation,
        message: Vec<u8>,
        surbs: u16,
    ) -> Result<MessageId, SendError> {
        let max = self.config.messages.max_message_size;
        if message.len() > max {
            return Err(SendError::TooLarge {
                len: message.len(),
                max,
            });
        }
        let message = if surbs > 0 {
            if gateway_of(&self.topology, &to.gateway).is_none() {
                return Err(SendError::UnknownGateway);
            }
            let tag = self.issued.tag(now, to, isolation, &mut self.rng);
            let made = self.make_surbs(now, tag, surbs);
            self.update_gauges();
            Message::DataWithSurbs {
                tag,
                surbs: made?,
                data: message,
            }
        } else {
            Message::Data(message)
        };
        self.send_message(now, to, &message, true)
    }

    /// Replies to the anonymous sender with tag `to`, through the SURBs it sent.
    pub fn reply(
        &mut self,
        now: Instant,
        to: SenderTag,
        message: Vec<u8>,
    ) -> Result<MessageId, SendError> {
        let max = self.config.messages.max_message_size;
        if message.len() > max {
            return Err(SendError::TooLarge {
                len: message.len(),
                max,
            });
        }
        if !self.stores.contains(&to) {
            return Err(SendError::UnknownSender(to));
        }
        Ok(self.queue_reply(now, to, &Reply::Data(message), true))
    }

    /// Takes a delivery from the gateway.
    pub fn handle_delivery(&mut self, now: Instant, delivery: Delivery) {
        match delivery.kind {
            DeliveryKind::Ack => self.handle_ack(now, &delivery.payload),
            DeliveryKind::Data => self.handle_data(now, &delivery.payload),
            DeliveryKind::Sealed { surb_id } => {
                self.handle_sealed_reply(now, surb_id, &delivery.payload)
            }
        }
    }

    /// The session with the gateway went down: the streams pause, and their slots are not
    /// kept (nothing bursts out when it is back). Timers still run.
    pub fn handle_disconnected(&mut self) {
        self.paused = true;
    }

    /// A session with the gateway is up: the streams start again from `now`.
    pub fn handle_connected(&mut self, now: Instant) {
        if self.paused {
            self.paused = false;
            self.next_real = now + self.interval(self.config.traffic.mean_send_interval);
            self.next_loop = now + self.interval(self.config.traffic.mean_loop_interval);
        }
    }

    /// Fires every timer due by `now` (retransmissions, give-ups, reply acks, expiries),
    /// whether or not a session is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.run_timers(now);
    }

    /// The next slot of the streams, if one is due (none while paused): a loop-cover packet,
    /// or the next real packet waiting, or drop cover.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if self.paused {
            return None;
        }
        self.run_timers(now);
        let no_cover = self.config.traffic.insecure_no_cover;
        if self.next_loop <= now {
            self.next_loop =
                self.next_after(self.next_loop, now, self.config.traffic.mean_loop_interval);
            if !no_cover {
                return Some(Transmit {
                    packet: self.loop_packet(now),
                    cover: true,
                });
            }
        }
        if self.next_real <= now {
            self.next_real =
                self.next_after(self.next_real, now, self.config.traffic.mean_send_interval);
            if let Some((test, fragment)) = self.test_loops.pop_front() {
                let packet = self.test_loop_packet(now, &test, fragment);
                if packet.is_some() {
                    self.events.push_back(Event::TestLoopSent(test.id));
                }
                return Some(Transmit {
                    packet,
                    cover: false,
                });
            }
            return Some(self.real_slot(now));
        }
        None
    }

    /// Queues a test loop for the next slot of the real stream; returns the id its fragment
    /// carries, for the receiving client's [`Client::expect_test_loop`]. Refused when a mix
    /// node is not in its layer of the current topology, the recipient's gateway is not in it,
    /// or too many wait.
    pub fn queue_test_loop(&mut self, test: TestLoop) -> Result<[u8; 16], SendError> {
        if self.test_loops.len() >= MAX_TEST_LOOPS {
            return Err(SendError::Busy);
        }
        self.test_route(&test)?;
        let fragment = self.random16();
        self.test_loops.push_back((test, fragment));
        Ok(fragment)
    }

    /// Expects test loop `id`, whose fragment carries `fragment` (see
    /// [`Client::queue_test_loop`]); its arrival is [`Event::TestLoopArrived`]. Forgotten after
    /// a while; beyond a cap, the oldest expected are forgotten first.
    pub fn expect_test_loop(&mut self, now: Instant, fragment: [u8; 16], id: u64) {
        if self.expected_loops.len() >= MAX_TEST_LOOPS {
            self.expected_loops
                .retain(|_, (_, since)| now.saturating_duration_since(*since) < REMEMBER);
            if self.expected_loops.len() >= MAX_TEST_LOOPS
                && let Some(oldest) = self
                    .expected_loops
                    .iter()
                    .min_by_key(|(_, (_, since))| *since)
                    .map(|(key, _)| *key)
            {
                self.expected_loops.remove(&oldest);
            }
        }
        self.expected_loops.insert(fragment, (id, now));
    }

    /// The next thing that happened, for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the client next has something to do: every deadline it keeps (the streams' next
    /// slots unless paused, retransmissions, acks of cover, reply acks, give-ups, expiries).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timers = self.timers.peek().map(|Reverse((at, _))| *at);
        let acks = self.reply_acks.values().map(|(due, _)| *due).min();
        let give_up = self
            .outgoing
            .values()
            .map(|m| m.created + self.config.acks.give_up_after)
            .min();
        let slots = (!self.paused).then(|| {
            if self.config.traffic.insecure_no_cover {
                self.next_real
            } else {
                self.next_real.min(self.next_loop)
            }
        });
        [
            slots,
            timers,
            acks,
            give_up,
            Some(self.next_prune),
            self.messages.next_expiry(),
            self.replies.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // --- sending --------------------------------------------------------------------------

    fn send_message(
        &mut self,
        now: Instant,
        to: &ClientAddress,
        message: &Message,
        notify: bool,
    ) -> Result<MessageId, SendError> {
        if gateway_of(&self.topology, &to.gateway).is_none() {
            return Err(SendError::UnknownGateway);
        }
        let sealed = self
            .ops
            .seal(&mut self.rng, &to.encryption, &message.encode());
        let id = self.new_message_id();
        let wire_id = self.random16();
        let fragments = fragment::split(wire_id, &sealed, FORWARD_PIECE);
        self.outgoing.insert(
            id,
            Outgoing {
                fragments: fragments.len() as u32,
                acked: 0,
                done: vec![false; fragments.len()],
                created: now,
                notify,
            },
        );
        for (index, bytes) in fragments.into_iter().enumerate() {
            self.queue.push_back(Queued::Fragment {
                message: id,
                at: FragmentRef {
                    message: wire_id,
                    index: index as u32,
                },
                to: *to,
                bytes,
                attempt: 0,
            });
        }
        Ok(id)
    }

    fn queue_reply(
        &mut self,
        now: Instant,
        to: SenderTag,
        reply: &Reply,
        notify: bool,
    ) -> MessageId {
        let id = self.new_message_id();
        let wire_id = self.random16();
        let fragments = fragment::split(wire_id, &reply.encode(), REPLY_PIECE);
        self.outgoing.insert(
            id,
            Outgoing {
                fragments: fragments.len() as u32,
                acked: 0,
                done: vec![false; fragments.len()],
                created: now,
                notify,
            },
        );
        let waiting = self.waiting_replies.entry(to).or_default();
        for (index, bytes) in fragments.into_iter().enumerate() {
            waiting.push_back(Queued::Reply {
                message: id,
                at: FragmentRef {
                    message: wire_id,
                    index: index as u32,
                },
                tag: to,
                bytes,
            });
        }
        self.release_replies(to);
        id
    }

    /// Asks the owner of `tag` for more SURBs, ahead of everything else waiting: the request
    /// takes one of the remaining SURBs, and a reply left without one waits for the top-up.
    fn request_surbs(&mut self, now: Instant, tag: SenderTag) {
        let request = Reply::SurbRequest {
            count: self.config.surbs.request,
        };
        let id = self.new_message_id();
        let wire_id = self.random16();
        let fragments = fragment::split(wire_id, &request.encode(), REPLY_PIECE);
        self.outgoing.insert(
            id,
            Outgoing {
                fragments: fragments.len() as u32,
                acked: 0,
                done: vec![false; fragments.len()],
                created: now,
                notify: false,
            },
        );
        for (index, bytes) in fragments.into_iter().enumerate().rev() {
            self.queue.push_front(Queued::Reply {
                message: id,
                at: FragmentRef {
                    message: wire_id,
                    index: index as u32,
                },
                tag,
                bytes,
            });
        }
    }

    /// Moves replies for `tag` into the real stream's queue, one per SURB held.
    fn release_replies(&mut self, tag: SenderTag) {
        let held = self.stores.len(&tag);
        let queued = self
            .queue
            .iter()
            .filter(|q| matches!(q, Queued::Reply { tag: t, .. } if *t == tag))
            .count();
        let mut room = held.saturating_sub(queued);
        if let Some(waiting) = self.waiting_replies.get_mut(&tag) {
            while room > 0 {
                let Some(reply) = waiting.pop_front() else {
                    break;
                };
                self.queue.push_back(reply);
                room -= 1;
            }
        }
    }

    /// One slot of the real stream: the next packet waiting, or drop cover.
    fn real_slot(&mut self, now: Instant) -> Transmit {
        let real = |packet| Transmit {
            packet: Some(packet),
            cover: false,
        };
        while let Some(queued) = self.queue.pop_front() {
            match queued {
                Queued::Fragment {
                    message,
                    at,
                    to,
                    bytes,
                    attempt,
                } => {
                    if !self.is_pending(message, at.index) {
                        continue;
                    }
                    match self.data_packet(now, message, at, &to, bytes, attempt) {
                        Ok(transmit) => {
                            self.stats.real_packets += 1;
                            return real(transmit);
                        }
                        Err(reason) => self.fail(message, reason),
                    }
                }
                Queued::Reply {
                    message,
                    at,
                    tag,
                    bytes,
                } => {
                    if !self.is_pending(message, at.index) {
                        continue;
                    }
                    if let Some(transmit) = self.reply_packet(now, message, at, tag, bytes) {
                        self.stats.reply_packets += 1;
                        return real(transmit);
                    }
                }
            }
        }
        let packet = if self.config.traffic.insecure_no_cover {
            None
        } else {
            self.drop_cover(now)
        };
        Transmit {
            packet,
            cover: true,
        }
    }

    fn is_pending(&self, message: MessageId, index: u32) -> bool {
        self.outgoing
            .get(&message)
            .is_some_and(|m| !m.done.get(index as usize).copied().unwrap_or(true))
    }

    /// A data packet for fragment `at` of `message`, with a fresh route and SURB-ACK.
    fn data_packet(
        &mut self,
        now: Instant,
        message: MessageId,
        at: FragmentRef,
        to: &ClientAddress,
        bytes: Vec<u8>,
        attempt: u32,
    ) -> Result<(NodeAddress, Packet), Failure> {
        let gateway =
            gateway_of(&self.topology, &to.gateway).ok_or(Failure::RecipientGatewayLeft)?;
        let ack_id = self.random16();
        let (surb_ack, ack_delays, ack_mixes) = self.surb_ack(now, ack_id)?;
        let route = self.route(now, gateway).map_err(Failure::NoRoute)?;
        let delays = self.delays(&route, self.config.traffic.mean_hop_delay);
        let plaintext = surb_ack.prefix(&bytes);
        let destination = Destination::new(to.destination(), SurbId::default());
        let packet = self
            .ops
            .build(
                &mut self.rng,
                SIZE,
                &route,
                &delays,
                &destination,
                &plaintext,
            )
            .map_err(Failure::Unbuildable)?;
        let backoff = 1u32 << attempt.min(MAX_BACKOFF.trailing_zeros());
        let wait = self.ack_wait(&delays, &ack_delays) * backoff;
        let mut mixes = mixes_of(&route);
        mixes.extend(ack_mixes);
        self.in_flight.insert(
            ack_id,
            InFlight {
                message,
                at,
                to: *to,
                bytes,
                attempt: attempt + 1,
                mixes,
            },
        );
        self.timers
            .push(Reverse((now + wait, Timer::Retransmit(ack_id))));
        Ok((route[0].address, packet))
    }

    /// A packet of a reply through one of `tag`'s SURBs; `None` (the reply waits) without one.
    fn reply_packet(
        &mut self,
        now: Instant,
        message: MessageId,
        at: FragmentRef,
        tag: SenderTag,
        bytes: Vec<u8>,
    ) -> Option<(NodeAddress, Packet)> {
        if !self.stores.contains(&tag) {
            // its store was dropped for room, or expired: nothing can carry it
            self.fail(message, Failure::SenderForgotten);
            return None;
        }
        // the newest first: the likeliest to be made for the topology the network runs
        let Some(surb) = self.stores.take(now, &tag) else {
            self.waiting_replies
                .entry(tag)
                .or_default()
                .push_front(Queued::Reply {
                    message,
                    at,
                    tag,
                    bytes,
                });
            return None;
        };
        let refill_below = usize::from(self.config.surbs.refill_below);
        let low = self
            .stores
            .should_request(now, &tag, refill_below, self.config.acks.reply_wait);
        let (first_hop, packet) = match self.ops.wrap(surb.clone(), SIZE, &bytes) {
            Ok(wrapped) => wrapped,
            Err(_) => {
                // cannot happen with fragments cut to size; the reply waits rather than vanish
                self.stores.put_back(&tag, surb, now);
                self.waiting_replies
                    .entry(tag)
                    .or_default()
                    .push_front(Queued::Reply {
                        message,
                        at,
                        tag,
                        bytes,
                    });
                return None;
            }
        };
        let deadline = now + self.config.acks.reply_wait;
        self.reply_in_flight.insert(
            at,
            ReplyInFlight {
                message,
                tag,
                bytes,
                deadline,
            },
        );
        self.timers
            .push(Reverse((deadline, Timer::ReplyRetransmit(at))));
        if low {
            self.request_surbs(now, tag);
        }
        Some((first_hop, packet))
    }

    fn drop_cover(&mut self, now: Instant) -> Option<(NodeAddress, Packet)> {
        let gateways: Vec<NodeId> = self.topology.gateways().map(|g| g.id).collect();
        let gateway =
            *gateways.get((self.rng.next_u64() % gateways.len().max(1) as u64) as usize)?;
        let ack_id = self.random16();
        let (surb_ack, ack_delays, ack_mixes) = self.surb_ack(now, ack_id).ok()?;
        let route = self.route(now, gateway).ok()?;
        let delays = self.delays(&route, self.config.traffic.mean_hop_delay);
        self.probe(now, ack_id, &route, &delays, ack_mixes, &ack_delays);
        let mut data = vec![0u8; FORWARD_PIECE + fragment::HEADER_LEN];
        self.rng.fill_bytes(&mut data);
        // the all-zero destination tells the last gateway to drop it
        let destination = Destination::new(DestinationAddress::new([0; 32]), SurbId::default());
        let packet = self
            .ops
            .build(
                &mut self.rng,
                SIZE,
                &route,
                &delays,
                &destination,
                &surb_ack.prefix(&data),
            )
            .ok()?;
        self.stats.drop_cover += 1;
        Some((route[0].address, packet))
    }

    /// The route of a test loop: its mix nodes, each in its layer, then the recipient's
    /// gateway.
    fn test_route(&self, test: &TestLoop) -> Result<Vec<Hop>, SendError> {
        let mut route = Vec::with_capacity(4);
        for (layer, id) in Layer::ALL.iter().zip(test.mixes) {
            match self.topology.node(id) {
                Some(node) if node.layer() == Some(*layer) => route.push(node.hop()),
                _ => {
                    return Err(SendError::NotInLayer {
                        node: id,
                        layer: *layer,
                    });
                }
            }
        }
        let exit = gateway_of(&self.topology, &test.to.gateway)
            .and_then(|id| self.topology.node(id))
            .ok_or(SendError::UnknownGateway)?;
        route.push(exit.hop());
        Ok(route)
    }

    fn test_loop_packet(
        &mut self,
        now: Instant,
        test: &TestLoop,
        id: [u8; 16],
    ) -> Option<(NodeAddress, Packet)> {
        // the topology may have changed since it was queued
        let packet = self.loop_over(now, id, test.to.destination(), |client, _| {
            client.test_route(test).ok()
        })?;
        self.stats.test_loops += 1;
        Some(packet)
    }

    fn loop_packet(&mut self, now: Instant) -> Option<(NodeAddress, Packet)> {
        let id = self.random16();
        let packet = self.loop_over(now, id, self.address.destination(), |client, now| {
            client.route(now, client.gateway).ok()
        })?;
        self.loops
            .retain(|_, sent| now.saturating_duration_since(*sent) < REMEMBER);
        self.loops.insert(id, now);
        self.stats.loops += 1;
        Some(packet)
    }

    /// A loop packet: one fragment of random bytes numbered `id`, with a SURB-ACK, over the
    /// route `route` gives, to `to`.
    fn loop_over(
        &mut self,
        now: Instant,
        id: [u8; 16],
        to: DestinationAddress,
        route: impl FnOnce(&mut Self, Instant) -> Option<Vec<Hop>>,
    ) -> Option<(NodeAddress, Packet)> {
        let mut piece = vec![0u8; FORWARD_PIECE];
        self.rng.fill_bytes(&mut piece);
        let fragment = fragment::split(id, &piece, FORWARD_PIECE).pop()?;
        let ack_id = self.random16();
        let (surb_ack, ack_delays, ack_mixes) = self.surb_ack(now, ack_id).ok()?;
        let route = route(self, now)?;
        let delays = self.delays(&route, self.config.traffic.mean_hop_delay);
        self.probe(now, ack_id, &route, &delays, ack_mixes, &ack_delays);
        let destination = Destination::new(to, SurbId::default());
        let packet = self
            .ops
            .build(
                &mut self.rng,
                SIZE,
                &route,
                &delays,
                &destination,
                &surb_ack.prefix(&fragment),
            )
            .ok()?;
        Some((route[0].address, packet))
    }

    /// How long the ack of a packet with these delays may take.
    fn ack_wait(&self, delays: &[Delay], ack_delays: &[Delay]) -> Duration {
        let round_trip: Duration = delays
            .iter()
            .chain(ack_delays)
            .map(|d| d.as_duration())
            .sum();
        round_trip.mul_f64(self.config.acks.wait_factor) + self.config.acks.extra_wait
    }

    /// Awaits a cover packet's ack, to learn which mix nodes work.
    fn probe(
        &mut self,
        now: Instant,
        ack_id: [u8; 16],
        route: &[Hop],
        delays: &[Delay],
        ack_mixes: Vec<NodeAddress>,
        ack_delays: &[Delay],
    ) {
        let mut mixes = mixes_of(route);
        mixes.extend(ack_mixes);
        let due = now + self.ack_wait(delays, ack_delays);
        self.probes.insert(ack_id, mixes);
        self.timers.push(Reverse((due, Timer::Probe(ack_id))));
    }

    /// A ready-made ack packet back to this client, carrying `ack_id`, with its route's delays
    /// and mix nodes.
    fn surb_ack(
        &mut self,
        now: Instant,
        ack_id: [u8; 16],
    ) -> Result<(SurbAck, Vec<Delay>, Vec<NodeAddress>), Failure> {
        let route = self.route(now, self.gateway).map_err(Failure::NoRoute)?;
        let delays = self.delays(&route, self.config.traffic.mean_ack_delay);
        let destination = Destination::new(self.address.destination(), SurbId::default());
        let packet = self
            .ops
            .build(
                &mut self.rng,
                PacketSize::Ack,
                &route,
                &delays,
                &destination,
                &ack_id,
            )
            .map_err(Failure::Unbuildable)?;
        Ok((
            SurbAck {
                first_hop: route[0].address,
                packet,
            },
            delays,
            mixes_of(&route),
        ))
    }

    /// `count` SURBs under `tag` (one of this client's), their keys kept.
    fn make_surbs(
        &mut self,
        now: Instant,
        tag: SenderTag,
        count: u16,
    ) -> Result<Vec<Surb>, SendError> {
        let mut surbs = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let route = self.route(now, self.gateway).map_err(SendError::NoRoute)?;
            let delays = self.delays(&route, self.config.traffic.mean_hop_delay);
            let mut surb_id = SurbId::new(self.random16());
            while surb_id == SurbId::default() {
                surb_id = SurbId::new(self.random16());
            }
            let destination = Destination::new(self.address.destination(), surb_id);
            let (surb, key) = self
                .ops
                .surb(&mut self.rng, &route, &delays, &destination, Version::V260)
                .map_err(SendError::Surb)?;
            self.issued.insert(now, surb_id, key, tag);
            surbs.push(surb);
        }
        Ok(surbs)
    }

    /// One random node per layer, avoiding the ones failing (unless told not to), then
    /// `gateway`.
    fn route(&mut self, now: Instant, gateway: NodeId) -> Result<Vec<Hop>, NoRoute> {
        let health = &self.health;
        let avoid = self.config.acks.route_around_failures;
        self.topology
            .random_route_avoiding(&mut self.rng, gateway, |node| {
                avoid && health.is_failing(now, &node.routing_address())
            })
            .map_err(|error| match error {
                TopologyError::EmptyLayer { layer } => NoRoute::EmptyLayer { layer },
                // the only other way a route fails: `gateway` is not one
                _ => NoRoute::NotAGateway { gateway },
            })
    }

    /// Exponential delays for each mix of `route`; none at its last hop.
    fn delays(&mut self, route: &[Hop], mean: Duration) -> Vec<Delay> {
        let mut delays: Vec<Delay> = (0..route.len().saturating_sub(1))
            .map(|_| {
                if self.config.traffic.insecure_zero_delays {
                    Delay::ZERO
                } else {
                    Delay::from_duration(self.exponential(mean))
                }
            })
            .collect();
        delays.push(Delay::ZERO);
        delays
    }

    fn exponential(&mut self, mean: Duration) -> Duration {
        match Exp::new(1.0 / mean.as_secs_f64().max(1e-9)) {
            Ok(exp) => Duration::from_secs_f64(exp.sample(&mut self.rng)),
            Err(_) => mean,
        }
    }

    fn interval(&mut self, mean: Duration) -> Duration {
        self.exponential(mean)
    }

    /// The next event of a Poisson stream after one at `previous`; a stream far behind (the
    /// process slept) restarts from `now` rather than bursting.
    fn next_after(&mut self, previous: Instant, now: Instant, mean: Duration) -> Instant {
        let base = if now.saturating_duration_since(previous) > Duration::from_secs(1) {
            now
        } else {
            previous
        };
        base + self.interval(mean)
    }

    // --- receiving ------------------------------------------------------------------------

    fn handle_ack(&mut self, now: Instant, payload: &[u8]) {
        let Some(ack_id) = payload.first_chunk::<16>() else {
            self.stats.unreadable += 1;
            return;
        };
        // acks of cover traffic match nothing and are dropped silently
        if let Some(in_flight) = self.in_flight.remove(ack_id) {
            self.stats.acks += 1;
            self.health.delivered(now, &in_flight.mixes);
            self.fragment_done(in_flight.message, in_flight.at.index);
        } else if let Some((message, index, _, mixes)) = self.superseded.remove(ack_id) {
            // the ack of an earlier transmission, late: the fragment arrived all the same
            self.stats.acks += 1;
            self.stats.late_acks += 1;
            self.health.delivered(now, &mixes);
            if self.is_pending(message, index) {
                self.fragment_done(message, index);
            }
        } else if let Some(mixes) = self.probes.remove(ack_id) {
            self.health.delivered(now, &mixes);
        }
    }

    fn handle_data(&mut self, now: Instant, payload: &[u8]) {
        let Some((at, count, piece)) = fragment::parse(payload) else {
            self.stats.unreadable += 1;
            return;
        };
        if let Some((id, _)) = self.expected_loops.remove(&at.message) {
            self.events.push_back(Event::TestLoopArrived(id));
            return;
        }
        if let Some(sent) = self.loops.remove(&at.message) {
            self.stats.loops_returned += 1;
            self.stats.last_loop_rtt = Some(now.saturating_duration_since(sent));
            return;
        }
        let sealed = match self.messages.insert(now, at, count, piece) {
            Ok(Some(sealed)) => sealed,
            Ok(None) => return,
            Err(_) => {
                self.stats.unreadable += 1;
                return;
            }
        };
        let Some(message) = self
            .ops
            .open(
                self.keys.encryption_secret(),
                &self.address.encryption,
                &sealed,
            )
            .and_then(|m| Message::decode(&m))
        else {
            self.stats.unreadable += 1;
            return;
        };
        match message {
            Message::Data(data) => self.received(data, None),
            Message::DataWithSurbs { tag, surbs, data } => {
                self.keep_surbs(now, tag, surbs);
                self.received(data, Some(tag));
            }
            Message::SurbTopUp { tag, surbs } => self.keep_surbs(now, tag, surbs),
            Message::ReplyAcks(acks) => {
                for at in acks {
                    if let Some(reply) = self.reply_in_flight.remove(&at) {
                        self.fragment_done(reply.message, at.index);
                    }
                }
            }
        }
    }

    fn handle_sealed_reply(&mut self, now: Instant, surb_id: SurbId, payload: &[u8]) {
        let Some(issued) = self.issued.take(now, &surb_id) else {
            self.stats.unreadable += 1;
            return;
        };
        self.update_gauges();
        let Some(plaintext) = Payload::from_bytes(payload)
            .ok()
            .and_then(|p| self.ops.open_reply(&issued.key, p).ok())
        else {
            self.stats.unreadable += 1;
            return;
        };
        let Some((at, count, piece)) = fragment::parse(&plaintext) else {
            self.stats.unreadable += 1;
            return;
        };
        // acknowledge every fragment, even again: the first ack may have been lost
        // (at most one entry per issued SURB: each is used once)
        let acks = self
            .reply_acks
            .entry((issued.to, issued.tag))
            .or_insert_with(|| (now + REPLY_ACK_BATCH, Vec::new()));
        acks.1.push(at);
        let whole = match self.replies.insert(now, at, count, piece) {
            Ok(Some(whole)) => whole,
            Ok(None) => return,
            Err(_) => {
                self.stats.unreadable += 1;
                return;
            }
        };
        match Reply::decode(&whole) {
            Some(Reply::Data(message)) => {
                self.stats.received += 1;
                self.events.push_back(Event::Reply {
                    from: issued.to,
                    isolation: issued.isolation,
                    message,
                });
            }
            Some(Reply::SurbRequest { count }) => {
                let count = count.min(self.config.surbs.max_kept);
                self.top_up(now, issued.tag, &issued.to, count);
            }
            None => self.stats.unreadable += 1,
        }
    }

    fn received(&mut self, message: Vec<u8>, reply_to: Option<SenderTag>) {
        self.stats.received += 1;
        self.events.push_back(Event::Received { message, reply_to });
    }

    fn keep_surbs(&mut self, now: Instant, tag: SenderTag, surbs: Vec<Surb>) {
        for evicted in self.stores.keep(now, tag, surbs) {
            self.forget_sender(evicted);
        }
        self.release_replies(tag);
        self.update_gauges();
    }

    /// Sends `count` fresh SURBs to `to` under `tag`, unless a top-up under it is still
    /// under way: a replier asking again and again gets one at a time.
    fn top_up(&mut self, now: Instant, tag: SenderTag, to: &ClientAddress, count: u16) {
        let Some(own) = self.issued.own(&tag) else {
            return;
        };
        if let Some(previous) = own.top_up
            && self.outgoing.contains_key(&MessageId(previous))
        {
            self.stats.surb_requests_ignored += 1;
            return;
        }
        if count == 0 || gateway_of(&self.topology, &to.gateway).is_none() {
            return;
        }
        if let Ok(surbs) = self.make_surbs(now, tag, count)
            && let Ok(id) = self.send_message(now, to, &Message::SurbTopUp { tag, surbs }, false)
            && let Some(own) = self.issued.own(&tag)
        {
            own.top_up = Some(id.0);
        }
        self.update_gauges();
    }

    /// The SURBs of `tag` were dropped: replies waiting for them can never go.
    fn forget_sender(&mut self, tag: SenderTag) {
        if let Some(waiting) = self.waiting_replies.remove(&tag) {
            let messages: HashSet<MessageId> = waiting
                .iter()
                .filter_map(|queued| match queued {
                    Queued::Reply { message, .. } => Some(*message),
                    Queued::Fragment { .. } => None,
                })
                .collect();
            for message in messages {
                self.fail(message, Failure::SenderForgotten);
            }
        }
    }

    /// Counts of what the client holds, in its stats.
    fn update_gauges(&mut self) {
        self.stats.surbs_held = self.stores.held();
        self.stats.surb_senders = self.stores.senders();
        self.stats.surb_keys = self.issued.len();
        self.stats.sender_tags = self.issued.tags();
        self.stats.stale_surbs = self.stores.stale;
        self.stats.evicted_senders = self.stores.evicted;
        self.stats.trimmed_surbs = self.stores.trimmed;
        self.stats.evicted_surb_keys = self.issued.evicted;
    }

    fn fragment_done(&mut self, message: MessageId, index: u32) {
        let Some(outgoing) = self.outgoing.get_mut(&message) else {
            return;
        };
        let Some(done) = outgoing.done.get_mut(index as usize) else {
            return;
        };
        if *done {
            return;
        }
        *done = true;
        outgoing.acked += 1;
        if outgoing.acked == outgoing.fragments {
            let notify = outgoing.notify;
            self.outgoing.remove(&message);
            if notify {
                self.events.push_back(Event::Sent(message));
            }
        }
    }

    fn fail(&mut self, message: MessageId, reason: Failure) {
        if let Some(outgoing) = self.outgoing.remove(&message)
            && outgoing.notify
        {
            self.events.push_back(Event::Failed {
                id: message,
                reason,
            });
        }
    }

    // --- timers ---------------------------------------------------------------------------

    fn run_timers(&mut self, now: Instant) {
        if now >= self.next_prune {
            self.next_prune = now + Duration::from_secs(10);
            self.superseded
                .retain(|_, (_, _, at, _)| now.saturating_duration_since(*at) < REMEMBER);
            for tag in self.stores.expire(now) {
                self.forget_sender(tag);
            }
            self.issued.expire(now);
            // replies given up on leave their fragments behind
            let outgoing = &self.outgoing;
            self.waiting_replies.retain(|_, waiting| {
                waiting.retain(|queued| match queued {
                    Queued::Reply { message, at, .. } | Queued::Fragment { message, at, .. } => {
                        outgoing.get(message).is_some_and(|m| {
                            !m.done.get(at.index as usize).copied().unwrap_or(true)
                        })
                    }
                });
                !waiting.is_empty()
            });
            self.update_gauges();
        }
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Retransmit(ack_id) => {
                    if let Some(in_flight) = self.in_flight.remove(&ack_id)
                        && self.is_pending(in_flight.message, in_flight.at.index)
                    {
                        self.stats.retransmissions += 1;
                        self.health.lost(now, &in_flight.mixes);
                        self.superseded.insert(
                            ack_id,
                            (in_flight.message, in_flight.at.index, now, in_flight.mixes),
                        );
                        self.queue.push_front(Queued::Fragment {
                            message: in_flight.message,
                            at: in_flight.at,
                            to: in_flight.to,
                            bytes: in_flight.bytes,
                            attempt: in_flight.attempt,
                        });
                    }
                }
                Timer::Probe(ack_id) => {
                    if let Some(mixes) = self.probes.remove(&ack_id) {
                        self.health.lost(now, &mixes);
                    }
                }
                Timer::ReplyRetransmit(at) => {
                    let due = self
                        .reply_in_flight
                        .get(&at)
                        .is_some_and(|r| r.deadline <= now);
                    if due
                        && let Some(reply) = self.reply_in_flight.remove(&at)
                        && self.is_pending(reply.message, at.index)
                    {
                        if !self.stores.contains(&reply.tag) {
                            self.fail(reply.message, Failure::SenderForgotten);
                            continue;
                        }
                        self.stats.retransmissions += 1;
                        self.waiting_replies
                            .entry(reply.tag)
                            .or_default()
                            .push_front(Queued::Reply {
                                message: reply.message,
                                at,
                                tag: reply.tag,
                                bytes: reply.bytes,
                            });
                        self.release_replies(reply.tag);
                    }
                }
            }
        }
        // give up on what is too old
        let give_up = self.config.acks.give_up_after;
        let expired: Vec<MessageId> = self
            .outgoing
            .iter()
            .filter(|(_, m)| now.saturating_duration_since(m.created) >= give_up)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.fail(id, Failure::NotAcknowledged);
        }
        // reply acks due: one message per replier and tag
        let mut due: Vec<(ClientAddress, SenderTag)> = self
            .reply_acks
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(key, _)| *key)
            .collect();
        due.sort_by_key(|(_, tag)| *tag);
        for key in due {
            if let Some((_, acks)) = self.reply_acks.remove(&key) {
                let _ = self.send_message(now, &key.0, &Message::ReplyAcks(acks), false);
            }
        }
        self.messages.expire(now);
        self.replies.expire(now);
        self.stats.incomplete_dropped = self.messages.dropped() + self.replies.dropped();
        self.stats.reassembly_bytes = self.messages.held_bytes() + self.replies.held_bytes();
    }

    // --- helpers --------------------------------------------------------------------------

    fn new_message_id(&mut self) -> MessageId {
        self.next_message += 1;
        MessageId(self.next_message)
    }

    fn random16(&mut self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        bytes
    }
}

/// The routing addresses of `topology`'s first layer.
fn first_layer(topology: &Topology) -> impl Iterator<Item = NodeAddress> + '_ {
    topology
        .layer(Layer::FIRST)
        .map(|node| node.routing_address())
}

/// What the configuration allows of SURBs.
fn limits_of(config: &ClientConfig) -> SurbLimits {
    let surbs = &config.surbs;
    SurbLimits {
        per_sender: usize::from(surbs.max_kept),
        senders: surbs.max_senders,
        held: surbs.max_held,
        // a replier keeps its newest `max_kept`; keys of twice as many cover those on the way
        issued_per_tag: 2 * usize::from(surbs.max_kept),
        issued: surbs.max_issued,
        lifetime: surbs.lifetime,
    }
}

fn gateway_of(topology: &Topology, key: &[u8; 32]) -> Option<NodeId> {
    topology
        .node_with_noise_key(&NoiseKey(*key))
        .filter(|node| node.role == umbra_topology::Role::Gateway)
        .map(|node| node.id)
}

impl umbra_core::Core for Client {
    type Transmit = Transmit;
    type Event = Event;

    fn handle_timeout(&mut self, now: Instant) {
        Client::handle_timeout(self, now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        Client::poll_transmit(self, now)
    }

    fn poll_event(&mut self) -> Option<Event> {
        Client::poll_event(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Client::poll_timeout(self)
    }
}

#[cfg(test)]
mod tests;
