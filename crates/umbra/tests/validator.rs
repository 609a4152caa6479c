//! A solo validator as its own process: transactions through the CLI and the API, epochs that
//! advance with signed topologies, clear refusals, and a crash that loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use umbra_ledger::{
    Action, Key32, NodeInfo, NodeKind, SigningKey, Transaction, UNIT, ValidatorKey,
    registration_message,
};
use umbra_net::ledger::{LedgerClient, LedgerError};

fn umbra(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(args)
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("umbra-validator-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn start(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(["validator", "run", "--data-dir", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn key_file(path: &Path) -> SigningKey {
    let text = std::fs::read_to_string(path).unwrap();
    let bytes: [u8; 32] = bs58::decode(text.trim())
        .into_vec()
        .unwrap()
        .try_into()
        .unwrap();
    SigningKey::from_seed(bytes)
}

async fn status(client: &LedgerClient) -> serde_json::Value {
    client.get("/status").await.unwrap()
}

async fn wait_until_up(client: &LedgerClient) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get::<serde_json::Value>("/health").await.is_err() {
        assert!(Instant::now() < deadline, "the validator did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn tx(api: SocketAddr, key: &Path, args: &[&str]) -> Output {
    let mut all = vec![
        "tx",
        "--validator",
        &api.to_string(),
        "--key",
        key.to_str().unwrap(),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect::<Vec<_>>();
    all.extend(args.iter().map(|arg| (*arg).to_owned()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    umbra(&all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solo_validator_runs_the_ledger() {
    let dir = temp_dir("solo");
    let data = dir.join("validator");
    let api = free_port();
    let made = umbra(&[
        "validator",
        "init",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        &api.to_string(),
        "--epoch-length",
        "2s",
        "--chain-id",
        "umbra-test",
    ]);
    assert!(made.status.success(), "{}", text(&made));
    // init twice is refused, naming the file
    let again = umbra(&["validator", "init", "--data-dir", data.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already holds"), "{}", text(&again));

    let mut validator = start(&data);
    let client = LedgerClient::new(api);
    wait_until_up(&client).await;
    let genesis: umbra_ledger::Genesis = client.get("/genesis").await.unwrap();
    let validators: Vec<ValidatorKey> = genesis
        .validators
        .iter()
        .map(|validator| ValidatorKey {
            key: validator.key,
            power: validator.power,
        })
        .collect();

    // an account made with the CLI receives a transfer made with the CLI
    let owner_key = data.join("account.key");
    let alice_key = dir.join("alice.key");
    let made = umbra(&["account", "new", "--out", alice_key.to_str().unwrap()]);
    let alice = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    let sent = tx(
        api,
        &owner_key,
        &["transfer", "--to", &alice, "--amount", "150.5"],
    );
    assert!(sent.status.success(), "{}", text(&sent));
    assert!(text(&sent).contains("committed in block"));
    let view = client.account(&alice.parse().unwrap()).await.unwrap();
    assert_eq!(view.account.balance, 150_500_000);

    // clear refusals: too little balance, an unknown node, a node that is someone else's,
    // a key file that is not a key
    let poor = tx(
        api,
        &alice_key,
        &["transfer", "--to", &alice, "--amount", "1000"],
    );
    assert!(!poor.status.success());
    assert!(
        text(&poor).contains("the balance is 150500000 µUMB; this needs 1000000000 µUMB"),
        "{}",
        text(&poor)
    );
    let unknown = tx(
        api,
        &alice_key,
        &["delegate", "--node", "77", "--amount", "1"],
    );
    assert!(
        text(&unknown).contains("there is no node 77"),
        "{}",
        text(&unknown)
    );
    std::fs::write(dir.join("garbage.key"), "not a key\n").unwrap();
    let garbage = tx(api, &dir.join("garbage.key"), &["unbond", "--node", "1"]);
    assert!(
        text(&garbage).contains("garbage.key") && text(&garbage).contains("base58"),
        "{}",
        text(&garbage)
    );

    // a mix node registered through the API (signed by the owner and the node's identity)
    let owner = key_file(&owner_key);
    let identity = SigningKey::from_seed([9; 32]);
    let sphinx = umbra_sphinx::PrivateKey::from_bytes([10; 32]);
    let node = NodeInfo {
        kind: NodeKind::Mix,
        identity_key: identity.public(),
        sphinx_key: Key32(*sphinx.public_key().as_bytes()),
        noise_key: Key32([11; 32]),
        mix_address: "127.0.0.1:1789".parse().unwrap(),
        client_address: None,
        moniker: "test-mix".into(),
    };
    let node_signature = identity.sign(&registration_message("umbra-test", &owner.public(), &node));
    let nonce = client.account(&owner.public()).await.unwrap().next_nonce;
    let register = Transaction::sign(
        "umbra-test",
        &owner,
        nonce,
        Action::RegisterNode {
            node,
            node_signature,
        },
    );
    let hash = client.submit(&register).await.unwrap();
    client
        .wait_for(&hash, Duration::from_secs(10))
        .await
        .unwrap();
    // the same transaction again is a replay: refused at once, with the reason
    match client.submit(&register).await {
        Err(LedgerError::Failed(umbra_ledger::TxError::BadNonce { .. })) => {}
        other => panic!("a replay was not refused: {other:?}"),
    }
    let bonded = tx(api, &owner_key, &["bond", "--node", "1", "--amount", "500"]);
    assert!(bonded.status.success(), "{}", text(&bonded));
    // no operating cost (the default 40 UMB per interval would take this small node's whole
    // reward), 10 % margin: the delegators get a share
    let updated = tx(
        api,
        &owner_key,
        &[
            "update-node",
            "--node",
            "1",
            "--operating-cost",
            "0",
            "--profit-margin",
            "10",
        ],
    );
    assert!(updated.status.success(), "{}", text(&updated));
    // Alice is not the owner
    let stranger = tx(api, &alice_key, &["unbond", "--node", "1"]);
    assert!(
        text(&stranger).contains("node 1 belongs to another account"),
        "{}",
        text(&stranger)
    );
    let delegated = tx(
        api,
        &alice_key,
        &["delegate", "--node", "1", "--amount", "100"],
    );
    assert!(delegated.status.success(), "{}", text(&delegated));

    // within a few 2-second epochs the node is active, and the topology is signed by the
    // validator: a client checks the certificate against genesis
    let deadline = Instant::now() + Duration::from_secs(30);
    let signed = loop {
        if let Ok(signed) = client.topology("umbra-test", &validators).await
            && signed.document.nodes.iter().any(|node| node.id == 1)
        {
            break signed;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 never became active in a signed topology"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let topology = signed.document.to_topology().unwrap();
    assert_eq!(topology.nodes().len(), 1);
    assert!(client.topology("another-chain", &validators).await.is_err());
    let stranger_set = [ValidatorKey {
        key: SigningKey::from_seed([1; 32]).public(),
        power: 1,
    }];
    assert!(matches!(
        client.topology("umbra-test", &stranger_set).await,
        Err(LedgerError::Untrusted { .. })
    ));

    // the delegation is in effect and has earned (no monitor: the initial performance counts)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let epochs: Vec<umbra_ledger::state::EpochReport> = client.get("/epochs").await.unwrap();
        let paid = |node: &umbra_ledger::state::NodeEpochReport| {
            node.node == 1 && node.payout.operator > 0 && node.payout.delegators > 0
        };
        if epochs.iter().any(|report| report.nodes.iter().any(paid)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 was never paid: {epochs:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let view: serde_json::Value = client.get(&format!("/accounts/{alice}")).await.unwrap();
    assert!(
        view["delegations"][0]["value"].as_u64().unwrap() >= 100 * UNIT,
        "{view}"
    );

    // killed without warning, restarted: every committed block is back, the same root
    let before = status(&client).await;
    validator.kill().unwrap();
    validator.wait().unwrap();
    let mut validator = start(&data);
    wait_until_up(&client).await;
    let after = status(&client).await;
    assert!(after["height"].as_u64() >= before["height"].as_u64());
    let block: umbra_ledger::Block = client
        .get(&format!("/blocks/{}", before["height"]))
        .await
        .unwrap();
    assert_eq!(block.height, before["height"].as_u64().unwrap());
    let view = client.account(&alice.parse().unwrap()).await.unwrap();
    assert_eq!(view.account.balance, 50_500_000);
    // and it goes on committing
    let sent = tx(
        api,
        &owner_key,
        &["transfer", "--to", &alice, "--amount", "1"],
    );
    assert!(sent.status.success(), "{}", text(&sent));

    // SIGTERM stops it cleanly
    let _ = Command::new("kill")
        .args(["-TERM", &validator.id().to_string()])
        .status();
    let stopped = validator.wait().unwrap();
    assert!(stopped.success(), "{stopped:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
