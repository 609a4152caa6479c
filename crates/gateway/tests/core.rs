//! The gateway core, driven directly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use umbra_gateway::{Action, ClientId, GatewayConfig, GatewayCore};
use umbra_hop::Final;
use umbra_sphinx::{
    Delay, Destination, DestinationAddress, Hop, NodeAddress, Packet, PacketBuilder, PacketSize,
    PrivateKey, Processed, SurbId,
};
use umbra_wire::SurbAck;
use umbra_wire::gateway::{ClientMessage, DeliveryKind, GatewayMessage, Refusal};

const LAYER1: NodeAddress = NodeAddress::new([1; 32]);
const ALICE: ClientId = ClientId([0xa1; 32]);

/// A packet ending at this gateway, as the unwrapper hands it over.
fn final_packet(to: [u8; 32], size: PacketSize, plaintext: &[u8]) -> Final {
    let mut rng = ChaCha20Rng::from_seed([to[0]; 32]);
    let key = PrivateKey::generate(&mut rng);
    let hop = Hop::new(NodeAddress::new([9; 32]), key.public_key());
    let destination = Destination::new(DestinationAddress::new(to), SurbId::default());
    let packet = PacketBuilder::new(size)
        .build(&mut rng, &[hop], &[Delay::ZERO], &destination, plaintext)
        .unwrap();
    let Processed::Final {
        destination,
        surb_id,
        payload,
    } = key.process(packet).unwrap()
    else {
        panic!()
    };
    Final {
        destination,
        surb_id,
        payload,
        size,
    }
}

fn surb_ack(mark: u8) -> SurbAck {
    SurbAck {
        first_hop: LAYER1,
        packet: Packet::from_bytes(vec![mark; PacketSize::Ack.packet_len()]).unwrap(),
    }
}

fn data(to: ClientId, mark: u8) -> Final {
    final_packet(
        to.0,
        PacketSize::Regular,
        &surb_ack(mark).prefix(&[mark; 100]),
    )
}

fn actions(core: &mut GatewayCore) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

fn acks_sent(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Forward { packet, .. } if packet.size() == PacketSize::Ack => {
                Some(packet.as_bytes()[0])
            }
            _ => None,
        })
        .collect()
}

fn gateway(config: GatewayConfig) -> GatewayCore {
    GatewayCore::new(config, [LAYER1], [(ALICE, 0, 0)], 1)
}

#[test]
fn client_packets_are_forwarded_or_refused_with_the_reason() {
    let now = Instant::now();
    let mut core = gateway(GatewayConfig {
        daily_allowance: Some(5000),
        ..GatewayConfig::default()
    });
    let session = core.client_connected(now, ALICE);
    let packet = Packet::from_bytes(vec![0; 2413]).unwrap();
    let send = |core: &mut GatewayCore, first_hop| {
        core.handle_client(
            now,
            ALICE,
            session,
            ClientMessage::Forward {
                first_hop,
                packet: packet.clone(),
            },
        )
    };
    let _ = actions(&mut core);
    send(&mut core, LAYER1);
    send(&mut core, LAYER1);
    assert!(matches!(
        &actions(&mut core)[..],
        [Action::Forward { .. }, Action::Forward { .. }]
    ));
    // 2 × 2413 sent; a third would pass 5000
    send(&mut core, LAYER1);
    match &actions(&mut core)[..] {
        [
            Action::ToClient {
                message:
                    GatewayMessage::Refused {
                        reason: Refusal::AllowanceExhausted,
                        detail,
                    },
                ..
            },
        ] => {
            assert!(
                detail.contains("4826 of its 5000 bytes")
                    && detail.contains("resets in 1440 minutes"),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }
    send(&mut core, NodeAddress::new([7; 32]));
    assert!(matches!(
        &actions(&mut core)[..],
        [Action::ToClient {
            message: GatewayMessage::Refused {
                reason: Refusal::NotFirstLayer,
                ..
            },
            ..
        }]
    ));
    // a day later the allowance is back
    core.handle_client(
        now + Duration::from_secs(86_400),
        ALICE,
        session,
        ClientMessage::Forward {
            first_hop: LAYER1,
            packet,
        },
    );
    assert!(matches!(&actions(&mut core)[..], [Action::Forward { .. }]));
}

#[test]
fn the_final_hop_sorts_data_replies_acks_and_cover() {
    let now = Instant::now();
    let mut core = gateway(GatewayConfig::default());
    core.client_connected(now, ALICE);
    let _ = actions(&mut core);

    // drop cover: dropped, its ack sent
    core.final_hop(data(ClientId([0; 32]), 5));
    assert_eq!(acks_sent(&actions(&mut core)), vec![5]);
    // a client this gateway does not know: dropped, no ack
    core.final_hop(data(ClientId([0xbb; 32]), 6));
    assert!(actions(&mut core).is_empty());
    assert_eq!(core.counters().dropped.get("unknown_client"), Some(&1));
    // an ack for alice: delivered as an ack, nothing to acknowledge
    core.final_hop(final_packet(ALICE.0, PacketSize::Ack, &[3; 16]));
    // a sealed reply: delivered as it is
    let mut sealed = final_packet(ALICE.0, PacketSize::Regular, b"anything");
    let mut garbled = sealed.payload.as_bytes().to_vec();
    garbled[0] ^= 1;
    sealed.payload = umbra_sphinx::Payload::from_bytes(&garbled).unwrap();
    core.final_hop(sealed);
    let delivered: Vec<DeliveryKind> = actions(&mut core)
        .into_iter()
        .map(|a| match a {
            Action::ToClient {
                message: GatewayMessage::Deliver(d),
                ..
            } => d.kind,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        delivered,
        vec![
            DeliveryKind::Ack,
            DeliveryKind::Sealed {
                surb_id: SurbId::default()
            }
        ]
    );
}

#[test]
fn acks_wait_for_confirmation_or_storage() {
    let now = Instant::now();
    let mut core = gateway(GatewayConfig::default());
    // alice is away: stored, and acked only once written
    core.final_hop(data(ALICE, 1));
    let stored = actions(&mut core);
    let [Action::Store { delivery, .. }] = &stored[..] else {
        panic!("{stored:?}")
    };
    assert_eq!(delivery.payload, vec![1; 100]);
    let first = delivery.id;
    core.stored(ALICE, first);
    assert_eq!(acks_sent(&actions(&mut core)), vec![1]);

    // she comes back: welcomed with the count waiting, then the stored delivery is read
    let session = core.client_connected(now, ALICE);
    let welcome = actions(&mut core);
    assert!(
        matches!(
            &welcome[..],
            [
                Action::ToClient {
                    message: GatewayMessage::Welcome { waiting: 1, .. },
                    ..
                },
                Action::LoadInbox { after: None, .. }
            ]
        ),
        "{welcome:?}"
    );
    // a live delivery arriving while the inbox is read queues behind it, in storage
    core.final_hop(data(ALICE, 2));
    let queued = actions(&mut core);
    let [
        Action::Store {
            delivery: second, ..
        },
    ] = &queued[..]
    else {
        panic!("a live delivery overtook the inbox: {queued:?}")
    };
    let second = second.clone();
    core.stored(ALICE, second.id);
    assert_eq!(acks_sent(&actions(&mut core)), vec![2]);
    core.inbox_loaded(ALICE, session, vec![delivery.clone()], false);
    let mut order = Vec::new();
    let loaded = actions(&mut core);
    delivered_marks(&loaded, &mut order);
    // the read may have missed what was stored meanwhile: read on
    assert!(
        loaded
            .iter()
            .any(|a| matches!(a, Action::LoadInbox { after: Some(id), .. } if *id == first)),
        "{loaded:?}"
    );
    core.inbox_loaded(ALICE, session, vec![second.clone()], false);
    let loaded = actions(&mut core);
    delivered_marks(&loaded, &mut order);
    assert!(!loaded.iter().any(|a| matches!(a, Action::LoadInbox { .. })));
    assert_eq!(order, vec![1, 2]);

    // she confirms both: both are deleted
    core.handle_client(
        now,
        ALICE,
        session,
        ClientMessage::Received {
            ids: vec![first, second.id],
        },
    );
    let confirmed = actions(&mut core);
    assert!(acks_sent(&confirmed).is_empty());
    assert!(
        confirmed
            .iter()
            .any(|a| matches!(a, Action::Delete { ids, .. } if ids == &vec![first, second.id]))
    );
    // and now live deliveries go straight to her, acked once she confirms
    core.final_hop(data(ALICE, 3));
    let live = actions(&mut core);
    delivered_marks(&live, &mut order);
    assert_eq!(order, vec![1, 2, 3]);
    assert!(acks_sent(&live).is_empty(), "acked before she confirmed");
    core.handle_client(
        now,
        ALICE,
        session,
        ClientMessage::Received {
            ids: vec![second.id + 1],
        },
    );
    assert_eq!(acks_sent(&actions(&mut core)), vec![3]);
}

fn delivered_marks(actions: &[Action], marks: &mut Vec<u8>) {
    marks.extend(actions.iter().filter_map(|a| match a {
        Action::ToClient {
            message: GatewayMessage::Deliver(d),
            ..
        } => Some(d.payload[0]),
        _ => None,
    }));
}

#[test]
fn a_large_inbox_is_read_a_window_at_a_time() {
    let now = Instant::now();
    let mut core = gateway(GatewayConfig {
        max_unconfirmed: 4,
        ..GatewayConfig::default()
    });
    let mut stored = Vec::new();
    for mark in 1..=10 {
        core.final_hop(data(ALICE, mark));
    }
    for action in actions(&mut core) {
        if let Action::Store { delivery, .. } = action {
            core.stored(ALICE, delivery.id);
            stored.push(delivery);
        }
    }
    assert_eq!(stored.len(), 10);
    let session = core.client_connected(now, ALICE);
    let mut order = Vec::new();
    let mut reads = 0;
    let mut pending = actions(&mut core);
    loop {
        delivered_marks(&pending, &mut order);
        let read = pending.iter().find_map(|a| match a {
            Action::LoadInbox { after, limit, .. } => Some((*after, *limit)),
            _ => None,
        });
        let sent: Vec<u64> = pending
            .iter()
            .filter_map(|a| match a {
                Action::ToClient {
                    message: GatewayMessage::Deliver(d),
                    ..
                } => Some(d.id),
                _ => None,
            })
            .collect();
        if let Some((after, limit)) = read {
            assert!(limit <= 4, "a read of {limit} overflows the window");
            reads += 1;
            let page: Vec<_> = stored
                .iter()
                .filter(|d| after.is_none_or(|a| d.id > a))
                .take(limit)
                .cloned()
                .collect();
            let more = stored
                .iter()
                .filter(|d| after.is_none_or(|a| d.id > a))
                .count()
                > limit;
            core.inbox_loaded(ALICE, session, page, more);
            pending = actions(&mut core);
            continue;
        }
        if sent.is_empty() {
            break;
        }
        // she confirms what she got, one at a time
        for id in sent {
            core.handle_client(
                now,
                ALICE,
                session,
                ClientMessage::Received { ids: vec![id] },
            );
        }
        pending = actions(&mut core);
    }
    assert_eq!(order, (1..=10).collect::<Vec<u8>>());
    assert!(reads >= 3, "{reads} reads");
}

#[test]
fn a_new_connection_replaces_the_old_and_nothing_unconfirmed_is_lost() {
    let now = Instant::now();
    let mut core = gateway(GatewayConfig::default());
    let old = core.client_connected(now, ALICE);
    core.final_hop(data(ALICE, 3));
    let _ = actions(&mut core);
    // alice's process dies without confirming, and she reconnects at once
    let new = core.client_connected(now, ALICE);
    let replaced = actions(&mut core);
    assert!(
        replaced
            .iter()
            .any(|a| matches!(a, Action::Close { session, .. } if *session == old))
    );
    let stored = replaced.iter().find_map(|a| match a {
        Action::Store { delivery, .. } => Some(delivery.clone()),
        _ => None,
    });
    let stored = stored.expect("the unconfirmed delivery is stored");
    assert!(acks_sent(&replaced).is_empty());
    core.stored(ALICE, stored.id);
    assert_eq!(acks_sent(&actions(&mut core)), vec![3]);
    // the old session is gone: what it sends is ignored
    core.handle_client(
        now,
        ALICE,
        old,
        ClientMessage::Received {
            ids: vec![stored.id],
        },
    );
    assert!(actions(&mut core).is_empty());
    core.inbox_loaded(ALICE, new, vec![stored], false);
    assert!(actions(&mut core).iter().any(|a| matches!(a, Action::ToClient { session, message: GatewayMessage::Deliver(_), .. } if *session == new)));
    assert_eq!(core.counters().sessions_replaced, 1);
}

#[test]
fn a_full_inbox_takes_nothing_and_acks_nothing() {
    let mut core = gateway(GatewayConfig {
        inbox_max_messages: 2,
        ..GatewayConfig::default()
    });
    for mark in 1..=3 {
        core.final_hop(data(ALICE, mark));
    }
    let stored = actions(&mut core);
    assert_eq!(
        stored
            .iter()
            .filter(|a| matches!(a, Action::Store { .. }))
            .count(),
        2
    );
    assert_eq!(core.counters().dropped.get("inbox_full"), Some(&1));
    core.removed(ALICE, 2, 200);
    core.final_hop(data(ALICE, 4));
    assert!(matches!(&actions(&mut core)[..], [Action::Store { .. }]));
}
