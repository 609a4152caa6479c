#![doc = include_str!("../README.md")]

mod document;
mod err;
mod node;

pub use document::Topology;
pub use err::TopologyError;
pub use node::{Entry, Kind, Layer, NodeDescriptor, NodeId, NoiseKey, Role};
