//! What stops a validator, typed.

use umbra_ledger::{BlockError, GenesisError};
use umbra_net::NodeError;

/// Why a validator could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidatorError {
    /// A file, a socket or the node runtime failed (the message says which and how to fix it).
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The genesis file does not describe a valid first state.
    #[error("the genesis file is invalid: {0}")]
    Genesis(#[from] GenesisError),
    /// `genesis` was given no validator directory.
    #[error("name at least one validator directory")]
    NoValidators,
    /// Two of the directories given to `genesis` hold the same key.
    #[error("two of the directories hold the same validator key")]
    DuplicateValidator,
    /// A block the validators decided does not apply to this validator's state: its
    /// state differs from theirs (a bug, or a tampered block store).
    #[error("a decided block does not apply: {0}")]
    Diverged(BlockError),
    /// The validator key could not be turned into the consensus network's identity.
    #[error("the validator key cannot make a consensus network identity: {0}")]
    NetworkIdentity(String),
    /// Encoding a consensus message or block failed.
    #[error("encoding {what}: {problem}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why it failed.
        problem: String,
    },
    /// The consensus engine (Malachite) could not start.
    #[error("the consensus engine did not start: {0}")]
    EngineStart(String),
    /// The consensus engine or its network stopped under the validator.
    #[error("the consensus {0} stopped")]
    EngineStopped(&'static str),
    /// A task of the validator panicked (a bug: please report it with the log).
    #[error("the {0} panicked; this is a bug, please report it with the log")]
    Panicked(&'static str),
}
