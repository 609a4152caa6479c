//! The `umbra` command's library side: a whole network on this machine ([`network`]), which
//! `umbra localnet`, the end-to-end tests and the benchmarks share.

pub mod network;
