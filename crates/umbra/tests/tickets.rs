//! Bandwidth tickets through a whole network of processes: `umbra localnet` demands tickets,
//! buys them for its clients at start (a real purchase on the ledger, blind-signed by the
//! validator's signing service), its clients spend them at their gateways in cover slots, and
//! the gateways redeem them on the ledger, their operators paid exactly the price less the
//! pool's share for each. Then a client in this process, on real sessions with the real
//! gateways, presents what must be refused: a forged ticket, one signed by too few
//! validators, one of a key period no live key signed, the same ticket twice at one gateway —
//! each refused with a clear message and nothing credited — and the same ticket at the second
//! gateway, which is credited there and caught when redeemed (the ledger pays the first
//! redeemer only and records the double spend). A gateway killed right after crediting a ticket
//! redeems it once it runs again. A second signing request for a purchase already served is
//! refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::localnet::{
    Localnet, SMALL, account_of, address_after, pid_of, poll, signal, temp_dir,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use umbra::network::get;
use umbra_client::{Client, ClientConfig, ClientKeys};
use umbra_client_daemons::client::{self, ClientEvent, ClientSetup, ConnectionConfig};
use umbra_client_daemons::spending::{ReadyTicket, TicketSource};
use umbra_client_daemons::tickets::TicketWallet;
use umbra_net::directory::{Directory, TrustRoot, ValidatorUrl};
use umbra_net::metrics::sample;
use umbra_topology::{NodeDescriptor, Topology};

/// localnet's genesis: 0.1 UMB a ticket, 10 % to the reward pool (micro-UMB).
const PRICE: u64 = 100_000;
const TO_OWNER: u64 = 90_000;
/// An operator's balance once its node is bonded: 1,000 UMB less the 100 UMB pledge.
const BONDED_BALANCE: u64 = 900_000_000;

/// Hands out a fixed list of tickets, one at a time, and notes what became of each.
#[derive(Debug, Default)]
struct Scripted {
    queue: Mutex<VecDeque<ReadyTicket>>,
    spent: Mutex<Vec<[u8; 32]>>,
}

impl Scripted {
    fn new(tickets: Vec<Vec<u8>>) -> Arc<Scripted> {
        let queue = tickets
            .into_iter()
            .map(|bytes| {
                let serial = umbra_tickets::Ticket::from_bytes(&bytes)
                    .map(|t| t.serial().0)
                    .unwrap_or([0xee; 32]);
                (serial, bytes)
            })
            .collect();
        Arc::new(Scripted {
            queue: Mutex::new(queue),
            spent: Mutex::default(),
        })
    }
}

impl TicketSource for Scripted {
    fn next_ticket(&self) -> Result<Option<ReadyTicket>, String> {
        Ok(self.queue.lock().unwrap().front().cloned())
    }
    fn ticket_spent(&self, serial: &[u8; 32]) -> Result<(), String> {
        let mut queue = self.queue.lock().unwrap();
        if let Some(at) = queue.iter().position(|(s, _)| s == serial) {
            queue.remove(at);
        } else {
            queue.pop_front();
        }
        self.spent.lock().unwrap().push(*serial);
        Ok(())
    }
    fn ticket_returned(&self, _: &[u8; 32]) {}
}

/// A client of `gateway` in this process paying with `tickets`: what the gateway told it
/// (refusal details and credits), until `until` holds or `within` passes.
fn client_session(
    runtime: &tokio::runtime::Runtime,
    topology: &Topology,
    gateway: &NodeDescriptor,
    tickets: Arc<Scripted>,
    within: Duration,
    until: impl Fn(&[String], &[u64]) -> bool,
) -> (Vec<String>, Vec<u64>) {
    runtime.block_on(async {
        let keys = ClientKeys::generate(&mut rand::rng());
        let core = Client::new(
            ClientConfig::default(),
            keys.clone(),
            gateway.noise_key.0,
            topology.clone(),
            rand::random(),
            std::time::Instant::now(),
        )
        .unwrap();
        let stop = CancellationToken::new();
        let setup = ClientSetup {
            gateway_address: gateway.client_address.unwrap(),
            gateway_key: gateway.noise_key,
            connection: ConnectionConfig::default(),
            outbox: None,
            max_pending_bytes: client::DEFAULT_MAX_PENDING_BYTES,
            topologies: None,
            tickets: Some(tickets),
        };
        let (_handle, mut events, task): (_, mpsc::Receiver<ClientEvent>, _) =
            client::start(core, &keys, setup, stop.clone()).unwrap();
        let (mut refused, mut credits) = (Vec::new(), Vec::new());
        let deadline = tokio::time::Instant::now() + within;
        while !until(&refused, &credits) {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(ClientEvent::Refused { detail, .. })) => refused.push(detail),
                Ok(Some(ClientEvent::Credit { balance })) => credits.push(balance),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        stop.cancel();
        let _ = task.await;
        (refused, credits)
    })
}

/// The gateways' metrics addresses and owners, from localnet's summary.
fn gateways(output: &str, dir: &Path) -> Vec<(String, SocketAddr, String)> {
    output
        .lines()
        .filter(|line| line.starts_with("gateway-"))
        .map(|line| {
            let name = line.split_whitespace().next().unwrap().to_owned();
            let owner = account_of(&dir.join("operators").join(format!("{name}.key")));
            (name, address_after(line, "http://"), owner)
        })
        .collect()
}

fn balance(api: SocketAddr, account: &str) -> u64 {
    let body = get(api, &format!("/accounts/{account}")).unwrap();
    let value: Value = serde_json::from_str(&body).unwrap();
    value["balance"].as_u64().unwrap()
}

fn metric(address: SocketAddr, name: &str) -> Option<f64> {
    get(address, "/metrics").and_then(|page| sample(&page, name))
}

/// Every gateway's redeemed tickets (its own count, kept on disk) match the ledger's, and each
/// operator's balance rose by exactly the owner's part of each ticket first redeemed by it.
fn redemptions_add_up(api: SocketAddr, gateways: &[(String, SocketAddr, String)]) -> bool {
    let Some(stats) = get(api, "/tickets") else {
        return false;
    };
    let stats: Value = serde_json::from_str(&stats).unwrap();
    let (redeemed, double) = (
        stats["redeemed"].as_u64().unwrap(),
        stats["double_spends"].as_u64().unwrap(),
    );
    let mut total = 0;
    let mut paid = 0;
    for (_, metrics, owner) in gateways {
        let Some(count) = metric(*metrics, "umbra_gateway_tickets_redeemed_total") else {
            return false;
        };
        if metric(*metrics, "umbra_gateway_tickets_waiting") != Some(0.0) {
            return false;
        }
        total += count as u64;
        let earned = balance(api, owner) - BONDED_BALANCE;
        assert_eq!(earned % TO_OWNER, 0, "{owner} earned {earned}");
        paid += earned / TO_OWNER;
    }
    total == redeemed + double && paid == redeemed
}

#[test]
fn tickets_are_bought_spent_redeemed_and_refused_when_no_good() {
    let dir = temp_dir("tickets");
    let mut net = Localnet::start(&dir, &SMALL);
    let output = net.wait_for("Ctrl-C stops everything.");
    let api = address_after(&output, "API http://");
    let gateways = gateways(&output, &dir);
    assert_eq!(gateways.len(), 2);
    // localnet bought for each of its clients
    for name in ["exit", "socks5", "client", "monitor"] {
        assert!(
            output.contains(&format!("[tickets] bought 40 for {name} ")),
            "{output}"
        );
    }

    // the whole loop: each client spends its first ticket at once (it starts without credit),
    // each gateway redeems what was spent at it, and every figure agrees
    poll(api, "/tickets", Duration::from_secs(60), |stats| {
        (stats["redeemed"].as_u64()? >= 4).then_some(())
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !redemptions_add_up(api, &gateways) {
        assert!(Instant::now() < deadline, "redemptions do not add up");
        std::thread::sleep(Duration::from_millis(300));
    }
    let stats: Value = serde_json::from_str(&get(api, "/tickets").unwrap()).unwrap();
    let (bought, redeemed) = (
        stats["bought"].as_u64().unwrap(),
        stats["redeemed"].as_u64().unwrap(),
    );
    assert_eq!(bought, 4 * 40);
    // the fee pool holds exactly what was paid for tickets not yet redeemed
    assert_eq!(
        stats["fee_pool"].as_u64().unwrap(),
        (bought - redeemed) * PRICE
    );

    // tickets of our own, bought with localnet's ticket account
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let validators = vec![ValidatorUrl::from_address(api)];
    let account = umbra_ledger::SigningKey::from_seed(
        umbra_net::keys::read_key(&dir.join("operators").join("tickets.key")).unwrap(),
    );
    let wallet = TicketWallet::open(&dir.join("test-wallet.redb")).unwrap();
    let bought = runtime
        .block_on(wallet.buy(&validators, "umbra-localnet", &account, 2))
        .unwrap();
    let mut ours = Vec::new();
    while let Some(ticket) = wallet.next_unspent().unwrap() {
        wallet.mark_spent(&ticket.serial).unwrap();
        ours.push(ticket.bytes);
    }
    assert_eq!(ours.len(), 2);
    let topology = runtime
        .block_on(async {
            let directory = Directory::new(
                validators.clone(),
                TrustRoot::read(&dir.join("genesis.json")).unwrap(),
            );
            directory.first(&CancellationToken::new()).await
        })
        .unwrap()
        .topology
        .clone();
    let gateway = |name: &str| {
        // the ledger's id, as the summary's table shows it ("gw #7")
        let line = output.lines().find(|line| line.starts_with(name)).unwrap();
        let id: u32 = line
            .split_once("gw #")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no id in {line:?}"));
        topology
            .gateways()
            .find(|g| g.id.0 == id)
            .unwrap_or_else(|| panic!("{name} (#{id}) is not in the topology"))
            .clone()
    };

    // no good: forged (a signature's byte changed), signed by too few validators (none), and
    // of a key period no live key signed — each refused, nothing credited
    let valid = umbra_tickets::Ticket::from_bytes(&ours[0]).unwrap();
    let mut forged = ours[0].clone();
    *forged.last_mut().unwrap() ^= 1;
    let mut unsigned = valid.clone();
    unsigned.signatures.clear();
    let mut other_period = valid.clone();
    other_period.input.period += 5;
    let bad = Scripted::new(vec![forged, unsigned.to_bytes(), other_period.to_bytes()]);
    let (refused, credits) = client_session(
        &runtime,
        &topology,
        &gateway("gateway-1"),
        Arc::clone(&bad),
        Duration::from_secs(30),
        |refused, _| {
            refused
                .iter()
                .filter(|d| d.contains("ticket refused"))
                .count()
                >= 3
        },
    );
    let refusals: Vec<&String> = refused
        .iter()
        .filter(|d| d.contains("ticket refused"))
        .collect();
    assert_eq!(refusals.len(), 3, "{refused:?}");
    assert!(credits.iter().all(|&c| c == 0), "{credits:?}");
    assert_eq!(
        bad.spent.lock().unwrap().len(),
        3,
        "thrown away once refused"
    );

    // a good one: credited with a ticket's bytes
    let good = ours[0].clone();
    let (_, credits) = client_session(
        &runtime,
        &topology,
        &gateway("gateway-1"),
        Scripted::new(vec![good.clone()]),
        Duration::from_secs(30),
        |_, credits| credits.iter().any(|&c| c > 0),
    );
    assert_eq!(credits.last(), Some(&(50 << 20)), "{credits:?}");
    // the same ticket again at the same gateway (another client): refused, nothing credited
    let (refused, credits) = client_session(
        &runtime,
        &topology,
        &gateway("gateway-1"),
        Scripted::new(vec![good.clone()]),
        Duration::from_secs(30),
        |refused, _| refused.iter().any(|d| d.contains("ticket refused")),
    );
    assert!(
        refused
            .iter()
            .any(|d| d.contains("already spent at this gateway")),
        "{refused:?}"
    );
    assert!(credits.iter().all(|&c| c == 0), "{credits:?}");

    // the same ticket at the other gateway: it cannot know, and credits it; the ledger pays
    // only the first redeemer and records the double spend
    let double_before = stats["double_spends"].as_u64().unwrap();
    let (_, credits) = client_session(
        &runtime,
        &topology,
        &gateway("gateway-2"),
        Scripted::new(vec![good]),
        Duration::from_secs(30),
        |_, credits| credits.iter().any(|&c| c > 0),
    );
    assert_eq!(credits.last(), Some(&(50 << 20)));
    poll(api, "/tickets", Duration::from_secs(30), |stats| {
        (stats["double_spends"].as_u64()? > double_before).then_some(())
    });

    // a gateway killed right after crediting a ticket redeems it once it runs again
    let gateway_dir = dir.join("gateway-1");
    let before: Value = serde_json::from_str(&get(api, "/tickets").unwrap()).unwrap();
    let (_, credits) = client_session(
        &runtime,
        &topology,
        &gateway("gateway-1"),
        Scripted::new(vec![ours[1].clone()]),
        Duration::from_secs(30),
        |_, credits| credits.iter().any(|&c| c > 0),
    );
    // (within milliseconds of the credit; the gateway redeems every 5 s)
    signal(pid_of(&gateway_dir), "-KILL");
    assert_eq!(credits.last(), Some(&(50 << 20)));
    net.wait_for("[net] gateway-1 started again");
    poll(api, "/tickets", Duration::from_secs(60), |stats| {
        (stats["redeemed"].as_u64()? > before["redeemed"].as_u64()?).then_some(())
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !redemptions_add_up(api, &gateways) {
        assert!(
            Instant::now() < deadline,
            "redemptions do not add up after the restart"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // a second signing request for a purchase already served: refused
    let issuers: Value = serde_json::from_str(&get(api, "/tickets/issuers").unwrap()).unwrap();
    let key = issuers["periods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["period"] == bought.period)
        .unwrap()["issuers"][0]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = umbra_tickets::IssuerPublicKey::from_bytes(&hex::decode(key).unwrap()).unwrap();
    let request = umbra_tickets::PurchaseRequest::new(
        &umbra_tickets::PurchaseSeed::generate(&mut rand::rng()),
        umbra_tickets::TxId(bought.tx.0),
        umbra_tickets::ChainTag::of("umbra-localnet"),
        bought.period,
        2,
        &[(0, key)],
    )
    .unwrap();
    let blinded: Vec<String> = request
        .blinded(0)
        .unwrap()
        .iter()
        .map(|b| hex::encode(&b.0))
        .collect();
    let body = serde_json::json!({ "tx": bought.tx.to_string(), "blinded": blinded });
    let answer = runtime.block_on(async {
        umbra_net::http_client::request(
            api,
            hyper::Method::POST,
            "/tickets/sign",
            Some(body.to_string().into_bytes()),
            umbra_net::http_client::Limits::default(),
        )
        .await
        .unwrap()
    });
    assert_eq!(
        answer.status,
        409,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );

    let (status, output) = net.interrupt();
    assert!(status.success(), "{output}");
    let _ = std::fs::remove_dir_all(&dir);
}
