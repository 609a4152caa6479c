#![doc = include_str!("../README.md")]

pub mod client;
pub mod daemon;
pub mod exit;
mod outbox_keys;
mod pipes;
pub mod socks5;
pub mod spending;
pub mod streams;
pub mod tickets;
