//! The discrete-event engine: the real cores, one event queue, a virtual clock.
//!
//! Every client, gateway and mix node is its own core (`umbra_client::Client`,
//! `umbra_gateway::GatewayCore`, `umbra_mixnode::MixCore`), fed and drained exactly as its
//! daemon's shell does: what arrives is handed in with the time, then the core is polled for
//! what to send and for when it next wants to be woken. The engine plays the shells' part —
//! links with a latency, the gateways' storage in memory, the unwrapping of packets in the
//! simulator's format ([`crate::format`]) — and reports every hop to an [`Observer`].

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use umbra_client::{Client, ClientKeys, ClientStats, Event as ClientEvent, PacketOps};
use umbra_core::TimerQueue;
use umbra_gateway::{Action, ClientId, Counters as GatewayCounters, GatewayCore, SessionId};
use umbra_hop::{
    Dropped, Outcome, ReplayFilter, ReplayFilterConfig, RotationKey, Unwrapped, Unwrapper,
};
use umbra_mixnode::{Event as MixEvent, LoopRoutes, MixCore};
use umbra_sphinx::{Destination, DestinationAddress, NodeAddress, Packet, PrivateKey, SurbId};
use umbra_topology::{Layer, NodeDescriptor, NodeId, NoiseKey, Role, Topology};
use umbra_wire::ClientAddress;
use umbra_wire::frame::{Frame, FrameHeader};
use umbra_wire::gateway::{
    ClientFrame, Delivery, DownlinkReader, FRAME_LEN, Hello, Record, VERSION,
};

use crate::config::SimConfig;
use crate::err::SimError;
use crate::format::{self, Built, SimOps, TracedSphinx};
use crate::trace::{End, Observer, Origin, PacketId, Place};

/// Bytes the Noise transport adds to each frame on a client's link.
const NOISE_TAG: u32 = 16;
/// The marker at the start of every message the simulated applications send, before its number.
const MARKER: &[u8; 8] = b"UMBRASIM";

/// What the engine counted in a run.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RunStats {
    /// Events processed (arrivals at a node, and wake-ups of a core).
    pub events: u64,
    /// Packets clients sent, by kind: real, drop cover, loop cover.
    pub real_packets: u64,
    /// See `real_packets`.
    pub drop_packets: u64,
    /// See `real_packets`.
    pub loop_packets: u64,
    /// Packets that crossed a link between nodes (mix or gateway).
    pub hops: u64,
    /// Frames gateways sent clients, and how many of them carried nothing.
    pub downlink_frames: u64,
    /// See `downlink_frames`.
    pub idle_frames: u64,
    /// Bytes on all client links, up and down.
    pub client_link_bytes: u64,
    /// Messages the applications sent after the warm-up, and how many arrived.
    pub messages_sent: u64,
    /// See `messages_sent`.
    pub messages_received: u64,
    /// Seconds from each measured message's sending to its arrival, in order of arrival.
    pub latencies: Vec<f64>,
    /// Retransmissions, over all clients.
    pub retransmissions: u64,
}

/// A message the applications sent: who, to whom, when (seconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SentMessage {
    /// The sender.
    pub from: u32,
    /// The recipient.
    pub to: u32,
    /// When it was handed to the client.
    pub at: f64,
}

struct ClientNode {
    core: Client,
    gateway: u32,
    session: SessionId,
    reader: DownlinkReader,
    /// The last frame that reached the client (frames are read as they are sent; this is
    /// what it may confirm).
    arrived: Option<u64>,
    shaped: bool,
    wake: u64,
}

struct GatewayNode {
    core: GatewayCore,
    /// Deliveries written to "storage", by client.
    storage: HashMap<ClientId, BTreeMap<u64, Delivery>>,
    wake: u64,
}

struct MixNode {
    core: MixCore,
    wake: u64,
}

enum Event {
    Wake(Place),
    Uplink {
        client: u32,
        frame: Box<ClientFrame>,
    },
    Downlink {
        client: u32,
        records: Vec<Record>,
    },
    Packet {
        to: Place,
        frame: Frame,
    },
    AppSend {
        client: u32,
    },
    /// The next message of the download, from the server to the exit.
    Download {
        left: u32,
    },
}

/// A simulated network.
pub struct Sim {
    config: SimConfig,
    base: Instant,
    now: u64,
    /// The events to come (in nanoseconds of simulated time).
    queue: TimerQueue<u64, Event>,
    clients: Vec<ClientNode>,
    gateways: Vec<GatewayNode>,
    /// Layer-major: layer 1's nodes, then layer 2's, then layer 3's.
    mixes: Vec<MixNode>,
    by_address: HashMap<SocketAddr, Place>,
    by_destination: HashMap<[u8; 32], u32>,
    client_ids: HashMap<ClientId, u32>,
    addresses: Vec<ClientAddress>,
    packets: Packets,
    rng: ChaCha20Rng,
    latency: u64,
    /// Deliveries on their way to a client: (client, payload's key) → the packet.
    in_delivery: HashMap<(u32, u64), PacketId>,
    messages: Vec<SentMessage>,
    /// The download's target, and when the exit's application handed it each message.
    download_target: Option<u32>,
    download_sends: Vec<f64>,
    /// The mix nodes the adversary controls, by layer and number.
    corrupt: Vec<(u8, u32)>,
    stats: RunStats,
    topology: Topology,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn seed_of(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    seed
}

/// A short key for a delivery's payload: its first bytes carry random ids (a fragment's,
/// an ack's), enough to tell deliveries apart.
fn payload_key(payload: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    payload[..payload.len().min(64)].hash(&mut hasher);
    payload.len().hash(&mut hasher);
    hasher.finish()
}

impl Sim {
    /// The network `config` describes, every core started at time zero.
    pub fn new(config: SimConfig) -> Result<Sim, SimError> {
        config.validate()?;
        let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
        let base = Instant::now();
        let width = config.layer_width;
        let mut nodes = Vec::new();
        let mut secrets = Vec::new();
        let mut by_address = HashMap::new();
        let mut id = 1u32;
        let address_of = |role: u8, index: u32| {
            let [a, b, c, d] = index.to_be_bytes();
            let _ = a;
            SocketAddr::from(([10, role, b, c], 1000 + u16::from(d)))
        };
        for layer in Layer::ALL {
            let number = layer.number();
            for index in 0..width {
                let mix_address = address_of(number, index);
                by_address.insert(
                    mix_address,
                    Place::Mix {
                        layer: number,
                        index,
                    },
                );
                let (descriptor, secret) = node(id, Role::Mix(layer), mix_address, None, &mut rng);
                nodes.push(descriptor);
                secrets.push((
                    Place::Mix {
                        layer: number,
                        index,
                    },
                    secret,
                ));
                id += 1;
            }
        }
        for index in 0..config.gateways {
            let mix_address = address_of(9, index);
            by_address.insert(mix_address, Place::Gateway(index));
            let client_address = address_of(10, index);
            let (descriptor, secret) = node(
                id,
                Role::Gateway,
                mix_address,
                Some(client_address),
                &mut rng,
            );
            nodes.push(descriptor);
            secrets.push((Place::Gateway(index), secret));
            id += 1;
        }
        let topology =
            Topology::new(1, nodes).map_err(|error| SimError::Setup(error.to_string()))?;
        let now = base;
        let first_layer: Vec<NodeAddress> = topology
            .layer(Layer::FIRST)
            .map(NodeDescriptor::routing_address)
            .collect();
        let gateway_descriptors: Vec<NodeDescriptor> = topology.gateways().cloned().collect();
        let mut gateways = Vec::new();
        for _ in 0..config.gateways {
            let core = GatewayCore::new(
                config.gateway.clone(),
                now,
                first_layer.iter().copied(),
                [],
                0,
                seed_of(&mut rng),
            );
            gateways.push(GatewayNode {
                core,
                storage: HashMap::new(),
                wake: u64::MAX,
            });
        }
        let mut mixes = Vec::new();
        for layer in Layer::ALL {
            let next: Vec<SocketAddr> = match layer.next() {
                Some(next) => topology.layer(next).map(|n| n.mix_address).collect(),
                None => topology.gateways().map(|n| n.mix_address).collect(),
            };
            for me in topology.layer(layer) {
                let mut core = MixCore::new(&config.mixing, next.iter().copied());
                if config.mix_cover.loop_rate > 0.0 {
                    core = core.with_cover(&config.mix_cover, seed_of(&mut rng));
                    core.set_loop_routes(now, LoopRoutes::new(&topology, me));
                }
                mixes.push(MixNode {
                    core,
                    wake: u64::MAX,
                });
            }
        }
        let packets = if config.sphinx {
            Packets::sphinx(secrets)?
        } else {
            Packets::Sim(Arc::new(SimOps::new()))
        };
        let ops = packets.ops();
        let client_config = config.client_config();
        let schedule = client_config.traffic.downlink_schedule();
        let mut clients = Vec::new();
        let mut by_destination = HashMap::new();
        let mut client_ids = HashMap::new();
        let mut addresses = Vec::new();
        for index in 0..config.clients {
            let gateway = index % config.gateways;
            let keys = ClientKeys::generate(&mut rng);
            let descriptor = &gateway_descriptors[gateway as usize];
            let core = Client::new(
                client_config.clone(),
                keys,
                descriptor.noise_key.0,
                topology.clone(),
                seed_of(&mut rng),
                now,
            )
            .map_err(|error| SimError::Setup(error.to_string()))?
            .with_packet_ops(ops.clone());
            let address = core.address();
            by_destination.insert(address.identity, index);
            let client_id = ClientId(address.identity);
            client_ids.insert(client_id, index);
            addresses.push(address);
            let session = gateways[gateway as usize].core.client_connected(
                now,
                client_id,
                Hello {
                    version: VERSION,
                    schedule,
                },
            );
            clients.push(ClientNode {
                core,
                gateway,
                session,
                reader: DownlinkReader::new(),
                arrived: None,
                shaped: schedule.is_shaped(),
                wake: u64::MAX,
            });
        }
        let mut sim = Sim {
            latency: nanos(config.link_latency),
            base,
            now: 0,
            queue: TimerQueue::new(),
            clients,
            gateways,
            mixes,
            by_address,
            by_destination,
            client_ids,
            addresses,
            packets,
            rng,
            in_delivery: HashMap::new(),
            messages: Vec::new(),
            download_target: None,
            download_sends: Vec::new(),
            corrupt: Vec::new(),
            stats: RunStats::default(),
            topology,
            config,
        };
        for client in 0..sim.config.clients {
            sim.schedule_wake(Place::Client(client));
            if sim.config.messages_per_second > 0.0 {
                let gap = sim.exp(1.0 / sim.config.messages_per_second);
                sim.push(gap, Event::AppSend { client });
            }
        }
        // the same share of each layer, drawn from the seed
        let per_layer = (sim.config.corrupt_fraction * f64::from(width)).round() as u32;
        for layer in 1..=3u8 {
            let mut indices: Vec<u32> = (0..width).collect();
            for i in 0..per_layer.min(width) as usize {
                let pick = i + (sim.rng.next_u64() % (indices.len() - i) as u64) as usize;
                indices.swap(i, pick);
                sim.corrupt.push((layer, indices[i]));
            }
        }
        if let Some(download) = sim.config.download.clone() {
            let target = 1 + (sim.rng.next_u64() % u64::from(sim.config.clients - 1)) as u32;
            sim.download_target = Some(target);
            sim.push_at(
                nanos(download.start),
                Event::Download {
                    left: download.messages,
                },
            );
        }
        for gateway in 0..sim.config.gateways {
            sim.drain_gateway(Place::Gateway(gateway), Context::Client, &mut ());
            sim.schedule_wake(Place::Gateway(gateway));
        }
        for layer in 1..=3u8 {
            for index in 0..width {
                sim.schedule_wake(Place::Mix { layer, index });
            }
        }
        Ok(sim)
    }

    /// The settings.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The topology the cores were given.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// What was counted so far.
    pub fn stats(&self) -> &RunStats {
        &self.stats
    }

    /// The messages the applications sent, by their numbers.
    pub fn messages(&self) -> &[SentMessage] {
        &self.messages
    }

    /// The mix nodes the adversary controls, by layer (1 to 3) and number in it.
    pub fn corrupt_mixes(&self) -> &[(u8, u32)] {
        &self.corrupt
    }

    /// The download's target (the exit is client 0), if the run has a download.
    pub fn download_target(&self) -> Option<u32> {
        self.download_target
    }

    /// When the exit's application handed the client each message of the download: what an
    /// observer of the exit's connection to the server sees (seconds).
    pub fn download_sends(&self) -> &[f64] {
        &self.download_sends
    }

    /// The client each client is connected to, by client number.
    pub fn gateway_of(&self, client: u32) -> u32 {
        self.clients
            .get(client as usize)
            .map_or(0, |client| client.gateway)
    }

    /// A client's counters.
    pub fn client_stats(&self, client: u32) -> Option<&ClientStats> {
        self.clients.get(client as usize).map(|c| c.core.stats())
    }

    /// A gateway's counters.
    pub fn gateway_counters(&self, gateway: u32) -> Option<&GatewayCounters> {
        self.gateways
            .get(gateway as usize)
            .map(|g| g.core.counters())
    }

    /// Deliveries followed between a gateway's final hop and the frame that carries them to
    /// their client (a few per client at any time: the state does not grow with the run).
    pub fn deliveries_followed(&self) -> usize {
        self.in_delivery.len()
    }

    /// Simulated seconds since the start.
    pub fn now(&self) -> f64 {
        self.now as f64 / 1e9
    }

    /// Runs until `until` seconds of simulated time, reporting to `observer`, calling
    /// `progress` with the simulated time now and then.
    pub fn run_until(
        &mut self,
        until: f64,
        observer: &mut dyn Observer,
        progress: &mut dyn FnMut(f64),
    ) {
        let end = (until.max(0.0) * 1e9) as u64;
        let mut next_report = 0u64;
        while let Some((at, event)) = self.queue.pop_due(end) {
            self.now = at;
            self.stats.events += 1;
            self.handle(event, observer);
            if self.stats.events >= next_report {
                next_report = self.stats.events + 100_000;
                progress(self.now());
            }
        }
        self.now = self.now.max(end);
    }

    /// Whether something at `at` (seconds) falls in the measured run: after the warm-up,
    /// before the cool-down.
    fn measured(&self, at: f64) -> bool {
        let from = self.config.warmup.as_secs_f64();
        at >= from && at < from + self.config.duration.as_secs_f64()
    }

    fn instant(&self) -> Instant {
        self.base + Duration::from_nanos(self.now)
    }

    fn exp(&mut self, mean_seconds: f64) -> u64 {
        let gap = Exp::new(1.0 / mean_seconds.max(1e-12))
            .map(|exp| exp.sample(&mut self.rng))
            .unwrap_or(mean_seconds);
        (gap * 1e9) as u64
    }

    fn push(&mut self, after: u64, event: Event) {
        self.queue.push(self.now.saturating_add(after), event);
    }

    fn push_at(&mut self, at: u64, event: Event) {
        self.queue.push(at, event);
    }

    fn mix_index(&self, layer: u8, index: u32) -> usize {
        (usize::from(layer) - 1) * self.config.layer_width as usize + index as usize
    }

    /// Asks the core at `place` when it next wants to be woken, and queues that wake-up if
    /// it is earlier than the one already queued.
    fn schedule_wake(&mut self, place: Place) {
        let base = self.base;
        let to_nanos = |at: Instant| nanos(at.saturating_duration_since(base));
        let (timeout, wake) = match place {
            Place::Client(n) => {
                let node = &mut self.clients[n as usize];
                (node.core.poll_timeout().map(to_nanos), &mut node.wake)
            }
            Place::Gateway(n) => {
                let node = &mut self.gateways[n as usize];
                (node.core.poll_timeout().map(to_nanos), &mut node.wake)
            }
            Place::Mix { layer, index } => {
                let at =
                    (usize::from(layer) - 1) * self.config.layer_width as usize + index as usize;
                let node = &mut self.mixes[at];
                (node.core.poll_timeout().map(to_nanos), &mut node.wake)
            }
        };
        let Some(timeout) = timeout else {
            return;
        };
        let timeout = timeout.max(self.now);
        if timeout < *wake || *wake < self.now {
            *wake = timeout;
            self.push_at(timeout, Event::Wake(place));
        }
    }

    fn handle(&mut self, event: Event, observer: &mut dyn Observer) {
        match event {
            Event::Wake(place) => self.wake(place, observer),
            Event::Uplink { client, frame } => {
                let node = &self.clients[client as usize];
                let gateway = node.gateway;
                let session = node.session;
                let id = ClientId(self.addresses[client as usize].identity);
                let now = self.instant();
                self.gateways[gateway as usize]
                    .core
                    .handle_client(now, id, session, *frame);
                self.drain_gateway(Place::Gateway(gateway), Context::Client, observer);
            }
            Event::Downlink { client, records } => {
                let now = self.instant();
                let node = &mut self.clients[client as usize];
                node.arrived = node.reader.last_seq();
                for record in records {
                    if let Record::Deliver(delivery) = record {
                        node.core.handle_delivery(now, delivery);
                    }
                }
                if !node.shaped {
                    // a push session confirms each frame at once (the daemon does the same)
                    let frame = ClientFrame {
                        received: node.arrived,
                        ..ClientFrame::default()
                    };
                    self.stats.client_link_bytes += u64::from(NOISE_TAG + 9);
                    self.push(
                        self.latency,
                        Event::Uplink {
                            client,
                            frame: Box::new(frame),
                        },
                    );
                }
                self.drain_client(client, observer);
            }
            Event::Packet { to, frame } => self.arrive(to, frame, observer),
            Event::AppSend { client } => {
                let gap = self.exp(1.0 / self.config.messages_per_second);
                self.push(gap, Event::AppSend { client });
                let others = self.config.clients - 1;
                let mut to = (self.rng.next_u64() % u64::from(others)) as u32;
                if to >= client {
                    to += 1;
                }
                self.app_send(client, to, observer);
            }
            Event::Download { left } => {
                let (Some(target), Some(download)) =
                    (self.download_target, self.config.download.clone())
                else {
                    return;
                };
                self.download_sends.push(self.now());
                self.app_send(0, target, observer);
                if left > 1 {
                    let sent = download.messages - left + 1;
                    let mut gap = self.exp(1.0 / download.rate);
                    if sent % download.burst == 0 {
                        // the pause between bursts, as long as a burst takes
                        gap += nanos(Duration::from_secs_f64(
                            f64::from(download.burst) / download.rate,
                        ));
                    }
                    self.push(gap, Event::Download { left: left - 1 });
                }
            }
        }
    }

    fn wake(&mut self, place: Place, observer: &mut dyn Observer) {
        let now = self.instant();
        match place {
            Place::Client(n) => {
                let node = &mut self.clients[n as usize];
                if node.wake != self.now {
                    return;
                }
                node.wake = u64::MAX;
                node.core.handle_timeout(now);
                self.drain_client(n, observer);
            }
            Place::Gateway(n) => {
                let node = &mut self.gateways[n as usize];
                if node.wake != self.now {
                    return;
                }
                node.wake = u64::MAX;
                node.core.handle_timeout(now);
                self.drain_gateway(place, Context::Client, observer);
            }
            Place::Mix { layer, index } => {
                let at = self.mix_index(layer, index);
                let node = &mut self.mixes[at];
                if node.wake != self.now {
                    return;
                }
                node.wake = u64::MAX;
                node.core.handle_timeout(now);
                self.drain_mix(layer, index, observer);
            }
        }
    }

    /// The application of `client` sends a message to `to`.
    fn app_send(&mut self, client: u32, to: u32, observer: &mut dyn Observer) {
        let number = self.messages.len() as u64;
        self.messages.push(SentMessage {
            from: client,
            to,
            at: self.now(),
        });
        if self.measured(self.now()) {
            self.stats.messages_sent += 1;
        }
        let mut message = vec![0u8; self.config.message_size];
        message[..8].copy_from_slice(MARKER);
        message[8..16].copy_from_slice(&number.to_be_bytes());
        let address = self.addresses[to as usize];
        let now = self.instant();
        // a full queue or no route: the message is simply not sent (counted by the client)
        let _ = self.clients[client as usize]
            .core
            .send(now, &address, message, 0);
        self.drain_client(client, observer);
    }

    /// Sends what the client has due, and takes its events.
    fn drain_client(&mut self, client: u32, observer: &mut dyn Observer) {
        let now = self.instant();
        let at = self.now();
        loop {
            let node = &mut self.clients[client as usize];
            let before = node.core.stats().clone();
            let Some(transmit) = node.core.poll_transmit(now) else {
                break;
            };
            let after = node.core.stats();
            let received = node.arrived;
            let shaped = node.shaped;
            self.stats.retransmissions += after.retransmissions - before.retransmissions;
            let Some((first_hop, packet)) = transmit.packet else {
                continue;
            };
            let origin = if after.loops > before.loops {
                self.stats.loop_packets += 1;
                Origin::Loop
            } else if after.drop_cover > before.drop_cover {
                self.stats.drop_packets += 1;
                Origin::Drop
            } else {
                self.stats.real_packets += 1;
                self.real_origin(&packet)
            };
            let id = self.packets.id_of(&packet);
            let size = if shaped {
                FRAME_LEN as u32 + NOISE_TAG
            } else {
                packet.as_bytes().len() as u32 + 40 + NOISE_TAG
            };
            self.stats.client_link_bytes += u64::from(size);
            let gateway = self.clients[client as usize].gateway;
            observer.sent(at, Place::Client(client), id, origin);
            observer.link(
                at,
                at + self.latency as f64 / 1e9,
                Place::Client(client),
                Place::Gateway(gateway),
                id,
                size,
            );
            let frame = ClientFrame {
                hello: None,
                forward: Some((first_hop, packet)),
                received,
                spend: None,
            };
            self.push(
                self.latency,
                Event::Uplink {
                    client,
                    frame: Box::new(frame),
                },
            );
        }
        while let Some(event) = self.clients[client as usize].core.poll_event() {
            if let ClientEvent::Received { message, .. } = event {
                self.received(&message);
            }
        }
        self.schedule_wake(Place::Client(client));
    }

    /// Which message a real packet carries: read from its payload (the stand-in's packets
    /// are in the clear), or as noted when it was built (real Sphinx).
    fn real_origin(&self, packet: &Packet) -> Origin {
        let message = match &self.packets {
            Packets::Sim(_) => format::message_number(packet.as_bytes(), MARKER),
            Packets::Sphinx { ops, .. } => ops
                .get(&format::alpha(packet))
                .and_then(|built| built.message),
        };
        match message.and_then(|number| self.messages.get(number as usize).map(|m| (number, m))) {
            Some((message, sent)) => Origin::Real {
                message,
                to: sent.to,
            },
            // a SURB reply or a reply ack: the simulated applications send neither
            None => Origin::Real {
                message: u64::MAX,
                to: u32::MAX,
            },
        }
    }

    fn received(&mut self, message: &[u8]) {
        let Some(number) = message
            .get(..16)
            .filter(|head| head.starts_with(MARKER))
            .and_then(|head| head[8..16].try_into().ok())
            .map(u64::from_be_bytes)
        else {
            return;
        };
        let Some(sent) = self.messages.get(number as usize) else {
            return;
        };
        if self.measured(sent.at) {
            self.stats.messages_received += 1;
            self.stats.latencies.push(self.now() - sent.at);
        }
    }

    /// A packet reaches a mix node or a gateway's mix port.
    fn arrive(&mut self, to: Place, frame: Frame, observer: &mut dyn Observer) {
        let now = self.instant();
        let (id, unwrapped) = self.packets.unwrap(to, frame);
        match to {
            Place::Mix { layer, index } => {
                let at = self.mix_index(layer, index);
                if matches!(unwrapped, Ok(Outcome::Final(_))) {
                    observer.ended(self.now(), to, id, End::AtMix);
                }
                self.mixes[at].core.handle_unwrapped(now, unwrapped);
                self.drain_mix(layer, index, observer);
            }
            Place::Gateway(n) => {
                let final_hop = match &unwrapped {
                    Ok(Outcome::Final(last)) => Some((last.destination, delivery_key(last))),
                    _ => None,
                };
                let before = self.gateways[n as usize].core.counters().clone();
                self.gateways[n as usize].core.unwrapped(unwrapped);
                if let Some((destination, key)) = final_hop {
                    let after = self.gateways[n as usize].core.counters();
                    let client = self.by_destination.get(destination.as_bytes()).copied();
                    let delivered = after.pushed + after.stored > before.pushed + before.stored;
                    match client {
                        Some(client) if delivered => {
                            self.in_delivery.insert((client, key), id);
                            observer.ended(self.now(), to, id, End::Delivered(client));
                        }
                        _ => observer.ended(self.now(), to, id, End::Dropped),
                    }
                    self.drain_gateway(to, Context::FinalHop, observer);
                } else {
                    self.drain_gateway(to, Context::Relay, observer);
                }
            }
            Place::Client(_) => {}
        }
    }

    fn send_packet(
        &mut self,
        from: Place,
        to: SocketAddr,
        frame: Frame,
        observer: &mut dyn Observer,
    ) {
        let Some(&place) = self.by_address.get(&to) else {
            return;
        };
        let at = self.now();
        self.stats.hops += 1;
        observer.link(
            at,
            at + self.latency as f64 / 1e9,
            from,
            place,
            self.packets.id_of(&frame.packet),
            frame.packet.as_bytes().len() as u32,
        );
        self.push(self.latency, Event::Packet { to: place, frame });
    }

    fn drain_mix(&mut self, layer: u8, index: u32, observer: &mut dyn Observer) {
        let now = self.instant();
        let at = self.mix_index(layer, index);
        let me = Place::Mix { layer, index };
        while let Some(event) = self.mixes[at].core.poll_event() {
            if let MixEvent::SendLoop(order) = event {
                let destination =
                    Destination::new(DestinationAddress::new([0; 32]), SurbId::default());
                let built = match &self.packets {
                    Packets::Sim(ops) => PacketOps::build(
                        ops.as_ref(),
                        &mut self.rng,
                        umbra_sphinx::PacketSize::Regular,
                        &order.route,
                        &order.delays,
                        &destination,
                        &order.message,
                    ),
                    Packets::Sphinx { ops, .. } => order.build(&mut self.rng).inspect(|packet| {
                        ops.note(packet, None);
                    }),
                };
                let Ok(packet) = built else {
                    continue;
                };
                observer.sent(self.now(), me, self.packets.id_of(&packet), Origin::MixLoop);
                let frame = Frame {
                    header: FrameHeader::v7(packet.size()),
                    packet,
                };
                self.send_packet(me, order.first_hop, frame, observer);
            }
        }
        while let Some(transmit) = self.mixes[at].core.poll_transmit(now) {
            self.send_packet(me, transmit.to, transmit.frame, observer);
        }
        self.schedule_wake(me);
    }

    fn drain_gateway(&mut self, place: Place, context: Context, observer: &mut dyn Observer) {
        let Place::Gateway(n) = place else {
            return;
        };
        let now = self.instant();
        let at = self.now();
        while let Some(action) = self.gateways[n as usize].core.poll_transmit(now) {
            match action {
                Action::ToClient {
                    client, session, ..
                } if self
                    .client_ids
                    .get(&client)
                    .is_none_or(|&c| self.clients[c as usize].session != session) => {}
                Action::ToClient { client, frame, .. } => {
                    let Some(&index) = self.client_ids.get(&client) else {
                        continue;
                    };
                    self.downlink(n, index, &frame, observer);
                }
                Action::Forward { first_hop, packet } => {
                    let Ok(to) = umbra_wire::address::decode(&first_hop) else {
                        continue;
                    };
                    if context == Context::FinalHop {
                        observer.sent(at, place, self.packets.id_of(&packet), Origin::Ack);
                    }
                    let frame = Frame {
                        header: FrameHeader::v7(packet.size()),
                        packet,
                    };
                    self.send_packet(place, to, frame, observer);
                }
                Action::Store { client, delivery } => {
                    let id = delivery.id;
                    self.gateways[n as usize]
                        .storage
                        .entry(client)
                        .or_default()
                        .insert(id, delivery);
                    self.gateways[n as usize].core.stored(client, id);
                }
                Action::Delete { client, ids } => {
                    let gateway = &mut self.gateways[n as usize];
                    let mut count = 0;
                    let mut bytes = 0;
                    if let Some(stored) = gateway.storage.get_mut(&client) {
                        for id in ids {
                            if let Some(delivery) = stored.remove(&id) {
                                count += 1;
                                bytes += delivery.payload.len() as u64;
                            }
                        }
                    }
                    gateway.core.removed(client, count, bytes);
                }
                Action::LoadInbox {
                    client,
                    session,
                    after,
                    limit,
                } => {
                    let gateway = &mut self.gateways[n as usize];
                    let stored = gateway.storage.get(&client);
                    let from = after.map_or(0, |after| after + 1);
                    let read: Vec<Delivery> = stored
                        .map(|stored| {
                            stored
                                .range(from..)
                                .take(limit + 1)
                                .map(|(_, d)| d.clone())
                                .collect()
                        })
                        .unwrap_or_default();
                    let more = read.len() > limit;
                    let read = read.into_iter().take(limit).collect();
                    gateway.core.inbox_loaded(client, session, read, more);
                }
                Action::SpendTicket { .. }
                | Action::SaveCredits { .. }
                | Action::Register { .. }
                | Action::Forget { .. }
                | Action::Close { .. } => {}
            }
        }
        self.schedule_wake(place);
    }

    /// A frame from gateway `gateway` to client `client`: read now (in order, as the client
    /// will), reported, delivered after the link's latency.
    fn downlink(&mut self, gateway: u32, client: u32, frame: &[u8], observer: &mut dyn Observer) {
        let at = self.now();
        let node = &mut self.clients[client as usize];
        let records = node.reader.read(frame).unwrap_or_default();
        let shaped = node.shaped;
        let mut carried = None;
        for record in &records {
            if let Record::Deliver(delivery) = record
                && let Some(id) = self
                    .in_delivery
                    .remove(&(client, payload_key(&delivery.payload)))
            {
                carried.get_or_insert(id);
            }
        }
        self.stats.downlink_frames += 1;
        let id = match carried {
            Some(id) => id,
            None => {
                self.stats.idle_frames += 1;
                let id = self.packets.next_id();
                observer.sent(at, Place::Gateway(gateway), id, Origin::Dummy);
                id
            }
        };
        let size = if shaped {
            FRAME_LEN as u32 + NOISE_TAG
        } else {
            frame.len() as u32 + NOISE_TAG
        };
        self.stats.client_link_bytes += u64::from(size);
        observer.link(
            at,
            at + self.latency as f64 / 1e9,
            Place::Gateway(gateway),
            Place::Client(client),
            id,
            size,
        );
        self.push(self.latency, Event::Downlink { client, records });
    }
}

/// What a gateway's actions follow from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    /// A client's frame, or a timer.
    Client,
    /// A packet that ended here: a packet it forwards is the delivery's SURB-ACK.
    FinalHop,
    /// A packet passing through (a mix node's loop).
    Relay,
}

/// The key of the delivery a gateway makes of a packet that ended there, found again in the
/// frame that carries it: an ack's plaintext, a data packet's plaintext after its SURB-ACK,
/// or the still-sealed payload of a reply (as the gateway core makes them).
fn delivery_key(last: &umbra_hop::Final) -> u64 {
    match last.payload.plaintext() {
        Ok(plaintext) if last.size == umbra_sphinx::PacketSize::Ack => payload_key(plaintext),
        Ok(plaintext) => umbra_wire::SurbAck::split(plaintext)
            .map_or_else(|| payload_key(plaintext), |(_, data)| payload_key(data)),
        Err(_) => payload_key(last.payload.as_bytes()),
    }
}

fn node(
    id: u32,
    role: Role,
    mix_address: SocketAddr,
    client_address: Option<SocketAddr>,
    rng: &mut ChaCha20Rng,
) -> (NodeDescriptor, PrivateKey) {
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let mut noise = [0u8; 32];
    rng.fill_bytes(&mut noise);
    let secret = PrivateKey::from_bytes(secret);
    let descriptor = NodeDescriptor {
        id: NodeId(id),
        role,
        mix_address,
        client_address,
        sphinx_key: secret.public_key(),
        noise_key: NoiseKey(noise),
    };
    (descriptor, secret)
}

/// How packets are made and unwrapped: the stand-in, or real Sphinx with the nodes' keys.
enum Packets {
    Sim(Arc<SimOps>),
    Sphinx {
        ops: Arc<TracedSphinx>,
        unwrappers: HashMap<Place, Unwrapper>,
    },
}

impl Packets {
    /// Real Sphinx, each node unwrapping with its key and a replay filter of its own.
    fn sphinx(secrets: Vec<(Place, PrivateKey)>) -> Result<Packets, SimError> {
        let filter = ReplayFilterConfig {
            expected_packets_per_second: 2_000,
            retention: Duration::from_secs(3600),
            ..ReplayFilterConfig::default()
        };
        let mut unwrappers = HashMap::new();
        for (place, secret) in secrets {
            let filter = ReplayFilter::new(0, &filter)
                .map_err(|error| SimError::Setup(error.to_string()))?;
            let key = RotationKey::new(secret, Arc::new(filter));
            unwrappers.insert(place, Unwrapper::new(key, None));
        }
        Ok(Packets::Sphinx {
            ops: Arc::new(TracedSphinx::default()),
            unwrappers,
        })
    }

    /// The clients' packet operations.
    fn ops(&self) -> Arc<dyn PacketOps> {
        match self {
            Packets::Sim(ops) => ops.clone(),
            Packets::Sphinx { ops, .. } => ops.clone(),
        }
    }

    fn next_id(&self) -> PacketId {
        match self {
            Packets::Sim(ops) => ops.next_id(),
            Packets::Sphinx { ops, .. } => ops.next_id(),
        }
    }

    /// The ground-truth id of a packet about to cross a link.
    fn id_of(&self, packet: &Packet) -> PacketId {
        match self {
            Packets::Sim(_) => format::packet_id(packet),
            Packets::Sphinx { ops, .. } => match ops.get(&format::alpha(packet)) {
                Some(built) => built.id,
                // not built by a client or a node here: cannot happen; a fresh id keeps the
                // trace whole
                None => ops.note(packet, None),
            },
        }
    }

    /// What the node at `place` makes of `frame`, and the packet's id.
    fn unwrap(&self, place: Place, frame: Frame) -> (PacketId, Unwrapped) {
        match self {
            Packets::Sim(_) => (
                format::packet_id(&frame.packet),
                format::unwrap(frame.packet, frame.header),
            ),
            Packets::Sphinx { ops, unwrappers } => {
                let built = ops.take(&format::alpha(&frame.packet)).unwrap_or(Built {
                    id: ops.next_id(),
                    message: None,
                });
                let Some(unwrapper) = unwrappers.get(&place) else {
                    return (built.id, Err(Dropped::Expired));
                };
                let unwrapped = unwrapper.unwrap(frame);
                if let Ok(Outcome::Forward(forward)) = &unwrapped {
                    ops.carry(format::alpha(&forward.packet), built);
                }
                (built.id, unwrapped)
            }
        }
    }
}

impl Observer for () {}
