//! Properties of packets under random routes, delays, payloads, tampering and garbage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use umbra_sphinx::{
    Delay, Destination, DestinationAddress, HEADER_LEN, Hop, NodeAddress, Packet, PacketBuilder,
    PacketError, PacketSize, Payload, PrivateKey, Processed, ReplyKey, Surb, SurbId, Version,
};

/// A route of `hops` random nodes, with the keys to process it.
fn route(rng: &mut ChaCha20Rng, hops: usize) -> (Vec<PrivateKey>, Vec<Hop>) {
    let keys: Vec<PrivateKey> = (0..hops).map(|_| PrivateKey::generate(rng)).collect();
    let route = keys
        .iter()
        .enumerate()
        .map(|(i, key)| Hop::new(NodeAddress::new([i as u8 + 1; 32]), key.public_key()))
        .collect();
    (keys, route)
}

fn size() -> impl Strategy<Value = PacketSize> {
    prop::sample::select(PacketSize::ALL.to_vec())
}

fn version() -> impl Strategy<Value = Version> {
    prop::sample::select(Version::ALL.to_vec())
}

/// A packet along a random route, with everything needed to check it.
#[derive(Debug)]
struct Case {
    keys: Vec<PrivateKey>,
    route: Vec<Hop>,
    delays: Vec<Delay>,
    destination: Destination,
    message: Vec<u8>,
    packet: Packet,
}

fn case() -> impl Strategy<Value = Case> {
    (
        size(),
        version(),
        1..=5usize,
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        any::<[u8; 16]>(),
    )
        .prop_flat_map(|(size, version, hops, seed, dest, surb_id)| {
            (
                Just((size, version, seed, dest, surb_id)),
                prop::collection::vec(any::<u64>(), hops),
                prop::collection::vec(any::<u8>(), 0..=size.plaintext_capacity()),
            )
        })
        .prop_map(|((size, version, seed, dest, surb_id), nanos, message)| {
            let mut rng = ChaCha20Rng::from_seed(seed);
            let (keys, route) = route(&mut rng, nanos.len());
            let delays: Vec<Delay> = nanos.into_iter().map(Delay::from_nanos).collect();
            let destination = Destination::new(DestinationAddress::new(dest), SurbId::new(surb_id));
            let packet = PacketBuilder::new(size)
                .version(version)
                .build(&mut rng, &route, &delays, &destination, &message)
                .unwrap();
            Case {
                keys,
                route,
                delays,
                destination,
                message,
                packet,
            }
        })
}

/// Runs `packet` through `keys`, returning the final payload; every hop must forward to the
/// route's next node with the sender's delay.
fn deliver(case: &Case, mut packet: Packet, from_hop: usize) -> Result<Payload, PacketError> {
    for (hop, key) in case.keys.iter().enumerate().skip(from_hop) {
        match key.process(packet)? {
            Processed::Forward {
                next_hop,
                delay,
                packet: next,
            } => {
                assert_eq!(next_hop, case.route[hop + 1].address);
                assert_eq!(delay, case.delays[hop]);
                packet = next;
            }
            Processed::Final {
                destination,
                surb_id,
                payload,
            } => {
                assert_eq!(
                    hop + 1,
                    case.keys.len(),
                    "final before the end of the route"
                );
                assert_eq!(destination, case.destination.address);
                assert_eq!(surb_id, case.destination.surb_id);
                return Ok(payload);
            }
        }
    }
    panic!("the route ended without a final hop")
}

/// The packet as it arrives at hop `hop`.
fn packet_at(case: &Case, hop: usize) -> Packet {
    let mut packet = case.packet.clone();
    for key in &case.keys[..hop] {
        match key.process(packet).unwrap() {
            Processed::Forward { packet: next, .. } => packet = next,
            Processed::Final { .. } => panic!("final too early"),
        }
    }
    packet
}

fn flip(packet: &Packet, bit: usize) -> Packet {
    let mut bytes = packet.as_bytes().to_vec();
    bytes[bit / 8] ^= 1 << (bit % 8);
    Packet::from_bytes(bytes).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_packets_reach_their_destination_intact(case in case()) {
        let payload = deliver(&case, case.packet.clone(), 0).unwrap();
        prop_assert_eq!(payload.plaintext().unwrap(), case.message.as_slice());
        prop_assert_eq!(payload.into_plaintext().unwrap(), case.message.clone());
    }

    #[test]
    fn a_flipped_header_bit_is_rejected_by_the_next_hop(
        case in case(),
        hop in 0..5usize,
        bit in 0..HEADER_LEN * 8,
    ) {
        let hop = hop % case.keys.len();
        let tampered = flip(&packet_at(&case, hop), bit);
        prop_assert!(case.keys[hop].process(tampered).is_err());
    }

    #[test]
    fn a_flipped_payload_bit_is_detected_at_the_final_hop(
        case in case(),
        hop in 0..5usize,
        bit in any::<prop::sample::Index>(),
    ) {
        let hop = hop % case.keys.len();
        let payload_bits = case.packet.size().payload_len() * 8;
        let tampered = flip(&packet_at(&case, hop), HEADER_LEN * 8 + bit.index(payload_bits));
        // forward hops cannot tell; the final hop's check must
        let payload = deliver(&case, tampered, hop).unwrap();
        prop_assert_eq!(payload.plaintext(), Err(PacketError::BadPayload));
    }

    #[test]
    fn a_packet_is_accepted_by_no_node_it_was_not_built_for(
        case in case(),
        hop in 0..5usize,
        stranger in any::<[u8; 32]>(),
    ) {
        let hop = hop % case.keys.len();
        let packet = packet_at(&case, hop);
        prop_assert_eq!(
            PrivateKey::from_bytes(stranger).check(packet.clone()).err(),
            Some(PacketError::BadMac)
        );
        for (other, key) in case.keys.iter().enumerate() {
            if other != hop {
                prop_assert_eq!(key.check(packet.clone()).err(), Some(PacketError::BadMac));
            }
        }
    }

    #[test]
    fn replies_through_surbs_reach_their_creator(
        case in case(),
        seeded_version in prop::sample::select(vec![Version::V259, Version::V260]),
        reply in prop::collection::vec(any::<u8>(), 0..=2048),
        seed in any::<[u8; 32]>(),
    ) {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut destination = case.destination;
        if destination.surb_id == SurbId::default() {
            destination.surb_id = SurbId::new([1; 16]);
        }
        let case = Case { destination, ..case };
        let (surb, key) = Surb::new(&mut rng, &case.route, &case.delays, &destination, seeded_version).unwrap();
        let surb = Surb::from_bytes(&surb.to_bytes()).unwrap();
        let key = ReplyKey::from_bytes(&key.to_bytes()).unwrap();
        let (first_hop, packet) = surb.clone().wrap(PacketSize::Regular, &reply).unwrap();
        prop_assert_eq!(first_hop, case.route[0].address);
        let payload = deliver(&case, packet, 0).unwrap();
        prop_assert_eq!(key.open(payload).unwrap(), reply.clone());

        // and a tampered reply is caught by the creator
        let (_, packet) = surb.wrap(PacketSize::Regular, &reply).unwrap();
        let payload = deliver(&case, flip(&packet, HEADER_LEN * 8 + 100), 0).unwrap();
        prop_assert_eq!(key.open(payload), Err(PacketError::BadPayload));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
        key in any::<[u8; 32]>(),
    ) {
        let key = PrivateKey::from_bytes(key);
        match Packet::from_bytes(bytes.clone()) {
            Ok(packet) => { let _ = key.process(packet); }
            Err(error) => prop_assert_eq!(error, PacketError::WrongLength { len: bytes.len() }),
        }
        let _ = Surb::from_bytes(&bytes).map(|surb| surb.wrap(PacketSize::Ack, b"x"));
        let _ = ReplyKey::from_bytes(&bytes);
        if let Ok(payload) = Payload::from_bytes(&bytes) {
            let _ = payload.plaintext();
        }
    }

    #[test]
    fn random_packets_of_every_size_are_refused_cleanly(
        size in size(),
        seed in any::<[u8; 32]>(),
        key in any::<[u8; 32]>(),
    ) {
        let mut bytes = vec![0u8; size.packet_len()];
        rand_core::Rng::fill_bytes(&mut ChaCha20Rng::from_seed(seed), &mut bytes);
        let result = PrivateKey::from_bytes(key).process(Packet::from_bytes(bytes).unwrap());
        prop_assert!(matches!(
            result,
            Err(PacketError::BadMac | PacketError::NonCanonicalPoint | PacketError::PointNotOnCurve)
        ));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Batches give exactly what packet-by-packet processing gives, whatever the mix of good
    /// packets, packets for other nodes, tampered and random ones.
    #[test]
    fn batches_agree_with_single_packets(
        case in case(),
        others in prop::collection::vec(case(), 0..3),
        recipes in prop::collection::vec((size(), version(), 0..=21usize), 0..6),
        garbage in prop::collection::vec((size(), any::<[u8; 32]>(), any::<u8>()), 0..4),
        flips in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        seed in any::<[u8; 32]>(),
    ) {
        // packets for the case's first node, packets for other nodes, tampered and random ones,
        // opened with a stranger's key tried first (as a node tries its rotations)
        let stranger = PrivateKey::from_bytes(seed);
        let keys = [&stranger, &case.keys[0]];
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut packets = vec![case.packet.clone()];
        for (size, version, len) in recipes {
            packets.push(
                PacketBuilder::new(size)
                    .version(version)
                    .build(&mut rng, &case.route, &case.delays, &case.destination, &vec![7; len])
                    .unwrap(),
            );
        }
        packets.extend(others.iter().map(|other| other.packet.clone()));
        for flip_at in &flips {
            let i = flip_at.index(packets.len());
            let bit = flip_at.index(packets[i].size().packet_len() * 8);
            packets.push(flip(&packets[i], bit));
        }
        for (size, seed, alpha_top) in garbage {
            let mut bytes = vec![0u8; size.packet_len()];
            rand_core::Rng::fill_bytes(&mut ChaCha20Rng::from_seed(seed), &mut bytes);
            bytes[31] = alpha_top; // sometimes canonical, sometimes not
            packets.push(Packet::from_bytes(bytes).unwrap());
        }

        let singles: Vec<_> = packets
            .iter()
            .map(|p| {
                umbra_sphinx::check_with_keys(&keys, p.clone())
                    .map(|c| ((c.key_index(), c.replay_tag()), outcome(c.finish())))
            })
            .collect();
        let checked = umbra_sphinx::check_batch_with_keys(&keys, packets);
        let tags: Vec<_> = checked
            .iter()
            .map(|c| c.as_ref().map(|c| (c.key_index(), c.replay_tag())).map_err(|e| *e))
            .collect();
        let passed: Vec<_> = checked.into_iter().filter_map(Result::ok).collect();
        prop_assert!(!passed.is_empty(), "the case's own packet passes");
        prop_assert!(passed.iter().any(|c| c.key_index() == 1), "opened by the second key");
        let mut finished = umbra_sphinx::CheckedPacket::finish_batch(passed).into_iter();
        for (single, tag) in singles.into_iter().zip(tags) {
            match (single, tag) {
                (Ok((single_tag, single_out)), Ok(tag)) => {
                    prop_assert_eq!(single_tag, tag);
                    prop_assert_eq!(single_out, outcome(finished.next().unwrap()));
                }
                (Err(single), Err(batch)) => prop_assert_eq!(single, batch),
                (single, batch) => prop_assert!(false, "single {:?} but batch {:?}", single.err(), batch),
            }
        }
        prop_assert!(finished.next().is_none());
    }
}

/// What processing gave, with every byte, for comparing.
fn outcome(processed: Result<Processed, PacketError>) -> Result<(String, Vec<u8>), PacketError> {
    processed.map(|processed| match processed {
        Processed::Forward {
            next_hop,
            delay,
            packet,
        } => (
            format!("forward to {next_hop:?} after {delay:?}"),
            packet.into_bytes(),
        ),
        Processed::Final {
            destination,
            surb_id,
            payload,
        } => (
            format!("final at {destination:?} {surb_id:?}"),
            payload.as_bytes().to_vec(),
        ),
    })
}

/// Every single bit of a header, at every hop of a route, not just a sample.
#[test]
fn every_header_bit_matters_at_every_hop() {
    let mut rng = ChaCha20Rng::from_seed([4; 32]);
    let (keys, route) = route(&mut rng, 3);
    let destination = Destination::new(DestinationAddress::new([7; 32]), SurbId::new([8; 16]));
    let packet = PacketBuilder::new(PacketSize::Ack)
        .build(
            &mut rng,
            &route,
            &[Delay::from_millis(1); 3],
            &destination,
            b"bits",
        )
        .unwrap();
    let case = Case {
        keys,
        route,
        delays: vec![Delay::from_millis(1); 3],
        destination,
        message: b"bits".to_vec(),
        packet,
    };
    for hop in 0..3 {
        let packet = packet_at(&case, hop);
        assert!(case.keys[hop].process(packet.clone()).is_ok());
        for bit in 0..HEADER_LEN * 8 {
            assert!(
                case.keys[hop].process(flip(&packet, bit)).is_err(),
                "hop {hop} accepted a header with bit {bit} flipped"
            );
        }
    }
}

#[test]
fn build_errors_say_what_is_wrong() {
    let mut rng = ChaCha20Rng::from_seed([5; 32]);
    let (_, route) = route(&mut rng, 6);
    let destination = Destination::new(DestinationAddress::new([7; 32]), SurbId::default());
    let builder = PacketBuilder::new(PacketSize::Ack);
    let build = |rng: &mut ChaCha20Rng, hops: &[Hop], delays: usize, message: &[u8]| {
        builder.build(rng, hops, &vec![Delay::ZERO; delays], &destination, message)
    };
    use umbra_sphinx::BuildError::*;
    assert_eq!(build(&mut rng, &[], 0, b""), Err(EmptyRoute));
    assert_eq!(
        build(&mut rng, &route, 6, b""),
        Err(RouteTooLong { hops: 6 })
    );
    assert_eq!(
        build(&mut rng, &route[..3], 2, b""),
        Err(DelayCount { hops: 3, delays: 2 })
    );
    assert_eq!(
        build(&mut rng, &route[..3], 3, &[0; 22]),
        Err(MessageTooLong {
            len: 22,
            capacity: 21
        })
    );
    let message = build(&mut rng, &route[..3], 3, &[0; 22])
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("22 bytes") && message.contains("at most 21"),
        "{message}"
    );
    assert_eq!(
        Surb::new(
            &mut rng,
            &route[..3],
            &[Delay::ZERO; 3],
            &destination,
            Version::V258
        )
        .err(),
        Some(SurbVersion)
    );
    assert_eq!(
        Surb::new(
            &mut rng,
            &route[..3],
            &[Delay::ZERO; 3],
            &destination,
            Version::V260
        )
        .err(),
        Some(ZeroSurbId)
    );
}
