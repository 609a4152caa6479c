//! The simulator's stand-in for Sphinx: packets of the real sizes that carry the same routing
//! information — each hop's address and delay, the destination, the SURB id — in the clear,
//! so the cores' own logic runs at full speed without the cryptography.
//!
//! ```text
//! header (HEADER_LEN bytes) = "SIM1" ‖ hops left (1) ‖ packet id (8)
//!                             ‖ per hop: address (32) ‖ delay ns (8)   (MAX_HOPS slots)
//!                             ‖ destination (32) ‖ SURB id (16) ‖ zeros
//! payload                   = Sphinx's plaintext layout: 16 zero bytes ‖ message ‖ 0x01 ‖ zeros
//! ```
//!
//! The first hop slot is always the node processing the packet: unwrapping drops it and
//! shifts the others up. The packet id is the simulator's ground truth (the adversary never
//! reads it): one number per packet, the same at every hop, given when the packet is built.
//! A SURB is the header of the packet its reply will be, its first hop and one (unused)
//! payload seed; sealing a message puts the recipient's public key in front and 16 zero
//! bytes behind, the lengths of the real sealing.

use rand_chacha::ChaCha20Rng;
use umbra_client::PacketOps;
use umbra_hop::{Dropped, Final, Forward, Outcome, Unwrapped};
use umbra_sphinx::{
    BuildError, Delay, Destination, DestinationAddress, HEADER_LEN, Hop, MAX_HOPS, NodeAddress,
    Packet, PacketError, PacketSize, Payload, ReplyKey, Surb, SurbId, Version,
};
use umbra_wire::frame::FrameHeader;

use crate::trace::PacketId;

const MAGIC: &[u8; 4] = b"SIM1";
const HOPS_AT: usize = 4;
const ID_AT: usize = 5;
const SLOTS_AT: usize = 13;
const SLOT_LEN: usize = 32 + 8;
const DESTINATION_AT: usize = SLOTS_AT + SLOT_LEN * MAX_HOPS;
const SURB_ID_AT: usize = DESTINATION_AT + 32;
const ZERO_PREFIX: usize = 16;
/// Bytes of a serialized real SURB's payload seed (one is carried, unused).
const SEED_LEN: usize = 16;

const _: () = assert!(SURB_ID_AT + 16 <= HEADER_LEN);

/// The simulator's packet operations. Packet ids count up from 1 in the order packets are
/// built (the simulator is single-threaded, so a run is deterministic).
#[derive(Debug, Default)]
pub struct SimOps {
    next_id: std::sync::atomic::AtomicU64,
}

impl SimOps {
    /// Operations whose packets are numbered from 1.
    pub fn new() -> SimOps {
        SimOps::default()
    }

    /// A fresh packet id.
    pub fn next_id(&self) -> PacketId {
        PacketId(
            self.next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1,
        )
    }

    /// The header of a packet along `route` with `delays` to `destination`.
    fn header(
        &self,
        route: &[Hop],
        delays: &[Delay],
        destination: &Destination,
    ) -> Result<[u8; HEADER_LEN], BuildError> {
        if route.is_empty() {
            return Err(BuildError::EmptyRoute);
        }
        if route.len() > MAX_HOPS {
            return Err(BuildError::RouteTooLong { hops: route.len() });
        }
        if delays.len() != route.len() {
            return Err(BuildError::DelayCount {
                delays: delays.len(),
                hops: route.len(),
            });
        }
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(MAGIC);
        header[HOPS_AT] = route.len() as u8;
        header[ID_AT..ID_AT + 8].copy_from_slice(&self.next_id().0.to_be_bytes());
        for (slot, (hop, delay)) in route.iter().zip(delays).enumerate() {
            let at = SLOTS_AT + slot * SLOT_LEN;
            header[at..at + 32].copy_from_slice(hop.address.as_bytes());
            header[at + 32..at + 40].copy_from_slice(&delay.as_nanos().to_be_bytes());
        }
        header[DESTINATION_AT..DESTINATION_AT + 32].copy_from_slice(destination.address.as_bytes());
        header[SURB_ID_AT..SURB_ID_AT + 16].copy_from_slice(destination.surb_id.as_bytes());
        Ok(header)
    }
}

/// A packet of `size`: `header`, then `message` in Sphinx's plaintext layout.
fn assemble(
    size: PacketSize,
    header: &[u8; HEADER_LEN],
    message: &[u8],
) -> Result<Packet, BuildError> {
    let capacity = size.plaintext_capacity();
    if message.len() > capacity {
        return Err(BuildError::MessageTooLong {
            len: message.len(),
            capacity,
        });
    }
    let mut bytes = vec![0u8; size.packet_len()];
    bytes[..HEADER_LEN].copy_from_slice(header);
    let start = HEADER_LEN + ZERO_PREFIX;
    bytes[start..start + message.len()].copy_from_slice(message);
    bytes[start + message.len()] = 1;
    // the length is one of the sizes by construction
    Packet::from_bytes(bytes).map_err(|_| BuildError::EmptyRoute)
}

impl PacketOps for SimOps {
    fn build(
        &self,
        _rng: &mut ChaCha20Rng,
        size: PacketSize,
        route: &[Hop],
        delays: &[Delay],
        destination: &Destination,
        plaintext: &[u8],
    ) -> Result<Packet, BuildError> {
        let header = self.header(route, delays, destination)?;
        assemble(size, &header, plaintext)
    }

    fn surb(
        &self,
        _rng: &mut ChaCha20Rng,
        route: &[Hop],
        delays: &[Delay],
        destination: &Destination,
        version: Version,
    ) -> Result<(Surb, ReplyKey), BuildError> {
        if version == Version::V258 {
            return Err(BuildError::SurbVersion);
        }
        let header = self.header(route, delays, destination)?;
        let first_hop = route.first().ok_or(BuildError::EmptyRoute)?.address;
        let mut bytes = Vec::with_capacity(HEADER_LEN + 32 + SEED_LEN);
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(first_hop.as_bytes());
        bytes.extend_from_slice(&[0; SEED_LEN]);
        let surb = Surb::from_bytes(&bytes).map_err(|_| BuildError::EmptyRoute)?;
        let mut key = Vec::with_capacity(2 + 16 + SEED_LEN);
        key.extend_from_slice(&Version::V260.number().to_be_bytes());
        key.extend_from_slice(destination.surb_id.as_bytes());
        key.extend_from_slice(&[0; SEED_LEN]);
        let key = ReplyKey::from_bytes(&key).map_err(|_| BuildError::ZeroSurbId)?;
        Ok((surb, key))
    }

    fn wrap(
        &self,
        surb: Surb,
        size: PacketSize,
        message: &[u8],
    ) -> Result<(NodeAddress, Packet), BuildError> {
        let bytes = surb.to_bytes();
        let header = bytes
            .first_chunk::<HEADER_LEN>()
            .ok_or(BuildError::EmptyRoute)?;
        // a SURB is used once: the reply is a packet of its own
        let mut header = *header;
        header[ID_AT..ID_AT + 8].copy_from_slice(&self.next_id().0.to_be_bytes());
        Ok((surb.first_hop(), assemble(size, &header, message)?))
    }

    fn open_reply(&self, _key: &ReplyKey, payload: Payload) -> Result<Vec<u8>, PacketError> {
        payload.into_plaintext()
    }

    fn seal(&self, _rng: &mut ChaCha20Rng, recipient: &[u8; 32], message: &[u8]) -> Vec<u8> {
        let mut sealed = Vec::with_capacity(32 + message.len() + 16);
        sealed.extend_from_slice(recipient);
        sealed.extend_from_slice(message);
        sealed.extend_from_slice(&[0; 16]);
        sealed
    }

    fn open(&self, _secret: &[u8; 32], public: &[u8; 32], sealed: &[u8]) -> Option<Vec<u8>> {
        let (to, rest) = sealed.split_first_chunk::<32>()?;
        let (message, tag) = rest.split_last_chunk::<16>()?;
        (to == public && *tag == [0; 16]).then(|| message.to_vec())
    }
}

/// The ground-truth id of a packet in the simulator's format.
pub fn packet_id(packet: &Packet) -> PacketId {
    let bytes = packet.as_bytes();
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[ID_AT..ID_AT + 8]);
    PacketId(u64::from_be_bytes(id))
}

/// The destination a packet in the simulator's format is for.
pub fn destination(packet: &Packet) -> DestinationAddress {
    let mut address = [0u8; 32];
    address.copy_from_slice(&packet.as_bytes()[DESTINATION_AT..DESTINATION_AT + 32]);
    DestinationAddress::new(address)
}

/// What a node makes of a packet in the simulator's format: the unwrapper's work, without
/// keys. `header` is the frame header it came under, passed on unchanged.
pub fn unwrap(packet: Packet, header: FrameHeader) -> Unwrapped {
    let size = packet.size();
    let mut bytes = packet.into_bytes();
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
        return Err(Dropped::Malformed(PacketError::BadMac));
    }
    let hops = usize::from(bytes[HOPS_AT]);
    if hops == 0 || hops > MAX_HOPS {
        return Err(Dropped::Malformed(PacketError::BadMac));
    }
    let mut delay = [0u8; 8];
    delay.copy_from_slice(&bytes[SLOTS_AT + 32..SLOTS_AT + 40]);
    let delay = Delay::from_nanos(u64::from_be_bytes(delay));
    if hops == 1 {
        let mut destination = [0u8; 32];
        destination.copy_from_slice(&bytes[DESTINATION_AT..DESTINATION_AT + 32]);
        let mut surb_id = [0u8; 16];
        surb_id.copy_from_slice(&bytes[SURB_ID_AT..SURB_ID_AT + 16]);
        let payload = Payload::from_bytes(&bytes[HEADER_LEN..]).map_err(Dropped::Malformed)?;
        return Ok(Outcome::Final(Final {
            destination: DestinationAddress::new(destination),
            surb_id: SurbId::new(surb_id),
            payload,
            size,
        }));
    }
    let mut next_hop = [0u8; 32];
    next_hop.copy_from_slice(&bytes[SLOTS_AT + SLOT_LEN..SLOTS_AT + SLOT_LEN + 32]);
    bytes.copy_within(
        SLOTS_AT + SLOT_LEN..SLOTS_AT + SLOT_LEN * MAX_HOPS,
        SLOTS_AT,
    );
    bytes[HOPS_AT] = (hops - 1) as u8;
    let packet = Packet::from_bytes(bytes).map_err(Dropped::Malformed)?;
    Ok(Outcome::Forward(Forward {
        next_hop: NodeAddress::new(next_hop),
        delay,
        packet,
        header,
    }))
}

/// What the simulator learned of a packet as it was built with real Sphinx: its id, and the
/// message number its plaintext carried (the simulated applications' messages start with a
/// marker and their number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Built {
    /// The packet's ground-truth id.
    pub id: PacketId,
    /// The message it carries, if it is one of the applications'.
    pub message: Option<u64>,
}

/// The real operations ([`umbra_client::SphinxOps`]), noting for the simulator which packet
/// each one built is: packets are known by their first 32 bytes (the group element α, fresh
/// at every hop), since their contents are encrypted.
#[derive(Debug, Default)]
pub struct TracedSphinx {
    ids: SimOps,
    built: std::sync::Mutex<std::collections::HashMap<[u8; 32], Built>>,
    /// Messages sealed and not yet in a packet: the ephemeral key their sealing starts with,
    /// and their number.
    sealed: std::sync::Mutex<std::collections::HashMap<[u8; 32], u64>>,
}

/// The first 32 bytes of a packet: how a real Sphinx packet is known at one hop.
pub fn alpha(packet: &Packet) -> [u8; 32] {
    let mut alpha = [0u8; 32];
    alpha.copy_from_slice(&packet.as_bytes()[..32]);
    alpha
}

/// The number of the simulated application's message in `bytes`, if it holds one.
pub fn message_number(bytes: &[u8], marker: &[u8; 8]) -> Option<u64> {
    bytes
        .windows(marker.len())
        .position(|window| window == marker)
        .and_then(|at| bytes.get(at + 8..at + 16))
        .and_then(|number| number.try_into().ok())
        .map(u64::from_be_bytes)
}

impl TracedSphinx {
    /// The simulated applications' messages start with this marker, then their number.
    pub const MARKER: &'static [u8; 8] = b"UMBRASIM";

    /// A fresh packet id.
    pub fn next_id(&self) -> PacketId {
        self.ids.next_id()
    }

    /// Notes a packet made here: its id.
    pub fn note(&self, packet: &Packet, message: Option<u64>) -> PacketId {
        let id = self.next_id();
        self.built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(alpha(packet), Built { id, message });
        id
    }

    /// Takes what is known of the packet whose first bytes are `alpha` (each is seen at one
    /// hop only).
    pub fn take(&self, alpha: &[u8; 32]) -> Option<Built> {
        self.built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(alpha)
    }

    /// What is known of the packet whose first bytes are `alpha`.
    pub fn get(&self, alpha: &[u8; 32]) -> Option<Built> {
        self.built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(alpha)
            .copied()
    }

    /// Notes that the packet whose first bytes are `alpha` is `built` (the next hop's packet
    /// of one just unwrapped).
    pub fn carry(&self, alpha: [u8; 32], built: Built) {
        self.built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(alpha, built);
    }
}

impl PacketOps for TracedSphinx {
    fn build(
        &self,
        rng: &mut ChaCha20Rng,
        size: PacketSize,
        route: &[Hop],
        delays: &[Delay],
        destination: &Destination,
        plaintext: &[u8],
    ) -> Result<Packet, BuildError> {
        let packet =
            umbra_client::SphinxOps.build(rng, size, route, delays, destination, plaintext)?;
        // a message's first piece starts with its sealing's ephemeral key
        let message = plaintext
            .get(umbra_client::FIRST_PIECE_OFFSET..umbra_client::FIRST_PIECE_OFFSET + 32)
            .and_then(|key| <[u8; 32]>::try_from(key).ok())
            .and_then(|key| {
                self.sealed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&key)
            });
        self.note(&packet, message);
        Ok(packet)
    }

    fn surb(
        &self,
        rng: &mut ChaCha20Rng,
        route: &[Hop],
        delays: &[Delay],
        destination: &Destination,
        version: Version,
    ) -> Result<(Surb, ReplyKey), BuildError> {
        umbra_client::SphinxOps.surb(rng, route, delays, destination, version)
    }

    fn wrap(
        &self,
        surb: Surb,
        size: PacketSize,
        message: &[u8],
    ) -> Result<(NodeAddress, Packet), BuildError> {
        let (first_hop, packet) = umbra_client::SphinxOps.wrap(surb, size, message)?;
        self.note(&packet, None);
        Ok((first_hop, packet))
    }

    fn open_reply(&self, key: &ReplyKey, payload: Payload) -> Result<Vec<u8>, PacketError> {
        umbra_client::SphinxOps.open_reply(key, payload)
    }

    fn seal(&self, rng: &mut ChaCha20Rng, recipient: &[u8; 32], message: &[u8]) -> Vec<u8> {
        let sealed = umbra_client::SphinxOps.seal(rng, recipient, message);
        if let (Some(number), Some(key)) = (
            message_number(message, Self::MARKER),
            sealed.first_chunk::<32>(),
        ) {
            self.sealed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(*key, number);
        }
        sealed
    }

    fn open(&self, secret: &[u8; 32], public: &[u8; 32], sealed: &[u8]) -> Option<Vec<u8>> {
        umbra_client::SphinxOps.open(secret, public, sealed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use proptest::prelude::*;
    use rand_core::SeedableRng;
    use umbra_sphinx::{PrivateKey, PublicKey};

    use super::*;

    fn hop(n: u8) -> Hop {
        Hop::new(NodeAddress::new([n; 32]), key())
    }

    fn key() -> PublicKey {
        PrivateKey::from_bytes([7; 32]).public_key()
    }

    proptest! {
        // a packet built along a route unwraps hop by hop into the same next hops, delays,
        // destination, SURB id and message, keeping its id, in every size
        #[test]
        fn packets_carry_their_route_hop_by_hop(
            hops in 1usize..=MAX_HOPS,
            delays in proptest::collection::vec(0u64..10_000_000_000, MAX_HOPS),
            message in proptest::collection::vec(any::<u8>(), 0..300),
            surb in any::<[u8; 16]>(),
            to in any::<[u8; 32]>(),
        ) {
            let ops = SimOps::new();
            let route: Vec<Hop> = (0..hops as u8).map(|n| hop(n + 1)).collect();
            let delays: Vec<Delay> = delays[..hops].iter().map(|&d| Delay::from_nanos(d)).collect();
            let destination = Destination::new(DestinationAddress::new(to), SurbId::new(surb));
            let mut rng = ChaCha20Rng::seed_from_u64(1);
            let mut packet = ops
                .build(&mut rng, PacketSize::Regular, &route, &delays, &destination, &message)
                .unwrap();
            let id = packet_id(&packet);
            for at in 0..hops {
                prop_assert_eq!(packet_id(&packet), id);
                let header = FrameHeader::v7(packet.size());
                match unwrap(packet, header).unwrap() {
                    Outcome::Forward(forward) => {
                        prop_assert!(at + 1 < hops);
                        prop_assert_eq!(forward.next_hop, route[at + 1].address);
                        prop_assert_eq!(forward.delay, delays[at]);
                        packet = forward.packet;
                    }
                    Outcome::Final(last) => {
                        prop_assert_eq!(at + 1, hops);
                        prop_assert_eq!(last.destination, destination.address);
                        prop_assert_eq!(last.surb_id, destination.surb_id);
                        prop_assert_eq!(last.payload.plaintext().unwrap(), &message[..]);
                        return Ok(());
                    }
                }
            }
            prop_assert!(false, "never reached its last hop");
        }
    }

    #[test]
    fn a_reply_through_a_surb_reaches_its_creator_and_seals_keep_the_real_lengths() {
        let ops = SimOps::new();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let route = [hop(1), hop(2), hop(3), hop(4)];
        let destination = Destination::new(DestinationAddress::new([9; 32]), SurbId::new([5; 16]));
        let (surb, key) = ops
            .surb(
                &mut rng,
                &route,
                &[Delay::ZERO; 4],
                &destination,
                Version::V260,
            )
            .unwrap();
        let (first, mut packet) = ops.wrap(surb, PacketSize::Regular, b"reply").unwrap();
        assert_eq!(first, route[0].address);
        loop {
            let header = FrameHeader::v7(packet.size());
            match unwrap(packet, header).unwrap() {
                Outcome::Forward(forward) => packet = forward.packet,
                Outcome::Final(last) => {
                    assert_eq!(last.surb_id, destination.surb_id);
                    assert_eq!(ops.open_reply(&key, last.payload).unwrap(), b"reply");
                    break;
                }
            }
        }
        let sealed = ops.seal(&mut rng, &[3; 32], b"hello");
        assert_eq!(sealed.len(), 5 + 48);
        assert_eq!(ops.open(&[0; 32], &[3; 32], &sealed).unwrap(), b"hello");
        assert!(
            ops.open(&[0; 32], &[4; 32], &sealed).is_none(),
            "opened by another"
        );
        // bytes that are not a packet of this format are refused, not a panic
        let junk = Packet::from_bytes(vec![0xAB; PacketSize::Regular.packet_len()]).unwrap();
        assert!(unwrap(junk, FrameHeader::v7(PacketSize::Regular)).is_err());
    }
}
