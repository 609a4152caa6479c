//! The expensive half of a mix node, run on every core at once: Sphinx processing with the
//! node's keys and replay filters. It holds no state of its own beyond the keys and the
//! (internally locked) filters, so any number of threads may share one [`Unwrapper`].
//!
//! A node keeps the keys of two rotations, the current and the previous one, so packets built
//! just before a rotation still go through. A version 8 frame says which rotation (by parity)
//! its packet was built for; a version 7 frame does not, and the current key is tried first.

use std::sync::{Arc, PoisonError, RwLock};

use umbra_sphinx::{
    CheckedPacket, Delay, DestinationAddress, NodeAddress, Packet, PacketError, PacketSize,
    Payload, PrivateKey, Processed, SurbId, check_batch_with_keys,
};
use umbra_wire::FrameError;
use umbra_wire::frame::{Frame, FrameHeader, FrameVersion, KeyRotation};

use crate::replay::ReplayFilter;

/// A Sphinx key and the replay filter of its rotation.
#[derive(Clone, Debug)]
pub struct RotationKey {
    key: PrivateKey,
    filter: Arc<ReplayFilter>,
}

impl RotationKey {
    /// The key of the rotation `filter` belongs to.
    pub fn new(key: PrivateKey, filter: Arc<ReplayFilter>) -> Self {
        RotationKey { key, filter }
    }

    /// The rotation's number.
    pub fn rotation(&self) -> u32 {
        self.filter.rotation()
    }

    /// The rotation's replay filter.
    pub fn filter(&self) -> &Arc<ReplayFilter> {
        &self.filter
    }

    fn parity(&self) -> KeyRotation {
        KeyRotation::of(self.rotation())
    }
}

/// A packet to send on.
#[derive(Debug)]
pub struct Forward {
    /// The next node, as the packet's header names it.
    pub next_hop: NodeAddress,
    /// How long the sender asked this node to hold the packet.
    pub delay: Delay,
    /// The packet for the next node.
    pub packet: Packet,
    /// The frame header to send it under: the version and key rotation it came with.
    pub header: FrameHeader,
}

/// A packet that ends at this node (a gateway's clients' packets).
#[derive(Debug)]
pub struct Final {
    /// Whom it is for.
    pub destination: DestinationAddress,
    /// The SURB id its header carried.
    pub surb_id: SurbId,
    /// Its payload, with this hop's layer removed.
    pub payload: Payload,
    /// Its size.
    pub size: PacketSize,
}

/// What processing a frame gave.
#[derive(Debug)]
pub enum Outcome {
    /// A packet for the next hop.
    Forward(Forward),
    /// A packet that ends here.
    Final(Final),
}

/// Why a packet was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The frame could not be read.
    BadFrame(FrameError),
    /// The Sphinx packet was refused.
    Malformed(PacketError),
    /// The packet was seen before under the same key.
    Replayed,
    /// The frame names a key rotation the node no longer (or not yet) holds.
    Expired,
}

impl Dropped {
    /// A short name for metrics.
    pub const fn reason(self) -> &'static str {
        match self {
            Dropped::BadFrame(error) => error.reason(),
            Dropped::Malformed(error) => error.reason(),
            Dropped::Replayed => "replayed",
            Dropped::Expired => "expired",
        }
    }
}

/// What processing a frame gave.
pub type Unwrapped = Result<Outcome, Dropped>;

/// The node's keys, for processing packets from any number of threads.
#[derive(Debug)]
pub struct Unwrapper {
    keys: RwLock<Keys>,
}

#[derive(Debug)]
struct Keys {
    current: RotationKey,
    previous: Option<RotationKey>,
}

/// Which keys a frame's packet may be for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Choice {
    Current,
    Previous,
    CurrentThenPrevious,
}

impl Unwrapper {
    /// An unwrapper holding the current rotation's key and, if the node has it, the previous
    /// rotation's.
    pub fn new(current: RotationKey, previous: Option<RotationKey>) -> Self {
        Unwrapper {
            keys: RwLock::new(Keys { current, previous }),
        }
    }

    /// Starts the next key rotation: `next` becomes current, the current key becomes the
    /// previous one, and the old previous key is returned (its filter can be discarded).
    pub fn rotate(&self, next: RotationKey) -> Option<RotationKey> {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let current = std::mem::replace(&mut keys.current, next);
        keys.previous.replace(current)
    }

    /// Forgets the previous rotation's key (once packets built with it can no longer be in
    /// flight) and returns it: what it decrypted can no longer be decrypted here.
    pub fn retire_previous(&self) -> Option<RotationKey> {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        keys.previous.take()
    }

    /// The rotations of the keys held: the current one and, if held, the previous one.
    pub fn rotations(&self) -> (u32, Option<u32>) {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        (
            keys.current.rotation(),
            keys.previous.as_ref().map(RotationKey::rotation),
        )
    }

    /// The replay filters of the keys held, current first.
    pub fn replay_filters(&self) -> Vec<Arc<ReplayFilter>> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        std::iter::once(&keys.current)
            .chain(&keys.previous)
            .map(|key| Arc::clone(&key.filter))
            .collect()
    }

    /// Processes one frame.
    pub fn unwrap(&self, frame: Frame) -> Unwrapped {
        self.unwrap_batch(vec![frame])
            .pop()
            .unwrap_or(Err(Dropped::Malformed(PacketError::BadMac)))
    }

    /// Processes frames in batches (see [`umbra_sphinx::PrivateKey::check_batch`]); results
    /// in the frames' order.
    pub fn unwrap_batch(&self, frames: Vec<Frame>) -> Vec<Unwrapped> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let mut results: Vec<Option<Unwrapped>> = (0..frames.len()).map(|_| None).collect();
        let mut groups: [(Choice, Vec<(usize, Frame)>); 3] = [
            (Choice::Current, Vec::new()),
            (Choice::Previous, Vec::new()),
            (Choice::CurrentThenPrevious, Vec::new()),
        ];
        for (index, frame) in frames.into_iter().enumerate() {
            match keys.choose(frame.header.key_rotation()) {
                Some(choice) => {
                    if let Some((_, group)) = groups.iter_mut().find(|(c, _)| *c == choice) {
                        group.push((index, frame));
                    }
                }
                None => results[index] = Some(Err(Dropped::Expired)),
            }
        }
        for (choice, group) in groups {
            if group.is_empty() {
                continue;
            }
            let rotation_keys = keys.for_choice(choice);
            let private_keys: Vec<&PrivateKey> = rotation_keys.iter().map(|k| &k.key).collect();
            let (positions, frames): (Vec<usize>, Vec<Frame>) = group.into_iter().unzip();
            let headers: Vec<FrameHeader> = frames.iter().map(|frame| frame.header).collect();
            let packets = frames.into_iter().map(|frame| frame.packet).collect();
            let mut passed: Vec<(usize, FrameHeader, CheckedPacket)> = Vec::new();
            for ((position, header), checked) in positions
                .into_iter()
                .zip(headers)
                .zip(check_batch_with_keys(&private_keys, packets))
            {
                match checked {
                    Err(error) => results[position] = Some(Err(Dropped::Malformed(error))),
                    Ok(checked) => {
                        let filter = rotation_keys.get(checked.key_index()).map(|k| &k.filter);
                        if filter.is_some_and(|f| f.check_and_insert(&checked.replay_tag())) {
                            results[position] = Some(Err(Dropped::Replayed));
                        } else {
                            passed.push((position, header, checked));
                        }
                    }
                }
            }
            let (meta, checked): (Vec<(usize, FrameHeader)>, Vec<CheckedPacket>) =
                passed.into_iter().map(|(p, h, c)| ((p, h), c)).unzip();
            for ((position, header), processed) in
                meta.into_iter().zip(CheckedPacket::finish_batch(checked))
            {
                results[position] = Some(match processed {
                    Ok(Processed::Forward {
                        next_hop,
                        delay,
                        packet,
                    }) => Ok(Outcome::Forward(Forward {
                        next_hop,
                        delay,
                        header: outgoing_header(header, &packet),
                        packet,
                    })),
                    Ok(Processed::Final {
                        destination,
                        surb_id,
                        payload,
                    }) => Ok(Outcome::Final(Final {
                        destination,
                        surb_id,
                        payload,
                        size: header.size(),
                    })),
                    Err(error) => Err(Dropped::Malformed(error)),
                });
            }
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or(Err(Dropped::Malformed(PacketError::BadMac))))
            .collect()
    }
}

/// The frame to forward a packet under: the same version and key rotation it came with.
fn outgoing_header(incoming: FrameHeader, packet: &Packet) -> FrameHeader {
    match incoming.version() {
        FrameVersion::V7 => FrameHeader::v7(packet.size()),
        FrameVersion::V8 => FrameHeader::v8(packet.size(), incoming.key_rotation()),
    }
}

impl Keys {
    /// The keys a frame of `rotation` may be for, or none if the node holds no such key.
    fn choose(&self, rotation: KeyRotation) -> Option<Choice> {
        match rotation {
            KeyRotation::Unknown => Some(Choice::CurrentThenPrevious),
            parity if self.current.parity() == parity => Some(Choice::Current),
            parity if self.previous.as_ref().is_some_and(|p| p.parity() == parity) => {
                Some(Choice::Previous)
            }
            _ => None,
        }
    }

    fn for_choice(&self, choice: Choice) -> Vec<&RotationKey> {
        match choice {
            Choice::Current => vec![&self.current],
            Choice::Previous => self.previous.iter().collect(),
            Choice::CurrentThenPrevious => std::iter::once(&self.current)
                .chain(&self.previous)
                .collect(),
        }
    }
}
