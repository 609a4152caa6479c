#![doc = include_str!("../README.md")]

mod config;
mod core;
pub mod cover;

pub use crate::core::{Counters, Histogram, MixCore, Transmit};
pub use config::{CoverConfig, MixConfig};
pub use cover::{Event, LoopCounters, LoopId, LoopOrder, LoopRoutes, RecentLoss};
pub use umbra_hop::{
    ConfigError, Dropped, Forward, Outcome, ReplayFilter, ReplayFilterConfig, ReplayFilterError,
    RotationKey, Unwrapped, Unwrapper,
};
