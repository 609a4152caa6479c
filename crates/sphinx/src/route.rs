//! What a route is made of: node addresses, destinations, SURB ids, delays, and the replay
//! tag a hop reveals.

use std::fmt;
use std::time::Duration;

use subtle::ConstantTimeEq;

use crate::keys::PublicKey;

/// The 32 bytes a hop's routing block names the next node by. Sphinx treats them as opaque;
/// the mixnet decides what they mean (Nym puts an IP address and port in them).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddress([u8; 32]);

impl NodeAddress {
    /// Wraps 32 address bytes.
    pub const fn new(bytes: [u8; 32]) -> Self {
        NodeAddress(bytes)
    }

    /// The address bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for NodeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeAddress({})", Hex(&self.0))
    }
}

/// The 32 bytes the final hop learns about where a packet is going: in a mixnet, the
/// recipient client behind the final gateway.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestinationAddress([u8; 32]);

impl DestinationAddress {
    /// Wraps 32 destination bytes.
    pub const fn new(bytes: [u8; 32]) -> Self {
        DestinationAddress(bytes)
    }

    /// The destination bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DestinationAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DestinationAddress({})", Hex(&self.0))
    }
}

/// The 16-byte identifier the final hop learns along with the destination. A SURB's creator
/// uses it to find the key that opens the reply.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SurbId([u8; 16]);

impl SurbId {
    /// Wraps 16 identifier bytes.
    pub const fn new(bytes: [u8; 16]) -> Self {
        SurbId(bytes)
    }

    /// The identifier bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Debug for SurbId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SurbId({})", Hex(&self.0))
    }
}

/// Where the final hop hands a packet: a destination address and a SURB id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The recipient.
    pub address: DestinationAddress,
    /// The identifier handed over with it (all zeros when unused).
    pub surb_id: SurbId,
}

impl Destination {
    /// A destination with the given SURB id.
    pub const fn new(address: DestinationAddress, surb_id: SurbId) -> Self {
        Destination { address, surb_id }
    }
}

/// One node of a route: where to send the packet and the node's Sphinx public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The node's address, written into the previous hop's routing block.
    pub address: NodeAddress,
    /// The node's Sphinx public key.
    pub key: PublicKey,
}

impl Hop {
    /// A hop to the node at `address` holding `key`.
    pub const fn new(address: NodeAddress, key: PublicKey) -> Self {
        Hop { address, key }
    }
}

/// How long a hop holds a packet before forwarding it, chosen by the sender. On the wire: a
/// big-endian u64 of nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Delay(u64);

impl Delay {
    /// No delay.
    pub const ZERO: Delay = Delay(0);

    /// A delay of `nanos` nanoseconds.
    pub const fn from_nanos(nanos: u64) -> Self {
        Delay(nanos)
    }

    /// A delay of `millis` milliseconds (saturating at the largest delay).
    pub const fn from_millis(millis: u64) -> Self {
        Delay(millis.saturating_mul(1_000_000))
    }

    /// The delay closest to `duration` (saturating at about 584 years).
    pub fn from_duration(duration: Duration) -> Self {
        Delay(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX))
    }

    /// The delay in nanoseconds.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The delay as a [`Duration`].
    pub const fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    pub(crate) const fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    pub(crate) const fn from_bytes(bytes: [u8; 8]) -> Self {
        Delay(u64::from_be_bytes(bytes))
    }
}

/// The tag a hop reveals for each packet it opens, the same every time the same packet
/// reaches the same key. A node that remembers tags rejects replays. Compares in constant time.
#[derive(Clone, Copy, Eq)]
pub struct ReplayTag([u8; 32]);

impl ReplayTag {
    /// A tag from its bytes (as a replay filter might store them).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        ReplayTag(bytes)
    }

    /// The tag bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PartialEq for ReplayTag {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

// Equal tags have equal bytes, so hashing the bytes agrees with the constant-time `eq`.
impl std::hash::Hash for ReplayTag {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for ReplayTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplayTag({})", Hex(&self.0))
    }
}

/// Lower-case hex for `Debug` output.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_encode_as_big_endian_nanoseconds() {
        let delay = Delay::from_millis(15);
        assert_eq!(delay.as_nanos(), 15_000_000);
        assert_eq!(delay.to_bytes(), 15_000_000u64.to_be_bytes());
        assert_eq!(Delay::from_bytes(delay.to_bytes()), delay);
        assert_eq!(delay.as_duration(), Duration::from_millis(15));
        assert_eq!(
            Delay::from_duration(Duration::MAX),
            Delay::from_nanos(u64::MAX)
        );
    }

    #[test]
    fn debug_output_is_hex() {
        let address = NodeAddress::new([0xab; 32]);
        assert_eq!(
            format!("{address:?}"),
            format!("NodeAddress({})", "ab".repeat(32))
        );
    }
}
