//! What can go wrong in a client's core.

use crate::message::SenderTag;

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting `{setting}`: {problem}")]
pub struct ConfigError {
    /// The setting.
    pub setting: &'static str,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            setting,
            problem: problem.into(),
        }
    }
}

/// Why a message could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The message is larger than the configured maximum.
    #[error(
        "the message is {len} bytes; the most this client sends is {max} (messages.max_message_size)"
    )]
    TooLarge {
        /// Its size.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The recipient's gateway is not in the topology.
    #[error("the recipient's gateway is not in the topology (stale address, or another network)")]
    UnknownGateway,
    /// No one with this tag has sent SURBs.
    #[error("no SURBs from sender {0}: only someone who sent you SURBs can be replied to")]
    UnknownSender(SenderTag),
    /// The topology cannot carry a packet (a layer has no nodes).
    #[error("the topology has no route: {0}")]
    NoRoute(String),
}

/// Why a client could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The client's gateway is not a gateway of the topology.
    #[error("the client's gateway is not a gateway of the topology")]
    GatewayNotInTopology,
}
