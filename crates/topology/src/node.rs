//! What the network knows about one node.

use std::fmt;
use std::net::SocketAddr;

use umbra_sphinx::{Hop, NodeAddress, PublicKey};

use crate::err::TopologyError;

/// A node's number in the topology, unique in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}", self.0)
    }
}

/// One of the three mix layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Layer(u8);

impl Layer {
    /// The first layer, which gateways send into.
    pub const FIRST: Layer = Layer(1);
    /// The last layer, which sends to gateways.
    pub const LAST: Layer = Layer(3);
    /// The three layers in order.
    pub const ALL: [Layer; 3] = [Layer(1), Layer(2), Layer(3)];

    /// Layer `number`, if it is 1, 2 or 3.
    pub const fn new(number: u8) -> Option<Layer> {
        match number {
            1..=3 => Some(Layer(number)),
            _ => None,
        }
    }

    /// The layer's number.
    pub const fn number(self) -> u8 {
        self.0
    }

    /// The layer after this one (none after the last).
    pub const fn next(self) -> Option<Layer> {
        Layer::new(self.0 + 1)
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer {}", self.0)
    }
}

/// What a node does in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A mix node serving in a layer.
    Mix(Layer),
    /// A gateway: clients' entry and exit.
    Gateway,
}

/// A node's static Noise public key (X25519), which peers check its links against.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoiseKey(pub [u8; 32]);

impl fmt::Debug for NoiseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoiseKey({})", bs58::encode(&self.0).into_string())
    }
}

impl fmt::Display for NoiseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(&self.0).into_string())
    }
}

/// Everything peers and clients need to know about a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDescriptor {
    /// The node's number.
    pub id: NodeId,
    /// What it does.
    pub role: Role,
    /// Where other nodes reach it (and the address Sphinx headers name it by).
    pub mix_address: SocketAddr,
    /// Its Sphinx public key for the topology's key rotation.
    pub sphinx_key: PublicKey,
    /// Its static Noise public key.
    pub noise_key: NoiseKey,
    /// Where clients connect to it (gateways only): a WebSocket endpoint.
    pub client_address: Option<SocketAddr>,
}

/// What a document says a node is: a mix node (with a layer) or a gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A mix node.
    Mix,
    /// A gateway.
    Gateway,
}

/// A node as documents write it, before it is checked: the topology file's entries and the
/// ledger's topology documents both become [`NodeDescriptor`]s through
/// [`NodeDescriptor::from_entry`].
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// The node's number.
    pub id: u32,
    /// Mix node or gateway.
    pub kind: Kind,
    /// The layer of a mix node.
    pub layer: Option<u8>,
    /// Where other nodes reach it.
    pub mix_address: SocketAddr,
    /// Where clients reach it (gateways).
    pub client_address: Option<SocketAddr>,
    /// Its Sphinx public key.
    pub sphinx_key: [u8; 32],
    /// Its Noise public key.
    pub noise_key: [u8; 32],
}

impl NodeDescriptor {
    /// Checks an entry: a mix node has a layer from 1 to 3, a gateway none, and the Sphinx key
    /// is a valid curve point. An error names the node and the field.
    pub fn from_entry(entry: Entry) -> Result<NodeDescriptor, TopologyError> {
        let id = NodeId(entry.id);
        let role = match (entry.kind, entry.layer) {
            (Kind::Mix, Some(number)) => {
                Role::Mix(Layer::new(number).ok_or(TopologyError::BadLayer { id, layer: number })?)
            }
            (Kind::Mix, None) => return Err(TopologyError::MissingLayer { id }),
            (Kind::Gateway, None) => Role::Gateway,
            (Kind::Gateway, Some(_)) => return Err(TopologyError::GatewayWithLayer { id }),
        };
        let sphinx_key =
            PublicKey::from_bytes(entry.sphinx_key).map_err(|error| TopologyError::BadKey {
                id,
                field: "sphinx_key",
                reason: error.to_string(),
            })?;
        Ok(NodeDescriptor {
            id,
            role,
            mix_address: entry.mix_address,
            sphinx_key,
            noise_key: NoiseKey(entry.noise_key),
            client_address: entry.client_address,
        })
    }

    /// The node as a hop of a Sphinx route.
    pub fn hop(&self) -> Hop {
        Hop::new(self.routing_address(), self.sphinx_key)
    }

    /// The address Sphinx headers name the node by.
    pub fn routing_address(&self) -> NodeAddress {
        umbra_wire::address::encode(self.mix_address)
    }

    /// The node's mix layer, if it is a mix node.
    pub fn layer(&self) -> Option<Layer> {
        match self.role {
            Role::Mix(layer) => Some(layer),
            Role::Gateway => None,
        }
    }
}
