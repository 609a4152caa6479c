#![doc = include_str!("../README.md")]

pub mod address;
mod err;
pub mod frame;
pub mod link;

pub use err::{AddressError, FrameError, LinkError};
