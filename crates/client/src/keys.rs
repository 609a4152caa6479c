//! A client's keys: its identity (its static Noise key, which its gateway knows it by) and
//! its encryption key (which end-to-end encrypted messages are sealed to).

use curve25519_dalek::MontgomeryPoint;
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A client's private keys. Wiped when dropped; `Debug` shows only the public halves.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ClientKeys {
    identity: [u8; 32],
    encryption: [u8; 32],
}

impl ClientKeys {
    /// Fresh random keys.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut keys = ClientKeys {
            identity: [0; 32],
            encryption: [0; 32],
        };
        rng.fill_bytes(&mut keys.identity);
        rng.fill_bytes(&mut keys.encryption);
        keys
    }

    /// Keys from their secret bytes.
    pub fn from_bytes(identity: [u8; 32], encryption: [u8; 32]) -> Self {
        ClientKeys {
            identity,
            encryption,
        }
    }

    /// The identity key's secret bytes (also the client's static Noise key).
    pub fn identity_secret(&self) -> &[u8; 32] {
        &self.identity
    }

    /// The encryption key's secret bytes.
    pub fn encryption_secret(&self) -> &[u8; 32] {
        &self.encryption
    }

    /// The identity public key.
    pub fn identity_public(&self) -> [u8; 32] {
        MontgomeryPoint::mul_base_clamped(self.identity).to_bytes()
    }

    /// The encryption public key.
    pub fn encryption_public(&self) -> [u8; 32] {
        MontgomeryPoint::mul_base_clamped(self.encryption).to_bytes()
    }
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientKeys(<redacted>; identity {}, encryption {})",
            bs58::encode(self.identity_public()).into_string(),
            bs58::encode(self.encryption_public()).into_string()
        )
    }
}
