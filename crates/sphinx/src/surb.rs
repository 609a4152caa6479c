//! Single-use reply blocks: a header made in advance that lets someone reply without learning
//! the route, or who made it.
//!
//! The creator builds a [`Surb`] along a route back to itself and keeps the [`ReplyKey`]; the
//! replier [`wraps`](Surb::wrap) a message in it and sends the packet to the SURB's first hop;
//! the hops process it like any packet; the final hop hands the payload to the creator, who
//! [`opens`](ReplyKey::open) it.
//!
//! - Version 260 (the default): the SURB carries only the last hop's payload key seed. The
//!   replier adds one layer; every hop removes one of its own; only the creator, holding
//!   every seed, can undo them. The replier cannot follow its reply through the network by
//!   recognising its payload at each hop.
//! - Version 259: the SURB carries every hop's seed, the replier adds every layer and the
//!   final hop sees the plaintext (what Nym's older SURBs do).
//!
//! Serialized SURBs are Nym's: header 348 ‖ first hop 32 ‖ seeds (16 each, route order).

use std::fmt;

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::crypto::{self, PAYLOAD_SEED_LEN, PayloadSeed};
use crate::err::{BuildError, PacketError};
use crate::header;
use crate::packet::{self, Packet, Payload};
use crate::params::{HEADER_LEN, MAX_HOPS, PacketSize, Version};
use crate::route::{Delay, Destination, Hop, NodeAddress, SurbId};

/// Bytes of a serialized SURB before its seeds.
const SURB_FIXED_LEN: usize = HEADER_LEN + 32;

/// A single-use reply block. Holds payload key seeds, so it is wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Surb {
    header: [u8; HEADER_LEN],
    #[zeroize(skip)]
    first_hop: NodeAddress,
    seeds: Vec<PayloadSeed>,
}

impl Surb {
    /// Builds a SURB along `route` (one delay per hop, as for a packet) back to `destination`,
    /// usually the creator's own address; `destination.surb_id` is how the creator will find
    /// the returned [`ReplyKey`] when the reply arrives. Versions 259 and 260; 260 needs a
    /// non-zero SURB id.
    pub fn new<R: CryptoRng + ?Sized>(
        rng: &mut R,
        route: &[Hop],
        delays: &[Delay],
        destination: &Destination,
        version: Version,
    ) -> Result<(Surb, ReplyKey), BuildError> {
        match version {
            Version::V258 => return Err(BuildError::SurbVersion),
            Version::V260 if destination.surb_id.is_zero() => return Err(BuildError::ZeroSurbId),
            Version::V259 | Version::V260 => {}
        }
        let built = header::build(rng, route, delays, destination, version)?;
        let first_hop = route.first().ok_or(BuildError::EmptyRoute)?.address;
        let all_seeds: Vec<PayloadSeed> = built.hops.iter().map(|hop| hop.payload_seed()).collect();
        let (seeds, reply_seeds) = match version {
            Version::V260 => (all_seeds.last().copied().into_iter().collect(), all_seeds),
            _ => (all_seeds, Vec::new()),
        };
        let surb = Surb {
            header: built.bytes,
            first_hop,
            seeds,
        };
        let key = ReplyKey {
            version,
            surb_id: destination.surb_id,
            seeds: reply_seeds,
        };
        Ok((surb, key))
    }

    /// The node the reply must be sent to first.
    pub fn first_hop(&self) -> NodeAddress {
        self.first_hop
    }

    /// Wraps `message` into a packet of `size` that travels the SURB's route. Returns the
    /// packet and the node to send it to. A SURB is used once.
    pub fn wrap(
        self,
        size: PacketSize,
        message: &[u8],
    ) -> Result<(NodeAddress, Packet), BuildError> {
        let capacity = size.plaintext_capacity();
        if message.len() > capacity {
            return Err(BuildError::MessageTooLong {
                len: message.len(),
                capacity,
            });
        }
        let keys = self.seeds.iter().map(crypto::payload_key_from_seed);
        Ok((
            self.first_hop,
            packet::seal(size, &self.header, message, keys),
        ))
    }

    /// The SURB's bytes, in Nym's layout.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(SURB_FIXED_LEN + PAYLOAD_SEED_LEN * self.seeds.len());
        bytes.extend_from_slice(&self.header);
        bytes.extend_from_slice(self.first_hop.as_bytes());
        for seed in &self.seeds {
            bytes.extend_from_slice(seed);
        }
        bytes
    }

    /// Reads a SURB from its bytes (as received from whoever wants a reply).
    pub fn from_bytes(bytes: &[u8]) -> Result<Surb, PacketError> {
        let wrong_length = PacketError::SurbLength { len: bytes.len() };
        let (fixed, seed_bytes) = bytes.split_at_checked(SURB_FIXED_LEN).ok_or(wrong_length)?;
        let (header, first_hop) = fixed
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(wrong_length)?;
        let first_hop: [u8; 32] = first_hop.try_into().map_err(|_| wrong_length)?;
        let (seeds, rest) = seed_bytes.as_chunks::<PAYLOAD_SEED_LEN>();
        if !rest.is_empty() || seeds.is_empty() || seeds.len() > MAX_HOPS {
            return Err(wrong_length);
        }
        Ok(Surb {
            header: *header,
            first_hop: NodeAddress::new(first_hop),
            seeds: seeds.to_vec(),
        })
    }
}

impl fmt::Debug for Surb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Surb")
            .field("first_hop", &self.first_hop)
            .field("seeds", &format_args!("<{} redacted>", self.seeds.len()))
            .finish_non_exhaustive()
    }
}

/// What a SURB's creator keeps to read the reply. Holds every hop's payload key seed (for
/// version 260), so it is wiped when dropped; `Debug` does not show them.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ReplyKey {
    #[zeroize(skip)]
    version: Version,
    #[zeroize(skip)]
    surb_id: SurbId,
    seeds: Vec<PayloadSeed>,
}

impl ReplyKey {
    /// The SURB id the reply will arrive with.
    pub fn surb_id(&self) -> SurbId {
        self.surb_id
    }

    /// The header version of the SURB.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Reads the reply that arrived through the SURB: removes what only the creator can
    /// remove (version 260) and checks the payload.
    pub fn open(&self, mut payload: Payload) -> Result<Vec<u8>, PacketError> {
        let keys: Vec<_> = self
            .seeds
            .iter()
            .map(crypto::payload_key_from_seed)
            .collect();
        if let Some(last) = keys.last() {
            // The hops removed layers 1..n from the replier's single layer n; adding them back
            // outermost-last restores that layer, which the last hop's key then removes.
            let block = payload.payload_mut();
            for key in keys.iter().rev() {
                crypto::lioness_encrypt(key, block);
            }
            crypto::lioness_decrypt(last, block);
        }
        payload.into_plaintext()
    }

    /// The key's bytes, for storing it: version (2, big-endian) ‖ SURB id (16) ‖ seeds (16 each).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(18 + PAYLOAD_SEED_LEN * self.seeds.len());
        bytes.extend_from_slice(&self.version.number().to_be_bytes());
        bytes.extend_from_slice(self.surb_id.as_bytes());
        for seed in &self.seeds {
            bytes.extend_from_slice(seed);
        }
        bytes
    }

    /// Reads a key written by [`ReplyKey::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<ReplyKey, PacketError> {
        let malformed = PacketError::ReplyKeyEncoding;
        let (version, rest) = bytes.split_first_chunk::<2>().ok_or(malformed)?;
        let (surb_id, seed_bytes) = rest.split_first_chunk::<16>().ok_or(malformed)?;
        let version = Version::from_number(u16::from_be_bytes(*version)).ok_or(malformed)?;
        let (seeds, rest) = seed_bytes.as_chunks::<PAYLOAD_SEED_LEN>();
        let seeds_fit = match version {
            Version::V260 => (1..=MAX_HOPS).contains(&seeds.len()),
            Version::V259 => seeds.is_empty(),
            Version::V258 => false,
        };
        if !rest.is_empty() || !seeds_fit {
            return Err(malformed);
        }
        Ok(ReplyKey {
            version,
            surb_id: SurbId::new(*surb_id),
            seeds: seeds.to_vec(),
        })
    }
}

impl fmt::Debug for ReplyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyKey")
            .field("version", &self.version)
            .field("surb_id", &self.surb_id)
            .field("seeds", &format_args!("<{} redacted>", self.seeds.len()))
            .finish()
    }
}
