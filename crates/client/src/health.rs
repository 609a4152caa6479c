//! What a client has seen of each mix node: packets whose acknowledgement came back through it,
//! and packets whose acknowledgement did not. A node many packets die at, and none get
//! through, is failing: routes avoid it until its record fades (the counts halve every
//! [`HALF_LIFE`]), so a node that died costs a few retransmissions rather than one in three,
//! and a node that came back is tried again within a minute or two.
//!
//! The topology should say when a node is down; until it does, this is what keeps transfers
//! moving. It makes route choice depend on what the client saw, which an attacker who drops a
//! client's packets at a node could steer; dropping them is what such an attacker can do
//! anyway, and the choice among the remaining nodes stays uniform.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use umbra_sphinx::NodeAddress;

/// How fast a node's record fades.
pub(crate) const HALF_LIFE: Duration = Duration::from_secs(30);
/// Losses (faded) past which a node with few deliveries counts as failing.
const FAILING_LOSSES: f64 = 3.0;
/// A node counts as failing while its losses outnumber its deliveries this many times over.
const FAILING_RATIO: f64 = 4.0;

#[derive(Clone, Copy, Debug)]
struct Record {
    delivered: f64,
    lost: f64,
    at: Instant,
}

impl Record {
    fn faded(&self, now: Instant) -> Record {
        let halvings =
            now.saturating_duration_since(self.at).as_secs_f64() / HALF_LIFE.as_secs_f64();
        let factor = 0.5f64.powf(halvings);
        Record {
            delivered: self.delivered * factor,
            lost: self.lost * factor,
            at: now,
        }
    }
}

/// The records of the mix nodes a client has used.
#[derive(Debug, Default)]
pub(crate) struct Health {
    records: HashMap<NodeAddress, Record>,
}

impl Health {
    fn update(&mut self, now: Instant, nodes: &[NodeAddress], delivered: f64, lost: f64) {
        for node in nodes {
            let record = self.records.entry(*node).or_insert(Record {
                delivered: 0.0,
                lost: 0.0,
                at: now,
            });
            let mut faded = record.faded(now);
            faded.delivered += delivered;
            faded.lost += lost;
            *record = faded;
        }
        // forget what has faded to nothing
        if self.records.len() > 1024 {
            self.records
                .retain(|_, r| r.faded(now).lost + r.faded(now).delivered > 0.01);
        }
    }

    /// A packet through `nodes` was acknowledged.
    pub(crate) fn delivered(&mut self, now: Instant, nodes: &[NodeAddress]) {
        self.update(now, nodes, 1.0, 0.0);
    }

    /// A packet through `nodes` was not acknowledged in time.
    pub(crate) fn lost(&mut self, now: Instant, nodes: &[NodeAddress]) {
        self.update(now, nodes, 0.0, 1.0);
    }

    /// Whether routes should avoid `node` now.
    pub(crate) fn is_failing(&self, now: Instant, node: &NodeAddress) -> bool {
        self.records.get(node).is_some_and(|record| {
            let faded = record.faded(now);
            faded.lost >= FAILING_LOSSES && faded.lost > FAILING_RATIO * faded.delivered
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_that_loses_packets_fails_and_recovers_as_its_record_fades() {
        let now = Instant::now();
        let (dead, good) = (NodeAddress::new([1; 32]), NodeAddress::new([2; 32]));
        let mut health = Health::default();
        for _ in 0..2 {
            health.lost(now, &[dead, good]);
        }
        assert!(!health.is_failing(now, &dead), "two losses are not enough");
        health.lost(now, &[dead]);
        health.delivered(now, &[good]);
        assert!(health.is_failing(now, &dead));
        // the good node lost two of three: not failing, whatever else it saw
        assert!(!health.is_failing(now, &good));
        // its record fades: with six losses it is still failing half a half-life later (4.2
        // losses), and gets another chance after two (1.5)
        for _ in 0..3 {
            health.lost(now, &[dead]);
        }
        assert!(health.is_failing(now + HALF_LIFE / 2, &dead));
        assert!(!health.is_failing(now + HALF_LIFE * 2, &dead));
        // deliveries weigh against losses
        let mut health = Health::default();
        for _ in 0..10 {
            health.lost(now, &[dead]);
            health.delivered(now, &[dead]);
        }
        assert!(!health.is_failing(now, &dead));
    }
}
