//! A client's address: `identity.encryption@gateway`, three 32-byte keys in base58.
//!
//! The identity key is the client's static Noise key: its gateway knows the client by it, and it
//! is the destination Sphinx headers name. The encryption key receives end-to-end encrypted
//! messages. The gateway is named by its static Noise key, as the topology lists it.

use std::fmt;
use std::str::FromStr;

use umbra_sphinx::DestinationAddress;

use crate::err::AddressParseError;

/// Where a client receives messages.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientAddress {
    /// The client's identity key (X25519, its Noise static key).
    pub identity: [u8; 32],
    /// The key messages to the client are encrypted to (X25519).
    pub encryption: [u8; 32],
    /// The static Noise key of the client's gateway.
    pub gateway: [u8; 32],
}

impl ClientAddress {
    /// The destination a Sphinx header names the client by.
    pub fn destination(&self) -> DestinationAddress {
        DestinationAddress::new(self.identity)
    }
}

impl fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b58 = |key: &[u8; 32]| bs58::encode(key).into_string();
        write!(
            f,
            "{}.{}@{}",
            b58(&self.identity),
            b58(&self.encryption),
            b58(&self.gateway)
        )
    }
}

impl fmt::Debug for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientAddress({self})")
    }
}

impl FromStr for ClientAddress {
    type Err = AddressParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (keys, gateway) = text.split_once('@').ok_or(AddressParseError::NoGateway)?;
        let (identity, encryption) = keys.split_once('.').ok_or(AddressParseError::NoDot)?;
        Ok(ClientAddress {
            identity: key("identity", identity)?,
            encryption: key("encryption", encryption)?,
            gateway: key("gateway", gateway)?,
        })
    }
}

fn key(part: &'static str, text: &str) -> Result<[u8; 32], AddressParseError> {
    let bytes = bs58::decode(text)
        .into_vec()
        .map_err(|_| AddressParseError::NotBase58 { part })?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| AddressParseError::WrongLength { part, len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn addresses_round_trip(identity in any::<[u8; 32]>(), encryption in any::<[u8; 32]>(), gateway in any::<[u8; 32]>()) {
            let address = ClientAddress { identity, encryption, gateway };
            prop_assert_eq!(address.to_string().parse::<ClientAddress>(), Ok(address));
        }
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        let good = ClientAddress {
            identity: [1; 32],
            encryption: [2; 32],
            gateway: [3; 32],
        }
        .to_string();
        let (keys, gateway) = good.split_once('@').unwrap();
        let cases = [
            (keys.to_owned(), "no `@`"),
            (good.replacen('.', "", 1), "no `.`"),
            (format!("{keys}@0OIl"), "gateway key is not base58"),
            (
                format!("abc.{}", good.split_once('.').unwrap().1),
                "identity key is 3 bytes",
            ),
        ];
        for (text, expected) in cases {
            let error = text.parse::<ClientAddress>().unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{error:?} should say {expected:?}"
            );
        }
        assert_eq!(
            format!(" {keys}@{gateway}\n")
                .parse::<ClientAddress>()
                .unwrap()
                .to_string(),
            good
        );
    }
}
