//! Which routes to test: randomised balanced designs.
//!
//! Each position of a route (entry gateway, layer 1, 2, 3, exit gateway) deals from its own
//! deck: every node of the position once, in a fresh random order each time the deck runs
//! out. So over an epoch every node is tested equally often (to within one route per pass of
//! its deck), and because the decks are shuffled independently, each node meets every node
//! of the other positions about equally often — many different companions, in no fixed
//! pattern, which is what lets attribution tell a node from its neighbours. Each route on its
//! own is a uniformly random route, as a client draws them, so a node cannot tell a test
//! packet by its route.

use rand_core::Rng;
use umbra_topology::{Layer, NodeId, Topology};

use crate::evidence::Group;

/// The nodes an epoch's routes are drawn from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roster {
    layers: [Vec<NodeId>; 3],
    gateways: Vec<NodeId>,
}

impl Roster {
    /// A roster of these mix nodes (layers 1, 2, 3) and gateways. Each list is sorted, and a
    /// node listed twice counts once.
    pub fn new(layers: [Vec<NodeId>; 3], gateways: Vec<NodeId>) -> Roster {
        let tidy = |mut nodes: Vec<NodeId>| {
            nodes.sort_unstable();
            nodes.dedup();
            nodes
        };
        Roster {
            layers: layers.map(tidy),
            gateways: tidy(gateways),
        }
    }

    /// The active mix nodes of each layer and the gateways of an epoch's topology.
    pub fn from_topology(topology: &Topology) -> Roster {
        Roster::new(
            Layer::ALL.map(|layer| topology.layer(layer).map(|node| node.id).collect()),
            topology.gateways().map(|node| node.id).collect(),
        )
    }

    /// The mix nodes of layers 1, 2 and 3.
    pub fn layers(&self) -> &[Vec<NodeId>; 3] {
        &self.layers
    }

    /// The gateways.
    pub fn gateways(&self) -> &[NodeId] {
        &self.gateways
    }

    /// Every node with its group: layers in order, then the gateways.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, Group)> + '_ {
        let groups = [Group::Layer1, Group::Layer2, Group::Layer3];
        self.layers
            .iter()
            .zip(groups)
            .flat_map(|(nodes, group)| nodes.iter().map(move |&node| (node, group)))
            .chain(self.gateways.iter().map(|&node| (node, Group::Gateway)))
    }
}

/// The five decks of an epoch.
#[derive(Clone, Debug)]
pub(crate) struct Planner {
    entry: Deck,
    layers: [Deck; 3],
    exit: Deck,
}

impl Planner {
    pub(crate) fn new(roster: &Roster) -> Planner {
        Planner {
            entry: Deck::new(roster.gateways.clone()),
            layers: roster.layers.clone().map(Deck::new),
            exit: Deck::new(roster.gateways.clone()),
        }
    }

    /// The next route, through gateways `usable` accepts; `None` if a position has no node.
    pub(crate) fn draw(
        &mut self,
        rng: &mut impl Rng,
        usable: impl Fn(NodeId) -> bool,
    ) -> Option<[NodeId; 5]> {
        let entry = self.entry.draw(rng, &usable)?;
        let mut mixes = [NodeId(0); 3];
        for (slot, deck) in mixes.iter_mut().zip(&mut self.layers) {
            *slot = deck.draw(rng, |_| true)?;
        }
        let exit = self.exit.draw(rng, &usable)?;
        Some([entry, mixes[0], mixes[1], mixes[2], exit])
    }
}

/// One position's nodes, dealt in shuffled passes.
#[derive(Clone, Debug)]
struct Deck {
    cards: Vec<NodeId>,
    next: usize,
}

impl Deck {
    fn new(cards: Vec<NodeId>) -> Deck {
        let next = cards.len();
        Deck { cards, next }
    }

    /// The next card `usable` accepts (a refused card is spent), reshuffling at the end of
    /// each pass; `None` if no card is usable.
    fn draw(&mut self, rng: &mut impl Rng, usable: impl Fn(NodeId) -> bool) -> Option<NodeId> {
        for _ in 0..2 * self.cards.len() {
            if self.next == self.cards.len() {
                shuffle(rng, &mut self.cards);
                self.next = 0;
            }
            let card = self.cards[self.next];
            self.next += 1;
            if usable(card) {
                return Some(card);
            }
        }
        None
    }
}

/// Fisher–Yates (the modulo bias is below len / 2⁶⁴: nil for any real deck).
fn shuffle(rng: &mut impl Rng, cards: &mut [NodeId]) {
    for i in (1..cards.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        cards.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::synthetic::roster;

    #[test]
    fn every_node_is_tested_equally_often_with_many_companions() {
        let roster = roster(10, 3);
        let mut planner = Planner::new(&roster);
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let mut uses: BTreeMap<NodeId, u32> = BTreeMap::new();
        let mut companions: BTreeMap<NodeId, BTreeSet<NodeId>> = BTreeMap::new();
        for _ in 0..1000 {
            let route = planner.draw(&mut rng, |_| true).expect("a route");
            for &hop in &route[1..4] {
                *uses.entry(hop).or_default() += 1;
                companions
                    .entry(hop)
                    .or_default()
                    .extend(route[1..4].iter().filter(|&&other| other != hop));
            }
        }
        // 1000 routes over 10 nodes a layer: exactly 100 each (whole passes of each deck)
        assert!(uses.values().all(|&count| count == 100), "{uses:?}");
        // each mix node meets all 20 nodes of the other layers in 100 routes (a given one is
        // missed with probability 0.9^100 = 3e-5 per pair, and the seed is fixed)
        assert!(companions.values().all(|set| set.len() == 20));
    }

    #[test]
    fn gateways_that_are_down_are_not_used() {
        let roster = roster(2, 3);
        let mut planner = Planner::new(&roster);
        let mut rng = ChaCha20Rng::from_seed([4; 32]);
        for _ in 0..100 {
            let route = planner
                .draw(&mut rng, |gateway| gateway != NodeId(901))
                .expect("a route");
            assert!(route[0] != NodeId(901) && route[4] != NodeId(901));
        }
        assert_eq!(planner.draw(&mut rng, |_| false), None);
    }
}
