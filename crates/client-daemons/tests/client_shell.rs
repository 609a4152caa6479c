//! The client shell on a paused clock: what it does while its gateway is away.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use umbra_client::{Client, ClientConfig, ClientKeys};
use umbra_client_daemons::client::{self, ClientSetup, ConnectionConfig};
use umbra_topology::{NoiseKey, Topology};

/// A public key (base58), from a secret of `seed`.
fn key(seed: u8) -> String {
    bs58::encode(public(seed)).into_string()
}

fn public(seed: u8) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([seed; 32])).to_bytes()
}

/// A mix node per layer and a gateway taking clients at `gateway` (where nothing listens).
fn topology(gateway: std::net::SocketAddr) -> Topology {
    let mix = |id: u8, layer: u8| {
        format!(
            r#"{{"id": {id}, "role": "mix", "layer": {layer}, "mix_address": "127.0.0.1:{}", "sphinx_key": "{}", "noise_key": "{}"}}"#,
            20000 + u16::from(id),
            key(id),
            key(100 + id)
        )
    };
    let json = format!(
        r#"{{"key_rotation": 1, "nodes": [{}, {}, {}, {{"id": 4, "role": "gateway", "mix_address": "127.0.0.1:20004", "client_address": "{gateway}", "sphinx_key": "{}", "noise_key": "{}"}}]}}"#,
        mix(1, 1),
        mix(2, 2),
        mix(3, 3),
        key(4),
        key(104)
    );
    Topology::from_json(&json).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_client_whose_gateway_is_down_wakes_only_for_its_reconnection_and_timers() {
    // issue 13.1: with its gateway down a client used 7 s of CPU in 10 s, waking again and
    // again for stream slots nothing could take
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let topology = topology(address);
    let keys = ClientKeys::generate(&mut rand::rng());
    let gateway = public(104);
    let core = Client::new(
        ClientConfig::default(),
        keys.clone(),
        gateway,
        topology,
        [1; 32],
        std::time::Instant::now(),
    )
    .unwrap();
    let setup = ClientSetup {
        gateway_address: address,
        gateway_key: NoiseKey(gateway),
        connection: ConnectionConfig::default(),
        outbox: None,
        topologies: None,
        tickets: None,
        max_pending_bytes: 64 << 20,
    };
    let stop = CancellationToken::new();
    let (handle, _events, task) = client::start(core, &keys, setup, stop.clone()).unwrap();
    // a minute of virtual time, a tenth of a second at a time, letting every task run
    for _ in 0..600 {
        tokio::time::advance(Duration::from_millis(100)).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }
    let status = handle.status().await.unwrap();
    assert!(!status.connected);
    // reconnections every 0.5, 1, 2, … up to 30 s (8 in a minute, each an attempt and its
    // failure), the core's pruning every 10 s: a few dozen wake-ups, not thousands
    assert!(
        status.wakeups < 60,
        "{} wake-ups in a minute of a gateway away",
        status.wakeups
    );
    assert_eq!(status.bytes_sent, 0);
    stop.cancel();
    task.await.unwrap();
}
