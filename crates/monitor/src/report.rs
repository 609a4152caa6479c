//! An epoch's report: the evidence and its hash; the scores and the ledger's form of them.

use crate::attribution::{Attribution, Verdict, attribute};
use crate::evidence::{Evidence, EvidenceHash};

/// What the monitor has to say about an epoch: its evidence. The scores are
/// [`EpochReport::attribute`], which takes seconds for a large network (a profile likelihood
/// per node): run it off the shell's event loop (e.g. `spawn_blocking`), or the monitor starves
/// itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochReport {
    /// The epoch.
    pub epoch: u64,
    /// The hash of the evidence, for the ledger transaction.
    pub hash: EvidenceHash,
    /// The evidence, to publish (as [`Evidence::to_json`]).
    pub evidence: Evidence,
}

impl EpochReport {
    /// The report of this evidence.
    pub fn new(evidence: Evidence) -> EpochReport {
        EpochReport {
            epoch: evidence.epoch,
            hash: evidence.hash(),
            evidence,
        }
    }

    /// The scores, as anyone recomputes them from the evidence ([`crate::attribute`]).
    pub fn attribute(&self) -> Attribution {
        attribute(&self.evidence)
    }
}

impl Attribution {
    /// The scores as the ledger's `SubmitPerformance` takes them: (node, performance in
    /// ppm) for every scored node. Unscored nodes are left out, so the ledger keeps their
    /// previous performance rather than recording a number the monitor cannot stand by.
    pub fn performance(&self) -> Vec<(u32, u32)> {
        self.nodes
            .iter()
            .filter_map(|node| match node.verdict {
                Verdict::Scored(score) => Some((node.node.0, to_ppm(score.reliability))),
                Verdict::Unscored(_) => None,
            })
            .collect()
    }
}

/// A fraction in [0, 1] as parts per million, rounded.
pub fn to_ppm(fraction: f64) -> u32 {
    (fraction.clamp(0.0, 1.0) * 1e6).round() as u32
}
