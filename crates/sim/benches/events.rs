//! How fast the simulator runs the real cores: events (arrivals at nodes, wake-ups of cores)
//! per second of wall-clock time, one thread.
//!
//! `cargo bench -p umbra-sim --bench events`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use umbra_sim::config::SimConfig;
use umbra_sim::engine::Sim;

fn config(clients: u32, sphinx: bool) -> SimConfig {
    SimConfig {
        clients,
        gateways: 4,
        layer_width: 3,
        duration: Duration::from_secs(5),
        warmup: Duration::ZERO,
        sphinx,
        ..SimConfig::default()
    }
}

/// One run of `clients` clients for `seconds` of simulated time, as a benchmark with its
/// events as the throughput (runs repeat from their seed, so every iteration has as many).
fn bench(c: &mut Criterion, name: &str, clients: u32, seconds: f64, sphinx: bool) {
    let run = || {
        let mut sim = Sim::new(config(clients, sphinx)).unwrap();
        sim.run_until(seconds, &mut (), &mut |_| {});
        sim.stats().events
    };
    let events = run();
    let mut group = c.benchmark_group("sim");
    group.throughput(Throughput::Elements(events));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function(name, |b| b.iter(|| black_box(run())));
    group.finish();
}

fn events(c: &mut Criterion) {
    // side by side: the stand-in, and real Sphinx on the same network (fewer clients and
    // seconds: it is that much slower)
    bench(c, "stand-in, 100 clients, 5 s (nym)", 100, 5.0, false);
    bench(c, "stand-in, 20 clients, 2 s (nym)", 20, 2.0, false);
    bench(c, "real Sphinx, 20 clients, 2 s (nym)", 20, 2.0, true);
}

criterion_group!(benches, events);
criterion_main!(benches);
