//! The Sphinx header (Danezis & Goldberg 2009, §3), in Nym's layout:
//!
//! ```text
//! header   = α (32) ‖ γ (16) ‖ β (300)
//! β        = hop block (60) ‖ the next hop's β, cut to 240
//! hop block, forward = 0x01 ‖ version (3) ‖ next address (32) ‖ delay (8) ‖ next γ (16)
//! hop block, final   = 0x02 ‖ version (3) ‖ destination (32) ‖ SURB id (16) ‖ random padding
//! ```
//!
//! A hop XORs `β ‖ 0^60` with 360 bytes of its keystream, reads its block from the front and
//! keeps the remaining 300 bytes as the next β. The sender precomputes what those appended
//! keystream bytes will be (the filler) so that every hop's MAC covers exactly what that hop
//! will see.

use curve25519_dalek::EdwardsPoint;
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::crypto::{self, HopSecrets, ScalarChain};
use crate::err::{BuildError, PacketError};
use crate::params::{
    ALPHA_LEN, FLAG_FINAL, FLAG_FORWARD, HEADER_LEN, HOP_BLOCK_LEN, KEYSTREAM_LEN, MAC_LEN,
    MAX_HOPS, ROUTING_LEN, VERSION_LEN, Version,
};
use crate::route::{Delay, Destination, DestinationAddress, Hop, NodeAddress, SurbId};

/// Where γ and β start in a header.
const MAC_AT: usize = ALPHA_LEN;
const ROUTING_AT: usize = ALPHA_LEN + MAC_LEN;

/// A header as the sender built it, with every hop's secrets (for the payload keys).
pub(crate) struct BuiltHeader {
    pub(crate) bytes: [u8; HEADER_LEN],
    pub(crate) hops: Vec<HopSecrets>,
}

/// Builds the header of a packet along `route`.
///
/// Randomness drawn from `rng`, in order: 32 bytes of the sender's secret x, then the random
/// padding of the final hop block. (The test vectors rely on this order.)
pub(crate) fn build<R: CryptoRng + ?Sized>(
    rng: &mut R,
    route: &[Hop],
    delays: &[Delay],
    destination: &Destination,
    version: Version,
) -> Result<BuiltHeader, BuildError> {
    let hops = route.len();
    if hops == 0 {
        return Err(BuildError::EmptyRoute);
    }
    if hops > MAX_HOPS {
        return Err(BuildError::RouteTooLong { hops });
    }
    if delays.len() != hops {
        return Err(BuildError::DelayCount {
            hops,
            delays: delays.len(),
        });
    }

    // Key material: α_0 = x·G; hop i shares u(x·b_0···b_{i-1}·K_i).
    let mut x = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(x.as_mut());
    let alpha = EdwardsPoint::mul_base_clamped(*x)
        .to_montgomery()
        .to_bytes();
    let mut chain = ScalarChain::new(&x);
    let mut secrets: Vec<HopSecrets> = Vec::with_capacity(hops);
    for (i, hop) in route.iter().enumerate() {
        if let Some(previous) = i.checked_sub(1).and_then(|p| secrets.get(p)) {
            chain.push(previous.blinding_factor());
        }
        let shared = Zeroizing::new(chain.shared_secret(hop.key.cleared_point()));
        secrets.push(HopSecrets::derive(&shared));
    }

    // β of the final hop: its block, padding, encrypted; then the filler.
    let mut routing = [0u8; ROUTING_LEN];
    let final_len = ROUTING_LEN - HOP_BLOCK_LEN * (hops - 1);
    let (final_block, filler_room) = routing.split_at_mut(final_len);
    final_block[0] = FLAG_FINAL;
    final_block[1..1 + VERSION_LEN].copy_from_slice(&version.to_bytes());
    final_block[4..36].copy_from_slice(destination.address.as_bytes());
    final_block[36..52].copy_from_slice(destination.surb_id.as_bytes());
    rng.fill_bytes(&mut final_block[52..]);
    let (last, earlier) = secrets.split_last().ok_or(BuildError::EmptyRoute)?;
    crypto::apply_keystream(last.stream_key(), final_block);
    write_filler(earlier, filler_room);
    let mut mac = crypto::header_mac(last.mac_key(), &routing);

    // Wrap the blocks of the forward hops around it, innermost first.
    for (i, hop) in earlier.iter().enumerate().rev() {
        let mut wrapped = [0u8; ROUTING_LEN];
        let (block, rest) = wrapped.split_at_mut(HOP_BLOCK_LEN);
        block[0] = FLAG_FORWARD;
        block[1..4].copy_from_slice(&version.to_bytes());
        block[4..36].copy_from_slice(route[i + 1].address.as_bytes());
        block[36..44].copy_from_slice(&delays[i].to_bytes());
        block[44..60].copy_from_slice(&mac);
        rest.copy_from_slice(&routing[..ROUTING_LEN - HOP_BLOCK_LEN]);
        crypto::apply_keystream(hop.stream_key(), &mut wrapped);
        routing = wrapped;
        mac = crypto::header_mac(hop.mac_key(), &routing);
    }

    let mut bytes = [0u8; HEADER_LEN];
    bytes[..MAC_AT].copy_from_slice(&alpha);
    bytes[MAC_AT..ROUTING_AT].copy_from_slice(&mac);
    bytes[ROUTING_AT..].copy_from_slice(&routing);
    Ok(BuiltHeader {
        bytes,
        hops: secrets,
    })
}

/// Writes the filler: the keystream bytes that the hops before the last append to β as they
/// shift it, so the final hop's β (and its MAC) can be known in advance.
///
/// Step i (1-based) appends 60 zero bytes and XORs in the last `60·i` bytes of hop i-1's
/// keystream.
fn write_filler(hops: &[HopSecrets], filler: &mut [u8]) {
    debug_assert_eq!(filler.len(), HOP_BLOCK_LEN * hops.len());
    for (i, hop) in hops.iter().enumerate() {
        let len = HOP_BLOCK_LEN * (i + 1);
        let mut keystream = Zeroizing::new([0u8; KEYSTREAM_LEN]);
        crypto::apply_keystream(hop.stream_key(), keystream.as_mut());
        for (byte, key) in filler[..len]
            .iter_mut()
            .zip(&keystream[KEYSTREAM_LEN - len..])
        {
            *byte ^= key;
        }
    }
}

/// What a hop learns from its routing block.
pub(crate) enum Routing {
    Forward {
        next_hop: NodeAddress,
        delay: Delay,
    },
    Final {
        destination: DestinationAddress,
        surb_id: SurbId,
    },
}

/// The group element α of a header.
pub(crate) fn alpha(header: &[u8; HEADER_LEN]) -> [u8; ALPHA_LEN] {
    let mut alpha = [0u8; ALPHA_LEN];
    alpha.copy_from_slice(&header[..ALPHA_LEN]);
    alpha
}

/// Derives a hop's secrets from its shared secret and checks the header MAC with them.
pub(crate) fn verify(
    header: &[u8; HEADER_LEN],
    shared: &[u8; 32],
) -> Result<HopSecrets, PacketError> {
    let secrets = HopSecrets::derive(shared);
    let (mac, routing) = header[MAC_AT..].split_at(MAC_LEN);
    if !crypto::verify_header_mac(secrets.mac_key(), routing, mac) {
        return Err(PacketError::BadMac);
    }
    Ok(secrets)
}

/// A hop's decrypted routing block, and the keystream that shifts β.
pub(crate) struct HopBlock {
    pub(crate) version: Version,
    pub(crate) routing: Routing,
    next_mac: [u8; MAC_LEN],
    keystream: Zeroizing<[u8; KEYSTREAM_LEN]>,
}

/// Decrypts the hop block at the front of β.
pub(crate) fn read_block(
    header: &[u8; HEADER_LEN],
    secrets: &HopSecrets,
) -> Result<HopBlock, PacketError> {
    let mut keystream = Zeroizing::new([0u8; KEYSTREAM_LEN]);
    crypto::apply_keystream(secrets.stream_key(), keystream.as_mut());
    let mut block = Zeroizing::new([0u8; HOP_BLOCK_LEN]);
    for ((out, byte), key) in block
        .iter_mut()
        .zip(&header[ROUTING_AT..])
        .zip(keystream.iter())
    {
        *out = byte ^ key;
    }
    let version = Version::from_bytes([block[1], block[2], block[3]])?;
    let mut first = [0u8; 32];
    first.copy_from_slice(&block[4..36]);
    let mut next_mac = [0u8; MAC_LEN];
    let routing = match block[0] {
        FLAG_FORWARD => {
            let mut delay = [0u8; 8];
            delay.copy_from_slice(&block[36..44]);
            next_mac.copy_from_slice(&block[44..60]);
            Routing::Forward {
                next_hop: NodeAddress::new(first),
                delay: Delay::from_bytes(delay),
            }
        }
        FLAG_FINAL => {
            let mut surb_id = [0u8; 16];
            surb_id.copy_from_slice(&block[36..52]);
            Routing::Final {
                destination: DestinationAddress::new(first),
                surb_id: SurbId::new(surb_id),
            }
        }
        flag => return Err(PacketError::UnknownFlag { flag }),
    };
    Ok(HopBlock {
        version,
        routing,
        next_mac,
        keystream,
    })
}

impl HopBlock {
    /// Turns `header` into the next hop's, in place: the blinded α, the next γ, and β
    /// shifted by one block, `β' = (β[60..] ‖ 0^60) ^ keystream[60..]`.
    pub(crate) fn rewrite(&self, header: &mut [u8; HEADER_LEN], next_alpha: &[u8; ALPHA_LEN]) {
        let routing = &mut header[ROUTING_AT..];
        routing.copy_within(HOP_BLOCK_LEN.., 0);
        let kept = ROUTING_LEN - HOP_BLOCK_LEN;
        for (byte, key) in routing[..kept]
            .iter_mut()
            .zip(&self.keystream[HOP_BLOCK_LEN..])
        {
            *byte ^= key;
        }
        routing[kept..].copy_from_slice(&self.keystream[HOP_BLOCK_LEN + kept..]);
        header[MAC_AT..ROUTING_AT].copy_from_slice(&self.next_mac);
        header[..MAC_AT].copy_from_slice(next_alpha);
    }
}
