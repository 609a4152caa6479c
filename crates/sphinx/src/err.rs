//! What can go wrong: [`BuildError`] for a sender's mistakes, [`PacketError`] for bad input
//! from the network.

use crate::params::MAX_HOPS;

/// Why a packet or SURB could not be built. These are mistakes of the caller, not of the
/// network: each says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The route has no hops.
    #[error("building a packet: the route is empty; give it 1 to {MAX_HOPS} hops")]
    EmptyRoute,
    /// The route has more hops than a header has room for.
    #[error("building a packet: the route has {hops} hops; at most {MAX_HOPS} fit in a header")]
    RouteTooLong {
        /// Hops in the route.
        hops: usize,
    },
    /// There is not exactly one delay per hop.
    #[error(
        "building a packet: the route has {hops} hops but {delays} delays were given; give one per hop"
    )]
    DelayCount {
        /// Hops in the route.
        hops: usize,
        /// Delays given.
        delays: usize,
    },
    /// The message does not fit the chosen packet size.
    #[error(
        "building a packet: the message is {len} bytes but this packet size carries at most {capacity}; fragment it or pick a larger size"
    )]
    MessageTooLong {
        /// Bytes in the message.
        len: usize,
        /// The most the packet size carries.
        capacity: usize,
    },
    /// Version 258 cannot make SURBs (its payload keys are too long to hand out).
    #[error("building a SURB: header version 258 cannot make SURBs; use 259 or 260")]
    SurbVersion,
    /// A version 260 SURB needs a non-zero SURB id: its creator files the reply key under it.
    #[error(
        "building a SURB: a version 260 SURB needs a non-zero SURB id to file its reply key under"
    )]
    ZeroSurbId,
}

/// Why bytes from the network were refused. A node drops such a packet and counts it by
/// [`PacketError::reason`]; nothing else happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// The bytes are not one of the packet sizes.
    #[error(
        "reading a packet: {len} bytes is not a Sphinx packet size (386, 2413, 8557, 16749 or 33133)"
    )]
    WrongLength {
        /// Bytes received.
        len: usize,
    },
    /// The group element α has its top bit set or is not reduced modulo 2^255 - 19.
    #[error("reading a header: its group element is not canonically encoded")]
    NonCanonicalPoint,
    /// The group element α lies on the twist, not on Curve25519.
    #[error("reading a header: its group element is not a point of Curve25519")]
    PointNotOnCurve,
    /// The group element α has small order, so the shared secret carries no secret.
    #[error("reading a header: its group element has small order")]
    SmallOrderPoint,
    /// The header MAC does not verify: the header was corrupted or is not for this key.
    #[error(
        "checking a header: its MAC does not verify (corrupted, or not meant for this node's key)"
    )]
    BadMac,
    /// The routing block names a header version Umbra does not process.
    #[error(
        "reading a routing block: unknown header version {bytes:?} (Umbra accepts 258, 259 and 260)"
    )]
    UnknownVersion {
        /// The three version bytes.
        bytes: [u8; 3],
    },
    /// The routing block's flag is neither forward (1) nor final (2).
    #[error("reading a routing block: unknown routing flag {flag}")]
    UnknownFlag {
        /// The flag byte.
        flag: u8,
    },
    /// The payload does not decrypt to a well-formed plaintext: corrupted, or opened with the
    /// wrong keys.
    #[error(
        "reading a payload: it does not decrypt to a well-formed message (corrupted, or the wrong keys)"
    )]
    BadPayload,
    /// Payload bytes are not the payload of any packet size.
    #[error(
        "reading a payload: {len} bytes is not a payload size (38, 2065, 8209, 16401 or 32785)"
    )]
    PayloadLength {
        /// Bytes received.
        len: usize,
    },
    /// Serialized SURB bytes have the wrong length.
    #[error("reading a SURB: {len} bytes is not 380 plus 16 per hop for 1 to {MAX_HOPS} hops")]
    SurbLength {
        /// Bytes received.
        len: usize,
    },
    /// Serialized reply-key bytes are malformed.
    #[error("reading a reply key: the bytes are malformed")]
    ReplyKeyEncoding,
}

impl PacketError {
    /// A short, stable name for the error, for metrics labels and counters.
    pub const fn reason(self) -> &'static str {
        match self {
            PacketError::WrongLength { .. } => "wrong_length",
            PacketError::NonCanonicalPoint => "non_canonical_point",
            PacketError::PointNotOnCurve => "point_not_on_curve",
            PacketError::SmallOrderPoint => "small_order_point",
            PacketError::BadMac => "bad_mac",
            PacketError::UnknownVersion { .. } => "unknown_version",
            PacketError::UnknownFlag { .. } => "unknown_flag",
            PacketError::BadPayload => "bad_payload",
            PacketError::PayloadLength { .. } => "payload_length",
            PacketError::SurbLength { .. } => "surb_length",
            PacketError::ReplyKeyEncoding => "reply_key_encoding",
        }
    }
}
