//! What stops an explorer, typed.

use std::net::SocketAddr;
use std::path::PathBuf;

use umbra_net::NodeError;

/// Why an explorer could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExplorerError {
    /// A file, the configuration or the genesis (the message says which and how to fix it).
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Another program holds the HTTP port.
    #[error("cannot listen on {address}: another program holds it (another explorer, or localnet's?); stop it, or set another [http] listen_address in {}", config.display())]
    PortTaken {
        /// The address.
        address: SocketAddr,
        /// The configuration file that names it.
        config: PathBuf,
    },
}
