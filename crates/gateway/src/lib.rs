#![doc = include_str!("../README.md")]

mod core;

pub use crate::core::tickets::CHECKS_PER_MINUTE;
pub use crate::core::{
    AcceptedTicket, Action, ClientId, Counters, GatewayConfig, GatewayCore, KnownClient, SessionId,
    Sizes, TicketRules, TicketVerifier,
};
