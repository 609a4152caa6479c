//! Registering a node on the ledger and bonding its pledge: what `umbra mixnode register` and
//! `umbra gateway register` do, and `umbra localnet` for each of its nodes.
//!
//! Registration is two transactions: `register_node`, signed by the owner's account and
//! countersigned by the node's identity key, then `bond`, which moves the pledge from the
//! owner's balance. Running it again is safe: a node already registered by the same owner is
//! only bonded if it has no pledge yet, and its key files are not read (its registered Sphinx
//! key is deleted once a later rotation's has replaced it).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use umbra_ledger::{
    Action, Amount, Genesis, Key32, NodeId, NodeInfo, NodeKind, SigningKey, Transaction,
    registration_message,
};

use crate::epoch::read_identity;
use crate::runtime::{NOISE_KEY_FILE, SPHINX_KEY_FILE};
use umbra_net::NodeError;
use umbra_net::keys::read_key;
use umbra_net::ledger::{LedgerClient, LedgerError};
use umbra_net::noise::NoiseKeypair;

/// How long each transaction may take to be committed.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// What to register.
#[derive(Clone, Debug)]
pub struct Registration {
    /// Mix node or gateway.
    pub kind: NodeKind,
    /// Where other nodes reach it.
    pub mix_address: SocketAddr,
    /// Where clients reach it (gateways).
    pub client_address: Option<SocketAddr>,
    /// A name for people.
    pub moniker: String,
    /// The pledge to bond, in µUMB.
    pub pledge: Amount,
}

/// What registration did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The node's number on the ledger.
    pub node: NodeId,
    /// Whether it was registered before this run.
    pub already_registered: bool,
    /// The pledge bonded by this run (0 if it was bonded before).
    pub bonded: Amount,
}

/// Why a node could not be registered or bonded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// An address others cannot reach (unspecified, or port 0).
    #[error(
        "{setting} {address} is not an address others can reach: give the node's public address and port"
    )]
    Unreachable {
        /// The command-line setting.
        setting: &'static str,
        /// The address given.
        address: SocketAddr,
    },
    /// The node's key files.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A request to the validator failed, or the ledger refused a transaction.
    #[error("{doing}: {source}")]
    Ledger {
        /// What registration was doing.
        doing: &'static str,
        /// Why it failed.
        source: LedgerError,
    },
    /// Another account registered this node.
    #[error(
        "this node (identity key {identity}) is already registered as node {node}, by account {owner}, not by {not}"
    )]
    OwnedByAnother {
        /// The node's identity key.
        identity: umbra_ledger::PublicKey,
        /// Its number.
        node: NodeId,
        /// The account that owns it.
        owner: umbra_ledger::PublicKey,
        /// The account that tried.
        not: umbra_ledger::PublicKey,
    },
    /// The registration was committed, yet the validator does not list the node.
    #[error("the registration was committed but the validator does not list the node")]
    NotListed,
    /// The pledge is below the network's minimum.
    #[error("a pledge of {} µUMB is below this network's minimum of {} µUMB", pledge.0, minimum.0)]
    PledgeTooLow {
        /// The pledge asked for.
        pledge: Amount,
        /// The genesis minimum.
        minimum: Amount,
    },
    /// The owner's account cannot pay the pledge.
    #[error(
        "account {account} has {} µUMB; the pledge needs {} µUMB (transfer some to it first)",
        balance.0,
        pledge.0
    )]
    Balance {
        /// The owner's account.
        account: umbra_ledger::PublicKey,
        /// Its balance.
        balance: Amount,
        /// The pledge.
        pledge: Amount,
    },
}

fn failed(doing: &'static str, source: LedgerError) -> RegistrationError {
    RegistrationError::Ledger { doing, source }
}

/// Registers the node in `data_dir` as `owner`'s, and bonds its pledge.
pub async fn register(
    data_dir: &Path,
    client: &LedgerClient,
    owner: &SigningKey,
    registration: &Registration,
) -> Result<Registered, RegistrationError> {
    let role = match registration.kind {
        NodeKind::Mix => "mixnode",
        NodeKind::Gateway => "gateway",
    };
    for (setting, address) in std::iter::once(("--mix-address", Some(registration.mix_address)))
        .chain(std::iter::once((
            "--client-address",
            registration.client_address,
        )))
    {
        if let Some(address) = address
            && (address.ip().is_unspecified() || address.port() == 0)
        {
            return Err(RegistrationError::Unreachable { setting, address });
        }
    }
    let identity = read_identity(data_dir, role)?;
    let genesis: Genesis = client
        .get("/genesis")
        .await
        .map_err(|error| failed("reading the validator's genesis", error))?;
    let chain_id = genesis.chain_id.clone();
    let minimum = genesis.params.minimum_pledge;

    if let Some(existing) = client
        .node_with_identity(&identity.public())
        .await
        .map_err(|error| failed("looking the node up", error))?
    {
        if existing.owner != owner.public() {
            return Err(RegistrationError::OwnedByAnother {
                identity: identity.public(),
                node: existing.id,
                owner: existing.owner,
                not: owner.public(),
            });
        }
        if !existing.pledge.is_zero() {
            return Ok(Registered {
                node: existing.id,
                already_registered: true,
                bonded: Amount::ZERO,
            });
        }
        bond(
            client,
            &chain_id,
            owner,
            existing.id,
            registration.pledge,
            minimum,
        )
        .await?;
        return Ok(Registered {
            node: existing.id,
            already_registered: true,
            bonded: registration.pledge,
        });
    }

    check_pledge(client, owner, registration.pledge, minimum).await?;
    // only a new registration needs the keys: a registered node deletes `sphinx.key` once a
    // later rotation's key has replaced it
    let noise = NoiseKeypair::from_private(read_key(&data_dir.join(NOISE_KEY_FILE))?);
    let sphinx = umbra_sphinx::PrivateKey::from_bytes(read_key(&data_dir.join(SPHINX_KEY_FILE))?);
    let info = NodeInfo {
        kind: registration.kind,
        identity_key: identity.public(),
        sphinx_key: Key32(*sphinx.public_key().as_bytes()),
        noise_key: Key32(noise.public().0),
        mix_address: registration.mix_address,
        client_address: registration.client_address,
        moniker: registration.moniker.clone(),
    };
    let node_signature = identity.sign(&registration_message(&chain_id, &owner.public(), &info));
    let nonce = client
        .account(&owner.public())
        .await
        .map_err(|error| failed("reading the owner's account", error))?
        .next_nonce;
    let transaction = Transaction::sign(
        &chain_id,
        owner,
        nonce,
        Action::RegisterNode {
            node: info,
            node_signature,
        },
    );
    commit(client, &transaction, "registering the node").await?;
    let node = client
        .node_with_identity(&identity.public())
        .await
        .map_err(|error| failed("looking the new node up", error))?
        .ok_or(RegistrationError::NotListed)?
        .id;
    bond(client, &chain_id, owner, node, registration.pledge, minimum).await?;
    Ok(Registered {
        node,
        already_registered: false,
        bonded: registration.pledge,
    })
}

async fn check_pledge(
    client: &LedgerClient,
    owner: &SigningKey,
    pledge: Amount,
    minimum: Amount,
) -> Result<(), RegistrationError> {
    if pledge < minimum {
        return Err(RegistrationError::PledgeTooLow { pledge, minimum });
    }
    let balance = client
        .account(&owner.public())
        .await
        .map_err(|error| failed("reading the owner's account", error))?
        .account
        .balance;
    if balance < pledge {
        return Err(RegistrationError::Balance {
            account: owner.public(),
            balance,
            pledge,
        });
    }
    Ok(())
}

async fn bond(
    client: &LedgerClient,
    chain_id: &str,
    owner: &SigningKey,
    node: NodeId,
    pledge: Amount,
    minimum: Amount,
) -> Result<(), RegistrationError> {
    check_pledge(client, owner, pledge, minimum).await?;
    let nonce = client
        .account(&owner.public())
        .await
        .map_err(|error| failed("reading the owner's account", error))?
        .next_nonce;
    let transaction = Transaction::sign(
        chain_id,
        owner,
        nonce,
        Action::Bond {
            node,
            amount: pledge,
        },
    );
    commit(client, &transaction, "bonding the node").await
}

async fn commit(
    client: &LedgerClient,
    transaction: &Transaction,
    what: &'static str,
) -> Result<(), RegistrationError> {
    let hash = client
        .submit(transaction)
        .await
        .map_err(|error| failed(what, error))?;
    client
        .wait_for(&hash, COMMIT_TIMEOUT)
        .await
        .map_err(|error| failed(what, error))?;
    Ok(())
}
