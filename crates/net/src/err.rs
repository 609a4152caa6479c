//! What can go wrong in the shells.

use std::io;
use std::path::PathBuf;

use umbra_topology::{NoiseKey, TopologyError};
use umbra_wire::FrameError;

/// Why a link failed or was refused. Every one closes the link; none stops the node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The socket failed.
    #[error("link: {0}")]
    Io(#[from] io::Error),
    /// The Noise handshake failed (a peer with another key, or not a Noise peer at all).
    #[error("link handshake: {0}")]
    Handshake(String),
    /// The handshake took too long.
    #[error("link handshake: timed out")]
    Timeout,
    /// A record's length prefix is impossible.
    #[error("link: {0}")]
    Record(umbra_wire::LinkError),
    /// A record did not decrypt: not from the peer the handshake authenticated.
    #[error("link: a record does not decrypt")]
    Decrypt,
    /// The plaintext is not a stream of frames.
    #[error("link: {0}")]
    Frame(FrameError),
    /// The peer closed the link in the middle of a record or frame.
    #[error("link: closed in the middle of a record or frame")]
    Truncated,
    /// The peer's static key belongs to no node the topology lists.
    #[error("link: the peer's key {0} is not in the topology")]
    UnknownPeer(NoiseKey),
}

impl LinkError {
    pub(crate) fn noise(error: snow::Error) -> LinkError {
        LinkError::Handshake(error.to_string())
    }

    /// A short, stable name for the error, for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            LinkError::Io(_) => "io",
            LinkError::Handshake(_) => "handshake",
            LinkError::Timeout => "timeout",
            LinkError::Record(_) => "record",
            LinkError::Decrypt => "decrypt",
            LinkError::Frame(error) => error.reason(),
            LinkError::Truncated => "truncated",
            LinkError::UnknownPeer(_) => "unknown_peer",
        }
    }
}

/// Why a node could not start: a file or a setting, named, with what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file's contents are wrong.
    #[error("{}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it and how to fix it.
        problem: String,
    },
    /// A directory is already set up.
    #[error("{} already holds a node ({} exists); use another directory, or delete it to start over (losing the node's keys)", dir.display(), existing.display())]
    AlreadyInitialised {
        /// The data directory.
        dir: PathBuf,
        /// The file found.
        existing: PathBuf,
    },
    /// A socket could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A thread could not be started (the system is out of threads or memory).
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        /// The thread.
        name: &'static str,
        /// Why.
        source: io::Error,
    },
    /// A thread or task of the daemon panicked (a bug: please report it with the log).
    #[error("the {0} panicked; this is a bug, please report it with the log")]
    Panicked(&'static str),
    /// Every validator answered, and none with a topology that verifies against the genesis
    /// file: the node refuses to start rather than follow a network it cannot trust.
    #[error("refusing to start: {0} (is the genesis file this network's?)")]
    Untrusted(crate::directory::FetchError),
    /// No validator could be asked.
    #[error("{0}")]
    Unreachable(crate::directory::FetchError),
    /// A request to a validator failed.
    #[error("{doing}: {source}")]
    Ledger {
        /// What the daemon was doing ("announcing the Sphinx key", …).
        doing: &'static str,
        /// Why it failed.
        source: crate::ledger::LedgerError,
    },
    /// The ledger lists a Sphinx key for this node that none of its key files holds.
    #[error("the topology lists Sphinx key {key} for this node in rotation {rotation}, but no sphinx*.key in {} holds it; packets to this node fail until it announces a key it holds", dir.display())]
    MissingSphinxKey {
        /// The key listed (base58).
        key: String,
        /// Its key rotation.
        rotation: u32,
        /// The node's data directory.
        dir: PathBuf,
    },
    /// A topology that cannot be routed with.
    #[error("the topology is unusable: {0}")]
    Topology(#[from] TopologyError),
    /// Encrypting data for the disk failed (the system's memory or random source failed).
    #[error("sealing {0} failed")]
    Seal(&'static str),
    /// Asked to stop before it could start.
    #[error("stopped before {0}")]
    Stopped(&'static str),
}

impl NodeError {
    /// A file whose contents are wrong: `problem` says what and how to fix it.
    pub fn invalid(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        NodeError::Invalid {
            path: path.into(),
            problem: problem.into(),
        }
    }
}
