//! Clients on a virtual clock, over a network in memory: packets cross real Sphinx hops (one
//! node per layer, two gateways) the instant they are sent, unless a test loses them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use umbra_client::{Client, ClientConfig, ClientKeys, Event, Isolation, MessageId, SenderTag};
use umbra_sphinx::{NodeAddress, Packet, PacketSize, PrivateKey, Processed};
use umbra_topology::{Layer, NodeDescriptor, NodeId, NoiseKey, Role, Topology};
use umbra_wire::gateway::{Delivery, DeliveryKind};
use umbra_wire::{ClientAddress, SurbAck};

/// The nodes, their keys, and what the harness does with packets.
struct Net {
    topology: Topology,
    /// The topology before the last change: its first layer still takes packets, as a
    /// gateway's does for one epoch.
    previous: Option<Topology>,
    /// Packets refused at the gateway: their first hop is not a first-layer node of the
    /// current or the previous topology.
    refused: u32,
    keys: HashMap<NodeAddress, PrivateKey>,
    gateways: [[u8; 32]; 2],
    next_delivery: u64,
    /// Packets carrying data to these identities are lost (while `lose` is on).
    lose_to: Option<[u8; 32]>,
    lost: u32,
    /// Acks to this identity are held back (in `held`) until a test hands them over.
    hold_acks_to: Option<[u8; 32]>,
    held: Vec<([u8; 32], Delivery)>,
    /// A node that has died: every packet reaching it is lost.
    dead: Option<NodeAddress>,
    lost_at_dead: u32,
}

impl Net {
    fn new() -> Net {
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let mut nodes = Vec::new();
        let mut keys = HashMap::new();
        let mut gateways = [[0u8; 32]; 2];
        for i in 0..5u32 {
            let key = PrivateKey::generate(&mut rng);
            let mix_address: SocketAddr = format!("10.0.0.{}:1789", i + 1).parse().unwrap();
            let role = match i {
                0..=2 => Role::Mix(Layer::new(i as u8 + 1).unwrap()),
                _ => Role::Gateway,
            };
            let noise = [i as u8 + 100; 32];
            if i >= 3 {
                gateways[i as usize - 3] = noise;
            }
            keys.insert(umbra_wire::address::encode(mix_address), key.clone());
            nodes.push(NodeDescriptor {
                id: NodeId(i + 1),
                role,
                mix_address,
                client_address: (role == Role::Gateway)
                    .then(|| format!("10.0.0.{}:9000", i + 1).parse().unwrap()),
                sphinx_key: key.public_key(),
                noise_key: NoiseKey(noise),
            });
        }
        Net {
            topology: Topology::new(1, nodes).unwrap(),
            previous: None,
            refused: 0,
            keys,
            gateways,
            next_delivery: 0,
            lose_to: None,
            lost: 0,
            hold_acks_to: None,
            held: Vec::new(),
            dead: None,
            lost_at_dead: 0,
        }
    }

    /// The network with a second node in layer 2.
    fn with_two_in_layer_two() -> Net {
        let mut net = Net::new();
        let mut rng = ChaCha20Rng::from_seed([8; 32]);
        let key = PrivateKey::generate(&mut rng);
        let mix_address: SocketAddr = "10.0.0.20:1789".parse().unwrap();
        net.keys
            .insert(umbra_wire::address::encode(mix_address), key.clone());
        let mut nodes = net.topology.nodes().to_vec();
        nodes.push(NodeDescriptor {
            id: NodeId(20),
            role: Role::Mix(Layer::new(2).unwrap()),
            mix_address,
            client_address: None,
            sphinx_key: key.public_key(),
            noise_key: NoiseKey([20; 32]),
        });
        net.topology = Topology::new(1, nodes).unwrap();
        net
    }

    /// The topology of the next epoch: the three mix nodes drawn into other layers (node `i`
    /// serves layer `(i + shift) % 3 + 1`).
    fn rotated(&self, shift: usize) -> Topology {
        let nodes = self
            .topology
            .nodes()
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let mut node = node.clone();
                if let Role::Mix(_) = node.role {
                    node.role = Role::Mix(Layer::new(((i + shift) % 3) as u8 + 1).unwrap());
                }
                node
            })
            .collect();
        Topology::new(1, nodes).unwrap()
    }

    /// A new epoch: the gateways take packets to the first layers of it and of the last one.
    fn change_topology(&mut self, topology: Topology) {
        self.previous = Some(std::mem::replace(&mut self.topology, topology));
    }

    fn client(&self, seed: u8, gateway: usize, config: ClientConfig, now: Instant) -> Client {
        let keys = ClientKeys::generate(&mut ChaCha20Rng::from_seed([seed; 32]));
        Client::new(
            config,
            keys,
            self.gateways[gateway],
            self.topology.clone(),
            [seed; 32],
            now,
        )
        .unwrap()
    }

    fn delivery(&mut self, kind: DeliveryKind, payload: Vec<u8>) -> Delivery {
        self.next_delivery += 1;
        Delivery {
            id: self.next_delivery,
            kind,
            payload,
        }
    }

    /// Carries a packet through its hops, as the gateways would: what is delivered to whom.
    fn carry(&mut self, first_hop: NodeAddress, packet: Packet) -> Vec<([u8; 32], Delivery)> {
        let entry = |topology: &Topology| {
            topology
                .layer(Layer::FIRST)
                .any(|node| node.routing_address() == first_hop)
        };
        if !entry(&self.topology) && !self.previous.as_ref().is_some_and(entry) {
            // "the first hop is not a first-layer node"
            self.refused += 1;
            return vec![];
        }
        let (mut at, mut packet) = (first_hop, packet);
        let size = packet.size();
        loop {
            if self.dead == Some(at) {
                self.lost_at_dead += 1;
                return vec![];
            }
            match self.keys[&at].process(packet).unwrap() {
                Processed::Forward {
                    next_hop,
                    packet: next,
                    ..
                } => {
                    at = next_hop;
                    packet = next;
                }
                Processed::Final {
                    destination,
                    surb_id,
                    payload,
                } => {
                    let to = *destination.as_bytes();
                    if size == PacketSize::Ack {
                        let ack = payload.plaintext().unwrap().to_vec();
                        let delivery = (to, self.delivery(DeliveryKind::Ack, ack));
                        if self.hold_acks_to == Some(to) {
                            self.held.push(delivery);
                            return vec![];
                        }
                        return vec![delivery];
                    }
                    return match payload.plaintext() {
                        Ok(plaintext) => {
                            let (ack, data) = SurbAck::split(plaintext).unwrap();
                            if self.lose_to == Some(to) {
                                self.lost += 1;
                                return vec![];
                            }
                            let mut out = Vec::new();
                            if to != [0; 32] {
                                out.push((to, self.delivery(DeliveryKind::Data, data.to_vec())));
                            }
                            out.extend(self.carry(ack.first_hop, ack.packet));
                            out
                        }
                        // a reply through a SURB: only its owner can open it
                        Err(_) => vec![(
                            to,
                            self.delivery(
                                DeliveryKind::Sealed { surb_id },
                                payload.as_bytes().to_vec(),
                            ),
                        )],
                    };
                }
            }
        }
    }
}

/// Runs the clients until `until`, waking exactly when they ask; returns their events.
fn run(net: &mut Net, clients: &mut [&mut Client], until: Instant) -> Vec<Vec<Event>> {
    let mut events: Vec<Vec<Event>> = clients.iter().map(|_| Vec::new()).collect();
    loop {
        let now = clients
            .iter()
            .map(|c| c.poll_timeout().unwrap())
            .min()
            .unwrap();
        if now > until {
            return events;
        }
        let mut deliveries = Vec::new();
        for client in clients.iter_mut() {
            client.handle_timeout(now);
            while let Some(transmit) = client.poll_transmit(now) {
                if let Some((first_hop, packet)) = transmit.packet {
                    deliveries.extend(net.carry(first_hop, packet));
                }
            }
        }
        for (to, delivery) in deliveries {
            if let Some(client) = clients.iter_mut().find(|c| c.address().identity == to) {
                client.handle_delivery(now, delivery);
            }
        }
        for (client, events) in clients.iter_mut().zip(&mut events) {
            while let Some(event) = client.poll_event() {
                events.push(event);
            }
        }
    }
}

fn address(client: &Client) -> ClientAddress {
    client.address()
}

#[test]
fn the_streams_keep_their_rates_whether_or_not_the_application_sends() {
    // what matters is what leaves the client, so nothing is carried: no acks come back, and
    // the busy client sends its fragments again and again, always having more than a slot
    let net = Net::new();
    let t0 = Instant::now();
    let span = Duration::from_secs(100);
    let mut idle = net.client(1, 0, ClientConfig::default(), t0);
    let mut busy = net.client(2, 0, ClientConfig::default(), t0);
    busy.send(t0, &address(&idle), vec![7; 1600 * 7_000], 0)
        .unwrap();
    let mut sizes = std::collections::HashSet::new();
    for client in [&mut idle, &mut busy] {
        loop {
            let now = client.poll_timeout().unwrap();
            if now > t0 + span {
                break;
            }
            while let Some(transmit) = client.poll_transmit(now) {
                if let Some((_, packet)) = transmit.packet {
                    sizes.insert(packet.as_bytes().len());
                }
            }
        }
    }
    // Poisson streams of means 20 ms and 200 ms: 5,000 ± 71 and 500 ± 22 (one standard
    // deviation) in 100 s; the bounds are five of them
    for (name, client) in [("idle", &idle), ("busy", &busy)] {
        let stats = client.stats();
        let real_stream = stats.real_packets + stats.drop_cover;
        assert!(
            (4_645..=5_355).contains(&real_stream),
            "{name}: {real_stream} real-stream packets in 100 s"
        );
        assert!(
            (390..=610).contains(&stats.loops),
            "{name}: {} loops in 100 s",
            stats.loops
        );
    }
    assert_eq!(idle.stats().real_packets, 0);
    assert_eq!(
        busy.stats().drop_cover,
        0,
        "the busy client sent cover: {:?}",
        busy.stats()
    );
    assert_eq!(
        sizes,
        [PacketSize::Regular.packet_len()].into(),
        "every packet the same size"
    );
}

#[test]
fn a_lost_packet_is_sent_again_after_its_timeout_and_only_then() {
    let mut net = Net::new();
    let t0 = Instant::now();
    let mut config = ClientConfig::default();
    config.traffic.insecure_zero_delays = true; // the wait is then exactly extra_wait: 1.5 s
    let mut alice = net.client(1, 0, config.clone(), t0);
    let mut bob = net.client(2, 1, config, t0);
    let id = alice
        .send(t0, &address(&bob), b"are you there?".to_vec(), 0)
        .unwrap();

    // the first copy is lost on its way to bob (bob sits this out: his loops would be lost too)
    net.lose_to = Some(address(&bob).identity);
    run(
        &mut net,
        &mut [&mut alice],
        t0 + Duration::from_millis(1400),
    );
    assert_eq!(net.lost, 1);
    assert_eq!(alice.stats().retransmissions, 0);

    // nothing happens before the timeout; after it, one retransmission that gets through
    net.lose_to = None;
    let before = alice.stats().real_packets;
    let events = run(
        &mut net,
        &mut [&mut alice, &mut bob],
        t0 + Duration::from_millis(1500),
    );
    assert_eq!(
        alice.stats().real_packets,
        before,
        "sent again before its timeout"
    );
    let events_later = run(
        &mut net,
        &mut [&mut alice, &mut bob],
        t0 + Duration::from_secs(3),
    );
    assert!(events.iter().all(Vec::is_empty));
    assert_eq!(alice.stats().retransmissions, 1);
    assert_eq!(
        events_later[1],
        vec![Event::Received {
            message: b"are you there?".to_vec(),
            reply_to: None
        }]
    );
    assert_eq!(events_later[0], vec![Event::Sent(id)]);

    // and a packet acknowledged in time is never sent again
    let id = alice
        .send(
            t0 + Duration::from_secs(3),
            &address(&bob),
            b"again".to_vec(),
            0,
        )
        .unwrap();
    let events = run(
        &mut net,
        &mut [&mut alice, &mut bob],
        t0 + Duration::from_secs(20),
    );
    assert_eq!(alice.stats().retransmissions, 1);
    assert_eq!(events[0], vec![Event::Sent(id)]);
}

#[test]
fn retransmissions_back_off_and_a_late_ack_still_counts() {
    let mut net = Net::new();
    let t0 = Instant::now();
    let mut config = ClientConfig::default();
    config.traffic.insecure_zero_delays = true; // the first wait is then exactly 1.5 s
    let mut alice = net.client(1, 0, config.clone(), t0);
    let bob = net.client(2, 1, config, t0);
    alice
        .send(t0, &address(&bob), b"anyone?".to_vec(), 0)
        .unwrap();
    // every copy is lost: sent at about 0, then 1.5 s later, then 3 s after that, then 6 s,
    // then 6 s again (the wait doubles up to four times the first)
    net.lose_to = Some(address(&bob).identity);
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    for (until, retransmissions) in [
        (1_400, 0),
        (4_400, 1),
        (4_900, 2),
        (10_400, 2),
        (11_000, 3),
        (16_400, 3),
        (17_100, 4),
    ] {
        run(&mut net, &mut [&mut alice], at(until));
        assert_eq!(
            alice.stats().retransmissions,
            retransmissions,
            "by {until} ms"
        );
    }

    // an ack that comes after its packet was sent again completes the fragment all the same
    let mut net = Net::new();
    let mut alice = net.client(3, 0, ClientConfig::default(), t0);
    let mut bob = net.client(4, 1, ClientConfig::default(), t0);
    let id = alice
        .send(t0, &address(&bob), b"slow ack".to_vec(), 0)
        .unwrap();
    net.hold_acks_to = Some(address(&alice).identity);
    let events = run(&mut net, &mut [&mut alice, &mut bob], at(1_000));
    assert!(events[1].contains(&Event::Received {
        message: b"slow ack".to_vec(),
        reply_to: None
    }));
    net.lose_to = Some(address(&bob).identity);
    let events = run(&mut net, &mut [&mut alice, &mut bob], at(2_500));
    assert_eq!(alice.stats().retransmissions, 1);
    assert!(events[0].is_empty());
    for (_, delivery) in std::mem::take(&mut net.held) {
        alice.handle_delivery(at(2_500), delivery);
    }
    assert_eq!(alice.poll_event(), Some(Event::Sent(id)));
    assert_eq!(alice.stats().late_acks, 1);
}

#[test]
fn routes_go_around_a_node_that_died() {
    // the same traffic, with and without routing around failing nodes
    let mut lost_later = Vec::new();
    for route_around in [true, false] {
        let mut net = Net::with_two_in_layer_two();
        let t0 = Instant::now();
        let mut config = ClientConfig::default();
        config.acks.route_around_failures = route_around;
        let mut alice = net.client(1, 0, config.clone(), t0);
        let mut bob = net.client(2, 1, config, t0);
        // the second layer-2 node dies; the topology still lists it
        net.dead = Some(umbra_wire::address::encode(
            "10.0.0.20:1789".parse().unwrap(),
        ));
        let mut ids = Vec::new();
        let mut received = 0;
        for second in 0..20u64 {
            let now = t0 + Duration::from_secs(second);
            ids.push(
                alice
                    .send(now, &address(&bob), vec![second as u8; 3000], 0)
                    .unwrap(),
            );
            if second == 5 {
                net.lost_at_dead = 0;
            }
            let events = run(
                &mut net,
                &mut [&mut alice, &mut bob],
                now + Duration::from_secs(1),
            );
            received += events[1].len();
        }
        let events = run(
            &mut net,
            &mut [&mut alice, &mut bob],
            t0 + Duration::from_secs(60),
        );
        received += events[1].len();
        assert_eq!(
            received, 20,
            "every message arrives (route_around_failures = {route_around})"
        );
        lost_later.push(net.lost_at_dead);
    }
    // after the first seconds, the client that routes around the dead node all but stops
    // losing packets there; the one that does not keeps losing a share of everything it sends
    let (around, through) = (lost_later[0], lost_later[1]);
    assert!(
        through > 500,
        "{through} packets lost without routing around"
    );
    assert!(
        around * 20 < through,
        "{around} packets lost with routing around, {through} without"
    );
}

#[test]
fn large_messages_arrive_whole_in_whatever_order_fragments_come() {
    let mut net = Net::new();
    let t0 = Instant::now();
    let mut config = ClientConfig::default();
    config.traffic.mean_send_interval = Duration::from_millis(1);
    let mut alice = net.client(1, 0, config.clone(), t0);
    let mut bob = net.client(2, 1, config, t0);
    let message: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let id = alice.send(t0, &address(&bob), message.clone(), 0).unwrap();

    // carry alice's packets, then hand bob the fragments in reverse
    let mut held = Vec::new();
    let mut now = t0;
    while held.len() < 63 {
        now = alice.poll_timeout().unwrap();
        while let Some(transmit) = alice.poll_transmit(now) {
            if let Some((first_hop, packet)) = transmit.packet {
                for (to, delivery) in net.carry(first_hop, packet) {
                    if to == address(&bob).identity && delivery.kind == DeliveryKind::Data {
                        held.push(delivery);
                    } else if to == address(&alice).identity {
                        alice.handle_delivery(now, delivery);
                    }
                }
            }
        }
    }
    for delivery in held.into_iter().rev() {
        bob.handle_delivery(now, delivery);
    }
    assert_eq!(
        bob.poll_event(),
        Some(Event::Received {
            message,
            reply_to: None
        })
    );
    assert_eq!(bob.poll_event(), None);
    // the acks came back as the fragments went out
    let events = run(
        &mut net,
        &mut [&mut alice, &mut bob],
        now + Duration::from_millis(50),
    );
    assert!(events[0].contains(&Event::Sent(id)), "{:?}", events[0]);
}

#[test]
fn replies_through_surbs_reach_the_anonymous_sender_and_top_up() {
    let mut net = Net::new();
    let t0 = Instant::now();
    let mut alice = net.client(1, 0, ClientConfig::default(), t0);
    let mut bob = net.client(2, 1, ClientConfig::default(), t0);
    alice
        .send(t0, &address(&bob), b"tell me a secret".to_vec(), 12)
        .unwrap();
    let events = run(
        &mut net,
        &mut [&mut alice, &mut bob],
        t0 + Duration::from_secs(2),
    );
    let tag = match &events[1][..] {
        [
            Event::Received {
                message,
                reply_to: Some(tag),
            },
        ] if message == b"tell me a secret" => *tag,
        other => panic!("bob got {other:?}"),
    };

    // bob replies more often than the SURBs alice sent would allow: he asks for more
    let mut replies: Vec<MessageId> = Vec::new();
    let mut now = t0 + Duration::from_secs(2);
    for i in 0..30u32 {
        replies.push(
            bob.reply(now, tag, format!("secret {i}").into_bytes())
                .unwrap(),
        );
        now += Duration::from_millis(300);
    }
    let events = run(
        &mut net,
        &mut [&mut alice, &mut bob],
        now + Duration::from_secs(30),
    );
    let got: Vec<&Event> = events[0]
        .iter()
        .filter(|e| matches!(e, Event::Reply { .. }))
        .collect();
    assert_eq!(
        got.len(),
        30,
        "alice got {} replies: {:?}",
        got.len(),
        events[0]
    );
    for event in got {
        let Event::Reply { from, message, .. } = event else {
            unreachable!()
        };
        assert_eq!(*from, address(&bob));
        assert!(message.starts_with(b"secret "));
    }
    // every reply was acknowledged back to bob
    let sent: Vec<&Event> = events[1]
        .iter()
        .filter(|e| matches!(e, Event::Sent(_)))
        .collect();
    assert_eq!(sent.len(), 30, "{:?}", events[1]);
    assert!(
        bob.reply(now, umbra_client::SenderTag([0; 16]), b"x".to_vec())
            .is_err()
    );
}

#[test]
fn a_disconnected_client_wakes_only_for_its_timers() {
    // issue 13.1: a client whose gateway was down woke at once, again and again (its streams'
    // slots stayed due while nothing took them), spinning a core
    let net = Net::new();
    let t0 = Instant::now();
    let mut alice = net.client(1, 0, ClientConfig::default(), t0);
    let bob = net.client(2, 0, ClientConfig::default(), t0);
    alice.send(t0, &address(&bob), vec![1; 5000], 0).unwrap();
    alice.handle_disconnected();
    let mut wakeups = 0;
    let mut now = t0;
    while now < t0 + Duration::from_secs(60) {
        let next = alice.poll_timeout().unwrap();
        assert!(next > now || wakeups == 0, "woken again at once at {now:?}");
        now = next;
        wakeups += 1;
        alice.handle_timeout(now);
        assert!(
            alice.poll_transmit(now).is_none(),
            "a slot while disconnected"
        );
    }
    // its timers: pruning every 10 s, nothing else due in a minute (give-up is 30 min away)
    assert!(wakeups <= 8, "{wakeups} wake-ups in a minute");
    // back online, the streams start again from then, not in a burst of missed slots
    alice.handle_connected(now);
    let mut slots = 0;
    let end = now + Duration::from_secs(1);
    while now < end {
        now = alice.poll_timeout().unwrap();
        while alice.poll_transmit(now).is_some() {
            slots += 1;
        }
    }
    // about 55 in a second (Poisson, means 20 ms and 200 ms): sd 7.4; 100 is 6 sd out
    assert!(
        (1..100).contains(&slots),
        "{slots} slots in the first second"
    );
}

#[test]
fn isolation_groups_reach_the_recipient_as_unlinkable_tags() {
    // issue 13.4: a proxy's usernames are groups; each must look like its own sender
    let mut net = Net::new();
    let t0 = Instant::now();
    let mut alice = net.client(1, 0, ClientConfig::default(), t0);
    let mut bob = net.client(2, 1, ClientConfig::default(), t0);
    let sends = [
        (Isolation(1), "wallet 1"),
        (Isolation(2), "browser 1"),
        (Isolation(1), "wallet 2"),
        (Isolation::DEFAULT, "other"),
        (Isolation(2), "browser 2"),
    ];
    for (isolation, text) in sends {
        alice
            .send_isolated(t0, &address(&bob), isolation, text.as_bytes().to_vec(), 5)
            .unwrap();
    }
    let events = run(
        &mut net,
        &mut [&mut alice, &mut bob],
        t0 + Duration::from_secs(3),
    );
    let tag_of: HashMap<String, SenderTag> = events[1]
        .iter()
        .filter_map(|event| match event {
            Event::Received {
                message,
                reply_to: Some(tag),
            } => Some((String::from_utf8(message.clone()).unwrap(), *tag)),
            _ => None,
        })
        .collect();
    assert_eq!(tag_of.len(), 5, "{:?}", events[1]);
    // one group, one tag; two groups, two tags
    assert_eq!(tag_of["wallet 1"], tag_of["wallet 2"]);
    assert_eq!(tag_of["browser 1"], tag_of["browser 2"]);
    let tags: std::collections::HashSet<SenderTag> = tag_of.values().copied().collect();
    assert_eq!(tags.len(), 3, "{tag_of:?}");

    // replies come back naming their group
    let now = t0 + Duration::from_secs(3);
    for (text, tag) in &tag_of {
        bob.reply(now, *tag, format!("re: {text}").into_bytes())
            .unwrap();
    }
    let events = run(
        &mut net,
        &mut [&mut alice, &mut bob],
        now + Duration::from_secs(3),
    );
    let mut replies: Vec<(Isolation, String)> = events[0]
        .iter()
        .filter_map(|event| match event {
            Event::Reply {
                from,
                isolation,
                message,
            } => {
                assert_eq!(*from, address(&bob));
                Some((*isolation, String::from_utf8(message.clone()).unwrap()))
            }
            _ => None,
        })
        .collect();
    replies.sort();
    let mut expected: Vec<(Isolation, String)> = sends
        .iter()
        .map(|(isolation, text)| (*isolation, format!("re: {text}")))
        .collect();
    expected.sort();
    assert_eq!(replies, expected);
}

#[test]
fn replies_keep_flowing_across_topology_changes() {
    // issue 13.8: the replier used its oldest SURBs first, made for a topology gone two epochs
    // ago; the gateway refused every packet, and each reply waited out `reply_wait` (5 s) for
    // the next stale SURB. Everyone learning of a new epoch at once, and the replier learning
    // of it a second after the SURBs' owner (its fresh SURBs then come before it knows them).
    for replier_lags in [Duration::ZERO, Duration::from_secs(1)] {
        replies_across_topology_changes(replier_lags);
    }
}

fn replies_across_topology_changes(replier_lags: Duration) {
    let mut net = Net::new();
    let t0 = Instant::now();
    let mut alice = net.client(1, 0, ClientConfig::default(), t0);
    let mut bob = net.client(2, 1, ClientConfig::default(), t0);
    let mut now = t0;
    // alice asks for two seconds, each time with SURBs: bob holds the 200 he keeps
    let mut tag = None;
    for i in 0..20 {
        alice
            .send(
                now,
                &address(&bob),
                format!("question {i}").into_bytes(),
                20,
            )
            .unwrap();
        now += Duration::from_millis(100);
        for event in run(&mut net, &mut [&mut alice, &mut bob], now).remove(1) {
            if let Event::Received { reply_to, .. } = event {
                tag = reply_to;
            }
        }
    }
    let tag = tag.expect("bob got alice's questions");
    assert_eq!(bob.stats().surbs_held, 200);

    // two epochs: each draws the mix nodes into other layers
    for shift in [1, 2] {
        let topology = net.rotated(shift);
        net.change_topology(topology.clone());
        alice.handle_topology(now, topology.clone()).unwrap();
        if !replier_lags.is_zero() {
            now += replier_lags;
            run(&mut net, &mut [&mut alice, &mut bob], now);
        }
        bob.handle_topology(now, topology).unwrap();
        now += Duration::from_secs(1);
        run(&mut net, &mut [&mut alice, &mut bob], now);
    }

    // bob answers, a reply every 200 ms; each arrives at once (a few slots), none refused
    let mut sent_at = HashMap::new();
    let mut latencies = Vec::new();
    let end = now + Duration::from_secs(10);
    let mut i = 0;
    while now < end {
        if i < 30 && (now - t0).as_millis().is_multiple_of(200) {
            let text = format!("answer {i}");
            bob.reply(now, tag, text.clone().into_bytes()).unwrap();
            sent_at.insert(text, now);
            i += 1;
        }
        now += Duration::from_millis(50);
        for event in run(&mut net, &mut [&mut alice, &mut bob], now).remove(0) {
            if let Event::Reply { message, .. } = event {
                let text = String::from_utf8(message).unwrap();
                latencies.push(now - sent_at[&text]);
            }
        }
    }
    assert_eq!(
        latencies.len(),
        30,
        "replies lost or stalled ({replier_lags:?} late)"
    );
    let slowest = latencies.iter().max().unwrap();
    assert!(
        *slowest < Duration::from_secs(1),
        "a reply took {slowest:?} (reply_wait is 5 s; {replier_lags:?} late)"
    );
    assert_eq!(net.refused, 0, "packets refused for a stale first hop");
    assert!(bob.stats().stale_surbs >= 100, "{:?}", bob.stats());
}
