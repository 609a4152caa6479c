//! A solo validator as its own process: transactions through the CLI and the API, epochs that
//! advance with signed topologies, clear refusals, and a crash that loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use umbra_ledger::{
    Action, Amount, Key32, NodeId, NodeInfo, NodeKind, SigningKey, Transaction, UNIT, ValidatorKey,
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

/// Starts the validator in `dir`, its log appended to `dir/validator.log`.
fn start(dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("validator.log"))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(["validator", "run", "--data-dir", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(log)
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

fn tx(api: impl ToString, key: &Path, args: &[&str]) -> Output {
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

/// A solo validator made with `umbra validator init` (plus `extra` arguments) in `data` and
/// started; its API address, process and client, once it answers.
async fn solo(data: &Path, extra: &[&str]) -> (SocketAddr, Child, LedgerClient) {
    let api = free_port();
    let mut args = vec![
        "validator".to_owned(),
        "init".into(),
        "--data-dir".into(),
        data.to_str().unwrap().into(),
        "--listen".into(),
        api.to_string(),
    ];
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let made = umbra(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(made.status.success(), "{}", text(&made));
    let validator = start(data);
    let client = LedgerClient::new(api);
    wait_until_up(&client).await;
    (api, validator, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solo_validator_runs_the_ledger() {
    let dir = temp_dir("solo");
    let data = dir.join("validator");
    let (api, mut validator, client) =
        solo(&data, &["--epoch-length", "2s", "--chain-id", "umbra-test"]).await;
    // init twice is refused, naming the file
    let again = umbra(&["validator", "init", "--data-dir", data.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already holds"), "{}", text(&again));

    let genesis: umbra_ledger::Genesis = client.get("/genesis").await.unwrap();
    let validators = genesis.validator_keys();

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
    assert_eq!(view.account.balance, Amount(150_500_000));

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
            && signed
                .document
                .nodes
                .iter()
                .any(|node| node.id == NodeId(1))
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
            node.node == NodeId(1)
                && !node.payout.operator.is_zero()
                && !node.payout.delegators.is_zero()
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
        view["delegations"][0]["value"].as_u64().unwrap() >= 100 * UNIT.0,
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
    assert_eq!(view.account.balance, Amount(50_500_000));
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

/// Polls every validator's `/status` until one height has been seen on all of `clients` at or
/// above `at_least`, and asserts that every height seen on several has the same state root on
/// each. Returns that common height.
async fn agree(clients: &[&LedgerClient], at_least: u64) -> u64 {
    let mut seen: Vec<std::collections::BTreeMap<u64, String>> =
        vec![Default::default(); clients.len()];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (index, client) in clients.iter().enumerate() {
            if let Ok(status) = client.get::<serde_json::Value>("/status").await {
                let height = status["height"].as_u64().unwrap();
                let root = status["state_root"].as_str().unwrap().to_owned();
                seen[index].insert(height, root);
            }
        }
        for (height, root) in &seen[0] {
            for other in &seen[1..] {
                if let Some(theirs) = other.get(height) {
                    assert_eq!(
                        theirs, root,
                        "validators disagree on the state at height {height}"
                    );
                }
            }
        }
        let common = seen[0]
            .keys()
            .rev()
            .find(|height| **height >= at_least && seen.iter().all(|map| map.contains_key(height)));
        if let Some(height) = common {
            return *height;
        }
        assert!(
            Instant::now() < deadline,
            "the validators never showed a common height ≥ {at_least}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until `hash` is committed on `client`, which may not have heard of it yet (it was
/// submitted to another validator); returns its height.
async fn committed(client: &LedgerClient, hash: &umbra_ledger::Hash) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.wait_for(hash, Duration::from_secs(30)).await {
            Ok(height) => return height,
            Err(LedgerError::Refused { status: 404, .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("{hash} not committed on {}: {error}", client.address()),
        }
    }
}

async fn height(client: &LedgerClient) -> u64 {
    status(client).await["height"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_bft_validators_agree_survive_a_crash_and_catch_up() {
    let root = temp_dir("cluster");
    let apis: Vec<SocketAddr> = (0..4).map(|_| free_port()).collect();
    let p2p: Vec<SocketAddr> = (0..4).map(|_| free_port()).collect();
    let dirs: Vec<PathBuf> = (0..4)
        .map(|index| root.join(format!("validator-{index}")))
        .collect();
    for index in 0..4 {
        let mut args: Vec<String> = [
            "validator",
            "init",
            "--data-dir",
            dirs[index].to_str().unwrap(),
            "--listen",
            &apis[index].to_string(),
            "--p2p",
            &p2p[index].to_string(),
        ]
        .map(str::to_owned)
        .to_vec();
        for other in (0..4).filter(|other| *other != index) {
            args.extend(["--peer".into(), p2p[other].to_string()]);
            args.extend(["--relay-to".into(), apis[other].to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let made = umbra(&args);
        assert!(made.status.success(), "{}", text(&made));
        assert!(
            text(&made).contains("umbra validator genesis"),
            "{}",
            text(&made)
        );
        // an idle proposer waits half a second instead of two, to keep the test short
        let config = dirs[index].join("config.toml");
        let edited = std::fs::read_to_string(&config).unwrap().replace(
            "idle_block_interval = \"2s\"",
            "idle_block_interval = \"500ms\"",
        );
        std::fs::write(&config, edited).unwrap();
    }
    // a validator cannot run before the chain has a genesis
    let early = umbra(&["validator", "run", "--data-dir", dirs[0].to_str().unwrap()]);
    assert!(!early.status.success());
    assert!(text(&early).contains("genesis.json"), "{}", text(&early));

    let owner_key = root.join("owner.key");
    let mut args = vec![
        "validator",
        "genesis",
        "--chain-id",
        "umbra-cluster",
        "--epoch-length",
        "3s",
    ];
    for dir in &dirs {
        args.extend(["--validator-dir", dir.to_str().unwrap()]);
    }
    args.extend(["--account-key", owner_key.to_str().unwrap()]);
    let made = umbra(&args);
    assert!(made.status.success(), "{}", text(&made));
    // the genesis is written once: a second one is refused
    let again = umbra(&args);
    assert!(!again.status.success(), "{}", text(&again));

    let mut children: Vec<Child> = dirs.iter().map(|dir| start(dir)).collect();
    let clients: Vec<LedgerClient> = apis.iter().map(|api| LedgerClient::new(*api)).collect();
    for client in &clients {
        wait_until_up(client).await;
    }
    let all: Vec<&LedgerClient> = clients.iter().collect();
    agree(&all, 2).await;

    // transactions submitted to different validators show up on all of them
    let owner = key_file(&owner_key);
    let bob = SigningKey::from_seed([7; 32]);
    let carol = SigningKey::from_seed([8; 32]);
    let chain_id = "umbra-cluster";
    let to_bob = Transaction::sign(
        chain_id,
        &owner,
        0,
        Action::Transfer {
            to: bob.public(),
            amount: 1_000 * UNIT,
        },
    );
    let hash = clients[0].submit(&to_bob).await.unwrap();
    for client in &clients {
        committed(client, &hash).await;
    }
    let to_carol = Transaction::sign(
        chain_id,
        &bob,
        0,
        Action::Transfer {
            to: carol.public(),
            amount: 10 * UNIT,
        },
    );
    let owner_again = Transaction::sign(
        chain_id,
        &owner,
        1,
        Action::Transfer {
            to: carol.public(),
            amount: 5 * UNIT,
        },
    );
    let first = clients[2].submit(&to_carol).await.unwrap();
    let second = clients[3].submit(&owner_again).await.unwrap();
    let mut committed_at = 0;
    for client in &clients {
        committed_at = committed_at.max(committed(client, &first).await);
        committed_at = committed_at.max(committed(client, &second).await);
    }
    agree(&all, committed_at).await;
    for client in &clients {
        assert_eq!(
            client
                .account(&carol.public())
                .await
                .unwrap()
                .account
                .balance,
            15 * UNIT
        );
    }

    // one validator killed: the other three (3/4 of the power, more than 2/3) keep committing,
    // epochs included
    children[3].kill().unwrap();
    children[3].wait().unwrap();
    let alive = &all[..3];
    let epoch_before = status(alive[0]).await["epoch"].as_u64().unwrap();
    let while_down = Transaction::sign(
        chain_id,
        &owner,
        2,
        Action::Transfer {
            to: carol.public(),
            amount: UNIT,
        },
    );
    let hash = clients[1].submit(&while_down).await.unwrap();
    for client in alive {
        committed(client, &hash).await;
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    while status(alive[0]).await["epoch"].as_u64().unwrap() < epoch_before + 2 {
        assert!(
            Instant::now() < deadline,
            "epochs stopped with one validator down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reached = agree(alive, height(alive[0]).await).await;

    // restarted, it rebuilds from its own blocks, fetches the ones it missed and agrees again
    children[3] = start(&dirs[3]);
    wait_until_up(&clients[3]).await;
    committed(&clients[3], &hash).await;
    agree(&all, reached).await;

    // the epoch's topology carries signatures of more than 2/3 of the validators; a client
    // accepts it, and refuses it forged or with signatures missing
    let genesis: umbra_ledger::Genesis = clients[0].get("/genesis").await.unwrap();
    let validators = genesis.validator_keys();
    let deadline = Instant::now() + Duration::from_secs(30);
    let signed = loop {
        match clients[1].topology(chain_id, &validators).await {
            Ok(signed) => break signed,
            Err(error) => {
                assert!(Instant::now() < deadline, "no certified topology: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(signed.certificate.signatures.len() >= 3);
    let mut forged = signed.clone();
    forged.certificate.signatures[0].1.0[5] ^= 1;
    assert!(forged.verify(chain_id, &validators).is_err());
    let mut missing = signed.clone();
    missing.certificate.signatures.truncate(2);
    assert!(missing.verify(chain_id, &validators).is_err());
    let mut altered = signed.clone();
    altered.document.epoch += 1;
    assert!(altered.verify(chain_id, &validators).is_err());
    let mut repeated = signed.clone();
    let first = repeated.certificate.signatures[0];
    repeated.certificate.signatures = vec![first; 4];
    assert!(repeated.verify(chain_id, &validators).is_err());

    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_a_node_refuses_clearly_and_is_safe_to_repeat() {
    let dir = temp_dir("register");
    let data = dir.join("validator");
    let (api, mut validator, client) = solo(&data, &[]).await;
    let url = format!("http://{api}");
    let node = dir.join("mix");
    let made = umbra(&[
        "mixnode",
        "init",
        "--data-dir",
        node.to_str().unwrap(),
        "--listen",
        &free_port().to_string(),
        "--http",
        &free_port().to_string(),
        "--validator",
        &url,
        "--genesis",
        data.join("genesis.json").to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{}", text(&made));
    let register = |account: &Path, pledge: &str| {
        umbra(&[
            "mixnode",
            "register",
            "--data-dir",
            node.to_str().unwrap(),
            "--validator",
            &url,
            "--account",
            account.to_str().unwrap(),
            "--pledge",
            pledge,
        ])
    };
    let owner = data.join("account.key");

    // below the minimum pledge (100 UMB)
    let low = register(&owner, "5");
    assert!(!low.status.success());
    assert!(
        text(&low).contains("below this network's minimum"),
        "{}",
        text(&low)
    );
    // an account with nothing in it
    let empty = dir.join("empty.key");
    let made = umbra(&["account", "new", "--out", empty.to_str().unwrap()]);
    assert!(made.status.success(), "{}", text(&made));
    let poor = register(&empty, "100");
    assert!(!poor.status.success());
    assert!(
        text(&poor).contains("transfer some to it first"),
        "{}",
        text(&poor)
    );
    // a key file that is not one
    let garbled = dir.join("garbled.key");
    std::fs::write(&garbled, "not a key").unwrap();
    let wrong = register(&garbled, "100");
    assert!(!wrong.status.success());
    assert!(text(&wrong).contains("garbled.key"), "{}", text(&wrong));
    // nothing of the refused attempts reached the ledger
    let nodes: Vec<serde_json::Value> = client.get("/nodes").await.unwrap();
    assert!(nodes.is_empty(), "{nodes:?}");

    // the owner registers it; doing it again changes nothing
    let first = register(&owner, "100");
    assert!(first.status.success(), "{}", text(&first));
    let again = register(&owner, "100");
    assert!(again.status.success(), "{}", text(&again));
    let nodes: Vec<serde_json::Value> = client.get("/nodes").await.unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    // nor after a key rotation, which deletes the key the node registered with (issue 13.7)
    std::fs::remove_file(node.join("sphinx.key")).unwrap();
    let rotated = register(&owner, "100");
    assert!(rotated.status.success(), "{}", text(&rotated));
    let nodes: Vec<serde_json::Value> = client.get("/nodes").await.unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");

    // another account cannot take it over
    let other = dir.join("other.key");
    umbra(&["account", "new", "--out", other.to_str().unwrap()]);
    let other_address = key_file(&other).public().to_string();
    // `umbra tx` takes the validator as every other command does: http://host:port
    let funded = tx(
        &url,
        &owner,
        &["transfer", "--to", &other_address, "--amount", "500"],
    );
    assert!(funded.status.success(), "{}", text(&funded));
    let taken = register(&other, "100");
    assert!(!taken.status.success());
    assert!(
        text(&taken).contains("already registered as node"),
        "{}",
        text(&taken)
    );

    let _ = validator.kill();
    let _ = validator.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
