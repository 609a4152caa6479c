//! Packets: building them, and what a node does to one.

use std::fmt;

use curve25519_dalek::EdwardsPoint;
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::crypto::{self, HopSecrets, PayloadKey};
use crate::err::{BuildError, PacketError};
use crate::header::{self, HopBlock, Routing};
use crate::keys::PrivateKey;
use crate::params::{HEADER_LEN, PacketSize, Version, ZERO_PREFIX_LEN};
use crate::route::{Delay, Destination, DestinationAddress, Hop, NodeAddress, ReplayTag, SurbId};

/// A Sphinx packet: a header and a payload, in one of the [`PacketSize`]s.
#[derive(Clone, PartialEq, Eq)]
pub struct Packet {
    bytes: Vec<u8>,
    size: PacketSize,
}

impl Packet {
    /// Takes bytes from the network as a packet. Only the length is checked here; the rest is
    /// checked by the node that processes it.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Packet, PacketError> {
        let size = PacketSize::from_packet_len(bytes.len())
            .ok_or(PacketError::WrongLength { len: bytes.len() })?;
        Ok(Packet { bytes, size })
    }

    /// The packet's size.
    pub fn size(&self) -> PacketSize {
        self.size
    }

    /// The packet's bytes, as they go on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The packet's bytes, giving up the packet.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Processes the packet at a node holding `key`: [`PrivateKey::check`] followed by
    /// [`CheckedPacket::finish`], for callers that keep no replay filter.
    pub fn process(self, key: &PrivateKey) -> Result<Processed, PacketError> {
        key.check(self)?.finish()
    }

    /// The header and the payload. Every packet size is longer than a header, so the error
    /// cannot happen for a `Packet`; it is reported rather than assumed.
    fn split_mut(&mut self) -> Result<(&mut [u8; HEADER_LEN], &mut [u8]), PacketError> {
        let len = self.bytes.len();
        self.bytes
            .split_first_chunk_mut::<HEADER_LEN>()
            .ok_or(PacketError::WrongLength { len })
    }

    fn header(&self) -> Result<&[u8; HEADER_LEN], PacketError> {
        self.bytes
            .first_chunk::<HEADER_LEN>()
            .ok_or(PacketError::WrongLength {
                len: self.bytes.len(),
            })
    }
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Builds packets of one size and header version.
///
/// ```
/// use umbra_sphinx::{Delay, Destination, DestinationAddress, Hop, NodeAddress, PacketBuilder,
///     PacketSize, PrivateKey, Processed, SurbId};
///
/// let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
/// # use rand_core::SeedableRng;
/// let keys: Vec<PrivateKey> = (0..3).map(|_| PrivateKey::generate(&mut rng)).collect();
/// let route: Vec<Hop> = keys.iter().enumerate()
///     .map(|(i, key)| Hop::new(NodeAddress::new([i as u8; 32]), key.public_key()))
///     .collect();
/// let destination = Destination::new(DestinationAddress::new([9; 32]), SurbId::default());
/// let delays = [Delay::from_millis(15); 3];
///
/// let mut packet = PacketBuilder::new(PacketSize::Regular)
///     .build(&mut rng, &route, &delays, &destination, b"hello")?;
/// for key in &keys[..2] {
///     match packet.process(key)? {
///         Processed::Forward { packet: next, .. } => packet = next,
///         Processed::Final { .. } => unreachable!(),
///     }
/// }
/// let Processed::Final { payload, .. } = packet.process(&keys[2])? else { unreachable!() };
/// assert_eq!(payload.plaintext()?, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketBuilder {
    size: PacketSize,
    version: Version,
}

impl PacketBuilder {
    /// A builder of packets of `size`, header version 260.
    pub fn new(size: PacketSize) -> Self {
        PacketBuilder {
            size,
            version: Version::default(),
        }
    }

    /// Builds headers of `version` instead.
    #[must_use]
    pub fn version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }

    /// Builds a packet carrying `message` along `route` to `destination`. `delays` has one
    /// delay per hop: hop i holds the packet for `delays[i]` before forwarding it. The final
    /// hop forwards to nobody, so the last delay is not written into the header (as in Nym).
    pub fn build<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        route: &[Hop],
        delays: &[Delay],
        destination: &Destination,
        message: &[u8],
    ) -> Result<Packet, BuildError> {
        let capacity = self.size.plaintext_capacity();
        if message.len() > capacity {
            return Err(BuildError::MessageTooLong {
                len: message.len(),
                capacity,
            });
        }
        let built = header::build(rng, route, delays, destination, self.version)?;
        let keys = built
            .hops
            .iter()
            .map(|hop| hop.payload_key(self.version.has_seeded_payload_keys()));
        Ok(seal(self.size, &built.bytes, message, keys))
    }
}

/// Assembles a packet: `header`, then `message` padded to the payload length and encrypted
/// under each of `keys`, the last key's layer innermost.
pub(crate) fn seal(
    size: PacketSize,
    header: &[u8; HEADER_LEN],
    message: &[u8],
    keys: impl DoubleEndedIterator<Item = PayloadKey>,
) -> Packet {
    let mut bytes = vec![0u8; size.packet_len()];
    bytes[..HEADER_LEN].copy_from_slice(header);
    let start = HEADER_LEN + ZERO_PREFIX_LEN;
    bytes[start..start + message.len()].copy_from_slice(message);
    bytes[start + message.len()] = 1;
    let payload = &mut bytes[HEADER_LEN..];
    for key in keys.rev() {
        crypto::lioness_encrypt(&key, payload);
    }
    Packet { bytes, size }
}

impl PrivateKey {
    /// The cheap first half of processing: decodes α, derives the shared secret, checks the
    /// header MAC, and reveals the packet's replay tag. A node that has seen the tag before
    /// drops the [`CheckedPacket`] and saves the expensive half.
    pub fn check(&self, packet: Packet) -> Result<CheckedPacket, PacketError> {
        check_with_keys(&[self], packet)
    }

    /// [`PrivateKey::check`] for many packets at once: the same results, in the same order,
    /// for less CPU per packet. Converting between the curve's two forms costs a field
    /// inversion per packet, as much as 250 multiplications; a batch shares one. Meant for a
    /// node with packets queued; it allocates a few small vectors per batch.
    pub fn check_batch(&self, packets: Vec<Packet>) -> Vec<Result<CheckedPacket, PacketError>> {
        check_batch_with_keys(&[self], packets)
    }

    /// Processes a packet in one step; see [`Packet::process`].
    pub fn process(&self, packet: Packet) -> Result<Processed, PacketError> {
        packet.process(self)
    }
}

/// [`PrivateKey::check`] with the first of `keys` whose MAC verifies: for a node holding the
/// keys of two rotations that is not told which one a packet was built for. α is decoded only
/// once. [`CheckedPacket::key_index`] says which key it was; with no key that fits, the error
/// is [`PacketError::BadMac`].
pub fn check_with_keys(keys: &[&PrivateKey], packet: Packet) -> Result<CheckedPacket, PacketError> {
    let header = packet.header()?;
    let alpha = crypto::decode_point(&header::alpha(header))?;
    for (key_index, key) in keys.iter().enumerate() {
        let shared = Zeroizing::new(crypto::x25519(&alpha, *key.as_bytes())?);
        match header::verify(header, &shared) {
            Ok(secrets) => {
                return Ok(CheckedPacket {
                    packet,
                    alpha,
                    secrets,
                    key_index,
                });
            }
            Err(PacketError::BadMac) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(PacketError::BadMac)
}

/// [`check_with_keys`] for many packets at once (see [`PrivateKey::check_batch`]): one batch
/// per key, each over the packets no earlier key opened.
pub fn check_batch_with_keys(
    keys: &[&PrivateKey],
    packets: Vec<Packet>,
) -> Vec<Result<CheckedPacket, PacketError>> {
    let alphas: Vec<Result<[u8; 32], PacketError>> = packets
        .iter()
        .map(|p| p.header().map(header::alpha))
        .collect();
    let points: Vec<Result<EdwardsPoint, PacketError>> = crypto::decode_points(
        alphas
            .iter()
            .map(|alpha| alpha.as_ref().unwrap_or(&[0; 32])),
    )
    .into_iter()
    .zip(&alphas)
    .map(|(point, alpha)| alpha.and(point))
    .collect();
    // Until a key opens it, a packet stands refused with a bad MAC, the answer when none does.
    let mut opened: Vec<Result<(usize, HopSecrets), PacketError>> = points
        .iter()
        .map(|point| Err(point.as_ref().err().copied().unwrap_or(PacketError::BadMac)))
        .collect();
    for (key_index, key) in keys.iter().enumerate() {
        let waiting: Vec<Result<&EdwardsPoint, PacketError>> = points
            .iter()
            .zip(&opened)
            .map(|(point, opened)| match (point, opened) {
                (Ok(point), Err(PacketError::BadMac)) => Ok(point),
                _ => Err(PacketError::BadMac),
            })
            .collect();
        let shared = batch_by_index(&waiting, |point| (*point, *key.as_bytes()));
        for (((slot, waiting), shared), packet) in
            opened.iter_mut().zip(&waiting).zip(shared).zip(&packets)
        {
            if waiting.is_ok() {
                *slot = shared.and_then(|shared| {
                    let shared = Zeroizing::new(shared);
                    header::verify(packet.header()?, &shared).map(|secrets| (key_index, secrets))
                });
            }
        }
    }
    packets
        .into_iter()
        .zip(points)
        .zip(opened)
        .map(|((packet, alpha), opened)| {
            let (key_index, secrets) = opened?;
            Ok(CheckedPacket {
                packet,
                alpha: alpha?,
                secrets,
                key_index,
            })
        })
        .collect()
}

/// X25519 of every `Ok` item in one batch (see [`crypto::x25519_batch`]), with results
/// placed back at the items' indices; an `Err` item keeps its error.
fn batch_by_index<T>(
    items: &[Result<T, PacketError>],
    pair: impl Fn(&T) -> (&EdwardsPoint, [u8; 32]),
) -> Vec<Result<[u8; 32], PacketError>> {
    let pairs: Vec<(&EdwardsPoint, [u8; 32])> = items
        .iter()
        .filter_map(|item| item.as_ref().ok())
        .map(pair)
        .collect();
    let mut computed = crypto::x25519_batch(&pairs).into_iter();
    items
        .iter()
        .map(|item| match item {
            // one result per `Ok` item, in order, so `computed` cannot run dry here
            Ok(_) => computed.next().unwrap_or(Err(PacketError::SmallOrderPoint)),
            Err(error) => Err(*error),
        })
        .collect()
}

/// A packet whose header MAC verified under a node's key, waiting for the replay check.
pub struct CheckedPacket {
    packet: Packet,
    alpha: EdwardsPoint,
    secrets: HopSecrets,
    key_index: usize,
}

impl CheckedPacket {
    /// The packet's replay tag under this node's key.
    pub fn replay_tag(&self) -> ReplayTag {
        ReplayTag::from_bytes(*self.secrets.replay_tag())
    }

    /// Which of the keys given to [`check_with_keys`] opened the packet (0 for
    /// [`PrivateKey::check`]).
    pub fn key_index(&self) -> usize {
        self.key_index
    }

    /// The expensive second half: decrypts the routing block, blinds α for the next hop and
    /// removes this hop's payload layer, all in place in the packet's buffer (nothing is
    /// allocated).
    pub fn finish(self) -> Result<Processed, PacketError> {
        let block = header::read_block(self.packet.header()?, &self.secrets)?;
        let next_alpha = match block.routing {
            Routing::Forward { .. } => {
                crypto::x25519(&self.alpha, *self.secrets.blinding_factor())?
            }
            Routing::Final { .. } => [0; 32],
        };
        self.complete(block, next_alpha)
    }

    /// [`CheckedPacket::finish`] for many packets at once: the same results, in the same
    /// order, sharing the field inversion of the blinding (see [`PrivateKey::check_batch`]).
    pub fn finish_batch(checked: Vec<CheckedPacket>) -> Vec<Result<Processed, PacketError>> {
        let blocks: Vec<Result<HopBlock, PacketError>> = checked
            .iter()
            .map(|c| header::read_block(c.packet.header()?, &c.secrets))
            .collect();
        let forwards: Vec<Result<&CheckedPacket, PacketError>> = checked
            .iter()
            .zip(&blocks)
            .map(|(c, block)| match block {
                Ok(HopBlock {
                    routing: Routing::Forward { .. },
                    ..
                }) => Ok(c),
                // final hops and broken blocks need no blinding; the error is never read
                _ => Err(PacketError::BadMac),
            })
            .collect();
        let blinded = batch_by_index(&forwards, |c| (&c.alpha, *c.secrets.blinding_factor()));
        checked
            .into_iter()
            .zip(blocks)
            .zip(blinded)
            .map(|((checked, block), blinded)| {
                let block = block?;
                let next_alpha = match block.routing {
                    Routing::Forward { .. } => blinded?,
                    Routing::Final { .. } => [0; 32],
                };
                checked.complete(block, next_alpha)
            })
            .collect()
    }

    /// Writes the next header (for a forward hop) and removes this hop's payload layer.
    fn complete(self, block: HopBlock, next_alpha: [u8; 32]) -> Result<Processed, PacketError> {
        let CheckedPacket {
            mut packet,
            secrets,
            ..
        } = self;
        let (header, payload) = packet.split_mut()?;
        let key = secrets.payload_key(block.version.has_seeded_payload_keys());
        crypto::lioness_decrypt(&key, payload);
        Ok(match block.routing {
            Routing::Forward { next_hop, delay } => {
                block.rewrite(header, &next_alpha);
                Processed::Forward {
                    next_hop,
                    delay,
                    packet,
                }
            }
            Routing::Final {
                destination,
                surb_id,
            } => Processed::Final {
                destination,
                surb_id,
                payload: Payload {
                    bytes: packet.bytes,
                },
            },
        })
    }
}

impl fmt::Debug for CheckedPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckedPacket")
            .field("size", &self.packet.size)
            .finish_non_exhaustive()
    }
}

/// What a node does with a packet.
#[derive(Debug)]
pub enum Processed {
    /// Hold `packet` for `delay`, then send it to `next_hop`.
    Forward {
        /// The next node.
        next_hop: NodeAddress,
        /// How long to hold the packet first.
        delay: Delay,
        /// The packet for the next node.
        packet: Packet,
    },
    /// This node is the last: hand `payload` to `destination`.
    Final {
        /// Where the packet is going.
        destination: DestinationAddress,
        /// The SURB id the sender put in the header.
        surb_id: SurbId,
        /// The payload with every layer removed (except, for a reply through a version 260
        /// SURB, the one only its creator can remove; see [`crate::ReplyKey`]).
        payload: Payload,
    },
}

/// The payload of a packet that reached its final hop.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload {
    /// The packet's whole buffer; the payload is what follows the header. Keeping the buffer
    /// spares a copy.
    bytes: Vec<u8>,
}

impl Payload {
    /// Takes received payload bytes (for example, handed over by a gateway).
    pub fn from_bytes(payload: &[u8]) -> Result<Payload, PacketError> {
        let size = PacketSize::from_packet_len(HEADER_LEN + payload.len())
            .ok_or(PacketError::PayloadLength { len: payload.len() })?;
        let mut bytes = vec![0u8; size.packet_len()];
        bytes[HEADER_LEN..].copy_from_slice(payload);
        Ok(Payload { bytes })
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// The message the payload carries, after checking that it decrypted correctly: 16 zero
    /// bytes in front (compared in constant time), then the message, a `0x01`, and zeros.
    /// Any change to the payload on the way scrambles all of it, so this check catches it.
    pub fn plaintext(&self) -> Result<&[u8], PacketError> {
        let payload = self.as_bytes();
        let (prefix, padded) = payload.split_at(ZERO_PREFIX_LEN);
        let prefix_ok: bool = prefix.ct_eq(&[0u8; ZERO_PREFIX_LEN]).into();
        let end = padded.iter().rposition(|&byte| byte != 0);
        match (prefix_ok, end) {
            (true, Some(end)) if padded[end] == 1 => Ok(&padded[..end]),
            _ => Err(PacketError::BadPayload),
        }
    }

    /// Like [`Payload::plaintext`], giving up the payload for an owned message (no copy).
    pub fn into_plaintext(self) -> Result<Vec<u8>, PacketError> {
        let len = self.plaintext()?.len();
        let mut bytes = self.bytes;
        let start = HEADER_LEN + ZERO_PREFIX_LEN;
        bytes.truncate(start + len);
        bytes.drain(..start);
        Ok(bytes)
    }

    pub(crate) fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[HEADER_LEN..]
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("len", &self.as_bytes().len())
            .finish_non_exhaustive()
    }
}
