//! The ledger's speed: transactions per second and commit latency of a solo validator (its own
//! process, transactions over its HTTP API), and the time to verify a topology certificate.
//!
//! `cargo bench -p umbra --bench ledger` (add `-- --quick` for a short run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is the point

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use umbra_ledger::{Action, Amount, SigningKey, Transaction, UNIT};
use umbra_net::ledger::LedgerClient;

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn key_file(path: &std::path::Path) -> SigningKey {
    let text = std::fs::read_to_string(path).unwrap();
    let bytes: [u8; 32] = bs58::decode(text.trim())
        .into_vec()
        .unwrap()
        .try_into()
        .unwrap();
    SigningKey::from_seed(bytes)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Starts `umbra validator run` in `dir`, its log in `dir/validator.log`.
fn start(dir: &std::path::Path) -> std::process::Child {
    let log = std::fs::File::create(dir.join("validator.log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(["validator", "run", "--data-dir", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn umbra(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A solo validator: its API and its funded account's key file.
fn solo(dir: &std::path::Path) -> (Vec<SocketAddr>, std::path::PathBuf) {
    let api = free_port();
    umbra(&[
        "validator",
        "init",
        "--data-dir",
        dir.to_str().unwrap(),
        "--listen",
        &api.to_string(),
    ]);
    (vec![api], dir.join("account.key"))
}

/// Four BFT validators: their APIs and the funded account's key file.
fn cluster(
    root: &std::path::Path,
) -> (Vec<SocketAddr>, Vec<std::path::PathBuf>, std::path::PathBuf) {
    let apis: Vec<SocketAddr> = (0..4).map(|_| free_port()).collect();
    let p2p: Vec<SocketAddr> = (0..4).map(|_| free_port()).collect();
    let dirs: Vec<_> = (0..4)
        .map(|index| root.join(format!("validator-{index}")))
        .collect();
    for index in 0..4 {
        let mut args: Vec<String> = [
            "validator",
            "init",
            "--data-dir",
            dirs[index].to_str().unwrap(),
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend([
            "--listen".into(),
            apis[index].to_string(),
            "--p2p".into(),
            p2p[index].to_string(),
        ]);
        for other in (0..4).filter(|other| *other != index) {
            args.extend([
                "--peer".into(),
                p2p[other].to_string(),
                "--relay-to".into(),
                apis[other].to_string(),
            ]);
        }
        umbra(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let account = root.join("account.key");
    let mut args = vec![
        "validator",
        "genesis",
        "--account-key",
        account.to_str().unwrap(),
    ];
    for dir in &dirs {
        args.extend(["--validator-dir", dir.to_str().unwrap()]);
    }
    umbra(&args);
    (apis, dirs, account)
}

/// Throughput and commit latency of the validators at `apis`: transactions are spread over
/// all of them.
async fn measure(label: &str, apis: &[SocketAddr], owner: &SigningKey, quick: bool) {
    let clients: Vec<LedgerClient> = apis.iter().map(|api| LedgerClient::new(*api)).collect();
    for client in &clients {
        while client.get::<serde_json::Value>("/health").await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let client = &clients[0];
    let status: serde_json::Value = client.get("/status").await.unwrap();
    let chain = status["chain_id"].as_str().unwrap().to_owned();

    // fund the senders
    let senders: Vec<SigningKey> = (0..20u8)
        .map(|n| SigningKey::from_seed([n + 1; 32]))
        .collect();
    let mut nonce = client.account(&owner.public()).await.unwrap().next_nonce;
    let mut last = None;
    for sender in &senders {
        let action = Action::Transfer {
            to: sender.public(),
            amount: 1_000 * UNIT,
        };
        last = Some(
            client
                .submit(&Transaction::sign(&chain, owner, nonce, action))
                .await
                .unwrap(),
        );
        nonce += 1;
    }
    for client in &clients {
        client
            .wait_for(&last.unwrap(), Duration::from_secs(60))
            .await
            .unwrap();
    }

    // throughput: pre-signed transfers from 20 accounts, submitted by 8 concurrent
    // submitters (each to one validator, in turn); from the first submission until the last
    // is committed
    let per_sender = if quick { 50 } else { 250 };
    let mut transactions = Vec::new();
    for round in 0..per_sender {
        for sender in &senders {
            let action = Action::Transfer {
                to: owner.public(),
                amount: Amount(1),
            };
            transactions.push(Transaction::sign(&chain, sender, round as u64, action));
        }
    }
    let total = transactions.len();
    let started = Instant::now();
    let chunks: Vec<Vec<Transaction>> = (0..8)
        .map(|lane| {
            // a lane takes whole senders, so each sender's nonces arrive in order
            transactions
                .iter()
                .enumerate()
                .filter(|(index, _)| (index % senders.len()) % 8 == lane)
                .map(|(_, transaction)| transaction.clone())
                .collect()
        })
        .collect();
    let mut lanes = Vec::new();
    for (lane, chunk) in chunks.into_iter().enumerate() {
        let client = clients[lane % clients.len()].clone();
        lanes.push(tokio::spawn(async move {
            for transaction in chunk {
                client.submit(&transaction).await.unwrap();
            }
        }));
    }
    for lane in lanes {
        lane.await.unwrap();
    }
    let submitted = started.elapsed();
    for transaction in &transactions[total - senders.len()..] {
        client
            .wait_for(&transaction.hash(), Duration::from_secs(120))
            .await
            .unwrap();
    }
    let elapsed = started.elapsed();
    for sender in &senders {
        let view = client.account(&sender.public()).await.unwrap();
        assert_eq!(
            view.account.nonce, per_sender as u64,
            "every transfer applied"
        );
    }
    println!(
        "{label} throughput: {total} transfers over HTTP in {:.2} s = {:.0} tx/s (submission alone {:.2} s = {:.0} tx/s)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        submitted.as_secs_f64(),
        total as f64 / submitted.as_secs_f64()
    );

    // commit latency: one transaction at a time, from submission until its receipt is there
    // on the validator it was submitted to (polled every 2 ms)
    let samples = if quick { 10 } else { 40 };
    let mut latencies = Vec::new();
    let sender = &senders[0];
    for sample in 0..samples {
        // arrivals spread over 0-500 ms, as independent users' would be
        tokio::time::sleep(Duration::from_millis((sample * 137 % 500) as u64)).await;
        let client = &clients[sample % clients.len()];
        let nonce = client.account(&sender.public()).await.unwrap().next_nonce;
        let action = Action::Transfer {
            to: owner.public(),
            amount: Amount(1),
        };
        let transaction = Transaction::sign(&chain, sender, nonce, action);
        let start = Instant::now();
        let hash = client.submit(&transaction).await.unwrap();
        loop {
            let status: serde_json::Value = client.get(&format!("/tx/{hash}")).await.unwrap();
            if status["status"] == "committed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{label} commit latency ({samples} transactions arriving 0-500 ms apart): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        latencies.last().unwrap()
    );
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let root = std::env::temp_dir().join(format!("umbra-bench-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // solo (block_interval 250 ms: a transaction that finds the chain idle is committed at once)
    let dir = root.join("solo");
    let (apis, account) = solo(&dir);
    let mut validator = start(&dir);
    runtime.block_on(measure("solo", &apis, &key_file(&account), quick));
    let _ = validator.kill();
    let _ = validator.wait();

    // four BFT validators, separate processes on this machine
    let (apis, dirs, account) = cluster(&root.join("bft"));
    let mut validators: Vec<_> = dirs.iter().map(|dir| start(dir)).collect();
    runtime.block_on(measure(
        "4 BFT validators",
        &apis,
        &key_file(&account),
        quick,
    ));
    for validator in &mut validators {
        let _ = validator.kill();
        let _ = validator.wait();
    }
    let _ = std::fs::remove_dir_all(&root);

    // certificate verification: 240 active nodes, 4 validators of which 3 sign
    let document = umbra_ledger::TopologyDocument {
        chain_id: "bench".into(),
        epoch: 7,
        start_ms: 0,
        end_ms: 3_600_000,
        rotation: 0,
        nodes: (0..240u32)
            .map(|id| umbra_ledger::topology::TopologyNode {
                id: umbra_ledger::NodeId(id),
                kind: umbra_ledger::NodeKind::Mix,
                layer: Some((id % 3 + 1) as u8),
                identity_key: SigningKey::from_seed([id as u8; 32]).public(),
                sphinx_key: umbra_ledger::Key32([id as u8; 32]),
                next_sphinx_key: None,
                noise_key: umbra_ledger::Key32([id as u8; 32]),
                mix_address: SocketAddr::from(([10, 0, (id / 256) as u8, id as u8], 1789)),
                client_address: None,
            })
            .collect(),
    };
    let keys: Vec<SigningKey> = (0..4u8)
        .map(|n| SigningKey::from_seed([200 + n; 32]))
        .collect();
    let validators: Vec<umbra_ledger::ValidatorKey> = keys
        .iter()
        .map(|key| umbra_ledger::ValidatorKey {
            key: key.public(),
            power: 1,
        })
        .collect();
    let message = document.signing_message();
    let signed = umbra_ledger::SignedTopology {
        certificate: umbra_ledger::Certificate {
            signatures: keys[..3]
                .iter()
                .map(|key| (key.public(), key.sign(&message)))
                .collect(),
        },
        document,
    };
    let rounds = if quick { 200 } else { 2_000 };
    let start = Instant::now();
    for _ in 0..rounds {
        signed.verify("bench", &validators).unwrap();
    }
    let each = start.elapsed().as_secs_f64() / f64::from(rounds);
    let json = serde_json::to_string(&signed).unwrap();
    let start = Instant::now();
    for _ in 0..rounds / 10 {
        let parsed: umbra_ledger::SignedTopology = serde_json::from_str(&json).unwrap();
        parsed.verify("bench", &validators).unwrap();
    }
    let with_parse = start.elapsed().as_secs_f64() / f64::from(rounds / 10);
    println!(
        "certificate verification (240 nodes, 3 of 4 signatures): {:.1} µs; with parsing its {} kB of JSON: {:.1} µs",
        each * 1e6,
        json.len() / 1000,
        with_parse * 1e6
    );
}
