//! Each epoch's topology document and the certificate that makes it trustworthy.
//!
//! At every epoch boundary the ledger freezes a [`TopologyDocument`]: the active nodes, their
//! layers, keys and addresses. Each validator signs the document's
//! [`signing_message`](TopologyDocument::signing_message) and puts its signature on the ledger
//! ([`crate::Action::SignTopology`]); once signatures from more than 2/3 of the voting power are
//! there, the document and those signatures — the [`Certificate`] — are all a client needs. A
//! client checks them against the validator set from genesis (see [`SignedTopology::verify`]);
//! it never has to trust the validator it fetched them from.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::keys::{Key32, PublicKey, Signature, canonical};
use crate::tx::{NodeId, NodeKind};

/// One active node as the topology document lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyNode {
    /// The node's number.
    pub id: NodeId,
    /// Mix node or gateway.
    pub kind: NodeKind,
    /// The mix layer (1 to 3) of a mix node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<u8>,
    /// Its identity key.
    pub identity_key: PublicKey,
    /// Its Sphinx key for the document's key rotation.
    pub sphinx_key: Key32,
    /// Its Sphinx key for the next rotation, announced one epoch ahead (in a rotation's last
    /// epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sphinx_key: Option<Key32>,
    /// Its static Noise key.
    pub noise_key: Key32,
    /// Where other nodes reach it.
    pub mix_address: SocketAddr,
    /// Where clients connect (gateways).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<SocketAddr>,
}

/// The network of one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyDocument {
    /// The chain.
    pub chain_id: String,
    /// The epoch.
    pub epoch: u64,
    /// When the epoch started (ms since the Unix epoch).
    pub start_ms: u64,
    /// When it is due to end.
    pub end_ms: u64,
    /// The Sphinx key rotation of the epoch.
    pub rotation: u32,
    /// The active nodes: mix nodes by layer, then gateways.
    pub nodes: Vec<TopologyNode>,
}

impl TopologyDocument {
    /// The bytes each validator signs.
    pub fn signing_message(&self) -> Vec<u8> {
        canonical(&("umbra-topology-v1", self))
    }

    /// The document as the topology the mix nodes, gateways and clients route with.
    pub fn to_topology(&self) -> Result<umbra_topology::Topology, umbra_topology::TopologyError> {
        use umbra_topology::{Entry, Kind, NodeDescriptor, Topology};
        let nodes = self
            .nodes
            .iter()
            .map(|node| {
                NodeDescriptor::from_entry(Entry {
                    id: node.id.0,
                    kind: match node.kind {
                        NodeKind::Mix => Kind::Mix,
                        NodeKind::Gateway => Kind::Gateway,
                    },
                    layer: node.layer,
                    mix_address: node.mix_address,
                    client_address: node.client_address,
                    sphinx_key: node.sphinx_key.0,
                    noise_key: node.noise_key.0,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Topology::new(self.rotation, nodes)
    }
}

/// Validators' signatures of a topology document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// (validator key, signature) pairs.
    pub signatures: Vec<(PublicKey, Signature)>,
}

/// A topology document with its certificate: what `GET /topology` serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTopology {
    /// The document.
    pub document: TopologyDocument,
    /// The signatures.
    pub certificate: Certificate,
}

/// A validator as clients know it from genesis: its key and voting power.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorKey {
    /// The validator's key.
    pub key: PublicKey,
    /// Its voting power.
    pub power: u64,
}

/// Why a signed topology was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CertificateError {
    /// The document is for another chain.
    #[error("the topology is for chain {found:?}, not {expected:?}")]
    WrongChain {
        /// The expected chain.
        expected: String,
        /// The document's chain.
        found: String,
    },
    /// A signature is from a key that is not a validator's.
    #[error("the certificate has a signature from {key}, which is not one of the validators")]
    UnknownSigner {
        /// The key.
        key: PublicKey,
    },
    /// A validator signed twice.
    #[error("the certificate has two signatures from validator {key}")]
    DuplicateSigner {
        /// The key.
        key: PublicKey,
    },
    /// A signature does not verify.
    #[error("validator {key}'s signature of the topology does not verify: forged or altered")]
    BadSignature {
        /// The key.
        key: PublicKey,
    },
    /// Valid signatures carry too little voting power.
    #[error("the topology is signed by {signed} of {total} voting power; more than 2/3 is needed")]
    NotEnoughPower {
        /// The power of the valid signatures.
        signed: u64,
        /// All power.
        total: u64,
    },
}

impl SignedTopology {
    /// Checks the certificate against the validator set: every signature is a distinct
    /// validator's and verifies, and together they hold more than 2/3 of the voting power.
    pub fn verify(
        &self,
        chain_id: &str,
        validators: &[ValidatorKey],
    ) -> Result<(), CertificateError> {
        if self.document.chain_id != chain_id {
            return Err(CertificateError::WrongChain {
                expected: chain_id.to_owned(),
                found: self.document.chain_id.clone(),
            });
        }
        let message = self.document.signing_message();
        let total: u64 = validators.iter().map(|validator| validator.power).sum();
        let mut seen = BTreeSet::new();
        let mut signed = 0u64;
        for (key, signature) in &self.certificate.signatures {
            let validator = validators
                .iter()
                .find(|validator| validator.key == *key)
                .ok_or(CertificateError::UnknownSigner { key: *key })?;
            if !seen.insert(*key) {
                return Err(CertificateError::DuplicateSigner { key: *key });
            }
            if !key.verifies(&message, signature) {
                return Err(CertificateError::BadSignature { key: *key });
            }
            signed += validator.power;
        }
        if u128::from(signed) * 3 <= u128::from(total) * 2 {
            return Err(CertificateError::NotEnoughPower { signed, total });
        }
        Ok(())
    }
}
