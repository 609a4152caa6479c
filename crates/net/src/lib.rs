#![doc = include_str!("../README.md")]

pub mod client;
pub mod client_daemon;
pub mod directory;
pub mod epoch;
mod err;
pub mod exit;
pub mod files;
pub mod gateway;
pub mod http;
pub mod keys;
pub mod ledger;
pub mod link;
pub mod localnet;
pub mod metrics;
pub mod mixnode;
pub mod node;
pub mod noise;
mod outbox_keys;
mod pipes;
pub mod registration;
pub mod session;
pub mod socks5;

pub use err::{LinkError, NodeError};
