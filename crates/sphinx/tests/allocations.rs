//! A forward hop allocates nothing: the next packet is written into the buffer the packet
//! arrived in. (Its own test binary: the allocation counter is process-wide.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use umbra_sphinx::{
    Delay, Destination, DestinationAddress, Hop, NodeAddress, PacketBuilder, PacketSize,
    PrivateKey, Processed, SurbId, Version,
};

#[test]
fn a_forward_hop_allocates_nothing() {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let keys: Vec<PrivateKey> = (0..3).map(|_| PrivateKey::generate(&mut rng)).collect();
    let route: Vec<Hop> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Hop::new(NodeAddress::new([i as u8; 32]), k.public_key()))
        .collect();
    let destination = Destination::new(DestinationAddress::new([1; 32]), SurbId::default());
    for size in PacketSize::ALL {
        for version in Version::ALL {
            let packet = PacketBuilder::new(size)
                .version(version)
                .build(
                    &mut rng,
                    &route,
                    &[Delay::from_millis(1); 3],
                    &destination,
                    b"m",
                )
                .unwrap();
            let buffer = packet.as_bytes().as_ptr();
            let mut outcome = None;
            let counted = allocation_counter::measure(|| {
                let checked = keys[0].check(packet).unwrap();
                let _tag = checked.replay_tag();
                outcome = Some(checked.finish().unwrap());
            });
            assert_eq!(
                counted.count_total,
                0,
                "{size:?} v{}: {counted:?}",
                version.number()
            );
            let Some(Processed::Forward { packet, .. }) = outcome else {
                panic!("expected a forward hop");
            };
            assert_eq!(
                packet.as_bytes().as_ptr(),
                buffer,
                "the next packet reuses the buffer"
            );
        }
    }
}
