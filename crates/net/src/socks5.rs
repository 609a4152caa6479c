//! The SOCKS5 proxy's driver: local TCP connections carried as streams to one exit.
//!
//! Each connection runs the SOCKS handshake ([`umbra_client::socks`]) in its own task; its
//! request then becomes a stream opened on the one [`Mux`] kept for the exit, and the client
//! is answered with success or the failure the exit reported (mapped to its SOCKS5 reply
//! code). Bytes then flow both ways through `pipes.rs` (bounded buffers both ways), half-closes included. Every
//! connection shares one mixnet client.
//!
//! Messages to the exit go with SURBs so it can answer without learning who we are:
//! [`ProxySettings::surbs_per_message`] of them each.
//!
//! Destinations and client bytes are never logged above debug level.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use umbra_client::socks::{
    CredentialCheck, Credentials, Destination as SocksDestination, Progress, SocksFailure,
};
use umbra_client::stream::{
    Destination, Host, Mux, OpenFailure, StreamConfig, StreamEvent, StreamId,
};
use umbra_client::{ConfigError, SocksConfig, SocksHandshake, SocksRequest};
use umbra_wire::ClientAddress;

use crate::NodeError;
use crate::client::{ClientEvent, ClientHandle};
use crate::pipes::Pipes;

/// How long a local client may take over its SOCKS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the proxy does.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// The exit service's address.
    pub exit: ClientAddress,
    /// Which SOCKS clients are accepted.
    pub socks: SocksConfig,
    /// How streams behave.
    pub streams: StreamConfig,
    /// SURBs attached to every message to the exit (default [`DEFAULT_SURBS_PER_MESSAGE`]).
    pub surbs_per_message: u16,
    /// The one username and password accepted; without them, any (or none) is.
    pub credentials: Option<Credentials>,
}

/// SURBs sent with each message to the exit.
///
/// A reply through a SURB carries about 2 KB, so a full stream message (16 KiB by default)
/// takes about nine. Most of what the exit sends is set off by a message of ours (an open, or
/// an acknowledgement that grants more window), so giving each message enough SURBs for one
/// full answer keeps a download flowing without the exit stopping to ask for more; when it
/// does run low (bursts), the client's own top-up (`surbs.refill_below`) covers it. More
/// would make every small acknowledgement several packets long.
pub const DEFAULT_SURBS_PER_MESSAGE: u16 = 10;

impl ProxySettings {
    /// The defaults, for the exit at `exit`.
    pub fn new(exit: ClientAddress) -> Self {
        ProxySettings {
            exit,
            socks: SocksConfig::default(),
            streams: StreamConfig::default(),
            surbs_per_message: DEFAULT_SURBS_PER_MESSAGE,
            credentials: None,
        }
    }
}

/// The `[socks5]` section of a proxy's `config.toml` (see `umbra socks5 init`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Socks5Config {
    /// Where applications connect.
    #[serde(default = "default_listen_address")]
    pub listen_address: SocketAddr,
    /// The exit service's address.
    pub exit: String,
    /// With both set, applications must give this username and password (SOCKS5 method
    /// 0x02), and SOCKS4 (which has no password) and unauthenticated SOCKS5 are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// See `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Accept SOCKS4 and SOCKS4a too.
    #[serde(default = "yes")]
    pub allow_socks4: bool,
    /// SURBs sent with each message to the exit.
    #[serde(default = "default_surbs")]
    pub surbs_per_message: u16,
    /// How streams behave.
    #[serde(default)]
    pub streams: StreamConfig,
}

/// Where a proxy listens by default: the usual SOCKS port, on loopback.
pub const DEFAULT_LISTEN_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1080);

fn default_listen_address() -> SocketAddr {
    DEFAULT_LISTEN_ADDRESS
}

fn default_surbs() -> u16 {
    DEFAULT_SURBS_PER_MESSAGE
}

fn yes() -> bool {
    true
}

impl Socks5Config {
    /// The settings these describe; `config` is the file they came from, named in errors.
    pub fn settings(&self, config: &Path) -> Result<ProxySettings, NodeError> {
        let invalid =
            |problem: String| NodeError::invalid(config, format!("in [socks5]: {problem}"));
        let exit: ClientAddress = self.exit.trim().parse().map_err(|error| {
            invalid(format!(
                "`exit` is not a client address ({error}); put the exit service's address there, as `umbra exit address` prints it"
            ))
        })?;
        self.streams
            .validate()
            .map_err(|error| invalid(error.to_string()))?;
        let credentials = match (&self.username, &self.password) {
            (Some(username), Some(password)) => {
                if username.is_empty()
                    || username.len() > 255
                    || password.is_empty()
                    || password.len() > 255
                {
                    return Err(invalid(
                        "`username` and `password` must each be 1 to 255 bytes (SOCKS5 carries no more)".into(),
                    ));
                }
                Some(Credentials::new(username.as_bytes(), password.as_bytes()))
            }
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "set both `username` and `password`, or neither".into(),
                ));
            }
        };
        if !self.listen_address.ip().is_loopback() && credentials.is_none() {
            return Err(invalid(format!(
                "`listen_address` {} is not on loopback: anyone who can reach it could use your mixnet client. Listen on 127.0.0.1, or set `username` and `password`",
                self.listen_address
            )));
        }
        if self.surbs_per_message == 0 {
            return Err(invalid(
                "`surbs_per_message` must be at least 1: the exit answers only through SURBs (default 10)".into(),
            ));
        }
        Ok(ProxySettings {
            exit,
            socks: SocksConfig {
                allow_no_auth: credentials.is_none(),
                allow_username_password: true,
                allow_socks4: self.allow_socks4 && credentials.is_none(),
            },
            streams: self.streams.clone(),
            surbs_per_message: self.surbs_per_message,
            credentials,
        })
    }
}

/// Why the proxy stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The stream settings cannot work.
    #[error("SOCKS5 proxy settings: {0}")]
    Config(#[from] ConfigError),
    /// The listening socket failed.
    #[error("SOCKS5 proxy: accepting a connection: {0}")]
    Accept(std::io::Error),
    /// The mixnet client stopped under the proxy.
    #[error("SOCKS5 proxy: the mixnet client stopped")]
    ClientStopped,
}

/// A local client whose handshake finished, waiting for its stream.
struct Request {
    connection: TcpStream,
    request: SocksRequest,
}

/// Runs the proxy on `listener` (bind it to 127.0.0.1) with a connected client (`client`
/// and its `events`) until `shutdown`.
pub async fn run(
    listener: TcpListener,
    client: ClientHandle,
    mut events: mpsc::Receiver<ClientEvent>,
    settings: ProxySettings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let mut mux = Mux::new(settings.streams.clone())?;
    let (requests_in, mut requests) = mpsc::unbounded_channel::<Request>();
    let (mut pipes, mut pipe_inputs) = Pipes::<()>::new();
    let mut opening: HashMap<StreamId, Request> = HashMap::new();
    info!(address = ?listener.local_addr().ok(), "SOCKS5 proxy listening");
    tokio::pin!(shutdown);
    loop {
        let wake = mux.next_timeout();
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (connection, _) = accepted.map_err(ProxyError::Accept)?;
                let socks = settings.socks.clone();
                let credentials = settings.credentials.clone();
                let requests_in = requests_in.clone();
                tokio::spawn(async move {
                    let check = move |username: &[u8], password: &[u8]| {
                        credentials.as_ref().is_none_or(|c| c.check(username, password))
                    };
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(connection, socks, check)).await {
                        Ok(Ok(request)) => { let _ = requests_in.send(request); }
                        Ok(Err(error)) => debug!(%error, "SOCKS handshake failed"),
                        Err(_) => debug!("SOCKS handshake timed out"),
                    }
                });
            }
            Some(request) = requests.recv() => {
                let now = Instant::now();
                match destination(&request.request).and_then(|to| mux.open(now, to).ok()) {
                    Some(id) => { opening.insert(id, request); }
                    None => answer_failure(request, SocksFailure::GeneralFailure),
                }
            }
            event = events.recv() => {
                let Some(event) = event else {
                    // the client stops with the proxy: a shutdown, not a failure
                    if futures_util::FutureExt::now_or_never(&mut shutdown).is_some() {
                        break;
                    }
                    return Err(ProxyError::ClientStopped);
                };
                if let ClientEvent::Reply { from, message } = event
                    && from == settings.exit
                {
                    mux.handle_message(Instant::now(), &message);
                }
            }
            Some(input) = pipe_inputs.recv() => pipes.handle_input(&mut mux, Instant::now(), input),
            () = sleep => mux.handle_timeout(Instant::now()),
        }
        let now = Instant::now();
        while let Some(event) = mux.poll_event() {
            match event {
                StreamEvent::Opened(id) => {
                    if let Some(Request {
                        connection,
                        request,
                    }) = opening.remove(&id)
                    {
                        pipes.start(&mut mux, now, ((), id), connection, request.reply(Ok(())));
                    }
                }
                StreamEvent::OpenFailed { id, reason } => {
                    if let Some(request) = opening.remove(&id) {
                        answer_failure(request, socks_failure(reason));
                    }
                }
                StreamEvent::Incoming { id, .. } => {
                    // the exit opens nothing towards us
                    let _ = mux.refuse(now, id, OpenFailure::NotAllowed);
                }
                other => pipes.handle_event(&mut mux, now, (), &other),
            }
        }
        while let Some(message) = mux.poll_transmit(now) {
            if let Err(error) = client
                .send(settings.exit, message, settings.surbs_per_message)
                .await
            {
                // the stream layer sends again what is not acknowledged
                warn!(%error, "SOCKS5 proxy: a message to the exit could not be sent");
            }
        }
    }
    info!("SOCKS5 proxy stopped");
    Ok(())
}

/// Runs the SOCKS handshake up to the request.
async fn handshake(
    mut connection: TcpStream,
    socks: SocksConfig,
    credentials: impl CredentialCheck,
) -> Result<Request, HandshakeFailed> {
    let mut handshake = SocksHandshake::new(socks, credentials);
    let mut buffer = [0; 1024];
    loop {
        let n = connection.read(&mut buffer).await?;
        if n == 0 {
            return Err(HandshakeFailed::Closed);
        }
        let progress = handshake.handle_input(&buffer[..n]);
        connection.write_all(&handshake.take_output()).await?;
        match progress? {
            Progress::NeedMore => continue,
            Progress::Finished(request) => {
                return Ok(Request {
                    connection,
                    request,
                });
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum HandshakeFailed {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(#[from] umbra_client::socks::HandshakeError),
    #[error("the client closed the connection")]
    Closed,
}

/// The stream destination a SOCKS request names.
fn destination(request: &SocksRequest) -> Option<Destination> {
    let host = match &request.destination {
        SocksDestination::Ip(ip) => Host::Ip(*ip),
        SocksDestination::Domain(name) => Host::Name(name.as_str().to_owned()),
    };
    Destination::new(host, request.port).ok()
}

/// The SOCKS failure that says `reason`.
fn socks_failure(reason: OpenFailure) -> SocksFailure {
    match reason {
        OpenFailure::Refused => SocksFailure::Refused,
        OpenFailure::Unreachable => SocksFailure::HostUnreachable,
        OpenFailure::NotAllowed => SocksFailure::NotAllowed,
        OpenFailure::TtlExpired => SocksFailure::TtlExpired,
        OpenFailure::General => SocksFailure::GeneralFailure,
    }
}

/// Tells the local client its request failed, then closes the connection.
fn answer_failure(request: Request, failure: SocksFailure) {
    let Request {
        mut connection,
        request,
    } = request;
    tokio::spawn(async move {
        let _ = connection.write_all(&request.reply(Err(failure))).await;
        let _ = connection.shutdown().await;
    });
}
