#![doc = include_str!("../README.md")]

pub mod address;
mod client_address;
mod err;
pub mod frame;
pub mod gateway;
pub mod link;
mod surb_ack;

pub use client_address::ClientAddress;
pub use err::{AddressError, AddressParseError, FrameError, GatewayMessageError, LinkError};
pub use surb_ack::{SURB_ACK_LEN, SurbAck};
