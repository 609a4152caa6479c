//! The length prefix of the Noise transport messages between nodes.
//!
//! A link is a TCP stream of `length (u16, big-endian) ‖ Noise message` records, as the Noise
//! specification suggests for stream transports (§3). The messages' plaintexts, concatenated,
//! are a stream of [`crate::frame`]s.

use crate::err::LinkError;

/// The longest Noise message (the Noise specification's limit).
pub const MAX_MESSAGE_LEN: usize = 65535;
/// The authentication tag every Noise transport message carries.
pub const TAG_LEN: usize = 16;
/// The most plaintext one transport message carries.
pub const MAX_PLAINTEXT_LEN: usize = MAX_MESSAGE_LEN - TAG_LEN;

/// Where the next message in a buffer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// The message is `bytes[2..len]`; drop `len` bytes afterwards.
    Message {
        /// Bytes of the record, prefix included.
        len: usize,
    },
    /// At least `needed` more bytes are needed.
    Incomplete {
        /// Bytes missing.
        needed: usize,
    },
}

/// The length of the message a record prefix announces, checked.
pub fn message_len(prefix: [u8; 2]) -> Result<usize, LinkError> {
    let len = usize::from(u16::from_be_bytes(prefix));
    if len < TAG_LEN {
        return Err(LinkError::MessageTooShort { len });
    }
    Ok(len)
}

/// Finds the record at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Record, LinkError> {
    let Some(prefix) = bytes.first_chunk::<2>() else {
        return Ok(Record::Incomplete {
            needed: 2 - bytes.len(),
        });
    };
    let len = 2 + message_len(*prefix)?;
    if bytes.len() < len {
        return Ok(Record::Incomplete {
            needed: len - bytes.len(),
        });
    }
    Ok(Record::Message { len })
}

/// The prefix of a message of `message_len` bytes (at most [`MAX_MESSAGE_LEN`]).
pub fn prefix(message_len: usize) -> Result<[u8; 2], LinkError> {
    u16::try_from(message_len)
        .map(u16::to_be_bytes)
        .map_err(|_| LinkError::MessageTooLong { len: message_len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_found_and_bad_lengths_refused() {
        assert_eq!(decode(&[]), Ok(Record::Incomplete { needed: 2 }));
        assert_eq!(decode(&[0]), Ok(Record::Incomplete { needed: 1 }));
        assert_eq!(
            decode(&[0, 20, 1, 2]),
            Ok(Record::Incomplete { needed: 18 })
        );
        let mut record = vec![0, 20];
        record.extend([9; 20]);
        assert_eq!(decode(&record), Ok(Record::Message { len: 22 }));
        assert_eq!(
            decode(&[0, 3, 0, 0, 0]),
            Err(LinkError::MessageTooShort { len: 3 })
        );
        assert_eq!(prefix(65535), Ok([0xff, 0xff]));
        assert_eq!(prefix(65536), Err(LinkError::MessageTooLong { len: 65536 }));
    }
}
