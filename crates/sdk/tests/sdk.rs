//! The SDK against a network running in this process (mix nodes and a gateway on loopback).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::time::Duration;

use common::{Network, within};
use umbra_sdk::{ClientBuilder, ClientEvent, Received, TrafficConfig};

fn fast() -> TrafficConfig {
    TrafficConfig {
        mean_hop_delay: Duration::from_millis(2),
        mean_ack_delay: Duration::from_millis(2),
        mean_send_interval: Duration::from_millis(5),
        mean_loop_interval: Duration::from_millis(100),
        receive_interval: Duration::from_millis(5),
        ..TrafficConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_receive_reply_and_keep_an_address() {
    let network = Network::start("sdk");
    let (dir, layout) = (&network.dir, &network.layout);
    let builder = |name: &str| {
        ClientBuilder::from_topology_file(&layout.topology_file())
            .unwrap()
            .storage(&dir.join(name))
            .traffic(fast())
    };
    let mut alice = within(builder("alice").connect()).await.unwrap();
    let mut bob = within(builder("bob").connect()).await.unwrap();

    let id = alice
        .send_with_surbs(&bob.address(), "a question", 4)
        .await
        .unwrap();
    let Some(Received::Message {
        data,
        reply_to: Some(tag),
    }) = within(bob.receive()).await
    else {
        panic!("no question with SURBs")
    };
    assert_eq!(data, b"a question");
    bob.reply(tag, "an answer").await.unwrap();
    // the answer, and the news that the question was delivered, in either order
    let (mut answer, mut delivered) = (None, false);
    while answer.is_none() || !delivered {
        match within(alice.next_event()).await.unwrap() {
            ClientEvent::Reply { from, message, .. } => answer = Some((from, message)),
            ClientEvent::Sent(sent) => delivered |= sent == id,
            _ => {}
        }
    }
    assert_eq!(answer, Some((bob.address(), b"an answer".to_vec())));

    // bob's keys are in his folder: back with the same address, and messages still reach him
    let address = bob.address();
    bob.disconnect().await;
    alice.send(&address, "are you back?").await.unwrap();
    let mut bob = within(builder("bob").connect()).await.unwrap();
    assert_eq!(bob.address(), address);
    assert_eq!(
        within(bob.receive()).await,
        Some(Received::Message {
            data: b"are you back?".to_vec(),
            reply_to: None
        })
    );

    // a bad gateway is named
    let error = builder("carol")
        .gateway("999")
        .connect()
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("no gateway \"999\""), "{error}");

    alice.disconnect().await;
    bob.disconnect().await;
    network.stop().await;
}
