//! Carrying label distributions through the network the way Piotrowska's simulator does
//! (`aniampio/Simulator`, `classes/Node.py`): every pooling mix keeps one vector, the average of
//! the vectors of the packets that entered it since it was last empty
//! (`Node.add_pkt_in_pool`); a packet leaving takes a copy of it (`Node.forward_packet`); the
//! vector is forgotten when the pool runs dry. The exponential delay is memoryless, so every
//! packet inside is equally likely to be the next to leave, and the average stays the right
//! distribution for the packets still inside after one leaves.
//!
//! Places the adversary sees through — clients, gateways, and the mixes it controls — hand a
//! packet's vector on unchanged.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};

use crate::trace::{PacketId, Place};

/// A sparse distribution: `(label, probability)`, no label twice, no zero entry kept on purpose.
pub(crate) type Labels = Vec<(u32, f64)>;

/// Below this the pool's lazy scale is folded back into its weights (long busy periods shrink
/// it by `n/(n+1)` per arrival).
const RESCALE_BELOW: f64 = 1e-150;

/// One pooling mix: `count` packets inside, vector `scale * weight` (scaled lazily, so an
/// arrival costs the size of its own vector, not of the pool's).
#[derive(Debug, Default)]
struct Pool {
    count: u32,
    scale: f64,
    weight: Vec<f64>,
    active: Vec<u32>,
}

impl Pool {
    /// A packet with vector `labels` enters: the vector becomes `(n·v + p)/(n+1)`.
    fn arrive(&mut self, labels: &[(u32, f64)]) {
        if self.count == 0 {
            self.clear();
            self.scale = 1.0;
        } else {
            let n = f64::from(self.count);
            self.scale *= n / (n + 1.0);
            if self.scale < RESCALE_BELOW {
                self.rescale();
            }
        }
        self.count += 1;
        let share = 1.0 / (f64::from(self.count) * self.scale);
        for &(label, p) in labels {
            self.add(label, p * share);
        }
    }

    fn add(&mut self, label: u32, w: f64) {
        if w == 0.0 {
            return;
        }
        let i = label as usize;
        if i >= self.weight.len() {
            self.weight.resize(i + 1, 0.0);
        }
        if self.weight[i] == 0.0 {
            self.active.push(label);
        }
        self.weight[i] += w;
    }

    /// A packet leaves: `out` gets the vector, less the entries at or below `prune_below`,
    /// which are dropped from the pool too (their mass in the pool, `n·v`, goes to `pruned`).
    fn depart(&mut self, prune_below: f64, out: &mut Labels, pruned: &mut Vec<f64>) {
        out.clear();
        let n = f64::from(self.count);
        let mut i = 0;
        while i < self.active.len() {
            let label = self.active[i];
            let v = self.scale * self.weight[label as usize];
            if v <= prune_below {
                add_at(pruned, label, v * n);
                self.weight[label as usize] = 0.0;
                self.active.swap_remove(i);
            } else {
                out.push((label, v));
                i += 1;
            }
        }
        self.remove_one();
    }

    /// A packet ends inside the mix without a departure: the pool shrinks, the vector stays,
    /// and the mass `v` one packet stood for is lost (to `lost`).
    fn end_inside(&mut self, lost: &mut Vec<f64>) {
        for &label in &self.active {
            add_at(lost, label, self.scale * self.weight[label as usize]);
        }
        self.remove_one();
    }

    fn remove_one(&mut self) {
        self.count = self.count.saturating_sub(1);
        if self.count == 0 {
            self.clear();
        }
    }

    fn clear(&mut self) {
        for &label in &self.active {
            self.weight[label as usize] = 0.0;
        }
        self.active.clear();
        self.scale = 1.0;
    }

    /// Folds the scale into the weights (an entry that underflows to 0 leaves `active`, which
    /// holds exactly the labels of non-zero weight).
    fn rescale(&mut self) {
        let (scale, weight) = (self.scale, &mut self.weight);
        self.active.retain(|&label| {
            weight[label as usize] *= scale;
            weight[label as usize] != 0.0
        });
        self.scale = 1.0;
    }
}

/// `v[label] += x`, growing `v`.
pub(crate) fn add_at(v: &mut Vec<f64>, label: u32, x: f64) {
    let i = label as usize;
    if i >= v.len() {
        v.resize(i + 1, 0.0);
    }
    v[i] += x;
}

/// A packet due to enter a pool (links have latency; events come in order of departure).
#[derive(Debug)]
struct Arrival {
    at: f64,
    seq: u64,
    packet: PacketId,
    mix: Place,
}

impl PartialEq for Arrival {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Arrival {}
impl PartialOrd for Arrival {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Arrival {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.total_cmp(&other.at).then(self.seq.cmp(&other.seq))
    }
}

/// Label vectors flowing through pools; one per metric (each has its own labels).
#[derive(Debug)]
pub(crate) struct Flow {
    prune_below: f64,
    transparent: HashSet<Place>,
    pools: HashMap<Place, Pool>,
    carried: HashMap<PacketId, Labels>,
    arrivals: BinaryHeap<Reverse<Arrival>>,
    seq: u64,
    spare: Vec<Labels>,
    /// Mass dropped by pruning, by label.
    pub(crate) pruned: Vec<f64>,
    /// Mass that ended inside a mix (a packet taken there), by label.
    pub(crate) lost: Vec<f64>,
    /// Events that contradict the trace's contract (a departure from an empty pool).
    pub(crate) anomalies: u64,
}

impl Flow {
    /// Entries at or below `prune_below` are dropped when a packet leaves a pool; the mixes in
    /// `transparent` (the adversary's) show it which input became which output.
    pub(crate) fn new(prune_below: f64, transparent: HashSet<Place>) -> Self {
        Self {
            prune_below,
            transparent,
            pools: HashMap::new(),
            carried: HashMap::new(),
            arrivals: BinaryHeap::new(),
            seq: 0,
            spare: Vec::new(),
            pruned: Vec::new(),
            lost: Vec::new(),
            anomalies: 0,
        }
    }

    fn is_pool(&self, place: Place) -> bool {
        matches!(place, Place::Mix { .. }) && !self.transparent.contains(&place)
    }

    /// Lets every packet due at a pool by `now` enter it.
    fn advance(&mut self, now: f64) {
        while let Some(Reverse(next)) = self.arrivals.peek() {
            if next.at > now {
                break;
            }
            let (packet, mix) = (next.packet, next.mix);
            self.arrivals.pop();
            let labels = self.carried.remove(&packet);
            let pool = self.pools.entry(mix).or_default();
            pool.arrive(labels.as_deref().unwrap_or(&[]));
            if let Some(v) = labels {
                self.spare.push(v);
            }
        }
    }

    /// `packet` is made at `place` with vector `labels` (a mix's own packet enters its pool:
    /// the adversary cannot tell it from the packets inside).
    pub(crate) fn start(
        &mut self,
        at: f64,
        place: Place,
        packet: PacketId,
        labels: impl IntoIterator<Item = (u32, f64)>,
    ) {
        self.advance(at);
        let mut v = self.spare.pop().unwrap_or_default();
        v.clear();
        v.extend(labels);
        if self.is_pool(place) {
            self.pools.entry(place).or_default().arrive(&v);
            self.spare.push(v);
        } else {
            self.keep(packet, v);
        }
    }

    fn keep(&mut self, packet: PacketId, v: Labels) {
        if v.is_empty() {
            self.spare.push(v);
        } else if let Some(old) = self.carried.insert(packet, v) {
            self.spare.push(old);
        }
    }

    /// `packet` leaves `from` at `at` for `to`, where it arrives at `arrives`. Returns its
    /// vector as it leaves `from`.
    pub(crate) fn hop(
        &mut self,
        at: f64,
        arrives: f64,
        from: Place,
        to: Place,
        packet: PacketId,
    ) -> &[(u32, f64)] {
        self.advance(at);
        if self.is_pool(from) {
            self.depart(from, packet);
        }
        if self.is_pool(to) {
            self.seq += 1;
            let arrival = Arrival {
                at: arrives,
                seq: self.seq,
                packet,
                mix: to,
            };
            self.arrivals.push(Reverse(arrival));
        }
        self.labels(packet)
    }

    fn depart(&mut self, from: Place, packet: PacketId) {
        let mut v = self.spare.pop().unwrap_or_default();
        v.clear();
        match self.pools.get_mut(&from) {
            Some(pool) if pool.count > 0 => pool.depart(self.prune_below, &mut v, &mut self.pruned),
            _ => self.anomalies += 1,
        }
        self.keep(packet, v);
    }

    /// The vector `packet` carries now (empty if none, or if it is inside a pool).
    pub(crate) fn labels(&self, packet: PacketId) -> &[(u32, f64)] {
        self.carried.get(&packet).map_or(&[], Vec::as_slice)
    }

    /// `packet` ended at `place` at `at`.
    pub(crate) fn end(&mut self, at: f64, place: Place, packet: PacketId) {
        self.advance(at);
        if let Some(v) = self.carried.remove(&packet) {
            self.spare.push(v);
            return;
        }
        if self.is_pool(place) {
            match self.pools.get_mut(&place) {
                Some(pool) if pool.count > 0 => pool.end_inside(&mut self.lost),
                _ => self.anomalies += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIX: Place = Place::Mix { layer: 1, index: 0 };

    #[test]
    fn pool_averages_what_entered_and_forgets_when_empty() {
        let mut flow = Flow::new(0.0, HashSet::new());
        flow.start(0.0, Place::Client(0), PacketId(1), [(0, 1.0)]);
        flow.start(0.0, Place::Client(1), PacketId(2), [(1, 1.0)]);
        flow.hop(0.0, 1.0, Place::Client(0), MIX, PacketId(1));
        flow.hop(0.0, 2.0, Place::Client(1), MIX, PacketId(2));
        let mut out = flow
            .hop(3.0, 3.0, MIX, Place::Client(5), PacketId(2))
            .to_vec();
        out.sort_by_key(|e| e.0);
        assert_eq!(out, vec![(0, 0.5), (1, 0.5)]);
        let out = flow
            .hop(4.0, 4.0, MIX, Place::Client(5), PacketId(1))
            .to_vec();
        assert_eq!(out.len(), 2);
        // Empty now: the next packet starts afresh.
        flow.start(5.0, Place::Client(1), PacketId(3), [(1, 1.0)]);
        flow.hop(5.0, 5.0, Place::Client(1), MIX, PacketId(3));
        assert_eq!(
            flow.hop(6.0, 6.0, MIX, Place::Client(5), PacketId(3)),
            &[(1, 1.0)]
        );
        assert_eq!(flow.anomalies, 0);
    }

    #[test]
    fn pruning_and_lost_mass_are_counted() {
        let mut flow = Flow::new(0.3, HashSet::new());
        flow.start(0.0, Place::Client(0), PacketId(1), [(0, 1.0)]);
        flow.hop(0.0, 0.0, Place::Client(0), MIX, PacketId(1));
        for id in 2..5 {
            flow.start(0.0, Place::Client(1), PacketId(id), []);
            flow.hop(0.0, 0.0, Place::Client(1), MIX, PacketId(id));
        }
        // Four inside, 0.25 each for label 0: below 0.3, pruned (mass 1).
        assert!(
            flow.hop(1.0, 1.0, MIX, Place::Client(5), PacketId(4))
                .is_empty()
        );
        assert!((flow.pruned[0] - 1.0).abs() < 1e-12);
        let mut flow = Flow::new(0.0, HashSet::new());
        flow.start(0.0, Place::Client(0), PacketId(1), [(0, 1.0)]);
        flow.hop(0.0, 0.0, Place::Client(0), MIX, PacketId(1));
        flow.start(0.0, Place::Client(1), PacketId(2), []);
        flow.hop(0.0, 0.0, Place::Client(1), MIX, PacketId(2));
        flow.end(1.0, MIX, PacketId(2));
        assert!((flow.lost[0] - 0.5).abs() < 1e-12);
        assert_eq!(
            flow.hop(2.0, 2.0, MIX, Place::Client(5), PacketId(1)),
            &[(0, 0.5)]
        );
    }

    #[test]
    fn a_packet_joins_the_pool_when_it_arrives_not_when_sent() {
        let mut flow = Flow::new(0.0, HashSet::new());
        flow.start(0.0, Place::Client(0), PacketId(1), [(0, 1.0)]);
        flow.hop(0.0, 2.0, Place::Client(0), MIX, PacketId(1)); // slow link: in at 2
        flow.start(0.5, Place::Client(1), PacketId(2), [(1, 1.0)]);
        flow.hop(0.5, 0.5, Place::Client(1), MIX, PacketId(2));
        assert_eq!(
            flow.hop(1.0, 1.0, MIX, Place::Client(5), PacketId(2)),
            &[(1, 1.0)]
        );
        assert_eq!(
            flow.hop(3.0, 3.0, MIX, Place::Client(5), PacketId(1)),
            &[(0, 1.0)]
        );
        assert_eq!(flow.anomalies, 0);
    }

    #[test]
    fn corrupt_mixes_pass_vectors_through() {
        let mut flow = Flow::new(0.0, HashSet::from([MIX]));
        flow.start(0.0, Place::Client(0), PacketId(1), [(0, 1.0)]);
        flow.hop(0.0, 0.0, Place::Client(0), MIX, PacketId(1));
        flow.start(0.0, Place::Client(1), PacketId(2), [(1, 1.0)]);
        flow.hop(0.0, 0.0, Place::Client(1), MIX, PacketId(2));
        assert_eq!(
            flow.hop(1.0, 1.0, MIX, Place::Client(5), PacketId(2)),
            &[(1, 1.0)]
        );
    }
}
