//! A node's socket address as Nym writes it into a Sphinx routing block:
//! `4 ‖ port (u16, big-endian) ‖ IPv4 octets` or `6 ‖ port ‖ IPv6 octets`, zero-padded to 32
//! bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use umbra_sphinx::NodeAddress;

use crate::err::AddressError;

/// The routing address of the node at `socket`.
pub fn encode(socket: SocketAddr) -> NodeAddress {
    let mut bytes = [0u8; 32];
    bytes[1..3].copy_from_slice(&socket.port().to_be_bytes());
    match socket.ip() {
        IpAddr::V4(ip) => {
            bytes[0] = 4;
            bytes[3..7].copy_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            bytes[0] = 6;
            bytes[3..19].copy_from_slice(&ip.octets());
        }
    }
    NodeAddress::new(bytes)
}

/// The socket address a routing address names.
pub fn decode(address: &NodeAddress) -> Result<SocketAddr, AddressError> {
    let bytes = address.as_bytes();
    let port = u16::from_be_bytes([bytes[1], bytes[2]]);
    let (ip, used) = match bytes[0] {
        4 => {
            let mut octets = [0u8; 4];
            octets.copy_from_slice(&bytes[3..7]);
            (IpAddr::V4(Ipv4Addr::from(octets)), 7)
        }
        6 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&bytes[3..19]);
            (IpAddr::V6(Ipv6Addr::from(octets)), 19)
        }
        byte => return Err(AddressError::UnknownIpVersion { byte }),
    };
    if bytes[used..].iter().any(|&byte| byte != 0) {
        return Err(AddressError::NonZeroPadding);
    }
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_nyms() {
        let address = encode("1.2.3.4:1789".parse().unwrap());
        let mut expected = [0u8; 32];
        expected[..7].copy_from_slice(&[4, 0x06, 0xfd, 1, 2, 3, 4]);
        assert_eq!(address.as_bytes(), &expected);
    }

    #[test]
    fn bad_addresses_are_refused() {
        assert_eq!(
            decode(&NodeAddress::new([5; 32])),
            Err(AddressError::UnknownIpVersion { byte: 5 })
        );
        let mut bytes = *encode("1.2.3.4:1789".parse().unwrap()).as_bytes();
        bytes[31] = 1;
        assert_eq!(
            decode(&NodeAddress::new(bytes)),
            Err(AddressError::NonZeroPadding)
        );
    }

    proptest! {
        #[test]
        fn addresses_round_trip(ip in any::<IpAddr>(), port in any::<u16>()) {
            let socket = SocketAddr::new(ip, port);
            prop_assert_eq!(decode(&encode(socket)), Ok(socket));
        }
    }
}
