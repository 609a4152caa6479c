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
    let session = core.client_connected(ALICE);
    core.inbox_loaded(now, ALICE, session, vec![]);
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
    let session = core.client_connected(ALICE);
    core.inbox_loaded(now, ALICE, session, vec![]);
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

    // she comes back: the stored delivery first, then a live one arriving while loading
    let session = core.client_connected(ALICE);
    assert!(matches!(
        &actions(&mut core)[..],
        [Action::LoadInbox { .. }]
    ));
    core.final_hop(data(ALICE, 2));
    assert!(
        actions(&mut core).is_empty(),
        "a live delivery overtook the inbox"
    );
    core.inbox_loaded(now, ALICE, session, vec![delivery.clone()]);
    let loaded = actions(&mut core);
    let order: Vec<u8> = loaded
        .iter()
        .filter_map(|a| match a {
            Action::ToClient {
                message: GatewayMessage::Deliver(d),
                ..
            } => Some(d.payload[0]),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec![1, 2]);
    assert!(acks_sent(&loaded).is_empty(), "acked before she confirmed");

    // she confirms both: the live one is acked, the stored one deleted
    core.handle_client(
        now,
        ALICE,
        session,
        ClientMessage::Received {
            ids: vec![first, first + 1],
        },
    );
    let confirmed = actions(&mut core);
    assert_eq!(acks_sent(&confirmed), vec![2]);
    assert!(
        confirmed
            .iter()
            .any(|a| matches!(a, Action::Delete { ids, .. } if ids == &vec![first]))
    );
}

#[test]
fn a_new_connection_replaces_the_old_and_nothing_unconfirmed_is_lost() {
    let now = Instant::now();
    let mut core = gateway(GatewayConfig::default());
    let old = core.client_connected(ALICE);
    core.inbox_loaded(now, ALICE, old, vec![]);
    core.final_hop(data(ALICE, 3));
    let _ = actions(&mut core);
    // alice's process dies without confirming, and she reconnects at once
    let new = core.client_connected(ALICE);
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
    core.inbox_loaded(now, ALICE, new, vec![stored]);
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
