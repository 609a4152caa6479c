//! A client's core fed deliveries whatever their bytes (its gateway, or anyone who made a
//! packet for it, controls them): data, sealed replies and acks, then its streams run on.
//! Nothing may panic.

#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use umbra_client::{Client, ClientConfig, ClientKeys};
use umbra_sphinx::{PrivateKey, SurbId};
use umbra_topology::{Layer, NodeDescriptor, NodeId, NoiseKey, Role, Topology};
use umbra_wire::gateway::{Delivery, DeliveryKind};

fn topology() -> &'static Topology {
    static TOPOLOGY: OnceLock<Topology> = OnceLock::new();
    TOPOLOGY.get_or_init(|| {
        let nodes = (0..4u8)
            .map(|i| {
                let role = match i {
                    0..=2 => Role::Mix(Layer::ALL[usize::from(i)]),
                    _ => Role::Gateway,
                };
                NodeDescriptor {
                    id: NodeId(u32::from(i) + 1),
                    role,
                    mix_address: SocketAddr::from(([10, 0, 0, i + 1], 1789)),
                    client_address: (role == Role::Gateway).then(|| SocketAddr::from(([10, 0, 0, i + 1], 9000))),
                    sphinx_key: PrivateKey::from_bytes([i + 1; 32]).public_key(),
                    noise_key: NoiseKey([i + 100; 32]),
                }
            })
            .collect();
        match Topology::new(1, nodes) {
            Ok(topology) => topology,
            Err(error) => panic!("{error}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let keys = ClientKeys::generate(&mut ChaCha20Rng::from_seed([3; 32]));
    let Ok(mut client) = Client::new(ClientConfig::default(), keys, [103; 32], topology().clone(), [4; 32], start) else {
        return;
    };
    let mut now = start;
    for (i, chunk) in data.split(|&b| b == 0xfe).enumerate() {
        let Some((&kind, payload)) = chunk.split_first() else { continue };
        let kind = match kind % 3 {
            0 => DeliveryKind::Data,
            1 => DeliveryKind::Ack,
            _ => DeliveryKind::Sealed { surb_id: SurbId::new([kind; 16]) },
        };
        client.handle_delivery(now, Delivery { id: i as u64, kind, payload: payload.to_vec() });
        now += Duration::from_millis(u64::from(kind_byte(chunk)));
        client.handle_timeout(now);
        while client.poll_transmit(now).is_some() {}
        while client.poll_event().is_some() {}
    }
});

fn kind_byte(chunk: &[u8]) -> u8 {
    chunk.last().copied().unwrap_or(0)
}
