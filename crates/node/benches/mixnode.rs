//! One mix node on real Noise links, on loopback: how much CPU a packet costs it, how many
//! packets per second it sustains, and how late it forwards them.
//!
//! A load generator (one outbound link, as from the previous layer) pushes pre-built, distinct
//! regular packets through one node (layer 3) to a sink (the next hop, a gateway). The node
//! runs on its own tokio runtime (`umbra-node-io`) besides its Sphinx threads and core thread,
//! so its CPU time is read from those threads alone (`/proc/self/task/*/schedstat`).
//!
//! Reported, against baselines measured in the same run:
//! (a) the node's CPU time per packet over the single-core Sphinx forward hop;
//! (b) the packets per second it sustains on this machine, zero delays and Poisson delays
//!     (mean 15 ms), in a closed loop that keeps 2000 packets in flight;
//! (c) how late packets leave against their due time, at half the sustained rate with Poisson
//!     delays: measured at the sink per packet (an upper bound: it includes both links), and
//!     from the node's own lateness histogram.
//!
//! Run: `cargo bench -p umbra-node --bench mixnode` (about two minutes).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::Net;
use rand::RngExt;
use tokio::sync::Semaphore;
use umbra_net::metrics::sample;
use umbra_sphinx::{Packet, PrivateKey, Processed};
use umbra_topology::Layer;
use umbra_wire::frame::Frame;

const IN_FLIGHT: usize = 2000;
const MEAN_DELAY: Duration = Duration::from_millis(15);

fn main() {
    let bench = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-io")
        .enable_all()
        .build()
        .unwrap();
    let node = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("umbra-node-io")
        .enable_all()
        .build()
        .unwrap();
    bench.block_on(run(node.handle().clone()));
}

/// Packets for the node, each with what the sink will see of it.
struct Load {
    frames: Vec<Frame>,
    delays: Vec<Duration>,
    /// The α of each packet as the node forwards it: how the sink tells them apart.
    index: HashMap<[u8; 32], usize>,
}

fn build(
    net: &Net,
    key: &PrivateKey,
    count: usize,
    delay: impl Fn(&mut rand::rngs::ThreadRng) -> Duration + Sync,
) -> Load {
    let per_thread = count.div_ceil(2);
    let parts: Vec<Vec<(Frame, Duration, [u8; 32])>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|part| {
                let delay = &delay;
                scope.spawn(move || {
                    let mut rng = rand::rng();
                    (part * per_thread..((part + 1) * per_thread).min(count))
                        .map(|i| {
                            let d = delay(&mut rng);
                            let frame = net.packet_with_delays(&(i as u64).to_le_bytes(), &[d]);
                            let Processed::Forward { packet, .. } =
                                key.process(frame.packet.clone()).unwrap()
                            else {
                                panic!("the node forwards");
                            };
                            (frame, d, alpha(&packet))
                        })
                        .collect()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut load = Load {
        frames: Vec::with_capacity(count),
        delays: Vec::with_capacity(count),
        index: HashMap::with_capacity(count),
    };
    for (frame, delay, alpha) in parts.into_iter().flatten() {
        load.index.insert(alpha, load.frames.len());
        load.frames.push(frame);
        load.delays.push(delay);
    }
    load
}

fn alpha(packet: &Packet) -> [u8; 32] {
    packet.as_bytes()[..32].try_into().unwrap()
}

fn exponential(rng: &mut rand::rngs::ThreadRng, mean: Duration) -> Duration {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    mean.mul_f64(-u.ln())
}

/// CPU time of the node's threads so far.
fn node_cpu() -> Duration {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let ours = ["umbra-node-io", "umbra-sphinx", "umbra-mix-core"]
            .iter()
            .any(|p| comm.starts_with(p));
        if ours {
            let schedstat =
                std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            total += schedstat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

/// What arrived at the sink: per packet, when.
struct Arrivals {
    count: AtomicUsize,
    at: Mutex<Vec<Option<Instant>>>,
    window: Arc<Semaphore>,
}

struct Run {
    packets: usize,
    wall: Duration,
    cpu: Duration,
}

impl Run {
    fn rate(&self) -> f64 {
        self.packets as f64 / self.wall.as_secs_f64()
    }
    fn cpu_per_packet(&self) -> Duration {
        self.cpu / self.packets as u32
    }
}

async fn run(node_runtime: tokio::runtime::Handle) {
    let mut net = Net::start_with(
        "bench",
        &[Layer::LAST],
        |config| {
            config.workers.threads = 2;
            if let Some(batch) = std::env::var("BATCH").ok().and_then(|b| b.parse().ok()) {
                config.workers.batch_size = batch;
            }
            config.links.queue_len = 100_000;
            config.mixing.replay.expected_packets_per_second = 20_000;
            config.mixing.replay.retention = Duration::from_secs(600);
        },
        Some(node_runtime),
    )
    .await;
    let key = PrivateKey::from_bytes(
        umbra_net::keys::read_key(&net.mixes[0].dir.join("sphinx.key")).unwrap(),
    );

    // baselines, same run, one core: Umbra's hop, one packet and in batches, and sphinx-packet's
    eprintln!("building packets…");
    let sample_load = build(&net, &key, 4000, |_| Duration::ZERO);
    let packets: Vec<Packet> = sample_load
        .frames
        .iter()
        .map(|f| f.packet.clone())
        .collect();
    let started = Instant::now();
    for packet in packets.iter().cloned() {
        std::hint::black_box(key.process(packet).unwrap());
    }
    let hop = started.elapsed() / packets.len() as u32;
    let started = Instant::now();
    for chunk in packets.chunks(32) {
        let checked = key
            .check_batch(chunk.to_vec())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        std::hint::black_box(umbra_sphinx::CheckedPacket::finish_batch(checked));
    }
    let hop_batched = started.elapsed() / packets.len() as u32;
    let nym_key = x25519_dalek::StaticSecret::from(*key.as_bytes());
    let started = Instant::now();
    for packet in &packets[..2000] {
        std::hint::black_box(
            sphinx_packet::SphinxPacket::from_bytes(packet.as_bytes())
                .unwrap()
                .process(&nym_key)
                .unwrap(),
        );
    }
    let nym_hop = started.elapsed() / 2000;
    eprintln!(
        "forward hop, one core: umbra {hop:?} (batched {hop_batched:?}), sphinx-packet 0.8.0 {nym_hop:?}"
    );

    let (sender, _) = net.sender();
    let arrivals = Arc::new(Arrivals {
        count: AtomicUsize::new(0),
        at: Mutex::new(Vec::new()),
        window: Arc::new(Semaphore::new(IN_FLIGHT)),
    });
    let index: Arc<Mutex<HashMap<[u8; 32], usize>>> = Arc::new(Mutex::new(HashMap::new()));
    {
        let arrivals = Arc::clone(&arrivals);
        let index = Arc::clone(&index);
        let mut frames = std::mem::replace(
            &mut net.sink.frames,
            tokio::sync::mpsc::unbounded_channel().1,
        );
        tokio::spawn(async move {
            while let Some(frame) = frames.recv().await {
                let now = Instant::now();
                let packet = index.lock().unwrap().get(&alpha(&frame.packet)).copied();
                if let Some(i) = packet {
                    arrivals.at.lock().unwrap()[i] = Some(now);
                }
                arrivals.count.fetch_add(1, Ordering::Relaxed);
                arrivals.window.add_permits(1);
            }
        });
    }

    // warm up: links up, caches warm
    let warm = build(&net, &key, 3000, |_| Duration::ZERO);
    closed_loop(&sender, &warm, &arrivals, &index).await;

    eprintln!("building the saturation loads…");
    let zero = build(&net, &key, 60_000, |_| Duration::ZERO);
    let zero_run = closed_loop(&sender, &zero, &arrivals, &index).await;
    let poisson = build(&net, &key, 60_000, |rng| exponential(rng, MEAN_DELAY));
    let poisson_run = closed_loop(&sender, &poisson, &arrivals, &index).await;

    // half the sustained rate, Poisson arrivals and delays
    let rate = poisson_run.rate() / 2.0;
    let seconds = 6.0;
    let count = (rate * seconds) as usize;
    eprintln!("building the half-rate load ({count} packets at {rate:.0}/s)…");
    let half = build(&net, &key, count, |rng| exponential(rng, MEAN_DELAY));
    let before = net.metrics(0).await;
    let lateness = open_loop(&sender, &half, rate, &arrivals, &index).await;
    let after = net.metrics(0).await;
    let lateness_histogram =
        histogram_delta(&before, &after, "umbra_mixnode_forward_lateness_seconds");
    let processing_histogram = histogram_delta(&before, &after, "umbra_mixnode_processing_seconds");

    let ratio = |run: &Run, hop: Duration| run.cpu_per_packet().as_secs_f64() / hop.as_secs_f64();
    let cores = |run: &Run| run.cpu.as_secs_f64() / run.wall.as_secs_f64();
    println!(
        "\n## Mix node on loopback ({} packets per run)\n",
        zero_run.packets
    );
    println!("| measure | zero delays | Poisson delays, mean 15 ms |");
    println!("|---|---:|---:|");
    println!(
        "| (b) sustained rate (closed loop, {IN_FLIGHT} in flight) | {:.0} packets/s | {:.0} packets/s |",
        zero_run.rate(),
        poisson_run.rate()
    );
    println!(
        "| node CPU per packet (all its threads) | {:.1} µs | {:.1} µs |",
        micros(zero_run.cpu_per_packet()),
        micros(poisson_run.cpu_per_packet())
    );
    println!(
        "| (a) node CPU per packet / single-core Umbra hop ({:.1} µs) | **{:.2}** | **{:.2}** |",
        micros(hop),
        ratio(&zero_run, hop),
        ratio(&poisson_run, hop)
    );
    println!(
        "| node CPU per packet / batched Umbra hop ({:.1} µs) | {:.2} | {:.2} |",
        micros(hop_batched),
        ratio(&zero_run, hop_batched),
        ratio(&poisson_run, hop_batched)
    );
    println!(
        "| CPU cores the node kept busy | {:.2} | {:.2} |",
        cores(&zero_run),
        cores(&poisson_run)
    );
    println!(
        "\nBaselines, same run, one core: Umbra forward hop {:.1} µs ({:.0}/s), batched {:.1} µs ({:.0}/s); sphinx-packet 0.8.0 {:.1} µs ({:.0}/s).",
        micros(hop),
        1.0 / hop.as_secs_f64(),
        micros(hop_batched),
        1.0 / hop_batched.as_secs_f64(),
        micros(nym_hop),
        1.0 / nym_hop.as_secs_f64()
    );
    println!(
        "\n(c) At {rate:.0} packets/s (half the Poisson rate), {} packets, Poisson delays mean 15 ms:\n",
        lateness.len()
    );
    println!("| | p50 | p99 | p99.9 | max |");
    println!("|---|---:|---:|---:|---:|");
    let bucketed = |histogram: &[(f64, f64)]| {
        format!(
            "≤ {} | ≤ {} | ≤ {} | |",
            bucket_quantile(histogram, 0.5),
            bucket_quantile(histogram, 0.99),
            bucket_quantile(histogram, 0.999)
        )
    };
    println!(
        "| **lateness**: handed to its link − due (node's histogram, bucket bounds) | {}",
        bucketed(&lateness_histogram)
    );
    println!(
        "| processing: frame arrival − scheduling (node's histogram, bucket bounds) | {}",
        bucketed(&processing_histogram)
    );
    println!(
        "| added latency: sink arrival − (sent + delay), both links included | {} | {} | {} | {} |",
        q(&lateness, 0.5),
        q(&lateness, 0.99),
        q(&lateness, 0.999),
        q(&lateness, 1.0)
    );
    net.stop().await;
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Sends every frame, keeping at most `IN_FLIGHT` unanswered; waits for them all.
async fn closed_loop(
    sender: &umbra_net::link::PeerLink,
    load: &Load,
    arrivals: &Arrivals,
    index: &Mutex<HashMap<[u8; 32], usize>>,
) -> Run {
    *index.lock().unwrap() = load.index.clone();
    *arrivals.at.lock().unwrap() = vec![None; load.frames.len()];
    let base = arrivals.count.load(Ordering::Relaxed);
    let cpu = node_cpu();
    let started = Instant::now();
    for frame in &load.frames {
        arrivals.window.acquire().await.unwrap().forget();
        sender.send(frame.clone()).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.count.load(Ordering::Relaxed) - base < load.frames.len()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let wall = started.elapsed();
    let packets = arrivals.count.load(Ordering::Relaxed) - base;
    Run {
        packets,
        wall,
        cpu: node_cpu() - cpu,
    }
}

/// Sends at `rate` with Poisson arrivals; returns each packet's lateness at the sink.
async fn open_loop(
    sender: &umbra_net::link::PeerLink,
    load: &Load,
    rate: f64,
    arrivals: &Arrivals,
    index: &Mutex<HashMap<[u8; 32], usize>>,
) -> Vec<Duration> {
    *index.lock().unwrap() = load.index.clone();
    *arrivals.at.lock().unwrap() = vec![None; load.frames.len()];
    arrivals.window.add_permits(1 << 20); // open loop: the window does not hold anything back
    let mut rng = rand::rng();
    let mut due = Instant::now();
    let mut sent = Vec::with_capacity(load.frames.len());
    for frame in &load.frames {
        due += exponential(&mut rng, Duration::from_secs_f64(1.0 / rate));
        let now = Instant::now();
        if due > now + Duration::from_millis(1) {
            tokio::time::sleep(due - now).await;
        }
        sent.push(Instant::now());
        sender.try_send(frame.clone()).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at = arrivals.at.lock().unwrap();
    let mut lateness: Vec<Duration> = at
        .iter()
        .zip(&sent)
        .zip(&load.delays)
        .filter_map(|((arrived, sent), delay)| {
            Some(arrived.as_ref()?.saturating_duration_since(*sent + *delay))
        })
        .collect();
    lateness.sort();
    lateness
}

fn q(sorted: &[Duration], quantile: f64) -> String {
    if sorted.is_empty() {
        return "–".into();
    }
    let i = ((sorted.len() as f64 * quantile).ceil() as usize).clamp(1, sorted.len()) - 1;
    format!("{:.0} µs", micros(sorted[i]))
}

/// Per-bucket counts of the node's lateness histogram between two scrapes.
fn histogram_delta(before: &str, after: &str, name: &str) -> Vec<(f64, f64)> {
    umbra_mixnode::Histogram::BOUNDS
        .iter()
        .map(|bound| {
            let series = format!("{name}_bucket{{le=\"{bound}\"}}");
            (
                *bound,
                sample(after, &series).unwrap_or(0.0) - sample(before, &series).unwrap_or(0.0),
            )
        })
        .collect()
}

fn bucket_quantile(cumulative: &[(f64, f64)], quantile: f64) -> String {
    let total = cumulative.last().map_or(0.0, |(_, n)| *n);
    match cumulative.iter().find(|(_, n)| *n >= total * quantile) {
        Some((bound, _)) => format!("{:.0} µs", bound * 1e6),
        None => "> 10 s".into(),
    }
}
