#![doc = include_str!("../README.md")]

pub mod config;
pub mod engine;
pub mod err;
pub mod format;
pub mod trace;
pub mod run;
pub mod report;
