//! A node's Sphinx key pair: X25519 keys, as Nym's nodes use.

use std::fmt;
use std::hash::{Hash, Hasher};

use curve25519_dalek::{EdwardsPoint, MontgomeryPoint};
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::err::PacketError;
use crate::route::Hex;

/// A node's private Sphinx key: 32 secret bytes, clamped when used as X25519 prescribes.
/// Wiped from memory when dropped; `Debug` does not show it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PrivateKey([u8; 32]);

impl PrivateKey {
    /// A fresh random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        PrivateKey(bytes)
    }

    /// The key with these secret bytes (any 32 bytes are a valid X25519 secret).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        PrivateKey(bytes)
    }

    /// The secret bytes, for storing the key.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The public key that goes with this private key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_point(EdwardsPoint::mul_base_clamped(self.0))
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(<redacted>; public {:?})", self.public_key())
    }
}

/// A node's public Sphinx key: the u-coordinate of an X25519 public key. Parsing checks it is
/// a canonical encoding of a point of Curve25519 that does not have small order, and keeps the
/// decompressed point so building packets to it costs no conversion.
#[derive(Clone, Copy)]
pub struct PublicKey {
    bytes: [u8; 32],
    /// `8·P`: what a sender multiplies (see [`crate::crypto::ScalarChain`]).
    cleared: EdwardsPoint,
}

impl PublicKey {
    /// Parses the 32 bytes of a public key.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, PacketError> {
        let point = crate::crypto::decode_point(&bytes)?;
        if point.is_small_order() {
            return Err(PacketError::SmallOrderPoint);
        }
        Ok(PublicKey {
            bytes,
            cleared: point.mul_by_cofactor(),
        })
    }

    fn from_point(point: EdwardsPoint) -> Self {
        PublicKey {
            bytes: point.to_montgomery().to_bytes(),
            cleared: point.mul_by_cofactor(),
        }
    }

    /// The key's 32 bytes, as they travel.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    pub(crate) fn cleared_point(&self) -> &EdwardsPoint {
        &self.cleared
    }

    /// The key as a Montgomery point.
    pub fn to_montgomery(&self) -> MontgomeryPoint {
        MontgomeryPoint(self.bytes)
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for PublicKey {}

impl Hash for PublicKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", Hex(&self.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_matches_x25519_dalek() {
        let private = PrivateKey::from_bytes([0x24; 32]);
        let reference =
            x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([0x24; 32]));
        assert_eq!(private.public_key().as_bytes(), reference.as_bytes());
        assert_eq!(
            PublicKey::from_bytes(*reference.as_bytes()).unwrap(),
            private.public_key()
        );
    }

    #[test]
    fn bad_public_keys_are_refused() {
        assert_eq!(
            PublicKey::from_bytes([0; 32]),
            Err(PacketError::SmallOrderPoint)
        );
        let mut two = [0; 32];
        two[0] = 2;
        assert_eq!(
            PublicKey::from_bytes(two),
            Err(PacketError::PointNotOnCurve)
        );
        assert_eq!(
            PublicKey::from_bytes([0xff; 32]),
            Err(PacketError::NonCanonicalPoint)
        );
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let private = PrivateKey::from_bytes([0xab; 32]);
        assert!(!format!("{private:?}").contains("abab"));
    }

    #[test]
    fn secrets_are_wiped_on_drop() {
        // a compile-time check: this only builds if every type holding secrets wipes itself
        fn wiped<T: ZeroizeOnDrop>() {}
        wiped::<PrivateKey>();
        wiped::<crate::crypto::HopSecrets>();
        wiped::<crate::crypto::ScalarChain>();
        wiped::<crate::Surb>();
        wiped::<crate::ReplyKey>();
    }
}
