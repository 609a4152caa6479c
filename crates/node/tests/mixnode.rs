//! Mix nodes on loopback, on real Noise links: a sender (playing the entry gateway) pushes
//! packets through three nodes, one per layer, to a sink (the exit gateway), which processes
//! the last Sphinx layer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Net, WAIT, http_get, wait_for_metric};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use umbra_net::metrics::sample;
use umbra_net::noise::{self, NoiseKeypair};
use umbra_node::mixnode::{self, Mixnode};
use umbra_topology::{Layer, NodeDescriptor, NodeId, Role, Topology};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_cross_three_layers_intact() {
    let mut net = Net::start("cross", 2000).await;
    let (sender, _) = net.sender();
    let messages: Vec<Vec<u8>> = (0..200u32)
        .map(|i| format!("message {i}").into_bytes())
        .collect();
    for message in &messages {
        let delay = Duration::from_millis(u64::from(message[8]) % 5);
        sender.send(net.packet(message, delay)).await.unwrap();
    }
    let mut received = Vec::new();
    for _ in &messages {
        received.push(net.receive().await);
    }
    received.sort();
    let mut expected = messages.clone();
    expected.sort();
    assert_eq!(received, expected);
    for i in 0..3 {
        assert_eq!(
            wait_for_metric(&net, i, "umbra_mixnode_packets_forwarded_total", 200.0).await,
            200.0,
            "mix {i}"
        );
    }
    let page = net.metrics(0).await;
    assert_eq!(
        sample(&page, "umbra_link_peer_connected{peer=\"node 2\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&page, "umbra_mixnode_delay_queue_packets"),
        Some(0.0)
    );
    let (status, health) = http_get(net.mixes[0].http, "/health").await;
    assert!(status.contains("200"), "{status}");
    assert!(
        health.contains("\"status\":\"ok\"") && health.contains("\"layer\":1"),
        "{health}"
    );
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_packet_is_dropped_even_after_a_restart() {
    let mut net = Net::start("replay", 2000).await;
    let (sender, _) = net.sender();
    let frame = net.packet(b"once only", Duration::ZERO);
    sender.send(frame.clone()).await.unwrap();
    assert_eq!(net.receive().await, b"once only");
    sender.send(frame.clone()).await.unwrap();
    assert_eq!(
        wait_for_metric(&net, 0, "umbra_mixnode_packets_replayed_total", 1.0).await,
        1.0
    );
    assert!(net.nothing_arrives(Duration::from_millis(300)).await);

    // restart layer 1: it saves its replay filter on the way down and loads it on the way up
    net.stop_mix(0).await;
    assert!(net.mixes[0].dir.join("replay/rotation-1.bloom").exists());
    net.restart_mix(0).await;
    sender.send(frame).await.unwrap();
    assert_eq!(
        wait_for_metric(&net, 0, "umbra_mixnode_packets_replayed_total", 1.0).await,
        1.0
    );
    assert!(
        net.nothing_arrives(Duration::from_millis(300)).await,
        "replayed after the restart"
    );
    // and fresh packets still go through the restarted node
    sender
        .send(net.packet(b"fresh", Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(net.receive().await, b"fresh");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_peer_fills_the_queue_and_the_link_comes_back() {
    let queue_len = 20;
    let mut net = Net::start("dead-peer", queue_len).await;
    let (sender, _) = net.sender();
    sender
        .send(net.packet(b"before", Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(net.receive().await, b"before");

    net.stop_mix(1).await;
    for i in 0..60u32 {
        sender
            .send(net.packet(format!("while down {i}").as_bytes(), Duration::ZERO))
            .await
            .unwrap();
    }
    let dropped = wait_for_metric(
        &net,
        0,
        "umbra_mixnode_packets_dropped_total{reason=\"link_queue_full\"}",
        30.0,
    )
    .await;
    assert!(dropped >= 30.0, "{dropped} drops counted");
    let page = net.metrics(0).await;
    assert_eq!(
        sample(&page, "umbra_link_peer_connected{peer=\"node 2\"}"),
        Some(0.0)
    );
    assert!(sample(&page, "umbra_link_outbound_failed_total{reason=\"io\"}").unwrap_or(0.0) >= 1.0);

    net.restart_mix(1).await;
    // what waited in the queue arrives, and new packets flow again
    let mut arrived = 0;
    while arrived < queue_len {
        let message = net.receive().await;
        assert!(message.starts_with(b"while down"));
        arrived += 1;
    }
    sender
        .send(net.packet(b"after", Duration::ZERO))
        .await
        .unwrap();
    loop {
        let message = net.receive().await;
        if message == b"after" {
            break;
        }
        assert!(message.starts_with(b"while down"), "{message:?}");
    }
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_wrong_keys_are_cut_off_while_other_links_work() {
    let mut net = Net::start("garbage", 2000).await;
    let (sender, _) = net.sender();
    let layer1 = net.mixes[0].address;
    let layer1_key = net.topology.layer(Layer::FIRST).next().unwrap().noise_key;

    // plain garbage
    let mut garbage = TcpStream::connect(layer1).await.unwrap();
    garbage.write_all(&[0x17; 5000]).await.unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(WAIT, garbage.read(&mut buffer))
        .await
        .unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "garbage link left open");

    // a stranger: a sound Noise handshake, but a key the topology does not list
    let stranger = NoiseKeypair::generate();
    let stream = TcpStream::connect(layer1).await.unwrap();
    let (mut reader, mut writer) =
        noise::initiate(stream, &stranger, &layer1_key, Duration::from_secs(2))
            .await
            .unwrap();
    let _ = writer
        .push(&net.packet(b"from a stranger", Duration::ZERO))
        .await;
    let _ = writer.flush().await;
    let closed = tokio::time::timeout(WAIT, reader.next_frame())
        .await
        .unwrap();
    assert!(
        matches!(closed, Ok(None) | Err(_)),
        "stranger's link left open"
    );

    // a node that expects layer 1 to hold another key
    let wrong = NoiseKeypair::generate().public();
    let stream = TcpStream::connect(layer1).await.unwrap();
    assert!(
        noise::initiate(stream, &net.sender_keys, &wrong, Duration::from_secs(2))
            .await
            .is_err()
    );

    // the good link still works throughout
    sender
        .send(net.packet(b"still here", Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(net.receive().await, b"still here");
    let page = net.metrics(0).await;
    assert!(
        sample(
            &page,
            "umbra_link_inbound_refused_total{reason=\"unknown_peer\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{page}"
    );
    assert!(
        sample(
            &page,
            "umbra_link_inbound_refused_total{reason=\"handshake\"}"
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{page}"
    );
    assert_eq!(
        wait_for_metric(&net, 0, "umbra_mixnode_packets_forwarded_total", 1.0).await,
        1.0
    );
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_forwards_every_packet_it_accepted() {
    let mut net = Net::start("graceful", 2000).await;
    let (sender, _) = net.sender();
    for i in 0..20u32 {
        sender
            .send(net.packet(format!("held {i}").as_bytes(), Duration::from_millis(400)))
            .await
            .unwrap();
    }
    // wait until layer 1 holds them all, then stop it while they are still held
    assert_eq!(
        wait_for_metric(&net, 0, "umbra_mixnode_frames_received_total", 20.0).await,
        20.0
    );
    // (how fast it stops is for the benchmarks: what it forwards is what counts here)
    net.stop_mix(0).await;
    for _ in 0..20 {
        assert!(net.receive().await.starts_with(b"held"));
    }
    net.stop().await;
}

/// `insecure_drop_fraction` from config.toml reaches the core: at 1, layer 1 forwards nothing
/// and counts every packet as dropped (the share's statistics are the core's unit tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_told_to_drop_everything_forwards_nothing() {
    let mut net = Net::start_with(
        "insecure-drop",
        &Layer::ALL,
        |config| config.insecure_drop_fraction = 1.0,
        None,
    )
    .await;
    let (sender, _) = net.sender();
    for i in 0..20u32 {
        sender
            .send(net.packet(format!("lost {i}").as_bytes(), Duration::ZERO))
            .await
            .unwrap();
    }
    assert_eq!(
        wait_for_metric(
            &net,
            0,
            "umbra_mixnode_packets_dropped_total{reason=\"insecure_drop\"}",
            20.0
        )
        .await,
        20.0
    );
    let page = net.metrics(0).await;
    assert_eq!(
        sample(&page, "umbra_mixnode_packets_forwarded_total"),
        Some(0.0)
    );
    assert!(net.nothing_arrives(Duration::from_millis(300)).await);
    net.stop().await;
}

/// The daemon refuses a data directory it cannot run from, naming the file at fault.
#[tokio::test]
async fn a_broken_data_directory_names_the_file_at_fault() {
    let root = std::env::temp_dir().join(format!("umbra-net-broken-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let error = |dir: &Path| Mixnode::load(dir).err().unwrap().to_string();

    assert!(error(&root).contains("umbra mixnode init"));
    let made = mixnode::init(
        &root,
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        None,
    )
    .unwrap();
    assert!(
        mixnode::init(
            &root,
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            None,
        )
        .unwrap_err()
        .to_string()
        .contains("already holds a node")
    );
    let missing_topology = error(&root);
    assert!(
        missing_topology.contains("topology.json"),
        "{missing_topology}"
    );

    let gateway = NodeDescriptor {
        id: NodeId(1),
        role: Role::Gateway,
        mix_address: "127.0.0.1:1".parse().unwrap(),
        client_address: Some("127.0.0.1:2".parse().unwrap()),
        sphinx_key: made.sphinx_key,
        noise_key: made.noise_key,
    };
    std::fs::write(
        root.join("topology.json"),
        Topology::new(1, vec![gateway]).unwrap().to_json(),
    )
    .unwrap();
    assert!(error(&root).contains("as a gateway"));
    std::fs::write(
        root.join("topology.json"),
        Topology::new(1, vec![]).unwrap().to_json(),
    )
    .unwrap();
    let unlisted = error(&root);
    assert!(
        unlisted.contains("does not list this node")
            && unlisted.contains(&made.noise_key.to_string()),
        "{unlisted}"
    );

    std::fs::write(root.join(mixnode::SPHINX_KEY_FILE), "garbage\n").unwrap();
    assert!(error(&root).contains("sphinx.key"));
    std::fs::write(
        root.join(mixnode::CONFIG_FILE),
        "listen_address = 'nowhere'",
    )
    .unwrap();
    let config = error(&root);
    assert!(
        config.contains("config.toml") && config.contains("listen_address"),
        "{config}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}
