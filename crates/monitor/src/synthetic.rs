//! Synthetic networks and outcomes for the tests: routes drawn by the planner, each hop
//! forwarding with its node's true reliability.

use std::collections::BTreeMap;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use umbra_topology::NodeId;

use crate::MonitorConfig;
use crate::evidence::{EVIDENCE_VERSION, Evidence, EvidenceNode, RouteOutcome};
use crate::plan::{Planner, Roster};

/// Layers of nodes 100.., 200.., 300.., gateways 900...
pub(crate) fn roster(per_layer: u32, gateways: u32) -> Roster {
    let layer = |l: u32| (0..per_layer).map(|i| NodeId(l * 100 + i)).collect();
    Roster::new(
        [layer(1), layer(2), layer(3)],
        (0..gateways).map(|i| NodeId(900 + i)).collect(),
    )
}

/// A uniform number in [0, 1).
pub(crate) fn uniform(rng: &mut impl Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// An epoch's evidence: `routes` routes drawn by the planner, one every 100 ms, each hop
/// forwarding with the node's reliability in `truth` (1 if absent); `lost_from_ms..to_ms`
/// (if any) loses every packet sent then, as the monitor's own network would.
pub(crate) fn simulate(
    roster: &Roster,
    truth: &BTreeMap<NodeId, f64>,
    routes: usize,
    seed: u64,
    blackout_ms: Option<(u64, u64)>,
) -> Evidence {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut rng = ChaCha20Rng::from_seed(seed_bytes);
    let mut planner = Planner::new(roster);
    let outcomes = (0..routes)
        .filter_map(|i| {
            let hops = planner.draw(&mut rng, |_| true)?;
            let sent_ms = i as u64 * 100;
            let blackout = blackout_ms.is_some_and(|(from, to)| from <= sent_ms && sent_ms < to);
            let mut forwarded = true;
            for hop in hops {
                let p = truth.get(&hop).copied().unwrap_or(1.0);
                forwarded &= uniform(&mut rng) < p;
            }
            Some(RouteOutcome {
                id: i as u64,
                hops: hops.map(|hop| hop.0),
                sent_ms,
                latency_us: (forwarded && !blackout).then_some(50_000),
            })
        })
        .collect();
    Evidence {
        version: EVIDENCE_VERSION,
        epoch: 1,
        rules: MonitorConfig::default().rules(),
        nodes: roster
            .nodes()
            .map(|(node, group)| EvidenceNode { id: node.0, group })
            .collect(),
        routes: outcomes,
        faults: Vec::new(),
    }
}
