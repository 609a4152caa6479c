//! The exit service's driver: streams from anonymous clients, carried to TCP connections.
//!
//! The exit is a mixnet client that answers only through SURBs: each anonymous sender tag is
//! one peer with its own [`Mux`], and everything for it goes back with
//! [`ClientHandle::reply`]. An incoming stream is connected with [`connect`] (resolve, check
//! the policy, connect) and accepted, or refused with the failure that maps onto its SOCKS5
//! reply code. Bytes then flow both ways through `pipes.rs` (bounded buffers both ways), half-closes included.
//!
//! Destinations and client bytes are never logged above debug level.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use umbra_client::stream::{Mux, StreamConfig, StreamEvent};
use umbra_client::{ConfigError, ExitPolicy, ExitPolicyConfig, SenderTag};

use super::{ConnectError, ConnectTimeouts, connect, load_policy};
use crate::client::{ClientEvent, ClientHandle};
use crate::pipes::{PipeInput, Pipes, sleep_until};
use umbra_net::NodeError;

/// How many clients and streams the exit serves at once. A client is a sender tag: a proxy
/// has one per username its applications give (see [`crate::socks5`]), each with this budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitLimits {
    /// Streams open at once for one client (sender tag); opens beyond it are refused with a
    /// general failure. Default 64.
    pub streams_per_client: usize,
    /// Clients (sender tags) served at once; messages from more are dropped. Default 1024.
    pub clients: usize,
}

impl Default for ExitLimits {
    fn default() -> Self {
        ExitLimits {
            streams_per_client: 64,
            clients: 1024,
        }
    }
}

/// What the exit service does.
#[derive(Clone, Debug)]
pub struct ExitSettings {
    /// Which destinations may be connected to.
    pub policy: ExitPolicy,
    /// How long opening a connection may take.
    pub timeouts: ConnectTimeouts,
    /// How streams behave (`max_streams` is lowered to `limits.streams_per_client`).
    pub streams: StreamConfig,
    /// How much the exit takes on.
    pub limits: ExitLimits,
}

/// The `[exit]` section of an exit service's `config.toml` (see `umbra exit init`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExitConfig {
    /// Which destinations may be connected to.
    pub policy: ExitPolicyConfig,
    /// Streams open at once for one client.
    pub streams_per_client: usize,
    /// Clients served at once.
    pub max_clients: usize,
    /// How long resolving a name may take.
    #[serde(with = "humantime_serde")]
    pub resolve_timeout: Duration,
    /// How long connecting to one address may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a whole open (resolving, then each address in turn) may take.
    #[serde(with = "humantime_serde")]
    pub open_timeout: Duration,
    /// How streams behave.
    pub streams: StreamConfig,
}

impl Default for ExitConfig {
    fn default() -> Self {
        let limits = ExitLimits::default();
        let timeouts = ConnectTimeouts::default();
        ExitConfig {
            policy: ExitPolicyConfig::default(),
            streams_per_client: limits.streams_per_client,
            max_clients: limits.clients,
            resolve_timeout: timeouts.resolve,
            connect_timeout: timeouts.attempt,
            open_timeout: timeouts.overall,
            streams: StreamConfig::default(),
        }
    }
}

impl ExitConfig {
    /// The settings these describe, the policy file read from `data_dir`; `config` is the file
    /// they came from, named in errors.
    pub fn settings(&self, config: &Path, data_dir: &Path) -> Result<ExitSettings, NodeError> {
        let invalid = |problem: String| NodeError::invalid(config, format!("in [exit]: {problem}"));
        if self.streams_per_client == 0 || self.max_clients == 0 {
            return Err(invalid(
                "`streams_per_client` and `max_clients` must be at least 1 (defaults 64, 1024)"
                    .into(),
            ));
        }
        if self.resolve_timeout.is_zero()
            || self.connect_timeout.is_zero()
            || self.open_timeout.is_zero()
        {
            return Err(invalid(
                "timeouts must be above zero (defaults 10s, 10s, 30s)".into(),
            ));
        }
        // `run` caps `max_streams` at `streams_per_client`
        self.streams
            .validate()
            .map_err(|error| invalid(error.to_string()))?;
        Ok(ExitSettings {
            policy: load_policy(&self.policy, data_dir)?,
            timeouts: ConnectTimeouts {
                resolve: self.resolve_timeout,
                attempt: self.connect_timeout,
                overall: self.open_timeout,
            },
            streams: self.streams.clone(),
            limits: ExitLimits {
                streams_per_client: self.streams_per_client,
                clients: self.max_clients,
            },
        })
    }
}

/// Why the exit service stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExitError {
    /// The stream settings cannot work.
    #[error("exit service settings: {0}")]
    Config(#[from] ConfigError),
    /// The mixnet client stopped under the service.
    #[error("exit service: the mixnet client stopped")]
    ClientStopped,
}

/// One anonymous client.
struct Peer {
    mux: Mux,
    /// Since when it has had no streams; it is forgotten after the idle timeout.
    empty_since: Option<Instant>,
}

/// Runs the exit service on a connected client (`client` and its `events`) until `shutdown`.
pub async fn run(
    client: ClientHandle,
    mut events: mpsc::Receiver<ClientEvent>,
    settings: ExitSettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ExitError> {
    let mut streams = settings.streams.clone();
    streams.max_streams = streams.max_streams.min(settings.limits.streams_per_client);
    streams.validate()?;
    let policy = Arc::new(settings.policy);
    let (connected_in, mut connected) = mpsc::unbounded_channel();
    let (mut pipes, mut pipe_inputs) = Pipes::<SenderTag>::new();
    let mut peers: HashMap<SenderTag, Peer> = HashMap::new();
    let mut dropped_messages = 0u64;
    info!(address = %client.address(), "exit service running");
    tokio::pin!(shutdown);
    loop {
        let wake = peers
            .values()
            .filter_map(|peer| {
                let forget = peer.empty_since.map(|since| since + streams.idle_timeout);
                match (peer.mux.next_timeout(), forget) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            })
            .min();
        let sleep = sleep_until(wake);
        // which peer to drive afterwards; `None`: all of them (a timer went off)
        let touched: Option<SenderTag> = tokio::select! {
            () = &mut shutdown => break,
            event = events.recv() => {
                let Some(event) = event else {
                    // the client stops with the service: a shutdown, not a failure
                    if futures_util::FutureExt::now_or_never(&mut shutdown).is_some() {
                        break;
                    }
                    return Err(ExitError::ClientStopped);
                };
                let ClientEvent::Received { message, reply_to: Some(tag) } = event else {
                    continue;
                };
                let now = Instant::now();
                if !peers.contains_key(&tag) && peers.len() >= settings.limits.clients {
                    dropped_messages += 1;
                    warn!(dropped_messages, "exit: too many clients; a message was dropped");
                    continue;
                }
                let clients = peers.len() + 1;
                let peer = match peers.entry(tag) {
                    std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                    std::collections::hash_map::Entry::Vacant(entry) => {
                        info!(clients, "exit: a new anonymous client");
                        entry.insert(Peer {
                            mux: Mux::new(streams.clone())?,
                            empty_since: None,
                        })
                    }
                };
                peer.mux.handle_message(now, &message);
                Some(tag)
            }
            Some((tag, id, result)) = connected.recv() => {
                let result: Result<TcpStream, ConnectError> = result;
                let Some(peer) = peers.get_mut(&tag) else { continue };
                let now = Instant::now();
                match result {
                    Ok(connection) => {
                        // the stream may have timed out meanwhile: then the connection drops
                        if peer.mux.accept(now, id).is_ok() {
                            pipes.start(&mut peer.mux, now, (tag, id), connection, Vec::new());
                        }
                    }
                    Err(error) => {
                        debug!(%error, "exit: open refused");
                        let _ = peer.mux.refuse(now, id, error.reason());
                    }
                }
                Some(tag)
            }
            Some(input) = pipe_inputs.recv() => {
                let tag = match &input {
                    PipeInput::Read { key, .. }
                    | PipeInput::Wrote { key }
                    | PipeInput::Broken { key } => key.0,
                };
                let Some(peer) = peers.get_mut(&tag) else { continue };
                pipes.handle_input(&mut peer.mux, Instant::now(), input);
                Some(tag)
            }
            () = sleep => None,
        };
        let now = Instant::now();
        let tags: Vec<SenderTag> = match touched {
            Some(tag) => vec![tag],
            None => peers.keys().copied().collect(),
        };
        for tag in tags {
            let Some(peer) = peers.get_mut(&tag) else {
                continue;
            };
            if touched.is_none() {
                peer.mux.handle_timeout(now);
            }
            while let Some(event) = peer.mux.poll_event() {
                match event {
                    StreamEvent::Incoming { id, destination } => {
                        debug!(%destination, "exit: open");
                        let (policy, timeouts) = (Arc::clone(&policy), settings.timeouts);
                        let report = connected_in.clone();
                        tokio::spawn(async move {
                            let result = connect(&destination, &policy, timeouts).await;
                            let _ = report.send((tag, id, result));
                        });
                    }
                    other => pipes.handle_event(&mut peer.mux, now, tag, &other),
                }
            }
            while let Some(message) = peer.mux.poll_transmit(now) {
                if let Err(error) = client.reply(tag, message).await {
                    // the stream layer sends again what is not acknowledged
                    warn!(%error, "exit: a reply could not be sent");
                }
            }
            forget_if_idle(&mut peers, &mut pipes, tag, now, streams.idle_timeout);
        }
    }
    info!("exit service stopped");
    Ok(())
}

/// Forgets a client with no streams for `idle`; its sender tag may come back later as new.
fn forget_if_idle(
    peers: &mut HashMap<SenderTag, Peer>,
    pipes: &mut Pipes<SenderTag>,
    tag: SenderTag,
    now: Instant,
    idle: Duration,
) {
    let Some(peer) = peers.get_mut(&tag) else {
        return;
    };
    if peer.mux.stream_count() > 0 || pipes.count(tag) > 0 {
        peer.empty_since = None;
        return;
    }
    let since = *peer.empty_since.get_or_insert(now);
    if now.duration_since(since) >= idle {
        pipes.abort_peer(tag);
        peers.remove(&tag);
    }
}
