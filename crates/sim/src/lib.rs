#![doc = include_str!("../README.md")]

pub mod attack;
pub mod plot;
pub mod trace;
