//! A queue of items each due at a time: a mix node's delayed packets, a simulator's events.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Items due at times `K`, taken earliest first, and in the order they were pushed among
/// those due at the same time.
///
/// The heap orders small keys (the time, a sequence number and a slot); the items wait in
/// slots that are reused. Sifting the heap then moves a few words per step whatever the
/// item's size — a packet with its next hop is over a hundred bytes.
#[derive(Debug)]
pub struct TimerQueue<K, T> {
    heap: BinaryHeap<Reverse<(K, u64, usize)>>,
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    seq: u64,
}

impl<K: Ord + Copy, T> Default for TimerQueue<K, T> {
    fn default() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }
}

impl<K: Ord + Copy, T> TimerQueue<K, T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `item`, due at `at`.
    pub fn push(&mut self, at: K, item: T) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(item);
                slot
            }
            None => {
                self.slots.push(Some(item));
                self.slots.len() - 1
            }
        };
        self.heap.push(Reverse((at, self.seq, slot)));
    }

    /// When the earliest item is due.
    pub fn next_at(&self) -> Option<K> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Takes the earliest item, with its time.
    pub fn pop(&mut self) -> Option<(K, T)> {
        let Reverse((at, _, slot)) = self.heap.pop()?;
        let item = self.slots.get_mut(slot)?.take()?;
        self.free.push(slot);
        Some((at, item))
    }

    /// Takes the earliest item if it is due at or before `now`.
    pub fn pop_due(&mut self, now: K) -> Option<(K, T)> {
        if self.next_at()? > now {
            return None;
        }
        self.pop()
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn earliest_first_and_ties_in_push_order() {
        let mut queue = TimerQueue::new();
        queue.push(5, "e");
        queue.push(1, "a");
        queue.push(3, "c1");
        queue.push(3, "c2");
        assert_eq!(queue.len(), 4);
        assert_eq!(queue.next_at(), Some(1));
        assert_eq!(queue.pop_due(0), None);
        assert_eq!(queue.pop_due(1), Some((1, "a")));
        assert_eq!(queue.pop_due(4), Some((3, "c1")));
        queue.push(3, "c3");
        assert_eq!(queue.pop(), Some((3, "c2")));
        assert_eq!(queue.pop(), Some((3, "c3")));
        assert_eq!(queue.pop(), Some((5, "e")));
        assert_eq!(queue.pop(), None);
        assert!(queue.is_empty());
    }

    #[test]
    fn slots_are_reused() {
        let mut queue = TimerQueue::new();
        for round in 0..100u64 {
            queue.push(round, round);
            queue.push(round, round);
            assert!(queue.pop().is_some());
            assert!(queue.pop().is_some());
        }
        assert!(queue.slots.len() <= 2, "{} slots", queue.slots.len());
    }

    proptest! {
        /// Whatever is pushed and popped, in any interleaving, comes out as a stable sort
        /// by time would give it.
        #[test]
        fn matches_a_stable_sort(ops in proptest::collection::vec((0u8..4, 0u32..20), 0..200)) {
            let mut queue = TimerQueue::new();
            let mut model: Vec<(u32, usize)> = Vec::new();
            for (n, (op, at)) in ops.into_iter().enumerate() {
                if op == 0 {
                    let got = queue.pop();
                    let want = model
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, (at, n))| (*at, *n))
                        .map(|(i, _)| i)
                        .map(|i| model.remove(i));
                    prop_assert_eq!(got, want);
                } else {
                    queue.push(at, n);
                    model.push((at, n));
                }
                prop_assert_eq!(queue.len(), model.len());
            }
        }
    }
}
