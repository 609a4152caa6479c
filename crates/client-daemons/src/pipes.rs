//! Carrying bytes between TCP connections and the streams of a [`Mux`], with bounded memory.
//!
//! Shared by the SOCKS5 proxy ([`crate::socks5`]) and the exit service
//! ([`crate::exit::service`]). Each connection gets a reader task and a writer task; the
//! driver's loop owns the `Mux` and is the only one to touch it. Memory stays bounded because
//! no side gets ahead of the other:
//!
//! - TCP → stream: a reader task reads one chunk, hands it to the loop and waits until the
//!   `Mux` has taken all of it (after a [`StreamEvent::Writable`] if its send buffer was full).
//! - stream → TCP: the loop reads from the `Mux` only while fewer than [`CHUNKS_IN_FLIGHT`]
//!   chunks wait for the writer task; the rest stays in the stream's receive window, which
//!   holds the peer back.
//!
//! A stream that ends cleanly ends its connection with a FIN once everything is written. A
//! stream that fails (reset, timed out, the peer lost it) resets its connection (zero-linger
//! close, an RST): the application gets an error, never an end of data that would pass a
//! truncated download off as complete.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use umbra_client::stream::{Mux, StreamEvent, StreamId};

/// Bytes read from a connection at a time.
const CHUNK: usize = 16 << 10;
/// Chunks read from a stream and not yet written to its connection, at most.
const CHUNKS_IN_FLIGHT: usize = 4;

/// What the connection tasks tell the driver's loop, for the stream `key`.
#[derive(Debug)]
pub(crate) enum PipeInput<P> {
    /// Bytes read from the connection; empty at its end.
    Read { key: (P, StreamId), bytes: Vec<u8> },
    /// The writer task wrote one chunk.
    Wrote { key: (P, StreamId) },
    /// The connection failed.
    Broken { key: (P, StreamId) },
}

enum ToConnection {
    Data(Vec<u8>),
    /// Half-close: everything the peer wrote has been written.
    Finish,
}

/// One connection carried by one stream.
struct Pipe {
    to_connection: mpsc::Sender<ToConnection>,
    in_flight: usize,
    /// Bytes read from the connection that the `Mux` has not taken yet.
    unsent: Vec<u8>,
    resume_reading: Arc<Notify>,
    peer_finished: bool,
    finish_sent: bool,
    /// Cancelled to reset the connection.
    reset: CancellationToken,
    reader: JoinHandle<()>,
}

/// The connections of the streams of one or more `Mux`es, keyed by peer and stream.
pub(crate) struct Pipes<P> {
    pipes: HashMap<(P, StreamId), Pipe>,
    inputs: mpsc::UnboundedSender<PipeInput<P>>,
}

impl<P: Copy + Eq + Hash + Send + 'static> Pipes<P> {
    /// No connections; the receiver gets what their tasks report.
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<PipeInput<P>>) {
        let (inputs, receiver) = mpsc::unbounded_channel();
        let pipes = Pipes {
            pipes: HashMap::new(),
            inputs,
        };
        (pipes, receiver)
    }

    /// Connections carried for `peer`.
    pub(crate) fn count(&self, peer: P) -> usize {
        self.pipes.keys().filter(|(p, _)| *p == peer).count()
    }

    /// Starts carrying `connection` over stream `key`; `first` is written to it before any
    /// stream bytes (the SOCKS reply).
    pub(crate) fn start(
        &mut self,
        mux: &mut Mux,
        now: Instant,
        key: (P, StreamId),
        connection: TcpStream,
        first: Vec<u8>,
    ) {
        let _ = connection.set_nodelay(true);
        let (read, write) = connection.into_split();
        let (to_connection, from_loop) = mpsc::channel(CHUNKS_IN_FLIGHT + 1);
        let resume_reading = Arc::new(Notify::new());
        let reset = CancellationToken::new();
        let reader = tokio::spawn(read_connection(
            read,
            key,
            self.inputs.clone(),
            Arc::clone(&resume_reading),
        ));
        // the writer ends by itself: its queue written, or reset
        tokio::spawn(write_connection(
            write,
            first,
            key,
            from_loop,
            self.inputs.clone(),
            reset.clone(),
        ));
        self.pipes.insert(
            key,
            Pipe {
                to_connection,
                in_flight: 0,
                unsent: Vec::new(),
                resume_reading,
                peer_finished: false,
                finish_sent: false,
                reset,
                reader,
            },
        );
        // bytes may have arrived before the connection was ready
        self.pump_to_connection(mux, now, key);
    }

    /// Handles what a connection task reported.
    pub(crate) fn handle_input(&mut self, mux: &mut Mux, now: Instant, input: PipeInput<P>) {
        match input {
            PipeInput::Read { key, bytes } => {
                if !self.pipes.contains_key(&key) {
                    return;
                }
                if bytes.is_empty() {
                    // the application finished writing; a stream already gone has nothing to close
                    let _ = mux.close_write(now, key.1);
                    return;
                }
                if let Some(pipe) = self.pipes.get_mut(&key) {
                    pipe.unsent = bytes;
                }
                self.pump_to_stream(mux, now, key);
            }
            PipeInput::Wrote { key } => {
                if let Some(pipe) = self.pipes.get_mut(&key) {
                    pipe.in_flight = pipe.in_flight.saturating_sub(1);
                    self.pump_to_connection(mux, now, key);
                }
            }
            PipeInput::Broken { key } => {
                if self.pipes.contains_key(&key) {
                    let _ = mux.reset(now, key.1);
                    self.abort(key);
                }
            }
        }
    }

    /// Handles a stream event of `peer`'s `Mux` (those about bytes and endings; the others
    /// are the driver's).
    pub(crate) fn handle_event(
        &mut self,
        mux: &mut Mux,
        now: Instant,
        peer: P,
        event: &StreamEvent,
    ) {
        match *event {
            StreamEvent::Readable(id) => self.pump_to_connection(mux, now, (peer, id)),
            StreamEvent::Writable(id) => self.pump_to_stream(mux, now, (peer, id)),
            StreamEvent::PeerFinished(id) => {
                if let Some(pipe) = self.pipes.get_mut(&(peer, id)) {
                    pipe.peer_finished = true;
                    self.pump_to_connection(mux, now, (peer, id));
                }
            }
            StreamEvent::Closed(id) => {
                // both directions are finished: the tasks end once their queues are written
                if let Some(pipe) = self.pipes.remove(&(peer, id)) {
                    pipe.reader.abort();
                }
            }
            StreamEvent::Failed { id, ref error } => {
                debug!(%error, "stream failed");
                self.abort((peer, id));
            }
            _ => {}
        }
    }

    /// Drops every connection of `peer`.
    pub(crate) fn abort_peer(&mut self, peer: P) {
        let keys: Vec<_> = self
            .pipes
            .keys()
            .filter(|(p, _)| *p == peer)
            .copied()
            .collect();
        for key in keys {
            self.abort(key);
        }
    }

    /// Resets `key`'s connection: the writer task closes it with an RST.
    fn abort(&mut self, key: (P, StreamId)) {
        if let Some(pipe) = self.pipes.remove(&key) {
            pipe.reset();
        }
    }

    /// Gives the stream what the connection read, and lets the reader go on once all is taken.
    fn pump_to_stream(&mut self, mux: &mut Mux, now: Instant, key: (P, StreamId)) {
        let Some(pipe) = self.pipes.get_mut(&key) else {
            return;
        };
        if pipe.unsent.is_empty() {
            return;
        }
        match mux.write(now, key.1, &pipe.unsent) {
            Ok(taken) => {
                pipe.unsent.drain(..taken);
                if pipe.unsent.is_empty() {
                    pipe.resume_reading.notify_one();
                }
            }
            Err(_) => self.abort(key),
        }
    }

    /// Hands the writer task what the stream received, while it has room, then the half-close.
    fn pump_to_connection(&mut self, mux: &mut Mux, now: Instant, key: (P, StreamId)) {
        let Some(pipe) = self.pipes.get_mut(&key) else {
            return;
        };
        while pipe.in_flight < CHUNKS_IN_FLIGHT {
            let bytes = mux.read(now, key.1, CHUNK).unwrap_or_default();
            if bytes.is_empty() {
                if pipe.peer_finished && !pipe.finish_sent {
                    pipe.finish_sent = pipe.to_connection.try_send(ToConnection::Finish).is_ok();
                }
                return;
            }
            if pipe
                .to_connection
                .try_send(ToConnection::Data(bytes))
                .is_err()
            {
                // the writer is gone: its `Broken` is on the way
                return;
            }
            pipe.in_flight += 1;
        }
    }
}

async fn read_connection<P: Copy>(
    mut read: OwnedReadHalf,
    key: (P, StreamId),
    inputs: mpsc::UnboundedSender<PipeInput<P>>,
    resume: Arc<Notify>,
) {
    let mut buffer = vec![0; CHUNK];
    loop {
        let input = match read.read(&mut buffer).await {
            Ok(n) => PipeInput::Read {
                key,
                bytes: buffer[..n].to_vec(),
            },
            Err(_) => PipeInput::Broken { key },
        };
        let done = !matches!(&input, PipeInput::Read { bytes, .. } if !bytes.is_empty());
        if inputs.send(input).is_err() || done {
            return;
        }
        resume.notified().await;
    }
}

async fn write_connection<P: Copy>(
    mut write: OwnedWriteHalf,
    first: Vec<u8>,
    key: (P, StreamId),
    mut from_loop: mpsc::Receiver<ToConnection>,
    inputs: mpsc::UnboundedSender<PipeInput<P>>,
    reset: CancellationToken,
) {
    let first_written = tokio::select! {
        biased;
        () = reset.cancelled() => return reset_connection(write),
        written = write.write_all(&first), if !first.is_empty() => written,
        () = std::future::ready(()), if first.is_empty() => Ok(()),
    };
    if first_written.is_err() {
        let _ = inputs.send(PipeInput::Broken { key });
        return;
    }
    loop {
        let next = tokio::select! {
            biased;
            () = reset.cancelled() => return reset_connection(write),
            next = from_loop.recv() => next,
        };
        let Some(next) = next else { return };
        let written = tokio::select! {
            biased;
            () = reset.cancelled() => return reset_connection(write),
            written = async {
                match next {
                    ToConnection::Data(bytes) => write.write_all(&bytes).await,
                    ToConnection::Finish => write.shutdown().await,
                }
            } => written,
        };
        let report = match written {
            Ok(()) => PipeInput::Wrote { key },
            Err(_) => PipeInput::Broken { key },
        };
        if inputs.send(report).is_err() {
            return;
        }
    }
}

impl Pipe {
    /// Stops reading and has the writer task reset the connection.
    fn reset(self) {
        self.reader.abort();
        self.reset.cancel();
    }
}

/// The driver stopped: every stream is broken, so every connection is reset.
impl<P> Drop for Pipes<P> {
    fn drop(&mut self) {
        for (_, pipe) in self.pipes.drain() {
            pipe.reset();
        }
    }
}

/// Sleeps until `at`, or forever without one: a driver's timer for its `Mux`es.
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Closes the connection with an RST: zero linger, and no FIN first (`forget` skips the
/// write half's shutdown; the socket closes once the reader half, aborted, is dropped too).
fn reset_connection(write: OwnedWriteHalf) {
    let _ = write.as_ref().set_zero_linger();
    write.forget();
}
