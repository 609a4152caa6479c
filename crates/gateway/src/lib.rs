#![doc = include_str!("../README.md")]

mod core;

pub use crate::core::{
    Action, ClientId, Counters, GatewayConfig, GatewayCore, KnownClient, SessionId, Sizes,
};
