#![doc = include_str!("../README.md")]

pub mod config;
pub mod directory;
mod err;
pub mod files;
pub mod http_client;
pub mod keys;
pub mod ledger;
pub mod link;
pub mod metrics;
pub mod noise;
pub mod session;
pub mod socks5;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use err::{LinkError, NodeError};
