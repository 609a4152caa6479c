#![doc = include_str!("../README.md")]

mod crypto;
mod err;
mod field;
mod header;
mod keys;
mod packet;
mod params;
mod route;
mod surb;

pub use err::{BuildError, PacketError};
pub use keys::{PrivateKey, PublicKey};
pub use packet::{
    CheckedPacket, Packet, PacketBuilder, Payload, Processed, check_batch_with_keys,
    check_with_keys,
};
pub use params::{HEADER_LEN, MAX_HOPS, PAYLOAD_OVERHEAD, PacketSize, Version};
pub use route::{Delay, Destination, DestinationAddress, Hop, NodeAddress, ReplayTag, SurbId};
pub use surb::{ReplyKey, Surb};
