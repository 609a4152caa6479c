//! The SURB-ACK a client puts at the front of every packet's payload: a ready-made ack packet
//! (ack size, routed back to the sender) and its first hop. The final gateway splits it off
//! and sends the ack packet on once the rest is delivered or stored.
//!
//! ```text
//! payload plaintext = ack first hop (32) ‖ ack packet (386) ‖ client data
//! ```

use umbra_sphinx::{NodeAddress, Packet, PacketSize};

/// Bytes of a SURB-ACK at the front of a payload.
pub const SURB_ACK_LEN: usize = 32 + ACK_PACKET_LEN;
const ACK_PACKET_LEN: usize = PacketSize::Ack.packet_len();

/// An ack packet and where to send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SurbAck {
    /// The first hop of the ack's route.
    pub first_hop: NodeAddress,
    /// The ack packet.
    pub packet: Packet,
}

impl SurbAck {
    /// Writes the SURB-ACK followed by `data`: a payload plaintext.
    pub fn prefix(&self, data: &[u8]) -> Vec<u8> {
        let mut plaintext = Vec::with_capacity(SURB_ACK_LEN + data.len());
        plaintext.extend_from_slice(self.first_hop.as_bytes());
        plaintext.extend_from_slice(self.packet.as_bytes());
        plaintext.extend_from_slice(data);
        plaintext
    }

    /// Splits a payload plaintext into its SURB-ACK and the client data after it; `None` if
    /// it is too short or the ack is not an ack-size packet.
    pub fn split(plaintext: &[u8]) -> Option<(SurbAck, &[u8])> {
        let (first_hop, rest) = plaintext.split_first_chunk::<32>()?;
        let (packet, data) = rest.split_at_checked(ACK_PACKET_LEN)?;
        let packet = Packet::from_bytes(packet.to_vec()).ok()?;
        let ack = SurbAck {
            first_hop: NodeAddress::new(*first_hop),
            packet,
        };
        Some((ack, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surb_acks_split_back_off() {
        let ack = SurbAck {
            first_hop: NodeAddress::new([4; 32]),
            packet: Packet::from_bytes(vec![9; ACK_PACKET_LEN]).unwrap(),
        };
        let plaintext = ack.prefix(b"data");
        assert_eq!(plaintext.len(), 418 + 4);
        assert_eq!(SurbAck::split(&plaintext), Some((ack, &b"data"[..])));
        assert_eq!(SurbAck::split(&plaintext[..417]), None);
    }
}
