#![doc = include_str!("../README.md")]

mod client;
mod config;
mod err;
mod fragment;
mod health;
mod keys;
mod message;
mod seal;

pub use client::{Client, ClientStats, Event, MessageId};
pub use config::{
    AckConfig, ClientConfig, MessageConfig, SurbConfig, TrafficConfig, TrafficPreset,
};
pub use err::{ClientError, ConfigError, SendError};
pub use keys::ClientKeys;
pub use message::SenderTag;
