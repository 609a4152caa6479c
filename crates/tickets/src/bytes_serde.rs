//! Serde as one byte string, through a type's own binary encoding: storage formats and the
//! wire then hold the same bytes.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, SeqAccess, Visitor};

/// Deserialises a byte string (or a sequence of bytes, for formats without byte strings) and
/// hands it to `parse`.
pub(crate) fn deserialize<'de, D, T, E>(
    deserializer: D,
    expecting: &'static str,
    parse: fn(&[u8]) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    E: fmt::Display,
{
    let bytes = deserializer.deserialize_bytes(BytesVisitor {
        expecting,
        _marker: PhantomData,
    })?;
    parse(&bytes).map_err(de::Error::custom)
}

struct BytesVisitor {
    expecting: &'static str,
    _marker: PhantomData<()>,
}

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

/// Lower-case hex of a byte string (for `Display`).
pub(crate) fn hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}
