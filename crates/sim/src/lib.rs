#![doc = include_str!("../README.md")]

pub mod attack;
pub mod config;
pub mod engine;
pub mod err;
pub mod format;
pub mod metrics;
pub mod par;
pub mod plot;
pub mod report;
pub mod run;
pub mod sweep;
pub mod trace;
pub mod trials;
