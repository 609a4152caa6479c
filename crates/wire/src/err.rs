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
