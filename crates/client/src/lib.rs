#![doc = include_str!("../README.md")]

mod client;
mod config;
mod err;
pub mod exit_policy;
mod fragment;
mod health;
mod keys;
mod message;
pub mod ops;
mod seal;
pub mod socks;
pub mod stream;
pub mod surbs;

pub use client::{Client, ClientStats, Event, MessageId, TestLoop, Transmit};
pub use config::{
    AckConfig, ClientConfig, MessageConfig, ReceiveSchedule, SurbConfig, TrafficConfig,
    TrafficPreset,
};
pub use err::{ClientError, ConfigError, Failure, NoRoute, SendError};
pub use exit_policy::{ExitPolicy, ExitPolicyConfig};
pub use keys::ClientKeys;
pub use message::SenderTag;
pub use ops::{PacketOps, SphinxOps};
pub use socks::{SocksConfig, SocksHandshake, SocksRequest};
pub use surbs::Isolation;
