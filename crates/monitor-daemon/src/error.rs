//! What stops a monitor, typed.

use std::net::SocketAddr;
use std::path::PathBuf;

use umbra_client::ClientError;
use umbra_net::NodeError;
use umbra_topology::NodeId;

/// Why a monitor could not start or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// A file, a key, the configuration or a validator (the message says which and how to fix it).
    #[error(transparent)]
    Node(#[from] NodeError),
    /// Another program holds the HTTP port.
    #[error("cannot listen on {address}: another program holds it (another monitor, or localnet's?); stop it, or set another [http] listen_address in {}", config.display())]
    PortTaken {
        /// The address.
        address: SocketAddr,
        /// The configuration file that names it.
        config: PathBuf,
    },
    /// The client of one of the monitor's gateways could not be made.
    #[error("the client of gateway {gateway}: {source}")]
    Client {
        /// The gateway.
        gateway: NodeId,
        /// Why.
        source: ClientError,
    },
}
