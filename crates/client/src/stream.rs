//! Ordered, flow-controlled byte streams over mixnet messages (issue 6): the layer between a
//! SOCKS5 proxy and an exit service, identical on both sides.
//!
//! A [`Mux`] carries many streams to **one peer**: the shell keeps one `Mux` per peer (the
//! SOCKS5 side one per exit, the exit one per anonymous sender tag) and carries the messages
//! [`Mux::poll_transmit`] returns to that peer, and the messages from it to
//! [`Mux::handle_message`]. Like every core it does no I/O and reads no clock: `now` is passed
//! in, and [`Mux::next_timeout`] says when to call [`Mux::handle_timeout`].
//!
//! ```text
//! let mut mux = Mux::new(StreamConfig::default())?;
//! let id = mux.open(now, Destination::new(Host::Name("example.org".into()), 443)?)?;
//! loop {
//!     while let Some(message) = mux.poll_transmit(now) { /* send it to the peer */ }
//!     while let Some(event) = mux.poll_event() { /* Opened, Readable, Writable, ... */ }
//!     // on a message from the peer: mux.handle_message(now, &bytes)
//!     // at mux.next_timeout():      mux.handle_timeout(now)
//! }
//! ```
//!
//! # What the mixnet gives, and what this adds
//!
//! The client below delivers whole messages, in any order, almost always exactly once (it
//! acknowledges and retransmits packets itself), but may drop one after its own retries fail
//! and may deliver a retransmitted one twice. So each stream numbers its bytes (offsets, as
//! TCP does); the receiver puts them back in order and acknowledges cumulatively; a sender
//! that sees no acknowledgement progress for `retransmit_after` sends everything
//! unacknowledged again (go-back-N: drops are rare, so simplicity wins over selective
//! repeat), backing off exponentially. Every other control frame is made safe to lose: an
//! unanswered open is sent again, a repeated open is answered again, a frame for a stream one
//! side no longer has is answered with a reset, and nothing waits forever — a stream with no
//! progress for `idle_timeout` fails on both sides with [`StreamError::TimedOut`].
//!
//! # Flow control and memory
//!
//! A receiver grants credit: the sender may send bytes up to offset `limit`, which the
//! receiver moves forward only as its application reads. So a stream holds at most
//! `receive_window` bytes received and `send_buffer` bytes written by its application
//! (unsent or unacknowledged); [`Mux::write`] accepts only what fits and
//! [`StreamEvent::Writable`] says when more fits. A `Mux` holds at most `max_streams`
//! streams, so its memory is bounded by `max_streams × (receive_window + send_buffer)`, plus
//! small bookkeeping. Data beyond the granted credit is a protocol violation.
//!
//! # Wire format (version 1)
//!
//! A message is one version byte (`1`) followed by one or more frames, back to back. Integers
//! are big-endian. Every frame starts with a type byte and a 4-byte stream field: the low 31
//! bits number the stream (numbered by whoever opened it), the top bit is set when the frame
//! comes from the stream's opener (so both sides can number their own streams from zero, as
//! in QUIC, without being told who is client and who is server).
//!
//! | type | frame | body after the stream field |
//! |---|---|---|
//! | 1 | open | window u32, host kind u8 (1 IPv4 + 4 bytes, 2 IPv6 + 16 bytes, 3 name: length u8 1..=255 + that many bytes of printable ASCII), port u16 |
//! | 2 | open-ok | window u32 |
//! | 3 | open-failed | reason u8 ([`OpenFailure`]) |
//! | 4 | data | offset u64, length u16, bytes (length 0: a probe asking for an ack) |
//! | 5 | ack / window update | received u64 (bytes received in order), limit u64 (may send below it, ≥ received), flags u8 (bit 0: the close-write at `received` arrived; other bits 0) |
//! | 6 | close-write | end u64 (the offset after the last byte) |
//! | 7 | reset | reason u8 ([`ResetReason`]) |
//!
//! Decoding is strict: a wrong version, an unknown type, a truncated frame, a reason or host
//! kind out of range, a bad host name, reserved bits set, an open or data frame pointing the
//! wrong way, `limit < received`, or an offset that overflows refuses the whole message
//! (counted in [`MuxStats::refused_messages`]).
//!
//! # Sizes
//!
//! A Regular Sphinx packet carries about 1.6 KB of a forward message (2 KB through a SURB), and
//! a message is delivered only when all its packets are in. `max_message_size` defaults to
//! 16 KiB (about ten packets): large enough that framing (15 bytes a data frame) and sealing
//! (48 bytes a message) cost under 1 %, small enough that a message does not hold interactive
//! bytes back for long. [`Mux::poll_transmit`] packs every pending frame of every stream into
//! a message until it is full, taking streams in turn. It does not wait to batch: a shell that
//! polls when its client can take another message (its queue running low) lets small writes
//! pile up and share messages.

mod frame;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::err::ConfigError;
use frame::{DATA_HEADER, FROM_OPENER, MAX_FRAME_DATA};
pub use frame::{
    Destination, Frame, FrameError, Host, OpenFailure, ResetReason, VERSION, WireId,
    decode_message, encode_message,
};

/// The largest retransmission back-off: `retransmit_after × 2^MAX_BACKOFF`.
const MAX_BACKOFF: u32 = 3;
/// Frames queued for streams this side no longer has (resets, re-acks): beyond it, dropped.
const MAX_QUEUED_REPLIES: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Configuration

/// How streams behave. Memory is bounded by `max_streams × (receive_window + send_buffer)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Streams open at once with one peer, both directions together (default 128). Opens
    /// beyond it are refused.
    pub max_streams: usize,
    /// Bytes a stream may hold received but not read by its application (default 256 KiB).
    /// It caps a stream's throughput at about a window per round trip.
    pub receive_window: u32,
    /// Bytes a stream may hold written but not yet acknowledged (default 256 KiB).
    pub send_buffer: usize,
    /// The largest message [`Mux::poll_transmit`] returns (default 16 KiB, about ten
    /// packets; at least 64 bytes).
    pub max_message_size: usize,
    /// Unacknowledged data is sent again after this long without acknowledgement progress,
    /// doubling on each try up to 8 times this (default 20 s: longer than the client's own
    /// retransmission of packets, which recovers most losses first).
    #[serde(with = "humantime_serde")]
    pub retransmit_after: Duration,
    /// An open not answered in this long fails with [`OpenFailure::TtlExpired`]; an incoming
    /// open not accepted in this long is refused (default 60 s).
    #[serde(with = "humantime_serde")]
    pub open_timeout: Duration,
    /// A stream with no progress (no new bytes either way, nothing read) for this long fails
    /// on both sides with [`StreamError::TimedOut`] (default 5 min).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// With streams open and nothing heard from the peer for this long, send it an
    /// acknowledgement for each (default 15 s). A live peer takes it silently; a peer that
    /// restarted and lost its streams answers with a reset, so a stream waiting for bytes
    /// learns within about this long that they will never come, instead of at `idle_timeout`.
    #[serde(with = "humantime_serde")]
    pub keepalive: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            max_streams: 128,
            receive_window: 256 << 10,
            send_buffer: 256 << 10,
            max_message_size: 16 << 10,
            retransmit_after: Duration::from_secs(20),
            open_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(300),
            keepalive: Duration::from_secs(15),
        }
    }
}

impl StreamConfig {
    /// Checks that the settings can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_streams == 0 || self.max_streams > (FROM_OPENER as usize) {
            return Err(ConfigError::new(
                "streams.max_streams",
                "must be between 1 and 2^31 (default 128)",
            ));
        }
        if self.receive_window == 0 || self.send_buffer == 0 {
            return Err(ConfigError::new(
                "streams.receive_window",
                "receive_window and send_buffer must be above zero (defaults 256 KiB)",
            ));
        }
        if self.max_message_size < 64 {
            return Err(ConfigError::new(
                "streams.max_message_size",
                "must be at least 64 bytes (default 16 KiB)",
            ));
        }
        if self.retransmit_after.is_zero()
            || self.open_timeout.is_zero()
            || self.idle_timeout <= self.retransmit_after
        {
            return Err(ConfigError::new(
                "streams.idle_timeout",
                "timeouts must be above zero, and idle_timeout above retransmit_after \
                 (defaults 20 s, 60 s, 5 min)",
            ));
        }
        if self.keepalive.is_zero() || self.keepalive >= self.idle_timeout {
            return Err(ConfigError::new(
                "streams.keepalive",
                "must be above zero and below idle_timeout (defaults 15 s, 5 min)",
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Public types

/// A stream, as this side names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    number: u32,
    opened_here: bool,
}

impl StreamId {
    /// The number its opener gave it.
    pub fn number(self) -> u32 {
        self.number
    }

    /// Whether this side opened it.
    pub fn opened_here(self) -> bool {
        self.opened_here
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = if self.opened_here { "local" } else { "remote" };
        write!(f, "{side}#{}", self.number)
    }
}

/// Why a stream ended badly, or why a call on it was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// No progress for the idle timeout (noticed here, or by the peer, which said so).
    #[error("the stream timed out: no progress for the idle timeout (streams.idle_timeout)")]
    TimedOut,
    /// The peer's application (or its TCP connection) gave up on the stream.
    #[error("the stream was reset by the other side")]
    ResetByPeer,
    /// The peer did not know the stream: it had already closed it, or restarted.
    #[error("the other side does not know this stream (it closed it, or restarted)")]
    UnknownToPeer,
    /// One side broke the stream protocol; the stream was reset.
    #[error("the stream protocol was broken ({0}); the stream was reset")]
    ProtocolViolation(&'static str),
    /// There is no such stream here (it ended, or never existed).
    #[error("no stream {0} here: it ended, or never existed")]
    NoSuchStream(StreamId),
    /// The stream cannot do this in its state.
    #[error("stream {id}: {problem}")]
    WrongState {
        /// The stream.
        id: StreamId,
        /// What was wrong.
        problem: &'static str,
    },
    /// `max_streams` streams are open already.
    #[error("{0} streams are open already (streams.max_streams)")]
    TooManyStreams(usize),
}

/// What happened to streams, for the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The peer wants a stream to `destination`: [`Mux::accept`] or [`Mux::refuse`] it.
    Incoming {
        /// The new stream.
        id: StreamId,
        /// Where the peer wants it connected.
        destination: Destination,
    },
    /// A stream this side opened was accepted.
    Opened(StreamId),
    /// A stream this side opened was refused, or not answered in time; it is gone.
    OpenFailed {
        /// The stream.
        id: StreamId,
        /// Why.
        reason: OpenFailure,
    },
    /// Bytes are waiting for [`Mux::read`].
    Readable(StreamId),
    /// [`Mux::write`] accepts bytes again after accepting fewer than it was given.
    Writable(StreamId),
    /// The peer closed its writing side and every byte it wrote has arrived; once `read`
    /// returns nothing, the stream has no more to read.
    PeerFinished(StreamId),
    /// Both sides finished writing and everything was read and acknowledged; it is gone.
    Closed(StreamId),
    /// The stream ended badly; it is gone.
    Failed {
        /// The stream.
        id: StreamId,
        /// Why.
        error: StreamError,
    },
}

/// Counts of what a multiplexer did, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MuxStats {
    /// Messages that did not decode, dropped whole.
    pub refused_messages: u64,
    /// Frames that broke the protocol for their stream (which was reset).
    pub bad_frames: u64,
    /// Frames for streams this side does not have.
    pub unknown_stream_frames: u64,
    /// Data bytes dropped because they arrived out of order beyond what could be held.
    pub dropped_bytes: u64,
    /// Data bytes sent again.
    pub retransmitted_bytes: u64,
    /// Streams that failed for lack of progress, or opens not answered in time.
    pub timeouts: u64,
    /// Replies to streams this side no longer has, dropped because too many were queued.
    pub dropped_replies: u64,
    /// Keep-alive rounds sent (acknowledgements for every open stream of a quiet peer).
    pub keepalives: u64,
}

// ---------------------------------------------------------------------------------------------
// The multiplexer

/// Where a stream is in its opening handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Opened here, waiting for the answer until `deadline`.
    Opening {
        deadline: Instant,
        /// Where the open asks the peer to connect; sent again until answered.
        destination: Destination,
        /// The open frame is owed to the peer (first sent, or sent again).
        open_due: bool,
    },
    /// Opened by the peer, waiting for the application until `deadline`.
    Incoming { deadline: Instant },
    /// Both sides have it.
    Open {
        /// An open-ok is owed to the peer (just accepted, or the peer sent its open again).
        open_ok_due: bool,
    },
}

impl Phase {
    fn is_open(&self) -> bool {
        matches!(self, Phase::Open { .. })
    }
}

/// Where the sending half of a stream is (as quinn-proto's `SendState`). Bytes are taken
/// from the application only in `Writing`; the close-write goes out in `Finishing`, and
/// `FinSent` falls back to `Finishing` when it is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    /// The application may write. `blocked`: a write took fewer bytes than it was given, so
    /// [`StreamEvent::Writable`] is owed once there is room.
    Writing { blocked: bool },
    /// The application closed its writing side; the close-write goes out once every byte
    /// written has been sent.
    Finishing,
    /// The close-write went out; waiting for the peer to acknowledge it.
    FinSent,
    /// The peer acknowledged every byte and the close-write: nothing more to send.
    FinAcked,
}

/// Where the receiving half of a stream is (as quinn-proto's `RecvState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecvState {
    /// The peer may write more.
    Receiving,
    /// The peer's close-write says its bytes end at `end`; some before it are still to come.
    SizeKnown { end: u64 },
    /// Every byte up to `end` arrived, and the application was told
    /// ([`StreamEvent::PeerFinished`]).
    AllReceived { end: u64 },
}

impl RecvState {
    /// Where the peer's bytes end, once it has said.
    fn end(self) -> Option<u64> {
        match self {
            RecvState::Receiving => None,
            RecvState::SizeKnown { end } | RecvState::AllReceived { end } => Some(end),
        }
    }
}

#[derive(Debug)]
struct Stream {
    phase: Phase,
    last_progress: Instant,
    // Sending: `unacked` holds the bytes from offset `acked` to `written`.
    send: SendState,
    unacked: VecDeque<u8>,
    acked: u64,
    sent: u64,
    peer_limit: u64,
    retransmit_at: Option<Instant>,
    backoff: u32,
    // Receiving: `ready` holds the bytes from `read` to `received` (the application was told
    // of them, [`StreamEvent::Readable`], when they stopped being empty); `ahead` those past
    // a gap.
    recv: RecvState,
    ready: VecDeque<u8>,
    read: u64,
    received: u64,
    ahead: BTreeMap<u64, Vec<u8>>,
    ahead_bytes: usize,
    limit: u64,
    // Frames owed to the peer whatever the states: an ack (or window update), and a probe
    // (an empty data frame asking for an ack, when the peer's credit is used up).
    ack_due: bool,
    probe_due: bool,
}

impl Stream {
    fn new(phase: Phase, now: Instant, window: u32, peer_limit: u64) -> Self {
        Stream {
            phase,
            last_progress: now,
            send: SendState::Writing { blocked: false },
            unacked: VecDeque::new(),
            acked: 0,
            sent: 0,
            peer_limit,
            retransmit_at: None,
            backoff: 0,
            recv: RecvState::Receiving,
            ready: VecDeque::new(),
            read: 0,
            received: 0,
            ahead: BTreeMap::new(),
            ahead_bytes: 0,
            limit: u64::from(window),
            ack_due: false,
            probe_due: false,
        }
    }

    fn written(&self) -> u64 {
        self.acked + self.unacked.len() as u64
    }

    /// Bytes that may go out now.
    fn sendable(&self) -> u64 {
        if !self.phase.is_open() {
            return 0;
        }
        self.written()
            .min(self.peer_limit)
            .saturating_sub(self.sent)
    }

    /// Whether something sent waits for an ack, or the sender waits for credit.
    fn waiting_for_peer(&self) -> bool {
        match self.phase {
            Phase::Opening { .. } => true,
            Phase::Incoming { .. } => false,
            Phase::Open { .. } => {
                self.sent > self.acked
                    || self.send == SendState::FinSent
                    || (self.written() > self.sent && self.sent >= self.peer_limit)
            }
        }
    }

    fn ack_frame(&self, stream: WireId) -> Frame {
        Frame::Ack {
            stream,
            received: self.received,
            limit: self.limit,
            finished: self.recv.end() == Some(self.received),
        }
    }
}

/// What is remembered of a stream that is gone, to answer the peer's late frames.
#[derive(Debug, Clone, Copy)]
enum Gone {
    /// Closed cleanly, after receiving this many bytes and the peer's close-write.
    Closed { received: u64 },
    /// Reset, or refused.
    Reset(ResetReason),
    /// Refused when it was opened.
    Refused(OpenFailure),
}

/// Many byte streams to one peer over its messages; see the module documentation.
#[derive(Debug)]
pub struct Mux {
    config: StreamConfig,
    streams: BTreeMap<StreamId, Stream>,
    gone: HashMap<StreamId, (Instant, Gone)>,
    replies: VecDeque<Frame>,
    events: VecDeque<StreamEvent>,
    next_number: u32,
    turn: usize,
    stats: MuxStats,
    /// When the peer last sent a message that decoded, or the last keep-alive went out.
    quiet_since: Option<Instant>,
}

impl Mux {
    /// A multiplexer with no streams.
    pub fn new(config: StreamConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Mux {
            config,
            streams: BTreeMap::new(),
            gone: HashMap::new(),
            replies: VecDeque::new(),
            events: VecDeque::new(),
            next_number: 0,
            turn: 0,
            stats: MuxStats::default(),
            quiet_since: None,
        })
    }

    /// Opens a stream to `destination` through the peer. [`StreamEvent::Opened`] or
    /// [`StreamEvent::OpenFailed`] follows; bytes written before are sent once it is open.
    pub fn open(
        &mut self,
        now: Instant,
        destination: Destination,
    ) -> Result<StreamId, StreamError> {
        if self.streams.len() >= self.config.max_streams {
            return Err(StreamError::TooManyStreams(self.streams.len()));
        }
        let id = StreamId {
            number: self.next_number,
            opened_here: true,
        };
        self.next_number = (self.next_number + 1) & !FROM_OPENER;
        let deadline = now + self.config.open_timeout;
        let phase = Phase::Opening {
            deadline,
            destination,
            open_due: true,
        };
        let mut stream = Stream::new(phase, now, self.config.receive_window, 0);
        stream.retransmit_at = Some(now + self.config.retransmit_after);
        self.streams.insert(id, stream);
        Ok(id)
    }

    /// Accepts an incoming stream (after [`StreamEvent::Incoming`], typically once the exit's
    /// TCP connection is up).
    pub fn accept(&mut self, now: Instant, id: StreamId) -> Result<(), StreamError> {
        let stream = self
            .streams
            .get_mut(&id)
            .ok_or(StreamError::NoSuchStream(id))?;
        if !matches!(stream.phase, Phase::Incoming { .. }) {
            return Err(StreamError::WrongState {
                id,
                problem: "only an incoming stream can be accepted",
            });
        }
        stream.phase = Phase::Open { open_ok_due: true };
        stream.last_progress = now;
        Ok(())
    }

    /// Refuses an incoming stream; the opener sees [`StreamEvent::OpenFailed`] with `reason`.
    pub fn refuse(
        &mut self,
        now: Instant,
        id: StreamId,
        reason: OpenFailure,
    ) -> Result<(), StreamError> {
        match self.streams.get(&id).map(|s| &s.phase) {
            None => Err(StreamError::NoSuchStream(id)),
            Some(Phase::Incoming { .. }) => {
                self.streams.remove(&id);
                self.reply(Frame::OpenFailed {
                    stream: wire(id),
                    reason,
                });
                self.forget(now, id, Gone::Refused(reason));
                Ok(())
            }
            Some(_) => Err(StreamError::WrongState {
                id,
                problem: "only an incoming stream can be refused",
            }),
        }
    }

    /// Takes as many of `bytes` as the stream's send buffer has room for, and says how many.
    /// When fewer than all, [`StreamEvent::Writable`] follows once there is room again.
    pub fn write(
        &mut self,
        now: Instant,
        id: StreamId,
        bytes: &[u8],
    ) -> Result<usize, StreamError> {
        let capacity = self.config.send_buffer;
        let stream = self
            .streams
            .get_mut(&id)
            .ok_or(StreamError::NoSuchStream(id))?;
        let SendState::Writing { blocked } = &mut stream.send else {
            return Err(StreamError::WrongState {
                id,
                problem: "its writing side was closed",
            });
        };
        let n = bytes
            .len()
            .min(capacity.saturating_sub(stream.unacked.len()));
        *blocked = n < bytes.len();
        stream.unacked.extend(&bytes[..n]);
        if n > 0 {
            stream.last_progress = now;
        }
        Ok(n)
    }

    /// Takes up to `max` bytes the peer sent, in order. Empty when none are waiting.
    pub fn read(&mut self, now: Instant, id: StreamId, max: usize) -> Result<Vec<u8>, StreamError> {
        let window = u64::from(self.config.receive_window);
        let stream = self
            .streams
            .get_mut(&id)
            .ok_or(StreamError::NoSuchStream(id))?;
        let n = max.min(stream.ready.len());
        let bytes: Vec<u8> = stream.ready.drain(..n).collect();
        stream.read += n as u64;
        if n > 0 {
            stream.last_progress = now;
            // Tell the peer about new credit once a quarter window has freed, or at once if
            // it may have nothing left to send with.
            let limit = stream.read + window;
            if limit - stream.limit >= window / 4 || stream.limit == stream.received {
                stream.limit = limit;
                stream.ack_due = true;
            }
        }
        self.settle(now, id);
        Ok(bytes)
    }

    /// Finishes this side's writing: the peer reads to the end of what was written, then
    /// sees [`StreamEvent::PeerFinished`]. The other direction carries on.
    pub fn close_write(&mut self, now: Instant, id: StreamId) -> Result<(), StreamError> {
        let stream = self
            .streams
            .get_mut(&id)
            .ok_or(StreamError::NoSuchStream(id))?;
        if let SendState::Writing { .. } = stream.send {
            // a Writable owed is owed no more: nothing more can be written
            stream.send = SendState::Finishing;
        }
        stream.last_progress = now;
        Ok(())
    }

    /// Ends a stream at once, both ways; the peer sees [`StreamError::ResetByPeer`].
    pub fn reset(&mut self, now: Instant, id: StreamId) -> Result<(), StreamError> {
        if !self.streams.contains_key(&id) {
            return Err(StreamError::NoSuchStream(id));
        }
        self.end(now, id, ResetReason::Application, None);
        Ok(())
    }

    /// The stream's bytes held here: written but not acknowledged, and received but not read.
    pub fn buffered(&self, id: StreamId) -> usize {
        self.streams
            .get(&id)
            .map_or(0, |s| s.unacked.len() + s.ready.len() + s.ahead_bytes)
    }

    /// Bytes held for all streams.
    pub fn total_buffered(&self) -> usize {
        self.streams
            .values()
            .map(|s| s.unacked.len() + s.ready.len() + s.ahead_bytes)
            .sum()
    }

    /// Streams open or opening.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// What the multiplexer counted.
    pub fn stats(&self) -> &MuxStats {
        &self.stats
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    /// Takes a message from the peer. A message that does not decode is dropped and counted.
    pub fn handle_message(&mut self, now: Instant, bytes: &[u8]) {
        let frames = match decode_message(bytes) {
            Ok(frames) => frames,
            Err(_) => {
                self.stats.refused_messages += 1;
                return;
            }
        };
        self.quiet_since = Some(now);
        for frame in frames {
            let wire_id = frame.stream();
            let id = StreamId {
                number: wire_id.number,
                opened_here: !wire_id.from_opener,
            };
            if self.streams.contains_key(&id) {
                if let Err(violation) = self.apply(now, id, frame) {
                    self.stats.bad_frames += 1;
                    self.end(
                        now,
                        id,
                        ResetReason::ProtocolViolation,
                        Some(StreamError::ProtocolViolation(violation)),
                    );
                }
                self.settle(now, id);
            } else {
                self.unknown(now, id, frame);
            }
        }
    }

    /// The next message for the peer, if anything is owed: as many frames as fit in
    /// `max_message_size`, streams taking turns.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let max = self.config.max_message_size;
        let mut out = vec![VERSION];
        let fits = |out: &Vec<u8>, frame: &Frame| out.len() + frame.encoded_len() <= max;
        while let Some(frame) = self.replies.front() {
            if !fits(&out, frame) {
                break;
            }
            frame.encode(&mut out);
            self.replies.pop_front();
        }
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        if ids.is_empty() {
            return (out.len() > 1).then_some(out);
        }
        let start = self.turn % ids.len();
        self.turn = self.turn.wrapping_add(1);
        let order: Vec<StreamId> = ids[start..].iter().chain(&ids[..start]).copied().collect();
        // Control frames first: they are small and unblock the peer.
        for &id in &order {
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            let w = wire(id);
            if let Phase::Opening {
                destination,
                open_due: open_due @ true,
                ..
            } = &mut stream.phase
            {
                let frame = Frame::Open {
                    stream: w,
                    window: self.config.receive_window,
                    destination: destination.clone(),
                };
                if fits(&out, &frame) {
                    frame.encode(&mut out);
                    *open_due = false;
                }
            }
            if let Phase::Open {
                open_ok_due: open_ok_due @ true,
            } = &mut stream.phase
            {
                let frame = Frame::OpenOk {
                    stream: w,
                    window: self.config.receive_window,
                };
                if fits(&out, &frame) {
                    frame.encode(&mut out);
                    *open_ok_due = false;
                }
            }
            if stream.ack_due {
                let frame = stream.ack_frame(w);
                if fits(&out, &frame) {
                    frame.encode(&mut out);
                    stream.ack_due = false;
                }
            }
        }
        // Then data, a frame per stream per round, until the message is full.
        let mut progress = true;
        while progress && out.len() + DATA_HEADER < max {
            progress = false;
            for &id in &order {
                let room = max.saturating_sub(out.len() + DATA_HEADER);
                let Some(stream) = self.streams.get_mut(&id) else {
                    continue;
                };
                let sendable = stream.sendable();
                if sendable > 0 && room > 0 {
                    let n = (sendable as usize).min(room).min(MAX_FRAME_DATA);
                    let start = (stream.sent - stream.acked) as usize;
                    let bytes: Vec<u8> = stream.unacked.range(start..start + n).copied().collect();
                    Frame::Data {
                        stream: wire(id),
                        offset: stream.sent,
                        bytes,
                    }
                    .encode(&mut out);
                    stream.sent += n as u64;
                    stream.probe_due = false;
                    if stream.retransmit_at.is_none() {
                        stream.retransmit_at = Some(now + self.config.retransmit_after);
                    }
                    progress = true;
                } else if stream.probe_due && room < max {
                    Frame::Data {
                        stream: wire(id),
                        offset: stream.sent,
                        bytes: Vec::new(),
                    }
                    .encode(&mut out);
                    stream.probe_due = false;
                    progress = true;
                }
                let close = Frame::CloseWrite {
                    stream: wire(id),
                    end: stream.written(),
                };
                if stream.phase.is_open()
                    && stream.send == SendState::Finishing
                    && stream.sent == stream.written()
                    && fits(&out, &close)
                {
                    close.encode(&mut out);
                    stream.send = SendState::FinSent;
                    if stream.retransmit_at.is_none() {
                        stream.retransmit_at = Some(now + self.config.retransmit_after);
                    }
                    progress = true;
                }
            }
        }
        for id in ids {
            self.settle(now, id);
        }
        (out.len() > 1).then_some(out)
    }

    /// When [`Mux::handle_timeout`] should next be called, if ever.
    pub fn next_timeout(&self) -> Option<Instant> {
        let streams = self.streams.values().flat_map(|s| {
            let deadline = match s.phase {
                Phase::Opening { deadline, .. } | Phase::Incoming { deadline } => deadline,
                Phase::Open { .. } => s.last_progress + self.config.idle_timeout,
            };
            [Some(deadline), s.retransmit_at].into_iter().flatten()
        });
        let gone = self.gone.values().map(|(until, _)| *until);
        streams.chain(gone).chain(self.keepalive_at()).min()
    }

    /// When a keep-alive round is due: only with streams open.
    fn keepalive_at(&self) -> Option<Instant> {
        let quiet_since = self.quiet_since?;
        self.streams
            .values()
            .any(|s| s.phase.is_open())
            .then(|| quiet_since + self.config.keepalive)
    }

    /// Sends again what was not acknowledged in time, and ends streams past their deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            let Some(stream) = self.streams.get_mut(&id) else {
                continue;
            };
            match stream.phase {
                Phase::Opening { deadline, .. } if deadline <= now => {
                    self.stats.timeouts += 1;
                    self.streams.remove(&id);
                    self.reply(Frame::Reset {
                        stream: wire(id),
                        reason: ResetReason::TimedOut,
                    });
                    self.forget(now, id, Gone::Reset(ResetReason::TimedOut));
                    self.events.push_back(StreamEvent::OpenFailed {
                        id,
                        reason: OpenFailure::TtlExpired,
                    });
                    continue;
                }
                Phase::Incoming { deadline } if deadline <= now => {
                    self.stats.timeouts += 1;
                    self.streams.remove(&id);
                    self.reply(Frame::OpenFailed {
                        stream: wire(id),
                        reason: OpenFailure::TtlExpired,
                    });
                    self.forget(now, id, Gone::Refused(OpenFailure::TtlExpired));
                    self.events.push_back(StreamEvent::Failed {
                        id,
                        error: StreamError::TimedOut,
                    });
                    continue;
                }
                Phase::Open { .. } if stream.last_progress + self.config.idle_timeout <= now => {
                    self.stats.timeouts += 1;
                    self.end(now, id, ResetReason::TimedOut, Some(StreamError::TimedOut));
                    continue;
                }
                _ => {}
            }
            if stream.retransmit_at.is_some_and(|at| at <= now) {
                if stream.waiting_for_peer() {
                    if let Phase::Opening { open_due, .. } = &mut stream.phase {
                        *open_due = true;
                    } else if stream.sent > stream.acked || stream.send == SendState::FinSent {
                        self.stats.retransmitted_bytes += stream.sent - stream.acked;
                        stream.sent = stream.acked;
                        if stream.send == SendState::FinSent {
                            stream.send = SendState::Finishing;
                        }
                        stream.probe_due = stream.sent >= stream.peer_limit;
                    } else {
                        stream.probe_due = true;
                    }
                    stream.backoff = (stream.backoff + 1).min(MAX_BACKOFF);
                    stream.retransmit_at =
                        Some(now + self.config.retransmit_after * (1 << stream.backoff));
                } else {
                    stream.retransmit_at = None;
                }
            }
        }
        self.gone.retain(|_, (until, _)| *until > now);
        if self.keepalive_at().is_some_and(|at| at <= now) {
            self.stats.keepalives += 1;
            self.quiet_since = Some(now);
            for stream in self.streams.values_mut() {
                if stream.phase.is_open() {
                    stream.ack_due = true;
                }
            }
        }
    }

    /// Applies a frame to a stream this side has; `Err` names a protocol violation.
    fn apply(&mut self, now: Instant, id: StreamId, frame: Frame) -> Result<(), &'static str> {
        let retransmit_after = self.config.retransmit_after;
        let send_buffer = self.config.send_buffer;
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        match frame {
            Frame::Open { .. } => {
                // The opener did not hear our answer: answer again.
                if let Phase::Open { open_ok_due } = &mut stream.phase {
                    *open_ok_due = true;
                }
            }
            Frame::OpenOk { window, .. } => {
                if let Phase::Opening { .. } = stream.phase {
                    stream.phase = Phase::Open { open_ok_due: false };
                    stream.peer_limit = u64::from(window);
                    stream.last_progress = now;
                    stream.backoff = 0;
                    stream.retransmit_at = None;
                    self.events.push_back(StreamEvent::Opened(id));
                }
            }
            Frame::OpenFailed { reason, .. } => {
                if let Phase::Opening { .. } = stream.phase {
                    self.streams.remove(&id);
                    self.forget(now, id, Gone::Refused(reason));
                    self.events
                        .push_back(StreamEvent::OpenFailed { id, reason });
                }
            }
            Frame::Reset { reason, .. } => {
                let opening = matches!(stream.phase, Phase::Opening { .. });
                let error = match reason {
                    ResetReason::Application => StreamError::ResetByPeer,
                    ResetReason::TimedOut => StreamError::TimedOut,
                    ResetReason::UnknownStream => StreamError::UnknownToPeer,
                    ResetReason::ProtocolViolation => {
                        StreamError::ProtocolViolation("the other side says this side broke it")
                    }
                };
                self.streams.remove(&id);
                self.forget(now, id, Gone::Reset(reason));
                if opening {
                    let reason = if error == StreamError::TimedOut {
                        OpenFailure::TtlExpired
                    } else {
                        OpenFailure::General
                    };
                    self.events
                        .push_back(StreamEvent::OpenFailed { id, reason });
                } else {
                    self.events.push_back(StreamEvent::Failed { id, error });
                }
            }
            Frame::Data { offset, bytes, .. } => {
                if !stream.phase.is_open() {
                    // Its open-ok is still on the way; the sender will send it again.
                    self.stats.dropped_bytes += bytes.len() as u64;
                    return Ok(());
                }
                let end = offset + bytes.len() as u64;
                if end > stream.limit {
                    return Err("data beyond the granted credit");
                }
                if stream.recv.end().is_some_and(|e| end > e) {
                    return Err("data past the end of the stream");
                }
                stream.ack_due = true;
                if end <= stream.received || bytes.is_empty() {
                    return Ok(());
                }
                stream.last_progress = now;
                if offset <= stream.received {
                    let was_empty = stream.ready.is_empty();
                    let skip = (stream.received - offset) as usize;
                    stream.ready.extend(&bytes[skip..]);
                    stream.received = end;
                    while let Some((&at, _)) = stream.ahead.first_key_value() {
                        if at > stream.received {
                            break;
                        }
                        let Some((at, chunk)) = stream.ahead.pop_first() else {
                            break;
                        };
                        stream.ahead_bytes -= chunk.len();
                        let chunk_end = at + chunk.len() as u64;
                        if chunk_end > stream.received {
                            let skip = (stream.received - at) as usize;
                            stream.ready.extend(&chunk[skip..]);
                            stream.received = chunk_end;
                        }
                    }
                    if was_empty {
                        self.events.push_back(StreamEvent::Readable(id));
                    }
                } else {
                    // Past a gap: hold it, within the credit still unused.
                    let room = (stream.limit - stream.received) as usize;
                    let old = stream.ahead.get(&offset).map_or(0, Vec::len);
                    if bytes.len() > old && stream.ahead_bytes - old + bytes.len() <= room {
                        stream.ahead_bytes = stream.ahead_bytes - old + bytes.len();
                        stream.ahead.insert(offset, bytes);
                    } else if bytes.len() > old {
                        self.stats.dropped_bytes += bytes.len() as u64;
                    }
                }
            }
            Frame::CloseWrite { end, .. } => {
                if !stream.phase.is_open() {
                    return Ok(());
                }
                if stream.recv.end().is_some_and(|e| e != end) {
                    return Err("a second, different end of the stream");
                }
                if end < stream.received || end > stream.limit {
                    return Err("an end before the bytes received, or beyond the credit");
                }
                if stream.recv == RecvState::Receiving {
                    stream.last_progress = now;
                    stream.recv = RecvState::SizeKnown { end };
                }
                stream.ack_due = true;
            }
            Frame::Ack {
                received,
                limit,
                finished,
                ..
            } => {
                if !stream.phase.is_open() {
                    return Ok(());
                }
                if received > stream.written() {
                    return Err("an ack of bytes never sent");
                }
                // `Finishing` too: a close-write to be sent again is `Finishing` until it goes
                // out, and the ack of the first may come meanwhile.
                let closing = !matches!(stream.send, SendState::Writing { .. });
                if finished && !(closing && received == stream.written()) {
                    return Err("an ack of a close-write never sent");
                }
                let mut advanced = false;
                if received > stream.acked {
                    stream.unacked.drain(..(received - stream.acked) as usize);
                    stream.acked = received;
                    stream.sent = stream.sent.max(received);
                    advanced = true;
                }
                if limit > stream.peer_limit {
                    stream.peer_limit = limit;
                    advanced = true;
                }
                if finished && stream.send != SendState::FinAcked {
                    stream.send = SendState::FinAcked;
                    advanced = true;
                }
                if advanced {
                    stream.last_progress = now;
                    stream.backoff = 0;
                    stream.retransmit_at = None;
                    if stream.send == (SendState::Writing { blocked: true })
                        && stream.unacked.len() < send_buffer
                    {
                        stream.send = SendState::Writing { blocked: false };
                        self.events.push_back(StreamEvent::Writable(id));
                    }
                }
                if stream.waiting_for_peer() && stream.retransmit_at.is_none() {
                    stream.retransmit_at = Some(now + retransmit_after);
                }
            }
        }
        Ok(())
    }

    /// Answers a frame for a stream this side does not have.
    fn unknown(&mut self, now: Instant, id: StreamId, frame: Frame) {
        if let Some(&(_, gone)) = self.gone.get(&id) {
            match (gone, &frame) {
                (Gone::Closed { received }, Frame::Data { .. } | Frame::CloseWrite { .. }) => {
                    self.reply(Frame::Ack {
                        stream: wire(id),
                        received,
                        limit: received,
                        finished: true,
                    });
                }
                (Gone::Refused(reason), Frame::Open { .. }) => self.reply(Frame::OpenFailed {
                    stream: wire(id),
                    reason,
                }),
                (Gone::Reset(reason), f) if !matches!(f, Frame::Reset { .. }) => {
                    self.reply(Frame::Reset {
                        stream: wire(id),
                        reason,
                    })
                }
                _ => {}
            }
            return;
        }
        match frame {
            Frame::Open {
                window,
                destination,
                ..
            } => {
                if self.streams.len() >= self.config.max_streams {
                    self.reply(Frame::OpenFailed {
                        stream: wire(id),
                        reason: OpenFailure::General,
                    });
                    return;
                }
                let deadline = now + self.config.open_timeout;
                let stream = Stream::new(
                    Phase::Incoming { deadline },
                    now,
                    self.config.receive_window,
                    u64::from(window),
                );
                self.streams.insert(id, stream);
                self.events
                    .push_back(StreamEvent::Incoming { id, destination });
            }
            Frame::Reset { .. } | Frame::OpenFailed { .. } => {
                self.stats.unknown_stream_frames += 1;
            }
            _ => {
                self.stats.unknown_stream_frames += 1;
                self.reply(Frame::Reset {
                    stream: wire(id),
                    reason: ResetReason::UnknownStream,
                });
            }
        }
    }

    /// Ends a stream badly: tells the peer, and the application if `error` is given.
    fn end(&mut self, now: Instant, id: StreamId, reason: ResetReason, error: Option<StreamError>) {
        if self.streams.remove(&id).is_none() {
            return;
        }
        self.reply(Frame::Reset {
            stream: wire(id),
            reason,
        });
        self.forget(now, id, Gone::Reset(reason));
        if let Some(error) = error {
            self.events.push_back(StreamEvent::Failed { id, error });
        }
    }

    /// Tells of a finished peer, and closes a stream that is done both ways.
    fn settle(&mut self, now: Instant, id: StreamId) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if let RecvState::SizeKnown { end } = stream.recv
            && end == stream.received
        {
            stream.recv = RecvState::AllReceived { end };
            self.events.push_back(StreamEvent::PeerFinished(id));
        }
        if let RecvState::AllReceived { .. } = stream.recv
            && stream.ready.is_empty()
            && stream.send == SendState::FinAcked
            && !stream.ack_due
        {
            let received = stream.received;
            self.streams.remove(&id);
            self.forget(now, id, Gone::Closed { received });
            self.events.push_back(StreamEvent::Closed(id));
        }
    }

    /// Remembers a stream that is gone for long enough to answer the peer's late frames.
    fn forget(&mut self, now: Instant, id: StreamId, gone: Gone) {
        let until = now + self.config.open_timeout + self.config.idle_timeout;
        self.gone.insert(id, (until, gone));
        if self.gone.len() > 4 * self.config.max_streams
            && let Some(oldest) = self
                .gone
                .iter()
                .min_by_key(|(_, (until, _))| *until)
                .map(|(id, _)| *id)
        {
            self.gone.remove(&oldest);
        }
    }

    fn reply(&mut self, frame: Frame) {
        if self.replies.len() >= MAX_QUEUED_REPLIES {
            self.stats.dropped_replies += 1;
        } else {
            self.replies.push_back(frame);
        }
    }
}

/// How this side names a stream on the wire.
fn wire(id: StreamId) -> WireId {
    WireId {
        number: id.number,
        from_opener: id.opened_here,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn default_config_is_valid() {
        StreamConfig::default().validate().unwrap();
    }

    #[test]
    fn a_config_that_cannot_work_is_refused() {
        let idle_below_retransmit = StreamConfig {
            idle_timeout: Duration::from_secs(1),
            ..StreamConfig::default()
        };
        assert!(Mux::new(idle_below_retransmit).is_err());
    }

    /// A stream opened here to a peer played by hand; the peer has accepted it.
    fn opened(now: Instant) -> (Mux, StreamId) {
        let mut mux = Mux::new(StreamConfig::default()).unwrap();
        let destination = Destination::new(Host::Name("example.org".into()), 443).unwrap();
        let id = mux.open(now, destination).unwrap();
        mux.poll_transmit(now).unwrap();
        mux.handle_message(
            now,
            &encode_message(&[Frame::OpenOk {
                stream: from_peer(id),
                window: 1 << 16,
            }]),
        );
        assert_eq!(mux.poll_event(), Some(StreamEvent::Opened(id)));
        (mux, id)
    }

    /// How the peer names a stream this side opened.
    fn from_peer(id: StreamId) -> WireId {
        WireId {
            number: id.number(),
            from_opener: false,
        }
    }

    fn frames(message: Option<Vec<u8>>) -> Vec<Frame> {
        message.map_or_else(Vec::new, |m| decode_message(&m).unwrap())
    }

    #[test]
    fn a_close_write_acknowledged_late_is_not_sent_again() {
        // With three flags (requested, sent, acked), the ack of a close-write that came after
        // the retransmission timer had cleared `sent` left "acked but not sent", and the
        // close-write went out once more.
        let t0 = Instant::now();
        let (mut mux, id) = opened(t0);
        mux.write(t0, id, b"hi").unwrap();
        mux.close_write(t0, id).unwrap();
        let sent = frames(mux.poll_transmit(t0));
        assert!(
            sent.iter()
                .any(|f| matches!(f, Frame::CloseWrite { end: 2, .. }))
        );
        let late = t0 + StreamConfig::default().retransmit_after;
        mux.handle_timeout(late);
        mux.handle_message(
            late,
            &encode_message(&[Frame::Ack {
                stream: from_peer(id),
                received: 2,
                limit: 1 << 16,
                finished: true,
            }]),
        );
        let again = frames(mux.poll_transmit(late));
        assert!(
            again
                .iter()
                .all(|f| !matches!(f, Frame::CloseWrite { .. } | Frame::Data { .. })),
            "{again:?}"
        );
        // the stream stays for the peer's bytes, and waits for nothing from it
        assert_eq!(mux.stream_count(), 1);
        assert_eq!(mux.streams[&id].send, SendState::FinAcked);
        assert!(!mux.streams[&id].waiting_for_peer());
    }

    #[test]
    fn no_writable_after_the_writing_side_is_closed() {
        // A write cut short owes a Writable; closing the writing side used to leave it owed,
        // so a Writable came for a stream that refuses writes.
        let t0 = Instant::now();
        let (mut mux, id) = opened(t0);
        let buffer = StreamConfig::default().send_buffer;
        let taken = mux.write(t0, id, &vec![7; buffer + 1]).unwrap();
        assert_eq!(taken, buffer);
        mux.close_write(t0, id).unwrap();
        while mux.poll_transmit(t0).is_some() {}
        mux.handle_message(
            t0,
            &encode_message(&[Frame::Ack {
                stream: from_peer(id),
                received: 1 << 16,
                limit: 1 << 17,
                finished: false,
            }]),
        );
        assert!(
            std::iter::from_fn(|| mux.poll_event()).all(|e| !matches!(e, StreamEvent::Writable(_)))
        );
        assert!(matches!(
            mux.write(t0, id, b"more"),
            Err(StreamError::WrongState { .. })
        ));
    }

    #[test]
    fn a_writable_is_owed_only_after_a_short_write() {
        let t0 = Instant::now();
        let (mut mux, id) = opened(t0);
        let buffer = StreamConfig::default().send_buffer;
        mux.write(t0, id, &vec![7; buffer + 1]).unwrap();
        assert_eq!(mux.streams[&id].send, SendState::Writing { blocked: true });
        while mux.poll_transmit(t0).is_some() {}
        mux.handle_message(
            t0,
            &encode_message(&[Frame::Ack {
                stream: from_peer(id),
                received: 1 << 16,
                limit: 1 << 17,
                finished: false,
            }]),
        );
        assert!(std::iter::from_fn(|| mux.poll_event()).any(|e| e == StreamEvent::Writable(id)));
        assert_eq!(mux.streams[&id].send, SendState::Writing { blocked: false });
    }
}
