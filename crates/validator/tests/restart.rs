//! A solo validator stopped and started again at random points of its epochs (issue 13.6):
//! whenever it answers, it serves only a topology whose certificate holds, and a node's first
//! fetch after each start succeeds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use umbra_ledger::Params;
use umbra_net::directory::{Directory, TrustRoot, ValidatorUrl};
use umbra_net::ledger::{LedgerClient, LedgerError};
use umbra_validator::InitOptions;

const EPOCH: Duration = Duration::from_secs(1);

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("umbra-validator-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_restarted_anywhere_in_an_epoch_serves_only_certified_topologies() {
    let dir = temp_dir("restart");
    let api = free_port();
    umbra_validator::init(
        &dir,
        &InitOptions {
            listen_address: api,
            genesis: None,
            chain_id: "umbra-test".into(),
            params: Params {
                epoch_length_ms: EPOCH.as_millis() as u64,
                ..Params::default()
            },
            consensus: None,
        },
    )
    .unwrap();
    let trust = TrustRoot::read(&dir.join(umbra_validator::GENESIS_FILE)).unwrap();
    let directory = Directory::new(vec![ValidatorUrl::from_address(api)], trust.clone());
    let never = CancellationToken::new();
    let start = || {
        let stop = CancellationToken::new();
        let dir = dir.clone();
        let running = tokio::spawn({
            let stop = stop.clone();
            async move { umbra_validator::run(&dir, stop).await }
        });
        (stop, running)
    };

    // what the validator serves, asked every 10 ms from the first certified topology on
    let (stop, running) = start();
    tokio::time::timeout(Duration::from_secs(30), directory.first(&never))
        .await
        .expect("no certified topology within 30 s")
        .unwrap();
    let refused: Arc<Mutex<Vec<String>>> = Arc::default();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watcher = tokio::spawn({
        let refused = Arc::clone(&refused);
        let served = Arc::clone(&served);
        let trust = trust.clone();
        async move {
            let client = LedgerClient::new(api);
            loop {
                match client.topology(&trust.chain_id, &trust.validators).await {
                    Ok(_) => {
                        served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    // stopped, starting, or a connection cut by the stop
                    Err(LedgerError::Unreachable { .. } | LedgerError::Garbled { .. }) => {}
                    Err(error) => refused.lock().unwrap().push(error.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });

    // 20 stops at random points of an epoch, each for up to half an epoch
    let mut rng = ChaCha20Rng::from_seed([13; 32]);
    let mut random_part = |of: Duration| of.mul_f64((rng.next_u32() % 1000) as f64 / 1000.0);
    let (mut stop, mut running) = (stop, running);
    for cycle in 0..20 {
        tokio::time::sleep(random_part(EPOCH)).await;
        stop.cancel();
        running.await.unwrap().unwrap();
        tokio::time::sleep(random_part(EPOCH / 2)).await;
        (stop, running) = start();
        let first = tokio::time::timeout(Duration::from_secs(30), directory.first(&never))
            .await
            .unwrap_or_else(|_| panic!("cycle {cycle}: no topology within 30 s"));
        if let Err(error) = first {
            panic!("cycle {cycle}: a node starting now would refuse: {error}");
        }
    }
    stop.cancel();
    running.await.unwrap().unwrap();
    watcher.abort();
    let refused = refused.lock().unwrap();
    assert!(
        refused.is_empty(),
        "{} of {} answers were not a certified topology, e.g. {:?}",
        refused.len(),
        refused.len() + served.load(std::sync::atomic::Ordering::Relaxed),
        refused.first()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
