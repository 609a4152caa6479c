//! End-to-end encryption of a message to its recipient's encryption key: an ephemeral X25519
//! key agreement, HKDF-SHA256, ChaCha20-Poly1305. Only the recipient can open a sealed
//! message, and anyone can seal to a known address: the sender stays anonymous.
//!
//! ```text
//! sealed = ephemeral public key (32) ‖ ChaCha20-Poly1305(key, nonce 0, aad = both public keys)(message)
//! key    = HKDF-SHA256(salt = "umbra message v1", ikm = X25519(ephemeral, recipient))
//! ```
//! A fresh ephemeral key per message makes every key single-use, so the zero nonce is safe.

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use curve25519_dalek::MontgomeryPoint;
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::Zeroizing;

const SALT: &[u8] = b"umbra message v1";
/// Bytes sealing adds to a message.
pub(crate) const SEAL_OVERHEAD: usize = 32 + 16;

/// Seals `message` to the holder of the private key behind `recipient`.
pub(crate) fn seal<R: CryptoRng + ?Sized>(
    rng: &mut R,
    recipient: &[u8; 32],
    message: &[u8],
) -> Vec<u8> {
    let mut ephemeral = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(ephemeral.as_mut());
    let ephemeral_public = MontgomeryPoint::mul_base_clamped(*ephemeral).to_bytes();
    let shared = Zeroizing::new(
        MontgomeryPoint(*recipient)
            .mul_clamped(*ephemeral)
            .to_bytes(),
    );
    let cipher = cipher(&shared);
    let aad = [ephemeral_public, *recipient].concat();
    let mut sealed = ephemeral_public.to_vec();
    // encryption with a valid key and nonce does not fail
    let ciphertext = cipher
        .encrypt(
            &[0u8; 12].into(),
            Payload {
                msg: message,
                aad: &aad,
            },
        )
        .unwrap_or_default();
    sealed.extend_from_slice(&ciphertext);
    sealed
}

/// Opens a message sealed to the public key of `secret`; `None` if it was not, or was altered.
pub(crate) fn open(secret: &[u8; 32], sealed: &[u8]) -> Option<Vec<u8>> {
    let (ephemeral_public, ciphertext) = sealed.split_first_chunk::<32>()?;
    let own_public = MontgomeryPoint::mul_base_clamped(*secret).to_bytes();
    let shared = Zeroizing::new(
        MontgomeryPoint(*ephemeral_public)
            .mul_clamped(*secret)
            .to_bytes(),
    );
    if *shared == [0; 32] {
        return None;
    }
    let aad = [*ephemeral_public, own_public].concat();
    cipher(&shared)
        .decrypt(
            &[0u8; 12].into(),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .ok()
}

fn cipher(shared: &[u8; 32]) -> ChaCha20Poly1305 {
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is well within HKDF-SHA256's output limit: expand cannot fail
    let _ = Hkdf::<Sha256>::new(Some(SALT), shared).expand(b"key", key.as_mut());
    ChaCha20Poly1305::new((&*key).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn only_the_recipient_opens_and_alterations_are_caught() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let secret = [7u8; 32];
        let public = MontgomeryPoint::mul_base_clamped(secret).to_bytes();
        let sealed = seal(&mut rng, &public, b"meet at noon");
        assert_eq!(sealed.len(), 12 + SEAL_OVERHEAD);
        assert_eq!(
            open(&secret, &sealed).as_deref(),
            Some(&b"meet at noon"[..])
        );
        assert_eq!(open(&[8u8; 32], &sealed), None);
        for i in 0..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 1;
            assert_eq!(open(&secret, &altered), None, "byte {i}");
        }
        assert_eq!(open(&secret, &sealed[..20]), None);
        // two seals of the same message differ
        assert_ne!(seal(&mut rng, &public, b"x"), seal(&mut rng, &public, b"x"));
    }
}
