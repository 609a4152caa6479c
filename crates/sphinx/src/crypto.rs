//! The primitives the format fixes: X25519 computed on the Edwards form, the per-hop key
//! derivation, the header keystream and MAC, and the Lioness payload cipher.
//!
//! # X25519 on the Edwards form
//!
//! Every Diffie-Hellman in Sphinx is an X25519 function: the u-coordinate of
//! `clamp(k)·P`, where P is any point with the given u-coordinate. That u-coordinate does not
//! depend on which of the two points ±P is taken, so it can be computed on the twisted
//! Edwards form of the curve, where curve25519-dalek multiplies with its vector backends
//! (AVX2, AVX-512 IFMA, chosen at run time) 2-4 times faster than the Montgomery ladder. A hop
//! decompresses α once and multiplies it twice: by its private key and by the blinding factor.
//! Results are byte-for-byte those of the ladder; `tests` below check it against
//! `x25519-dalek`.

use aes::Aes128;
use blake2::Blake2bMac;
use blake2::digest::consts::U32;
use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::{EdwardsPoint, MontgomeryPoint, Scalar};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::err::PacketError;
use crate::field::{self, FieldElement};
use crate::params::{ALPHA_LEN, MAC_LEN};

/// Info string of the per-hop key derivation (a fact of the wire format).
const HOP_KDF_INFO: &[u8] =
    b"Dwste mou enan moxlo arketa makru kai ena upomoxlio gia na ton topothetisw kai tha kinisw thn gh.";
/// Salt and info of the payload key derivation for versions 259 and 260.
const PAYLOAD_KDF_SALT: &[u8] = b"sphinx-payload-key-V01-CS01-HKDF:SHA256-SALT";
const PAYLOAD_KDF_INFO: &[u8] = b"sphinx-payload-key-V01-CS01-HKDF:SHA256-INFO";

/// Bytes of a Lioness key (and of a 258 payload key).
pub(crate) const PAYLOAD_KEY_LEN: usize = 192;
/// Bytes of a payload key seed (259, 260).
pub(crate) const PAYLOAD_SEED_LEN: usize = 16;

/// A 192-byte Lioness key, wiped when dropped.
pub(crate) type PayloadKey = Zeroizing<[u8; PAYLOAD_KEY_LEN]>;
/// A 16-byte payload key seed.
pub(crate) type PayloadSeed = [u8; PAYLOAD_SEED_LEN];

// ---------------------------------------------------------------------------------------------
// Curve

/// Decodes a point given by its u-coordinate (a header's α, a public key) into an Edwards
/// point of either sign.
///
/// Refuses encodings that are not canonical, so that no two encodings of α share a shared
/// secret (X25519 ignores the top bit; without this check flipping it would go unnoticed),
/// and points of the twist, which honest senders never produce.
pub(crate) fn decode_point(bytes: &[u8; ALPHA_LEN]) -> Result<EdwardsPoint, PacketError> {
    if !is_canonical_field_element(bytes) {
        return Err(PacketError::NonCanonicalPoint);
    }
    MontgomeryPoint(*bytes)
        .to_edwards(0)
        .ok_or(PacketError::PointNotOnCurve)
}

/// [`decode_point`] for many points at once: the birational map y = (u - 1)/(u + 1) needs
/// one field inversion per point, and here the batch shares a single one. Gives exactly what
/// [`decode_point`] gives for each.
pub(crate) fn decode_points<'a>(
    encodings: impl ExactSizeIterator<Item = &'a [u8; 32]>,
) -> Vec<Result<EdwardsPoint, PacketError>> {
    let mut numerators = Vec::with_capacity(encodings.len());
    let mut denominators = Vec::with_capacity(encodings.len());
    let mut canonical = Vec::with_capacity(encodings.len());
    for bytes in encodings {
        let u = FieldElement::from_bytes(bytes);
        numerators.push(u.sub(&FieldElement::ONE));
        denominators.push(u.add(&FieldElement::ONE));
        canonical.push(is_canonical_field_element(bytes));
    }
    // u = -1 (a zero denominator) is a point of the twist: `batch_invert` leaves it zero.
    let on_twist: Vec<bool> = denominators.iter().map(|d| d.is_zero().into()).collect();
    field::batch_invert(&mut denominators);
    numerators
        .iter()
        .zip(&denominators)
        .zip(canonical.into_iter().zip(on_twist))
        .map(|((numerator, inverse), (canonical, on_twist))| {
            if !canonical {
                return Err(PacketError::NonCanonicalPoint);
            }
            if on_twist {
                return Err(PacketError::PointNotOnCurve);
            }
            let y = numerator.mul(inverse).to_bytes();
            CompressedEdwardsY(y)
                .decompress()
                .ok_or(PacketError::PointNotOnCurve)
        })
        .collect()
}

/// Whether `bytes` encode an integer below p = 2^255 - 19.
pub(crate) fn is_canonical_field_element(bytes: &[u8; 32]) -> bool {
    // p is ed ff ff .. ff 7f (little-endian). Values at or above it have the top bit set, or
    // are 7f ff .. ff followed by a low byte of at least 0xed.
    let top = bytes[31];
    if top & 0x80 != 0 {
        return false;
    }
    let below_p_at_the_top = top < 0x7f || bytes[1..31].iter().any(|&byte| byte != 0xff);
    below_p_at_the_top || bytes[0] < 0xed
}

/// X25519 of `point` with the secret `scalar` (clamped): the u-coordinate of the product.
/// Refuses a zero result, which only points of small order give.
pub(crate) fn x25519(point: &EdwardsPoint, scalar: [u8; 32]) -> Result<[u8; 32], PacketError> {
    let product = Zeroizing::new(point.mul_clamped(scalar));
    nonzero(product.to_montgomery().to_bytes())
}

/// [`x25519`] for many pairs at once, sharing the inversion of the conversions back to the
/// Montgomery form.
pub(crate) fn x25519_batch(
    pairs: &[(&EdwardsPoint, [u8; 32])],
) -> Vec<Result<[u8; 32], PacketError>> {
    let products = Zeroizing::new(
        pairs
            .iter()
            .map(|(point, scalar)| point.mul_clamped(*scalar))
            .collect::<Vec<_>>(),
    );
    EdwardsPoint::to_montgomery_batch(&products)
        .into_iter()
        .map(|u| nonzero(u.to_bytes()))
        .collect()
}

fn nonzero(shared: [u8; 32]) -> Result<[u8; 32], PacketError> {
    if shared == [0; 32] {
        return Err(PacketError::SmallOrderPoint);
    }
    Ok(shared)
}

/// A secret X25519 scalar `clamp(k)`, kept as `clamp(k) / 8`: clamping clears the low three
/// bits, so the quotient is exact and below 2^252 < ℓ, a canonical scalar.
///
/// A sender's secret for hop i is `clamp(x)·clamp(b_0)···clamp(b_{i-1})` applied to the hop's
/// key; as the key's prime-order part is all that survives the factors of 8, the product can
/// be reduced modulo ℓ and applied to `8·key` in a single multiplication (see
/// [`ScalarChain`]), where the ladder needs one X25519 per factor.
pub(crate) fn clamped_eighth(bytes: &[u8; 32]) -> Scalar {
    let mut clamped = *bytes;
    clamped[0] &= 0b1111_1000;
    clamped[31] &= 0b0111_1111;
    clamped[31] |= 0b0100_0000;
    let mut eighth = [0u8; 32];
    for i in 0..32 {
        let high = clamped.get(i + 1).copied().unwrap_or(0);
        eighth[i] = (clamped[i] >> 3) | (high << 5);
    }
    clamped.zeroize();
    let scalar = Scalar::from_bytes_mod_order(eighth);
    eighth.zeroize();
    scalar
}

/// The running product of a sender's X25519 factors, reduced modulo ℓ: after factors
/// `f_0 .. f_k`, X25519 by each of them in turn of a point P equals the u-coordinate of
/// `self.scalar · (8·P)`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct ScalarChain {
    scalar: Scalar,
}

impl ScalarChain {
    /// The chain of a single factor.
    pub(crate) fn new(first: &[u8; 32]) -> Self {
        ScalarChain {
            scalar: clamped_eighth(first),
        }
    }

    /// Appends another factor: `clamp(f) = 8·(clamp(f)/8)`, and the extra 8 of every factor
    /// but the first stays in the scalar.
    pub(crate) fn push(&mut self, factor: &[u8; 32]) {
        let eight = Scalar::from(8u8);
        self.scalar = self.scalar * eight * clamped_eighth(factor);
    }

    /// X25519 by every factor of the chain, in turn, of the point whose cofactor-cleared
    /// multiple is `cleared` (`8·P`).
    pub(crate) fn shared_secret(&self, cleared: &EdwardsPoint) -> [u8; 32] {
        let product = Zeroizing::new(cleared * self.scalar);
        product.to_montgomery().to_bytes()
    }
}

// ---------------------------------------------------------------------------------------------
// Key derivation

/// What a hop derives from its shared secret: HKDF-SHA256 (empty salt) expanded to 288 bytes,
/// sliced in the order the format fixes.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct HopSecrets {
    stream_key: [u8; 16],
    mac_key: [u8; 16],
    payload_key: [u8; PAYLOAD_KEY_LEN],
    blinding_factor: [u8; 32],
    replay_tag: [u8; 32],
}

impl HopSecrets {
    pub(crate) fn derive(shared_secret: &[u8; 32]) -> Self {
        let okm: Zeroizing<[u8; 288]> =
            Zeroizing::new(hkdf_sha256(&[], shared_secret, HOP_KDF_INFO));
        let mut secrets = HopSecrets {
            stream_key: [0; 16],
            mac_key: [0; 16],
            payload_key: [0; PAYLOAD_KEY_LEN],
            blinding_factor: [0; 32],
            replay_tag: [0; 32],
        };
        secrets.stream_key.copy_from_slice(&okm[0..16]);
        secrets.mac_key.copy_from_slice(&okm[16..32]);
        secrets.payload_key.copy_from_slice(&okm[32..224]);
        secrets.blinding_factor.copy_from_slice(&okm[224..256]);
        secrets.replay_tag.copy_from_slice(&okm[256..288]);
        secrets
    }

    /// Key of the AES-128-CTR keystream that hides β.
    pub(crate) fn stream_key(&self) -> &[u8; 16] {
        &self.stream_key
    }

    /// Key of the header MAC.
    pub(crate) fn mac_key(&self) -> &[u8; 16] {
        &self.mac_key
    }

    /// The seed of the payload key (259, 260): the first 16 bytes of the 258 payload key.
    pub(crate) fn payload_seed(&self) -> PayloadSeed {
        let mut seed = [0; PAYLOAD_SEED_LEN];
        seed.copy_from_slice(&self.payload_key[..PAYLOAD_SEED_LEN]);
        seed
    }

    /// The Lioness key of this hop's payload layer.
    pub(crate) fn payload_key(&self, seeded: bool) -> PayloadKey {
        if seeded {
            payload_key_from_seed(&self.payload_seed())
        } else {
            Zeroizing::new(self.payload_key)
        }
    }

    /// The factor that turns this hop's α into the next hop's.
    pub(crate) fn blinding_factor(&self) -> &[u8; 32] {
        &self.blinding_factor
    }

    pub(crate) fn replay_tag(&self) -> &[u8; 32] {
        &self.replay_tag
    }
}

/// Expands a payload key seed (259, 260) into a Lioness key.
pub(crate) fn payload_key_from_seed(seed: &PayloadSeed) -> PayloadKey {
    Zeroizing::new(hkdf_sha256(PAYLOAD_KDF_SALT, seed, PAYLOAD_KDF_INFO))
}

/// HKDF-SHA256 with an output length fixed at compile time.
fn hkdf_sha256<const N: usize>(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; N] {
    const { assert!(N <= 255 * 32, "HKDF-SHA256 expands to at most 8160 bytes") };
    let mut okm = [0u8; N];
    #[allow(clippy::expect_used)] // the only failure is a length over 8160, ruled out above
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut okm)
        .expect("output length checked at compile time");
    okm
}

// ---------------------------------------------------------------------------------------------
// Header keystream and MAC

/// XORs the AES-128-CTR keystream (zero IV, 64-bit big-endian counter) into `data`.
pub(crate) fn apply_keystream(key: &[u8; 16], data: &mut [u8]) {
    let mut cipher = ctr::Ctr64BE::<Aes128>::new(key.into(), &[0u8; 16].into());
    cipher.apply_keystream(data);
}

/// HMAC-SHA256 of `data`, truncated to 16 bytes.
pub(crate) fn header_mac(key: &[u8; 16], data: &[u8]) -> [u8; MAC_LEN] {
    // HMAC pads a short key with zeros to the hash's block size; doing it here spares the
    // fallible variable-length constructor.
    let mut block_key = Zeroizing::new([0u8; 64]);
    block_key[..16].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new((&*block_key).into());
    mac.update(data);
    let full: [u8; 32] = mac.finalize().into_bytes().into();
    let mut truncated = [0u8; MAC_LEN];
    truncated.copy_from_slice(&full[..MAC_LEN]);
    truncated
}

/// Whether `mac` is the header MAC of `data`, compared in constant time.
pub(crate) fn verify_header_mac(key: &[u8; 16], data: &[u8], mac: &[u8]) -> bool {
    header_mac(key, data).ct_eq(mac).into()
}

// ---------------------------------------------------------------------------------------------
// Lioness

/// Lioness (Anderson & Biham) over ChaCha20 and keyed BLAKE2b-256, as Nym's payloads use it.
/// The key is k1 32 ‖ k2 64 ‖ k3 32 ‖ k4 64 bytes; a block is L (32 bytes) ‖ R (the rest):
///
/// ```text
/// encrypt: R ^= ChaCha20(k1 ^ L); L ^= MAC(k2, R); R ^= ChaCha20(k3 ^ L); L ^= MAC(k4, R)
/// ```
///
/// Blocks are at least 38 bytes long (the ack payload), so both halves are never empty.
pub(crate) fn lioness_encrypt(key: &[u8; PAYLOAD_KEY_LEN], block: &mut [u8]) {
    let (k1, k2, k3, k4) = lioness_keys(key);
    let (left, right) = block.split_at_mut(32);
    xor_stream(k1, left, right);
    xor_mac(k2, left, right);
    xor_stream(k3, left, right);
    xor_mac(k4, left, right);
}

/// The inverse of [`lioness_encrypt`]: what a hop does to remove its layer.
pub(crate) fn lioness_decrypt(key: &[u8; PAYLOAD_KEY_LEN], block: &mut [u8]) {
    let (k1, k2, k3, k4) = lioness_keys(key);
    let (left, right) = block.split_at_mut(32);
    xor_mac(k4, left, right);
    xor_stream(k3, left, right);
    xor_mac(k2, left, right);
    xor_stream(k1, left, right);
}

fn lioness_keys(key: &[u8; PAYLOAD_KEY_LEN]) -> (&[u8], &[u8], &[u8], &[u8]) {
    let (k1, rest) = key.split_at(32);
    let (k2, rest) = rest.split_at(64);
    let (k3, k4) = rest.split_at(32);
    (k1, k2, k3, k4)
}

/// R ^= ChaCha20(k ^ L), nonce zero.
fn xor_stream(key_half: &[u8], left: &[u8], right: &mut [u8]) {
    let mut key = Zeroizing::new([0u8; 32]);
    for ((out, k), l) in key.iter_mut().zip(key_half).zip(left) {
        *out = k ^ l;
    }
    let mut cipher = ChaCha20::new((&*key).into(), &[0u8; 12].into());
    cipher.apply_keystream(right);
}

/// L ^= BLAKE2b-256(key = k, R).
fn xor_mac(key: &[u8], left: &mut [u8], right: &[u8]) {
    let mut key_block = Zeroizing::new([0u8; 64]);
    key_block.copy_from_slice(key);
    let mut mac = <Blake2bMac<U32> as KeyInit>::new((&*key_block).into());
    mac.update(right);
    let digest: [u8; 32] = mac.finalize().into_bytes().into();
    for (l, d) in left.iter_mut().zip(digest) {
        *l ^= d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    use x25519_dalek::{PublicKey as RefPublic, StaticSecret};

    fn ladder(secret: [u8; 32], point: [u8; 32]) -> [u8; 32] {
        *StaticSecret::from(secret)
            .diffie_hellman(&RefPublic::from(point))
            .as_bytes()
    }

    #[test]
    fn edwards_x25519_matches_the_ladder() {
        for seed in 1..40u8 {
            let point_secret = [seed; 32];
            let point = EdwardsPoint::mul_base_clamped(point_secret)
                .to_montgomery()
                .to_bytes();
            let secret = [seed.wrapping_mul(7) ^ 0x5a; 32];
            let alpha = decode_point(&point).unwrap();
            assert_eq!(x25519(&alpha, secret).unwrap(), ladder(secret, point));
        }
    }

    #[test]
    fn scalar_chain_matches_repeated_ladders() {
        let key = EdwardsPoint::mul_base_clamped([3; 32]);
        // a key with a torsion component must give the ladder's answer too
        let torsion = curve25519_dalek::constants::EIGHT_TORSION[3];
        for point in [key, key + torsion] {
            let factors = [[11u8; 32], [0xfe; 32], [0x42; 32], [0x01; 32]];
            let mut expected = point.to_montgomery().to_bytes();
            let mut chain = ScalarChain::new(&factors[0]);
            expected = ladder(factors[0], expected);
            assert_eq!(chain.shared_secret(&point.mul_by_cofactor()), expected);
            for factor in &factors[1..] {
                chain.push(factor);
                expected = ladder(*factor, expected);
                assert_eq!(chain.shared_secret(&point.mul_by_cofactor()), expected);
            }
        }
    }

    #[test]
    fn non_canonical_and_twist_points_are_refused() {
        let good = EdwardsPoint::mul_base_clamped([9; 32])
            .to_montgomery()
            .to_bytes();
        let mut top_bit = good;
        top_bit[31] |= 0x80;
        assert_eq!(decode_point(&top_bit), Err(PacketError::NonCanonicalPoint));
        let mut p = [0xff; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert_eq!(decode_point(&p), Err(PacketError::NonCanonicalPoint));
        let mut below_p = p;
        below_p[0] = 0xec;
        assert!(is_canonical_field_element(&below_p));
        // u = 2 is on the twist
        let mut two = [0u8; 32];
        two[0] = 2;
        assert_eq!(decode_point(&two), Err(PacketError::PointNotOnCurve));
    }

    #[test]
    fn batched_decoding_and_x25519_agree_with_single_ones() {
        let mut encodings: Vec<[u8; 32]> = (1..20u8)
            .map(|i| {
                EdwardsPoint::mul_base_clamped([i; 32])
                    .to_montgomery()
                    .to_bytes()
            })
            .collect();
        let mut minus_one = [0xff; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        let mut two = [0u8; 32];
        two[0] = 2;
        let mut top_bit = encodings[0];
        top_bit[31] |= 0x80;
        encodings.extend([minus_one, two, top_bit, [0; 32], [0xff; 32]]);
        let batch = decode_points(encodings.iter());
        for (bytes, decoded) in encodings.iter().zip(&batch) {
            let single = decode_point(bytes);
            assert_eq!(
                decoded.map(|p| p.compress()),
                single.map(|p| p.compress()),
                "{bytes:02x?}"
            );
        }
        assert_eq!(batch[19], Err(PacketError::PointNotOnCurve), "u = -1");
        let points: Vec<EdwardsPoint> = batch.iter().filter_map(|p| p.ok()).collect();
        let pairs: Vec<(&EdwardsPoint, [u8; 32])> = points
            .iter()
            .enumerate()
            .map(|(i, p)| (p, [i as u8 * 3 + 1; 32]))
            .collect();
        let batched = x25519_batch(&pairs);
        for ((point, scalar), result) in pairs.iter().zip(batched) {
            assert_eq!(result, x25519(point, *scalar));
        }
    }

    #[test]
    fn small_order_points_give_an_error_not_a_zero_secret() {
        let zero = decode_point(&[0u8; 32]).unwrap();
        assert_eq!(x25519(&zero, [5; 32]), Err(PacketError::SmallOrderPoint));
        let identity = ED25519_BASEPOINT_POINT * Scalar::ZERO;
        assert_eq!(
            x25519(&identity, [5; 32]),
            Err(PacketError::SmallOrderPoint)
        );
    }

    #[test]
    fn lioness_round_trips_and_matches_lioness_rs_layout() {
        let key = [7u8; PAYLOAD_KEY_LEN];
        let original: Vec<u8> = (0..2065u32).map(|i| i as u8).collect();
        let mut block = original.clone();
        lioness_encrypt(&key, &mut block);
        assert_ne!(block, original);
        lioness_decrypt(&key, &mut block);
        assert_eq!(block, original);
    }
}
