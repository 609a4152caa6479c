//! Byte strings in serde: lower-case hex in JSON (tickets and RSA keys are too long for
//! base58 to be pleasant), raw bytes in the canonical encoding.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

/// `bytes` as lower-case hex.
pub(crate) fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// The bytes of hex `text` (either case), or what is wrong with it.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, &'static str> {
    fn digit(c: u8) -> Result<u8, &'static str> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err("a character that is not a hex digit"),
        }
    }
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return Err("an odd number of hex digits");
    }
    text.chunks_exact(2)
        .map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// `#[serde(with = "crate::hex::bytes")]` for a `Vec<u8>`.
pub(crate) mod bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(value: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&encode(value))
        } else {
            serializer.serialize_bytes(value)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            decode(&text).map_err(|what| D::Error::custom(format!("bad hex: {what}")))
        } else {
            <Vec<u8>>::deserialize(deserializer)
        }
    }
}

/// `#[serde(with = "crate::hex::list")]` for a `Vec<Vec<u8>>`.
pub(crate) mod list {
    use serde::ser::SerializeSeq;

    use super::*;

    struct Borrowed<'a>(&'a [u8]);

    impl serde::Serialize for Borrowed<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            super::bytes::serialize(self.0, serializer)
        }
    }

    #[derive(serde::Deserialize)]
    struct Item(#[serde(with = "super::bytes")] Vec<u8>);

    pub(crate) fn serialize<S: Serializer>(
        value: &[Vec<u8>],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(value.len()))?;
        for item in value {
            seq.serialize_element(&Borrowed(item))?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        let items = <Vec<Item>>::deserialize(deserializer)?;
        Ok(items.into_iter().map(|Item(bytes)| bytes).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(encode(&bytes), "00017f80ff");
        assert_eq!(decode("00017F80ff").unwrap(), bytes);
        assert!(decode("0").is_err());
        assert!(decode("zz").is_err());
    }
}
