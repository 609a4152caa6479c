//! What a ticket's signatures sign: the token input, and its serial.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The version of the ticket input and of the ticket's wire format.
pub const TICKET_VERSION: u8 = 1;

/// The domain separator that starts every signed message (it carries the version).
pub const MESSAGE_DOMAIN: &[u8; 15] = b"umbra-ticket-v1";

/// The length of the signed message: domain, chain, period, nonce.
pub const MESSAGE_LEN: usize = MESSAGE_DOMAIN.len() + 32 + 8 + 32;

/// The chain a ticket is good on: SHA-256 of the chain id, so a ticket bought on a test
/// network is refused on another.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChainTag(pub [u8; 32]);

impl ChainTag {
    /// The tag of the chain named `chain_id`.
    pub fn of(chain_id: &str) -> Self {
        ChainTag(Sha256::digest(chain_id.as_bytes()).into())
    }
}

impl fmt::Display for ChainTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::bytes_serde::hex(f, &self.0[..8])
    }
}

impl fmt::Debug for ChainTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainTag({self})")
    }
}

/// A ticket's serial: SHA-256 of its signed message. Gateways keep spent serials, the ledger
/// refuses a serial redeemed before.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Serial(pub [u8; 32]);

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::bytes_serde::hex(f, &self.0)
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

/// The token input: what every validator signs (blindly) for one ticket.
///
/// Like RFC 9578's token input, it binds the signature to a context (here the chain and the
/// key period) and carries a nonce chosen by the client, which no issuer ever sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TicketInput {
    /// [`TICKET_VERSION`].
    pub version: u8,
    /// The chain the ticket was bought on.
    pub chain: ChainTag,
    /// The key period whose keys signed it; the ticket expires with them.
    pub period: u64,
    /// The client's secret nonce.
    pub nonce: [u8; 32],
}

impl TicketInput {
    /// The byte string signed: `"umbra-ticket-v1" || chain || period (big-endian) || nonce`.
    pub fn message(&self) -> [u8; MESSAGE_LEN] {
        let mut m = [0u8; MESSAGE_LEN];
        let (domain, rest) = m.split_at_mut(MESSAGE_DOMAIN.len());
        domain.copy_from_slice(MESSAGE_DOMAIN);
        let (chain, rest) = rest.split_at_mut(32);
        chain.copy_from_slice(&self.chain.0);
        let (period, nonce) = rest.split_at_mut(8);
        period.copy_from_slice(&self.period.to_be_bytes());
        nonce.copy_from_slice(&self.nonce);
        m
    }

    /// SHA-256 of [`message`](Self::message).
    pub fn serial(&self) -> Serial {
        Serial(Sha256::digest(self.message()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_layout() {
        let input = TicketInput {
            version: TICKET_VERSION,
            chain: ChainTag([0xcc; 32]),
            period: 0x0102_0304_0506_0708,
            nonce: [0xee; 32],
        };
        let m = input.message();
        assert_eq!(&m[..15], b"umbra-ticket-v1");
        assert_eq!(&m[15..47], &[0xcc; 32]);
        assert_eq!(&m[47..55], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&m[55..], &[0xee; 32]);
        assert_eq!(input.serial().0, <[u8; 32]>::from(Sha256::digest(m)));
    }

    #[test]
    fn chain_tag_is_sha256_of_the_id() {
        assert_eq!(
            ChainTag::of("umbra-local").0,
            <[u8; 32]>::from(Sha256::digest(b"umbra-local"))
        );
        assert_ne!(ChainTag::of("a"), ChainTag::of("b"));
    }
}
