//! Umbra and Nym's `sphinx-packet` 0.8.0 read each other's packets and SURBs.
//!
//! Every packet, whoever built it, is processed hop by hop by both libraries; after every hop
//! the two resulting packets must be the same bytes, and the next hop, the delay, the final
//! destination, SURB id and payload must match. This runs for every packet size, route length
//! 1 to 5 and header version 258, 259 and 260.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sphinx_packet as nym;
use sphinx_packet::header::delays::Delay as NymDelay;
use sphinx_packet::route::{
    Destination as NymDestination, DestinationAddressBytes, Node as NymNode, NodeAddressBytes,
};
use umbra_sphinx::{
    Delay, Destination, DestinationAddress, Hop, NodeAddress, Packet, PacketBuilder, PacketSize,
    PrivateKey, Processed, Surb, SurbId, Version,
};
use x25519_dalek::{PublicKey as NymPublicKey, StaticSecret};

/// A route known to both libraries.
struct Network {
    keys: Vec<PrivateKey>,
    nym_keys: Vec<StaticSecret>,
    route: Vec<Hop>,
    nym_route: Vec<NymNode>,
    delays: Vec<Delay>,
    nym_delays: Vec<NymDelay>,
}

impl Network {
    fn new(hops: usize, seed: u8) -> Network {
        let mut rng = ChaCha20Rng::from_seed([seed; 32]);
        let keys: Vec<PrivateKey> = (0..hops).map(|_| PrivateKey::generate(&mut rng)).collect();
        let nym_keys: Vec<StaticSecret> = keys
            .iter()
            .map(|k| StaticSecret::from(*k.as_bytes()))
            .collect();
        let addresses: Vec<[u8; 32]> = (0..hops).map(|i| [seed ^ (i as u8 * 17 + 1); 32]).collect();
        let route = keys
            .iter()
            .zip(&addresses)
            .map(|(key, address)| Hop::new(NodeAddress::new(*address), key.public_key()))
            .collect();
        let nym_route = nym_keys
            .iter()
            .zip(&addresses)
            .map(|(key, address)| {
                NymNode::new(
                    NodeAddressBytes::from_bytes(*address),
                    NymPublicKey::from(key),
                )
            })
            .collect();
        // distinct, odd-looking delays so a swapped or truncated delay shows
        let nanos: Vec<u64> = (0..hops as u64)
            .map(|i| 1_000_003 * (i + 1) + u64::from(seed) * 7919)
            .collect();
        Network {
            keys,
            nym_keys,
            route,
            nym_route,
            delays: nanos.iter().map(|&n| Delay::from_nanos(n)).collect(),
            nym_delays: nanos.iter().map(|&n| NymDelay::new_from_nanos(n)).collect(),
        }
    }
}

fn destination(seed: u8) -> (Destination, NymDestination) {
    let address = [seed.wrapping_mul(3) | 1; 32];
    let surb_id = [seed.wrapping_add(100); 16];
    (
        Destination::new(DestinationAddress::new(address), SurbId::new(surb_id)),
        NymDestination::new(DestinationAddressBytes::from_bytes(address), surb_id),
    )
}

fn message(size: PacketSize, seed: u8) -> Vec<u8> {
    // the longest message the size carries, so every payload byte is exercised
    (0..size.plaintext_capacity())
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// What the final hop produced, as each library saw it.
struct Arrival {
    destination: [u8; 32],
    surb_id: [u8; 16],
    payload: Vec<u8>,
    nym_payload: nym::payload::Payload,
}

/// Runs `bytes` through the route with both libraries, checking they agree after every hop.
fn travel(network: &Network, bytes: Vec<u8>, version: u16, case: &str) -> Arrival {
    let mut ours = Packet::from_bytes(bytes.clone()).unwrap();
    let mut theirs = nym::SphinxPacket::from_bytes(&bytes).unwrap();
    let hops = network.keys.len();
    for hop in 0..hops {
        let nym_out = theirs.process(&network.nym_keys[hop]).unwrap();
        assert_eq!(
            nym_out.version.value(),
            version,
            "{case}: version seen at hop {hop}"
        );
        let our_out = network.keys[hop].process(ours).unwrap();
        match (our_out, nym_out.data) {
            (
                Processed::Forward {
                    next_hop,
                    delay,
                    packet,
                },
                nym::ProcessedPacketData::ForwardHop {
                    next_hop_packet,
                    next_hop_address,
                    delay: nym_delay,
                },
            ) => {
                assert!(hop + 1 < hops, "{case}: hop {hop} forwards past the end");
                assert_eq!(
                    packet.as_bytes(),
                    next_hop_packet.to_bytes().as_slice(),
                    "{case}: packet after hop {hop}"
                );
                assert_eq!(
                    next_hop.as_bytes(),
                    next_hop_address.as_bytes(),
                    "{case}: next hop after {hop}"
                );
                assert_eq!(
                    next_hop,
                    network.route[hop + 1].address,
                    "{case}: next hop is the route's"
                );
                assert_eq!(
                    delay.as_nanos(),
                    nym_delay.to_nanos(),
                    "{case}: delay at hop {hop}"
                );
                assert_eq!(
                    delay, network.delays[hop],
                    "{case}: delay at hop {hop} is the sender's"
                );
                ours = packet;
                theirs = next_hop_packet;
            }
            (
                Processed::Final {
                    destination,
                    surb_id,
                    payload,
                },
                nym::ProcessedPacketData::FinalHop {
                    destination: nym_destination,
                    identifier,
                    payload: nym_payload,
                },
            ) => {
                assert_eq!(hop + 1, hops, "{case}: final at hop {hop}");
                assert_eq!(
                    destination.as_bytes(),
                    nym_destination.as_bytes_ref(),
                    "{case}: destination"
                );
                assert_eq!(surb_id.as_bytes(), &identifier, "{case}: SURB id");
                assert_eq!(
                    payload.as_bytes(),
                    nym_payload.as_bytes(),
                    "{case}: final payload"
                );
                return Arrival {
                    destination: *destination.as_bytes(),
                    surb_id: *surb_id.as_bytes(),
                    payload: payload.as_bytes().to_vec(),
                    nym_payload,
                };
            }
            _ => panic!("{case}: the libraries disagree on whether hop {hop} is final"),
        }
    }
    panic!("{case}: no final hop")
}

fn payload_of(arrival: &Arrival) -> umbra_sphinx::Payload {
    umbra_sphinx::Payload::from_bytes(&arrival.payload).unwrap()
}

#[test]
fn packets_built_by_umbra_are_processed_identically_by_both() {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    for size in PacketSize::ALL {
        for hops in 1..=5 {
            for version in Version::ALL {
                let seed = hops as u8 * 10 + version.number() as u8;
                let network = Network::new(hops, seed);
                let (dest, _) = destination(seed);
                let msg = message(size, seed);
                let packet = PacketBuilder::new(size)
                    .version(version)
                    .build(&mut rng, &network.route, &network.delays, &dest, &msg)
                    .unwrap();
                let case = format!("umbra-built {size:?} {hops} hops v{}", version.number());
                let arrival = travel(&network, packet.into_bytes(), version.number(), &case);
                assert_eq!(arrival.destination, *dest.address.as_bytes());
                assert_eq!(arrival.surb_id, *dest.surb_id.as_bytes());
                assert_eq!(
                    payload_of(&arrival).into_plaintext().unwrap(),
                    msg,
                    "{case}: our plaintext"
                );
                assert_eq!(
                    arrival.nym_payload.recover_plaintext().unwrap(),
                    msg,
                    "{case}: nym's plaintext"
                );
            }
        }
    }
}

#[test]
fn packets_built_by_sphinx_packet_are_processed_identically_by_both() {
    for size in PacketSize::ALL {
        for hops in 1..=5 {
            for version in Version::ALL {
                let seed = 100 + hops as u8 * 10 + version.number() as u8;
                let network = Network::new(hops, seed);
                let (_, nym_dest) = destination(seed);
                let msg = message(size, seed);
                let packet = nym::SphinxPacketBuilder::new()
                    .with_version(nym::version::Version::new(version.number()))
                    .with_payload_size(size.payload_len())
                    .build_packet(&msg, &network.nym_route, &nym_dest, &network.nym_delays)
                    .unwrap();
                let case = format!("nym-built {size:?} {hops} hops v{}", version.number());
                let arrival = travel(&network, packet.to_bytes(), version.number(), &case);
                assert_eq!(&arrival.destination, nym_dest.address.as_bytes_ref());
                assert_eq!(arrival.surb_id, nym_dest.identifier);
                assert_eq!(
                    payload_of(&arrival).into_plaintext().unwrap(),
                    msg,
                    "{case}: our plaintext"
                );
                assert_eq!(
                    arrival.nym_payload.recover_plaintext().unwrap(),
                    msg,
                    "{case}: nym's plaintext"
                );
            }
        }
    }
}

#[test]
fn surbs_made_by_umbra_are_used_by_sphinx_packet() {
    let mut rng = ChaCha20Rng::from_seed([2; 32]);
    for size in PacketSize::ALL {
        for hops in 1..=5 {
            for version in [Version::V259, Version::V260] {
                let seed = 50 + hops as u8 * 10 + version.number() as u8;
                let network = Network::new(hops, seed);
                let (me, _) = destination(seed);
                let (surb, reply_key) =
                    Surb::new(&mut rng, &network.route, &network.delays, &me, version).unwrap();
                let msg = message(size, seed);
                let case = format!("umbra SURB {size:?} {hops} hops v{}", version.number());

                // Nym wraps the reply; Umbra wrapping the same SURB gives the same bytes.
                let surb_bytes = surb.to_bytes();
                let nym_surb = nym::SURB::from_bytes(&surb_bytes).unwrap();
                let (nym_packet, nym_first_hop) =
                    nym_surb.use_surb(&msg, size.payload_len()).unwrap();
                let (first_hop, our_packet) = surb.wrap(size, &msg).unwrap();
                assert_eq!(
                    first_hop.as_bytes(),
                    nym_first_hop.as_bytes(),
                    "{case}: first hop"
                );
                assert_eq!(
                    first_hop, network.route[0].address,
                    "{case}: first hop is the route's"
                );
                assert_eq!(
                    our_packet.as_bytes(),
                    nym_packet.to_bytes().as_slice(),
                    "{case}: wrapped reply"
                );

                let arrival = travel(&network, nym_packet.to_bytes(), version.number(), &case);
                assert_eq!(arrival.surb_id, *reply_key.surb_id().as_bytes());
                assert_eq!(
                    reply_key.open(payload_of(&arrival)).unwrap(),
                    msg,
                    "{case}: reply opened"
                );
            }
        }
    }
}

#[test]
fn surbs_made_by_sphinx_packet_are_used_by_umbra() {
    for size in PacketSize::ALL {
        for hops in 1..=5 {
            for version in [Version::V259, Version::V260] {
                let seed = 150 + hops as u8 * 10 + version.number() as u8;
                let network = Network::new(hops, seed);
                let (_, nym_me) = destination(seed);
                let material = nym::SURBMaterial::new(
                    network.nym_route.clone(),
                    network.nym_delays.clone(),
                    nym_me.clone(),
                    nym::version::Version::new(version.number()),
                );
                let (nym_surb, recovery) = if version == Version::V260 {
                    let (surb, recovery) = material.construct_recoverable_SURB().unwrap();
                    (surb, Some(recovery))
                } else {
                    (material.construct_SURB().unwrap(), None)
                };
                let msg = message(size, seed);
                let case = format!("nym SURB {size:?} {hops} hops v{}", version.number());

                let surb = Surb::from_bytes(&nym_surb.to_bytes()).unwrap();
                assert_eq!(
                    surb.to_bytes(),
                    nym_surb.to_bytes(),
                    "{case}: SURB bytes round trip"
                );
                let (first_hop, packet) = surb.wrap(size, &msg).unwrap();
                assert_eq!(
                    first_hop.as_bytes(),
                    nym_surb.first_hop().as_bytes(),
                    "{case}: first hop"
                );

                let arrival = travel(&network, packet.into_bytes(), version.number(), &case);
                assert_eq!(&arrival.surb_id, &nym_me.identifier);
                let plaintext = match recovery {
                    Some(recovery) => recovery.recover_plaintext(arrival.nym_payload).unwrap(),
                    None => arrival.nym_payload.recover_plaintext().unwrap(),
                };
                assert_eq!(plaintext, msg, "{case}: reply read by its nym creator");
            }
        }
    }
}

#[test]
fn short_messages_and_empty_messages_survive_both_ways() {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let network = Network::new(3, 9);
    let (dest, nym_dest) = destination(9);
    for msg in [&b""[..], b"\x01", b"\x00\x00\x01\x00", b"hello"] {
        let ours = PacketBuilder::new(PacketSize::Ack)
            .build(&mut rng, &network.route, &network.delays, &dest, msg)
            .unwrap();
        let arrival = travel(&network, ours.into_bytes(), 260, "short umbra");
        assert_eq!(arrival.nym_payload.recover_plaintext().unwrap(), msg);
        let theirs = nym::SphinxPacketBuilder::new()
            .with_payload_size(PacketSize::Ack.payload_len())
            .build_packet(msg, &network.nym_route, &nym_dest, &network.nym_delays)
            .unwrap();
        let arrival = travel(&network, theirs.to_bytes(), 260, "short nym");
        assert_eq!(payload_of(&arrival).plaintext().unwrap(), msg);
    }
}
