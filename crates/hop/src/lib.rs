#![doc = include_str!("../README.md")]

mod err;
mod replay;
mod unwrap;

pub use err::{ConfigError, ReplayFilterError};
pub use replay::{ReplayFilter, ReplayFilterConfig};
pub use unwrap::{Dropped, Final, Forward, Outcome, RotationKey, Unwrapped, Unwrapper};
