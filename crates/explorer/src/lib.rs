#![doc = include_str!("../README.md")]

pub mod model;
pub mod query;
pub mod render;
pub mod snapshot;

pub use snapshot::{EpochSeen, LedgerData, Snapshot};
