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
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use umbra_client::socks::{
    AnyCredentials, Destination as SocksDestination, Progress, SocksFailure,
};
use umbra_client::stream::{
    Destination, Host, Mux, OpenFailure, StreamConfig, StreamEvent, StreamId,
};
use umbra_client::{ConfigError, SocksConfig, SocksHandshake, SocksRequest};
use umbra_wire::ClientAddress;

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
        }
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
    mut events: mpsc::UnboundedReceiver<ClientEvent>,
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
                let requests_in = requests_in.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(connection, socks)).await {
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
                let Some(event) = event else { return Err(ProxyError::ClientStopped) };
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
) -> Result<Request, HandshakeFailed> {
    let mut handshake = SocksHandshake::new(socks, AnyCredentials);
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
