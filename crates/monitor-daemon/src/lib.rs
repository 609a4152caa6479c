#![doc = include_str!("../README.md")]

pub mod config;
mod daemon;
mod error;
pub mod evidence_store;
mod report;
mod sessions;
mod status;

pub use config::{
    InitOptions, Initialised, MonitorDaemonConfig, init, monitor_config_for_epoch, template,
};
pub use daemon::MonitorDaemon;
pub use error::MonitorError;
pub use evidence_store::EvidenceStore;
pub use report::{SubmitError, ledger_scores};
