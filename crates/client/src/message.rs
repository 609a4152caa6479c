//! What clients say to each other, inside sealed messages and inside replies.
//!
//! ```text
//! sealed message (to an address, end-to-end encrypted):
//!   1 Data          data
//!   2 DataWithSurbs sender tag (16) ‖ SURBs ‖ data
//!   3 SurbTopUp     sender tag (16) ‖ SURBs
//!   4 ReplyAcks     count (u16) ‖ (message id (16) ‖ index (u32))*
//! reply (through a SURB, sealed by its hops):
//!   1 Reply         data
//!   2 SurbRequest   count (u16)
//! SURBs = count (u16) ‖ (length (u16) ‖ SURB bytes)*
//! ```

use std::fmt;

use umbra_sphinx::Surb;

use crate::fragment::FragmentRef;

/// The tag a client gives itself when it lets someone reply without knowing who it is. The
/// recipient replies "to the tag"; only the tag's owner receives the reply.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SenderTag(pub [u8; 16]);

impl fmt::Display for SenderTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(&self.0).into_string())
    }
}

impl fmt::Debug for SenderTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SenderTag({self})")
    }
}

impl std::str::FromStr for SenderTag {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let bytes = bs58::decode(text.trim()).into_vec().map_err(|_| ())?;
        bytes.try_into().map(SenderTag).map_err(|_| ())
    }
}

/// A sealed message.
#[derive(Debug)]
pub(crate) enum Message {
    Data(Vec<u8>),
    DataWithSurbs {
        tag: SenderTag,
        surbs: Vec<Surb>,
        data: Vec<u8>,
    },
    SurbTopUp {
        tag: SenderTag,
        surbs: Vec<Surb>,
    },
    ReplyAcks(Vec<FragmentRef>),
}

/// What travels through a SURB.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    Data(Vec<u8>),
    SurbRequest { count: u16 },
}

impl Message {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Message::Data(data) => {
                out.push(1);
                out.extend_from_slice(data);
            }
            Message::DataWithSurbs { tag, surbs, data } => {
                out.push(2);
                out.extend_from_slice(&tag.0);
                encode_surbs(surbs, &mut out);
                out.extend_from_slice(data);
            }
            Message::SurbTopUp { tag, surbs } => {
                out.push(3);
                out.extend_from_slice(&tag.0);
                encode_surbs(surbs, &mut out);
            }
            Message::ReplyAcks(acks) => {
                out.push(4);
                out.extend_from_slice(
                    &(acks.len().min(usize::from(u16::MAX)) as u16).to_be_bytes(),
                );
                for ack in acks.iter().take(usize::from(u16::MAX)) {
                    out.extend_from_slice(&ack.message);
                    out.extend_from_slice(&ack.index.to_be_bytes());
                }
            }
        }
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Message> {
        let (&kind, rest) = bytes.split_first()?;
        match kind {
            1 => Some(Message::Data(rest.to_vec())),
            2 => {
                let (tag, rest) = rest.split_first_chunk::<16>()?;
                let (surbs, data) = decode_surbs(rest)?;
                Some(Message::DataWithSurbs {
                    tag: SenderTag(*tag),
                    surbs,
                    data: data.to_vec(),
                })
            }
            3 => {
                let (tag, rest) = rest.split_first_chunk::<16>()?;
                let (surbs, rest) = decode_surbs(rest)?;
                rest.is_empty().then_some(Message::SurbTopUp {
                    tag: SenderTag(*tag),
                    surbs,
                })
            }
            4 => {
                let (count, rest) = rest.split_first_chunk::<2>()?;
                let (acks, trailing) = rest.as_chunks::<20>();
                if acks.len() != usize::from(u16::from_be_bytes(*count)) || !trailing.is_empty() {
                    return None;
                }
                Some(Message::ReplyAcks(
                    acks.iter()
                        .map(|ack| {
                            let (message, index) = ack.split_at(16);
                            let mut id = [0u8; 16];
                            id.copy_from_slice(message);
                            let mut at = [0u8; 4];
                            at.copy_from_slice(index);
                            FragmentRef {
                                message: id,
                                index: u32::from_be_bytes(at),
                            }
                        })
                        .collect(),
                ))
            }
            _ => None,
        }
    }
}

impl Reply {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Data(data) => [&[1u8][..], data].concat(),
            Reply::SurbRequest { count } => [&[2u8][..], &count.to_be_bytes()].concat(),
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Reply> {
        let (&kind, rest) = bytes.split_first()?;
        match kind {
            1 => Some(Reply::Data(rest.to_vec())),
            2 => {
                let count: [u8; 2] = rest.try_into().ok()?;
                Some(Reply::SurbRequest {
                    count: u16::from_be_bytes(count),
                })
            }
            _ => None,
        }
    }
}

fn encode_surbs(surbs: &[Surb], out: &mut Vec<u8>) {
    let surbs = &surbs[..surbs.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(surbs.len() as u16).to_be_bytes());
    for surb in surbs {
        let bytes = surb.to_bytes();
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
}

fn decode_surbs(bytes: &[u8]) -> Option<(Vec<Surb>, &[u8])> {
    let (count, mut rest) = bytes.split_first_chunk::<2>()?;
    let count = usize::from(u16::from_be_bytes(*count));
    let mut surbs = Vec::with_capacity(count.min(256));
    for _ in 0..count {
        let (len, after) = rest.split_first_chunk::<2>()?;
        let (surb, after) = after.split_at_checked(usize::from(u16::from_be_bytes(*len)))?;
        surbs.push(Surb::from_bytes(surb).ok()?);
        rest = after;
    }
    Some((surbs, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip() {
        let acks = vec![
            FragmentRef {
                message: [1; 16],
                index: 7,
            },
            FragmentRef {
                message: [2; 16],
                index: 0,
            },
        ];
        match Message::decode(&Message::ReplyAcks(acks.clone()).encode()) {
            Some(Message::ReplyAcks(decoded)) => assert_eq!(decoded, acks),
            other => panic!("{other:?}"),
        }
        match Message::decode(&Message::Data(b"hi".to_vec()).encode()) {
            Some(Message::Data(data)) => assert_eq!(data, b"hi"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Reply::decode(&Reply::SurbRequest { count: 20 }.encode()),
            Some(Reply::SurbRequest { count: 20 })
        );
        assert_eq!(
            Reply::decode(&Reply::Data(vec![]).encode()),
            Some(Reply::Data(vec![]))
        );
        let tag = SenderTag([9; 16]);
        assert_eq!(tag.to_string().parse(), Ok(tag));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
            let _ = Message::decode(&bytes);
            let _ = Reply::decode(&bytes);
        }
    }
}
