#![doc = include_str!("../README.md")]

mod bytes_serde;
mod err;
mod input;
mod issue;
mod keys;
#[cfg(test)]
mod test_keys;
mod ticket;

pub use err::{DecodeError, IssueError, IssuerSetError, KeyError, TicketError};
pub use input::{ChainTag, MESSAGE_DOMAIN, MESSAGE_LEN, Serial, TICKET_VERSION, TicketInput};
pub use issue::{
    BlindSignature, BlindedMessage, MAX_TICKETS_PER_PURCHASE, Partial, PurchaseRequest,
    PurchaseSeed, TxId, sign_blinded,
};
pub use keys::{IssuerPublicKey, IssuerSecretKey, KeyId, MODULUS_BITS, SIGNATURE_LEN};
pub use ticket::{
    HEADER_LEN, Issuer, IssuerSet, MAX_SIGNATURE_LEN, MAX_SIGNATURES, MAX_TICKET_LEN, Ticket,
    verify,
};
