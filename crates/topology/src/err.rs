//! What can be wrong with a topology.

use std::net::SocketAddr;

use crate::node::{Layer, NodeId};

/// Why a topology document was refused, or a route could not be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopologyError {
    /// The document is not valid JSON of the expected shape.
    #[error("reading the topology: {0}")]
    Json(String),
    /// A mix node's layer is not 1, 2 or 3.
    #[error("reading the topology: {id} has layer {layer}; mix layers are 1, 2 and 3")]
    BadLayer {
        /// The node.
        id: NodeId,
        /// The layer given.
        layer: u8,
    },
    /// A mix node has no layer.
    #[error("reading the topology: {id} is a mix node but has no layer")]
    MissingLayer {
        /// The node.
        id: NodeId,
    },
    /// A gateway has a layer.
    #[error(
        "reading the topology: {id} is a gateway but has a layer; gateways serve outside the layers"
    )]
    GatewayWithLayer {
        /// The node.
        id: NodeId,
    },
    /// A gateway has no address for clients.
    #[error(
        "reading the topology: {id} is a gateway but has no client_address for clients to connect to"
    )]
    GatewayWithoutClientAddress {
        /// The node.
        id: NodeId,
    },
    /// A mix node has an address for clients.
    #[error(
        "reading the topology: {id} is a mix node but has a client_address; only gateways take clients"
    )]
    MixWithClientAddress {
        /// The node.
        id: NodeId,
    },
    /// A key is not 32 bytes of base58.
    #[error("reading the topology: {id} has a bad {field}: {reason}")]
    BadKey {
        /// The node.
        id: NodeId,
        /// Which key.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Two nodes share an id.
    #[error("reading the topology: two nodes are numbered {id}")]
    DuplicateId {
        /// The id.
        id: NodeId,
    },
    /// Two nodes share a mix address.
    #[error("reading the topology: {first} and {second} both listen at {address}")]
    DuplicateAddress {
        /// The address.
        address: SocketAddr,
        /// The first node with it.
        first: NodeId,
        /// The second.
        second: NodeId,
    },
    /// Two nodes share a Noise key.
    #[error("reading the topology: {first} and {second} have the same Noise key")]
    DuplicateNoiseKey {
        /// The first node with it.
        first: NodeId,
        /// The second.
        second: NodeId,
    },
    /// A route was asked for to a node that is not a gateway of the topology.
    #[error("choosing a route: {id} is not a gateway of the topology")]
    NoSuchGateway {
        /// The node asked for.
        id: NodeId,
    },
    /// A layer has no nodes, so no route crosses it.
    #[error("choosing a route: {layer} has no nodes")]
    EmptyLayer {
        /// The empty layer.
        layer: Layer,
    },
}
