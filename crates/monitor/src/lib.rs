#![doc = include_str!("../README.md")]

mod attribution;
mod config;
mod err;
mod evidence;
mod monitor;
mod plan;
mod report;
mod sample_size;
#[cfg(test)]
mod synthetic;

pub use attribution::{
    Attribution, NodeScore, RouteJudgement, Score, Unscored, Verdict, VoidReason, Voided,
    attribute, judge_routes,
};
pub use config::MonitorConfig;
pub use err::{ConfigError, EpochError, EvidenceError};
pub use evidence::{
    EVIDENCE_VERSION, Evidence, EvidenceHash, EvidenceNode, Fault, FaultReason, Group,
    RouteOutcome, Rules,
};
pub use monitor::{EpochSchedule, Event, Monitor, MonitorStats, RouteId, TestRoute};
pub use plan::Roster;
pub use report::{EpochReport, to_ppm};
pub use sample_size::{NetworkShape, packets_alone, packets_per_node};
