//! Holds the crate to the bytes in `testdata/vectors.json`.
//!
//! Each vector gives every input (node keys, addresses, delays, destination, message, and the
//! seed of the ChaCha20 RNG the builder draws from) and every output: the packet, and after each
//! hop the replay tag and the next packet or the final payload. The test rebuilds and
//! reprocesses everything and compares.
//!
//! The file was generated once with
//! `UMBRA_WRITE_VECTORS=1 cargo test -p umbra-sphinx --test vectors`.
//! Regenerate it only for a deliberate change of format, and say so in the commit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::path::PathBuf;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::{Deserialize, Serialize};
use umbra_sphinx::{
    Delay, Destination, DestinationAddress, Hop, NodeAddress, Packet, PacketBuilder, PacketSize,
    PrivateKey, Processed, ReplyKey, Surb, SurbId, Version,
};

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Vectors {
    about: String,
    packets: Vec<PacketVector>,
    surbs: Vec<SurbVector>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Route {
    private_keys: Vec<String>,
    public_keys: Vec<String>,
    addresses: Vec<String>,
    delays_ns: Vec<u64>,
    destination: String,
    surb_id: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct PacketVector {
    name: String,
    packet_len: usize,
    version: u16,
    builder_rng_seed: String,
    route: Route,
    message: String,
    packet: String,
    hops: Vec<HopOutput>,
    plaintext: String,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct SurbVector {
    name: String,
    version: u16,
    builder_rng_seed: String,
    route: Route,
    surb: String,
    reply_key: String,
    reply_packet_len: usize,
    reply: String,
    reply_packet: String,
    hops: Vec<HopOutput>,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum HopOutput {
    Forward {
        replay_tag: String,
        next_hop: String,
        delay_ns: u64,
        packet: String,
    },
    Final {
        replay_tag: String,
        destination: String,
        surb_id: String,
        payload: String,
    },
}

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/vectors.json")
}

fn seed(label: &str) -> [u8; 32] {
    let mut seed = [0u8; 32];
    for (i, byte) in label.bytes().enumerate() {
        seed[i % 32] ^= byte.wrapping_add(i as u8);
    }
    seed
}

/// The inputs of a route, from a label.
fn make_route(label: &str, hops: usize, surb_id: [u8; 16]) -> Route {
    let mut rng = ChaCha20Rng::from_seed(seed(label));
    let keys: Vec<PrivateKey> = (0..hops).map(|_| PrivateKey::generate(&mut rng)).collect();
    Route {
        private_keys: keys.iter().map(|k| hex::encode(k.as_bytes())).collect(),
        public_keys: keys
            .iter()
            .map(|k| hex::encode(k.public_key().as_bytes()))
            .collect(),
        addresses: (0..hops)
            .map(|i| hex::encode([0x10 + i as u8; 32]))
            .collect(),
        delays_ns: (0..hops as u64)
            .map(|i| 15_000_000 + i * 1_234_567)
            .collect(),
        destination: hex::encode([0xde; 32]),
        surb_id: hex::encode(surb_id),
    }
}

fn bytes<const N: usize>(hex_string: &str) -> [u8; N] {
    hex::decode(hex_string).unwrap().try_into().unwrap()
}

impl Route {
    fn keys(&self) -> Vec<PrivateKey> {
        self.private_keys
            .iter()
            .map(|k| PrivateKey::from_bytes(bytes(k)))
            .collect()
    }

    fn hops(&self) -> Vec<Hop> {
        self.keys()
            .iter()
            .zip(&self.addresses)
            .map(|(key, address)| Hop::new(NodeAddress::new(bytes(address)), key.public_key()))
            .collect()
    }

    fn delays(&self) -> Vec<Delay> {
        self.delays_ns
            .iter()
            .map(|&n| Delay::from_nanos(n))
            .collect()
    }

    fn destination(&self) -> Destination {
        Destination::new(
            DestinationAddress::new(bytes(&self.destination)),
            SurbId::new(bytes(&self.surb_id)),
        )
    }
}

/// Processes `packet` along the route, recording every hop.
fn travel(route: &Route, mut packet: Packet) -> (Vec<HopOutput>, umbra_sphinx::Payload) {
    let mut outputs = Vec::new();
    for key in route.keys() {
        let checked = key.check(packet).unwrap();
        let replay_tag = hex::encode(checked.replay_tag().as_bytes());
        match checked.finish().unwrap() {
            Processed::Forward {
                next_hop,
                delay,
                packet: next,
            } => {
                outputs.push(HopOutput::Forward {
                    replay_tag,
                    next_hop: hex::encode(next_hop.as_bytes()),
                    delay_ns: delay.as_nanos(),
                    packet: hex::encode(next.as_bytes()),
                });
                packet = next;
            }
            Processed::Final {
                destination,
                surb_id,
                payload,
            } => {
                outputs.push(HopOutput::Final {
                    replay_tag,
                    destination: hex::encode(destination.as_bytes()),
                    surb_id: hex::encode(surb_id.as_bytes()),
                    payload: hex::encode(payload.as_bytes()),
                });
                return (outputs, payload);
            }
        }
    }
    panic!("no final hop")
}

fn packet_vector(name: &str, size: PacketSize, version: Version, hops: usize) -> PacketVector {
    let route = make_route(name, hops, [0; 16]);
    let builder_seed = seed(&format!("{name} builder"));
    let mut message: Vec<u8> = format!("{name}: the quick brown fox").into_bytes();
    message.truncate(size.plaintext_capacity());
    let packet = PacketBuilder::new(size)
        .version(version)
        .build(
            &mut ChaCha20Rng::from_seed(builder_seed),
            &route.hops(),
            &route.delays(),
            &route.destination(),
            &message,
        )
        .unwrap();
    let packet_hex = hex::encode(packet.as_bytes());
    let (outputs, payload) = travel(&route, packet);
    PacketVector {
        name: name.to_owned(),
        packet_len: size.packet_len(),
        version: version.number(),
        builder_rng_seed: hex::encode(builder_seed),
        route,
        message: hex::encode(&message),
        packet: packet_hex,
        hops: outputs,
        plaintext: hex::encode(payload.plaintext().unwrap()),
    }
}

fn surb_vector(name: &str, version: Version) -> SurbVector {
    let route = make_route(name, 3, [0x5b; 16]);
    let builder_seed = seed(&format!("{name} builder"));
    let (surb, reply_key) = Surb::new(
        &mut ChaCha20Rng::from_seed(builder_seed),
        &route.hops(),
        &route.delays(),
        &route.destination(),
        version,
    )
    .unwrap();
    let reply = format!("{name}: a reply").into_bytes();
    let surb_hex = hex::encode(surb.to_bytes());
    let (_, packet) = surb.wrap(PacketSize::Regular, &reply).unwrap();
    let packet_hex = hex::encode(packet.as_bytes());
    let (outputs, payload) = travel(&route, packet);
    assert_eq!(reply_key.open(payload).unwrap(), reply);
    SurbVector {
        name: name.to_owned(),
        version: version.number(),
        builder_rng_seed: hex::encode(builder_seed),
        route,
        surb: surb_hex,
        reply_key: hex::encode(reply_key.to_bytes()),
        reply_packet_len: PacketSize::Regular.packet_len(),
        reply: hex::encode(&reply),
        reply_packet: packet_hex,
        hops: outputs,
    }
}

fn generate() -> Vectors {
    Vectors {
        about: "umbra-sphinx test vectors. Inputs: route (keys, addresses, delays, destination), message, and the seed of the rand_chacha ChaCha20Rng the builder draws from (32 bytes of the sender's secret, then the final hop's padding). Outputs after every hop. Regenerate: UMBRA_WRITE_VECTORS=1 cargo test -p umbra-sphinx --test vectors".to_owned(),
        packets: vec![
            packet_vector("regular 3 hops v258", PacketSize::Regular, Version::V258, 3),
            packet_vector("regular 3 hops v259", PacketSize::Regular, Version::V259, 3),
            packet_vector("regular 3 hops v260", PacketSize::Regular, Version::V260, 3),
            packet_vector("ack 5 hops v260", PacketSize::Ack, Version::V260, 5),
            packet_vector("extended8 1 hop v260", PacketSize::Extended8, Version::V260, 1),
        ],
        surbs: vec![
            surb_vector("surb 3 hops v259", Version::V259),
            surb_vector("surb 3 hops v260", Version::V260),
        ],
    }
}

#[test]
fn todays_bytes_are_held() {
    let generated = generate();
    if std::env::var_os("UMBRA_WRITE_VECTORS").is_some() {
        let json = serde_json::to_string_pretty(&generated).unwrap();
        std::fs::write(path(), json + "\n").unwrap();
        return;
    }
    let stored: Vectors = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    assert_eq!(stored.packets.len(), generated.packets.len());
    for (stored, generated) in stored.packets.iter().zip(&generated.packets) {
        assert_eq!(stored, generated, "packet vector {:?} changed", stored.name);
    }
    for (stored, generated) in stored.surbs.iter().zip(&generated.surbs) {
        assert_eq!(stored, generated, "SURB vector {:?} changed", stored.name);
    }
    assert_eq!(stored, generated);
}

/// The stored packets processed from their bytes alone (no building involved) give the stored
/// outputs: what another implementation would check.
#[test]
fn stored_packets_process_to_the_stored_outputs() {
    if std::env::var_os("UMBRA_WRITE_VECTORS").is_some() {
        return;
    }
    let stored: Vectors = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    for vector in &stored.packets {
        let packet = Packet::from_bytes(hex::decode(&vector.packet).unwrap()).unwrap();
        assert_eq!(packet.size().packet_len(), vector.packet_len);
        let (outputs, payload) = travel(&vector.route, packet);
        assert_eq!(outputs, vector.hops, "{}", vector.name);
        assert_eq!(hex::encode(payload.plaintext().unwrap()), vector.plaintext);
        assert_eq!(vector.plaintext, vector.message);
    }
    for vector in &stored.surbs {
        let surb = Surb::from_bytes(&hex::decode(&vector.surb).unwrap()).unwrap();
        let (_, packet) = surb
            .wrap(PacketSize::Regular, &hex::decode(&vector.reply).unwrap())
            .unwrap();
        assert_eq!(
            hex::encode(packet.as_bytes()),
            vector.reply_packet,
            "{}",
            vector.name
        );
        let (outputs, payload) = travel(&vector.route, packet);
        assert_eq!(outputs, vector.hops, "{}", vector.name);
        let key = ReplyKey::from_bytes(&hex::decode(&vector.reply_key).unwrap()).unwrap();
        assert_eq!(
            hex::encode(key.open(payload).unwrap()),
            vector.reply,
            "{}",
            vector.name
        );
    }
}
