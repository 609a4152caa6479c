#![doc = include_str!("../README.md")]

pub mod config;
mod daemon;
mod err;
pub mod model;
pub mod monitors;
pub mod poller;
pub mod query;
pub mod render;
pub mod server;
pub mod snapshot;

pub use config::{ExplorerConfig, InitOptions, MonitorLink, init, template};
pub use daemon::Explorer;
pub use err::ExplorerError;
pub use snapshot::{EpochSeen, LedgerData, Snapshot};
