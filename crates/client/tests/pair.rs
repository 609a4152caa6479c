//! A client and its gateway, each the real core, driven by [`umbra_core::Pair`] on a virtual
//! clock: the access link in between carries the frames the shells would (encoded and read
//! back with `umbra_wire::gateway`), and a network in memory stands for the mixnet (real Sphinx
//! hops, one node per layer, no delays), ending at the gateway's own final hop.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use umbra_client::{Client, ClientConfig, ClientKeys, Event, ReceiveSchedule};
use umbra_core::{Core, Pair};
use umbra_gateway::{Action, ClientId, GatewayConfig, GatewayCore, KnownClient, SessionId};
use umbra_hop::Final;
use umbra_sphinx::{NodeAddress, Packet, PrivateKey, Processed};
use umbra_topology::{Layer, NodeDescriptor, NodeId, NoiseKey, Role, Topology};
use umbra_wire::gateway::{
    ClientFrame, DownlinkReader, FRAME_LEN, Hello, Record, Schedule, VERSION,
};

/// The client core with what its shell adds: frames out, frames read back.
struct ClientEnd {
    core: Client,
    reader: DownlinkReader,
    /// Every frame it sent: (time, length).
    sent: Vec<(Instant, usize)>,
}

impl Core for ClientEnd {
    type Transmit = Vec<u8>;
    type Event = Event;

    fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let transmit = self.core.poll_transmit(now)?;
        let frame = ClientFrame {
            hello: None,
            forward: transmit.packet,
            received: self.reader.last_seq(),
            spend: None,
        }
        .encode(true)
        .unwrap();
        self.sent.push((now, frame.len()));
        Some(frame)
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.core.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }
}

/// The gateway core, with the mixnet behind it: what it forwards crosses the nodes and comes
/// back to its final hop; what it sends its client is its transmit.
struct GatewayEnd {
    core: GatewayCore,
    nodes: HashMap<NodeAddress, PrivateKey>,
    /// Frames it sent its client: (time, length).
    sent: Vec<(Instant, usize)>,
}

impl Core for GatewayEnd {
    type Transmit = Vec<u8>;
    type Event = ();

    fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        while let Some(action) = self.core.poll_transmit(now) {
            match action {
                Action::ToClient { frame, .. } => {
                    self.sent.push((now, frame.len()));
                    return Some(frame);
                }
                Action::Forward { first_hop, packet } => self.carry(first_hop, packet),
                // remembering a client that connects is storage's business
                Action::Register { .. } => {}
                other => panic!("a connected client's gateway was asked to {other:?}"),
            }
        }
        None
    }

    fn poll_event(&mut self) -> Option<()> {
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }
}

impl GatewayEnd {
    /// Through the mixnet, to this gateway's final hop (it is the only gateway).
    fn carry(&mut self, first_hop: NodeAddress, packet: Packet) {
        let (mut at, mut packet) = (first_hop, packet);
        let size = packet.size();
        loop {
            match self.nodes[&at].process(packet).unwrap() {
                Processed::Forward {
                    next_hop,
                    packet: next,
                    ..
                } => (at, packet) = (next_hop, next),
                Processed::Final {
                    destination,
                    surb_id,
                    payload,
                } => {
                    return self.core.final_hop(Final {
                        destination,
                        surb_id,
                        payload,
                        size,
                    });
                }
            }
        }
    }
}

/// One node per layer and one gateway, whose Noise key is `[104; 32]`.
fn network() -> (Topology, HashMap<NodeAddress, PrivateKey>, NodeAddress) {
    let mut rng = ChaCha20Rng::from_seed([5; 32]);
    let (mut nodes, mut keys) = (Vec::new(), HashMap::new());
    let mut first_layer = None;
    for i in 0..4u32 {
        let key = PrivateKey::generate(&mut rng);
        let mix_address: SocketAddr = format!("10.0.1.{}:1789", i + 1).parse().unwrap();
        let role = match i {
            0..=2 => Role::Mix(Layer::new(i as u8 + 1).unwrap()),
            _ => Role::Gateway,
        };
        let routing = umbra_wire::address::encode(mix_address);
        if i == 0 {
            first_layer = Some(routing);
        }
        keys.insert(routing, key.clone());
        nodes.push(NodeDescriptor {
            id: NodeId(i + 1),
            role,
            mix_address,
            client_address: (role == Role::Gateway).then(|| "10.0.1.4:9000".parse().unwrap()),
            sphinx_key: key.public_key(),
            noise_key: NoiseKey([i as u8 + 101; 32]),
        });
    }
    (Topology::new(1, nodes).unwrap(), keys, first_layer.unwrap())
}

#[test]
fn a_client_and_its_gateway_on_a_virtual_clock() {
    let start = Instant::now();
    let (topology, nodes, first_layer) = network();
    let keys = ClientKeys::generate(&mut ChaCha20Rng::from_seed([1; 32]));
    let mut config = ClientConfig::default();
    config.traffic.receive_schedule = ReceiveSchedule::Constant;
    let client = Client::new(config, keys, [104; 32], topology, [2; 32], start).unwrap();
    let alice = client.address();
    let me = ClientId(alice.identity);
    let mut gateway = GatewayCore::new(
        GatewayConfig::default(),
        start,
        [first_layer],
        [KnownClient {
            client: me,
            stored: 0,
            stored_bytes: 0,
            last_seen_ago: Duration::ZERO,
        }],
        1,
        [3; 32],
    );
    let session: SessionId = gateway.client_connected(
        start,
        me,
        Hello {
            version: VERSION,
            schedule: Schedule::Constant {
                interval: Duration::from_millis(20),
            },
        },
    );
    let mut pair = Pair::new(
        ClientEnd {
            core: client,
            reader: DownlinkReader::new(),
            sent: Vec::new(),
        },
        GatewayEnd {
            core: gateway,
            nodes,
            sent: Vec::new(),
        },
        start,
        Duration::from_millis(5),
    );
    // alice writes to herself: 30 messages of 5 KiB in the first second
    for i in 0..30u8 {
        pair.a
            .core
            .send(start, &alice, vec![i; 5 << 10], 0)
            .unwrap();
    }
    let to_gateway = |gateway: &mut GatewayEnd, now: Instant, frame: Vec<u8>| {
        assert_eq!(frame.len(), FRAME_LEN);
        gateway
            .core
            .handle_client(now, me, session, ClientFrame::decode(&frame).unwrap());
    };
    let to_client = |client: &mut ClientEnd, now: Instant, frame: Vec<u8>| {
        for record in client.reader.read(&frame).unwrap() {
            if let Record::Deliver(delivery) = record {
                client.core.handle_delivery(now, delivery);
            }
        }
    };
    pair.run_until(start + Duration::from_secs(10), to_gateway, to_client);

    // everything arrived and was acknowledged
    let received: Vec<&Event> = pair
        .events_a
        .iter()
        .filter(|e| matches!(e, Event::Received { .. }))
        .collect();
    let sent = pair
        .events_a
        .iter()
        .filter(|e| matches!(e, Event::Sent(_)))
        .count();
    assert_eq!(
        (received.len(), sent),
        (30, 30),
        "{:?}",
        pair.a.core.stats()
    );
    // one size both ways; the gateway's frames every 20 ms from the start, whatever they held
    assert!(pair.a.sent.iter().all(|(_, len)| *len == FRAME_LEN));
    assert!(pair.b.sent.iter().all(|(_, len)| *len == FRAME_LEN));
    assert_eq!(pair.b.sent.len(), 501);
    for (i, (at, _)) in pair.b.sent.iter().enumerate() {
        assert_eq!(*at, start + Duration::from_millis(20) * i as u32);
    }
    // the client's frames are its Poisson streams' slots, whatever they carry: 55 a second on
    // average over 10 s (550 ± 23.5 sd; the bounds are 5 sd)
    let frames = pair.a.sent.len();
    assert!((432..668).contains(&frames), "{frames} client frames");
    // every delivery was confirmed: the gateway holds nothing unconfirmed at the end but the
    // last frames in flight
    assert!(pair.b.core.counters().confirmed + 10 >= pair.b.core.counters().pushed);
}
