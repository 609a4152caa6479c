//! Keys, signatures and hashes: 32- and 64-byte values written in base58 in JSON and as raw
//! bytes in the canonical encoding.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::Signer;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::err::Base58Error;

macro_rules! bytes_type {
    ($name:ident, $len:expr, $what:expr) => {
        #[doc = concat!("Bytes of ", $what, " (", stringify!($len), "; base58 in JSON).")]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&bs58::encode(&self.0).into_string())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = Base58Error;

            fn from_str(text: &str) -> Result<Self, Base58Error> {
                let bytes = bs58::decode(text.trim()).into_vec().map_err(|error| {
                    Base58Error::NotBase58 {
                        text: text.to_owned(),
                        detail: error.to_string(),
                    }
                })?;
                let array: [u8; $len] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| Base58Error::WrongLength {
                            text: text.to_owned(),
                            what: $what,
                            len: bytes.len(),
                            expected: $len,
                        })?;
                Ok($name(array))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.serialize_str(&self.to_string())
                } else {
                    serde::Serialize::serialize(&self.0[..], serializer)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    let text = String::deserialize(deserializer)?;
                    text.parse().map_err(D::Error::custom)
                } else {
                    let bytes = <Vec<u8>>::deserialize(deserializer)?;
                    let array: [u8; $len] = bytes.as_slice().try_into().map_err(|_| {
                        D::Error::custom(concat!("a ", $what, " is ", stringify!($len), " bytes"))
                    })?;
                    Ok($name(array))
                }
            }
        }
    };
}

bytes_type!(PublicKey, 32, "an ed25519 public key");
bytes_type!(Signature, 64, "an ed25519 signature");
bytes_type!(Hash, 32, "a SHA-256 hash");
bytes_type!(Key32, 32, "an X25519 key");

impl PublicKey {
    /// Whether `signature` is this key's signature of `message` (strict RFC 8032 verification:
    /// no small-order keys, no malleable signatures).
    pub fn verifies(&self, message: &[u8], signature: &Signature) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &signature).is_ok()
    }
}

impl Hash {
    /// SHA-256 of the concatenation of `parts`.
    pub fn of(parts: &[&[u8]]) -> Hash {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        Hash(hasher.finalize().into())
    }
}

/// An ed25519 signing key: an account's, a node's identity or a validator's. Zeroized on drop.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A new random key.
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> SigningKey {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        SigningKey::from_seed(seed)
    }

    /// The key whose 32-byte secret seed is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The 32-byte secret seed (what key files hold).
    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(public {})", self.public())
    }
}

/// The canonical bytes of `value`: what is signed, hashed and stored. Postcard's encoding of the
/// same value is the same on every machine (maps in this crate are `BTreeMap`s).
pub fn canonical<T: Serialize>(value: &T) -> Vec<u8> {
    // postcard fails only for types it cannot encode (none in this crate)
    postcard::to_allocvec(value).unwrap_or_default()
}
