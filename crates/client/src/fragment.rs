//! Fragments: a message cut into pieces that each fit a packet, and put back together.
//!
//! ```text
//! fragment = message id (16, random) ‖ index (u32) ‖ count (u32) ‖ piece
//! ```
//!
//! Reassembly takes fragments in any order and ignores duplicates (retransmissions). Memory is
//! bounded: a message may not be larger than the configured maximum, all incomplete messages
//! together may not hold more than a budget (the stalest are dropped first), and a message
//! that gets no fragment for a while is dropped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Bytes of a fragment header.
pub(crate) const HEADER_LEN: usize = 16 + 4 + 4;

/// Which message a fragment belongs to and where in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FragmentRef {
    pub(crate) message: [u8; 16],
    pub(crate) index: u32,
}

/// Cuts `message` into fragments of at most `HEADER_LEN + piece_len` bytes. An empty message
/// is one empty fragment.
pub(crate) fn split(id: [u8; 16], message: &[u8], piece_len: usize) -> Vec<Vec<u8>> {
    let pieces: Vec<&[u8]> = if message.is_empty() {
        vec![&[]]
    } else {
        message.chunks(piece_len.max(1)).collect()
    };
    let count = pieces.len() as u32;
    pieces
        .into_iter()
        .enumerate()
        .map(|(index, piece)| {
            let mut fragment = Vec::with_capacity(HEADER_LEN + piece.len());
            fragment.extend_from_slice(&id);
            fragment.extend_from_slice(&(index as u32).to_be_bytes());
            fragment.extend_from_slice(&count.to_be_bytes());
            fragment.extend_from_slice(piece);
            fragment
        })
        .collect()
}

/// Reads a fragment: where it belongs, how many there are, and its piece.
pub(crate) fn parse(fragment: &[u8]) -> Option<(FragmentRef, u32, &[u8])> {
    let (id, rest) = fragment.split_first_chunk::<16>()?;
    let (index, rest) = rest.split_first_chunk::<4>()?;
    let (count, piece) = rest.split_first_chunk::<4>()?;
    let (index, count) = (u32::from_be_bytes(*index), u32::from_be_bytes(*count));
    (index < count).then_some((
        FragmentRef {
            message: *id,
            index,
        },
        count,
        piece,
    ))
}

/// Limits of reassembly.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The largest message, in pieces of `piece_len`.
    pub(crate) max_pieces: u32,
    /// Bytes all incomplete messages may hold together.
    pub(crate) budget: usize,
    /// How long an incomplete message waits for its next fragment.
    pub(crate) timeout: Duration,
}

/// Why a fragment was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The message would be larger than allowed.
    TooLarge,
    /// Its count disagrees with earlier fragments of the same message.
    Inconsistent,
}

struct Incomplete {
    pieces: Vec<Option<Vec<u8>>>,
    received: u32,
    bytes: usize,
    last: Instant,
}

/// Messages being put back together.
pub(crate) struct Reassembler {
    limits: Limits,
    incomplete: HashMap<[u8; 16], Incomplete>,
    bytes: usize,
    /// Messages completed recently, so late duplicates of their fragments are ignored.
    done: HashMap<[u8; 16], Instant>,
    dropped: u64,
}

impl Reassembler {
    pub(crate) fn new(limits: Limits) -> Self {
        Reassembler {
            limits,
            incomplete: HashMap::new(),
            bytes: 0,
            done: HashMap::new(),
            dropped: 0,
        }
    }

    /// Takes a fragment; returns the whole message when this was its last missing piece.
    pub(crate) fn insert(
        &mut self,
        now: Instant,
        fragment: FragmentRef,
        count: u32,
        piece: &[u8],
    ) -> Result<Option<Vec<u8>>, Refused> {
        if self.done.contains_key(&fragment.message) {
            return Ok(None);
        }
        if count > self.limits.max_pieces {
            return Err(Refused::TooLarge);
        }
        let entry = self
            .incomplete
            .entry(fragment.message)
            .or_insert_with(|| Incomplete {
                pieces: vec![None; count as usize],
                received: 0,
                bytes: 0,
                last: now,
            });
        if entry.pieces.len() != count as usize {
            return Err(Refused::Inconsistent);
        }
        entry.last = now;
        let slot = &mut entry.pieces[fragment.index as usize];
        if slot.is_some() {
            return Ok(None);
        }
        *slot = Some(piece.to_vec());
        entry.received += 1;
        entry.bytes += piece.len();
        self.bytes += piece.len();
        if entry.received == count {
            let Some(entry) = self.incomplete.remove(&fragment.message) else {
                return Ok(None);
            };
            self.bytes -= entry.bytes;
            self.done.insert(fragment.message, now);
            let mut message = Vec::with_capacity(entry.bytes);
            for piece in entry.pieces.into_iter().flatten() {
                message.extend_from_slice(&piece);
            }
            return Ok(Some(message));
        }
        while self.bytes > self.limits.budget {
            self.drop_stalest();
        }
        Ok(None)
    }

    fn drop_stalest(&mut self) {
        let Some(stalest) = self
            .incomplete
            .iter()
            .min_by_key(|(_, m)| m.last)
            .map(|(id, _)| *id)
        else {
            return;
        };
        if let Some(message) = self.incomplete.remove(&stalest) {
            self.bytes -= message.bytes;
            self.dropped += 1;
        }
    }

    /// Drops incomplete messages that waited too long, and forgets old completed ones.
    pub(crate) fn expire(&mut self, now: Instant) {
        let timeout = self.limits.timeout;
        let before = self.incomplete.len();
        let mut freed = 0;
        self.incomplete.retain(|_, message| {
            let keep = now.saturating_duration_since(message.last) < timeout;
            if !keep {
                freed += message.bytes;
            }
            keep
        });
        self.bytes -= freed;
        self.dropped += (before - self.incomplete.len()) as u64;
        self.done
            .retain(|_, at| now.saturating_duration_since(*at) < timeout * 2);
    }

    /// When [`Reassembler::expire`] next has something to do.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        let incomplete = self
            .incomplete
            .values()
            .map(|m| m.last + self.limits.timeout);
        let done = self.done.values().map(|at| *at + self.limits.timeout * 2);
        incomplete.chain(done).min()
    }

    /// Incomplete messages given up on so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes held for incomplete messages.
    pub(crate) fn held_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> Limits {
        Limits {
            max_pieces: 10_000,
            budget: 1 << 20,
            timeout: Duration::from_secs(60),
        }
    }

    /// A message, and its fragments in a random order with some sent twice.
    fn shuffled() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>)> {
        (
            prop::collection::vec(any::<u8>(), 0..5000),
            1..700usize,
            prop::collection::vec(any::<prop::sample::Index>(), 0..5),
        )
            .prop_flat_map(|(message, piece_len, duplicates)| {
                let mut fragments = split([3; 16], &message, piece_len);
                let again: Vec<Vec<u8>> = duplicates
                    .iter()
                    .map(|d| fragments[d.index(fragments.len())].clone())
                    .collect();
                fragments.extend(again);
                (Just(message), Just(fragments).prop_shuffle())
            })
    }

    proptest! {
        #[test]
        fn fragments_reassemble_in_any_order((message, shuffled) in shuffled()) {
            let mut reassembler = Reassembler::new(limits());
            let now = Instant::now();
            let mut whole = Vec::new();
            for fragment in shuffled {
                let (at, count, piece) = parse(&fragment).unwrap();
                if let Some(message) = reassembler.insert(now, at, count, piece).unwrap() {
                    whole.push(message);
                }
            }
            prop_assert_eq!(whole, vec![message]);
            prop_assert_eq!(reassembler.held_bytes(), 0);
        }
    }

    #[test]
    fn memory_is_bounded_and_stale_messages_expire() {
        let limits = Limits {
            max_pieces: 4,
            budget: 250,
            timeout: Duration::from_secs(10),
        };
        let mut reassembler = Reassembler::new(limits);
        let t0 = Instant::now();
        let big = split([1; 16], &[0u8; 500], 100);
        assert_eq!(big.len(), 5);
        let (at, count, piece) = parse(&big[0]).unwrap();
        assert_eq!(
            reassembler.insert(t0, at, count, piece),
            Err(Refused::TooLarge)
        );

        // three messages of two 100-byte pieces, first halves only: the budget keeps two
        for id in 0..3u8 {
            let fragments = split([id; 16], &[id; 200], 100);
            let (at, count, piece) = parse(&fragments[0]).unwrap();
            reassembler
                .insert(t0 + Duration::from_secs(u64::from(id)), at, count, piece)
                .unwrap();
        }
        assert!(reassembler.held_bytes() <= 250);
        assert_eq!(reassembler.dropped(), 1);
        // the oldest went; the others wait until they time out
        reassembler.expire(t0 + Duration::from_secs(11));
        assert_eq!(reassembler.held_bytes(), 100);
        reassembler.expire(t0 + Duration::from_secs(13));
        assert_eq!(reassembler.held_bytes(), 0);
        assert_eq!(reassembler.dropped(), 3);
    }

    #[test]
    fn malformed_fragments_are_refused() {
        assert!(parse(&[0; 23]).is_none());
        let mut bad = split([1; 16], b"x", 10).remove(0);
        bad[16..20].copy_from_slice(&5u32.to_be_bytes()); // index 5 of 1
        assert!(parse(&bad).is_none());
        let mut reassembler = Reassembler::new(limits());
        let two = split([2; 16], &[0; 20], 10);
        let (at, count, piece) = parse(&two[0]).unwrap();
        reassembler
            .insert(Instant::now(), at, count, piece)
            .unwrap();
        assert_eq!(
            reassembler.insert(
                Instant::now(),
                FragmentRef {
                    message: [2; 16],
                    index: 0
                },
                3,
                b""
            ),
            Err(Refused::Inconsistent)
        );
    }
}
