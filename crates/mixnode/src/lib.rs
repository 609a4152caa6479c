#![doc = include_str!("../README.md")]

mod config;
mod core;
mod err;
mod replay;
mod unwrap;

pub use crate::core::{Counters, Histogram, MixCore, Transmit};
pub use config::MixConfig;
pub use err::{ConfigError, ReplayFilterError};
pub use replay::{ReplayFilter, ReplayFilterConfig};
pub use unwrap::{Dropped, Forward, RotationKey, Unwrapped, Unwrapper};
