#![doc = include_str!("../README.md")]

mod config;
mod core;

pub use crate::core::{Counters, Histogram, MixCore, Transmit};
pub use config::MixConfig;
pub use umbra_hop::{
    ConfigError, Dropped, Forward, Outcome, ReplayFilter, ReplayFilterConfig, ReplayFilterError,
    RotationKey, Unwrapped, Unwrapper,
};
