//! What mix nodes' loop cover (Loopix λ_M) costs at the default rate.
//!
//! (a) The Sphinx work of one loop on one core: building it (four hops) and the four unwraps
//!     along its way (two mix nodes, a gateway, and the sender's own at the end).
//! (b) A network on loopback — three mix nodes, one per layer, and a real gateway, in this
//!     process on their own tokio runtime (`umbra-node-io`) — idle for a while with loop cover
//!     off, then as long with it at the default rate: the CPU time of the nodes' threads
//!     (`/proc/self/task/*/schedstat`) and the frames their links sent, the difference being
//!     the loops' cost. Every loop crosses every other node, so the network's cost divided by
//!     the number of mix nodes is what one node's loops cost the network.
//!
//! Run: `cargo bench -p umbra-node --bench mix_loops` (about 70 seconds).

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
use std::time::{Duration, Instant};

use common::http_get;
use common::loops::{stop, value};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use umbra_mixnode::{CoverConfig, Event, LoopRoutes, MixConfig, MixCore};
use umbra_sphinx::{NodeAddress, PacketSize, PrivateKey, Processed};
use umbra_topology::{Layer, NodeDescriptor, NodeId, NoiseKey, Role, Topology};

const RUN: Duration = Duration::from_secs(30);

fn main() {
    sphinx_work();
    let bench = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
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
    bench.block_on(network(node.handle().clone()));
}

/// (a): loops ordered by a real core over a topology held in memory, built and unwrapped.
fn sphinx_work() {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let mut nodes = Vec::new();
    let mut keys: HashMap<NodeAddress, PrivateKey> = HashMap::new();
    for (i, layer) in [1u8, 2, 3, 0].into_iter().enumerate() {
        let key = PrivateKey::generate(&mut rng);
        let node = NodeDescriptor {
            id: NodeId(i as u32 + 1),
            role: Layer::new(layer).map_or(Role::Gateway, Role::Mix),
            mix_address: format!("10.0.0.{i}:1789").parse().unwrap(),
            sphinx_key: key.public_key(),
            noise_key: NoiseKey([i as u8; 32]),
            client_address: (layer == 0).then(|| "10.0.0.9:9000".parse().unwrap()),
        };
        keys.insert(node.routing_address(), key);
        nodes.push(node);
    }
    let topology = Topology::new(1, nodes).unwrap();
    let me = topology
        .layer(Layer::new(2).unwrap())
        .next()
        .unwrap()
        .clone();
    let t0 = Instant::now();
    let mut core = MixCore::new(&MixConfig::default(), []).with_cover(
        &CoverConfig {
            loop_rate: 1000.0,
            ..CoverConfig::default()
        },
        [2; 32],
    );
    core.set_loop_routes(t0, LoopRoutes::new(&topology, &me));
    let mut orders = Vec::new();
    while orders.len() < 2000 {
        let now = core.poll_timeout().unwrap();
        core.handle_timeout(now);
        while let Some(event) = core.poll_event() {
            if let Event::SendLoop(order) = event {
                orders.push(order);
            }
        }
    }
    let started = Instant::now();
    let packets: Vec<_> = orders.iter().map(|o| o.build(&mut rng).unwrap()).collect();
    let build = started.elapsed() / orders.len() as u32;
    let started = Instant::now();
    for (order, mut packet) in orders.iter().zip(packets) {
        assert_eq!(packet.size(), PacketSize::Regular);
        for hop in &order.route {
            match keys[&hop.address].process(packet).unwrap() {
                Processed::Forward { packet: next, .. } => packet = next,
                Processed::Final { .. } => break,
            }
        }
    }
    let unwraps = started.elapsed() / orders.len() as u32;
    println!("(a) Sphinx work per loop, one core (regular packets, 4 hops):");
    println!("    build                     {:>7.1} µs", micros(build));
    println!("    4 unwraps on its way      {:>7.1} µs", micros(unwraps));
    println!(
        "    total                     {:>7.1} µs",
        micros(build + unwraps)
    );
    let rate = CoverConfig::default().loop_rate;
    println!(
        "    at the default {rate}/s: {:.2} ms of CPU per second per node, {:.3} % of a core",
        micros(build + unwraps) * rate / 1000.0,
        micros(build + unwraps) * rate / 1e6 * 100.0
    );
}

/// CPU time of the nodes' threads so far.
fn node_cpu() -> Duration {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("umbra-") {
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

/// Frames sent by all four nodes' links, and loops the mix nodes sent and got back.
async fn counts(net: &common::loops::LoopNet) -> (f64, f64, f64, f64) {
    let mut frames = 0.0;
    let (mut sent, mut returned, mut lost) = (0.0, 0.0, 0.0);
    for http in net.mix_http.iter().chain([&net.gateway_at[2]]) {
        let page = http_get(*http, "/metrics").await.1;
        frames += value(&page, "umbra_link_frames_sent_total");
        sent += value(&page, "umbra_mixnode_loops_sent_total");
        returned += value(&page, "umbra_mixnode_loops_returned_total");
        lost += value(&page, "umbra_mixnode_loops_lost_total");
    }
    (frames, sent, returned, lost)
}

/// (b): the network idle with loop cover off, then with it at the default rate.
async fn network(node_runtime: tokio::runtime::Handle) {
    let mut measured = Vec::new();
    for (name, rate) in [("off", 0.0), ("default", CoverConfig::default().loop_rate)] {
        let cover = CoverConfig {
            loop_rate: rate,
            ..CoverConfig::default()
        };
        let mut net =
            common::loops::start(&format!("bench-{name}"), &cover, Some(&node_runtime)).await;
        // links up, first loops round
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (frames0, sent0, returned0, _) = counts(&net).await;
        let cpu0 = node_cpu();
        let started = Instant::now();
        tokio::time::sleep(RUN).await;
        let cpu = node_cpu() - cpu0;
        let elapsed = started.elapsed().as_secs_f64();
        let (frames, sent, returned, lost) = counts(&net).await;
        measured.push((
            name,
            cpu.as_secs_f64() / elapsed,
            (frames - frames0) / elapsed,
            (sent - sent0) / elapsed,
            (returned - returned0) / elapsed,
            lost,
        ));
        for running in net.mixes.drain(..) {
            stop(running).await;
        }
        if let Some(running) = net.gateway.take() {
            stop(running).await;
        }
        let _ = std::fs::remove_dir_all(&net.root);
    }
    // a regular packet in a frame: 2413 bytes, a 4-byte frame header, Noise's 16-byte tag and
    // 2-byte length (TCP/IP headers aside)
    const WIRE: f64 = 2413.0 + 4.0 + 16.0 + 2.0;
    println!(
        "(b) 3 mix nodes and a gateway on loopback, {} s each:",
        RUN.as_secs()
    );
    println!("    loop cover   CPU (all nodes)   frames/s   loops sent/s   back/s   lost");
    for (name, cpu, frames, sent, back, lost) in &measured {
        println!(
            "    {name:<10}   {:>8.2} % core    {frames:>8.1}   {sent:>12.2}   {back:>6.2}   {lost}",
            cpu * 100.0
        );
    }
    let (_, cpu_off, frames_off, ..) = measured[0];
    let (_, cpu_on, frames_on, ..) = measured[1];
    let per_node_cpu = (cpu_on - cpu_off) / 3.0;
    let per_node_frames = (frames_on - frames_off) / 3.0;
    println!(
        "    one node's loops cost the network {:.2} ms of CPU per second ({:.3} % of a core) and {:.1} frames/s, {:.1} KB/s ({:.0} kbit/s) over all links; {:.1} KB/s of it leave the node itself",
        per_node_cpu * 1000.0,
        per_node_cpu * 100.0,
        per_node_frames,
        per_node_frames * WIRE / 1000.0,
        per_node_frames * WIRE * 8.0 / 1000.0,
        per_node_frames / 4.0 * WIRE / 1000.0,
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
