//! What the codecs refuse.

/// Why a frame could not be read. The byte stream cannot be resynchronised after one, so the
/// link it came from must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The first byte is not a frame version Umbra speaks (7 or 8).
    #[error("reading a frame: unknown frame version {byte} (Umbra speaks 7 and 8)")]
    UnknownVersion {
        /// The version byte.
        byte: u8,
    },
    /// The size tag names no Sphinx packet size.
    #[error("reading a frame: unknown packet size tag {tag} (1 to 5)")]
    UnknownSizeTag {
        /// The tag byte.
        tag: u8,
    },
    /// The packet type is not a Sphinx packet (0).
    #[error("reading a frame: unsupported packet type {packet_type} (only Sphinx packets, 0)")]
    UnsupportedPacketType {
        /// The type byte.
        packet_type: u8,
    },
    /// The key rotation byte is not 0, 1 or 2.
    #[error("reading a frame: unknown key rotation {byte} (0, 1 or 2)")]
    UnknownKeyRotation {
        /// The rotation byte.
        byte: u8,
    },
    /// The bytes after the header do not make a packet of the header's size (cannot happen
    /// for a well-formed header; reported rather than assumed).
    #[error("reading a frame: the packet does not have the size its header gives")]
    SizeMismatch,
}

impl FrameError {
    /// A short, stable name for the error, for metrics labels.
    pub const fn reason(self) -> &'static str {
        match self {
            FrameError::UnknownVersion { .. } => "frame_version",
            FrameError::UnknownSizeTag { .. } => "frame_size_tag",
            FrameError::UnsupportedPacketType { .. } => "frame_packet_type",
            FrameError::UnknownKeyRotation { .. } => "frame_key_rotation",
            FrameError::SizeMismatch => "frame_size_mismatch",
        }
    }
}

/// Why a link record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// A record shorter than a Noise transport message can be.
    #[error("reading a link record: a {len}-byte message is shorter than a Noise tag")]
    MessageTooShort {
        /// The length given.
        len: usize,
    },
    /// A message longer than Noise allows.
    #[error("writing a link record: a {len}-byte message is longer than Noise's 65535")]
    MessageTooLong {
        /// The length asked for.
        len: usize,
    },
}

/// Why a routing address could not be read as a socket address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The first byte is neither 4 nor 6.
    #[error("reading a node address: unknown IP version {byte} (4 or 6)")]
    UnknownIpVersion {
        /// The version byte.
        byte: u8,
    },
    /// Bytes after the address are not zero.
    #[error("reading a node address: the padding after the address is not zero")]
    NonZeroPadding,
}

/// Why a client address could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressParseError {
    /// No `@` before the gateway's key.
    #[error(
        "reading a client address: no `@`; an address is identity.encryption@gateway, three base58 keys"
    )]
    NoGateway,
    /// No `.` between the identity and encryption keys.
    #[error(
        "reading a client address: no `.` between the identity and encryption keys (identity.encryption@gateway)"
    )]
    NoDot,
    /// A part is not base58.
    #[error("reading a client address: the {part} key is not base58")]
    NotBase58 {
        /// Which key.
        part: &'static str,
    },
    /// A part is not 32 bytes.
    #[error("reading a client address: the {part} key is {len} bytes, not 32")]
    WrongLength {
        /// Which key.
        part: &'static str,
        /// Its length.
        len: usize,
    },
}

/// Why a client↔gateway message was refused. The session it came on is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayMessageError {
    /// No bytes at all.
    #[error("reading a gateway message: it is empty")]
    Empty,
    /// A type byte the protocol does not have.
    #[error("reading a gateway message: unknown type {tag:#04x}")]
    UnknownType {
        /// The type byte.
        tag: u8,
    },
    /// The message ends before its fields do.
    #[error("reading a gateway message: it is cut short")]
    Truncated,
    /// The message's length does not fit its fields.
    #[error("reading a gateway message: its length does not fit its fields")]
    Length,
    /// A length beyond what the protocol allows.
    #[error("reading a gateway message: a length of {len} bytes, more than the protocol allows")]
    TooLong {
        /// The length.
        len: usize,
    },
    /// An item that a frame may hold once came twice.
    #[error("reading a gateway message: item {tag:#04x} twice in one frame")]
    Repeated {
        /// The item's type byte.
        tag: u8,
    },
    /// A schedule the protocol does not have.
    #[error("reading a gateway message: unknown schedule {byte}")]
    UnknownSchedule {
        /// The schedule byte.
        byte: u8,
    },
    /// A schedule with no time between frames.
    #[error("reading a gateway message: a schedule with a zero interval")]
    BadSchedule,
    /// A stretch of a ticket that does not follow the one before.
    #[error("reading a gateway message: a stretch of a ticket out of order")]
    SpendOutOfOrder,
    /// A frame out of sequence.
    #[error("reading a gateway message: frame {got} where frame {expected} was due")]
    OutOfOrder {
        /// The number due.
        expected: u64,
        /// The number read.
        got: u64,
    },
    /// The packet is not a Sphinx packet.
    #[error("reading a gateway message: {0}")]
    BadPacket(umbra_sphinx::PacketError),
    /// An unknown delivery kind.
    #[error("reading a gateway message: unknown delivery kind {byte}")]
    UnknownDeliveryKind {
        /// The kind byte.
        byte: u8,
    },
    /// An unknown refusal reason.
    #[error("reading a gateway message: unknown refusal reason {byte}")]
    UnknownRefusal {
        /// The reason byte.
        byte: u8,
    },
    /// The detail text is not UTF-8.
    #[error("reading a gateway message: its text is not UTF-8")]
    NotUtf8,
}
