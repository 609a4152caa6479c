//! An idle client per traffic preset: what its link to the gateway costs, up and down, and the
//! CPU of the client and of its gateway. A network of node processes on loopback (one mix node
//! per layer, one gateway); the client runs in this process, alone, and sends nothing.
//!
//! `cargo bench -p umbra --bench idle`; `UMBRA_BENCH_QUICK=1` for a short run. The code only
//! uses what every version of the client has, so the same file measures an older commit
//! (BENCHMARKS.md compares them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is the point
#![allow(missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Net, cpu_seconds};
use umbra::network::{Kind, Shape};
use umbra_client::{ClientConfig, ClientKeys, TrafficPreset};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::var_os("UMBRA_BENCH_QUICK").is_some();
    let span = Duration::from_secs(if quick { 10 } else { 30 });
    println!("An idle client per preset, over {} s each", span.as_secs());
    println!(
        "| preset | packets/s up | kB/s up | kB/s down | messages/s down | client CPU | gateway CPU |"
    );
    println!("|---|---|---|---|---|---|---|");
    for preset in [
        TrafficPreset::Nym,
        TrafficPreset::LowLatency,
        TrafficPreset::Bulk,
    ] {
        let net = Net::start(
            &format!("idle-{preset:?}").to_lowercase(),
            Shape {
                mixes_per_layer: 1,
                gateways: 1,
            },
        );
        let gateway = net.names(Some(Kind::Gateway))[0].clone();
        let gateway_pid = net
            .processes
            .pids()
            .into_iter()
            .find(|(name, _)| *name == gateway)
            .map(|(_, pid)| pid.to_string())
            .unwrap();
        let config = ClientConfig {
            traffic: preset.config(),
            ..ClientConfig::default()
        };
        let keys = ClientKeys::generate(&mut rand::rng());
        let mut client = net.client(0, &keys, config);
        client.connected().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = client.handle.status().await.unwrap();
        let (cpu_before, gateway_before) = (cpu_seconds("self"), cpu_seconds(&gateway_pid));
        let started = Instant::now();
        tokio::time::sleep(span).await;
        let after = client.handle.status().await.unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = (cpu_seconds("self") - cpu_before) / elapsed;
        let gateway_cpu = (cpu_seconds(&gateway_pid) - gateway_before) / elapsed;
        let sent = |s: &umbra_client_daemons::client::ClientStatus| {
            s.stats.drop_cover + s.stats.loops + s.stats.real_packets
        };
        let down_messages = after.stats.acks + after.stats.loops_returned;
        let down_before = before.stats.acks + before.stats.loops_returned;
        println!(
            "| {preset:?} | {:.1} | {:.1} | {:.1} | ≥ {:.1} | {:.1}% | {:.1}% |",
            (sent(&after) - sent(&before)) as f64 / elapsed,
            (after.bytes_sent - before.bytes_sent) as f64 / elapsed / 1e3,
            (after.bytes_received - before.bytes_received) as f64 / elapsed / 1e3,
            (down_messages - down_before) as f64 / elapsed,
            cpu * 100.0,
            gateway_cpu * 100.0
        );
        client.stop().await;
        drop(net);
    }
    println!(
        "(kB/s: Noise messages to and from the gateway, before WebSocket and TCP/IP framing; client CPU: this process, which holds only the client and its runtime; messages down: acks and loops that came back, a lower bound on deliveries)"
    );
}
