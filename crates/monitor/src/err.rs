//! What can go wrong in the monitor's core.

use std::time::Duration;

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("monitor setting `{field}`: {reason}")]
pub struct ConfigError {
    /// The setting.
    pub field: &'static str,
    /// What is wrong and what would do.
    pub reason: String,
}

/// Why the core refused an epoch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EpochError {
    /// A layer has no active mix node: no route can cross the network.
    #[error("starting epoch {epoch}: layer {layer} has no active mix node")]
    EmptyLayer {
        /// The epoch.
        epoch: u64,
        /// The layer (1 to 3).
        layer: u8,
    },
    /// The topology has no gateway.
    #[error("starting epoch {epoch}: the topology has no gateway")]
    NoGateway {
        /// The epoch.
        epoch: u64,
    },
    /// The epoch leaves no time to measure before its report is due.
    #[error(
        "starting epoch {epoch}: {left:?} are left, but the report is due `submit_margin` before \
         the end and routes stop `loss_deadline` before that; shorten those settings"
    )]
    TooShort {
        /// The epoch.
        epoch: u64,
        /// The time left in it.
        left: Duration,
    },
    /// The epoch is not newer than one the core already has.
    #[error("starting epoch {epoch}: epoch {newest} is already under way")]
    NotNewer {
        /// The epoch given.
        epoch: u64,
        /// The newest the core has.
        newest: u64,
    },
}

/// Why evidence could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// Not JSON of the evidence's shape.
    #[error("reading evidence: {0}")]
    Json(String),
    /// A route names a node the evidence does not list.
    #[error("reading evidence: route {route} names node {node}, which the evidence does not list")]
    UnknownNode {
        /// The route's id.
        route: u64,
        /// The node.
        node: u32,
    },
    /// A node is listed twice.
    #[error("reading evidence: node {node} is listed twice")]
    DuplicateNode {
        /// The node.
        node: u32,
    },
}
