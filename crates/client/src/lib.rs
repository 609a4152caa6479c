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

/// Bytes in front of a message's first piece in a forward packet's plaintext: the SURB-ACK
/// and the fragment header (a sealed message's ephemeral key follows them).
pub const FIRST_PIECE_OFFSET: usize = umbra_wire::SURB_ACK_LEN + fragment::HEADER_LEN;
pub use socks::{SocksConfig, SocksHandshake, SocksRequest};
pub use surbs::Isolation;
