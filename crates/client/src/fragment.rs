//! Fragments: a message cut into pieces that each fit a packet, and put back together.
//!
//! ```text
//! fragment = message id (16, random) ‖ index (u32) ‖ count (u32) ‖ piece
//! ```
//!
//! Reassembly takes fragments in any order and ignores duplicates (retransmissions). Memory is
//! bounded: a message may not be larger than the configured maximum, all incomplete messages
//! together may not hold more than a budget (the stalest are dropped first), and a message
//! that gets no fragment for a while is dropped. The budget counts what an incomplete message
//! costs, not only its bytes: a first fragment that announces ten thousand pieces makes room
//! for them (issue 13.3).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Bytes of a fragment header.
pub(crate) const HEADER_LEN: usize = 16 + 4 + 4;

/// What an incomplete message costs besides its pieces' bytes: its entry, and a slot for each
/// piece it announces.
const ENTRY_COST: usize = 64;
const SLOT_COST: usize = std::mem::size_of::<Option<Vec<u8>>>();
/// Messages completed recently and remembered (to ignore late duplicates), at most.
const MAX_DONE: usize = 65_536;

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
    /// Bytes of its pieces.
    bytes: usize,
    /// What it costs in all (see [`ENTRY_COST`]).
    cost: usize,
    last: Instant,
}

/// Messages being put back together.
pub(crate) struct Reassembler {
    limits: Limits,
    incomplete: HashMap<[u8; 16], Incomplete>,
    /// What the incomplete messages cost together.
    bytes: usize,
    /// Messages completed recently, so late duplicates of their fragments are ignored; in
    /// `done_order` oldest first.
    done: HashSet<[u8; 16]>,
    done_order: VecDeque<([u8; 16], Instant)>,
    dropped: u64,
}

impl Reassembler {
    pub(crate) fn new(limits: Limits) -> Self {
        Reassembler {
            limits,
            incomplete: HashMap::new(),
            bytes: 0,
            done: HashSet::new(),
            done_order: VecDeque::new(),
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
        if self.done.contains(&fragment.message) {
            return Ok(None);
        }
        if count > self.limits.max_pieces {
            return Err(Refused::TooLarge);
        }
        let entry = match self.incomplete.entry(fragment.message) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let cost = ENTRY_COST + SLOT_COST * count as usize;
                self.bytes += cost;
                entry.insert(Incomplete {
                    pieces: vec![None; count as usize],
                    received: 0,
                    bytes: 0,
                    cost,
                    last: now,
                })
            }
        };
        if entry.pieces.len() != count as usize {
            return Err(Refused::Inconsistent);
        }
        entry.last = now;
        let Some(slot) = entry.pieces.get_mut(fragment.index as usize) else {
            return Err(Refused::Inconsistent);
        };
        if slot.is_some() {
            return Ok(None);
        }
        *slot = Some(piece.to_vec());
        entry.received += 1;
        entry.bytes += piece.len();
        entry.cost += piece.len();
        self.bytes += piece.len();
        if entry.received == count {
            let Some(entry) = self.incomplete.remove(&fragment.message) else {
                return Ok(None);
            };
            self.bytes -= entry.cost;
            self.remember_done(fragment.message, now);
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
            self.bytes -= message.cost;
            self.dropped += 1;
        }
    }

    fn remember_done(&mut self, message: [u8; 16], now: Instant) {
        if self.done.insert(message) {
            self.done_order.push_back((message, now));
        }
        while self.done_order.len() > MAX_DONE {
            if let Some((oldest, _)) = self.done_order.pop_front() {
                self.done.remove(&oldest);
            }
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
                freed += message.cost;
            }
            keep
        });
        self.bytes -= freed;
        self.dropped += (before - self.incomplete.len()) as u64;
        while let Some(&(oldest, at)) = self.done_order.front() {
            if now.saturating_duration_since(at) < timeout * 2 {
                break;
            }
            self.done_order.pop_front();
            self.done.remove(&oldest);
        }
    }

    /// When [`Reassembler::expire`] next has something to do.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        let incomplete = self
            .incomplete
            .values()
            .map(|m| m.last + self.limits.timeout);
        let done = self
            .done_order
            .front()
            .map(|(_, at)| *at + self.limits.timeout * 2);
        incomplete.chain(done).min()
    }

    /// Incomplete messages given up on so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// What incomplete messages cost: their bytes and bookkeeping.
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
        // a message of two 100-byte pieces, half received, costs 100 bytes and bookkeeping
        let half = ENTRY_COST + 2 * SLOT_COST + 100;
        let limits = Limits {
            max_pieces: 4,
            budget: 2 * half + 50,
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
        assert_eq!(reassembler.held_bytes(), 2 * half);
        assert_eq!(reassembler.dropped(), 1);
        // the oldest went; the others wait until they time out
        reassembler.expire(t0 + Duration::from_secs(11));
        assert_eq!(reassembler.held_bytes(), half);
        reassembler.expire(t0 + Duration::from_secs(13));
        assert_eq!(reassembler.held_bytes(), 0);
        assert_eq!(reassembler.dropped(), 3);
    }

    #[test]
    fn empty_fragments_announcing_many_pieces_are_paid_for() {
        // issue 13.3: an empty first fragment of a message "of 10,000 pieces" made room for
        // them all (240 kB) and counted nothing, so a flood of them grew memory past the budget
        let limits = Limits {
            max_pieces: 10_000,
            budget: 1 << 20,
            timeout: Duration::from_secs(60),
        };
        let mut reassembler = Reassembler::new(limits);
        let t0 = Instant::now();
        for id in 0..1000u32 {
            let mut message = [0u8; 16];
            message[..4].copy_from_slice(&id.to_be_bytes());
            let at = FragmentRef { message, index: 0 };
            reassembler.insert(t0, at, 10_000, b"").unwrap();
        }
        let slots: usize = reassembler
            .incomplete
            .values()
            .map(|m| m.pieces.capacity() * SLOT_COST)
            .sum();
        assert!(
            slots <= 1 << 20,
            "{slots} bytes of slots for a 1 MiB budget"
        );
        assert!(reassembler.held_bytes() <= 1 << 20);
        assert!(reassembler.dropped() > 900);
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
