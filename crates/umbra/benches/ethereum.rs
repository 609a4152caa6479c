//! A wallet's transaction through the mixnet: the time from `eth_sendRawTransaction` to its
//! receipt, for a transfer that ethers (`examples/ethereum/send.mjs`) signs and sends to a local
//! ganache chain — straight to the node, and through the SOCKS5 proxy and exit of a whole
//! `umbra localnet` (9 mix nodes, 2 gateways, each its own process) at each traffic preset.
//!
//! ganache mines each transaction as it arrives, so what is measured is the network: the
//! broadcast's round trip and the receipt's (the first poll finds it). The wallet keeps its
//! connection to the proxy alive between calls, as `send.mjs` does. One transfer per preset
//! warms up (opens the stream) and is not counted.
//!
//! `cargo bench -p umbra --bench ethereum`; `UMBRA_BENCH_PRESETS=nym` picks the presets
//! (default `nym,low-latency`), `UMBRA_BENCH_RUNS=50` the transfers measured per row
//! (default 20). Needs Node.js 18+ and npm (the example's packages are installed if missing).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is the point

#[path = "../tests/common/mod.rs"]
mod common;

use common::ethereum::{Ganache, npm_install, send};
use common::localnet::{Localnet, address_after, temp_dir};
use serde_json::Value;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; there is nothing to list
    }
    let presets =
        std::env::var("UMBRA_BENCH_PRESETS").unwrap_or_else(|_| "nym,low-latency".to_owned());
    let runs: usize = std::env::var("UMBRA_BENCH_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(20);
    npm_install();
    let chain = Ganache::start();
    let mut rows = vec![("direct".to_owned(), measure(&chain, None, runs))];
    for preset in presets.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let dir = temp_dir(&format!("bench-ethereum-{preset}"));
        let mut net = Localnet::start(&dir, &["--traffic", preset, "--no-demo"]);
        let output = net.wait_for("Ctrl-C stops everything.");
        let proxy = format!(
            "socks5h://{}",
            address_after(&output, "SOCKS5 proxy: socks5h://")
        );
        rows.push((
            format!("through the mixnet, {preset}"),
            measure(&chain, Some(&proxy), runs),
        ));
        drop(net);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!();
    println!("eth_sendRawTransaction → receipt, {runs} transfers each (ms)");
    println!("| path | median | p90 | min | max |");
    println!("|---|---|---|---|---|");
    for (path, times) in rows {
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!(
            "| {path} | {:.0} | {:.0} | {:.0} | {:.0} |",
            at(0.5),
            at(0.9),
            times[0],
            times[times.len() - 1]
        );
    }
}

/// The sorted times of `runs` transfers after one warm-up.
fn measure(chain: &Ganache, proxy: Option<&str>, runs: usize) -> Vec<f64> {
    let sent = send(chain.address, proxy, "0.001", runs + 1);
    let mut times: Vec<f64> = sent.transfers[1..]
        .iter()
        .map(|transfer: &Value| {
            assert_eq!(transfer["status"], 1, "{transfer}");
            transfer["send_to_receipt_ms"].as_f64().unwrap()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "{}: median {:.0} ms over {runs}",
        proxy.unwrap_or("direct"),
        times[times.len() / 2]
    );
    times
}
