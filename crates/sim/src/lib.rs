#![doc = include_str!("../README.md")]

pub mod format;
pub mod trace;
