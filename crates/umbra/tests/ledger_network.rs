//! Nodes and clients on the ledger: `umbra localnet` with a solo validator and 2-second epochs
//! delivers messages across layer changes and a Sphinx key rotation; a topology with a forged
//! signature, or checked against the wrong genesis, is refused by a node and by a client, and
//! one not yet signed is waited for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use umbra::network::{Kind, LAYOUT_FILE, Layout, get};
use umbra_ledger::{
    Certificate, Genesis, GenesisValidator, Hash, Params, SignedTopology, SigningKey,
    TopologyDocument,
};
use umbra_net::directory::{Directory, LedgerConfig, TrustRoot, ValidatorUrl};
use umbra_node::mixnode::Mixnode;
use umbra_sdk::{ClientBuilder, ClientEvent, TrafficConfig};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("umbra-ledger-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fast() -> TrafficConfig {
    TrafficConfig {
        mean_hop_delay: Duration::from_millis(2),
        mean_ack_delay: Duration::from_millis(2),
        mean_send_interval: Duration::from_millis(10),
        mean_loop_interval: Duration::from_millis(200),
        receive_interval: Duration::from_millis(10),
        ..TrafficConfig::default()
    }
}

/// Kills the localnet process group on drop, whatever happens.
struct Localnet(std::process::Child);

impl Drop for Localnet {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_flows_across_epochs_layer_changes_and_a_key_rotation() {
    let dir = temp_dir("net");
    let net = dir.join("net");
    let output = std::fs::File::create(dir.join("localnet.out")).unwrap();
    let localnet = Localnet(
        Command::new(env!("CARGO_BIN_EXE_umbra"))
            .args(["localnet", "--dir", net.to_str().unwrap(), "--no-demo"])
            .args(["--epoch-length", "2s", "--rotation-epochs", "2"])
            .args(["--mixes-per-layer", "1", "--gateways", "2"])
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .unwrap(),
    );

    // the network is up once the validator serves a topology with every layer
    let deadline = Instant::now() + Duration::from_secs(90);
    let (layout, directory) = loop {
        assert!(
            Instant::now() < deadline,
            "the network did not come up: {}",
            std::fs::read_to_string(dir.join("localnet.out")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(layout) = std::fs::read_to_string(net.join(LAYOUT_FILE)) else {
            continue;
        };
        let mut layout: Layout = serde_json::from_str(&layout).unwrap();
        layout.dir = net.clone();
        if layout.nodes.iter().any(|node| node.id == 0) || !layout.genesis_file().exists() {
            continue;
        }
        let Some(ledger) = layout.ledger_config() else {
            continue;
        };
        let directory = Directory::new(
            ledger.validators,
            TrustRoot::read(&layout.genesis_file()).unwrap(),
        );
        if let Ok(current) = directory.fetch().await
            && current.topology.gateways().count() == 2
            && current.topology.nodes().len() == 5
        {
            break (layout, directory);
        }
    };

    // every epoch's layers, as the clients see them
    let layers: Arc<Mutex<BTreeMap<u64, BTreeMap<u32, u8>>>> = Arc::default();
    let watcher = tokio::spawn({
        let layers = Arc::clone(&layers);
        async move {
            loop {
                if let Ok(current) = directory.fetch().await {
                    let of_epoch = current
                        .topology
                        .nodes()
                        .iter()
                        .filter_map(|node| Some((node.id.0, node.layer()?.number())))
                        .collect();
                    layers
                        .lock()
                        .unwrap()
                        .insert(current.epoch_number().unwrap(), of_epoch);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    });

    let ledger = layout.ledger_config().unwrap();
    let gateways: Vec<String> = layout
        .nodes
        .iter()
        .filter(|node| node.kind == Kind::Gateway)
        .map(|node| node.id.to_string())
        .collect();
    // localnet's gateways demand bandwidth tickets: each client's wallet gets two, bought
    // with localnet's ticket account
    let buyer = SigningKey::from_seed(umbra_net::keys::read_key(&layout.tickets_key()).unwrap());
    let client = |name: &str, gateway: &str| {
        let storage = dir.join(name);
        let (validators, genesis) = (ledger.validators.clone(), layout.genesis_file());
        let (buyer, gateway) = (&buyer, gateway.to_owned());
        async move {
            std::fs::create_dir_all(&storage).unwrap();
            let wallet = umbra_sdk::TicketWallet::open(&storage.join("tickets.redb")).unwrap();
            wallet
                .buy(&validators, "umbra-localnet", buyer, 2)
                .await
                .unwrap();
            drop(wallet);
            ClientBuilder::from_ledger(validators, &genesis)
                .unwrap()
                .storage(&storage)
                .gateway(gateway)
                .traffic(fast())
                .connect()
                .await
        }
    };
    let alice = client("alice", &gateways[0]).await.unwrap();
    let mut bob = client("bob", &gateways[1]).await.unwrap();

    // a message every 400 ms for 12 s: six epochs, three key rotations
    let first_epoch = *layers.lock().unwrap().keys().next().unwrap_or(&0);
    let mut sent = BTreeSet::new();
    let mut received = BTreeSet::new();
    let sending = Instant::now();
    let mut n = 0u32;
    while sending.elapsed() < Duration::from_secs(12) {
        let text = format!("message {n}");
        alice.send(&bob.address(), text.clone()).await.unwrap();
        sent.insert(text);
        n += 1;
        let until = tokio::time::Instant::now() + Duration::from_millis(400);
        while let Ok(Some(event)) = tokio::time::timeout_at(until, bob.next_event()).await {
            if let ClientEvent::Received { message, .. } = event {
                received.insert(String::from_utf8(message).unwrap());
            }
        }
    }
    // what is under way arrives (lost packets are sent again)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while received.len() < sent.len() {
        match tokio::time::timeout_at(deadline, bob.next_event()).await {
            Ok(Some(ClientEvent::Received { message, .. })) => {
                received.insert(String::from_utf8(message).unwrap());
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let missing: Vec<&String> = sent.difference(&received).collect();
    assert!(missing.is_empty(), "not delivered: {missing:?}");

    // the epochs changed, a mix node changed layers, and the keys rotated
    watcher.abort();
    let layers = layers.lock().unwrap().clone();
    let last_epoch = *layers.keys().last().unwrap();
    assert!(
        last_epoch >= first_epoch + 4,
        "epochs {first_epoch}..{last_epoch}"
    );
    let mut seen: BTreeMap<u32, BTreeSet<u8>> = BTreeMap::new();
    for of_epoch in layers.values() {
        for (node, layer) in of_epoch {
            seen.entry(*node).or_default().insert(*layer);
        }
    }
    assert!(
        seen.values().any(|layers| layers.len() > 1),
        "no mix node changed layers: {layers:?}"
    );
    let mix = layout
        .nodes
        .iter()
        .find(|node| node.kind == Kind::Mix)
        .unwrap();
    let health = get(mix.http, "/health").unwrap();
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert!(health["key_rotation"].as_u64().unwrap() >= 2, "{health}");
    let log = std::fs::read_to_string(layout.log_file(&mix.name)).unwrap();
    assert!(log.contains("Sphinx key announced"), "{log}");
    assert!(log.contains("Sphinx key rotated"), "{log}");
    assert!(log.contains("retired and deleted"), "{log}");

    alice.disconnect().await;
    bob.disconnect().await;
    drop(localnet);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A validator impostor: serves `/topology` (and `/health`) with whatever body it holds.
async fn fake_validator(body: Arc<Mutex<String>>, requests: Arc<AtomicUsize>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            requests.fetch_add(1, Ordering::Relaxed);
            let body = body.lock().unwrap().clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    address
}

fn genesis(validator: &SigningKey) -> Genesis {
    Genesis {
        chain_id: "umbra-test".into(),
        genesis_time_ms: 0,
        params: Params::default(),
        reward_pool: umbra_ledger::Amount::ZERO,
        accounts: Vec::new(),
        validators: vec![GenesisValidator {
            key: validator.public(),
            power: 1,
            beacon_commitment: Hash([0; 32]),
            name: "v".into(),
        }],
        monitors: Vec::new(),
        nodes: Vec::new(),
    }
}

fn signed(document: &TopologyDocument, claimed: &SigningKey, signer: &SigningKey) -> String {
    let signature = signer.sign(&document.signing_message());
    serde_json::to_string(&SignedTopology {
        document: document.clone(),
        certificate: Certificate {
            signatures: vec![(claimed.public(), signature)],
        },
    })
    .unwrap()
}

/// Runs the mix node in `dir` until it stops (it should refuse at once); its error.
async fn node_error(dir: &Path) -> String {
    let node = Mixnode::load(dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = node.run_with(listener, None, std::future::pending());
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the node did not refuse")
        .expect_err("the node accepted the topology")
        .to_string()
}

async fn client_error(validator: SocketAddr, genesis: &Path) -> String {
    let connected =
        ClientBuilder::from_ledger(vec![ValidatorUrl::from_address(validator)], genesis)
            .unwrap()
            .connect_timeout(Duration::from_secs(20))
            .connect()
            .await;
    match connected {
        Ok(_) => panic!("the client accepted the topology"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_unsigned_and_foreign_topologies_are_refused() {
    let dir = temp_dir("forged");
    let validator = SigningKey::from_seed([1; 32]);
    let impostor = SigningKey::from_seed([2; 32]);
    let genesis_path = dir.join("genesis.json");
    std::fs::write(&genesis_path, genesis(&validator).to_json()).unwrap();
    let document = TopologyDocument {
        chain_id: "umbra-test".into(),
        epoch: 7,
        start_ms: 0,
        end_ms: u64::MAX / 2,
        rotation: 0,
        nodes: Vec::new(),
    };
    let body = Arc::new(Mutex::new(String::new()));
    let requests = Arc::new(AtomicUsize::new(0));
    let address = fake_validator(Arc::clone(&body), Arc::clone(&requests)).await;
    let node_dir = dir.join("mix");
    let ledger = LedgerConfig {
        validators: vec![ValidatorUrl::from_address(address)],
        genesis: "genesis.json".into(),
    };
    umbra_node::mixnode::init(
        &node_dir,
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        Some((&ledger, &genesis_path)),
    )
    .unwrap();

    // signed by an impostor in the validator's name: forged
    *body.lock().unwrap() = signed(&document, &validator, &impostor);
    let error = node_error(&node_dir).await;
    assert!(
        error.contains("forged") && error.contains("refusing"),
        "{error}"
    );
    let error = client_error(address, &genesis_path).await;
    assert!(error.contains("forged"), "{error}");

    // the validator's own signature over another document: altered
    let mut altered = document.clone();
    altered.epoch = 8;
    let mut forged: SignedTopology =
        serde_json::from_str(&signed(&altered, &validator, &validator)).unwrap();
    forged.document = document.clone();
    *body.lock().unwrap() = serde_json::to_string(&forged).unwrap();
    let error = node_error(&node_dir).await;
    assert!(error.contains("forged or altered"), "{error}");

    // no signatures yet (a validator of an older version serves a new epoch's document before
    // it is certified): a node starting up waits and asks again rather than refusing, and
    // starts once the validators have signed (issue 13.6)
    *body.lock().unwrap() = serde_json::to_string(&SignedTopology {
        document: document.clone(),
        certificate: Certificate::default(),
    })
    .unwrap();
    let node = Mixnode::load(&node_dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut waiting = tokio::spawn({
        let stop = stop.clone();
        async move { node.run_with(listener, None, stop.cancelled_owned()).await }
    });
    let asked = |count: usize| {
        let requests = Arc::clone(&requests);
        async move {
            while requests.load(Ordering::Relaxed) < count {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    tokio::select! {
        ended = &mut waiting => panic!("the node refused an uncertified topology: {ended:?}"),
        () = asked(requests.load(Ordering::Relaxed) + 3) => {}
    }
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the node did not stop")
        .unwrap()
        .unwrap();
    let error =
        ClientBuilder::from_ledger(vec![ValidatorUrl::from_address(address)], &genesis_path)
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .err()
            .expect("the client accepted an uncertified topology")
            .to_string();
    assert!(!error.contains("signed by 0 of 1"), "{error}");

    // a genuine topology, but the node's genesis names another validator: a foreign network
    *body.lock().unwrap() = signed(&document, &validator, &validator);
    std::fs::write(node_dir.join("genesis.json"), genesis(&impostor).to_json()).unwrap();
    let error = node_error(&node_dir).await;
    assert!(error.contains("not one of the validators"), "{error}");
    let foreign = dir.join("foreign.json");
    std::fs::write(&foreign, genesis(&impostor).to_json()).unwrap();
    let error = client_error(address, &foreign).await;
    assert!(error.contains("not one of the validators"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
