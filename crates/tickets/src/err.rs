//! What can go wrong, by what was being done: reading or verifying a ticket, issuing one,
//! loading a key, building the issuer set.

use crate::input::ChainTag;

/// Why a ticket was refused: by [`Ticket::from_bytes`](crate::Ticket::from_bytes) or by
/// [`verify`](crate::verify).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// The ticket's bytes are not a ticket.
    #[error("malformed ticket: {0}")]
    Malformed(#[from] DecodeError),
    /// The ticket (or its input) has a version this build does not know.
    #[error("ticket version {0} is not supported (this build knows version {v})", v = crate::TICKET_VERSION)]
    UnsupportedVersion(u8),
    /// The ticket was issued for another chain.
    #[error("ticket is for chain {found}, this is chain {expected}")]
    WrongChain {
        /// The chain the verifier is on.
        expected: ChainTag,
        /// The chain named in the ticket.
        found: ChainTag,
    },
    /// The ticket's key period is not one the issuer set accepts: expired, or not yet announced.
    #[error(
        "key period {period} is not accepted (expired or unknown); accepted periods: {accepted:?}"
    )]
    PeriodNotAccepted {
        /// The ticket's key period.
        period: u64,
        /// The periods the issuer set holds keys for.
        accepted: Vec<u64>,
    },
    /// One validator's signature appears twice; a ticket lists each signer once.
    #[error("validator {validator} is listed as a signer more than once")]
    DuplicateSigner {
        /// The repeated validator index.
        validator: u16,
    },
    /// A signature claims a validator that holds no key for the ticket's period.
    #[error("validator {validator} holds no ticket key for period {period}")]
    UnknownSigner {
        /// The claimed validator index.
        validator: u16,
        /// The ticket's key period.
        period: u64,
    },
    /// A validator's signature does not verify under its key for the period.
    #[error("the signature of validator {validator} does not verify")]
    BadSignature {
        /// The validator whose signature failed.
        validator: u16,
    },
    /// The signers do not hold more than 2/3 of the period's voting power.
    #[error("the {signers} signers hold {signed} of {total} voting power; more than 2/3 is needed")]
    TooFewSigners {
        /// How many distinct validators signed.
        signers: usize,
        /// The voting power they hold.
        signed: u64,
        /// The period's total voting power.
        total: u64,
    },
}

/// What is wrong with the bytes of a ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes end before the ticket does.
    #[error("truncated: {needed} bytes needed, {len} present")]
    Truncated {
        /// How many bytes the ticket needs at least, as far as it was read.
        needed: usize,
        /// How many bytes there are.
        len: usize,
    },
    /// Longer than any ticket can be.
    #[error("{len} bytes, more than the largest ticket ({max})")]
    TooLong {
        /// How many bytes there are.
        len: usize,
        /// The largest ticket.
        max: usize,
    },
    /// Bytes left over after the last signature.
    #[error("{extra} bytes after the ticket's end")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A ticket without signatures.
    #[error("no signatures")]
    NoSignatures,
    /// More signatures than a ticket may carry.
    #[error("{count} signatures, at most {max} allowed")]
    TooManySignatures {
        /// How many the ticket claims.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// A signature of an impossible length.
    #[error("signature of validator {validator} is {len} bytes, allowed 1..={max}")]
    SignatureLength {
        /// The validator the signature claims.
        validator: u16,
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
}

/// Why a step of issuance (blinding, blind-signing, unblinding) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// A purchase of no tickets, or of too many.
    #[error("a purchase is of 1..={max} tickets, not {count}")]
    TicketCount {
        /// The count asked for.
        count: u32,
        /// The cap.
        max: u32,
    },
    /// A purchase needs at least one issuer.
    #[error("a purchase needs at least one issuer")]
    NoIssuers,
    /// The same validator was named twice as an issuer of one purchase.
    #[error("validator {validator} is named twice among the purchase's issuers")]
    DuplicateIssuer {
        /// The repeated validator index.
        validator: u16,
    },
    /// A validator that is not an issuer of this purchase.
    #[error("validator {validator} is not an issuer of this purchase")]
    NotAnIssuer {
        /// The validator index.
        validator: u16,
    },
    /// Blinding a message failed (a degenerate key).
    #[error("blinding ticket {index} for validator {validator} failed")]
    Blinding {
        /// The validator index.
        validator: u16,
        /// The ticket's index in the purchase.
        index: u32,
    },
    /// A validator answered with a different number of blind signatures than it was sent
    /// blinded messages.
    #[error(
        "validator {validator} returned {got} blind signatures for {expected} blinded messages"
    )]
    SignatureCount {
        /// The validator index.
        validator: u16,
        /// How many blinded messages it was sent.
        expected: usize,
        /// How many blind signatures it returned.
        got: usize,
    },
    /// A blind signature does not unblind to a valid signature.
    #[error(
        "blind signature {index} from validator {validator} does not unblind to a valid signature"
    )]
    BadBlindSignature {
        /// The validator index.
        validator: u16,
        /// The ticket's index in the purchase.
        index: u32,
    },
    /// The issuer was asked to sign something that is not a blinded message for its key.
    #[error("not a blinded message for this key ({len} bytes)")]
    NotBlindedMessage {
        /// The message's length.
        len: usize,
    },
    /// The key derivation failed (cannot happen for the lengths used).
    #[error("key derivation failed")]
    Derivation,
}

/// Why an issuer key could not be made or loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Key generation failed.
    #[error("RSA key generation failed")]
    Generate,
    /// The bytes are not a key of the expected encoding.
    #[error("not an RSA {what} key in the expected encoding")]
    Encoding {
        /// "public" or "secret".
        what: &'static str,
    },
    /// An RSA key, but not 2048 bits with exponent 65537 (or 3).
    #[error("the RSA key is not {bits} bits", bits = crate::MODULUS_BITS)]
    Size,
}

/// Why an issuer set could not take a period's keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerSetError {
    /// A validator index appears twice in one period.
    #[error("validator {validator} appears twice in period {period}")]
    DuplicateValidator {
        /// The key period.
        period: u64,
        /// The repeated index.
        validator: u16,
    },
    /// The period's total voting power is zero.
    #[error("period {period} has no voting power")]
    NoPower {
        /// The key period.
        period: u64,
    },
    /// The period's total voting power does not fit in a u64.
    #[error("period {period}'s total voting power overflows")]
    PowerOverflow {
        /// The key period.
        period: u64,
    },
}
