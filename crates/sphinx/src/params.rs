//! The fixed dimensions of the format: header layout, packet sizes, header versions.
//!
//! Sizes follow Nym's `sphinx-packet` 0.8.0 and `nymsphinx-params` (see
//! `reference/nym-compat.md`, "Sphinx packet").

use crate::err::PacketError;

/// The longest route a packet can take: five hops.
pub const MAX_HOPS: usize = 5;

/// Bytes of a header: α (32) ‖ γ (16) ‖ β (300).
pub const HEADER_LEN: usize = ALPHA_LEN + MAC_LEN + ROUTING_LEN;

/// Bytes a payload adds to the message it carries: 16 zero bytes in front (they authenticate
/// the payload) and one `0x01` byte after.
pub const PAYLOAD_OVERHEAD: usize = ZERO_PREFIX_LEN + 1;

/// Bytes of the group element α at the start of a header.
pub(crate) const ALPHA_LEN: usize = 32;
/// Bytes of the header MAC γ (HMAC-SHA256 truncated).
pub(crate) const MAC_LEN: usize = 16;
/// Bytes of one hop's routing block: flag 1 ‖ version 3 ‖ address 32 ‖ delay 8 ‖ next MAC 16.
pub(crate) const HOP_BLOCK_LEN: usize = 1 + VERSION_LEN + 32 + 8 + MAC_LEN;
/// Bytes of the encrypted routing information β: room for [`MAX_HOPS`] hop blocks.
pub(crate) const ROUTING_LEN: usize = HOP_BLOCK_LEN * MAX_HOPS;
/// Bytes of header keystream a hop generates: β plus one more hop block, which becomes the
/// new tail of β after the shift.
pub(crate) const KEYSTREAM_LEN: usize = ROUTING_LEN + HOP_BLOCK_LEN;
/// Bytes of the version field inside a routing block: `[0, hi, lo]`.
pub(crate) const VERSION_LEN: usize = 3;
/// Zero bytes at the front of every payload plaintext.
pub(crate) const ZERO_PREFIX_LEN: usize = 16;

/// Routing flag of a hop that forwards to another node.
pub(crate) const FLAG_FORWARD: u8 = 1;
/// Routing flag of the final hop.
pub(crate) const FLAG_FINAL: u8 = 2;

/// The packet sizes Nym defines. Every packet on the network has one of these lengths, so a
/// packet's size says nothing about what it carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PacketSize {
    /// 2413 bytes, 2048 of message: the default.
    #[default]
    Regular,
    /// 386 bytes, 21 of message: acknowledgements.
    Ack,
    /// 8557 bytes, 8192 of message.
    Extended8,
    /// 16749 bytes, 16384 of message.
    Extended16,
    /// 33133 bytes, 32768 of message.
    Extended32,
}

impl PacketSize {
    /// Every size, smallest first.
    pub const ALL: [PacketSize; 5] = [
        PacketSize::Ack,
        PacketSize::Regular,
        PacketSize::Extended8,
        PacketSize::Extended16,
        PacketSize::Extended32,
    ];

    /// Length of a whole packet of this size, header included.
    pub const fn packet_len(self) -> usize {
        match self {
            PacketSize::Regular => 2413,
            PacketSize::Ack => 386,
            PacketSize::Extended8 => 8557,
            PacketSize::Extended16 => 16749,
            PacketSize::Extended32 => 33133,
        }
    }

    /// Length of the payload part (what follows the header).
    pub const fn payload_len(self) -> usize {
        self.packet_len() - HEADER_LEN
    }

    /// The longest message a packet of this size carries.
    pub const fn plaintext_capacity(self) -> usize {
        self.payload_len() - PAYLOAD_OVERHEAD
    }

    /// The size whose packets are `len` bytes long, if any.
    pub const fn from_packet_len(len: usize) -> Option<PacketSize> {
        match len {
            2413 => Some(PacketSize::Regular),
            386 => Some(PacketSize::Ack),
            8557 => Some(PacketSize::Extended8),
            16749 => Some(PacketSize::Extended16),
            33133 => Some(PacketSize::Extended32),
            _ => None,
        }
    }
}

/// The header versions Umbra builds and accepts. The version travels inside each hop's
/// encrypted routing block and tells the hop how to derive its payload key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Version {
    /// 258: each hop's 192-byte payload key is taken straight from the key derivation. What
    /// Nym clients send by default today. Cannot make SURBs.
    V258,
    /// 259: each hop's payload key is expanded from a 16-byte seed; a SURB hands the replier
    /// every hop's seed.
    V259,
    /// 260: hops behave as for 259; a SURB hands the replier only the last hop's seed and
    /// only the SURB's creator can read the reply. The default.
    #[default]
    V260,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Version; 3] = [Version::V258, Version::V259, Version::V260];

    /// The version's number as it appears on the wire.
    pub const fn number(self) -> u16 {
        match self {
            Version::V258 => 258,
            Version::V259 => 259,
            Version::V260 => 260,
        }
    }

    /// The version with this number, if Umbra supports it.
    pub const fn from_number(number: u16) -> Option<Version> {
        match number {
            258 => Some(Version::V258),
            259 => Some(Version::V259),
            260 => Some(Version::V260),
            _ => None,
        }
    }

    /// Whether hops derive their payload key from a 16-byte seed (259, 260) rather than use
    /// the 192 bytes of key derivation output directly (258).
    pub(crate) const fn has_seeded_payload_keys(self) -> bool {
        !matches!(self, Version::V258)
    }

    pub(crate) const fn to_bytes(self) -> [u8; VERSION_LEN] {
        let [hi, lo] = self.number().to_be_bytes();
        [0, hi, lo]
    }

    pub(crate) fn from_bytes(bytes: [u8; VERSION_LEN]) -> Result<Version, PacketError> {
        let [zero, hi, lo] = bytes;
        let number = u16::from_be_bytes([hi, lo]);
        match (zero, Version::from_number(number)) {
            (0, Some(version)) => Ok(version),
            _ => Err(PacketError::UnknownVersion { bytes }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_nym() {
        assert_eq!(HEADER_LEN, 348);
        assert_eq!(HOP_BLOCK_LEN, 60);
        assert_eq!(KEYSTREAM_LEN, 360);
        let expected = [
            (386, 21),
            (2413, 2048),
            (8557, 8192),
            (16749, 16384),
            (33133, 32768),
        ];
        for (size, (len, capacity)) in PacketSize::ALL.into_iter().zip(expected) {
            assert_eq!(size.packet_len(), len);
            assert_eq!(size.plaintext_capacity(), capacity);
            assert_eq!(PacketSize::from_packet_len(len), Some(size));
        }
        assert_eq!(PacketSize::from_packet_len(2412), None);
    }

    #[test]
    fn versions_round_trip_and_unknown_ones_are_refused() {
        for version in Version::ALL {
            assert_eq!(Version::from_bytes(version.to_bytes()), Ok(version));
        }
        assert_eq!(Version::V260.to_bytes(), [0, 1, 4]);
        for bytes in [[0, 1, 1], [0, 0, 1], [1, 1, 4], [0, 1, 5], [0xff; 3]] {
            assert_eq!(
                Version::from_bytes(bytes),
                Err(PacketError::UnknownVersion { bytes })
            );
        }
    }
}
