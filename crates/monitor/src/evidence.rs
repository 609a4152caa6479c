//! The evidence of an epoch: every test route's hops and outcome, the monitor's own faults as
//! it saw them, and the rules it judged by — enough for anyone to recompute every score with
//! [`crate::attribute`].
//!
//! Times are milliseconds since the epoch's start as the monitor saw it; latencies are
//! microseconds. The JSON is what the monitor publishes; the hash ([`Evidence::hash`]) is
//! SHA-256 over a canonical encoding (postcard, as the ledger encodes what it signs, of the
//! domain tag `umbra-monitor-evidence-v1` and the evidence): the same evidence read back from
//! JSON hashes the same.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use umbra_topology::Layer;

use crate::err::EvidenceError;

/// The version of the evidence format this crate writes.
pub const EVIDENCE_VERSION: u32 = 1;

/// What a node is tested as. A node's reliability can only be told apart from the others of
/// its group (see the crate documentation), so scores are relative within a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Mix layer 1.
    Layer1,
    /// Mix layer 2.
    Layer2,
    /// Mix layer 3.
    Layer3,
    /// The gateways (a route's first and last hop).
    Gateway,
}

impl Group {
    /// The group of mix layer `layer`.
    pub fn of_layer(layer: Layer) -> Group {
        match layer.number() {
            1 => Group::Layer1,
            2 => Group::Layer2,
            _ => Group::Layer3,
        }
    }
}

/// The rules the monitor judged by, from its [`crate::MonitorConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// A packet not back this long after it was sent was lost.
    pub loss_deadline_ms: u64,
    /// The length of the windows searched for mass failures.
    pub window_ms: u64,
    /// A window with at least this share (ppm) of its judged routes lost is a mass failure.
    pub mass_failure_ppm: u32,
    /// ...if it has at least this many judged routes.
    pub mass_failure_min_routes: u32,
    /// The confidence of the intervals, in ppm.
    pub confidence_ppm: u32,
    /// Nodes with fewer judged packets get no score.
    pub min_packets: u32,
}

/// A node of the epoch's topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceNode {
    /// The node's number.
    pub id: u32,
    /// What it was tested as.
    pub group: Group,
}

/// One test route and what became of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteOutcome {
    /// The route's number (unique in the monitor's run).
    pub id: u64,
    /// Entry gateway, the mix nodes of layers 1, 2 and 3, exit gateway.
    pub hops: [u32; 5],
    /// When it was sent.
    pub sent_ms: u64,
    /// Its round trip, if it came back within the loss deadline; `None`: lost.
    pub latency_us: Option<u64>,
}

/// Why the monitor does not trust its own measurements for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultReason {
    /// The monitor's session with this gateway was down: routes through it are not judged.
    GatewayDown {
        /// The gateway.
        gateway: u32,
    },
    /// The monitor's process ran late (a timer or a send this late after it was due): no
    /// route alive then is judged.
    Starved {
        /// How late.
        late_ms: u64,
    },
    /// Nearly every route of a window failed: the monitor's own network, not the nodes.
    MassFailure {
        /// Routes lost.
        lost: u32,
        /// Routes judged.
        judged: u32,
    },
}

/// A time the monitor does not judge mix nodes by, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// From (ms since the epoch's start).
    pub from_ms: u64,
    /// To (inclusive).
    pub to_ms: u64,
    /// Why.
    pub reason: FaultReason,
}

/// Everything an epoch's scores are computed from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// [`EVIDENCE_VERSION`].
    pub version: u32,
    /// The epoch.
    pub epoch: u64,
    /// How it was judged.
    pub rules: Rules,
    /// The epoch's nodes, each once.
    pub nodes: Vec<EvidenceNode>,
    /// Every route sent, in the order sent.
    pub routes: Vec<RouteOutcome>,
    /// The monitor's own faults as it saw them (sessions down, starvation). Mass failures
    /// are not listed: [`crate::attribute`] finds them from the routes.
    pub faults: Vec<Fault>,
}

/// SHA-256 of an evidence's canonical encoding; written in base58, as the ledger writes the
/// hash it records with the scores.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EvidenceHash(pub [u8; 32]);

impl fmt::Display for EvidenceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).into_string())
    }
}

impl fmt::Debug for EvidenceHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EvidenceHash({self})")
    }
}

impl Evidence {
    /// Reads published evidence, checking that every route names listed nodes.
    pub fn from_json(json: &str) -> Result<Evidence, EvidenceError> {
        let evidence: Evidence =
            serde_json::from_str(json).map_err(|error| EvidenceError::Json(error.to_string()))?;
        let mut ids = BTreeSet::new();
        for node in &evidence.nodes {
            if !ids.insert(node.id) {
                return Err(EvidenceError::DuplicateNode { node: node.id });
            }
        }
        for route in &evidence.routes {
            if let Some(&node) = route.hops.iter().find(|hop| !ids.contains(hop)) {
                return Err(EvidenceError::UnknownNode {
                    route: route.id,
                    node,
                });
            }
        }
        Ok(evidence)
    }

    /// The evidence as JSON (what [`Evidence::from_json`] reads).
    pub fn to_json(&self) -> String {
        // plain structs of integers: serializing cannot fail
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The canonical encoding the hash is taken over.
    pub fn canonical(&self) -> Vec<u8> {
        // postcard fails only for types it cannot encode (maps of unknown length): none here
        postcard::to_allocvec(&("umbra-monitor-evidence-v1", self)).unwrap_or_default()
    }

    /// SHA-256 of [`Evidence::canonical`].
    pub fn hash(&self) -> EvidenceHash {
        EvidenceHash(Sha256::digest(self.canonical()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules() -> Rules {
        crate::MonitorConfig::default().rules()
    }

    fn evidence(routes: Vec<RouteOutcome>, faults: Vec<Fault>) -> Evidence {
        let group = |id: u32| match id {
            1 | 2 => Group::Layer1,
            3 | 4 => Group::Layer2,
            5 | 6 => Group::Layer3,
            _ => Group::Gateway,
        };
        Evidence {
            version: EVIDENCE_VERSION,
            epoch: 7,
            rules: rules(),
            nodes: (1..=9)
                .map(|id| EvidenceNode {
                    id,
                    group: group(id),
                })
                .collect(),
            routes,
            faults,
        }
    }

    fn route() -> impl Strategy<Value = RouteOutcome> {
        (
            any::<u64>(),
            7u32..=9,
            1u32..=2,
            3u32..=4,
            5u32..=6,
            7u32..=9,
            any::<u64>(),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(id, g1, a, b, c, g2, sent_ms, latency_us)| RouteOutcome {
                id,
                hops: [g1, a, b, c, g2],
                sent_ms,
                latency_us,
            })
    }

    fn fault() -> impl Strategy<Value = Fault> {
        (
            any::<u64>(),
            any::<u64>(),
            prop_oneof![
                (7u32..=9).prop_map(|gateway| FaultReason::GatewayDown { gateway }),
                any::<u64>().prop_map(|late_ms| FaultReason::Starved { late_ms }),
                (any::<u32>(), any::<u32>())
                    .prop_map(|(lost, judged)| FaultReason::MassFailure { lost, judged }),
            ],
        )
            .prop_map(|(from_ms, to_ms, reason)| Fault {
                from_ms,
                to_ms,
                reason,
            })
    }

    proptest! {
        #[test]
        fn json_round_trips_and_keeps_the_hash(
            routes in proptest::collection::vec(route(), 0..40),
            faults in proptest::collection::vec(fault(), 0..5),
        ) {
            let evidence = evidence(routes, faults);
            let back = Evidence::from_json(&evidence.to_json()).expect("reads back");
            prop_assert_eq!(&back, &evidence);
            prop_assert_eq!(back.hash(), evidence.hash());
        }

        #[test]
        fn any_change_changes_the_hash(
            routes in proptest::collection::vec(route(), 1..40),
            which in any::<prop::sample::Index>(),
        ) {
            let evidence = evidence(routes, Vec::new());
            let mut changed = evidence.clone();
            let route = &mut changed.routes[which.index(evidence.routes.len())];
            route.latency_us = match route.latency_us {
                Some(_) => None,
                None => Some(1),
            };
            prop_assert_ne!(changed.hash(), evidence.hash());
        }
    }

    #[test]
    fn a_route_through_an_unlisted_node_is_refused() {
        let mut evidence = evidence(Vec::new(), Vec::new());
        evidence.routes.push(RouteOutcome {
            id: 3,
            hops: [7, 1, 3, 42, 8],
            sent_ms: 0,
            latency_us: None,
        });
        assert_eq!(
            Evidence::from_json(&evidence.to_json()),
            Err(EvidenceError::UnknownNode { route: 3, node: 42 })
        );
    }
}
