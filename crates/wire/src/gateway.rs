//! The client↔gateway protocol. It is spoken inside a Noise session over WebSocket: every
//! WebSocket binary message is one Noise transport message, and its plaintext is one of these.
//!
//! ```text
//! client → gateway
//!   0x01 Forward   first hop (32) ‖ Sphinx packet (one of the packet sizes)
//!   0x02 Received  count (u16) ‖ delivery ids (u64 each)
//! gateway → client
//!   0x81 Welcome   allowance left (u64 bytes, u64::MAX: unlimited) ‖ deliveries waiting (u32)
//!   0x82 Deliver   id (u64) ‖ kind (1 data, 2 sealed reply, 3 ack) ‖ SURB id (16, sealed only) ‖ payload
//!   0x83 Refused   reason (u8) ‖ detail (UTF-8)
//! ```
//!
//! Integers are big-endian. Every decoder refuses what it does not know with a typed error.

use umbra_sphinx::{NodeAddress, Packet, SurbId};

use crate::err::GatewayMessageError;

const FORWARD: u8 = 0x01;
const RECEIVED: u8 = 0x02;
const WELCOME: u8 = 0x81;
const DELIVER: u8 = 0x82;
const REFUSED: u8 = 0x83;

/// The most ids one `Received` carries.
pub const MAX_RECEIVED_IDS: usize = 4096;

/// What a client tells its gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// Send this packet into the mixnet, unchanged, to `first_hop` (a first-layer node).
    Forward {
        /// Where to send it.
        first_hop: NodeAddress,
        /// The packet.
        packet: Packet,
    },
    /// The client holds these deliveries: the gateway may forget them (and acknowledge them to
    /// their senders).
    Received {
        /// The deliveries' ids.
        ids: Vec<u64>,
    },
}

/// What a gateway tells a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayMessage {
    /// The session is up.
    Welcome {
        /// Bytes the client may still send (`u64::MAX`: no limit).
        allowance: u64,
        /// Deliveries stored while the client was away, about to follow.
        waiting: u32,
    },
    /// Something for the client.
    Deliver(Delivery),
    /// A forwarded packet was refused.
    Refused {
        /// Why.
        reason: Refusal,
        /// In words.
        detail: String,
    },
}

/// A delivery: what arrived for the client, numbered in the order the gateway delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Its number; the client confirms it with [`ClientMessage::Received`].
    pub id: u64,
    /// What it is.
    pub kind: DeliveryKind,
    /// Its bytes.
    pub payload: Vec<u8>,
}

/// What a delivery is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryKind {
    /// Client data from a packet (its SURB-ACK already split off).
    Data,
    /// A reply through one of the client's SURBs, still sealed: only the client can open it.
    Sealed {
        /// The SURB id the reply came with.
        surb_id: SurbId,
    },
    /// The payload of an ack packet.
    Ack,
}

/// Why a gateway refused a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The client has used up its bandwidth allowance.
    AllowanceExhausted,
    /// The first hop is not a first-layer node the gateway knows.
    NotFirstLayer,
    /// The gateway is overloaded.
    Overloaded,
}

impl Refusal {
    const fn to_byte(self) -> u8 {
        match self {
            Refusal::AllowanceExhausted => 1,
            Refusal::NotFirstLayer => 2,
            Refusal::Overloaded => 3,
        }
    }

    const fn from_byte(byte: u8) -> Result<Refusal, GatewayMessageError> {
        match byte {
            1 => Ok(Refusal::AllowanceExhausted),
            2 => Ok(Refusal::NotFirstLayer),
            3 => Ok(Refusal::Overloaded),
            byte => Err(GatewayMessageError::UnknownRefusal { byte }),
        }
    }
}

impl ClientMessage {
    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ClientMessage::Forward { first_hop, packet } => {
                let mut out = Vec::with_capacity(33 + packet.as_bytes().len());
                out.push(FORWARD);
                out.extend_from_slice(first_hop.as_bytes());
                out.extend_from_slice(packet.as_bytes());
                out
            }
            ClientMessage::Received { ids } => {
                let ids = &ids[..ids.len().min(MAX_RECEIVED_IDS)];
                let mut out = Vec::with_capacity(3 + 8 * ids.len());
                out.push(RECEIVED);
                out.extend_from_slice(&(ids.len() as u16).to_be_bytes());
                for id in ids {
                    out.extend_from_slice(&id.to_be_bytes());
                }
                out
            }
        }
    }

    /// Reads a message.
    pub fn decode(bytes: &[u8]) -> Result<ClientMessage, GatewayMessageError> {
        let (&tag, rest) = bytes.split_first().ok_or(GatewayMessageError::Empty)?;
        match tag {
            FORWARD => {
                let (first_hop, packet) = rest
                    .split_first_chunk::<32>()
                    .ok_or(GatewayMessageError::Truncated)?;
                let packet =
                    Packet::from_bytes(packet.to_vec()).map_err(GatewayMessageError::BadPacket)?;
                Ok(ClientMessage::Forward {
                    first_hop: NodeAddress::new(*first_hop),
                    packet,
                })
            }
            RECEIVED => {
                let (count, ids) = rest
                    .split_first_chunk::<2>()
                    .ok_or(GatewayMessageError::Truncated)?;
                let count = usize::from(u16::from_be_bytes(*count));
                if count > MAX_RECEIVED_IDS {
                    return Err(GatewayMessageError::TooMany { count });
                }
                let (ids, trailing) = ids.as_chunks::<8>();
                if ids.len() != count || !trailing.is_empty() {
                    return Err(GatewayMessageError::Length);
                }
                Ok(ClientMessage::Received {
                    ids: ids.iter().map(|id| u64::from_be_bytes(*id)).collect(),
                })
            }
            tag => Err(GatewayMessageError::UnknownType { tag }),
        }
    }
}

impl GatewayMessage {
    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            GatewayMessage::Welcome { allowance, waiting } => {
                let mut out = vec![WELCOME];
                out.extend_from_slice(&allowance.to_be_bytes());
                out.extend_from_slice(&waiting.to_be_bytes());
                out
            }
            GatewayMessage::Deliver(delivery) => {
                let mut out = Vec::with_capacity(26 + delivery.payload.len());
                out.push(DELIVER);
                out.extend_from_slice(&delivery.id.to_be_bytes());
                match delivery.kind {
                    DeliveryKind::Data => out.push(1),
                    DeliveryKind::Sealed { surb_id } => {
                        out.push(2);
                        out.extend_from_slice(surb_id.as_bytes());
                    }
                    DeliveryKind::Ack => out.push(3),
                }
                out.extend_from_slice(&delivery.payload);
                out
            }
            GatewayMessage::Refused { reason, detail } => {
                let mut out = vec![REFUSED, reason.to_byte()];
                out.extend_from_slice(detail.as_bytes());
                out
            }
        }
    }

    /// Reads a message.
    pub fn decode(bytes: &[u8]) -> Result<GatewayMessage, GatewayMessageError> {
        let (&tag, rest) = bytes.split_first().ok_or(GatewayMessageError::Empty)?;
        match tag {
            WELCOME => {
                let (allowance, rest) = rest
                    .split_first_chunk::<8>()
                    .ok_or(GatewayMessageError::Truncated)?;
                let waiting: [u8; 4] = rest.try_into().map_err(|_| GatewayMessageError::Length)?;
                Ok(GatewayMessage::Welcome {
                    allowance: u64::from_be_bytes(*allowance),
                    waiting: u32::from_be_bytes(waiting),
                })
            }
            DELIVER => {
                let (id, rest) = rest
                    .split_first_chunk::<8>()
                    .ok_or(GatewayMessageError::Truncated)?;
                let (&kind, rest) = rest.split_first().ok_or(GatewayMessageError::Truncated)?;
                let (kind, payload) = match kind {
                    1 => (DeliveryKind::Data, rest),
                    2 => {
                        let (surb_id, payload) = rest
                            .split_first_chunk::<16>()
                            .ok_or(GatewayMessageError::Truncated)?;
                        (
                            DeliveryKind::Sealed {
                                surb_id: SurbId::new(*surb_id),
                            },
                            payload,
                        )
                    }
                    3 => (DeliveryKind::Ack, rest),
                    byte => return Err(GatewayMessageError::UnknownDeliveryKind { byte }),
                };
                Ok(GatewayMessage::Deliver(Delivery {
                    id: u64::from_be_bytes(*id),
                    kind,
                    payload: payload.to_vec(),
                }))
            }
            REFUSED => {
                let (&reason, detail) = rest.split_first().ok_or(GatewayMessageError::Truncated)?;
                Ok(GatewayMessage::Refused {
                    reason: Refusal::from_byte(reason)?,
                    detail: String::from_utf8(detail.to_vec())
                        .map_err(|_| GatewayMessageError::NotUtf8)?,
                })
            }
            tag => Err(GatewayMessageError::UnknownType { tag }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use umbra_sphinx::PacketSize;

    fn client_message() -> impl Strategy<Value = ClientMessage> {
        prop_oneof![
            (
                any::<[u8; 32]>(),
                prop::sample::select(PacketSize::ALL.to_vec()),
                any::<u8>()
            )
                .prop_map(|(hop, size, fill)| {
                    ClientMessage::Forward {
                        first_hop: NodeAddress::new(hop),
                        packet: Packet::from_bytes(vec![fill; size.packet_len()]).unwrap(),
                    }
                }),
            prop::collection::vec(any::<u64>(), 0..100)
                .prop_map(|ids| ClientMessage::Received { ids }),
        ]
    }

    fn gateway_message() -> impl Strategy<Value = GatewayMessage> {
        let kind = prop_oneof![
            Just(DeliveryKind::Data),
            Just(DeliveryKind::Ack),
            any::<[u8; 16]>().prop_map(|id| DeliveryKind::Sealed {
                surb_id: SurbId::new(id)
            }),
        ];
        let refusal = prop::sample::select(vec![
            Refusal::AllowanceExhausted,
            Refusal::NotFirstLayer,
            Refusal::Overloaded,
        ]);
        prop_oneof![
            (any::<u64>(), any::<u32>())
                .prop_map(|(allowance, waiting)| GatewayMessage::Welcome { allowance, waiting }),
            (
                any::<u64>(),
                kind,
                prop::collection::vec(any::<u8>(), 0..3000)
            )
                .prop_map(|(id, kind, payload)| GatewayMessage::Deliver(Delivery {
                    id,
                    kind,
                    payload
                })),
            (refusal, ".{0,40}")
                .prop_map(|(reason, detail)| GatewayMessage::Refused { reason, detail }),
        ]
    }

    proptest! {
        #[test]
        fn client_messages_round_trip(message in client_message()) {
            prop_assert_eq!(ClientMessage::decode(&message.encode()), Ok(message));
        }

        #[test]
        fn gateway_messages_round_trip(message in gateway_message()) {
            prop_assert_eq!(GatewayMessage::decode(&message.encode()), Ok(message));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
            let _ = ClientMessage::decode(&bytes);
            let _ = GatewayMessage::decode(&bytes);
        }
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        use GatewayMessageError::*;
        assert_eq!(ClientMessage::decode(&[]), Err(Empty));
        assert_eq!(ClientMessage::decode(&[0x09]), Err(UnknownType { tag: 9 }));
        assert_eq!(ClientMessage::decode(&[FORWARD, 1, 2]), Err(Truncated));
        assert!(matches!(
            ClientMessage::decode(&[FORWARD; 100]),
            Err(BadPacket(_))
        ));
        assert_eq!(
            ClientMessage::decode(&[RECEIVED, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(Length)
        );
        assert_eq!(
            ClientMessage::decode(&[RECEIVED, 0xff, 0xff]),
            Err(TooMany { count: 65535 })
        );
        assert_eq!(
            GatewayMessage::decode(&[DELIVER, 0, 0, 0, 0, 0, 0, 0, 1, 7]),
            Err(UnknownDeliveryKind { byte: 7 })
        );
        assert_eq!(
            GatewayMessage::decode(&[REFUSED, 9]),
            Err(UnknownRefusal { byte: 9 })
        );
        assert_eq!(GatewayMessage::decode(&[REFUSED, 1, 0xff]), Err(NotUtf8));
        assert_eq!(
            GatewayMessage::decode(&[WELCOME, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(Length)
        );
    }
}
