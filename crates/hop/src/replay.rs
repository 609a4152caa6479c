//! The replay filter: a Bloom filter over the replay tags of one key rotation.
//!
//! A node remembers the tag of every packet it processes under a key; a packet whose tag is
//! already there is a replay and is dropped before the expensive half of processing. A Bloom
//! filter never forgets a tag (no false negatives) and wrongly calls a fresh packet a replay
//! with a probability fixed when it is sized: Nym sizes it for 2000 packets/s over 25 hours at
//! one in 100,000, which takes 539 MB. Each key rotation has its own filter, dropped with the
//! key.
//!
//! The filter is split into 64 shards, each behind its own lock, so the threads that process
//! packets rarely wait for each other. A tag is a uniformly random 32 bytes (the output of a
//! key derivation), so it is its own hash: 8 bytes pick the shard, 16 more give the positions
//! by double hashing.
//!
//! Saved as: magic ‖ version ‖ rotation ‖ hashes ‖ shards ‖ bits per shard ‖ tags inserted ‖
//! the words ‖ SHA-256 of all that. Loading checks every part.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use umbra_sphinx::ReplayTag;

use crate::err::{ConfigError, ReplayFilterError};

const MAGIC: &[u8; 12] = b"UMBRA-REPLAY";
const FORMAT_VERSION: u32 = 1;
const SHARDS: usize = 64;
/// The largest filter we agree to build: 64 GiB.
const MAX_BITS: u64 = 1 << 39;

/// How big a replay filter is: how many tags it must hold and how often it may err.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayFilterConfig {
    /// Packets per second the node expects to process at most (Nym: 2000).
    pub expected_packets_per_second: u64,
    /// How long the filter must hold tags: at least a key rotation's life (Nym: 25 h).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// The chance that a fresh packet is taken for a replay once the filter is full (Nym: 1e-5).
    pub false_positive_rate: f64,
}

impl Default for ReplayFilterConfig {
    fn default() -> Self {
        ReplayFilterConfig {
            expected_packets_per_second: 2000,
            retention: Duration::from_secs(25 * 3600),
            false_positive_rate: 1e-5,
        }
    }
}

impl ReplayFilterConfig {
    /// The filter's size in bits and its number of hash positions per tag.
    pub fn dimensions(&self) -> Result<(u64, u32), ConfigError> {
        let p = self.false_positive_rate;
        if !(p > 0.0 && p < 1.0) {
            return Err(ConfigError::new(
                "replay.false_positive_rate",
                format!("{p} is not between 0 and 1 (Nym uses 1e-5)"),
            ));
        }
        let tags = self.expected_packets_per_second as f64 * self.retention.as_secs_f64();
        if tags < 1.0 {
            return Err(ConfigError::new(
                "replay.expected_packets_per_second",
                "the filter must hold at least one tag: give a rate above 0 and a retention of at least 1s",
            ));
        }
        let ln2 = std::f64::consts::LN_2;
        let bits = (-(tags * p.ln()) / (ln2 * ln2)).ceil();
        if bits > MAX_BITS as f64 {
            return Err(ConfigError::new(
                "replay",
                format!(
                    "the filter would take {:.0} GiB; lower the rate or the retention, or raise the false-positive rate",
                    bits / 8.0 / (1u64 << 30) as f64
                ),
            ));
        }
        let hashes = (-p.log2()).round().max(1.0) as u32;
        Ok((bits as u64, hashes))
    }

    /// Bytes of memory a filter of this size takes.
    pub fn memory_bytes(&self) -> Result<u64, ConfigError> {
        let (bits, _) = self.dimensions()?;
        Ok(bits.div_ceil(64 * SHARDS as u64) * SHARDS as u64 * 8)
    }
}

/// The replay filter of one key rotation. Shared by every thread that processes packets.
#[derive(Debug)]
pub struct ReplayFilter {
    rotation: u32,
    hashes: u32,
    shard_bits: u64,
    shards: Box<[Mutex<Box<[u64]>>]>,
    inserted: AtomicU64,
}

impl ReplayFilter {
    /// An empty filter for `rotation`.
    pub fn new(rotation: u32, config: &ReplayFilterConfig) -> Result<ReplayFilter, ConfigError> {
        let (bits, hashes) = config.dimensions()?;
        let words = bits.div_ceil(64 * SHARDS as u64).max(1);
        Ok(ReplayFilter::empty(rotation, hashes, words))
    }

    fn empty(rotation: u32, hashes: u32, words_per_shard: u64) -> ReplayFilter {
        // zeroed allocations come straight from the OS, which supplies the pages lazily
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(vec![0u64; words_per_shard as usize].into_boxed_slice()))
            .collect();
        ReplayFilter {
            rotation,
            hashes,
            shard_bits: words_per_shard * 64,
            shards,
            inserted: AtomicU64::new(0),
        }
    }

    /// The key rotation whose tags the filter holds.
    pub fn rotation(&self) -> u32 {
        self.rotation
    }

    /// Tags inserted so far.
    pub fn inserted(&self) -> u64 {
        self.inserted.load(Ordering::Relaxed)
    }

    /// Bytes of memory the filter takes.
    pub fn memory_bytes(&self) -> u64 {
        self.shard_bits / 8 * SHARDS as u64
    }

    /// Remembers `tag`; says whether it was (probably) there already.
    pub fn check_and_insert(&self, tag: &ReplayTag) -> bool {
        self.probe(tag, true)
    }

    /// Whether `tag` is (probably) there, without remembering it.
    pub fn contains(&self, tag: &ReplayTag) -> bool {
        self.probe(tag, false)
    }

    fn probe(&self, tag: &ReplayTag, insert: bool) -> bool {
        let bytes = tag.as_bytes();
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        let (h1, h2, pick) = (word(0), word(1) | 1, word(2));
        let shard = &self.shards[(pick % SHARDS as u64) as usize];
        let mut words = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let mut seen = true;
        for i in 0..u64::from(self.hashes) {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % self.shard_bits;
            let (index, mask) = ((bit / 64) as usize, 1u64 << (bit % 64));
            if let Some(word) = words.get_mut(index) {
                seen &= *word & mask != 0;
                if insert {
                    *word |= mask;
                }
            }
        }
        drop(words);
        if insert && !seen {
            self.inserted.fetch_add(1, Ordering::Relaxed);
        }
        seen
    }

    /// Writes the filter. Tags inserted while it is written may or may not be included.
    pub fn save(&self, out: &mut impl Write) -> io::Result<()> {
        let mut out = HashingWriter {
            inner: out,
            hash: Sha256::new(),
        };
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        out.write_all(&self.rotation.to_le_bytes())?;
        out.write_all(&self.hashes.to_le_bytes())?;
        out.write_all(&(SHARDS as u32).to_le_bytes())?;
        out.write_all(&self.shard_bits.to_le_bytes())?;
        out.write_all(&self.inserted().to_le_bytes())?;
        let mut buffer = Vec::new();
        for shard in self.shards.iter() {
            // copy under the lock, write without it
            buffer.clear();
            let words = shard.lock().unwrap_or_else(PoisonError::into_inner);
            buffer.extend(words.iter().flat_map(|word| word.to_le_bytes()));
            drop(words);
            out.write_all(&buffer)?;
        }
        let digest = out.hash.finalize();
        out.inner.write_all(&digest)?;
        out.inner.flush()
    }

    /// Reads a filter written by [`ReplayFilter::save`], checking its every part.
    pub fn load(input: &mut impl Read) -> Result<ReplayFilter, ReplayFilterError> {
        let mut input = HashingReader {
            inner: input,
            hash: Sha256::new(),
        };
        let mut magic = [0u8; 12];
        input
            .read_exact(&mut magic)
            .map_err(ReplayFilterError::read)?;
        if &magic != MAGIC {
            return Err(ReplayFilterError::NotAFilter);
        }
        let version = read_u32(&mut input)?;
        if version != FORMAT_VERSION {
            return Err(ReplayFilterError::UnknownFormat { version });
        }
        let rotation = read_u32(&mut input)?;
        let hashes = read_u32(&mut input)?;
        let shards = read_u32(&mut input)?;
        let shard_bits = read_u64(&mut input)?;
        let inserted = read_u64(&mut input)?;
        let fits = shards as usize == SHARDS
            && (1..=64).contains(&hashes)
            && shard_bits > 0
            && shard_bits % 64 == 0
            && shard_bits * SHARDS as u64 <= MAX_BITS;
        if !fits {
            return Err(ReplayFilterError::Garbled("implausible dimensions"));
        }
        let filter = ReplayFilter::empty(rotation, hashes, shard_bits / 64);
        filter.inserted.store(inserted, Ordering::Relaxed);
        let mut buffer = vec![0u8; (shard_bits / 8) as usize];
        for shard in filter.shards.iter() {
            input
                .read_exact(&mut buffer)
                .map_err(ReplayFilterError::read)?;
            let mut words = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for (word, bytes) in words.iter_mut().zip(buffer.chunks_exact(8)) {
                let mut w = [0u8; 8];
                w.copy_from_slice(bytes);
                *word = u64::from_le_bytes(w);
            }
        }
        let computed = input.hash.finalize();
        let mut stored = [0u8; 32];
        input
            .inner
            .read_exact(&mut stored)
            .map_err(ReplayFilterError::read)?;
        if computed.as_slice() != stored {
            return Err(ReplayFilterError::Garbled("checksum does not match"));
        }
        let mut trailing = [0u8; 1];
        if input
            .inner
            .read(&mut trailing)
            .map_err(ReplayFilterError::read)?
            != 0
        {
            return Err(ReplayFilterError::Garbled("bytes after the checksum"));
        }
        Ok(filter)
    }
}

fn read_u32(input: &mut impl Read) -> Result<u32, ReplayFilterError> {
    let mut bytes = [0u8; 4];
    input
        .read_exact(&mut bytes)
        .map_err(ReplayFilterError::read)?;
    Ok(u32::from_le_bytes(bytes))
}

fn read_u64(input: &mut impl Read) -> Result<u64, ReplayFilterError> {
    let mut bytes = [0u8; 8];
    input
        .read_exact(&mut bytes)
        .map_err(ReplayFilterError::read)?;
    Ok(u64::from_le_bytes(bytes))
}

struct HashingWriter<'a, W> {
    inner: &'a mut W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hash.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct HashingReader<'a, R> {
    inner: &'a mut R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hash.update(&buf[..read]);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(i: u64) -> ReplayTag {
        // what a key derivation gives: uniformly random bytes
        ReplayTag::from_bytes(Sha256::digest(i.to_le_bytes()).into())
    }

    fn small() -> ReplayFilterConfig {
        ReplayFilterConfig {
            expected_packets_per_second: 10,
            retention: Duration::from_secs(1000),
            false_positive_rate: 1e-4,
        }
    }

    #[test]
    fn nym_defaults_size_the_filter_as_nym_does() {
        let (bits, hashes) = ReplayFilterConfig::default().dimensions().unwrap();
        assert_eq!(hashes, 17);
        // 2000/s for 25 h at 1e-5: 180 million tags, 4.3 billion bits, 539 MB
        assert!((4_300_000_000..4_320_000_000).contains(&bits), "{bits}");
    }

    #[test]
    fn it_remembers_every_tag_and_rarely_invents_one() {
        let filter = ReplayFilter::new(7, &small()).unwrap();
        for i in 0..10_000 {
            assert!(
                !filter.check_and_insert(&tag(i)) || i > 0,
                "the first tag is new"
            );
        }
        for i in 0..10_000 {
            assert!(filter.check_and_insert(&tag(i)), "tag {i} forgotten");
        }
        // full to its capacity, the filter errs at about the configured rate, 1e-4
        let false_positives = (10_000..1_010_000)
            .filter(|&i| filter.contains(&tag(i)))
            .count();
        assert!(
            (20..400).contains(&false_positives),
            "{false_positives} false positives in 1M"
        );
    }

    #[test]
    fn saved_filters_load_with_every_tag() {
        let filter = ReplayFilter::new(3, &small()).unwrap();
        for i in 0..1000 {
            filter.check_and_insert(&tag(i));
        }
        let mut bytes = Vec::new();
        filter.save(&mut bytes).unwrap();
        let loaded = ReplayFilter::load(&mut bytes.as_slice()).unwrap();
        assert_eq!(loaded.rotation(), 3);
        assert_eq!(loaded.inserted(), filter.inserted());
        assert!((0..1000).all(|i| loaded.check_and_insert(&tag(i))));
    }

    #[test]
    fn damaged_files_are_refused_with_a_reason() {
        let filter = ReplayFilter::new(3, &small()).unwrap();
        filter.check_and_insert(&tag(1));
        let mut bytes = Vec::new();
        filter.save(&mut bytes).unwrap();
        let load = |bytes: &[u8]| ReplayFilter::load(&mut &bytes[..]).unwrap_err().to_string();

        assert!(load(b"hello").contains("too short"), "{}", load(b"hello"));
        assert!(load(&[b'x'; 100]).contains("not a replay filter"));
        let mut flipped = bytes.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 1;
        assert!(load(&flipped).contains("checksum"));
        assert!(load(&bytes[..bytes.len() - 1]).contains("too short"));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(load(&longer).contains("after the checksum"));
        let mut version = bytes;
        version[12] = 9;
        assert!(load(&version).contains("format 9"));
    }

    #[test]
    fn bad_sizes_say_how_to_fix_them() {
        let mut config = small();
        config.false_positive_rate = 0.0;
        assert!(
            config
                .dimensions()
                .unwrap_err()
                .to_string()
                .contains("false_positive_rate")
        );
        config.false_positive_rate = 1e-9;
        config.expected_packets_per_second = 1_000_000_000;
        assert!(config.dimensions().unwrap_err().to_string().contains("GiB"));
        config.expected_packets_per_second = 0;
        assert!(
            config
                .dimensions()
                .unwrap_err()
                .to_string()
                .contains("at least one tag")
        );
    }
}
