//! A whole network on loopback (3 layers × 3 mix nodes, 2 gateways, every node its own
//! process) measured end to end:
//!
//! 1. the latency of small messages with Nym's default parameters, beside the latency the
//!    parameters alone imply (the wait for a slot of the real stream plus three exponential
//!    mix delays, sampled a million times);
//! 2. the same with no mix delays and a fast stream: what the network itself adds;
//! 3. a 10 MiB transfer between two clients with the real stream set fast;
//! 4. an idle client's CPU and bandwidth.
//!
//! `cargo bench -p umbra --bench e2e`. Environment variables:
//!
//! * `UMBRA_BENCH_QUICK=1`: a short run (40 messages in sections 1 and 2, 2 MiB, 10 s idle);
//! * `UMBRA_BENCH_SECTIONS=1,3`: only these sections (default all four);
//! * `UMBRA_BENCH_LATENCY_COUNT=N`: section 1 sends `N` messages (default 300, quick 40);
//! * `UMBRA_BENCH_SAMPLES=FILE`: section 1's latencies, in sending order, written to `FILE`
//!   as JSON with the parameters, the commit, the machine and its load (the simulator's
//!   validation, `crates/sim/tests/validation.rs`, compares its own distribution with them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark: failing loudly is the point
#![allow(missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Net, TestClient, cpu_seconds};
use rand::RngExt;
use umbra::network::Shape;
use umbra_client::{ClientConfig, ClientKeys, TrafficConfig, TrafficPreset};
use umbra_client_daemons::client::ClientEvent;
use umbra_sim::report::MeasuredLatencies;

fn quick() -> bool {
    std::env::var_os("UMBRA_BENCH_QUICK").is_some()
}

/// The sections to run: `UMBRA_BENCH_SECTIONS` (a comma list of 1 to 4), or all.
fn sections() -> Vec<u32> {
    match std::env::var("UMBRA_BENCH_SECTIONS") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("UMBRA_BENCH_SECTIONS: a comma list of 1 to 4, e.g. 1,3")
            })
            .collect(),
        Err(_) => vec![1, 2, 3, 4],
    }
}

/// Section 1's message count: `UMBRA_BENCH_LATENCY_COUNT`, or 300 (40 when quick).
fn latency_count() -> usize {
    match std::env::var("UMBRA_BENCH_LATENCY_COUNT") {
        Ok(n) => n
            .parse()
            .expect("UMBRA_BENCH_LATENCY_COUNT: a number of messages"),
        Err(_) if quick() => 40,
        Err(_) => 300,
    }
}

/// The 1-minute load average from /proc/loadavg (NaN if unreadable).
fn load_1min() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// "<cpu model>, <n> cores".
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores")
}

/// The worktree's short commit hash, with `-dirty` if tracked files differ from it.
fn commit() -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
    };
    let head = git(&["rev-parse", "--short", "HEAD"]).filter(|o| o.status.success())?;
    let mut hash = String::from_utf8_lossy(&head.stdout).trim().to_string();
    if git(&["diff", "--quiet", "HEAD"]).is_some_and(|o| !o.status.success()) {
        hash.push_str("-dirty");
    }
    Some(hash)
}

/// Writes section 1's raw samples (ms, in sending order) to `path` as JSON.
fn write_samples(path: &str, traffic: &TrafficConfig, load: f64, latencies: &[f64]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let samples = MeasuredLatencies {
        measured: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        commit: commit(),
        machine: machine(),
        load_1min: load,
        preset: "nym".into(),
        downlink: if traffic.insecure_push_deliveries {
            "pushed"
        } else {
            "shaped"
        }
        .into(),
        receive_interval_ms: ms(traffic.receive_interval),
        mean_send_interval_ms: ms(traffic.mean_send_interval),
        mean_hop_delay_ms: ms(traffic.mean_hop_delay),
        messages: latencies.len(),
        // to the microsecond: the clock's precision here, and a file a third the size
        latencies_ms: latencies.iter().map(|l| (l * 1e3).round() / 1e3).collect(),
    };
    std::fs::write(path, serde_json::to_string_pretty(&samples).unwrap() + "\n").unwrap();
    println!("   samples written to {path}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn summary(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    (percentile(samples, 0.5), percentile(samples, 0.99), mean)
}

fn exponential(rng: &mut impl rand::Rng, mean_ms: f64) -> f64 {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    -mean_ms * u.ln()
}

/// The latency the parameters imply: a slot of the real stream (exponential: the stream is
/// Poisson, so the wait for its next slot is too), then three exponential mix delays.
fn implied(traffic: &TrafficConfig) -> (f64, f64, f64) {
    let mut rng = rand::rng();
    let slot = traffic.mean_send_interval.as_secs_f64() * 1e3;
    let hop = traffic.mean_hop_delay.as_secs_f64() * 1e3;
    let mut samples: Vec<f64> = (0..1_000_000)
        .map(|_| {
            exponential(&mut rng, slot) + (0..3).map(|_| exponential(&mut rng, hop)).sum::<f64>()
        })
        .collect();
    summary(&mut samples)
}

fn config(traffic: TrafficConfig) -> ClientConfig {
    ClientConfig {
        traffic,
        ..ClientConfig::default()
    }
}

/// Latencies (ms) of `count` small messages from `alice` to `bob`, sent at random times.
async fn latencies(
    alice: &mut TestClient,
    bob: &mut TestClient,
    count: usize,
    mean_gap: Duration,
) -> Vec<f64> {
    let to = bob.handle.address();
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let gap = exponential(&mut rand::rng(), mean_gap.as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_secs_f64(gap / 1e3)).await;
        let sent = Instant::now();
        let message = format!("latency {i}").into_bytes();
        alice.handle.send(to, message.clone(), 0).await.unwrap();
        let received = bob
            .next(|event| match event {
                ClientEvent::Received { message: got, .. } if got == message => Some(()),
                _ => None,
            })
            .await;
        let () = received;
        samples.push(sent.elapsed().as_secs_f64() * 1e3);
    }
    samples
}

fn process_cpu_seconds() -> f64 {
    cpu_seconds("self")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` lists benchmarks; there is nothing to list
    }
    let load = load_1min();
    let sections = sections();
    let net = Net::start("bench", Shape::default());
    let keys = || ClientKeys::generate(&mut rand::rng());
    let count = if quick() { 40 } else { 300 };
    println!(
        "network: 3 layers x 3 mix nodes, 2 gateways, each its own process; clients in this process"
    );
    let nym = TrafficPreset::Nym.config();

    // 1. default parameters
    if sections.contains(&1) {
        let count = latency_count();
        let mut alice = net.client(0, &keys(), config(nym.clone()));
        let mut bob = net.client(1, &keys(), config(nym.clone()));
        alice.connected().await;
        bob.connected().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let samples = latencies(&mut alice, &mut bob, count, Duration::from_millis(100)).await;
        let mut measured = samples.clone();
        let (p50, p99, mean) = summary(&mut measured);
        let (i50, i99, imean) = implied(&nym);
        println!();
        println!(
            "1. small messages, Nym's defaults (15 ms per hop, a packet every 20 ms), {count} messages:"
        );
        println!("   measured  p50 {p50:6.1} ms   p99 {p99:6.1} ms   mean {mean:6.1} ms");
        println!("   implied   p50 {i50:6.1} ms   p99 {i99:6.1} ms   mean {imean:6.1} ms");
        println!(
            "   difference of the means: {:.1} ms over 5 nodes and 6 links",
            mean - imean
        );
        if let Ok(path) = std::env::var("UMBRA_BENCH_SAMPLES") {
            write_samples(&path, &nym, load, &samples);
        }
        alice.stop().await;
        bob.stop().await;
    }

    // 2. what the network adds: no mix delays, no cover, a slot every 100 us
    if sections.contains(&2) {
        let bare = TrafficConfig {
            mean_send_interval: Duration::from_micros(100),
            insecure_zero_delays: true,
            insecure_no_cover: true,
            insecure_push_deliveries: true,
            ..nym.clone()
        };
        let mut alice = net.client(0, &keys(), config(bare.clone()));
        let mut bob = net.client(1, &keys(), config(bare.clone()));
        alice.connected().await;
        bob.connected().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut measured = latencies(&mut alice, &mut bob, count, Duration::from_millis(30)).await;
        let (p50, p99, mean) = summary(&mut measured);
        println!();
        println!(
            "2. no mix delays, no cover, slots every 100 us (insecure_*): the network's own time"
        );
        println!("   measured  p50 {p50:6.2} ms   p99 {p99:6.2} ms   mean {mean:6.2} ms");
        println!(
            "   per node (all of it, both clients and 6 links included, over 5 nodes): p50 {:.2} ms, mean {:.2} ms",
            p50 / 5.0,
            mean / 5.0
        );
        alice.stop().await;
        bob.stop().await;
    }

    // 3. 10 MiB
    if sections.contains(&3) {
        let size = if quick() { 2 << 20 } else { 10 << 20 };
        let interval = Duration::from_millis(1);
        let fast = TrafficConfig {
            mean_send_interval: interval,
            receive_interval: interval,
            ..nym.clone()
        };
        let mut alice = net.client(0, &keys(), config(fast.clone()));
        let mut bob = net.client(1, &keys(), config(fast.clone()));
        alice.connected().await;
        bob.connected().await;
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let pids: Vec<String> = net
            .processes
            .pids()
            .into_iter()
            .map(|(_, pid)| pid.to_string())
            .collect();
        let nodes_cpu = || pids.iter().map(|pid| cpu_seconds(pid)).sum::<f64>();
        let (nodes_before, clients_before) = (nodes_cpu(), process_cpu_seconds());
        let started = Instant::now();
        let id = alice
            .handle
            .send(bob.handle.address(), data.clone(), 0)
            .await
            .unwrap();
        let (received, _) = bob.received().await;
        let took = started.elapsed();
        let nodes = (nodes_cpu() - nodes_before) / took.as_secs_f64();
        let clients = (process_cpu_seconds() - clients_before) / took.as_secs_f64();
        assert!(received == data, "the transfer arrived altered");
        alice.sent(id).await;
        let acked = started.elapsed();
        let stats = alice.handle.status().await.unwrap().stats;
        println!();
        println!(
            "3. {} MiB from one client to another, a packet every {interval:?} (15 ms per hop):",
            size >> 20
        );
        println!(
            "   received in {:.2} s: {:.2} MB/s of message ({} packets, {} retransmitted); all acknowledged after {:.2} s",
            took.as_secs_f64(),
            size as f64 / took.as_secs_f64() / 1e6,
            stats.real_packets,
            stats.retransmissions,
            acked.as_secs_f64()
        );
        println!(
            "   CPU meanwhile: the 11 nodes {:.0}% of a core, the two clients {:.0}% (the machine has 2 cores)",
            nodes * 100.0,
            clients * 100.0
        );
        alice.stop().await;
        bob.stop().await;
    }

    // 4. an idle client
    if sections.contains(&4) {
        let mut carol = net.client(0, &keys(), config(nym.clone()));
        carol.connected().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = carol.handle.status().await.unwrap();
        let cpu_before = process_cpu_seconds();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(if quick() { 10 } else { 30 })).await;
        let after = carol.handle.status().await.unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = (process_cpu_seconds() - cpu_before) / elapsed;
        let packets = (after.stats.drop_cover + after.stats.loops + after.stats.real_packets)
            - (before.stats.drop_cover + before.stats.loops + before.stats.real_packets);
        println!();
        println!("4. an idle client, Nym's defaults, over {elapsed:.0} s:");
        println!(
            "   {:.1} packets/s sent; {:.1} kB/s up, {:.1} kB/s down (Noise messages to and from the gateway); CPU {:.2}% of one core (this process: the client and its runtime)",
            packets as f64 / elapsed,
            (after.bytes_sent - before.bytes_sent) as f64 / elapsed / 1e3,
            (after.bytes_received - before.bytes_received) as f64 / elapsed / 1e3,
            cpu * 100.0
        );
        carol.stop().await;
    }

    drop(net);
}
