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

fn config() -> SimConfig {
    SimConfig {
        clients: 100,
        gateways: 4,
        layer_width: 3,
        duration: Duration::from_secs(5),
        warmup: Duration::ZERO,
        ..SimConfig::default()
    }
}

fn events(c: &mut Criterion) {
    // the number of events of one run, for the throughput (runs repeat from their seed)
    let mut probe = Sim::new(config()).unwrap();
    probe.run_until(5.0, &mut (), &mut |_| {});
    let events = probe.stats().events;
    let mut group = c.benchmark_group("sim");
    group.throughput(Throughput::Elements(events));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("100 clients, 5 s simulated (nym)", |b| {
        b.iter(|| {
            let mut sim = Sim::new(config()).unwrap();
            sim.run_until(5.0, &mut (), &mut |_| {});
            black_box(sim.stats().events)
        })
    });
    group.finish();
}

criterion_group!(benches, events);
criterion_main!(benches);
