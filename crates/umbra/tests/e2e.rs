//! The mixnet end to end on loopback: mix nodes and gateways as `umbra` processes, clients on
//! real sessions, messages through three layers of mixing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::time::Duration;

use common::{Net, fast_config};
use umbra::network::Shape;
use umbra_client::ClientKeys;
use umbra_client_daemons::client::ClientEvent;

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
            ClientEvent::Reply { from, message, .. } => Some((from, message)),
            _ => None,
        })
        .await;
    assert_eq!((from, reply), (bob_address, b"someone".to_vec()));
    bob.sent(reply_id).await;

    // bob's process dies without a word; a new one with his keys is let in at once
    bob.crash().await;
    let mut bob = net.client(1, &bob_keys, fast_config());
    bob.connected().await;
    // at the first attempt: the gateway replaces the dead session rather than refusing a
    // second one ("already an open connection", as Nym's did)
    assert_eq!(bob.handle.status().await.unwrap().connection_attempts, 1);
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
    // 3 messages, one of 13 fragments, and maybe acks of carol's last packets
    assert!(waiting >= 16, "{waiting} deliveries waiting");
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

/// `umbra client run` as an application uses it: a WebSocket, JSON and binary frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applications_talk_through_the_client_daemon_api() {
    use futures_util::{SinkExt, StreamExt};
    use serde_json::{Value, json};
    use tokio_tungstenite::tungstenite::Message;

    let net = Net::start(
        "api",
        Shape {
            mixes_per_layer: 1,
            gateways: 2,
        },
    );
    let topology = net.dir.join("topology.json");
    let mut daemons = Vec::new();
    let mut apis = Vec::new();
    for (i, gateway) in [(0, net.gateway(0)), (1, net.gateway(1))] {
        let dir = net.dir.join(format!("client-{i}"));
        let api = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let init = std::process::Command::new(env!("CARGO_BIN_EXE_umbra"))
            .args(["client", "init", "--traffic", "low-latency", "--data-dir"])
            .arg(&dir)
            .arg("--topology")
            .arg(&topology)
            .args([
                "--gateway",
                &gateway.id.0.to_string(),
                "--api",
                &api.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        let log = std::fs::File::create(net.dir.join(format!("client-{i}.log"))).unwrap();
        let daemon = std::process::Command::new(env!("CARGO_BIN_EXE_umbra"))
            .args(["client", "run", "--data-dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        daemons.push(daemon);
        apis.push(api);
    }
    let connect = |url: String| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok((socket, _)) => return socket,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(error) => panic!("cannot reach the API at {url}: {error}"),
            }
        }
    };
    let mut a = connect(format!("ws://{}/", apis[0])).await;
    let mut b = connect(format!("ws://{}/?format=binary", apis[1])).await;

    async fn next_json<S>(socket: &mut S, kind: &str) -> Value
    where
        S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + Unpin,
    {
        loop {
            let frame = tokio::time::timeout(common::WAIT, socket.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Message::Text(text) = frame {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] == kind {
                    return value;
                }
            }
        }
    }
    async fn next_binary<S>(socket: &mut S) -> Vec<u8>
    where
        S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + Unpin,
    {
        loop {
            let frame = tokio::time::timeout(common::WAIT, socket.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Message::Binary(bytes) = frame {
                return bytes.to_vec();
            }
        }
    }
    let text = |value: Value| Message::Text(value.to_string().into());

    b.send(text(json!({"type": "self_address"}))).await.unwrap();
    let b_address = next_json(&mut b, "self_address").await["address"]
        .as_str()
        .unwrap()
        .to_owned();
    a.send(text(json!({"type": "self_address"}))).await.unwrap();
    let a_address = next_json(&mut a, "self_address").await["address"]
        .as_str()
        .unwrap()
        .to_owned();

    // mistakes get a clear answer, and the connection goes on
    a.send(text(json!({"type": "sned"}))).await.unwrap();
    let mistake = next_json(&mut a, "error").await;
    assert!(
        mistake["error"]
            .as_str()
            .unwrap()
            .contains("unknown variant `sned`"),
        "{mistake}"
    );
    a.send(text(
        json!({"type": "send", "to": "nobody@nowhere", "message": "x", "request_id": 1}),
    ))
    .await
    .unwrap();
    let mistake = next_json(&mut a, "error").await;
    assert_eq!(mistake["request_id"], 1);
    assert!(
        mistake["error"].as_str().unwrap().contains("`to`"),
        "{mistake}"
    );

    // a question with SURBs in JSON; it arrives in a binary frame with the sender's tag
    a.send(text(json!({"type": "send", "to": b_address, "message": "hi from a", "surbs": 3, "request_id": "q"})))
        .await
        .unwrap();
    let accepted = next_json(&mut a, "accepted").await;
    assert_eq!(accepted["request_id"], "q");
    let message_id = accepted["message_id"].clone();
    let frame = next_binary(&mut b).await;
    assert_eq!(
        frame[..2],
        [0x81, 1],
        "a received message with a sender tag"
    );
    let tag = frame[2..18].to_vec();
    assert_eq!(&frame[18..], b"hi from a");
    let sent = next_json(&mut a, "sent").await;
    assert_eq!(sent["message_id"], message_id);

    // the binary reply, through the SURBs, arrives as JSON naming whom the SURBs went to
    let mut reply = vec![0x02];
    reply.extend_from_slice(&9u64.to_be_bytes());
    reply.extend_from_slice(&tag);
    reply.extend_from_slice(&[0xff, 0x00, 0x01]);
    b.send(Message::Binary(reply.into())).await.unwrap();
    assert_eq!(next_json(&mut b, "accepted").await["request_id"], 9);
    let replied = next_json(&mut a, "reply").await;
    assert_eq!(replied["from"], b_address.as_str());
    assert_eq!(replied["message_base64"], "/wAB");
    assert_ne!(a_address, b_address);

    // once delivered, nothing of a message is left readable in the sender's folder
    let marker = "a plaintext that must not stay on disk once delivered; ";
    let secret = marker.repeat(100_000 / marker.len());
    a.send(text(
        json!({"type": "send", "to": b_address, "message": secret, "request_id": "s"}),
    ))
    .await
    .unwrap();
    let message_id = next_json(&mut a, "accepted").await["message_id"].clone();
    loop {
        if next_json(&mut a, "sent").await["message_id"] == message_id {
            break;
        }
    }
    let folder = net.dir.join("client-0");
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{} holds a delivered message's plaintext",
            path.display()
        );
    }

    for mut daemon in daemons {
        let _ = std::process::Command::new("kill")
            .arg(daemon.id().to_string())
            .status();
        let status = daemon.wait().unwrap();
        assert!(status.success(), "the client daemon stopped with {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_gets_its_deliveries_from_the_inbox() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let net = Net::start(
        "stops-reading",
        Shape {
            mixes_per_layer: 1,
            gateways: 1,
        },
    );
    // bob: an `umbra client` process with its WebSocket API; alice: a client in this process
    let api = umbra::network::free_port().unwrap();
    let topology = net.processes.layout().topology_file();
    let mut bob = common::apps::Daemon::init(
        &net,
        "client",
        "bob",
        &topology,
        0,
        &["--api", &api.to_string(), "--traffic", "low-latency"],
    );
    bob.start();
    common::apps::wait_listening(api);
    let bob_address: umbra_wire::ClientAddress = bob.address().parse().unwrap();
    let (mut app, _) = tokio_tungstenite::connect_async(format!("ws://{api}/"))
        .await
        .unwrap();
    let mut alice = net.client(0, &keys(), fast_config());
    alice.connected().await;
    let id = alice
        .handle
        .send(bob_address, b"before".to_vec(), 0)
        .await
        .unwrap();
    alice.sent(id).await;

    // bob's process stops (as a laptop's lid closes): it neither reads nor sends
    let pid = bob.child.as_ref().unwrap().id().to_string();
    let signal = |name: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([name, &pid])
                .status()
                .unwrap()
                .success()
        )
    };
    signal("-STOP");
    let messages: Vec<Vec<u8>> = (0..100)
        .map(|i| format!("message {i:03} {}", "x".repeat(990)).into_bytes())
        .collect();
    let mut ids = Vec::new();
    for message in &messages {
        ids.push(
            alice
                .handle
                .send(bob_address, message.clone(), 0)
                .await
                .unwrap(),
        );
    }
    // every one is acknowledged while bob is stopped: the gateway stored them (a delivery is
    // acknowledged once confirmed by its client, or stored; bob confirmed nothing), which it
    // does once bob's session queue is full and it gives up the session
    alice.all_sent(&ids).await;
    signal("-CONT");
    // bob's client finds its session gone, reconnects, and gets them all from the inbox
    let expected: std::collections::HashSet<String> = messages
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    let mut got = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while got.len() < expected.len() {
        let frame = tokio::time::timeout_at(deadline, app.next())
            .await
            .unwrap_or_else(|_| panic!("bob got {} of {} messages", got.len(), expected.len()))
            .unwrap()
            .unwrap();
        if let Message::Text(text) = frame {
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            let message = value["message"].as_str().unwrap_or_default().to_owned();
            if value["type"] == "received" && message != "before" {
                assert!(expected.contains(&message), "an unexpected message");
                got.insert(message);
            }
        }
    }
    alice.stop().await;
    drop(bob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_that_does_not_take_its_events_loses_nothing_and_costs_bounded_memory() {
    let net = Net::start(
        "slow-app",
        Shape {
            mixes_per_layer: 1,
            gateways: 1,
        },
    );
    let mut alice = net.client(0, &keys(), fast_config());
    let mut bob = net.client(0, &keys(), fast_config());
    alice.connected().await;
    bob.connected().await;
    let bob_address = bob.handle.address();
    // 3,000 messages for bob, whose application takes none of its events meanwhile
    let count = 3000;
    let mut ids = Vec::new();
    for i in 0..count {
        ids.push(
            alice
                .handle
                .send(bob_address, format!("{i:05}").into_bytes(), 0)
                .await
                .unwrap(),
        );
    }
    alice.all_sent(&ids).await;
    // all of them reached bob's gateway (acknowledged: confirmed by bob's client or stored);
    // bob's client holds at most its backlog of events beyond the channel
    let status = bob.handle.status().await.unwrap();
    assert!(
        status.events_waiting <= 1024 + 100,
        "{} events held for an application that takes none",
        status.events_waiting
    );
    // the application wakes up: every message comes, once
    let mut got = std::collections::BTreeSet::new();
    while got.len() < count {
        let (message, _) = bob.received().await;
        got.insert(String::from_utf8(message).unwrap());
    }
    assert_eq!(got.len(), count);
    alice.stop().await;
    bob.stop().await;
}
