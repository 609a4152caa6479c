//! Packet processing must refuse bad input with an error, never a panic, and must accept
//! every packet built for it.
//!
//! The first input byte picks what the rest is:
//! - 0: raw bytes off the wire, processed by a node;
//! - 1: the recipe of a valid packet (route, size, version, message) plus byte flips to apply
//!   before each hop;
//! - 2: "authentic garbage": a header whose MAC verifies under the node's key over arbitrary
//!   routing bytes, reaching the code behind the MAC check (flags, versions, blinding);
//! - 3: bytes read as a SURB, a reply key and a payload.

#![no_main]

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::Sha256;
use umbra_sphinx::{
    Delay, Destination, DestinationAddress, HEADER_LEN, Hop, NodeAddress, Packet, PacketBuilder,
    PacketSize, Payload, PrivateKey, Processed, ReplyKey, Surb, SurbId, Version,
};
use x25519_dalek::{PublicKey, StaticSecret};

const NODE_SECRET: [u8; 32] = [0x42; 32];
const HOP_KDF_INFO: &[u8] =
    b"Dwste mou enan moxlo arketa makru kai ena upomoxlio gia na ton topothetisw kai tha kinisw thn gh.";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => raw(rest),
        1 => mutated(rest),
        2 => authentic_garbage(rest),
        _ => parsers(rest),
    }
});

fn raw(bytes: &[u8]) {
    if let Ok(packet) = Packet::from_bytes(bytes.to_vec()) {
        let key = PrivateKey::from_bytes(NODE_SECRET);
        // a batch must say exactly what single checks say
        let single = key.check(packet.clone()).map(|checked| checked.replay_tag());
        for batched in key.check_batch(vec![packet.clone(), packet.clone()]) {
            assert_eq!(batched.map(|checked| checked.replay_tag()), single);
        }
        let _ = key.process(packet);
    }
}

fn mutated(recipe: &[u8]) {
    let [hops, size, version, seed, flips @ ..] = recipe else { return };
    let hops = usize::from(hops % 5) + 1;
    let size = PacketSize::ALL[usize::from(*size) % PacketSize::ALL.len()];
    let version = Version::ALL[usize::from(*version) % Version::ALL.len()];
    let mut rng = ChaCha20Rng::from_seed([*seed; 32]);
    let keys: Vec<PrivateKey> = (0..hops).map(|_| PrivateKey::generate(&mut rng)).collect();
    let route: Vec<Hop> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| Hop::new(NodeAddress::new([i as u8; 32]), key.public_key()))
        .collect();
    let destination = Destination::new(DestinationAddress::new([1; 32]), SurbId::new([2; 16]));
    let message = &flips[..flips.len().min(size.plaintext_capacity())];
    let Ok(mut packet) = PacketBuilder::new(size).version(version).build(
        &mut rng,
        &route,
        &vec![Delay::from_nanos(u64::from(*seed)); hops],
        &destination,
        message,
    ) else {
        panic!("a valid recipe must build");
    };
    // flips come in (hop, position lo, position hi, mask) quadruples
    let mut flips = flips.chunks_exact(4).peekable();
    let mut tampered = false;
    for (hop, key) in keys.iter().enumerate() {
        let mut bytes = packet.into_bytes();
        while let Some(flip) = flips.next_if(|f| usize::from(f[0]) % hops == hop) {
            let at = usize::from(u16::from_le_bytes([flip[1], flip[2]])) % bytes.len();
            bytes[at] ^= flip[3];
            tampered |= flip[3] != 0;
        }
        let Ok(next) = Packet::from_bytes(bytes) else { panic!("length is unchanged") };
        match key.process(next) {
            Ok(Processed::Forward { packet: next, .. }) => packet = next,
            Ok(Processed::Final { payload, .. }) => {
                let plaintext = payload.plaintext();
                assert!(tampered || plaintext == Ok(message), "untampered packet must arrive intact");
                return;
            }
            Err(error) => {
                assert!(tampered, "untampered packet refused: {error}");
                return;
            }
        }
    }
}

fn authentic_garbage(input: &[u8]) {
    let Some((x, rest)) = input.split_first_chunk::<32>() else { return };
    let Some((routing, rest)) = rest.split_first_chunk::<300>() else { return };
    let size = PacketSize::ALL[usize::from(rest.first().copied().unwrap_or(0)) % 5];
    let node = StaticSecret::from(NODE_SECRET);
    let sender = StaticSecret::from(*x);
    let alpha = PublicKey::from(&sender);
    let shared = sender.diffie_hellman(&PublicKey::from(&node));
    let mut okm = [0u8; 288];
    let Ok(()) = Hkdf::<Sha256>::new(Some(&[]), shared.as_bytes()).expand(HOP_KDF_INFO, &mut okm)
    else {
        return;
    };
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&okm[16..32]) else { return };
    mac.update(routing);
    let tag = mac.finalize().into_bytes();
    let mut bytes = vec![0u8; size.packet_len()];
    bytes[..32].copy_from_slice(alpha.as_bytes());
    bytes[32..48].copy_from_slice(&tag[..16]);
    bytes[48..HEADER_LEN].copy_from_slice(routing);
    for (byte, fill) in bytes[HEADER_LEN..].iter_mut().zip(rest.iter().cycle()) {
        *byte = *fill;
    }
    let Ok(packet) = Packet::from_bytes(bytes) else { return };
    let Ok(checked) = PrivateKey::from_bytes(NODE_SECRET).check(packet) else {
        // a sender's α of small order is the only way to miss here
        return;
    };
    if let Ok(Processed::Final { payload, .. }) = checked.finish() {
        let _ = payload.plaintext();
    }
}

fn parsers(bytes: &[u8]) {
    if let Ok(surb) = Surb::from_bytes(bytes) {
        assert_eq!(surb.to_bytes(), bytes, "SURB bytes round trip");
        let _ = surb.wrap(PacketSize::Ack, bytes.get(..21).unwrap_or(bytes));
    }
    if let Ok(key) = ReplyKey::from_bytes(bytes) {
        assert_eq!(key.to_bytes(), bytes, "reply key bytes round trip");
        let mut payload = vec![0u8; PacketSize::Ack.payload_len()];
        for (byte, fill) in payload.iter_mut().zip(bytes.iter().cycle()) {
            *byte = *fill;
        }
        if let Ok(payload) = Payload::from_bytes(&payload) {
            let _ = key.open(payload);
        }
    }
    if let Ok(payload) = Payload::from_bytes(bytes) {
        let _ = payload.plaintext();
    }
}
