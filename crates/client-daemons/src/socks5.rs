//! The SOCKS5 proxy's driver: local TCP connections carried as streams to one exit.
//!
//! Each connection runs the SOCKS handshake ([`umbra_client::socks`]) in its own task; its
//! request then becomes a stream opened on the [`Mux`] of its **group**, and the client is
//! answered with success or the failure the exit reported (mapped to its SOCKS5 reply code).
//! Bytes then flow both ways through `pipes.rs` (bounded buffers both ways), half-closes
//! included. Every connection shares one mixnet client.
//!
//! Streams are isolated by username, as Tor isolates them (issue 13.4): each username an
//! application gives (SOCKS5 username/password with any password, or the SOCKS4 user id) is
//! a group with its own [`Isolation`], so its own sender tag and SURBs at the exit, which then
//! serves it as a client of its own and cannot link it to the other groups; applications
//! giving none share one group. A group unused for the streams' `idle_timeout` is forgotten:
//! its username comes back as a new client.
//!
//! One application cannot take the exit from the others (issue 13.9): each group gets its own
//! budget at the exit, and the proxy's own limits ([`ProxyLimits`]) stay below what the exit
//! grants one client and in all, so the proxy refuses the extra connections itself, at once,
//! with a log line that names the limit.
//!
//! Messages to the exit go with SURBs so it can answer without learning who we are:
//! [`ProxySettings::surbs_per_message`] of them each.
//!
//! Destinations, client bytes and usernames are never logged above debug level.

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
use umbra_client::{ConfigError, Isolation, SocksConfig, SocksHandshake, SocksRequest};
use umbra_wire::ClientAddress;

use crate::client::{ClientEvent, ClientHandle};
use crate::pipes::{PipeInput, Pipes, sleep_until};
use crate::streams::send_to_exit;
use umbra_net::NodeError;

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
    /// How many streams and usernames the proxy serves at once.
    pub limits: ProxyLimits,
}

/// How many streams and usernames the proxy serves at once. The defaults stay below what an
/// exit grants by default ([`crate::exit::service::ExitLimits`]: 64 streams per client, 1024
/// clients), so that the proxy refuses what the exit would, at once and saying why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyLimits {
    /// Streams open at once for one username (one client to the exit). Default 48.
    pub streams_per_username: usize,
    /// Usernames (groups) with streams at once. Default 64.
    pub usernames: usize,
    /// Streams open at once for all usernames together. Default 256.
    pub streams: usize,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            streams_per_username: 48,
            usernames: 64,
            streams: 256,
        }
    }
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
            limits: ProxyLimits::default(),
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
    /// Streams open at once for one username (each its own client to the exit).
    #[serde(default = "default_streams_per_username")]
    pub streams_per_username: usize,
    /// Usernames with streams at once.
    #[serde(default = "default_max_usernames")]
    pub max_usernames: usize,
    /// Streams open at once in all.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
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

fn default_streams_per_username() -> usize {
    ProxyLimits::default().streams_per_username
}

fn default_max_usernames() -> usize {
    ProxyLimits::default().usernames
}

fn default_max_streams() -> usize {
    ProxyLimits::default().streams
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
        if self.streams_per_username == 0
            || self.max_usernames == 0
            || self.max_streams < self.streams_per_username
        {
            return Err(invalid(
                "`streams_per_username` and `max_usernames` must be at least 1, and `max_streams` at least `streams_per_username` (defaults 48, 64, 256; keep them below the exit's `streams_per_client` and `max_clients`)".into(),
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
            limits: ProxyLimits {
                streams_per_username: self.streams_per_username,
                usernames: self.max_usernames,
                streams: self.max_streams,
            },
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

/// The streams of one username: a client of its own to the exit.
struct Group {
    username: Option<Vec<u8>>,
    mux: Mux,
    opening: HashMap<StreamId, Request>,
    /// Since when it has had no streams; it is forgotten after the idle timeout.
    empty_since: Option<Instant>,
}

/// The groups, by isolation and by username.
struct Groups {
    settings: ProxySettings,
    streams: StreamConfig,
    groups: HashMap<Isolation, Group>,
    by_username: HashMap<Option<Vec<u8>>, Isolation>,
    next: u64,
    /// CONNECTs refused for a limit of the proxy's.
    refused: u64,
}

impl Groups {
    fn new(settings: ProxySettings) -> Result<Groups, ConfigError> {
        let mut streams = settings.streams.clone();
        streams.max_streams = streams
            .max_streams
            .min(settings.limits.streams_per_username);
        streams.validate()?;
        Ok(Groups {
            settings,
            streams,
            groups: HashMap::new(),
            by_username: HashMap::new(),
            next: 1,
            refused: 0,
        })
    }

    /// Opens the stream `request` asks for in its username's group (returned), or says why
    /// not.
    fn open(
        &mut self,
        now: Instant,
        request: Request,
    ) -> Result<Isolation, (Request, SocksFailure)> {
        let Some(destination) = destination(&request.request) else {
            return Err((request, SocksFailure::GeneralFailure));
        };
        let limits = self.settings.limits;
        let total: usize = self.groups.values().map(|g| g.mux.stream_count()).sum();
        if total >= limits.streams {
            return Err(self.refuse(
                request,
                format!(
                    "{total} streams are open for all usernames already ([socks5] `max_streams`)"
                ),
            ));
        }
        let username = request.request.username.clone();
        let isolation = match self.by_username.get(&username) {
            Some(isolation) => *isolation,
            None => {
                if self.groups.len() >= limits.usernames && !self.forget_least_recently_used() {
                    let count = self.groups.len();
                    return Err(self.refuse(
                        request,
                        format!(
                            "{count} usernames have streams open already ([socks5] `max_usernames`; keep it below the exit's `max_clients`, 1024 by default)"
                        ),
                    ));
                }
                // a group made again (after it was forgotten) is a new client to the exit
                self.next += 1;
                let isolation = Isolation(self.next);
                let mux = match Mux::new(self.streams.clone()) {
                    Ok(mux) => mux,
                    Err(_) => return Err((request, SocksFailure::GeneralFailure)),
                };
                self.groups.insert(
                    isolation,
                    Group {
                        username: username.clone(),
                        mux,
                        opening: HashMap::new(),
                        empty_since: None,
                    },
                );
                self.by_username.insert(username, isolation);
                isolation
            }
        };
        let Some(group) = self.groups.get_mut(&isolation) else {
            return Err((request, SocksFailure::GeneralFailure));
        };
        let open = group.mux.stream_count();
        if open >= limits.streams_per_username {
            return Err(self.refuse(
                request,
                format!(
                    "{open} streams are open for this username already ([socks5] `streams_per_username`; keep it below the exit's `streams_per_client`, 64 by default)"
                ),
            ));
        }
        match group.mux.open(now, destination) {
            Ok(id) => {
                group.opening.insert(id, request);
                group.empty_since = None;
                Ok(isolation)
            }
            Err(_) => Err((request, SocksFailure::GeneralFailure)),
        }
    }

    /// Refuses `request` for a limit of the proxy's, saying which in the log.
    fn refuse(&mut self, request: Request, why: String) -> (Request, SocksFailure) {
        self.refused += 1;
        warn!(
            refused = self.refused,
            "SOCKS5 proxy: a CONNECT was refused: {why}. Close some connections, or give applications usernames of their own"
        );
        (request, SocksFailure::GeneralFailure)
    }

    /// Forgets the group with no streams that has been empty longest; whether there was one.
    fn forget_least_recently_used(&mut self) -> bool {
        let idle = self
            .groups
            .iter()
            .filter(|(_, g)| g.mux.stream_count() == 0 && g.opening.is_empty())
            .min_by_key(|(isolation, g)| (g.empty_since.is_none(), g.empty_since, **isolation))
            .map(|(isolation, _)| *isolation);
        match idle {
            Some(isolation) => {
                self.forget(isolation);
                true
            }
            None => false,
        }
    }

    fn forget(&mut self, isolation: Isolation) {
        if let Some(group) = self.groups.remove(&isolation) {
            self.by_username.remove(&group.username);
        }
    }

    /// When a group next needs its timers run, or is to be forgotten.
    fn next_timeout(&self) -> Option<Instant> {
        let idle = self.streams.idle_timeout;
        self.groups
            .values()
            .flat_map(|g| {
                [
                    g.mux.next_timeout(),
                    g.empty_since.map(|since| since + idle),
                ]
            })
            .flatten()
            .min()
    }
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
    let mut groups = Groups::new(settings.clone())?;
    let (requests_in, mut requests) = mpsc::unbounded_channel::<Request>();
    let (mut pipes, mut pipe_inputs) = Pipes::<Isolation>::new();
    info!(address = ?listener.local_addr().ok(), "SOCKS5 proxy listening");
    tokio::pin!(shutdown);
    loop {
        let sleep = sleep_until(groups.next_timeout());
        // which group to drive afterwards; all of them when a timer went off
        let mut timers_due = false;
        let touched: Option<Isolation> = tokio::select! {
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
                continue;
            }
            Some(request) = requests.recv() => {
                match groups.open(Instant::now(), request) {
                    Ok(isolation) => Some(isolation),
                    Err((request, failure)) => {
                        answer_failure(request, failure);
                        continue;
                    }
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
                let ClientEvent::Reply { from, isolation, message } = event else { continue };
                let Some(group) = groups.groups.get_mut(&isolation) else { continue };
                if from != settings.exit {
                    continue;
                }
                group.mux.handle_message(Instant::now(), &message);
                Some(isolation)
            }
            Some(input) = pipe_inputs.recv() => {
                let isolation = input_group(&input);
                let Some(group) = groups.groups.get_mut(&isolation) else { continue };
                pipes.handle_input(&mut group.mux, Instant::now(), input);
                Some(isolation)
            }
            () = sleep => {
                timers_due = true;
                None
            }
        };
        let now = Instant::now();
        let isolations: Vec<Isolation> = match touched {
            Some(isolation) => vec![isolation],
            None => groups.groups.keys().copied().collect(),
        };
        for isolation in isolations {
            let Some(group) = groups.groups.get_mut(&isolation) else {
                continue;
            };
            if timers_due {
                group.mux.handle_timeout(now);
            }
            drive(group, &mut pipes, isolation, now);
            send_to_exit(
                &mut group.mux,
                now,
                &client,
                settings.exit,
                isolation,
                settings.surbs_per_message,
            )
            .await;
            // forgotten after a quiet spell: its username comes back as a new client
            if group.mux.stream_count() > 0 || pipes.count(isolation) > 0 {
                group.empty_since = None;
            } else {
                let since = *group.empty_since.get_or_insert(now);
                if now.duration_since(since) >= groups.streams.idle_timeout {
                    pipes.abort_peer(isolation);
                    groups.forget(isolation);
                }
            }
        }
    }
    info!("SOCKS5 proxy stopped");
    Ok(())
}

/// The group a connection task reported for.
fn input_group(input: &PipeInput<Isolation>) -> Isolation {
    match input {
        PipeInput::Read { key, .. } | PipeInput::Wrote { key } | PipeInput::Broken { key } => key.0,
    }
}

/// Handles what `group`'s streams did: answers the applications whose opens settled, and
/// hands the rest to their connections.
fn drive(group: &mut Group, pipes: &mut Pipes<Isolation>, isolation: Isolation, now: Instant) {
    while let Some(event) = group.mux.poll_event() {
        match event {
            StreamEvent::Opened(id) => {
                if let Some(Request {
                    connection,
                    request,
                }) = group.opening.remove(&id)
                {
                    let reply = request.reply(Ok(()));
                    pipes.start(&mut group.mux, now, (isolation, id), connection, reply);
                }
            }
            StreamEvent::OpenFailed { id, reason } => {
                if let Some(request) = group.opening.remove(&id) {
                    answer_failure(request, socks_failure(reason));
                }
            }
            StreamEvent::Incoming { id, .. } => {
                // the exit opens nothing towards us
                let _ = group.mux.refuse(now, id, OpenFailure::NotAllowed);
            }
            other => pipes.handle_event(&mut group.mux, now, isolation, &other),
        }
    }
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
