//! Opening the TCP connection a stream carries: resolve, check, connect.
//!
//! Every resolved address is checked against the exit policy before any connection is
//! attempted, so a name that resolves to 127.0.0.1 is refused like 127.0.0.1 itself
//! (`docs/exit-policy.md`). Refused addresses are dropped; the others are tried in the order
//! the resolver gave them, each with its own timeout, all within one overall deadline.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tracing::debug;
use umbra_client::exit_policy::PolicyRefusal;
use umbra_client::stream::{Destination, Host, OpenFailure};
use umbra_client::{ExitPolicy, ExitPolicyConfig};

use umbra_net::NodeError;

/// How long the exit waits while opening a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectTimeouts {
    /// For resolving a name. Default 10 s.
    pub resolve: Duration,
    /// For each address tried. Default 10 s.
    pub attempt: Duration,
    /// For the whole open, resolution included. Default 30 s.
    pub overall: Duration,
}

impl Default for ConnectTimeouts {
    fn default() -> Self {
        ConnectTimeouts {
            resolve: Duration::from_secs(10),
            attempt: Duration::from_secs(10),
            overall: Duration::from_secs(30),
        }
    }
}

/// Why the exit could not open a connection. [`ConnectError::reason`] is what the stream
/// reports back; the message is a short detail that never names the destination (the
/// variants' fields may: log them at debug level at most).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The name could not be resolved (not found, or the resolver failed).
    #[error("resolving the name: {0}")]
    Resolve(io::Error),
    /// The name resolved to no address.
    #[error("resolving the name: no addresses")]
    NoAddresses,
    /// The exit policy refuses every address (the refusal of the first one is kept).
    #[error("the exit policy does not allow this destination")]
    NotAllowed(PolicyRefusal),
    /// Every allowed address failed; this is the last address's error.
    #[error("connecting: {0}")]
    Connect(io::Error),
    /// Resolution, an attempt or the whole open took too long.
    #[error("{0} timed out")]
    Timeout(Stage),
}

/// What was being done when an open timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Resolving the name.
    Resolve,
    /// Connecting to the addresses.
    Connect,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Resolve => "resolving the name",
            Stage::Connect => "connecting",
        })
    }
}

impl ConnectError {
    /// The open failure the stream reports for this error.
    pub fn reason(&self) -> OpenFailure {
        match self {
            ConnectError::Resolve(_) | ConnectError::NoAddresses => OpenFailure::Unreachable,
            ConnectError::NotAllowed(_) => OpenFailure::NotAllowed,
            ConnectError::Timeout(_) => OpenFailure::TtlExpired,
            ConnectError::Connect(error) => match error.kind() {
                io::ErrorKind::ConnectionRefused => OpenFailure::Refused,
                io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable
                | io::ErrorKind::NetworkDown => OpenFailure::Unreachable,
                io::ErrorKind::TimedOut => OpenFailure::TtlExpired,
                _ => OpenFailure::General,
            },
        }
    }
}

/// Opens the TCP connection for a stream to `destination`, if `policy` allows it.
///
/// A name is resolved here, at the exit. Every address is checked before any connection is
/// attempted; those the policy refuses are never connected to. The allowed ones are tried in
/// the resolver's order (IPv6 and IPv4 as they come), each for at most `timeouts.attempt`,
/// the whole open for at most `timeouts.overall`.
pub async fn connect(
    destination: &Destination,
    policy: &ExitPolicy,
    timeouts: ConnectTimeouts,
) -> Result<TcpStream, ConnectError> {
    let deadline = Instant::now() + timeouts.overall;
    let port = destination.port();
    let resolved: Vec<SocketAddr> = match destination.host() {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        Host::Name(name) => {
            let resolve_by = deadline.min(Instant::now() + timeouts.resolve);
            match timeout_at(resolve_by, tokio::net::lookup_host((name.as_str(), port))).await {
                Err(_elapsed) => return Err(ConnectError::Timeout(Stage::Resolve)),
                Ok(Err(error)) => return Err(ConnectError::Resolve(error)),
                Ok(Ok(addresses)) => addresses.collect(),
            }
        }
    };
    let allowed = allowed_addresses(&resolved, policy)?;
    let mut last_error = None;
    for address in allowed {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let limit = timeouts.attempt.min(deadline - now);
        match timeout(limit, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => {
                debug!(%address, %error, "exit: connection attempt failed");
                last_error = Some(ConnectError::Connect(error));
            }
            Err(_elapsed) => {
                debug!(%address, "exit: connection attempt timed out");
                last_error = Some(ConnectError::Timeout(Stage::Connect));
            }
        }
    }
    Err(last_error.unwrap_or(ConnectError::Timeout(Stage::Connect)))
}

/// The addresses the policy allows, in order; all of them checked before anything connects.
fn allowed_addresses(
    resolved: &[SocketAddr],
    policy: &ExitPolicy,
) -> Result<Vec<SocketAddr>, ConnectError> {
    let mut first_refusal = None;
    let mut allowed = Vec::with_capacity(resolved.len());
    for &address in resolved {
        match policy.check(address) {
            Ok(()) => allowed.push(address),
            Err(refusal) => {
                debug!(%refusal, "exit: address refused by the policy");
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    match (allowed.is_empty(), first_refusal) {
        (false, _) => Ok(allowed),
        (true, Some(refusal)) => Err(ConnectError::NotAllowed(refusal)),
        (true, None) => Err(ConnectError::NoAddresses),
    }
}

/// The exit policy the settings describe: the rules of `config.file` (relative to
/// `data_dir`), or [`ExitPolicy::default`] without a file, with `insecure_allow_private`
/// applied. An unreadable file or line is an error naming the file (and the line).
pub fn load_policy(config: &ExitPolicyConfig, data_dir: &Path) -> Result<ExitPolicy, NodeError> {
    let policy = match &config.file {
        None => ExitPolicy::default(),
        Some(file) => {
            let path = data_dir.join(file);
            let text = std::fs::read_to_string(&path).map_err(|source| NodeError::Read {
                path: path.clone(),
                source,
            })?;
            ExitPolicy::parse(&text)
                .map_err(|error| NodeError::invalid(&path, error.to_string()))?
        }
    };
    Ok(policy.insecure_allow_private(config.insecure_allow_private))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_open_failures() {
        let cases = [
            (io::ErrorKind::ConnectionRefused, OpenFailure::Refused),
            (io::ErrorKind::HostUnreachable, OpenFailure::Unreachable),
            (io::ErrorKind::NetworkUnreachable, OpenFailure::Unreachable),
            (io::ErrorKind::TimedOut, OpenFailure::TtlExpired),
            (io::ErrorKind::PermissionDenied, OpenFailure::General),
        ];
        for (kind, reason) in cases {
            assert_eq!(
                ConnectError::Connect(kind.into()).reason(),
                reason,
                "{kind:?}"
            );
        }
        let not_found = io::Error::other("failed to lookup address information");
        assert_eq!(
            ConnectError::Resolve(not_found).reason(),
            OpenFailure::Unreachable
        );
        assert_eq!(ConnectError::NoAddresses.reason(), OpenFailure::Unreachable);
        assert_eq!(
            ConnectError::Timeout(Stage::Resolve).reason(),
            OpenFailure::TtlExpired
        );
    }

    #[test]
    fn every_address_is_checked_and_refused_ones_dropped() {
        let policy = ExitPolicy::default();
        let loopback: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let public: SocketAddr = "93.184.216.34:80".parse().unwrap();
        assert_eq!(
            allowed_addresses(&[loopback, public], &policy).unwrap(),
            [public]
        );
        let error = allowed_addresses(&[loopback], &policy).unwrap_err();
        assert_eq!(error.reason(), OpenFailure::NotAllowed);
        assert!(!error.to_string().contains("127.0.0.1"));
    }
}
