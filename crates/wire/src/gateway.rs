//! The client↔gateway protocol (the access link). It is spoken inside a Noise session over
//! WebSocket: every WebSocket binary message is one Noise transport message, and its plaintext
//! is one **frame**.
//!
//! An observer of the link sees the length and time of every message. So on a *shaped* session
//! (the default) every frame in either direction is exactly [`FRAME_LEN`] bytes, the client
//! sends one only in the slots of its Poisson stream, and the gateway sends one on a schedule
//! fixed at the session's start, whatever arrives: the link carries nothing beyond "connected".
//! An *insecure push* session (the client's choice) sends frames unpadded and at once instead.
//!
//! ```text
//! client → gateway: items, then 0x00 and zeros to the frame's end (shaped) or nothing (push)
//!   0x01 Hello     version (1) ‖ schedule (1: constant, 2: Poisson, 3: insecure push)
//!                  ‖ interval (u32 µs)                            (the first frame, alone)
//!   0x02 Forward   first hop (32) ‖ length (u16) ‖ Sphinx packet   (at most one per frame)
//!   0x03 Received  seq (u64): the client holds every gateway frame up to this one
//!   0x04 Spend     total (u16) ‖ offset (u16) ‖ length (u16) ‖ bytes: a stretch of a
//!                  bandwidth ticket, in order; the ticket is whole when offset + length is
//!                  total (it rides in a cover slot, in place of a packet: see [`SpendChunk`])
//!
//! gateway → client: seq (u64, from 0, one more each frame) ‖ a stretch of the record stream
//!   The records follow each other across frames (one may start in a frame and end in a later
//!   one); where a record would start, 0x00 ends the frame's records (the rest is padding).
//!   0x81 Welcome   allowance (u64 bytes, u64::MAX: unlimited) ‖ deliveries waiting (u32)
//!                  ‖ schedule (1) ‖ interval (u32 µs), as the gateway grants it
//!   0x82 Deliver   id (u64) ‖ kind (1 data, 2 sealed reply, 3 ack) ‖ SURB id (16, sealed only)
//!                  ‖ length (u16) ‖ payload
//!   0x83 Refused   reason (u8) ‖ count (u32) ‖ length (u16) ‖ detail (UTF-8)
//!   0x84 Credit    balance (u64 bytes) ‖ bytes per ticket (u64): the session's credit, sent
//!                  after the welcome when the gateway demands tickets and after each ticket
//!                  it accepts
//! ```
//!
//! Integers are big-endian. Every decoder refuses what it does not know with a typed error and
//! never panics. [`DownlinkWriter`] cuts the gateway's record stream into frames and tells which
//! deliveries a confirmation covers; [`DownlinkReader`] puts the records back together.

use std::collections::VecDeque;
use std::time::Duration;

use umbra_sphinx::{NodeAddress, Packet, PacketSize, SurbId};

use crate::err::GatewayMessageError;

/// The length of every frame's plaintext on a shaped session, both ways: one regular Sphinx
/// packet with its first hop, a confirmation, and a little room.
pub const FRAME_LEN: usize = 2464;
/// The protocol's version, in [`Hello`].
pub const VERSION: u8 = 3;
/// The longest record payload: a delivery of the largest packet size's payload.
pub const MAX_PAYLOAD: usize = PacketSize::Extended32.payload_len();
/// The longest refusal detail.
pub const MAX_DETAIL: usize = 512;
/// The longest ticket a client may spend (in [`SpendChunk`]s): room for the longest ticket
/// `umbra-tickets` encodes (64 signatures of 4096-bit keys, 33,098 bytes).
pub const MAX_SPEND_LEN: usize = 40 * 1024;
/// The most ticket bytes one frame carries: a shaped frame's room beside a confirmation.
pub const MAX_SPEND_CHUNK: usize = FRAME_LEN - SPEND_HEAD - RECEIVED_LEN;
/// A spend item's bytes before its stretch of ticket: tag, total, offset, length.
const SPEND_HEAD: usize = 1 + 2 + 2 + 2;
/// A confirmation item's bytes.
const RECEIVED_LEN: usize = 1 + 8;

const PAD: u8 = 0x00;
const HELLO: u8 = 0x01;
const FORWARD: u8 = 0x02;
const RECEIVED: u8 = 0x03;
const SPEND: u8 = 0x04;
const WELCOME: u8 = 0x81;
const DELIVER: u8 = 0x82;
const REFUSED: u8 = 0x83;
const CREDIT: u8 = 0x84;
/// Bytes of a gateway frame before its records: the sequence number.
const SEQ_LEN: usize = 8;

/// When the gateway sends a client its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// One frame every `interval`, exactly.
    Constant {
        /// The time between frames.
        interval: Duration,
    },
    /// Frames in a Poisson stream: exponential gaps of mean `mean`.
    Poisson {
        /// The mean time between frames.
        mean: Duration,
    },
    /// Insecure: each record at once in a frame of its own, unpadded. An observer of the link
    /// sees when, and how much, the client receives.
    InsecurePush,
}

impl Schedule {
    /// The mean time between frames (none for push).
    pub fn interval(self) -> Option<Duration> {
        match self {
            Schedule::Constant { interval } => Some(interval),
            Schedule::Poisson { mean } => Some(mean),
            Schedule::InsecurePush => None,
        }
    }

    /// Whether frames are padded to [`FRAME_LEN`] and sent on a schedule.
    pub fn is_shaped(self) -> bool {
        self != Schedule::InsecurePush
    }

    fn encode(self, out: &mut Vec<u8>) {
        let (kind, interval) = match self {
            Schedule::Constant { interval } => (1, interval),
            Schedule::Poisson { mean } => (2, mean),
            Schedule::InsecurePush => (3, Duration::ZERO),
        };
        out.push(kind);
        let micros = u32::try_from(interval.as_micros()).unwrap_or(u32::MAX);
        out.extend_from_slice(&micros.to_be_bytes());
    }

    fn decode(bytes: &[u8; 5]) -> Result<Schedule, GatewayMessageError> {
        let [kind, micros @ ..] = *bytes;
        let interval = Duration::from_micros(u64::from(u32::from_be_bytes(micros)));
        match kind {
            1 if !interval.is_zero() => Ok(Schedule::Constant { interval }),
            2 if !interval.is_zero() => Ok(Schedule::Poisson { mean: interval }),
            3 => Ok(Schedule::InsecurePush),
            1 | 2 => Err(GatewayMessageError::BadSchedule),
            byte => Err(GatewayMessageError::UnknownSchedule { byte }),
        }
    }
}

/// The client's first frame: how it wants to receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The protocol version the client speaks.
    pub version: u8,
    /// When the gateway is to send it frames.
    pub schedule: Schedule,
}

/// A frame from the client: at most one of each item.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientFrame {
    /// The session's opening (the first frame only).
    pub hello: Option<Hello>,
    /// A packet to send into the mixnet, unchanged, to `first_hop` (a first-layer node).
    pub forward: Option<(NodeAddress, Packet)>,
    /// The client holds every gateway frame up to this sequence number: the gateway may forget
    /// the deliveries they carried (and acknowledge them to their senders).
    pub received: Option<u64>,
    /// A stretch of a bandwidth ticket the client spends (never beside a packet on a shaped
    /// session: it takes a slot's room).
    pub spend: Option<SpendChunk>,
}

/// A stretch of a bandwidth ticket: the client cuts the ticket into stretches of at most
/// [`MAX_SPEND_CHUNK`] bytes, sent in order in slots of its cover stream, so spending shows
/// on the link as nothing but a cover packet (same size, same schedule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpendChunk {
    /// The whole ticket's length.
    pub total: u16,
    /// Where this stretch starts in the ticket.
    pub offset: u16,
    /// The stretch.
    pub bytes: Vec<u8>,
}

impl SpendChunk {
    /// A ticket cut into stretches, in the order they go (none if it is empty or longer than
    /// [`MAX_SPEND_LEN`]).
    pub fn split(ticket: &[u8]) -> Vec<SpendChunk> {
        let Ok(total) = u16::try_from(ticket.len()) else {
            return Vec::new();
        };
        if ticket.len() > MAX_SPEND_LEN {
            return Vec::new();
        }
        ticket
            .chunks(MAX_SPEND_CHUNK)
            .scan(0u16, |offset, bytes| {
                let chunk = SpendChunk {
                    total,
                    offset: *offset,
                    bytes: bytes.to_vec(),
                };
                *offset += bytes.len() as u16;
                Some(chunk)
            })
            .collect()
    }

    /// Whether this stretch ends the ticket.
    pub fn is_last(&self) -> bool {
        usize::from(self.offset) + self.bytes.len() == usize::from(self.total)
    }
}

/// Puts a ticket back together from its [`SpendChunk`]s, one ticket at a time, refusing
/// stretches out of order or beyond the ticket's announced length (its memory is bounded by
/// [`MAX_SPEND_LEN`]).
#[derive(Debug, Default)]
pub struct SpendAssembler {
    partial: Option<(u16, Vec<u8>)>,
}

impl SpendAssembler {
    /// Takes the next stretch: the whole ticket once its last stretch is in.
    pub fn push(&mut self, chunk: SpendChunk) -> Result<Option<Vec<u8>>, GatewayMessageError> {
        let (total, mut bytes) = match self.partial.take() {
            None if chunk.offset == 0 => (chunk.total, Vec::new()),
            Some((total, bytes))
                if total == chunk.total && usize::from(chunk.offset) == bytes.len() =>
            {
                (total, bytes)
            }
            _ => return Err(GatewayMessageError::SpendOutOfOrder),
        };
        if usize::from(total) > MAX_SPEND_LEN
            || usize::from(chunk.offset) + chunk.bytes.len() > usize::from(total)
        {
            return Err(GatewayMessageError::TooLong {
                len: usize::from(chunk.offset) + chunk.bytes.len(),
            });
        }
        bytes.extend_from_slice(&chunk.bytes);
        if bytes.len() == usize::from(total) {
            Ok(Some(bytes))
        } else {
            self.partial = Some((total, bytes));
            Ok(None)
        }
    }

    /// Drops a ticket half received.
    pub fn clear(&mut self) {
        self.partial = None;
    }
}

impl ClientFrame {
    /// The frame's bytes: exactly [`FRAME_LEN`] if `padded` (what it carries must fit: one
    /// regular packet at most), else just its items.
    pub fn encode(&self, padded: bool) -> Result<Vec<u8>, GatewayMessageError> {
        let mut out = Vec::with_capacity(FRAME_LEN);
        if let Some(hello) = self.hello {
            out.push(HELLO);
            out.push(hello.version);
            hello.schedule.encode(&mut out);
        }
        if let Some((first_hop, packet)) = &self.forward {
            out.push(FORWARD);
            out.extend_from_slice(first_hop.as_bytes());
            let bytes = packet.as_bytes();
            out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        if let Some(seq) = self.received {
            out.push(RECEIVED);
            out.extend_from_slice(&seq.to_be_bytes());
        }
        if let Some(chunk) = &self.spend {
            let len =
                u16::try_from(chunk.bytes.len()).map_err(|_| GatewayMessageError::TooLong {
                    len: chunk.bytes.len(),
                })?;
            out.push(SPEND);
            out.extend_from_slice(&chunk.total.to_be_bytes());
            out.extend_from_slice(&chunk.offset.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&chunk.bytes);
        }
        if padded {
            if out.len() > FRAME_LEN {
                return Err(GatewayMessageError::TooLong { len: out.len() });
            }
            out.resize(FRAME_LEN, PAD);
        }
        Ok(out)
    }

    /// Reads a frame (padded or not).
    pub fn decode(bytes: &[u8]) -> Result<ClientFrame, GatewayMessageError> {
        let mut frame = ClientFrame::default();
        let mut rest = bytes;
        while let Some((&tag, body)) = rest.split_first() {
            rest = match tag {
                PAD => break,
                HELLO => {
                    let (fields, rest) = body
                        .split_first_chunk::<6>()
                        .ok_or(GatewayMessageError::Truncated)?;
                    let [version, schedule @ ..] = *fields;
                    let hello = Hello {
                        version,
                        schedule: Schedule::decode(&schedule)?,
                    };
                    if frame.hello.replace(hello).is_some() {
                        return Err(GatewayMessageError::Repeated { tag });
                    }
                    rest
                }
                FORWARD => {
                    let (first_hop, body) = body
                        .split_first_chunk::<32>()
                        .ok_or(GatewayMessageError::Truncated)?;
                    let (len, body) = body
                        .split_first_chunk::<2>()
                        .ok_or(GatewayMessageError::Truncated)?;
                    let len = usize::from(u16::from_be_bytes(*len));
                    let (packet, rest) = body
                        .split_at_checked(len)
                        .ok_or(GatewayMessageError::Truncated)?;
                    let packet = Packet::from_bytes(packet.to_vec())
                        .map_err(GatewayMessageError::BadPacket)?;
                    if frame
                        .forward
                        .replace((NodeAddress::new(*first_hop), packet))
                        .is_some()
                    {
                        return Err(GatewayMessageError::Repeated { tag });
                    }
                    rest
                }
                RECEIVED => {
                    let (seq, rest) = body
                        .split_first_chunk::<8>()
                        .ok_or(GatewayMessageError::Truncated)?;
                    if frame.received.replace(u64::from_be_bytes(*seq)).is_some() {
                        return Err(GatewayMessageError::Repeated { tag });
                    }
                    rest
                }
                SPEND => {
                    let (head, body) = body
                        .split_first_chunk::<6>()
                        .ok_or(GatewayMessageError::Truncated)?;
                    let [t0, t1, o0, o1, l0, l1] = *head;
                    let len = usize::from(u16::from_be_bytes([l0, l1]));
                    let (bytes, rest) = body
                        .split_at_checked(len)
                        .ok_or(GatewayMessageError::Truncated)?;
                    let chunk = SpendChunk {
                        total: u16::from_be_bytes([t0, t1]),
                        offset: u16::from_be_bytes([o0, o1]),
                        bytes: bytes.to_vec(),
                    };
                    if frame.spend.replace(chunk).is_some() {
                        return Err(GatewayMessageError::Repeated { tag });
                    }
                    rest
                }
                tag => return Err(GatewayMessageError::UnknownType { tag }),
            };
        }
        Ok(frame)
    }
}

/// What a gateway tells a client, in its frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The session is up.
    Welcome {
        /// Bytes the client may still send (`u64::MAX`: no limit).
        allowance: u64,
        /// Deliveries stored while the client was away, about to follow.
        waiting: u32,
        /// The schedule the gateway keeps for this session.
        schedule: Schedule,
    },
    /// Something for the client.
    Deliver(Delivery),
    /// Forwarded packets were refused.
    Refused {
        /// Why.
        reason: Refusal,
        /// How many, since the last refusal told.
        count: u32,
        /// In words.
        detail: String,
    },
    /// The session's bandwidth credit (when the gateway demands tickets).
    Credit {
        /// Bytes of packets the client may still send.
        balance: u64,
        /// Bytes one ticket buys.
        ticket_bytes: u64,
    },
}

/// A delivery: what arrived for the client, numbered by the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Its number.
    pub id: u64,
    /// What it is.
    pub kind: DeliveryKind,
    /// Its bytes.
    pub payload: Vec<u8>,
}

/// What a delivery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryKind {
    /// Client data from a packet (its SURB-ACK already split off).
    Data,
    /// A reply through one of the client's SURBs, still sealed: only the client can open it.
    Sealed {
        /// The SURB id the reply came with.
        surb_id: SurbId,
    },
    /// The payload of an ack packet.
    Ack,
}

/// Why a gateway refused a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// The client has used up its bandwidth allowance.
    AllowanceExhausted,
    /// The first hop is not a first-layer node the gateway knows.
    NotFirstLayer,
    /// The gateway is overloaded.
    Overloaded,
    /// The gateway demands bandwidth tickets and the client's credit is used up.
    NoCredit,
    /// A ticket the client spent was not accepted (nothing was credited): the ticket is no
    /// good (forged, expired, spent before) and should be thrown away.
    TicketRefused,
    /// A ticket the client spent was not checked (too many at once, storage busy, tickets
    /// not taken here): nothing was credited, and the ticket is still good.
    TicketDeferred,
}

impl Refusal {
    /// Every reason.
    pub const ALL: [Refusal; 6] = [
        Refusal::AllowanceExhausted,
        Refusal::NotFirstLayer,
        Refusal::Overloaded,
        Refusal::NoCredit,
        Refusal::TicketRefused,
        Refusal::TicketDeferred,
    ];

    const fn to_byte(self) -> u8 {
        match self {
            Refusal::AllowanceExhausted => 1,
            Refusal::NotFirstLayer => 2,
            Refusal::Overloaded => 3,
            Refusal::NoCredit => 4,
            Refusal::TicketRefused => 5,
            Refusal::TicketDeferred => 6,
        }
    }

    const fn from_byte(byte: u8) -> Result<Refusal, GatewayMessageError> {
        match byte {
            1 => Ok(Refusal::AllowanceExhausted),
            2 => Ok(Refusal::NotFirstLayer),
            3 => Ok(Refusal::Overloaded),
            4 => Ok(Refusal::NoCredit),
            5 => Ok(Refusal::TicketRefused),
            6 => Ok(Refusal::TicketDeferred),
            byte => Err(GatewayMessageError::UnknownRefusal { byte }),
        }
    }
}

impl DeliveryKind {
    const fn to_byte(self) -> u8 {
        match self {
            DeliveryKind::Data => 1,
            DeliveryKind::Sealed { .. } => 2,
            DeliveryKind::Ack => 3,
        }
    }
}

impl Delivery {
    /// The delivery as a gateway stores it: `0x82 ‖ id ‖ kind ‖ [SURB id] ‖ payload` (no
    /// length: the stored value ends with the payload).
    pub fn to_stored(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(26 + self.payload.len());
        out.push(DELIVER);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.push(self.kind.to_byte());
        if let DeliveryKind::Sealed { surb_id } = self.kind {
            out.extend_from_slice(surb_id.as_bytes());
        }
        out.extend_from_slice(&self.payload);
        out
    }

    /// Reads a stored delivery (see [`Delivery::to_stored`]).
    pub fn from_stored(bytes: &[u8]) -> Result<Delivery, GatewayMessageError> {
        let (&tag, rest) = bytes.split_first().ok_or(GatewayMessageError::Empty)?;
        if tag != DELIVER {
            return Err(GatewayMessageError::UnknownType { tag });
        }
        let (id, rest) = rest
            .split_first_chunk::<8>()
            .ok_or(GatewayMessageError::Truncated)?;
        let (kind, payload) = read_kind(rest)?;
        Ok(Delivery {
            id: u64::from_be_bytes(*id),
            kind,
            payload: payload.to_vec(),
        })
    }
}

fn read_kind(bytes: &[u8]) -> Result<(DeliveryKind, &[u8]), GatewayMessageError> {
    let (&kind, rest) = bytes.split_first().ok_or(GatewayMessageError::Truncated)?;
    match kind {
        1 => Ok((DeliveryKind::Data, rest)),
        2 => {
            let (surb_id, rest) = rest
                .split_first_chunk::<16>()
                .ok_or(GatewayMessageError::Truncated)?;
            Ok((
                DeliveryKind::Sealed {
                    surb_id: SurbId::new(*surb_id),
                },
                rest,
            ))
        }
        3 => Ok((DeliveryKind::Ack, rest)),
        byte => Err(GatewayMessageError::UnknownDeliveryKind { byte }),
    }
}

/// What [`Record::parse`] found at the start of some bytes.
enum Parsed {
    /// A whole record, and the bytes it took.
    Record(Record, usize),
    /// The start of a record whose rest is still to come.
    Incomplete,
}

impl Record {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Record::Welcome {
                allowance,
                waiting,
                schedule,
            } => {
                let mut out = vec![WELCOME];
                out.extend_from_slice(&allowance.to_be_bytes());
                out.extend_from_slice(&waiting.to_be_bytes());
                schedule.encode(&mut out);
                out
            }
            Record::Deliver(delivery) => {
                let payload = &delivery.payload[..delivery.payload.len().min(MAX_PAYLOAD)];
                let mut out = Vec::with_capacity(28 + payload.len());
                out.push(DELIVER);
                out.extend_from_slice(&delivery.id.to_be_bytes());
                out.push(delivery.kind.to_byte());
                if let DeliveryKind::Sealed { surb_id } = delivery.kind {
                    out.extend_from_slice(surb_id.as_bytes());
                }
                out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                out.extend_from_slice(payload);
                out
            }
            Record::Refused {
                reason,
                count,
                detail,
            } => {
                let mut end = detail.len().min(MAX_DETAIL);
                while !detail.is_char_boundary(end) {
                    end -= 1;
                }
                let detail = &detail.as_bytes()[..end];
                let mut out = vec![REFUSED, reason.to_byte()];
                out.extend_from_slice(&count.to_be_bytes());
                out.extend_from_slice(&(detail.len() as u16).to_be_bytes());
                out.extend_from_slice(detail);
                out
            }
            Record::Credit {
                balance,
                ticket_bytes,
            } => {
                let mut out = vec![CREDIT];
                out.extend_from_slice(&balance.to_be_bytes());
                out.extend_from_slice(&ticket_bytes.to_be_bytes());
                out
            }
        }
    }

    /// Reads one whole record (and nothing after it).
    pub fn decode(bytes: &[u8]) -> Result<Record, GatewayMessageError> {
        match Record::parse(bytes)? {
            Parsed::Record(record, len) if len == bytes.len() => Ok(record),
            Parsed::Record(..) => Err(GatewayMessageError::Length),
            Parsed::Incomplete => Err(GatewayMessageError::Truncated),
        }
    }

    /// The record at the start of `bytes`, or word that it goes on past their end.
    fn parse(bytes: &[u8]) -> Result<Parsed, GatewayMessageError> {
        let (&tag, body) = bytes.split_first().ok_or(GatewayMessageError::Empty)?;
        // the fixed part's length after the tag, then where a variable length sits in it
        let fixed = match tag {
            WELCOME => 8 + 4 + 5,
            DELIVER => match body.get(8) {
                Some(2) => 8 + 1 + 16 + 2,
                Some(1 | 3) => 8 + 1 + 2,
                Some(&byte) => return Err(GatewayMessageError::UnknownDeliveryKind { byte }),
                None => return Ok(Parsed::Incomplete),
            },
            REFUSED => 1 + 4 + 2,
            CREDIT => 8 + 8,
            tag => return Err(GatewayMessageError::UnknownType { tag }),
        };
        let Some(head) = body.get(..fixed) else {
            return Ok(Parsed::Incomplete);
        };
        let variable = match tag {
            WELCOME | CREDIT => 0,
            _ => usize::from(u16::from_be_bytes([head[fixed - 2], head[fixed - 1]])),
        };
        let limit = if tag == REFUSED {
            MAX_DETAIL
        } else {
            MAX_PAYLOAD
        };
        if variable > limit {
            return Err(GatewayMessageError::TooLong { len: variable });
        }
        let Some(tail) = body.get(fixed..fixed + variable) else {
            return Ok(Parsed::Incomplete);
        };
        let record = match tag {
            WELCOME => {
                let (allowance, rest) = head
                    .split_first_chunk::<8>()
                    .ok_or(GatewayMessageError::Truncated)?;
                let (waiting, rest) = rest
                    .split_first_chunk::<4>()
                    .ok_or(GatewayMessageError::Truncated)?;
                let schedule: &[u8; 5] =
                    rest.try_into().map_err(|_| GatewayMessageError::Length)?;
                Record::Welcome {
                    allowance: u64::from_be_bytes(*allowance),
                    waiting: u32::from_be_bytes(*waiting),
                    schedule: Schedule::decode(schedule)?,
                }
            }
            CREDIT => {
                let (balance, ticket_bytes) = head
                    .split_first_chunk::<8>()
                    .ok_or(GatewayMessageError::Truncated)?;
                let ticket_bytes: &[u8; 8] = ticket_bytes
                    .try_into()
                    .map_err(|_| GatewayMessageError::Length)?;
                Record::Credit {
                    balance: u64::from_be_bytes(*balance),
                    ticket_bytes: u64::from_be_bytes(*ticket_bytes),
                }
            }
            DELIVER => {
                let (id, rest) = head
                    .split_first_chunk::<8>()
                    .ok_or(GatewayMessageError::Truncated)?;
                let (kind, _) = read_kind(rest)?;
                Record::Deliver(Delivery {
                    id: u64::from_be_bytes(*id),
                    kind,
                    payload: tail.to_vec(),
                })
            }
            _ => {
                let (&reason, rest) = head.split_first().ok_or(GatewayMessageError::Truncated)?;
                let (count, _) = rest
                    .split_first_chunk::<4>()
                    .ok_or(GatewayMessageError::Truncated)?;
                Record::Refused {
                    reason: Refusal::from_byte(reason)?,
                    count: u32::from_be_bytes(*count),
                    detail: String::from_utf8(tail.to_vec())
                        .map_err(|_| GatewayMessageError::NotUtf8)?,
                }
            }
        };
        Ok(Parsed::Record(record, 1 + fixed + variable))
    }

    /// Whether the record goes ahead of deliveries of data: acknowledgements and what the
    /// gateway says, small and late-sensitive (a late ack is a retransmission).
    fn is_urgent(&self) -> bool {
        !matches!(
            self,
            Record::Deliver(Delivery {
                kind: DeliveryKind::Data | DeliveryKind::Sealed { .. },
                ..
            })
        )
    }
}

/// A record waiting to be framed: its bytes, and the delivery it carries.
#[derive(Debug)]
struct Pending {
    bytes: Vec<u8>,
    delivery: Option<u64>,
}

/// The gateway's side of a session's downlink: a queue of records cut into frames.
///
/// Shaped, every frame is [`FRAME_LEN`] bytes and carries as much of the queue as fits (records
/// go on into the next frame), padding when nothing waits; acknowledgements and notices go
/// ahead of data. Push, each frame is one whole record. A delivery is confirmed once the frame
/// holding its last byte is.
#[derive(Debug)]
pub struct DownlinkWriter {
    shaped: bool,
    next_seq: u64,
    urgent: VecDeque<Pending>,
    bulk: VecDeque<Pending>,
    /// A record partly framed, and how much of it.
    current: Option<(Pending, usize)>,
    /// Frames sent and not confirmed, with the deliveries they complete.
    unconfirmed: VecDeque<(u64, Vec<u64>)>,
    queued_bytes: usize,
}

impl DownlinkWriter {
    /// A writer for a session with `schedule`.
    pub fn new(schedule: Schedule) -> DownlinkWriter {
        DownlinkWriter {
            shaped: schedule.is_shaped(),
            next_seq: 0,
            urgent: VecDeque::new(),
            bulk: VecDeque::new(),
            current: None,
            unconfirmed: VecDeque::new(),
            queued_bytes: 0,
        }
    }

    /// Queues a record.
    pub fn push(&mut self, record: &Record) {
        let delivery = match record {
            Record::Deliver(delivery) => Some(delivery.id),
            _ => None,
        };
        let pending = Pending {
            bytes: record.encode(),
            delivery,
        };
        self.queued_bytes += pending.bytes.len();
        if record.is_urgent() {
            self.urgent.push_back(pending);
        } else {
            self.bulk.push_back(pending);
        }
    }

    /// Whether nothing waits to be framed.
    pub fn is_idle(&self) -> bool {
        self.current.is_none() && self.urgent.is_empty() && self.bulk.is_empty()
    }

    /// Bytes of records waiting to be framed.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// The next frame. Shaped: exactly [`FRAME_LEN`] bytes, padding if nothing waits. Push:
    /// the next whole record (`None` if nothing waits).
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        if !self.shaped && self.is_idle() {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut frame = Vec::with_capacity(if self.shaped { FRAME_LEN } else { 64 });
        frame.extend_from_slice(&seq.to_be_bytes());
        let mut completed = Vec::new();
        if self.shaped {
            while frame.len() < FRAME_LEN {
                let (pending, at) = match self.current.take() {
                    Some(current) => current,
                    None => match self.urgent.pop_front().or_else(|| self.bulk.pop_front()) {
                        Some(next) => (next, 0),
                        None => break,
                    },
                };
                let take = (pending.bytes.len() - at).min(FRAME_LEN - frame.len());
                frame.extend_from_slice(&pending.bytes[at..at + take]);
                self.queued_bytes -= take;
                if at + take == pending.bytes.len() {
                    completed.extend(pending.delivery);
                } else {
                    self.current = Some((pending, at + take));
                }
            }
            frame.resize(FRAME_LEN, PAD);
        } else if let Some(pending) = self.urgent.pop_front().or_else(|| self.bulk.pop_front()) {
            self.queued_bytes -= pending.bytes.len();
            frame.extend_from_slice(&pending.bytes);
            completed.extend(pending.delivery);
        }
        self.unconfirmed.push_back((seq, completed));
        // a client that never confirms cannot grow this: its deliveries are bounded by the
        // gateway's window, and frames that completed none are forgotten past a bound
        while self.unconfirmed.len() > MAX_UNCONFIRMED_FRAMES
            && self
                .unconfirmed
                .front()
                .is_some_and(|(_, ids)| ids.is_empty())
        {
            self.unconfirmed.pop_front();
        }
        Some(frame)
    }

    /// The client holds every frame up to `seq`: the deliveries those frames completed.
    /// A number above any frame sent is taken as the last frame sent.
    pub fn confirm(&mut self, seq: u64) -> Vec<u64> {
        let mut ids = Vec::new();
        while let Some((first, _)) = self.unconfirmed.front()
            && *first <= seq
        {
            if let Some((_, done)) = self.unconfirmed.pop_front() {
                ids.extend(done);
            }
        }
        ids
    }
}

/// Frames without deliveries kept for confirmation, at most (see [`DownlinkWriter::next_frame`]).
const MAX_UNCONFIRMED_FRAMES: usize = 4096;

/// The client's side of a session's downlink: frames back into records.
#[derive(Debug, Default)]
pub struct DownlinkReader {
    next_seq: u64,
    /// The start of a record that goes on in the next frame.
    partial: Vec<u8>,
}

impl DownlinkReader {
    /// A reader for a new session.
    pub fn new() -> DownlinkReader {
        DownlinkReader::default()
    }

    /// The number of the last frame read, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.next_seq.checked_sub(1)
    }

    /// Reads the next frame: the records it completes. Frames must come in order, each once.
    pub fn read(&mut self, frame: &[u8]) -> Result<Vec<Record>, GatewayMessageError> {
        let (seq, body) = frame
            .split_first_chunk::<SEQ_LEN>()
            .ok_or(GatewayMessageError::Truncated)?;
        let seq = u64::from_be_bytes(*seq);
        if seq != self.next_seq {
            return Err(GatewayMessageError::OutOfOrder {
                expected: self.next_seq,
                got: seq,
            });
        }
        self.next_seq += 1;
        // a record begun in an earlier frame goes on at the start of this one
        let joined;
        let mut rest: &[u8] = if self.partial.is_empty() {
            body
        } else {
            let mut bytes = std::mem::take(&mut self.partial);
            bytes.extend_from_slice(body);
            joined = bytes;
            &joined
        };
        let mut records = Vec::new();
        while let Some(&tag) = rest.first() {
            if tag == PAD {
                break;
            }
            match Record::parse(rest)? {
                Parsed::Record(record, len) => {
                    records.push(record);
                    rest = &rest[len..];
                }
                Parsed::Incomplete => {
                    self.partial = rest.to_vec();
                    break;
                }
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn schedule() -> impl Strategy<Value = Schedule> {
        prop_oneof![
            (1u64..1_000_000).prop_map(|us| Schedule::Constant {
                interval: Duration::from_micros(us)
            }),
            (1u64..1_000_000).prop_map(|us| Schedule::Poisson {
                mean: Duration::from_micros(us)
            }),
            Just(Schedule::InsecurePush),
        ]
    }

    fn client_frame() -> impl Strategy<Value = ClientFrame> {
        let hello = schedule().prop_map(|schedule| Hello {
            version: VERSION,
            schedule,
        });
        let forward = (any::<[u8; 32]>(), any::<u8>()).prop_map(|(hop, fill)| {
            (
                NodeAddress::new(hop),
                Packet::from_bytes(vec![fill; PacketSize::Regular.packet_len()]).unwrap(),
            )
        });
        let spend = (
            any::<u16>(),
            any::<u16>(),
            prop::collection::vec(any::<u8>(), 0..MAX_SPEND_CHUNK),
        )
            .prop_map(|(total, offset, bytes)| SpendChunk {
                total,
                offset,
                bytes,
            });
        (
            prop::option::of(hello),
            prop::option::of(forward),
            prop::option::of(any::<u64>()),
            prop::option::of(spend),
        )
            .prop_map(|(hello, forward, received, spend)| ClientFrame {
                hello,
                // a stretch of a ticket takes a slot's room: never beside a packet
                spend: if forward.is_some() { None } else { spend },
                forward,
                received,
            })
    }

    fn record() -> impl Strategy<Value = Record> {
        let kind = prop_oneof![
            Just(DeliveryKind::Data),
            Just(DeliveryKind::Ack),
            any::<[u8; 16]>().prop_map(|id| DeliveryKind::Sealed {
                surb_id: SurbId::new(id)
            }),
        ];
        prop_oneof![
            (any::<u64>(), any::<u32>(), schedule()).prop_map(|(allowance, waiting, schedule)| {
                Record::Welcome {
                    allowance,
                    waiting,
                    schedule,
                }
            }),
            (
                any::<u64>(),
                kind,
                prop::collection::vec(any::<u8>(), 0..5000)
            )
                .prop_map(|(id, kind, payload)| Record::Deliver(Delivery {
                    id,
                    kind,
                    payload
                })),
            (
                prop::sample::select(Refusal::ALL.to_vec()),
                any::<u32>(),
                ".{0,40}"
            )
                .prop_map(|(reason, count, detail)| Record::Refused {
                    reason,
                    count,
                    detail
                }),
            (any::<u64>(), any::<u64>()).prop_map(|(balance, ticket_bytes)| Record::Credit {
                balance,
                ticket_bytes
            }),
        ]
    }

    /// Writes `records` through a writer, taking a frame after every `every` pushes (and to
    /// the end), and reads them back.
    fn through(
        schedule: Schedule,
        records: &[Record],
        every: usize,
    ) -> (Vec<Vec<u8>>, Vec<Record>) {
        let mut writer = DownlinkWriter::new(schedule);
        let mut reader = DownlinkReader::new();
        let mut frames = Vec::new();
        let mut read = Vec::new();
        let mut take = |writer: &mut DownlinkWriter, frames: &mut Vec<Vec<u8>>| {
            if let Some(frame) = writer.next_frame() {
                read.extend(reader.read(&frame).unwrap());
                frames.push(frame);
            }
        };
        for (i, record) in records.iter().enumerate() {
            writer.push(record);
            if i % every.max(1) == 0 {
                take(&mut writer, &mut frames);
            }
        }
        while !writer.is_idle() {
            take(&mut writer, &mut frames);
        }
        take(&mut writer, &mut frames);
        (frames, read)
    }

    fn sorted(mut records: Vec<Record>) -> Vec<Vec<u8>> {
        let mut bytes: Vec<Vec<u8>> = records.drain(..).map(|r| r.encode()).collect();
        bytes.sort();
        bytes
    }

    proptest! {
        #[test]
        fn client_frames_round_trip(frame in client_frame(), padded in any::<bool>()) {
            let bytes = frame.encode(padded).unwrap();
            if padded {
                prop_assert_eq!(bytes.len(), FRAME_LEN);
            }
            prop_assert_eq!(ClientFrame::decode(&bytes), Ok(frame));
        }

        #[test]
        fn records_round_trip(record in record()) {
            prop_assert_eq!(Record::decode(&record.encode()), Ok(record));
        }

        #[test]
        fn shaped_frames_are_one_size_and_carry_every_record(
            records in prop::collection::vec(record(), 0..40),
            every in 1usize..5,
            poisson in any::<bool>(),
        ) {
            let schedule = if poisson {
                Schedule::Poisson { mean: Duration::from_millis(20) }
            } else {
                Schedule::Constant { interval: Duration::from_millis(20) }
            };
            let (frames, read) = through(schedule, &records, every);
            prop_assert!(frames.iter().all(|f| f.len() == FRAME_LEN));
            // urgent records overtake data: the same records, perhaps in another order
            prop_assert_eq!(sorted(read), sorted(records));
        }

        #[test]
        fn push_frames_are_one_record_each(records in prop::collection::vec(record(), 0..20)) {
            let (frames, read) = through(Schedule::InsecurePush, &records, 1);
            prop_assert_eq!(frames.len(), records.len());
            prop_assert_eq!(sorted(read), sorted(records));
        }

        #[test]
        fn a_delivery_is_confirmed_with_the_frame_holding_its_end(
            lens in prop::collection::vec(0usize..6000, 1..20),
        ) {
            let mut writer = DownlinkWriter::new(Schedule::Constant { interval: Duration::from_millis(1) });
            for (id, len) in lens.iter().enumerate() {
                writer.push(&Record::Deliver(Delivery { id: id as u64, kind: DeliveryKind::Data, payload: vec![7; *len] }));
            }
            let mut reader = DownlinkReader::new();
            let mut confirmed = Vec::new();
            while !writer.is_idle() {
                let frame = writer.next_frame().unwrap();
                let seq = u64::from_be_bytes(frame[..8].try_into().unwrap());
                let whole: Vec<u64> = reader.read(&frame).unwrap().into_iter().filter_map(|r| match r {
                    Record::Deliver(d) => Some(d.id),
                    _ => None,
                }).collect();
                // what the frame completed is what its confirmation releases
                let released = writer.confirm(seq);
                prop_assert_eq!(&released, &whole);
                confirmed.extend(released);
            }
            prop_assert_eq!(confirmed, (0..lens.len() as u64).collect::<Vec<_>>());
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 1..4),
        ) {
            let mut reader = DownlinkReader::new();
            for (seq, mut frame) in frames.into_iter().enumerate() {
                let _ = ClientFrame::decode(&frame);
                let _ = Record::decode(&frame);
                let _ = Delivery::from_stored(&frame);
                if frame.len() >= 8 {
                    frame[..8].copy_from_slice(&(seq as u64).to_be_bytes());
                }
                let _ = reader.read(&frame);
            }
        }
    }

    #[test]
    fn stored_deliveries_keep_their_format() {
        // the inbox holds deliveries in this layout since version 1: it must still read them
        let delivery = Delivery {
            id: 5,
            kind: DeliveryKind::Sealed {
                surb_id: SurbId::new([3; 16]),
            },
            payload: vec![1, 2, 3],
        };
        let mut expected = vec![0x82, 0, 0, 0, 0, 0, 0, 0, 5, 2];
        expected.extend_from_slice(&[3; 16]);
        expected.extend_from_slice(&[1, 2, 3]);
        assert_eq!(delivery.to_stored(), expected);
        assert_eq!(Delivery::from_stored(&expected), Ok(delivery));
    }

    #[test]
    fn a_frame_with_a_regular_packet_and_a_confirmation_fits() {
        let frame = ClientFrame {
            hello: None,
            forward: Some((
                NodeAddress::new([1; 32]),
                Packet::from_bytes(vec![0; PacketSize::Regular.packet_len()]).unwrap(),
            )),
            received: Some(u64::MAX),
            spend: None,
        };
        assert_eq!(frame.encode(true).unwrap().len(), FRAME_LEN);
        let too_big = ClientFrame {
            forward: Some((
                NodeAddress::new([1; 32]),
                Packet::from_bytes(vec![0; PacketSize::Extended8.packet_len()]).unwrap(),
            )),
            ..ClientFrame::default()
        };
        assert!(matches!(
            too_big.encode(true),
            Err(GatewayMessageError::TooLong { .. })
        ));
    }

    #[test]
    fn a_ticket_goes_in_stretches_that_fit_a_frame_and_comes_back_whole() {
        for len in [
            1,
            400,
            MAX_SPEND_CHUNK,
            MAX_SPEND_CHUNK + 1,
            10_000,
            MAX_SPEND_LEN - 1,
        ] {
            let ticket: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let chunks = SpendChunk::split(&ticket);
            assert_eq!(chunks.len(), len.div_ceil(MAX_SPEND_CHUNK));
            let mut assembler = SpendAssembler::default();
            let mut whole = None;
            for (i, chunk) in chunks.into_iter().enumerate() {
                assert_eq!(
                    chunk.is_last(),
                    whole.is_none() && i == len.div_ceil(MAX_SPEND_CHUNK) - 1
                );
                // each stretch, with a confirmation, fills one shaped frame and reads back
                let frame = ClientFrame {
                    received: Some(u64::MAX),
                    spend: Some(chunk),
                    ..ClientFrame::default()
                };
                let bytes = frame.encode(true).unwrap();
                assert_eq!(bytes.len(), FRAME_LEN);
                let read = ClientFrame::decode(&bytes).unwrap();
                assert_eq!(read, frame);
                whole = assembler.push(read.spend.unwrap()).unwrap();
            }
            assert_eq!(whole, Some(ticket));
        }
        assert!(SpendChunk::split(&[]).is_empty());
        assert!(SpendChunk::split(&vec![0; MAX_SPEND_LEN + 1]).is_empty());
    }

    #[test]
    fn stretches_of_a_ticket_out_of_order_or_too_long_are_refused() {
        let ticket = vec![5u8; 3 * MAX_SPEND_CHUNK];
        let chunks = SpendChunk::split(&ticket);
        let mut assembler = SpendAssembler::default();
        // not starting at its beginning
        assert_eq!(
            assembler.push(chunks[1].clone()),
            Err(GatewayMessageError::SpendOutOfOrder)
        );
        assert_eq!(assembler.push(chunks[0].clone()), Ok(None));
        // the same stretch twice
        assert_eq!(
            assembler.push(chunks[0].clone()),
            Err(GatewayMessageError::SpendOutOfOrder)
        );
        // a stretch running past the announced length
        let mut assembler = SpendAssembler::default();
        let over = SpendChunk {
            total: 10,
            offset: 0,
            bytes: vec![1; 11],
        };
        assert!(matches!(
            assembler.push(over),
            Err(GatewayMessageError::TooLong { .. })
        ));
        // a ticket longer than any allowed
        let huge = SpendChunk {
            total: u16::MAX,
            offset: 0,
            bytes: vec![1; 10],
        };
        assert!(matches!(
            SpendAssembler::default().push(huge),
            Err(GatewayMessageError::TooLong { .. })
        ));
        // cleared, it starts again
        let mut assembler = SpendAssembler::default();
        assert_eq!(assembler.push(chunks[0].clone()), Ok(None));
        assembler.clear();
        assert_eq!(assembler.push(chunks[0].clone()), Ok(None));
    }

    #[test]
    fn malformed_frames_say_what_is_wrong() {
        use GatewayMessageError::*;
        assert_eq!(ClientFrame::decode(&[0x09]), Err(UnknownType { tag: 9 }));
        assert_eq!(ClientFrame::decode(&[FORWARD, 1, 2]), Err(Truncated));
        assert_eq!(
            ClientFrame::decode(&[
                RECEIVED, 0, 0, 0, 0, 0, 0, 0, 1, RECEIVED, 0, 0, 0, 0, 0, 0, 0, 2
            ]),
            Err(Repeated { tag: RECEIVED })
        );
        assert_eq!(
            ClientFrame::decode(&[HELLO, VERSION, 9, 0, 0, 0, 1]),
            Err(UnknownSchedule { byte: 9 })
        );
        assert_eq!(
            ClientFrame::decode(&[HELLO, VERSION, 1, 0, 0, 0, 0]),
            Err(BadSchedule)
        );
        assert_eq!(ClientFrame::decode(&[]), Ok(ClientFrame::default()));
        assert_eq!(
            Record::decode(&[DELIVER, 0, 0, 0, 0, 0, 0, 0, 1, 7]),
            Err(UnknownDeliveryKind { byte: 7 })
        );
        assert_eq!(
            Record::decode(&[REFUSED, 9, 0, 0, 0, 1, 0, 0]),
            Err(UnknownRefusal { byte: 9 })
        );
        assert_eq!(
            Record::decode(&[REFUSED, 1, 0, 0, 0, 1, 0, 1, 0xff]),
            Err(NotUtf8)
        );
        assert_eq!(
            Record::decode(&[DELIVER, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xff, 0xff]),
            Err(TooLong { len: 0xffff })
        );
        let mut reader = DownlinkReader::new();
        assert_eq!(
            reader.read(&[0, 0, 0, 0, 0, 0, 0, 1]),
            Err(OutOfOrder {
                expected: 0,
                got: 1
            })
        );
    }

    #[test]
    fn a_record_split_anywhere_is_read_whole() {
        let record = Record::Deliver(Delivery {
            id: 9,
            kind: DeliveryKind::Sealed {
                surb_id: SurbId::new([4; 16]),
            },
            payload: (0..3000).map(|i| i as u8).collect(),
        });
        let bytes = record.encode();
        // every split point, over two and three frames (unpadded frames of raw stream bytes)
        for cut in 1..bytes.len() {
            for second in [cut, (cut + bytes.len()) / 2] {
                let mut reader = DownlinkReader::new();
                let mut read = Vec::new();
                let pieces = [&bytes[..cut], &bytes[cut..second], &bytes[second..]];
                for (seq, piece) in pieces.iter().enumerate() {
                    let mut frame = (seq as u64).to_be_bytes().to_vec();
                    frame.extend_from_slice(piece);
                    read.extend(reader.read(&frame).unwrap());
                }
                assert_eq!(
                    read,
                    std::slice::from_ref(&record),
                    "cut at {cut}, {second}"
                );
            }
        }
    }
}
