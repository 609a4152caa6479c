//! What a client holds stays under its caps whatever its peers send (issue 13.3): a client
//! and a hostile peer on a network in memory, driven by arbitrary sequences of what the peer
//! can do (SURBs under ever new sender tags, requests for SURBs again and again, garbage) and
//! what the client's application does, with topology changes and time passing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use proptest::prelude::*;
use umbra_sphinx::{PrivateKey, Processed};
use umbra_topology::{NodeDescriptor, Role};
use umbra_wire::SurbAck;

use super::*;

/// Three mix nodes and two gateways, with their keys.
struct Net {
    topology: Topology,
    previous: Option<Topology>,
    keys: HashMap<NodeAddress, PrivateKey>,
    next_delivery: u64,
}

const GATEWAYS: [[u8; 32]; 2] = [[103; 32], [104; 32]];

impl Net {
    fn new() -> Net {
        let mut nodes = Vec::new();
        let mut keys = HashMap::new();
        for i in 0..5u8 {
            let key = PrivateKey::from_bytes([i + 1; 32]);
            let mix_address = SocketAddr::from(([10, 0, 0, i + 1], 1789));
            let role = match i {
                0..=2 => Role::Mix(Layer::ALL[usize::from(i)]),
                _ => Role::Gateway,
            };
            keys.insert(umbra_wire::address::encode(mix_address), key.clone());
            nodes.push(NodeDescriptor {
                id: NodeId(u32::from(i) + 1),
                role,
                mix_address,
                client_address: (role == Role::Gateway)
                    .then(|| SocketAddr::from(([10, 0, 0, i + 1], 9000))),
                sphinx_key: key.public_key(),
                noise_key: NoiseKey([i + 100; 32]),
            });
        }
        Net {
            topology: Topology::new(1, nodes).unwrap(),
            previous: None,
            keys,
            next_delivery: 0,
        }
    }

    /// The next epoch's topology: the mix nodes in other layers.
    fn rotate(&mut self, shift: usize) -> Topology {
        let nodes = self
            .topology
            .nodes()
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let mut node = node.clone();
                if let Role::Mix(_) = node.role {
                    node.role = Role::Mix(Layer::ALL[(i + shift) % 3]);
                }
                node
            })
            .collect();
        let next = Topology::new(1, nodes).unwrap();
        self.previous = Some(std::mem::replace(&mut self.topology, next.clone()));
        next
    }

    fn delivery(&mut self, kind: DeliveryKind, payload: Vec<u8>) -> Delivery {
        self.next_delivery += 1;
        Delivery {
            id: self.next_delivery,
            kind,
            payload,
        }
    }

    /// Carries a packet through its hops: what is delivered to whom. Packets the gateway
    /// would refuse (a first hop of neither the current nor the previous first layer) are lost.
    fn carry(&mut self, first_hop: NodeAddress, packet: Packet) -> Vec<([u8; 32], Delivery)> {
        let entry = |t: &Topology| first_layer(t).any(|a| a == first_hop);
        if !entry(&self.topology) && !self.previous.as_ref().is_some_and(entry) {
            return vec![];
        }
        let (mut at, mut packet) = (first_hop, packet);
        let size = packet.size();
        loop {
            let Some(key) = self.keys.get(&at) else {
                return vec![];
            };
            match key.process(packet) {
                Ok(Processed::Forward {
                    next_hop,
                    packet: next,
                    ..
                }) => {
                    at = next_hop;
                    packet = next;
                }
                Ok(Processed::Final {
                    destination,
                    surb_id,
                    payload,
                }) => {
                    let to = *destination.as_bytes();
                    if size == PacketSize::Ack {
                        let ack = payload.plaintext().unwrap().to_vec();
                        return vec![(to, self.delivery(DeliveryKind::Ack, ack))];
                    }
                    return match payload.plaintext() {
                        Ok(plaintext) => {
                            let Some((ack, data)) = SurbAck::split(plaintext) else {
                                return vec![];
                            };
                            let mut out = Vec::new();
                            if to != [0; 32] {
                                out.push((to, self.delivery(DeliveryKind::Data, data.to_vec())));
                            }
                            out.extend(self.carry(ack.first_hop, ack.packet));
                            out
                        }
                        Err(_) => {
                            let payload = payload.as_bytes().to_vec();
                            vec![(to, self.delivery(DeliveryKind::Sealed { surb_id }, payload))]
                        }
                    };
                }
                Err(_) => return vec![],
            }
        }
    }
}

/// Runs both clients until `until`, waking when they ask. The peer's events are dropped; the
/// client's tell which tags it can reply to.
fn run(
    net: &mut Net,
    me: &mut Client,
    peer: &mut Client,
    until: Instant,
    tags: &mut Vec<SenderTag>,
) {
    loop {
        let Some(now) = [me.poll_timeout(), peer.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
        else {
            return;
        };
        if now > until {
            return;
        }
        let mut deliveries = Vec::new();
        for client in [&mut *me, &mut *peer] {
            client.handle_timeout(now);
            while let Some(transmit) = client.poll_transmit(now) {
                if let Some((first_hop, packet)) = transmit.packet {
                    deliveries.extend(net.carry(first_hop, packet));
                }
            }
        }
        for (to, delivery) in deliveries {
            if to == me.address().identity {
                me.handle_delivery(now, delivery);
            } else if to == peer.address().identity {
                peer.handle_delivery(now, delivery);
            }
        }
        while peer.poll_event().is_some() {}
        while let Some(event) = me.poll_event() {
            if let Event::Received {
                reply_to: Some(tag),
                ..
            } = event
                && !tags.contains(&tag)
            {
                tags.push(tag);
            }
        }
    }
}

/// What the peer or the client's application does next.
#[derive(Clone, Debug)]
enum Action {
    /// The peer sends with `surbs` SURBs in group `group`: each new group a new sender tag.
    PeerSends { group: u16, surbs: u16 },
    /// The peer asks for `count` SURBs through each tag of the client's it holds SURBs of,
    /// `times` times over.
    PeerAsks { count: u16, times: usize },
    /// The client's application sends the peer a message with SURBs.
    ClientSends { group: u8, surbs: u16 },
    /// The client's application replies to one of the peer's tags.
    ClientReplies { tag: usize, len: usize },
    /// Bytes from anywhere, delivered as data, a sealed reply or an ack.
    Garbage { kind: u8, bytes: Vec<u8> },
    /// A new epoch, everyone told at once.
    NewTopology { shift: usize },
    /// Time passes.
    Wait { ms: u64 },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..400u16, 0..40u16).prop_map(|(group, surbs)| Action::PeerSends { group, surbs }),
        3 => (0..=u16::MAX, 1..50usize).prop_map(|(count, times)| Action::PeerAsks { count, times }),
        2 => (0..4u8, 0..30u16).prop_map(|(group, surbs)| Action::ClientSends { group, surbs }),
        2 => (0..64usize, 0..20_000usize).prop_map(|(tag, len)| Action::ClientReplies { tag, len }),
        1 => (any::<u8>(), prop::collection::vec(any::<u8>(), 0..3000))
            .prop_map(|(kind, bytes)| Action::Garbage { kind, bytes }),
        1 => (1..3usize).prop_map(|shift| Action::NewTopology { shift }),
        3 => (1..3_000u64).prop_map(|ms| Action::Wait { ms }),
    ]
}

/// Small caps, to reach them.
fn config() -> ClientConfig {
    let mut config = ClientConfig::default();
    config.traffic.insecure_no_cover = true;
    config.traffic.mean_send_interval = Duration::from_millis(5);
    config.surbs = crate::config::SurbConfig {
        attach: 5,
        refill_below: 5,
        request: 10,
        max_kept: 20,
        max_senders: 8,
        max_held: 100,
        max_issued: 120,
        lifetime: Duration::from_secs(600),
        top_up_within: Duration::from_secs(60),
    };
    config.messages.reassembly_budget = 1 << 20;
    config
}

/// Everything the client holds for peers, against its caps.
fn check_bounds(me: &Client) -> Result<(), TestCaseError> {
    let surbs = &me.config.surbs;
    prop_assert!(me.stores.senders() <= surbs.max_senders);
    prop_assert!(me.stores.held() <= surbs.max_held);
    prop_assert!(me.issued.len() <= surbs.max_issued);
    prop_assert!(me.issued.largest_tag() <= 2 * usize::from(surbs.max_kept));
    // replies wait only for tags with a store
    for tag in me.waiting_replies.keys() {
        prop_assert!(me.stores.contains(tag));
    }
    // acks of replies: at most one per SURB issued
    let acks: usize = me.reply_acks.values().map(|(_, acks)| acks.len()).sum();
    prop_assert!(acks <= surbs.max_issued);
    // internal messages (top-ups, reply acks): at most one top-up per tag under way
    let internal = me.outgoing.values().filter(|m| !m.notify).count();
    prop_assert!(
        internal <= 2 * me.issued.tags() + me.reply_acks.len() + 64,
        "{internal} internal messages under way for {} tags",
        me.issued.tags()
    );
    prop_assert!(me.messages.held_bytes() <= me.config.messages.reassembly_budget);
    prop_assert!(me.replies.held_bytes() <= me.config.messages.reassembly_budget);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn what_peers_send_cannot_grow_the_client_past_its_caps(
        actions in prop::collection::vec(action(), 1..60),
    ) {
        let mut net = Net::new();
        let t0 = Instant::now();
        let new = |seed: u8, gateway: usize, topology: &Topology| {
            let keys = ClientKeys::generate(&mut ChaCha20Rng::from_seed([seed; 32]));
            Client::new(config(), keys, GATEWAYS[gateway], topology.clone(), [seed; 32], t0)
                .unwrap()
        };
        let mut me = new(1, 0, &net.topology);
        let mut peer = new(2, 1, &net.topology);
        let (me_address, peer_address) = (me.address(), peer.address());
        let mut now = t0;
        let mut tags = Vec::new();
        for action in actions {
            match action {
                Action::PeerSends { group, surbs } => {
                    let _ = peer.send_isolated(now, &me_address, Isolation(u64::from(group)), b"hi".to_vec(), surbs);
                }
                Action::PeerAsks { count, times } => {
                    for tag in peer.stores.tags() {
                        for _ in 0..times {
                            peer.queue_reply(now, tag, &Reply::SurbRequest { count }, false);
                        }
                    }
                }
                Action::ClientSends { group, surbs } => {
                    let _ = me.send_isolated(now, &peer_address, Isolation(u64::from(group)), b"q".to_vec(), surbs);
                }
                Action::ClientReplies { tag, len } => {
                    if !tags.is_empty() {
                        let _ = me.reply(now, tags[tag % tags.len()], vec![7; len]);
                    }
                }
                Action::Garbage { kind, bytes } => {
                    let kind = match kind % 3 {
                        0 => DeliveryKind::Data,
                        1 => DeliveryKind::Ack,
                        _ => DeliveryKind::Sealed { surb_id: SurbId::new([kind; 16]) },
                    };
                    let delivery = net.delivery(kind, bytes);
                    me.handle_delivery(now, delivery);
                }
                Action::NewTopology { shift } => {
                    let topology = net.rotate(shift);
                    me.handle_topology(now, topology.clone()).unwrap();
                    peer.handle_topology(now, topology).unwrap();
                }
                Action::Wait { ms } => {
                    now += Duration::from_millis(ms);
                    run(&mut net, &mut me, &mut peer, now, &mut tags);
                }
            }
            check_bounds(&me)?;
            now += Duration::from_millis(20);
            run(&mut net, &mut me, &mut peer, now, &mut tags);
            check_bounds(&me)?;
        }
        // and everything expires
        now += me.config.surbs.lifetime + Duration::from_secs(3600);
        me.handle_timeout(now);
        prop_assert_eq!(me.stores.held(), 0);
        prop_assert_eq!(me.issued.len(), 0);
    }
}

#[test]
fn a_replier_asking_again_and_again_gets_one_top_up_at_a_time() {
    // a request for SURBs is one packet from the replier, and each was answered with a new
    // top-up: a burst of requests made the client mint and send SURBs for each (the keys it
    // keeps per tag bound how far this goes, not what it costs)
    let mut net = Net::new();
    let t0 = Instant::now();
    let new = |seed: u8, gateway: usize| {
        let keys = ClientKeys::generate(&mut ChaCha20Rng::from_seed([seed; 32]));
        Client::new(
            config(),
            keys,
            GATEWAYS[gateway],
            net.topology.clone(),
            [seed; 32],
            t0,
        )
        .unwrap()
    };
    let (mut me, mut peer) = (new(1, 0), new(2, 1));
    me.send(t0, &peer.address(), b"ask me".to_vec(), 20)
        .unwrap();
    let mut tags = Vec::new();
    let mut now = t0 + Duration::from_millis(500);
    run(&mut net, &mut me, &mut peer, now, &mut tags);
    let [tag] = peer.stores.tags()[..] else {
        panic!("the peer holds no SURBs of mine")
    };
    let minted = me.issued.minted();
    // 20 requests at once, each for 2 SURBs: they arrive over about 100 ms
    for _ in 0..20 {
        peer.queue_reply(now, tag, &Reply::SurbRequest { count: 2 }, false);
    }
    now += Duration::from_secs(2);
    run(&mut net, &mut me, &mut peer, now, &mut tags);
    // one top-up under way at a time (here, where acks come back at once, a top-up is under
    // way for about one slot: about every other request is answered), not 20
    let top_ups = (me.issued.minted() - minted) / 2;
    assert!(
        (1..=12).contains(&top_ups),
        "{top_ups} top-ups for 20 requests"
    );
    assert!(me.stats.surb_requests_ignored >= 8, "{:?}", me.stats);
}

/// Runs `me` alone until `until`, losing everything it sends; what it tells its application.
fn alone(me: &mut Client, until: Instant) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(now) = me.poll_timeout().filter(|at| *at <= until) {
        me.handle_timeout(now);
        while me.poll_transmit(now).is_some() {}
        events.extend(std::iter::from_fn(|| me.poll_event()));
    }
    events
}

fn client(seed: u8, gateway: usize, topology: &Topology, now: Instant) -> Client {
    let keys = ClientKeys::generate(&mut ChaCha20Rng::from_seed([seed; 32]));
    Client::new(
        config(),
        keys,
        GATEWAYS[gateway],
        topology.clone(),
        [seed; 32],
        now,
    )
    .unwrap()
}

/// The topology of `net` without the nodes numbered `gone`.
fn without(net: &Net, gone: &[u32]) -> Topology {
    let nodes = net
        .topology
        .nodes()
        .iter()
        .filter(|node| !gone.contains(&node.id.0))
        .cloned()
        .collect();
    Topology::new(1, nodes).unwrap()
}

#[test]
fn a_message_never_acknowledged_fails_when_given_up_on() {
    let net = Net::new();
    let t0 = Instant::now();
    let mut me = client(1, 0, &net.topology, t0);
    let peer = client(2, 1, &net.topology, t0).address();
    let id = me.send(t0, &peer, b"hello".to_vec(), 0).unwrap();
    let give_up = me.config.acks.give_up_after;
    let events = alone(&mut me, t0 + give_up + Duration::from_secs(10));
    let failed = Event::Failed {
        id,
        reason: Failure::NotAcknowledged,
    };
    assert_eq!(events, [failed]);
    // the text the client daemon's API sends, unchanged
    assert_eq!(
        Failure::NotAcknowledged.to_string(),
        "not acknowledged in time (acks.give_up_after)"
    );
}

#[test]
fn an_empty_layer_fails_messages_and_refuses_surbs() {
    let net = Net::new();
    let t0 = Instant::now();
    let mut me = client(1, 0, &net.topology, t0);
    let peer = client(2, 1, &net.topology, t0).address();
    // node 3 is the third layer's only node
    me.handle_topology(t0, without(&net, &[3])).unwrap();
    let empty = NoRoute::EmptyLayer {
        layer: Layer::ALL[2],
    };
    let refused = me.send(t0, &peer, b"hello".to_vec(), 3).unwrap_err();
    assert_eq!(refused, SendError::NoRoute(empty));
    // was "the topology has no route: no node in some layer"
    assert_eq!(
        refused.to_string(),
        "the topology has no route: layer 3 has no nodes"
    );
    let id = me.send(t0, &peer, b"hello".to_vec(), 0).unwrap();
    let events = alone(&mut me, t0 + Duration::from_secs(1));
    assert_eq!(
        events,
        [Event::Failed {
            id,
            reason: Failure::NoRoute(empty)
        }]
    );
    // the failure's reason in the client daemon's API; was "the topology has no route (a
    // layer has no nodes)"
    assert_eq!(
        Failure::NoRoute(empty).to_string(),
        "the topology has no route (layer 3 has no nodes)"
    );
}

#[test]
fn a_message_to_a_gateway_that_left_fails() {
    let net = Net::new();
    let t0 = Instant::now();
    let mut me = client(1, 0, &net.topology, t0);
    let peer = client(2, 1, &net.topology, t0).address();
    let id = me.send(t0, &peer, b"hello".to_vec(), 0).unwrap();
    // node 5 is the peer's gateway
    me.handle_topology(t0, without(&net, &[5])).unwrap();
    let events = alone(&mut me, t0 + Duration::from_secs(1));
    assert_eq!(
        events,
        [Event::Failed {
            id,
            reason: Failure::RecipientGatewayLeft
        }]
    );
    assert_eq!(
        Failure::RecipientGatewayLeft.to_string(),
        "the recipient's gateway left the topology"
    );
    assert_eq!(
        me.send(t0, &peer, b"again".to_vec(), 0),
        Err(SendError::UnknownGateway)
    );
}

#[test]
fn failure_texts_the_api_sends_are_kept() {
    // the client daemon's API sends these as a failure's `reason` (docs/client-api.md)
    assert_eq!(
        Failure::SenderForgotten.to_string(),
        "the sender's SURBs were dropped to make room or expired (surbs.max_senders, surbs.lifetime)"
    );
    assert_eq!(
        Failure::Unbuildable(umbra_sphinx::BuildError::EmptyRoute).to_string(),
        "a fragment does not fit a packet"
    );
}

/// A network monitor's test loop: sent by one client over the mix nodes it names, in a slot of
/// the real stream, and recognised by the client it goes to; a mix node out of its layer is
/// refused; a test loop nobody expects tells the recipient's application nothing.
#[test]
fn a_test_loop_goes_over_its_route_to_the_client_expecting_it() {
    let mut net = Net::new();
    let start = Instant::now();
    let mut sender = client(1, 0, &net.topology, start);
    let mut receiver = client(2, 1, &net.topology, start);
    let mixes = [NodeId(1), NodeId(2), NodeId(3)];
    let refused = sender.queue_test_loop(TestLoop {
        id: 6,
        mixes: [NodeId(2), NodeId(1), NodeId(3)],
        to: receiver.address(),
    });
    assert_eq!(
        refused,
        Err(SendError::NotInLayer {
            node: NodeId(2),
            layer: Layer::FIRST
        })
    );
    let fragment = sender
        .queue_test_loop(TestLoop {
            id: 7,
            mixes,
            to: receiver.address(),
        })
        .unwrap();
    let unexpected = sender
        .queue_test_loop(TestLoop {
            id: 8,
            mixes,
            to: receiver.address(),
        })
        .unwrap();
    assert_ne!(fragment, unexpected);
    receiver.expect_test_loop(start, fragment, 7);

    let (mut sent, mut arrived) = (Vec::new(), Vec::new());
    let until = start + Duration::from_secs(2);
    while let Some(now) = sender.poll_timeout().filter(|at| *at <= until) {
        sender.handle_timeout(now);
        while let Some(transmit) = sender.poll_transmit(now) {
            let Some((first_hop, packet)) = transmit.packet else {
                continue;
            };
            assert_eq!(
                first_hop,
                net.topology.node(NodeId(1)).unwrap().routing_address()
            );
            for (to, delivery) in net.carry(first_hop, packet) {
                if to == receiver.address().identity {
                    receiver.handle_delivery(now, delivery);
                }
            }
        }
        sent.extend(std::iter::from_fn(|| sender.poll_event()));
        arrived.extend(std::iter::from_fn(|| receiver.poll_event()));
    }
    assert!(sent.contains(&Event::TestLoopSent(7)), "{sent:?}");
    assert!(sent.contains(&Event::TestLoopSent(8)), "{sent:?}");
    assert_eq!(arrived, vec![Event::TestLoopArrived(7)]);
    assert_eq!(sender.stats().test_loops, 2);
}
