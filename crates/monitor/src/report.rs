//! An epoch's report: the evidence, its hash, the scores, and the ledger's form of them.

use crate::attribution::{Attribution, Verdict};
use crate::evidence::{Evidence, EvidenceHash, Fault};

/// What the monitor has to say about an epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    /// The epoch.
    pub epoch: u64,
    /// The hash of the evidence, for the ledger transaction.
    pub hash: EvidenceHash,
    /// The evidence, to publish (as [`Evidence::to_json`]).
    pub evidence: Evidence,
    /// The scores, as [`crate::attribute`] computes them from the evidence.
    pub attribution: Attribution,
}

impl EpochReport {
    /// The report of this evidence and its attribution.
    pub fn new(evidence: Evidence, attribution: Attribution) -> EpochReport {
        EpochReport {
            epoch: evidence.epoch,
            hash: evidence.hash(),
            evidence,
            attribution,
        }
    }

    /// The scores as the ledger's `SubmitPerformance` takes them: (node, performance in
    /// ppm) for every scored node. Unscored nodes are left out, so the ledger keeps their
    /// previous performance rather than recording a number the monitor cannot stand by.
    pub fn performance(&self) -> Vec<(u32, u32)> {
        performance(&self.attribution)
    }

    /// Every fault of the monitor's in the epoch: those it saw as they happened and the mass
    /// failures found in the routes.
    pub fn faults(&self) -> impl Iterator<Item = &Fault> {
        self.evidence
            .faults
            .iter()
            .chain(&self.attribution.mass_failures)
    }
}

/// An attribution's scores in the ledger's unit: (node, reliability in ppm), scored nodes only.
pub fn performance(attribution: &Attribution) -> Vec<(u32, u32)> {
    attribution
        .nodes
        .iter()
        .filter_map(|node| match node.verdict {
            Verdict::Scored(score) => Some((node.node.0, to_ppm(score.reliability))),
            Verdict::Unscored(_) => None,
        })
        .collect()
}

/// A fraction in [0, 1] as parts per million, rounded.
pub fn to_ppm(fraction: f64) -> u32 {
    (fraction.clamp(0.0, 1.0) * 1e6).round() as u32
}
