#![doc = include_str!("../README.md")]

pub mod epoch;
pub mod gateway;
pub mod mixnode;
pub mod registration;
pub mod runtime;
