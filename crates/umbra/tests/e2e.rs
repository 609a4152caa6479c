//! The mixnet end to end on loopback: mix nodes and gateways as `umbra` processes, clients on
//! real sessions, messages through three layers of mixing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::time::Duration;

use common::{Net, fast_config};
use umbra_client::ClientKeys;
use umbra_net::client::ClientEvent;
use umbra_net::localnet::Shape;

fn keys() -> ClientKeys {
    ClientKeys::generate(&mut rand::rng())
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_large_messages_replies_and_reconnects() {
    let net = Net::start(
        "messages",
        Shape {
            mixes_per_layer: 1,
            gateways: 2,
        },
    );
    let (alice_keys, bob_keys) = (keys(), keys());
    let mut alice = net.client(0, &alice_keys, fast_config());
    let mut bob = net.client(1, &bob_keys, fast_config());
    alice.connected().await;
    bob.connected().await;
    let bob_address = bob.handle.address();
    let alice_address = alice.handle.address();

    // small messages both ways
    let id = alice
        .handle
        .send(bob_address, b"hello bob".to_vec(), 0)
        .await
        .unwrap();
    assert_eq!(bob.received().await, (b"hello bob".to_vec(), None));
    alice.sent(id).await;
    bob.handle
        .send(alice_address, b"hello alice".to_vec(), 0)
        .await
        .unwrap();
    assert_eq!(alice.received().await.0, b"hello alice");

    // a 1 MiB message, intact
    let large = pattern(1 << 20, 7);
    let id = alice
        .handle
        .send(bob_address, large.clone(), 0)
        .await
        .unwrap();
    let (received, _) = bob.received().await;
    assert!(received == large, "the 1 MiB message arrived altered");
    alice.sent(id).await;

    // an anonymous question, and the reply through its SURBs
    alice
        .handle
        .send(bob_address, b"who am I?".to_vec(), 5)
        .await
        .unwrap();
    let (question, tag) = bob.received().await;
    assert_eq!(question, b"who am I?");
    let tag = tag.expect("the question came with SURBs");
    let reply_id = bob.handle.reply(tag, b"someone".to_vec()).await.unwrap();
    let (from, reply) = alice
        .next(|e| match e {
            ClientEvent::Reply { from, message } => Some((from, message)),
            _ => None,
        })
        .await;
    assert_eq!((from, reply), (bob_address, b"someone".to_vec()));
    bob.sent(reply_id).await;

    // bob's process dies without a word; a new one with his keys is let in at once
    bob.crash().await;
    let started = std::time::Instant::now();
    let mut bob = net.client(1, &bob_keys, fast_config());
    bob.connected().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "reconnecting after a crash took {took:?}"
    );
    alice
        .handle
        .send(bob_address, b"still there?".to_vec(), 0)
        .await
        .unwrap();
    assert_eq!(bob.received().await.0, b"still there?");

    let stats = alice.handle.status().await.unwrap().stats;
    assert!(
        stats.drop_cover > 0 && stats.loops_returned > 0,
        "{stats:?}"
    );
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipients_get_their_messages_across_gateway_restarts() {
    let mut net = Net::start(
        "offline",
        Shape {
            mixes_per_layer: 1,
            gateways: 2,
        },
    );
    let (alice_keys, carol_keys) = (keys(), keys());
    let mut alice = net.client(0, &alice_keys, fast_config());
    alice.connected().await;
    // carol connects once (her gateway learns her), then goes away
    let carol = net.client(1, &carol_keys, fast_config());
    let carol_address = carol.handle.address();
    let mut carol = carol;
    carol.connected().await;
    carol.stop().await;

    // acknowledged means stored: then a clean restart of her gateway ...
    let first: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("while you were away {i}").into_bytes())
        .collect();
    for message in &first {
        let id = alice
            .handle
            .send(carol_address, message.clone(), 0)
            .await
            .unwrap();
        alice.sent(id).await;
    }
    let status = net
        .processes
        .terminate("gateway-2", Duration::from_secs(20))
        .unwrap();
    assert!(status.success(), "the gateway stopped with {status}");
    net.restart("gateway-2");

    // ... and a crash (SIGKILL) lose nothing
    let second = pattern(20_000, 3);
    let id = alice
        .handle
        .send(carol_address, second.clone(), 0)
        .await
        .unwrap();
    alice.sent(id).await;
    net.processes.kill("gateway-2");
    net.restart("gateway-2");

    let mut carol = net.client(1, &carol_keys, fast_config());
    let waiting = carol.connected().await;
    // 3 messages, one of 14 fragments, and acks of carol's last packets
    assert!(waiting >= 17, "{waiting} deliveries waiting");
    let mut received = Vec::new();
    for _ in 0..4 {
        received.push(carol.received().await.0);
    }
    let mut expected = first.clone();
    expected.push(second);
    received.sort();
    expected.sort();
    assert_eq!(received, expected);

    // confirmed deliveries are gone from the inbox: a new session gets no message again
    carol.stop().await;
    let mut carol = net.client(1, &carol_keys, fast_config());
    carol.connected().await;
    let again = tokio::time::timeout(
        Duration::from_secs(2),
        carol.next(|e| matches!(e, ClientEvent::Received { .. }).then_some(())),
    )
    .await;
    assert!(again.is_err(), "a confirmed message was delivered again");
    alice.stop().await;
    carol.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mix_node_killed_mid_transfer_costs_no_message() {
    let mut net = Net::start(
        "kill",
        Shape {
            mixes_per_layer: 2,
            gateways: 2,
        },
    );
    let (alice_keys, bob_keys) = (keys(), keys());
    let mut alice = net.client(0, &alice_keys, fast_config());
    let mut bob = net.client(1, &bob_keys, fast_config());
    alice.connected().await;
    bob.connected().await;
    let messages: Vec<Vec<u8>> = (0..4).map(|i| pattern(100_000, i)).collect();
    let mut ids = Vec::new();
    for message in &messages {
        ids.push(
            alice
                .handle
                .send(bob.handle.address(), message.clone(), 0)
                .await
                .unwrap(),
        );
    }
    // in the middle of the transfer, a second-layer node dies
    tokio::time::sleep(Duration::from_millis(150)).await;
    net.processes.kill("mix-2-1");
    let mut received = Vec::new();
    for _ in &messages {
        received.push(bob.received().await.0);
    }
    received.sort();
    let mut expected = messages.clone();
    expected.sort();
    assert!(received == expected, "a message arrived altered");
    alice.all_sent(&ids).await;
    let stats = alice.handle.status().await.unwrap().stats;
    assert!(
        stats.retransmissions > 0,
        "no packet was lost with the node: {stats:?}"
    );
    alice.stop().await;
    bob.stop().await;
}
