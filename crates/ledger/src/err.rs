//! What can go wrong: a transaction refused (it changes nothing, not even the nonce), a genesis
//! that cannot start a chain, text that is not an amount or a key.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::fixed::{Amount, Ppm};
use crate::keys::PublicKey;
use crate::tx::NodeId;

/// Why a transaction was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum TxError {
    /// The signature is not the signer's (a wrong key, or the transaction was altered).
    #[error("the signature does not match the signer's key: signed with another key, or altered")]
    BadSignature,
    /// The nonce is not the account's next one.
    #[error("nonce {got} is not the account's next one, {expected}")]
    BadNonce {
        /// The nonce the account expects.
        expected: u64,
        /// The transaction's.
        got: u64,
    },
    /// The balance is too low.
    #[error("the balance is {} µUMB; this needs {} µUMB", have.0, need.0)]
    InsufficientBalance {
        /// What it needs.
        need: Amount,
        /// What the account has.
        have: Amount,
    },
    /// No such node.
    #[error("there is no node {node} on the ledger")]
    UnknownNode {
        /// The node.
        node: NodeId,
    },
    /// The signer does not own the node.
    #[error("node {node} belongs to another account")]
    NotOwner {
        /// The node.
        node: NodeId,
    },
    /// The pledge would be below the minimum.
    #[error(
        "a node's pledge must be at least {} µUMB; this one would be {} µUMB",
        minimum.0,
        pledge.0
    )]
    PledgeTooLow {
        /// The minimum.
        minimum: Amount,
        /// What it would be.
        pledge: Amount,
    },
    /// Zero amount.
    #[error("the amount must be more than 0")]
    ZeroAmount,
    /// The node is leaving.
    #[error("node {node} is unbonding at the end of this epoch")]
    Unbonding {
        /// The node.
        node: NodeId,
    },
    /// The node has no pledge yet.
    #[error("node {node} is not bonded yet")]
    NotBonded {
        /// The node.
        node: NodeId,
    },
    /// A key or address is already another node's.
    #[error("the node's {what} is already node {node}'s")]
    AlreadyRegistered {
        /// Which field.
        what: String,
        /// The node that has it.
        node: NodeId,
    },
    /// The node's registration is inconsistent.
    #[error("bad node registration: {reason}")]
    BadNode {
        /// What is wrong.
        reason: String,
    },
    /// The node's identity key did not sign.
    #[error("the node's identity key did not sign this (node signature does not verify)")]
    BadNodeSignature,
    /// No delegation to undelegate.
    #[error("the account has no delegation to node {node}")]
    NoDelegation {
        /// The node.
        node: NodeId,
    },
    /// Already asked.
    #[error("{what} is already pending for this epoch boundary")]
    AlreadyPending {
        /// What.
        what: String,
    },
    /// A fraction above 100 %.
    #[error("{what} is {} ppm; at most 1000000 (100 %)", value.0)]
    BadFraction {
        /// Which value.
        what: String,
        /// The value.
        value: Ppm,
    },
    /// Not a monitor.
    #[error("only the network monitors named in genesis may submit performance")]
    NotMonitor,
    /// Not a validator.
    #[error("only validators may do this")]
    NotValidator,
    /// Wrong epoch.
    #[error("this is for epoch {got}; the current epoch is {current}")]
    WrongEpoch {
        /// The current epoch.
        current: u64,
        /// The transaction's.
        got: u64,
    },
    /// A key rotation that is neither current nor next.
    #[error("key rotation {got} is neither the current ({current}) nor the next")]
    WrongRotation {
        /// The current rotation.
        current: u32,
        /// The transaction's.
        got: u32,
    },
    /// Too early to end the epoch.
    #[error("the epoch ends at {ends_at_ms} ms; it is {now_ms} ms")]
    EpochNotOver {
        /// When it ends.
        ends_at_ms: u64,
        /// The block time.
        now_ms: u64,
    },
    /// A bad beacon reveal.
    #[error("the beacon value is not the preimage of this validator's last one")]
    BadReveal,
    /// Already done this epoch.
    #[error("this validator already did that this epoch")]
    AlreadyDone,
    /// The topology signature does not verify.
    #[error("the signature is not of this epoch's topology document")]
    BadTopologySignature,
    /// A ticket key period that is neither the current nor the next.
    #[error("ticket key period {got} is neither the current ({current}) nor the next")]
    WrongKeyPeriod {
        /// The current key period.
        current: u64,
        /// The transaction's.
        got: u64,
    },
    /// An announced ticket key that is not a 2048-bit RSA public key.
    #[error("the ticket key is unusable: {reason}")]
    BadIssuerKey {
        /// What is wrong with it.
        reason: String,
    },
    /// The validator already announced its ticket key for the period (keys do not change
    /// within a period: that would split the period's anonymity set).
    #[error("this validator already announced its ticket key for key period {period}")]
    IssuerKeyAlreadySet {
        /// The key period.
        period: u64,
    },
    /// Another validator announced the same key for the period.
    #[error("validator {validator} already announced this ticket key for key period {period}")]
    IssuerKeyTaken {
        /// The key period.
        period: u64,
        /// The validator (its index in genesis) that announced it.
        validator: u32,
    },
    /// A ticket count out of range.
    #[error("{count} tickets: a transaction carries between 1 and {max}")]
    TicketCount {
        /// The transaction's count.
        count: u64,
        /// The most allowed.
        max: u64,
    },
    /// Too few validators announced ticket keys for the period for anyone to get a valid
    /// ticket.
    #[error(
        "tickets cannot be bought yet: the validators that announced ticket keys for key period {period} hold {announced} of {total} voting power, and more than 2/3 must"
    )]
    TicketsUnavailable {
        /// The current key period.
        period: u64,
        /// The voting power of the validators that announced keys for it.
        announced: u64,
        /// All voting power.
        total: u64,
    },
    /// The node is a mix node, not a gateway.
    #[error("node {node} is not a gateway")]
    NotGateway {
        /// The node.
        node: NodeId,
    },
    /// A ticket in a redemption is malformed, expired or not validly signed (the gateway
    /// should have refused it).
    #[error("ticket {index} of the redemption is refused: {reason}")]
    BadTicket {
        /// Its position in the transaction.
        index: u32,
        /// Why.
        reason: String,
    },
}

/// Why the ledger (and a gateway checking as it does, with
/// [`verify_ticket`](crate::tickets::verify_ticket)) refuses a ticket.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TicketRefusal {
    /// Malformed, for another chain, of a period not live, or badly signed.
    #[error(transparent)]
    Ticket(#[from] umbra_tickets::TicketError),
    /// Validly signed by validators that announced keys, but they do not hold more than 2/3
    /// of all the voting power.
    #[error(
        "its signers hold {signed} of {total} voting power; more than 2/3 of all of it is needed"
    )]
    TooLittlePower {
        /// The signers' voting power.
        signed: u64,
        /// All voting power.
        total: u64,
    },
}

/// Why a genesis cannot start a chain: [`Genesis::from_json`](crate::Genesis::from_json),
/// [`Genesis::check`](crate::Genesis::check), [`Params::check`](crate::Params::check) and
/// [`State::genesis`](crate::State::genesis). Each says which field is wrong and what it must
/// be.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GenesisError {
    /// The text is not a genesis in JSON (malformed, a field missing, unknown or of the wrong
    /// type); serde's message names the field and the line.
    #[error("{0}")]
    Json(serde_json::Error),
    /// A parameter that must be positive is 0.
    #[error("params.{name} must be more than 0")]
    ZeroParam {
        /// The parameter.
        name: &'static str,
    },
    /// A parameter that is a fraction is above 100 %.
    #[error("params.{name} is {} ppm; it is a fraction, at most 1000000 (100 %)", value.0)]
    NotAFraction {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: Ppm,
    },
    /// No validators.
    #[error("the genesis names no validators; it needs at least one")]
    NoValidators,
    /// A validator without voting power.
    #[error(
        "validator {key} ({name:?}) has voting power 0; every validator needs a voting power above 0"
    )]
    ZeroPower {
        /// The validator's key.
        key: PublicKey,
        /// Its name.
        name: String,
    },
    /// One account's balances add up to more than an amount can be.
    #[error(
        "the genesis balances of account {account} add up to more than {}; lower them",
        Amount::MAX
    )]
    BalanceOverflow {
        /// The account.
        account: PublicKey,
    },
    /// Balances, pledges and pool together are more than an amount can be.
    #[error(
        "the genesis supply (balances, pledges and reward pool together) is more than {}; lower them",
        Amount::MAX
    )]
    SupplyOverflow,
    /// A node the ledger would not register.
    #[error("genesis node {moniker:?}: {refusal}")]
    BadNode {
        /// The node's moniker.
        moniker: String,
        /// Why the ledger refuses it.
        refusal: TxError,
    },
    /// A node's pledge is below the minimum.
    #[error(
        "genesis node {moniker:?}: pledge {} is below the minimum pledge {} (params.minimum_pledge); both are in µUMB",
        pledge.0,
        minimum.0
    )]
    PledgeTooLow {
        /// The node's moniker.
        moniker: String,
        /// Its pledge.
        pledge: Amount,
        /// The minimum.
        minimum: Amount,
    },
}

/// Why text is not an [`Amount`].
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AmountError {
    /// Not a decimal number of UMB.
    #[error("{text:?} is not an amount of UMB: write e.g. 12 or 12.5 (at most 6 decimals)")]
    Malformed {
        /// The text.
        text: String,
    },
    /// More than [`Amount::MAX`].
    #[error("{text:?} is more UMB than can exist")]
    TooLarge {
        /// The text.
        text: String,
    },
}

/// Why text is not a key, signature or hash (written in base58).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Base58Error {
    /// Not base58 at all.
    #[error("{text:?} is not base58: {detail}; copy it whole, as it was printed")]
    NotBase58 {
        /// The text.
        text: String,
        /// What the decoder found (a character outside the alphabet, and where).
        detail: String,
    },
    /// Base58, but too long or too short for what it should be.
    #[error("{text:?} is {len} bytes, but {what} is {expected}; copy it whole, as it was printed")]
    WrongLength {
        /// The text.
        text: String,
        /// What it should be ("an ed25519 public key").
        what: &'static str,
        /// How many bytes it is.
        len: usize,
        /// How many it should be.
        expected: usize,
    },
}
