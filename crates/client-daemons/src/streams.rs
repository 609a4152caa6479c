//! Streams to one exit inside the application's own process: TCP-like connections for Rust
//! programs that embed the client (a wallet's HTTP client, say), without a SOCKS5 proxy.
//!
//! [`start`] takes a connected client (its handle and events) and spawns a driver that owns
//! one [`Mux`] to the exit, as the SOCKS5 proxy does for one username ([`crate::socks5`]).
//! The [`MixnetStreams`] it returns opens streams; each [`MixnetStream`] is a tokio
//! `AsyncRead + AsyncWrite`. Hosts are resolved by the exit, never here (no DNS leak).
//!
//! The discipline is that of `pipes.rs`, with memory instead of a socket between the driver
//! and the application:
//!
//! - Backpressure both ways. A stream holds at most [`BUFFER`] bytes the application wrote
//!   and the `Mux` has not taken (a write waits for room), and at most [`BUFFER`] bytes the
//!   driver read from the `Mux` and the application has not (the driver reads from the `Mux`
//!   only while there is room; the rest stays in the stream's receive window, which holds the
//!   exit back). With the cap on streams, memory is bounded.
//! - A stream the exit finished cleanly ends in EOF once every byte is read. A stream that
//!   failed (reset by the exit or its destination, timed out, lost when the client stopped)
//!   is an [`io::Error`] (`ConnectionReset`, `ConnectionAborted`, `TimedOut`), never an EOF
//!   that would pass a truncated answer off as complete.
//! - `shutdown()` finishes this side's writing (a half-close); reading goes on. Dropping a
//!   stream before both sides finished resets it at the exit.
//!
//! Destinations and bytes are never logged above debug level.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, warn};
use umbra_client::stream::{
    Destination, Host, Mux, OpenFailure, StreamConfig, StreamError, StreamEvent, StreamId,
};
use umbra_client::{ConfigError, Isolation};
use umbra_wire::ClientAddress;

use crate::client::{ClientEvent, ClientHandle};
use crate::pipes::sleep_until;
use crate::socks5::DEFAULT_SURBS_PER_MESSAGE;

/// Streams open at once by default: below what an exit grants one client by default
/// ([`crate::exit::service::ExitLimits`]: 64), so that the extra ones are refused here, at
/// once and saying why, instead of by the exit after a round trip.
pub const DEFAULT_MAX_STREAMS: usize = 48;

/// Bytes a stream holds for its application, each way.
pub const BUFFER: usize = 64 << 10;

/// The isolation group the streams' messages go under (the client is the streams' own).
const ISOLATION: Isolation = Isolation(1);

/// Open requests waiting for the driver, at most.
const REQUEST_QUEUE: usize = 64;

/// What the streams do.
#[derive(Clone, Debug)]
pub struct StreamSettings {
    /// The exit service's address (`umbra exit address` prints it).
    pub exit: ClientAddress,
    /// How streams behave (windows, timeouts).
    pub streams: StreamConfig,
    /// SURBs attached to every message to the exit, so it can answer without learning who
    /// we are (default [`DEFAULT_SURBS_PER_MESSAGE`]).
    pub surbs_per_message: u16,
    /// Streams open (or opening) at once; more are refused with
    /// [`OpenError::TooManyStreams`] (default [`DEFAULT_MAX_STREAMS`]; keep it below the
    /// exit's `streams_per_client`, 64 by default).
    pub max_streams: usize,
}

impl StreamSettings {
    /// The defaults, for the exit at `exit`.
    pub fn new(exit: ClientAddress) -> Self {
        StreamSettings {
            exit,
            streams: StreamConfig::default(),
            surbs_per_message: DEFAULT_SURBS_PER_MESSAGE,
            max_streams: DEFAULT_MAX_STREAMS,
        }
    }

    /// The `Mux`'s settings, if these can work.
    fn mux_config(&self) -> Result<StreamConfig, ConfigError> {
        if self.max_streams == 0 {
            return Err(ConfigError {
                setting: "max_streams",
                problem: format!("must be at least 1 (default {DEFAULT_MAX_STREAMS})"),
            });
        }
        if self.surbs_per_message == 0 {
            return Err(ConfigError {
                setting: "surbs_per_message",
                problem: format!(
                    "must be at least 1: the exit answers only through SURBs (default {DEFAULT_SURBS_PER_MESSAGE})"
                ),
            });
        }
        let mut config = self.streams.clone();
        config.max_streams = config.max_streams.min(self.max_streams);
        config.validate()?;
        Ok(config)
    }
}

/// Why a stream could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The host cannot be sent to the exit.
    #[error(
        "the host is not one the exit can be asked for: give an IP address, or a name of 1 to 255 printable ASCII bytes (an international name in its xn-- form)"
    )]
    InvalidHost,
    /// The exit answered that it could not open the stream.
    #[error("{}", explain(*.0))]
    Refused(OpenFailure),
    /// The stream failed before it opened.
    #[error("the stream failed while opening: {0}")]
    Failed(StreamError),
    /// As many streams as allowed are open already.
    #[error(
        "{open} streams are open already, the most this client opens at once (StreamSettings::max_streams, {limit}); close some first"
    )]
    TooManyStreams {
        /// Streams open or opening.
        open: usize,
        /// The limit.
        limit: usize,
    },
    /// The streams' driver stopped, because the mixnet client stopped.
    #[error("the mixnet streams have stopped: the mixnet client stopped")]
    Stopped,
}

/// What an open failure reported by the exit means, for a person.
fn explain(reason: OpenFailure) -> &'static str {
    match reason {
        OpenFailure::Refused => "the destination refused the exit's connection",
        OpenFailure::Unreachable => {
            "the exit could not reach the destination (no route to it, or its name did not resolve)"
        }
        OpenFailure::NotAllowed => "the exit's policy does not allow this destination",
        OpenFailure::TtlExpired => "no answer in time, from the exit or from the destination",
        OpenFailure::General => {
            "the exit refused the stream (a general failure: it may have too many streams of this client)"
        }
    }
}

impl From<OpenError> for io::Error {
    fn from(error: OpenError) -> io::Error {
        let kind = match &error {
            OpenError::InvalidHost => io::ErrorKind::InvalidInput,
            OpenError::Refused(OpenFailure::Refused) => io::ErrorKind::ConnectionRefused,
            OpenError::Refused(OpenFailure::Unreachable) => io::ErrorKind::HostUnreachable,
            OpenError::Refused(OpenFailure::NotAllowed) => io::ErrorKind::PermissionDenied,
            OpenError::Refused(OpenFailure::TtlExpired) => io::ErrorKind::TimedOut,
            OpenError::Refused(OpenFailure::General) | OpenError::TooManyStreams { .. } => {
                io::ErrorKind::Other
            }
            OpenError::Failed(error) => failure_kind(error),
            OpenError::Stopped => io::ErrorKind::NotConnected,
        };
        io::Error::new(kind, error)
    }
}

/// The I/O error kind that says how a stream failed.
fn failure_kind(error: &StreamError) -> io::ErrorKind {
    match error {
        StreamError::TimedOut => io::ErrorKind::TimedOut,
        StreamError::ResetByPeer | StreamError::UnknownToPeer => io::ErrorKind::ConnectionReset,
        _ => io::ErrorKind::ConnectionAborted,
    }
}

/// How many streams there are and how many bytes they hold, for tests and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamsStatus {
    /// Streams open or opening.
    pub open: usize,
    /// Bytes held for all streams, here and in the `Mux`: at most
    /// `max_streams × (2 × BUFFER + receive_window + send_buffer)`.
    pub buffered: usize,
}

/// Opens streams to the exit; clone it to open from several tasks. The driver stops once
/// every clone and every stream is dropped, or when the client stops.
#[derive(Clone, Debug)]
pub struct MixnetStreams {
    requests: mpsc::Sender<Request>,
}

impl MixnetStreams {
    /// Opens a stream to `host` (an IP address, in brackets or not, or a name the exit
    /// resolves) and `port`, through the exit. Waits for the exit's answer.
    pub async fn open(&self, host: &str, port: u16) -> Result<MixnetStream, OpenError> {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(host.to_owned()),
        };
        let destination = Destination::new(host, port).map_err(|_| OpenError::InvalidHost)?;
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Open { destination, reply })
            .await
            .map_err(|_| OpenError::Stopped)?;
        answer.await.map_err(|_| OpenError::Stopped)?
    }

    /// The streams' counts; `None` once the driver has stopped.
    pub async fn status(&self) -> Option<StreamsStatus> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Status { reply }).await.ok()?;
        answer.await.ok()
    }
}

/// What a [`MixnetStreams`] asks the driver.
#[derive(Debug)]
enum Request {
    Open {
        destination: Destination,
        reply: oneshot::Sender<Result<MixnetStream, OpenError>>,
    },
    Status {
        reply: oneshot::Sender<StreamsStatus>,
    },
}

/// Starts the driver of streams to `settings.exit` over a connected client (`client` and its
/// `events`, which the driver takes whole). Returns the way to open streams and the driver's
/// task, which ends when the client stops or every handle and stream is dropped.
pub fn start(
    client: ClientHandle,
    events: mpsc::Receiver<ClientEvent>,
    settings: StreamSettings,
) -> Result<(MixnetStreams, JoinHandle<()>), ConfigError> {
    let mux = Mux::new(settings.mux_config()?)?;
    let (requests_in, requests) = mpsc::channel(REQUEST_QUEUE);
    let (nudges_in, nudges) = mpsc::unbounded_channel();
    let driver = Driver {
        client,
        settings,
        mux,
        entries: HashMap::new(),
        nudges_in,
    };
    let task = tokio::spawn(driver.run(events, requests, nudges));
    Ok((
        MixnetStreams {
            requests: requests_in,
        },
        task,
    ))
}

// ---------------------------------------------------------------------------------------------
// The stream, as the application holds it

/// A byte stream through the mixnet to a destination the exit connected to: tokio
/// `AsyncRead + AsyncWrite`. See the module documentation for how it ends.
#[derive(Debug)]
pub struct MixnetStream {
    id: StreamId,
    shared: Arc<Mutex<Shared>>,
    nudges: mpsc::UnboundedSender<StreamId>,
}

/// What a stream's application and the driver share.
#[derive(Debug, Default)]
struct Shared {
    /// Bytes from the exit the application has not read yet (at most [`BUFFER`]).
    incoming: VecDeque<u8>,
    /// Bytes the application wrote that the `Mux` has not taken yet (at most [`BUFFER`]).
    outgoing: Vec<u8>,
    /// The exit finished writing and every byte it wrote is in `incoming`.
    read_finished: bool,
    /// The application shut its writing down.
    write_closed: bool,
    /// The driver finished the stream's writing in the `Mux`.
    close_taken: bool,
    /// The stream failed: how, for every later call.
    failed: Option<(io::ErrorKind, String)>,
    /// The application dropped the stream.
    dropped: bool,
    /// A nudge is on its way to the driver.
    nudged: bool,
    /// The driver stopped reading from the `Mux` for want of room in `incoming`.
    wants_room: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // the state stays consistent under every lock: a panic elsewhere does not spoil it
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn failure(&self) -> Option<io::Error> {
        self.failed
            .as_ref()
            .map(|(kind, why)| io::Error::new(*kind, why.clone()))
    }

    /// Tells the driver to look at the stream, unless it is told already.
    fn nudge(&mut self, id: StreamId, nudges: &mpsc::UnboundedSender<StreamId>) {
        if !self.nudged {
            self.nudged = true;
            // a driver that is gone has failed the stream already
            let _ = nudges.send(id);
        }
    }
}

impl MixnetStream {
    fn shared(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }
}

impl AsyncRead for MixnetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut shared = self.shared();
        if let Some(error) = shared.failure() {
            return Poll::Ready(Err(error));
        }
        if shared.incoming.is_empty() {
            if !shared.read_finished {
                shared.reader = Some(cx.waker().clone());
                return Poll::Pending;
            }
            return Poll::Ready(Ok(()));
        }
        let n = buf.remaining().min(shared.incoming.len());
        let (front, back) = shared.incoming.as_slices();
        let from_front = n.min(front.len());
        buf.put_slice(&front[..from_front]);
        buf.put_slice(&back[..n - from_front]);
        shared.incoming.drain(..n);
        if shared.wants_room {
            shared.wants_room = false;
            shared.nudge(self.id, &self.nudges);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for MixnetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut shared = self.shared();
        if let Some(error) = shared.failure() {
            return Poll::Ready(Err(error));
        }
        if shared.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the stream's writing side was shut down",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let room = BUFFER.saturating_sub(shared.outgoing.len());
        if room == 0 {
            shared.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        shared.outgoing.extend_from_slice(&buf[..n]);
        shared.nudge(self.id, &self.nudges);
        Poll::Ready(Ok(n))
    }

    /// Ready once the stream's `Mux` has taken every byte written (it sends them, and sends
    /// them again until the exit acknowledges them).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut shared = self.shared();
        if let Some(error) = shared.failure() {
            return Poll::Ready(Err(error));
        }
        if shared.outgoing.is_empty() {
            return Poll::Ready(Ok(()));
        }
        shared.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Finishes this side's writing: the destination reads to the end of what was written.
    /// Reading goes on.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut shared = self.shared();
        if let Some(error) = shared.failure() {
            return Poll::Ready(Err(error));
        }
        if !shared.write_closed {
            shared.write_closed = true;
            shared.nudge(self.id, &self.nudges);
        }
        if shared.close_taken {
            return Poll::Ready(Ok(()));
        }
        shared.writer = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Resets the stream at the exit, unless both sides had finished.
impl Drop for MixnetStream {
    fn drop(&mut self) {
        let mut shared = lock(&self.shared);
        shared.dropped = true;
        shared.reader = None;
        shared.writer = None;
        shared.nudge(self.id, &self.nudges);
    }
}

// ---------------------------------------------------------------------------------------------
// The driver

/// A stream as the driver keeps it.
struct Entry {
    shared: Arc<Mutex<Shared>>,
    /// Who waits for the open's answer, until it comes.
    opening: Option<oneshot::Sender<Result<MixnetStream, OpenError>>>,
    /// The exit finished writing (the `Mux` said so).
    peer_finished: bool,
}

struct Driver {
    client: ClientHandle,
    settings: StreamSettings,
    mux: Mux,
    entries: HashMap<StreamId, Entry>,
    nudges_in: mpsc::UnboundedSender<StreamId>,
}

impl Driver {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<ClientEvent>,
        mut requests: mpsc::Receiver<Request>,
        mut nudges: mpsc::UnboundedReceiver<StreamId>,
    ) {
        let mut handles_left = true;
        loop {
            let sleep = sleep_until(self.mux.next_timeout());
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else {
                        debug!("mixnet streams: the client stopped");
                        break;
                    };
                    if let ClientEvent::Reply { from, isolation, message } = event
                        && from == self.settings.exit
                        && isolation == ISOLATION
                    {
                        self.mux.handle_message(Instant::now(), &message);
                    }
                }
                request = requests.recv(), if handles_left => match request {
                    Some(request) => self.handle_request(Instant::now(), request),
                    None => handles_left = false,
                },
                Some(id) = nudges.recv() => self.handle_nudge(Instant::now(), id),
                () = sleep => self.mux.handle_timeout(Instant::now()),
            }
            let now = Instant::now();
            self.drive(now);
            send_to_exit(
                &mut self.mux,
                now,
                &self.client,
                self.settings.exit,
                ISOLATION,
                self.settings.surbs_per_message,
            )
            .await;
            // sending settles streams whose last frames went out
            self.drive(now);
            if !handles_left && self.entries.is_empty() {
                debug!("mixnet streams: every handle and stream is gone");
                break;
            }
        }
        // dropping `self` fails the streams left
    }

    fn handle_request(&mut self, now: Instant, request: Request) {
        match request {
            Request::Status { reply } => {
                let here: usize = self
                    .entries
                    .values()
                    .map(|entry| {
                        let shared = lock(&entry.shared);
                        shared.incoming.len() + shared.outgoing.len()
                    })
                    .sum();
                let _ = reply.send(StreamsStatus {
                    open: self.entries.len(),
                    buffered: here + self.mux.total_buffered(),
                });
            }
            Request::Open { destination, reply } => {
                let limit = self.settings.max_streams;
                if self.entries.len() >= limit {
                    debug!(
                        open = self.entries.len(),
                        "mixnet streams: an open was refused: too many streams"
                    );
                    let _ = reply.send(Err(OpenError::TooManyStreams {
                        open: self.entries.len(),
                        limit,
                    }));
                    return;
                }
                debug!(%destination, "mixnet streams: opening a stream");
                match self.mux.open(now, destination) {
                    Ok(id) => {
                        self.entries.insert(
                            id,
                            Entry {
                                shared: Arc::default(),
                                opening: Some(reply),
                                peer_finished: false,
                            },
                        );
                    }
                    Err(StreamError::TooManyStreams(open)) => {
                        let _ = reply.send(Err(OpenError::TooManyStreams { open, limit }));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(OpenError::Failed(error)));
                    }
                }
            }
        }
    }

    /// The application wrote, read, shut down or dropped stream `id`.
    fn handle_nudge(&mut self, now: Instant, id: StreamId) {
        let Some(entry) = self.entries.get(&id) else {
            return;
        };
        let reset = {
            let mut shared = lock(&entry.shared);
            shared.nudged = false;
            // dropped after both sides finished: what is left is only to be acknowledged
            shared.dropped && !(shared.write_closed && shared.read_finished)
        };
        if reset {
            debug!(stream = %id, "mixnet streams: a stream dropped before its end is reset");
            let _ = self.mux.reset(now, id);
            self.entries.remove(&id);
            return;
        }
        self.pump_out(now, id);
        self.pump_in(now, id);
    }

    /// Hands the application's events from the `Mux` on.
    fn drive(&mut self, now: Instant) {
        while let Some(event) = self.mux.poll_event() {
            match event {
                StreamEvent::Opened(id) => {
                    let Some(entry) = self.entries.get_mut(&id) else {
                        continue;
                    };
                    let stream = MixnetStream {
                        id,
                        shared: Arc::clone(&entry.shared),
                        nudges: self.nudges_in.clone(),
                    };
                    if let Some(reply) = entry.opening.take() {
                        // an application that stopped waiting drops the stream: its drop
                        // resets it
                        let _ = reply.send(Ok(stream));
                    }
                }
                StreamEvent::OpenFailed { id, reason } => {
                    if let Some(entry) = self.entries.remove(&id)
                        && let Some(reply) = entry.opening
                    {
                        debug!(?reason, "mixnet streams: the exit could not open a stream");
                        let _ = reply.send(Err(OpenError::Refused(reason)));
                    }
                }
                StreamEvent::Incoming { id, .. } => {
                    // the exit opens nothing towards us
                    let _ = self.mux.refuse(now, id, OpenFailure::NotAllowed);
                }
                StreamEvent::Readable(id) => self.pump_in(now, id),
                StreamEvent::Writable(id) => self.pump_out(now, id),
                StreamEvent::PeerFinished(id) => {
                    if let Some(entry) = self.entries.get_mut(&id) {
                        entry.peer_finished = true;
                        self.pump_in(now, id);
                    }
                }
                StreamEvent::Closed(id) => {
                    if let Some(entry) = self.entries.remove(&id) {
                        let (reader, writer) = {
                            let mut shared = lock(&entry.shared);
                            shared.read_finished = true;
                            shared.close_taken = true;
                            (shared.reader.take(), shared.writer.take())
                        };
                        wake(reader);
                        wake(writer);
                    }
                }
                StreamEvent::Failed { id, error } => {
                    debug!(stream = %id, %error, "mixnet streams: a stream failed");
                    if let Some(entry) = self.entries.remove(&id) {
                        match entry.opening {
                            Some(reply) => {
                                let _ = reply.send(Err(OpenError::Failed(error)));
                            }
                            None => fail(&entry.shared, failure_kind(&error), error.to_string()),
                        }
                    }
                }
            }
        }
    }

    /// Gives the `Mux` what the application wrote, then its half-close.
    fn pump_out(&mut self, now: Instant, id: StreamId) {
        let Some(entry) = self.entries.get(&id) else {
            return;
        };
        let writer = {
            let mut shared = lock(&entry.shared);
            let mut progress = false;
            if !shared.outgoing.is_empty() {
                // an error: the stream is ending, and its event is on the way
                let Ok(taken) = self.mux.write(now, id, &shared.outgoing) else {
                    return;
                };
                shared.outgoing.drain(..taken);
                progress = taken > 0;
            }
            if shared.outgoing.is_empty() && shared.write_closed && !shared.close_taken {
                let _ = self.mux.close_write(now, id);
                shared.close_taken = true;
                progress = true;
            }
            if progress { shared.writer.take() } else { None }
        };
        wake(writer);
    }

    /// Takes what the exit sent into the application's buffer while it has room, then the
    /// end of it.
    fn pump_in(&mut self, now: Instant, id: StreamId) {
        let Some(entry) = self.entries.get(&id) else {
            return;
        };
        let reader = {
            let mut shared = lock(&entry.shared);
            let mut progress = false;
            loop {
                let room = BUFFER.saturating_sub(shared.incoming.len());
                if room == 0 {
                    shared.wants_room = true;
                    break;
                }
                let bytes = self.mux.read(now, id, room).unwrap_or_default();
                if bytes.is_empty() {
                    if entry.peer_finished && !shared.read_finished {
                        shared.read_finished = true;
                        progress = true;
                    }
                    break;
                }
                shared.incoming.extend(bytes);
                progress = true;
            }
            if progress { shared.reader.take() } else { None }
        };
        wake(reader);
    }
}

/// The driver stopped (the client did): every stream left is lost.
impl Drop for Driver {
    fn drop(&mut self) {
        for (_, entry) in self.entries.drain() {
            match entry.opening {
                Some(reply) => {
                    let _ = reply.send(Err(OpenError::Stopped));
                }
                None => fail(
                    &entry.shared,
                    io::ErrorKind::ConnectionAborted,
                    "the mixnet client stopped: the stream is lost".into(),
                ),
            }
        }
    }
}

/// Fails a stream for its application: every later call returns the error.
fn fail(shared: &Mutex<Shared>, kind: io::ErrorKind, why: String) {
    let (reader, writer) = {
        let mut shared = lock(shared);
        shared.failed = Some((kind, why));
        shared.incoming.clear();
        shared.outgoing.clear();
        (shared.reader.take(), shared.writer.take())
    };
    wake(reader);
    wake(writer);
}

fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Sends the exit every message `mux` has for it, in the isolation group `isolation`, each
/// with `surbs` SURBs. A message the client refuses is not lost: the stream layer sends again
/// whatever is not acknowledged.
pub(crate) async fn send_to_exit(
    mux: &mut Mux,
    now: Instant,
    client: &ClientHandle,
    exit: ClientAddress,
    isolation: Isolation,
    surbs: u16,
) {
    while let Some(message) = mux.poll_transmit(now) {
        if let Err(error) = client.send_isolated(exit, isolation, message, surbs).await {
            warn!(%error, "a message to the exit could not be sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let exit = ClientAddress {
            identity: [1; 32],
            encryption: [2; 32],
            gateway: [3; 32],
        };
        let mut settings = StreamSettings::new(exit);
        assert!(settings.mux_config().is_ok());
        settings.max_streams = 0;
        assert_eq!(settings.mux_config().unwrap_err().setting, "max_streams");
        settings.max_streams = 3;
        assert_eq!(settings.mux_config().unwrap().max_streams, 3);
        settings.surbs_per_message = 0;
        assert_eq!(
            settings.mux_config().unwrap_err().setting,
            "surbs_per_message"
        );
    }

    #[test]
    fn open_errors_become_io_errors_of_the_right_kind() {
        let error: io::Error = OpenError::Refused(OpenFailure::NotAllowed).into();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        assert!(error.to_string().contains("policy"));
        let error: io::Error = OpenError::Failed(StreamError::ResetByPeer).into();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    }
}
