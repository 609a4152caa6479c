//! What the simulator reports as it runs: every packet crossing every link, with the ground
//! truth the metrics need to score the adversary.
//!
//! The adversary itself sees only `(time, from, to, size)` of each [`Observer::link`] call —
//! a global passive observer of every link. The [`PacketId`] (the same for one packet at
//! every hop) and the [`Origin`] are ground truth: metrics use them to know which packet the
//! adversary is trying to follow and where it really went, and at the nodes the adversary
//! controls (which show it their input→output mapping), never otherwise.

/// A place in the simulated network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    /// Client number `n` (0-based).
    Client(u32),
    /// Gateway number `n` (0-based).
    Gateway(u32),
    /// Mix node `index` (0-based) of layer `layer` (1, 2 or 3).
    Mix {
        /// 1, 2 or 3.
        layer: u8,
        /// The node's number within its layer.
        index: u32,
    },
}

/// One packet, as the simulator follows it: the same id at every hop from its sender to its
/// end (ground truth; the adversary does not see it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketId(pub u64);

/// What a packet is, as only its sender knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A packet of an application's message: `message` (the simulator's number for it,
    /// unique in the run) from the sending client to client `to`.
    Real {
        /// The message.
        message: u64,
        /// Its recipient.
        to: u32,
    },
    /// Loop cover: from the client back to itself.
    Loop,
    /// Drop cover: to a random gateway, which drops it.
    Drop,
    /// A mix node's own loop.
    MixLoop,
    /// An acknowledgement (a SURB-ACK sent on by the recipient's gateway).
    Ack,
    /// A frame a gateway sends a client with nothing in it (a shaped downlink's padding).
    Dummy,
}

/// How a packet ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// A gateway handed it to client `n` (the frame crosses the gateway→client link as an
    /// [`Observer::link`] call too).
    Delivered(u32),
    /// A gateway dropped it (drop cover, or for a reason it counted).
    Dropped,
    /// A mix node took it (its own loop, back) or dropped it.
    AtMix,
}

/// Receives the simulation's events, in time order.
pub trait Observer {
    /// `from` made `packet` (what it is: `origin`) at `at`: a client its packets (its first
    /// [`Observer::link`] call, to the client's gateway, follows), a gateway the acks it
    /// sends on and the dummy frames of shaped downlinks, a mix node its own loops.
    fn sent(&mut self, at: f64, from: Place, packet: PacketId, origin: Origin) {
        let _ = (at, from, packet, origin);
    }

    /// `packet` left `from` at `at` and reaches `to` at `arrives` (seconds of simulated time;
    /// `arrives - at` is the link's latency), `size` bytes on the wire. Every hop of every
    /// packet is reported, including gateway→client frames (a dummy frame has a fresh id,
    /// announced by [`Observer::sent`] with [`Origin::Dummy`]).
    fn link(&mut self, at: f64, arrives: f64, from: Place, to: Place, packet: PacketId, size: u32) {
        let _ = (at, arrives, from, to, packet, size);
    }

    /// `packet` ended at `at`, at `place`.
    fn ended(&mut self, at: f64, place: Place, packet: PacketId, end: End) {
        let _ = (at, place, packet, end);
    }
}
