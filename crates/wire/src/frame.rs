//! Nym's node-to-node frames, versions 7 and 8.
//!
//! ```text
//! v7: 7 ‖ size tag ‖ packet type                  ‖ Sphinx packet
//! v8: 8 ‖ size tag ‖ packet type ‖ key rotation   ‖ Sphinx packet
//! ```
//!
//! There is no length prefix: the size tag fixes the packet's length. The packet type is 0
//! (a Sphinx "mix" packet); Nym's other types (1, a retired VPN mode; 2, Outfox) are refused.
//! The key rotation says which of the node's two Sphinx keys the sender used: 0 unknown, 1 the
//! odd rotation, 2 the even one. A decoding error leaves no way to find the next frame's start,
//! so a link that sends one must be closed.

use umbra_sphinx::{Packet, PacketSize};

use crate::err::FrameError;

/// Packet type byte of a Sphinx packet.
const PACKET_TYPE_MIX: u8 = 0;

/// The frame format versions Umbra speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameVersion {
    /// Three-byte header, no key rotation (what Nym nodes send by default).
    V7,
    /// Four-byte header with the key rotation.
    V8,
}

/// Which of a node's two Sphinx keys a packet was built for, by the parity of the key
/// rotation's number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeyRotation {
    /// Not said (every v7 frame): the node tries its current key, then the previous one.
    #[default]
    Unknown,
    /// An odd-numbered rotation.
    Odd,
    /// An even-numbered rotation.
    Even,
}

impl KeyRotation {
    /// The rotation of the key with this rotation number.
    pub const fn of(rotation: u32) -> KeyRotation {
        if rotation.is_multiple_of(2) {
            KeyRotation::Even
        } else {
            KeyRotation::Odd
        }
    }

    const fn to_byte(self) -> u8 {
        match self {
            KeyRotation::Unknown => 0,
            KeyRotation::Odd => 1,
            KeyRotation::Even => 2,
        }
    }

    const fn from_byte(byte: u8) -> Result<KeyRotation, FrameError> {
        match byte {
            0 => Ok(KeyRotation::Unknown),
            1 => Ok(KeyRotation::Odd),
            2 => Ok(KeyRotation::Even),
            byte => Err(FrameError::UnknownKeyRotation { byte }),
        }
    }
}

/// A frame's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    version: FrameVersion,
    size: PacketSize,
    key_rotation: KeyRotation,
}

impl FrameHeader {
    /// A version 7 header (no key rotation).
    pub const fn v7(size: PacketSize) -> Self {
        FrameHeader {
            version: FrameVersion::V7,
            size,
            key_rotation: KeyRotation::Unknown,
        }
    }

    /// A version 8 header.
    pub const fn v8(size: PacketSize, key_rotation: KeyRotation) -> Self {
        FrameHeader {
            version: FrameVersion::V8,
            size,
            key_rotation,
        }
    }

    /// The header's format version.
    pub const fn version(&self) -> FrameVersion {
        self.version
    }

    /// The size of the packet that follows.
    pub const fn size(&self) -> PacketSize {
        self.size
    }

    /// The key rotation the packet was built for (always unknown in version 7).
    pub const fn key_rotation(&self) -> KeyRotation {
        self.key_rotation
    }

    /// Bytes of the header itself.
    pub const fn header_len(&self) -> usize {
        match self.version {
            FrameVersion::V7 => 3,
            FrameVersion::V8 => 4,
        }
    }

    /// Bytes of the whole frame, header and packet.
    pub const fn frame_len(&self) -> usize {
        self.header_len() + self.size.packet_len()
    }
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The header.
    pub header: FrameHeader,
    /// The Sphinx packet.
    pub packet: Packet,
}

/// What [`decode`] found at the start of a buffer.
#[derive(Debug)]
pub enum Decoded {
    /// A whole frame, `len` bytes long.
    Frame {
        /// The frame.
        frame: Frame,
        /// Bytes it took; drop them from the buffer.
        len: usize,
    },
    /// Not enough bytes yet: at least `needed` more.
    Incomplete {
        /// The fewest bytes that could complete the frame (or its header).
        needed: usize,
    },
}

/// Reads the frame at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Decoded, FrameError> {
    let header = match decode_header(bytes)? {
        Ok(header) => header,
        Err(needed) => return Ok(Decoded::Incomplete { needed }),
    };
    let len = header.frame_len();
    let Some(packet) = bytes.get(header.header_len()..len) else {
        return Ok(Decoded::Incomplete {
            needed: len - bytes.len(),
        });
    };
    let packet = Packet::from_bytes(packet.to_vec()).map_err(|_| FrameError::SizeMismatch)?;
    Ok(Decoded::Frame {
        frame: Frame { header, packet },
        len,
    })
}

/// Reads a frame header: the header, or how many more bytes it needs.
pub fn decode_header(bytes: &[u8]) -> Result<Result<FrameHeader, usize>, FrameError> {
    let Some(&version) = bytes.first() else {
        return Ok(Err(1));
    };
    let header_len = match version {
        7 => 3,
        8 => 4,
        byte => return Err(FrameError::UnknownVersion { byte }),
    };
    let Some(header) = bytes.get(..header_len) else {
        return Ok(Err(header_len - bytes.len()));
    };
    let size = size_from_tag(header[1])?;
    if header[2] != PACKET_TYPE_MIX {
        return Err(FrameError::UnsupportedPacketType {
            packet_type: header[2],
        });
    }
    Ok(Ok(match header.get(3) {
        None => FrameHeader::v7(size),
        Some(&rotation) => FrameHeader::v8(size, KeyRotation::from_byte(rotation)?),
    }))
}

/// Appends the frame of `packet` under `header` to `out`. The header's size must be the
/// packet's (the frame would be unreadable otherwise), so the packet's own size is written.
pub fn encode(header: FrameHeader, packet: &Packet, out: &mut Vec<u8>) {
    let size = packet.size();
    out.reserve(header.header_len() + size.packet_len());
    match header.version {
        FrameVersion::V7 => out.extend_from_slice(&[7, size_tag(size), PACKET_TYPE_MIX]),
        FrameVersion::V8 => out.extend_from_slice(&[
            8,
            size_tag(size),
            PACKET_TYPE_MIX,
            header.key_rotation.to_byte(),
        ]),
    }
    out.extend_from_slice(packet.as_bytes());
}

/// Nym's tag for a packet size.
pub const fn size_tag(size: PacketSize) -> u8 {
    match size {
        PacketSize::Regular => 1,
        PacketSize::Ack => 2,
        PacketSize::Extended32 => 3,
        PacketSize::Extended8 => 4,
        PacketSize::Extended16 => 5,
    }
}

/// The packet size of a Nym size tag.
pub const fn size_from_tag(tag: u8) -> Result<PacketSize, FrameError> {
    match tag {
        1 => Ok(PacketSize::Regular),
        2 => Ok(PacketSize::Ack),
        3 => Ok(PacketSize::Extended32),
        4 => Ok(PacketSize::Extended8),
        5 => Ok(PacketSize::Extended16),
        tag => Err(FrameError::UnknownSizeTag { tag }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packet(size: PacketSize, fill: u8) -> Packet {
        Packet::from_bytes(vec![fill; size.packet_len()]).unwrap()
    }

    fn header() -> impl Strategy<Value = FrameHeader> {
        let size = prop::sample::select(PacketSize::ALL.to_vec());
        let rotation = prop::sample::select(vec![
            KeyRotation::Unknown,
            KeyRotation::Odd,
            KeyRotation::Even,
        ]);
        (size, rotation, any::<bool>()).prop_map(|(size, rotation, v8)| {
            if v8 {
                FrameHeader::v8(size, rotation)
            } else {
                FrameHeader::v7(size)
            }
        })
    }

    #[test]
    fn headers_are_nyms() {
        let mut out = Vec::new();
        encode(
            FrameHeader::v7(PacketSize::Regular),
            &packet(PacketSize::Regular, 0),
            &mut out,
        );
        assert_eq!(&out[..3], &[7, 1, 0]);
        assert_eq!(out.len(), 2416);
        out.clear();
        encode(
            FrameHeader::v8(PacketSize::Extended32, KeyRotation::Even),
            &packet(PacketSize::Extended32, 0),
            &mut out,
        );
        assert_eq!(&out[..4], &[8, 3, 0, 2]);
        assert_eq!(out.len(), 33137);
    }

    #[test]
    fn unknown_bytes_are_refused_with_what_was_wrong() {
        assert_eq!(
            decode(&[6, 1, 0]).unwrap_err(),
            FrameError::UnknownVersion { byte: 6 }
        );
        assert_eq!(
            decode(&[7, 6, 0]).unwrap_err(),
            FrameError::UnknownSizeTag { tag: 6 }
        );
        assert_eq!(
            decode(&[7, 0, 0]).unwrap_err(),
            FrameError::UnknownSizeTag { tag: 0 }
        );
        assert_eq!(
            decode(&[7, 1, 2]).unwrap_err(),
            FrameError::UnsupportedPacketType { packet_type: 2 }
        );
        assert_eq!(
            decode(&[8, 1, 0, 3]).unwrap_err(),
            FrameError::UnknownKeyRotation { byte: 3 }
        );
    }

    #[test]
    fn rotation_parity() {
        assert_eq!(KeyRotation::of(0), KeyRotation::Even);
        assert_eq!(KeyRotation::of(7), KeyRotation::Odd);
    }

    proptest! {
        #[test]
        fn frames_round_trip(header in header(), fill in any::<u8>()) {
            let packet = packet(header.size(), fill);
            let mut bytes = Vec::new();
            encode(header, &packet, &mut bytes);
            prop_assert_eq!(bytes.len(), header.frame_len());
            match decode(&bytes).unwrap() {
                Decoded::Frame { frame, len } => {
                    prop_assert_eq!(len, bytes.len());
                    prop_assert_eq!(frame, Frame { header, packet });
                }
                Decoded::Incomplete { .. } => prop_assert!(false, "complete frame read as incomplete"),
            }
        }

        #[test]
        fn every_prefix_asks_for_exactly_what_is_missing(header in header(), cut in any::<prop::sample::Index>()) {
            let mut bytes = Vec::new();
            encode(header, &packet(header.size(), 1), &mut bytes);
            let cut = cut.index(bytes.len());
            match decode(&bytes[..cut]).unwrap() {
                Decoded::Incomplete { needed } => {
                    prop_assert!(needed >= 1 && cut + needed <= bytes.len());
                    if cut >= header.header_len() {
                        prop_assert_eq!(cut + needed, bytes.len());
                    }
                }
                Decoded::Frame { .. } => prop_assert!(false, "a prefix decoded as a frame"),
            }
        }

        #[test]
        fn frames_decode_back_to_back(headers in prop::collection::vec(header(), 1..4)) {
            let mut stream = Vec::new();
            for (i, header) in headers.iter().enumerate() {
                encode(*header, &packet(header.size(), i as u8), &mut stream);
            }
            let mut at = 0;
            for (i, header) in headers.iter().enumerate() {
                let Decoded::Frame { frame, len } = decode(&stream[at..]).unwrap() else {
                    return Err(TestCaseError::fail("incomplete"));
                };
                prop_assert_eq!(frame.header, *header);
                prop_assert!(frame.packet.as_bytes().iter().all(|&b| b == i as u8));
                at += len;
            }
            prop_assert_eq!(at, stream.len());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode(&bytes);
        }
    }
}
