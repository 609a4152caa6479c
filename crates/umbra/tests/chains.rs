//! Any chain, any app (issue 19), through a whole `umbra localnet` of processes:
//!
//! - a real Ethereum node (ganache, from npm) and a real wallet library (ethers, from npm):
//!   `examples/ethereum/send.mjs` signs a transfer and sends `eth_sendRawTransaction`, then
//!   fetches its receipt and the balances, all through localnet's SOCKS5 proxy, the mixnet and
//!   the exit; the transfer is mined and the balance changes;
//! - Umbra's own ledger: `umbra tx --proxy` commits a transfer through the same path, and a
//!   wrong proxy address is explained.
//!
//! Each server sits behind a relay in this process that, for every connection it accepts,
//! finds which process opened it (its socket in `/proc/net/tcp`, then the process holding that
//! socket): every one must be the exit service's, none the wallet's or `umbra tx`'s.
//!
//! Needs Node.js 18+ and npm: the example's packages are installed (`npm ci`) when missing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ethereum::{Ganache, npm_install, send};
use common::localnet::{Localnet, SMALL, account_of, address_after, pid_of, poll, temp_dir};
use serde_json::Value;

/// A TCP relay in front of a server that finds, for every connection, the process that opened
/// it, before passing its bytes on.
struct Relay {
    address: SocketAddr,
    /// The pid behind each connection accepted so far (`None`: not found).
    openers: Arc<Mutex<Vec<Option<u32>>>>,
}

impl Relay {
    fn start(server: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let openers = Arc::new(Mutex::new(Vec::new()));
        let noted = Arc::clone(&openers);
        std::thread::spawn(move || {
            for connection in listener.incoming() {
                let Ok(connection) = connection else { continue };
                // the connection is open until we pass it on: its opener holds its socket now
                let peer = connection.peer_addr().unwrap();
                noted.lock().unwrap().push(opener(peer, address));
                let Ok(upstream) = TcpStream::connect(server) else {
                    continue;
                };
                pass(
                    connection.try_clone().unwrap(),
                    upstream.try_clone().unwrap(),
                );
                pass(upstream, connection);
            }
        });
        Relay { address, openers }
    }

    fn openers(&self) -> Vec<Option<u32>> {
        self.openers.lock().unwrap().clone()
    }
}

/// Copies `from` into `to` on a thread of its own, half-closing `to` at the end.
fn pass(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

/// The process holding the socket connected from `peer` to `local` (loopback, IPv4): its
/// inode from `/proc/net/tcp`, then the process with a descriptor on it.
fn opener(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let hex = |address: SocketAddr| format!("0100007F:{:04X}", address.port());
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&hex(peer).as_str()) && fields.get(2) == Some(&hex(local).as_str()))
            .then(|| fields.get(9).map(|inode| inode.to_string()))
            .flatten()
    })?;
    let wanted = format!("socket:[{inode}]");
    for process in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = process.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(descriptors) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for descriptor in descriptors.flatten() {
            if std::fs::read_link(descriptor.path())
                .is_ok_and(|target| target.to_string_lossy() == wanted)
            {
                return Some(pid);
            }
        }
    }
    None
}

fn umbra(args: &[&str]) -> (Output, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_umbra"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    (child.wait_with_output().unwrap(), pid)
}

/// `umbra tx transfer` of `amount` UMB to a fixed address, signed with `key`, through `proxy`.
fn transfer(validator: &str, proxy: &str, key: &std::path::Path, amount: &str) -> (Output, u32) {
    let key = key.to_str().unwrap();
    umbra(&[
        "tx",
        "--validator",
        validator,
        "--proxy",
        proxy,
        "--key",
        key,
        "transfer",
        "--to",
        RECIPIENT,
        "--amount",
        amount,
    ])
}

/// Any valid account address.
const RECIPIENT: &str = "11111111111111111111111111111112";

/// Every connection came from the exit, at least `least` of them, and none from `not`.
fn all_from_exit(relay: &Relay, exit: u32, not: u32, least: usize, what: &str) {
    let openers = relay.openers();
    assert!(
        openers.len() >= least,
        "{what}: {} connections, expected at least {least}",
        openers.len()
    );
    assert!(
        openers.iter().all(|opener| *opener == Some(exit)),
        "{what}: connections opened by {openers:?}; the exit service is pid {exit}, the sender {not}"
    );
}

#[test]
fn a_wallet_and_umbra_tx_reach_their_nodes_only_through_the_exit() {
    npm_install();
    let dir = temp_dir("chains");
    let mut net = Localnet::start(&dir, &SMALL);
    let output = net.wait_for("Ctrl-C stops everything.");
    let api = address_after(&output, "API http://");
    let proxy = format!(
        "socks5h://{}",
        address_after(&output, "SOCKS5 proxy: socks5h://")
    );
    let exit = pid_of(&dir.join("exit"));

    // --- Ethereum: ganache and ethers, through the mixnet ---
    let chain = Ganache::start();
    let relay = Relay::start(chain.address);
    let sent = send(relay.address, Some(&proxy), "0.25", 1);
    let wallet = sent.pid;
    let result = &sent.transfers[0];
    // mined, successfully, and the balance moved by exactly the value; the receipt came back
    // through the mixnet (send.mjs reads it through the proxy)
    assert_eq!(result["status"], 1, "{result}");
    assert_eq!(result["balance_before"], "0", "{result}");
    assert_eq!(result["balance_after"], "250000000000000000", "{result}");
    let hash = result["hash"].as_str().unwrap();
    // the chain's own view, asked directly: the transaction is in a block, and the recipient holds it
    let receipt = chain.call("eth_getTransactionReceipt", serde_json::json!([hash]));
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    let recipient = result["to"].as_str().unwrap();
    assert_eq!(
        chain.call("eth_getBalance", serde_json::json!([recipient, "latest"])),
        "0x3782dace9d90000" // 0.25 ETH in wei
    );
    // balance, nonce, gas, chain id, the transaction, the receipt, the balance again
    all_from_exit(&relay, exit, wallet, 1, "ganache");

    // --- the SDK: hyper over the mixnet in this process, no proxy; tickets bought first ---
    let exit_address = output
        .lines()
        .find_map(|line| {
            line.strip_prefix(
                "Exit service's address (for the SDK's streams, crates/sdk/examples/json_rpc.rs): ",
            )
        })
        .expect("localnet names its exit's address")
        .parse::<umbra_sdk::ClientAddress>()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime.block_on(sdk_call(
        &dir,
        api,
        exit_address,
        relay.address,
        serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "eth_getBalance", "params": [result["to"], "latest"]}),
    ));
    assert_eq!(answer["id"], 7, "{answer}");
    assert_eq!(answer["result"], "0x3782dace9d90000", "{answer}");
    // this process holds no connection to the node: the exit opened every one
    all_from_exit(
        &relay,
        exit,
        std::process::id(),
        2,
        "ganache, after the SDK's call",
    );

    // --- Umbra's own ledger: umbra tx --proxy ---
    let validator = Relay::start(api);
    let key = dir.join("operators").join("tickets.key");
    let sender = account_of(&key);
    let balance = |account: &str| {
        poll(
            api,
            &format!("/accounts/{account}"),
            Duration::from_secs(5),
            |view| view["balance"].as_u64(),
        )
    };
    let before = balance(&sender);
    let relayed = format!("http://{}", validator.address);
    let (committed, tx_pid) = transfer(&relayed, &proxy, &key, "2");
    let stdout = String::from_utf8_lossy(&committed.stdout);
    assert!(
        committed.status.success() && stdout.contains("committed in block"),
        "umbra tx --proxy: {stdout}{}",
        String::from_utf8_lossy(&committed.stderr)
    );
    // 2 UMB and the fee left the sender
    assert!(balance(&sender) <= before - 2_000_000, "{sender}");
    // /status, the account, the submission, its receipt
    all_from_exit(&validator, exit, tx_pid, 4, "the validator");

    // umbra account show --proxy reads through the mixnet too
    let (shown, _) = umbra(&[
        "account",
        "show",
        "--validator",
        &relayed,
        "--proxy",
        &proxy,
        &sender,
    ]);
    assert!(shown.status.success(), "{shown:?}");
    let view: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(view["balance"].as_u64(), Some(balance(&sender)));

    // a node registered through the mixnet: its owner's address stays hidden too
    let node = dir.join("new-mix");
    let (made, _) = umbra(&[
        "mixnode",
        "init",
        "--data-dir",
        node.to_str().unwrap(),
        "--listen",
        "127.0.0.1:1789",
    ]);
    assert!(made.status.success(), "{made:?}");
    let (registered, owner) = umbra(&[
        "mixnode",
        "register",
        "--data-dir",
        node.to_str().unwrap(),
        "--validator",
        &relayed,
        "--account",
        key.to_str().unwrap(),
        "--pledge",
        "100",
        "--proxy",
        &proxy,
    ]);
    let said = String::from_utf8_lossy(&registered.stdout);
    assert!(
        registered.status.success() && said.contains("Registered the mix node as node"),
        "{said}{}",
        String::from_utf8_lossy(&registered.stderr)
    );
    all_from_exit(
        &validator,
        exit,
        owner,
        8,
        "the validator, after a registration",
    );

    // the relay does tell processes apart: asked directly, the validator sees the asker
    let (direct, asker) = umbra(&["account", "show", "--validator", &relayed, &sender]);
    assert!(direct.status.success(), "{direct:?}");
    assert_eq!(validator.openers().last(), Some(&Some(asker)));

    // a wrong proxy: nothing listens there, and the message says what to check
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("socks5h://{}", closed.local_addr().unwrap());
    drop(closed);
    let (refused, _) = transfer(&relayed, &nowhere, &key, "1");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("cannot reach the SOCKS5 proxy") && stderr.contains("Is the proxy running"),
        "{stderr}"
    );
    // not a SOCKS5 URL at all
    let (mistyped, _) = transfer(&relayed, "http://127.0.0.1:1080", &key, "1");
    let stderr = String::from_utf8_lossy(&mistyped.stderr);
    assert!(
        !mistyped.status.success() && stderr.contains("write socks5h://host:port"),
        "{stderr}"
    );
    drop(net);
}

/// One JSON-RPC call to `server` with hyper over the SDK's streams to `exit`, from a client of
/// localnet's ledger that buys its bandwidth tickets first (localnet's gateways demand them).
async fn sdk_call(
    dir: &std::path::Path,
    api: SocketAddr,
    exit: umbra_sdk::ClientAddress,
    server: SocketAddr,
    call: Value,
) -> Value {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let validators = vec![umbra_sdk::ValidatorUrl::from_address(api)];
    let genesis = dir.join("genesis.json");
    let storage = dir.join("sdk-wallet");
    let account = umbra_sdk::account_key(&dir.join("operators").join("tickets.key")).unwrap();
    let bought = umbra_sdk::buy_tickets_into(&storage, &validators, &genesis, &account, 2)
        .await
        .unwrap();
    assert_eq!(bought.count, 2);
    let client = umbra_sdk::ClientBuilder::from_ledger(validators, &genesis)
        .unwrap()
        .storage(&storage)
        .connect()
        .await
        .unwrap();
    let (streams, client) = client
        .into_streams(umbra_sdk::StreamSettings::new(exit))
        .unwrap();
    let http =
        Client::builder(TokioExecutor::new()).build(umbra_sdk::http::MixnetConnector::new(streams));
    let request = hyper::Request::post(format!("http://{server}/"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(
            serde_json::to_vec(&call).unwrap(),
        )))
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(120), async {
        let response = http.request(request).await.unwrap();
        assert!(response.status().is_success(), "{response:?}");
        response.into_body().collect().await.unwrap().to_bytes()
    })
    .await
    .expect("no answer through the SDK's streams within 120 s");
    drop(http);
    client.disconnect().await;
    serde_json::from_slice(&answer).unwrap()
}
