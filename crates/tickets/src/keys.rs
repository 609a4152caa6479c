//! Issuer keys: RSABSSA-SHA384-PSS-Deterministic (RFC 9474 §5), 2048-bit moduli, as RFC 9578's
//! publicly verifiable token type 0x0002.

use std::fmt;

use blind_rsa_signatures::{
    KeyPairSha384PSSDeterministic, PublicKeySha384PSSDeterministic,
    SecretKeySha384PSSDeterministic, Signature,
};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::err::KeyError;

/// The size of every issuer key's modulus.
pub const MODULUS_BITS: usize = 2048;

/// The length of a signature (and of a blinded message and a blind signature).
pub const SIGNATURE_LEN: usize = MODULUS_BITS / 8;

/// A key's id: SHA-256 of its SPKI encoding (RFC 9578's `token_key_id`), what the ledger
/// announces so every client blinds for the same key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyId(pub [u8; 32]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::bytes_serde::hex(f, &self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A validator's ticket-signing key for one key period.
#[derive(Clone)]
pub struct IssuerSecretKey {
    inner: SecretKeySha384PSSDeterministic,
    public: IssuerPublicKey,
}

impl IssuerSecretKey {
    /// A new 2048-bit key (slow: a second or so).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Result<Self, KeyError> {
        let pair = KeyPairSha384PSSDeterministic::generate(rng, MODULUS_BITS)
            .map_err(|_| KeyError::Generate)?;
        Ok(IssuerSecretKey {
            public: IssuerPublicKey::new(pair.pk)?,
            inner: pair.sk,
        })
    }

    /// Loads a key from PKCS#8 (or PKCS#1) DER, checking it.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let inner = SecretKeySha384PSSDeterministic::from_der(der)
            .map_err(|_| KeyError::Encoding { what: "secret" })?;
        let public = inner.public_key().map_err(|_| KeyError::Size)?;
        Ok(IssuerSecretKey {
            public: IssuerPublicKey::new(public)?,
            inner,
        })
    }

    /// The key as PKCS#8 DER, for the validator's key file.
    pub fn to_der(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        self.inner
            .to_der()
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Encoding { what: "secret" })
    }

    /// The public half.
    pub fn public_key(&self) -> &IssuerPublicKey {
        &self.public
    }

    pub(crate) fn inner(&self) -> &SecretKeySha384PSSDeterministic {
        &self.inner
    }
}

impl fmt::Debug for IssuerSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssuerSecretKey({})", self.public.id)
    }
}

/// A validator's public ticket key for one key period, as announced on the ledger.
///
/// Its bytes are the SPKI encoding with the RSASSA-PSS parameters (RFC 9578 §6.5); serde
/// writes those bytes.
#[derive(Clone)]
pub struct IssuerPublicKey {
    inner: PublicKeySha384PSSDeterministic,
    spki: Vec<u8>,
    id: KeyId,
}

impl IssuerPublicKey {
    fn new(inner: PublicKeySha384PSSDeterministic) -> Result<Self, KeyError> {
        let n = inner.components().n();
        // exactly 2048 bits: every signature is then exactly SIGNATURE_LEN bytes
        if n.len() != SIGNATURE_LEN || n.first().is_none_or(|b| b & 0x80 == 0) {
            return Err(KeyError::Size);
        }
        let spki = inner
            .to_spki()
            .map_err(|_| KeyError::Encoding { what: "public" })?;
        let id = KeyId(Sha256::digest(&spki).into());
        Ok(IssuerPublicKey { inner, spki, id })
    }

    /// Loads a key from its SPKI bytes (or plain SubjectPublicKeyInfo / PKCS#1 DER).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let inner = PublicKeySha384PSSDeterministic::from_spki(bytes)
            .or_else(|_| PublicKeySha384PSSDeterministic::from_der(bytes))
            .map_err(|_| KeyError::Encoding { what: "public" })?;
        IssuerPublicKey::new(inner)
    }

    /// The SPKI bytes, to announce.
    pub fn as_bytes(&self) -> &[u8] {
        &self.spki
    }

    /// SHA-256 of [`as_bytes`](Self::as_bytes).
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// Whether `signature` is this key's signature of `message`.
    pub(crate) fn verifies(&self, signature: &[u8], message: &[u8]) -> bool {
        signature.len() == SIGNATURE_LEN
            && self
                .inner
                .verify(&Signature(signature.to_vec()), None, message)
                .is_ok()
    }

    pub(crate) fn inner(&self) -> &PublicKeySha384PSSDeterministic {
        &self.inner
    }
}

impl PartialEq for IssuerPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki == other.spki
    }
}

impl Eq for IssuerPublicKey {}

impl fmt::Debug for IssuerPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssuerPublicKey({})", self.id)
    }
}

impl Serialize for IssuerPublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.spki)
    }
}

impl<'de> Deserialize<'de> for IssuerPublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::bytes_serde::deserialize(d, "an RSA public key's SPKI bytes", Self::from_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::keys;

    #[test]
    fn public_key_bytes_round_trip() {
        let pk = keys()[0].public_key();
        let again = IssuerPublicKey::from_bytes(pk.as_bytes()).unwrap();
        assert_eq!(&again, pk);
        assert_eq!(again.key_id(), pk.key_id());
        assert_eq!(
            pk.key_id().0,
            <[u8; 32]>::from(Sha256::digest(pk.as_bytes()))
        );
        assert_ne!(keys()[0].public_key(), keys()[1].public_key());
        let stored = postcard::to_allocvec(pk).unwrap();
        assert_eq!(
            postcard::from_bytes::<IssuerPublicKey>(&stored).unwrap(),
            *pk
        );
    }

    #[test]
    fn secret_key_der_round_trip() {
        let der = keys()[0].to_der().unwrap();
        let again = IssuerSecretKey::from_der(&der).unwrap();
        assert_eq!(again.public_key(), keys()[0].public_key());
        assert!(format!("{again:?}").starts_with("IssuerSecretKey("));
    }

    #[test]
    fn garbage_keys_are_refused() {
        assert!(IssuerPublicKey::from_bytes(&[]).is_err());
        assert!(IssuerPublicKey::from_bytes(&[0x30; 300]).is_err());
        let mut bytes = keys()[0].public_key().as_bytes().to_vec();
        bytes.truncate(bytes.len() - 1);
        assert!(IssuerPublicKey::from_bytes(&bytes).is_err());
        assert!(IssuerSecretKey::from_der(b"not a key").is_err());
    }
}
