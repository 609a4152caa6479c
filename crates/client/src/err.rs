//! What can go wrong in a client's core.

use umbra_sphinx::BuildError;
use umbra_topology::{Layer, NodeId};

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
    /// The topology cannot carry the SURBs to attach.
    #[error("the topology has no route: {0}")]
    NoRoute(NoRoute),
    /// A SURB to attach could not be built.
    #[error("the SURBs to attach could not be made: {0}")]
    Surb(BuildError),
    /// A test loop's mix node is not in its layer of the current topology.
    #[error("test loop: node {node} is not in {layer} of the current topology")]
    NotInLayer {
        /// The node.
        node: umbra_topology::NodeId,
        /// The layer it was given for.
        layer: umbra_topology::Layer,
    },
    /// Too many test loops wait for a slot.
    #[error("too many test loops wait for a slot")]
    Busy,
}

/// Why a message was given up on ([`Event::Failed`](crate::Event::Failed)). Its text is what
/// the client daemon's API reports as the failure's `reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// Some packet of it was not acknowledged within `acks.give_up_after` of the message
    /// being accepted, retransmissions included.
    #[error("not acknowledged in time (acks.give_up_after)")]
    NotAcknowledged,
    /// The recipient's gateway is no longer in the topology, so nothing reaches it.
    #[error("the recipient's gateway left the topology")]
    RecipientGatewayLeft,
    /// The topology cannot carry a packet of it, or the SURB-ACK for one.
    #[error("the topology has no route ({0})")]
    NoRoute(NoRoute),
    /// A packet for one of its fragments could not be built (fragments are cut to fit, so
    /// this is a bug).
    #[error("a fragment does not fit a packet")]
    Unbuildable(#[source] BuildError),
    /// It is a reply, and the SURBs of the sender it answers are gone.
    #[error(
        "the sender's SURBs were dropped to make room or expired (surbs.max_senders, surbs.lifetime)"
    )]
    SenderForgotten,
}

/// Why no route through the mix layers could be drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoRoute {
    /// A mix layer has no nodes, so no route crosses it.
    #[error("{layer} has no nodes")]
    EmptyLayer {
        /// The empty layer.
        layer: Layer,
    },
    /// The route was to end at a node that is not a gateway of the topology.
    #[error("{gateway} is not a gateway of the topology")]
    NotAGateway {
        /// The node.
        gateway: NodeId,
    },
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
