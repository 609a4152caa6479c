//! The packet operations the client core asks for, behind one seam: building Sphinx packets
//! and SURBs, wrapping a reply in a SURB, reading a reply, and sealing a message to its
//! recipient.
//!
//! The daemons use [`SphinxOps`], the real cryptography. The simulator (`umbra-sim`) gives the
//! core an implementation that carries the same routing information (hops, delays,
//! destination, SURB id) in the clear in packets of the same sizes, so it can run the core's
//! own logic — scheduling, cover, acks, retransmission, routes — for millions of packets
//! without the cost of the cryptography. Nothing else in the core changes with it.

use std::fmt::Debug;

use rand_chacha::ChaCha20Rng;
use umbra_sphinx::{
    BuildError, Delay, Destination, Hop, NodeAddress, Packet, PacketBuilder, PacketError,
    PacketSize, Payload, ReplyKey, Surb, Version,
};

use crate::seal;

/// The operations on packets and messages the client core needs.
pub trait PacketOps: Debug + Send + Sync {
    /// A packet of `size` along `route`, each hop holding it for its `delays` entry, to
    /// `destination`, carrying `plaintext` ([`PacketBuilder::build`]).
    fn build(
        &self,
        rng: &mut ChaCha20Rng,
        size: PacketSize,
        route: &[Hop],
        delays: &[Delay],
        destination: &Destination,
        plaintext: &[u8],
    ) -> Result<Packet, BuildError>;

    /// A SURB along `route` back to `destination`, and the key to read what comes through it
    /// ([`Surb::new`]).
    fn surb(
        &self,
        rng: &mut ChaCha20Rng,
        route: &[Hop],
        delays: &[Delay],
        destination: &Destination,
        version: Version,
    ) -> Result<(Surb, ReplyKey), BuildError>;

    /// `message` in a packet of `size` through `surb`, and the node to send it to
    /// ([`Surb::wrap`]).
    fn wrap(
        &self,
        surb: Surb,
        size: PacketSize,
        message: &[u8],
    ) -> Result<(NodeAddress, Packet), BuildError>;

    /// The reply that arrived through the SURB of `key` ([`ReplyKey::open`]).
    fn open_reply(&self, key: &ReplyKey, payload: Payload) -> Result<Vec<u8>, PacketError>;

    /// `message` sealed to the holder of `recipient`'s private key; exactly
    /// `SEAL_OVERHEAD` (48) bytes longer than `message`.
    fn seal(&self, rng: &mut ChaCha20Rng, recipient: &[u8; 32], message: &[u8]) -> Vec<u8>;

    /// A message sealed to this client (`secret`, whose public key is `public`); `None` if it
    /// was not, or was altered.
    fn open(&self, secret: &[u8; 32], public: &[u8; 32], sealed: &[u8]) -> Option<Vec<u8>>;
}

/// The real operations: Sphinx and X25519/ChaCha20-Poly1305 sealing.
#[derive(Clone, Copy, Debug, Default)]
pub struct SphinxOps;

impl PacketOps for SphinxOps {
    fn build(
        &self,
        rng: &mut ChaCha20Rng,
        size: PacketSize,
        route: &[Hop],
        delays: &[Delay],
        destination: &Destination,
        plaintext: &[u8],
    ) -> Result<Packet, BuildError> {
        PacketBuilder::new(size).build(rng, route, delays, destination, plaintext)
    }

    fn surb(
        &self,
        rng: &mut ChaCha20Rng,
        route: &[Hop],
        delays: &[Delay],
        destination: &Destination,
        version: Version,
    ) -> Result<(Surb, ReplyKey), BuildError> {
        Surb::new(rng, route, delays, destination, version)
    }

    fn wrap(
        &self,
        surb: Surb,
        size: PacketSize,
        message: &[u8],
    ) -> Result<(NodeAddress, Packet), BuildError> {
        surb.wrap(size, message)
    }

    fn open_reply(&self, key: &ReplyKey, payload: Payload) -> Result<Vec<u8>, PacketError> {
        key.open(payload)
    }

    fn seal(&self, rng: &mut ChaCha20Rng, recipient: &[u8; 32], message: &[u8]) -> Vec<u8> {
        seal::seal(rng, recipient, message)
    }

    fn open(&self, secret: &[u8; 32], _public: &[u8; 32], sealed: &[u8]) -> Option<Vec<u8>> {
        seal::open(secret, sealed)
    }
}
