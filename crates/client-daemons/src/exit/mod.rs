//! The exit service's shell: the TCP connections it opens for streams (issue 6).
//!
//! The pure parts live in `umbra_client`: the stream multiplexer
//! ([`umbra_client::stream`]) says what to open, the exit policy
//! ([`umbra_client::exit_policy`]) says what may be opened. [`connect`] does the opening:
//! resolve, check every address against the policy, then connect, with each failure named as
//! the [`OpenFailure`](umbra_client::stream::OpenFailure) the stream reports back.
//!
//! Destinations are client data: they are never logged above debug level.

mod connect;
pub mod service;

pub use connect::{ConnectError, ConnectTimeouts, Stage, connect, load_policy};
