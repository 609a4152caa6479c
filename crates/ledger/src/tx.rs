//! Transactions: what an account asks the ledger to do, signed with the account's key and
//! numbered with its nonce so that no transaction can be applied twice.

use std::fmt;
use std::net::SocketAddr;
use std::num::ParseIntError;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::fixed::{Amount, Ppm};
use crate::keys::{Hash, Key32, PublicKey, Signature, SigningKey, canonical};

/// A node's number on the ledger, given at registration: the topology's
/// [`NodeId`](umbra_topology::NodeId). A plain number in JSON, the canonical encoding, URLs and
/// messages, as when it was a `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for NodeId {
    type Err = ParseIntError;

    fn from_str(text: &str) -> Result<NodeId, ParseIntError> {
        text.parse().map(NodeId)
    }
}

impl From<NodeId> for umbra_topology::NodeId {
    fn from(id: NodeId) -> umbra_topology::NodeId {
        umbra_topology::NodeId(id.0)
    }
}

impl From<umbra_topology::NodeId> for NodeId {
    fn from(id: umbra_topology::NodeId) -> NodeId {
        NodeId(id.0)
    }
}

/// What a node does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A mix node: placed in one of the three layers each epoch it is active.
    Mix,
    /// A gateway: clients' entry and exit.
    Gateway,
}

/// What a node declares about itself when it registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInfo {
    /// Mix node or gateway.
    pub kind: NodeKind,
    /// The node's ed25519 identity key, which signs the registration and its key announcements.
    pub identity_key: PublicKey,
    /// Its X25519 Sphinx key for the key rotation current at registration.
    pub sphinx_key: Key32,
    /// Its static X25519 Noise key.
    pub noise_key: Key32,
    /// Where other nodes reach it.
    pub mix_address: SocketAddr,
    /// Where clients connect to it (gateways only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<SocketAddr>,
    /// A name for people (at most 64 bytes).
    #[serde(default)]
    pub moniker: String,
}

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Moves `amount` from the signer to `to`.
    Transfer {
        /// The receiving account.
        to: PublicKey,
        /// How much.
        amount: Amount,
    },
    /// Registers a node owned by the signer. `node_signature` is the node identity key's
    /// signature of [`registration_message`], proving the node agrees to be owned by the signer.
    RegisterNode {
        /// The node.
        node: NodeInfo,
        /// The node's consent.
        node_signature: Signature,
    },
    /// Moves `amount` from the signer's balance into the pledge of its node. The pledge after
    /// it must be at least the minimum pledge.
    Bond {
        /// The signer's node.
        node: NodeId,
        /// How much.
        amount: Amount,
    },
    /// At the next epoch boundary: the node leaves, its pledge returns to its owner and every
    /// delegation to it to its delegator.
    Unbond {
        /// The signer's node.
        node: NodeId,
    },
    /// Delegates `amount` to a node, from the next epoch boundary on.
    Delegate {
        /// The node.
        node: NodeId,
        /// How much.
        amount: Amount,
    },
    /// At the next epoch boundary: the signer's delegation to `node`, with its rewards, returns
    /// to the signer's balance.
    Undelegate {
        /// The node.
        node: NodeId,
    },
    /// Sets the operating cost and profit margin of the signer's node.
    UpdateNode {
        /// The signer's node.
        node: NodeId,
        /// Operating cost per interval, in µUMB.
        operating_cost: Amount,
        /// Profit margin, in ppm (at most 1 000 000).
        profit_margin: Ppm,
    },
    /// Announces the node's Sphinx key for a key rotation (the next one, or the current one for
    /// a node that missed the announcement). Signed by the owner or by the node's identity key
    /// itself (as its own account: a running node rotates its keys without its owner's key);
    /// `node_signature` is the node identity key's signature of [`sphinx_key_message`].
    AnnounceSphinxKey {
        /// The node.
        node: NodeId,
        /// The key rotation the key is for.
        rotation: u32,
        /// The key.
        sphinx_key: Key32,
        /// The node's signature.
        node_signature: Signature,
    },
    /// A network monitor's performance scores for the nodes it measured this epoch (only from
    /// accounts genesis names as monitors).
    SubmitPerformance {
        /// The current epoch.
        epoch: u64,
        /// (node, performance in ppm) pairs.
        scores: Vec<(NodeId, Ppm)>,
        /// The hash of the evidence the scores were computed from (the monitor publishes it, so
        /// that anyone can recompute them).
        evidence: Hash,
    },
    /// Ends the current epoch (valid once its time is over; anybody may send it).
    AdvanceEpoch,
    /// A validator's next beacon value: the preimage of its previous one (see [`crate::beacon`]).
    RevealBeacon {
        /// The value.
        reveal: Hash,
    },
    /// A validator's signature of the current epoch's topology document.
    SignTopology {
        /// The current epoch.
        epoch: u64,
        /// The signature of [`crate::topology::TopologyDocument::signing_message`].
        signature: Signature,
    },
    /// A validator's public ticket-signing key for a key period (the current or the next),
    /// signed with its validator key (as its own account). Set once per validator and period.
    AnnounceIssuer {
        /// The key period.
        period: u64,
        /// The key's SPKI bytes ([`umbra_tickets::IssuerPublicKey::as_bytes`]); hex in JSON.
        #[serde(with = "crate::hex::bytes")]
        key: Vec<u8>,
    },
    /// Buys `count` bandwidth tickets of the current key period: `count × ticket_price` goes
    /// from the signer to the fee pool, and the purchase is recorded under the transaction's
    /// hash for the validators to sign.
    BuyTickets {
        /// How many (1 to [`umbra_tickets::MAX_TICKETS_PER_PURCHASE`]).
        count: u32,
    },
    /// A gateway's claim for tickets clients spent at it: each ticket's price leaves the fee
    /// pool for the gateway's owner and the reward pool. Signed by the gateway's owner or its
    /// identity key.
    Redeem {
        /// The gateway (a bonded gateway that is not leaving).
        gateway: NodeId,
        /// The tickets ([`umbra_tickets::Ticket::to_bytes`]), at most
        /// [`MAX_REDEEM_TICKETS`]; hex in JSON.
        #[serde(with = "crate::hex::list")]
        tickets: Vec<Vec<u8>>,
    },
}

/// The most tickets one [`Action::Redeem`] carries (each costs a few RSA verifications).
pub const MAX_REDEEM_TICKETS: usize = 256;

/// A transaction: an action, its signer, the signer's nonce and signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    /// The signing account.
    pub signer: PublicKey,
    /// The signer's transaction count before this one.
    pub nonce: u64,
    /// What to do.
    pub action: Action,
    /// The signer's signature of [`Transaction::signing_message`].
    pub signature: Signature,
}

#[derive(Serialize)]
struct Signed<'a> {
    domain: &'static str,
    chain_id: &'a str,
    signer: &'a PublicKey,
    nonce: u64,
    action: &'a Action,
}

impl Transaction {
    /// Signs `action` as `key`'s transaction number `nonce` on chain `chain_id`.
    pub fn sign(chain_id: &str, key: &SigningKey, nonce: u64, action: Action) -> Transaction {
        let signer = key.public();
        let message = signing_message(chain_id, &signer, nonce, &action);
        Transaction {
            signer,
            nonce,
            signature: key.sign(&message),
            action,
        }
    }

    /// The bytes the signer signs.
    pub fn signing_message(&self, chain_id: &str) -> Vec<u8> {
        signing_message(chain_id, &self.signer, self.nonce, &self.action)
    }

    /// Whether the signature is the signer's.
    pub fn signature_is_valid(&self, chain_id: &str) -> bool {
        self.signer
            .verifies(&self.signing_message(chain_id), &self.signature)
    }

    /// The transaction's hash (its id).
    pub fn hash(&self) -> Hash {
        Hash::of(&[&canonical(self)])
    }
}

fn signing_message(chain_id: &str, signer: &PublicKey, nonce: u64, action: &Action) -> Vec<u8> {
    canonical(&Signed {
        domain: "umbra-tx-v1",
        chain_id,
        signer,
        nonce,
        action,
    })
}

/// What a node's identity key signs to consent to being registered by `owner`.
pub fn registration_message(chain_id: &str, owner: &PublicKey, node: &NodeInfo) -> Vec<u8> {
    canonical(&("umbra-register-node-v1", chain_id, owner, node))
}

/// What a node's identity key signs to announce its Sphinx key for `rotation`.
pub fn sphinx_key_message(chain_id: &str, node: NodeId, rotation: u32, key: &Key32) -> Vec<u8> {
    canonical(&("umbra-sphinx-key-v1", chain_id, node, rotation, key))
}
