//! The topology document: every node of the network, as one JSON file.
//!
//! ```json
//! {
//!   "key_rotation": 1,
//!   "nodes": [
//!     { "id": 1, "role": "mix", "layer": 1, "mix_address": "127.0.0.1:1789",
//!       "sphinx_key": "<base58>", "noise_key": "<base58>" },
//!     { "id": 9, "role": "gateway", "mix_address": "127.0.0.1:1799",
//!       "client_address": "127.0.0.1:9000",
//!       "sphinx_key": "<base58>", "noise_key": "<base58>" }
//!   ]
//! }
//! ```
//!
//! Keys are 32 bytes in base58 (Bitcoin alphabet), as Nym writes them. Parsing checks
//! everything a node relies on: ids, addresses and keys are unique, layers are 1 to 3, keys are
//! valid; an error names the node and the field.

use std::collections::HashMap;
use std::net::SocketAddr;

use rand_core::Rng;
use serde::{Deserialize, Serialize};
use umbra_sphinx::Hop;

use crate::err::TopologyError;
use crate::node::{Entry, Kind, Layer, NodeDescriptor, NodeId, NoiseKey, Role};

/// The network's nodes and the key rotation their Sphinx keys belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    key_rotation: u32,
    nodes: Vec<NodeDescriptor>,
    by_address: HashMap<SocketAddr, usize>,
    by_noise_key: HashMap<NoiseKey, usize>,
    /// The nodes of each layer, by index into `nodes`, first layer first.
    layers: [Vec<usize>; 3],
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    key_rotation: u32,
    nodes: Vec<RawNode>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: u32,
    role: RawRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    layer: Option<u8>,
    mix_address: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_address: Option<SocketAddr>,
    sphinx_key: String,
    noise_key: String,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawRole {
    Mix,
    Gateway,
}

impl Topology {
    /// A topology of these nodes, checked as [`Topology::from_json`] checks a file.
    pub fn new(key_rotation: u32, nodes: Vec<NodeDescriptor>) -> Result<Topology, TopologyError> {
        let mut by_address = HashMap::new();
        let mut by_noise_key = HashMap::new();
        let mut ids = HashMap::new();
        for (index, node) in nodes.iter().enumerate() {
            match (node.role, node.client_address) {
                (Role::Gateway, None) => {
                    return Err(TopologyError::GatewayWithoutClientAddress { id: node.id });
                }
                (Role::Mix(_), Some(_)) => {
                    return Err(TopologyError::MixWithClientAddress { id: node.id });
                }
                _ => {}
            }
            if ids.insert(node.id, index).is_some() {
                return Err(TopologyError::DuplicateId { id: node.id });
            }
            if let Some(other) = by_address.insert(node.mix_address, index) {
                return Err(TopologyError::DuplicateAddress {
                    address: node.mix_address,
                    first: nodes[other].id,
                    second: node.id,
                });
            }
            if let Some(other) = by_noise_key.insert(node.noise_key, index) {
                return Err(TopologyError::DuplicateNoiseKey {
                    first: nodes[other].id,
                    second: node.id,
                });
            }
        }
        let layers = Layer::ALL.map(|layer| {
            (0..nodes.len())
                .filter(|&i| nodes[i].role == Role::Mix(layer))
                .collect()
        });
        Ok(Topology {
            key_rotation,
            nodes,
            by_address,
            by_noise_key,
            layers,
        })
    }

    /// Reads a topology document.
    pub fn from_json(json: &str) -> Result<Topology, TopologyError> {
        let raw: RawTopology =
            serde_json::from_str(json).map_err(|error| TopologyError::Json(error.to_string()))?;
        let nodes = raw
            .nodes
            .into_iter()
            .map(|node| {
                let id = NodeId(node.id);
                NodeDescriptor::from_entry(Entry {
                    id: node.id,
                    kind: match node.role {
                        RawRole::Mix => Kind::Mix,
                        RawRole::Gateway => Kind::Gateway,
                    },
                    layer: node.layer,
                    mix_address: node.mix_address,
                    client_address: node.client_address,
                    sphinx_key: key_bytes(id, "sphinx_key", &node.sphinx_key)?,
                    noise_key: key_bytes(id, "noise_key", &node.noise_key)?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Topology::new(raw.key_rotation, nodes)
    }

    /// The document as JSON (what [`Topology::from_json`] reads).
    pub fn to_json(&self) -> String {
        let raw = RawTopology {
            key_rotation: self.key_rotation,
            nodes: self
                .nodes
                .iter()
                .map(|node| RawNode {
                    id: node.id.0,
                    role: match node.role {
                        Role::Mix(_) => RawRole::Mix,
                        Role::Gateway => RawRole::Gateway,
                    },
                    layer: node.layer().map(Layer::number),
                    mix_address: node.mix_address,
                    client_address: node.client_address,
                    sphinx_key: bs58::encode(node.sphinx_key.as_bytes()).into_string(),
                    noise_key: node.noise_key.to_string(),
                })
                .collect(),
        };
        // serializing plain structs of strings and numbers cannot fail
        serde_json::to_string_pretty(&raw).unwrap_or_default()
    }

    /// The key rotation the listed Sphinx keys belong to.
    pub fn key_rotation(&self) -> u32 {
        self.key_rotation
    }

    /// Every node.
    pub fn nodes(&self) -> &[NodeDescriptor] {
        &self.nodes
    }

    /// The node with this id.
    pub fn node(&self, id: NodeId) -> Option<&NodeDescriptor> {
        self.nodes.iter().find(|node| node.id == id)
    }

    /// The node listening at `address`.
    pub fn node_at(&self, address: SocketAddr) -> Option<&NodeDescriptor> {
        self.by_address
            .get(&address)
            .map(|&index| &self.nodes[index])
    }

    /// The node whose static Noise key is `key`.
    pub fn node_with_noise_key(&self, key: &NoiseKey) -> Option<&NodeDescriptor> {
        self.by_noise_key.get(key).map(|&index| &self.nodes[index])
    }

    /// The mix nodes of `layer`.
    pub fn layer(&self, layer: Layer) -> impl Iterator<Item = &NodeDescriptor> {
        let index = usize::from(layer.number().saturating_sub(1)).min(2);
        self.layers[index].iter().map(|&i| &self.nodes[i])
    }

    /// The gateways.
    pub fn gateways(&self) -> impl Iterator<Item = &NodeDescriptor> {
        self.nodes.iter().filter(|node| node.role == Role::Gateway)
    }

    /// The node at `address`, if a node of role `from` may send packets to it: a gateway to
    /// the first layer, each layer to the next, the last layer to the gateways.
    pub fn next_hop(&self, from: Role, address: SocketAddr) -> Option<&NodeDescriptor> {
        let to = self.node_at(address)?;
        let allowed = match from {
            Role::Gateway => Role::Mix(Layer::FIRST),
            Role::Mix(layer) => layer.next().map_or(Role::Gateway, Role::Mix),
        };
        (to.role == allowed).then_some(to)
    }

    /// A route through the mixnet to the gateway `to`: one uniformly random node of each
    /// layer, then the gateway.
    pub fn random_route<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        to: NodeId,
    ) -> Result<Vec<Hop>, TopologyError> {
        self.random_route_avoiding(rng, to, |_| false)
    }

    /// A route as [`Topology::random_route`] draws it, but among the mix nodes `avoid` does
    /// not refuse, in each layer where some remain (where none remain, among all).
    pub fn random_route_avoiding<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        to: NodeId,
        avoid: impl Fn(&NodeDescriptor) -> bool,
    ) -> Result<Vec<Hop>, TopologyError> {
        let gateway = self
            .node(to)
            .filter(|node| node.role == Role::Gateway)
            .ok_or(TopologyError::NoSuchGateway { id: to })?;
        let mut route = Vec::with_capacity(4);
        // the modulo bias is below len / 2^64: nil for any real layer
        let mut pick = |len: usize| (rng.next_u64() % len as u64) as usize;
        for (layer, indices) in Layer::ALL.into_iter().zip(&self.layers) {
            if indices.is_empty() {
                return Err(TopologyError::EmptyLayer { layer });
            }
            // a node drawn from the whole layer, kept if it is not to be avoided; otherwise one
            // drawn from those that are not. Either way each of those is equally likely
            // (1/n + (f/n)·1/h = 1/h with h of the n nodes healthy, f failing), and routes
            // cost no pass over the layer while nothing fails.
            let first = &self.nodes[indices[pick(indices.len())]];
            if !avoid(first) {
                route.push(first.hop());
                continue;
            }
            let healthy: Vec<&NodeDescriptor> = indices
                .iter()
                .map(|&i| &self.nodes[i])
                .filter(|node| !avoid(node))
                .collect();
            let node = if healthy.is_empty() {
                &self.nodes[indices[pick(indices.len())]]
            } else {
                healthy[pick(healthy.len())]
            };
            route.push(node.hop());
        }
        route.push(gateway.hop());
        Ok(route)
    }
}

fn key_bytes(id: NodeId, field: &'static str, base58: &str) -> Result<[u8; 32], TopologyError> {
    let bad = |reason: &str| TopologyError::BadKey {
        id,
        field,
        reason: reason.to_owned(),
    };
    let bytes = bs58::decode(base58)
        .into_vec()
        .map_err(|_| bad("not base58"))?;
    bytes
        .try_into()
        .map_err(|bytes: Vec<u8>| bad(&format!("{} bytes, not 32", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use umbra_sphinx::PrivateKey;

    fn network() -> Topology {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let mut nodes = Vec::new();
        for i in 0..8u32 {
            let role = match i {
                0..=5 => Role::Mix(Layer::new((i % 3) as u8 + 1).unwrap()),
                _ => Role::Gateway,
            };
            nodes.push(NodeDescriptor {
                id: NodeId(i + 1),
                role,
                client_address: (role == Role::Gateway)
                    .then(|| format!("127.0.0.1:{}", 3000 + i).parse().unwrap()),
                mix_address: format!("127.0.0.1:{}", 2000 + i).parse().unwrap(),
                sphinx_key: PrivateKey::generate(&mut rng).public_key(),
                noise_key: NoiseKey([i as u8; 32]),
            });
        }
        Topology::new(4, nodes).unwrap()
    }

    #[test]
    fn json_round_trips() {
        let topology = network();
        let json = topology.to_json();
        assert_eq!(Topology::from_json(&json).unwrap(), topology);
        assert!(json.contains("\"role\": \"mix\""));
    }

    #[test]
    fn next_hops_follow_the_layers() {
        let t = network();
        let addr = |id: u32| t.node(NodeId(id)).unwrap().mix_address;
        // node 1 is layer 1, node 2 layer 2, node 3 layer 3, nodes 7 and 8 gateways
        assert!(t.next_hop(Role::Gateway, addr(1)).is_some());
        assert!(t.next_hop(Role::Gateway, addr(2)).is_none());
        assert!(t.next_hop(Role::Mix(Layer::FIRST), addr(2)).is_some());
        assert!(t.next_hop(Role::Mix(Layer::FIRST), addr(3)).is_none());
        assert!(t.next_hop(Role::Mix(Layer::LAST), addr(7)).is_some());
        assert!(t.next_hop(Role::Mix(Layer::LAST), addr(1)).is_none());
        assert!(
            t.next_hop(Role::Mix(Layer::FIRST), "10.0.0.1:1".parse().unwrap())
                .is_none()
        );
    }

    #[test]
    fn routes_take_one_node_per_layer_then_the_gateway() {
        let t = network();
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        for _ in 0..20 {
            let route = t.random_route(&mut rng, NodeId(8)).unwrap();
            assert_eq!(route.len(), 4);
            for (hop, layer) in route.iter().zip(Layer::ALL) {
                let node = t.layer(layer).find(|n| n.hop() == *hop);
                assert!(node.is_some(), "hop not in {layer}");
            }
            assert_eq!(route[3], t.node(NodeId(8)).unwrap().hop());
        }
        assert_eq!(
            t.random_route(&mut rng, NodeId(1)),
            Err(TopologyError::NoSuchGateway { id: NodeId(1) })
        );
    }

    #[test]
    fn routes_avoid_what_they_are_told_while_a_layer_has_another_node() {
        let t = network();
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let layer1: Vec<NodeDescriptor> = t.layer(Layer::FIRST).cloned().collect();
        assert!(
            layer1.len() >= 2,
            "the test network has two first-layer nodes"
        );
        let dead = layer1[0].id;
        for _ in 0..50 {
            let route = t
                .random_route_avoiding(&mut rng, NodeId(8), |n| n.id == dead)
                .unwrap();
            assert_ne!(route[0], layer1[0].hop());
        }
        // avoiding a whole layer avoids nothing there: a route is still drawn
        let everyone = t
            .random_route_avoiding(&mut rng, NodeId(8), |_| true)
            .unwrap();
        assert_eq!(everyone.len(), 4);
    }

    #[test]
    fn bad_documents_say_what_is_wrong() {
        let good = network().to_json();
        let cases = [
            (good.replacen("\"layer\": 1", "\"layer\": 4", 1), "layer 4"),
            (good.replacen("\"layer\": 1,", "", 1), "no layer"),
            (
                good.replacen("\"key_rotation\"", "\"rotation\"", 1),
                "unknown field",
            ),
            (
                good.replacen("127.0.0.1:2001", "127.0.0.1:2000", 1),
                "127.0.0.1:2000",
            ),
            ("{".to_owned(), "EOF"),
        ];
        for (json, expected) in cases {
            let error = Topology::from_json(&json).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{error:?} should mention {expected:?}"
            );
        }
        let raw: serde_json::Value = serde_json::from_str(&good).unwrap();
        let mut bad_key = raw.clone();
        bad_key["nodes"][2]["sphinx_key"] = "0OIl".into();
        let error = Topology::from_json(&bad_key.to_string())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("node 3") && error.contains("sphinx_key") && error.contains("base58"),
            "{error}"
        );
        let mut short_key = raw;
        short_key["nodes"][0]["noise_key"] = "abc".into();
        let error = Topology::from_json(&short_key.to_string())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("noise_key") && error.contains("not 32"),
            "{error}"
        );
    }
}
