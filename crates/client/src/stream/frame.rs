//! The stream wire format, version 1: frames, and messages of frames (see the table in the
//! documentation of [`super`]). Pure codecs: decoding arbitrary bytes never panics.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The version byte that starts every message of this format.
pub const VERSION: u8 = 1;

/// The most data one frame carries (its length field is 16 bits).
pub(super) const MAX_FRAME_DATA: usize = u16::MAX as usize;
/// Bytes of a data frame before its bytes.
pub(super) const DATA_HEADER: usize = 1 + 4 + 8 + 2;
/// The top bit of the stream field: the frame comes from the stream's opener.
pub(super) const FROM_OPENER: u32 = 1 << 31;

/// Where the peer should connect a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// An address.
    Ip(IpAddr),
    /// A name the exit resolves: 1 to 255 bytes of printable ASCII.
    Name(String),
}

/// A host and port to open a stream to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    host: Host,
    port: u16,
}

impl Destination {
    /// A destination, if the host can be sent (a name must be 1 to 255 printable ASCII bytes).
    pub fn new(host: Host, port: u16) -> Result<Self, FrameError> {
        if let Host::Name(name) = &host
            && !valid_name(name.as_bytes())
        {
            return Err(FrameError::Invalid("host name"));
        }
        Ok(Destination { host, port })
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= 255 && name.iter().all(|b| b.is_ascii_graphic())
}

/// Why an open failed; each maps onto a SOCKS5 reply code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpenFailure {
    /// The destination refused the connection (SOCKS5 `0x05`).
    Refused,
    /// The destination could not be reached (SOCKS5 `0x04`, host unreachable).
    Unreachable,
    /// The exit's policy does not allow this destination (SOCKS5 `0x02`).
    NotAllowed,
    /// No answer in time, from the destination or from the peer (SOCKS5 `0x06`).
    TtlExpired,
    /// Anything else, including a peer with too many streams (SOCKS5 `0x01`).
    General,
}

impl OpenFailure {
    /// The SOCKS5 reply code (RFC 1928 §6) that says this.
    pub fn socks5_reply(self) -> u8 {
        match self {
            OpenFailure::General => 0x01,
            OpenFailure::NotAllowed => 0x02,
            OpenFailure::Unreachable => 0x04,
            OpenFailure::Refused => 0x05,
            OpenFailure::TtlExpired => 0x06,
        }
    }

    fn code(self) -> u8 {
        match self {
            OpenFailure::Refused => 1,
            OpenFailure::Unreachable => 2,
            OpenFailure::NotAllowed => 3,
            OpenFailure::TtlExpired => 4,
            OpenFailure::General => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => OpenFailure::Refused,
            2 => OpenFailure::Unreachable,
            3 => OpenFailure::NotAllowed,
            4 => OpenFailure::TtlExpired,
            5 => OpenFailure::General,
            _ => return None,
        })
    }
}

impl fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenFailure::Refused => "connection refused",
            OpenFailure::Unreachable => "destination unreachable",
            OpenFailure::NotAllowed => "not allowed by the exit's policy",
            OpenFailure::TtlExpired => "timed out",
            OpenFailure::General => "general failure",
        })
    }
}

/// Why a stream was reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResetReason {
    /// Its application gave up on it (or its TCP connection broke).
    Application,
    /// It made no progress for the idle timeout.
    TimedOut,
    /// The side sending the reset has no such stream (closed, or never opened).
    UnknownStream,
    /// The other side broke the protocol (sent beyond its credit, changed its end).
    ProtocolViolation,
}

impl ResetReason {
    fn code(self) -> u8 {
        match self {
            ResetReason::Application => 1,
            ResetReason::TimedOut => 2,
            ResetReason::UnknownStream => 3,
            ResetReason::ProtocolViolation => 4,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => ResetReason::Application,
            2 => ResetReason::TimedOut,
            3 => ResetReason::UnknownStream,
            4 => ResetReason::ProtocolViolation,
            _ => return None,
        })
    }
}

/// A stream as it appears on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WireId {
    /// The opener's number for it (below 2^31; higher bits are dropped on encoding).
    pub number: u32,
    /// The frame comes from the stream's opener.
    pub from_opener: bool,
}

/// One frame of the wire format (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Asks for a new stream, granting `window` bytes of credit.
    Open {
        /// The stream (from its opener).
        stream: WireId,
        /// Credit granted to the acceptor.
        window: u32,
        /// Where to connect it.
        destination: Destination,
    },
    /// Accepts a stream, granting `window` bytes of credit.
    OpenOk {
        /// The stream (to its opener).
        stream: WireId,
        /// Credit granted to the opener.
        window: u32,
    },
    /// Refuses a stream.
    OpenFailed {
        /// The stream (to its opener).
        stream: WireId,
        /// Why.
        reason: OpenFailure,
    },
    /// Bytes of a stream starting at `offset`; none is a probe asking for an ack.
    Data {
        /// The stream.
        stream: WireId,
        /// The offset of the first byte.
        offset: u64,
        /// The bytes (at most 65,535).
        bytes: Vec<u8>,
    },
    /// How far the sender of this frame has received, and how far it may be sent to.
    Ack {
        /// The stream.
        stream: WireId,
        /// Bytes received in order.
        received: u64,
        /// The other side may send bytes below this offset.
        limit: u64,
        /// The close-write at `received` arrived.
        finished: bool,
    },
    /// The sender of this frame writes nothing past `end`.
    CloseWrite {
        /// The stream.
        stream: WireId,
        /// The offset after its last byte.
        end: u64,
    },
    /// The stream is over, badly.
    Reset {
        /// The stream.
        stream: WireId,
        /// Why.
        reason: ResetReason,
    },
}

/// Why a message did not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The message has no frames.
    #[error("an empty stream message")]
    Empty,
    /// Another version of the format.
    #[error("stream format version {0}, this side speaks {VERSION}")]
    Version(u8),
    /// A frame is cut short.
    #[error("a stream frame is cut short")]
    Truncated,
    /// An unknown frame type.
    #[error("unknown stream frame type {0}")]
    UnknownType(u8),
    /// A field holds a value it may not.
    #[error("a stream frame has a bad {0}")]
    Invalid(&'static str),
}

impl Frame {
    pub(super) fn stream(&self) -> WireId {
        match self {
            Frame::Open { stream, .. }
            | Frame::OpenOk { stream, .. }
            | Frame::OpenFailed { stream, .. }
            | Frame::Data { stream, .. }
            | Frame::Ack { stream, .. }
            | Frame::CloseWrite { stream, .. }
            | Frame::Reset { stream, .. } => *stream,
        }
    }

    /// Appends the frame's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let id = |out: &mut Vec<u8>, kind: u8, s: &WireId| {
            out.push(kind);
            let bit = if s.from_opener { FROM_OPENER } else { 0 };
            out.extend_from_slice(&((s.number & !FROM_OPENER) | bit).to_be_bytes());
        };
        match self {
            Frame::Open {
                stream,
                window,
                destination,
            } => {
                id(out, 1, stream);
                out.extend_from_slice(&window.to_be_bytes());
                match &destination.host {
                    Host::Ip(IpAddr::V4(ip)) => {
                        out.push(1);
                        out.extend_from_slice(&ip.octets());
                    }
                    Host::Ip(IpAddr::V6(ip)) => {
                        out.push(2);
                        out.extend_from_slice(&ip.octets());
                    }
                    Host::Name(name) => {
                        out.push(3);
                        // `Destination::new` keeps names to 1..=255 bytes.
                        out.push(name.len().min(255) as u8);
                        out.extend_from_slice(&name.as_bytes()[..name.len().min(255)]);
                    }
                }
                out.extend_from_slice(&destination.port.to_be_bytes());
            }
            Frame::OpenOk { stream, window } => {
                id(out, 2, stream);
                out.extend_from_slice(&window.to_be_bytes());
            }
            Frame::OpenFailed { stream, reason } => {
                id(out, 3, stream);
                out.push(reason.code());
            }
            Frame::Data {
                stream,
                offset,
                bytes,
            } => {
                id(out, 4, stream);
                let len = bytes.len().min(MAX_FRAME_DATA);
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(&(len as u16).to_be_bytes());
                out.extend_from_slice(&bytes[..len]);
            }
            Frame::Ack {
                stream,
                received,
                limit,
                finished,
            } => {
                id(out, 5, stream);
                out.extend_from_slice(&received.to_be_bytes());
                out.extend_from_slice(&limit.to_be_bytes());
                out.push(u8::from(*finished));
            }
            Frame::CloseWrite { stream, end } => {
                id(out, 6, stream);
                out.extend_from_slice(&end.to_be_bytes());
            }
            Frame::Reset { stream, reason } => {
                id(out, 7, stream);
                out.push(reason.code());
            }
        }
    }

    /// The length of its encoding.
    pub fn encoded_len(&self) -> usize {
        5 + match self {
            Frame::Open { destination, .. } => {
                4 + 1
                    + 2
                    + match &destination.host {
                        Host::Ip(IpAddr::V4(_)) => 4,
                        Host::Ip(IpAddr::V6(_)) => 16,
                        Host::Name(name) => 1 + name.len().min(255),
                    }
            }
            Frame::OpenOk { .. } => 4,
            Frame::OpenFailed { .. } | Frame::Reset { .. } => 1,
            Frame::Data { bytes, .. } => 8 + 2 + bytes.len().min(MAX_FRAME_DATA),
            Frame::Ack { .. } => 17,
            Frame::CloseWrite { .. } => 8,
        }
    }
}

/// Encodes frames as one message.
pub fn encode_message(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + frames.iter().map(Frame::encoded_len).sum::<usize>());
    out.push(VERSION);
    for frame in frames {
        frame.encode(&mut out);
    }
    out
}

/// Decodes a message into its frames, refusing it whole if any frame is wrong.
pub fn decode_message(bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
    let (&version, mut rest) = bytes.split_first().ok_or(FrameError::Empty)?;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    if rest.is_empty() {
        return Err(FrameError::Empty);
    }
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let mut reader = Reader(rest);
        frames.push(decode_frame(&mut reader)?);
        rest = reader.0;
    }
    Ok(frames)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

fn decode_frame(r: &mut Reader<'_>) -> Result<Frame, FrameError> {
    let kind = r.u8()?;
    let raw = r.u32()?;
    let stream = WireId {
        number: raw & !FROM_OPENER,
        from_opener: raw & FROM_OPENER != 0,
    };
    let frame = match kind {
        1 => {
            let window = r.u32()?;
            let host = match r.u8()? {
                1 => Host::Ip(IpAddr::V4(Ipv4Addr::from(r.array::<4>()?))),
                2 => Host::Ip(IpAddr::V6(Ipv6Addr::from(r.array::<16>()?))),
                3 => {
                    let len = r.u8()?;
                    let name = r.take(usize::from(len))?;
                    if !valid_name(name) {
                        return Err(FrameError::Invalid("host name"));
                    }
                    Host::Name(String::from_utf8_lossy(name).into_owned())
                }
                _ => return Err(FrameError::Invalid("host kind")),
            };
            let port = r.u16()?;
            if !stream.from_opener {
                return Err(FrameError::Invalid("direction of an open"));
            }
            Frame::Open {
                stream,
                window,
                destination: Destination { host, port },
            }
        }
        2 => Frame::OpenOk {
            stream,
            window: r.u32()?,
        },
        3 => Frame::OpenFailed {
            stream,
            reason: OpenFailure::from_code(r.u8()?).ok_or(FrameError::Invalid("open reason"))?,
        },
        4 => {
            let offset = r.u64()?;
            let len = r.u16()?;
            let bytes = r.take(usize::from(len))?.to_vec();
            if offset.checked_add(u64::from(len)).is_none() {
                return Err(FrameError::Invalid("data offset"));
            }
            Frame::Data {
                stream,
                offset,
                bytes,
            }
        }
        5 => {
            let received = r.u64()?;
            let limit = r.u64()?;
            let flags = r.u8()?;
            if flags > 1 {
                return Err(FrameError::Invalid("ack flags"));
            }
            if limit < received {
                return Err(FrameError::Invalid("ack limit"));
            }
            Frame::Ack {
                stream,
                received,
                limit,
                finished: flags == 1,
            }
        }
        6 => Frame::CloseWrite {
            stream,
            end: r.u64()?,
        },
        7 => Frame::Reset {
            stream,
            reason: ResetReason::from_code(r.u8()?).ok_or(FrameError::Invalid("reset reason"))?,
        },
        other => return Err(FrameError::UnknownType(other)),
    };
    if matches!(frame, Frame::OpenOk { .. } | Frame::OpenFailed { .. }) && stream.from_opener {
        return Err(FrameError::Invalid("direction of an open answer"));
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn frames_round_trip() {
        let s = WireId {
            number: 7,
            from_opener: true,
        };
        let r = WireId {
            number: 7,
            from_opener: false,
        };
        let frames = vec![
            Frame::Open {
                stream: s,
                window: 9,
                destination: Destination::new(Host::Name("a.example".into()), 80).unwrap(),
            },
            Frame::OpenOk {
                stream: r,
                window: 3,
            },
            Frame::Data {
                stream: s,
                offset: 5,
                bytes: vec![1, 2, 3],
            },
            Frame::Ack {
                stream: r,
                received: 8,
                limit: 10,
                finished: true,
            },
        ];
        let bytes = encode_message(&frames);
        assert_eq!(
            bytes.len(),
            1 + frames.iter().map(Frame::encoded_len).sum::<usize>()
        );
        assert_eq!(decode_message(&bytes).unwrap(), frames);
    }

    #[test]
    fn strict_decoding() {
        assert_eq!(decode_message(&[]), Err(FrameError::Empty));
        assert_eq!(decode_message(&[2, 7]), Err(FrameError::Version(2)));
        assert_eq!(
            decode_message(&[1, 9, 0, 0, 0, 0]),
            Err(FrameError::UnknownType(9))
        );
        // An ack whose limit is below what it received.
        let mut ack = vec![1, 5, 0, 0, 0, 1];
        ack.extend_from_slice(&5u64.to_be_bytes());
        ack.extend_from_slice(&4u64.to_be_bytes());
        ack.push(0);
        assert_eq!(decode_message(&ack), Err(FrameError::Invalid("ack limit")));
        // An open sent by the acceptor.
        assert!(decode_message(&[1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 2, 3, 4, 0, 80]).is_err());
        assert!(Destination::new(Host::Name(String::new()), 1).is_err());
        assert!(Destination::new(Host::Name("a b".into()), 1).is_err());
    }
}
