//! The simulator against the real network: the end-to-end latency it gives for the
//! parameters of BENCHMARKS.md's measurements of a whole localnet of processes ("A whole
//! network on loopback") agrees with them within their sampling error.
//!
//! * Today's default, shaped downlinks: the whole distribution, against the raw samples in
//!   `tests/data/localnet-latency.json` (written by `UMBRA_BENCH_SAMPLES=… cargo bench -p
//!   umbra --bench e2e`; its header says how to rerun it), by a two-sample
//!   Kolmogorov–Smirnov test.
//! * The first measurement (2026-11-21: deliveries pushed, as they were then, 300 messages:
//!   p50 63.8 ms, mean 67.9 ms), of which only the summary was kept: its mean and median.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::time::Duration;

use umbra_client::TrafficPreset;
use umbra_sim::config::{MetricSettings, SimConfig};
use umbra_sim::engine::Sim;
use umbra_sim::metrics::{Summary, ks_critical, ks_statistic};
use umbra_sim::report::MeasuredLatencies;

/// What BENCHMARKS.md measured: 300 messages, their median and mean (ms).
const MEASURED_COUNT: f64 = 300.0;
const MEASURED_P50: f64 = 63.8;
const MEASURED_MEAN: f64 = 67.9;

#[test]
fn latency_matches_the_measured_localnet() {
    let mut config = SimConfig {
        seed: 5,
        // localnet's shape: 3 layers of 3, 2 gateways
        clients: 20,
        gateways: 2,
        layer_width: 3,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(60),
        cooldown: Duration::from_secs(2),
        // the measured network added 0.28 ms per node (same section): one link's latency here
        link_latency: Duration::from_micros(280),
        preset: Some(TrafficPreset::Nym),
        messages_per_second: 1.0,
        metrics: MetricSettings::none(),
        ..SimConfig::default()
    };
    config.client.traffic.insecure_push_deliveries = true;
    let mut sim = Sim::new(config).unwrap();
    sim.run_until(64.0, &mut (), &mut |_| {});
    let mut latencies: Vec<f64> = sim.stats().latencies.iter().map(|s| s * 1e3).collect();
    latencies.sort_by(f64::total_cmp);
    let n = latencies.len() as f64;
    assert!(n > 1000.0, "{n} messages");
    let mean = latencies.iter().sum::<f64>() / n;
    let sd = (latencies.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let quantile = |p: f64| latencies[((n - 1.0) * p).round() as usize];
    eprintln!(
        "simulated: mean {mean:.1} ms, p50 {:.1} ms, p99 {:.1} ms, sd {sd:.1} ms over {n} messages",
        quantile(0.5),
        quantile(0.99)
    );
    // the mean: the measured one's standard error (sd/√300) and the simulated one's, 3.3 of
    // them together (two-sided 0.001 under the normal approximation, fine at these counts)
    let se = (sd * sd / MEASURED_COUNT + sd * sd / n).sqrt();
    assert!(
        (mean - MEASURED_MEAN).abs() < 3.3 * se,
        "simulated mean {mean:.1} ms, measured {MEASURED_MEAN} ms (se {se:.1} ms)"
    );
    // the median: among 300 samples its rank lies within 150 ± 3.3·√300/2 (99.9 %), so the
    // measured median lies between the simulated quantiles at those ranks' shares
    let spread = 3.3 * MEASURED_COUNT.sqrt() / 2.0 / MEASURED_COUNT;
    let (low, high) = (quantile(0.5 - spread - 0.01), quantile(0.5 + spread + 0.01));
    assert!(
        (low..=high).contains(&MEASURED_P50),
        "measured median {MEASURED_P50} ms outside the simulated {low:.1}–{high:.1} ms"
    );
}

/// The test's level: if the real network and the simulator had the same latency
/// distribution, a fresh measurement would fail this test less than once in a thousand.
const LEVEL: f64 = 0.001;

#[test]
fn latency_distribution_matches_the_measured_localnet_with_shaped_downlinks() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/localnet-latency.json"
    );
    let measured: MeasuredLatencies =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let config = SimConfig {
        seed: 7,
        // localnet's shape: 3 layers of 3, 2 gateways; more clients than the benchmark's two
        // change no latency here (simulated nodes take no time per packet, and each client's
        // downlink is its own) and give more messages per simulated second
        clients: 20,
        gateways: 2,
        layer_width: 3,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(180),
        cooldown: Duration::from_secs(2),
        // the measured network added 0.28 ms per node (BENCHMARKS.md): one link's latency here
        link_latency: Duration::from_micros(280),
        // Nym's settings, downlinks shaped (the default: a frame every receive_interval)
        preset: Some(TrafficPreset::Nym),
        messages_per_second: 1.0,
        // the benchmark's messages ("latency 17") are as small; one packet either way
        message_size: 16,
        metrics: MetricSettings::none(),
        ..SimConfig::default()
    };
    // the measurement was of these settings
    let traffic = config.client_config().traffic;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    assert_eq!(
        (measured.preset.as_str(), measured.downlink.as_str()),
        ("nym", "shaped")
    );
    assert!(!traffic.insecure_push_deliveries);
    assert_eq!(measured.receive_interval_ms, ms(traffic.receive_interval));
    assert_eq!(
        measured.mean_send_interval_ms,
        ms(traffic.mean_send_interval)
    );
    assert_eq!(measured.mean_hop_delay_ms, ms(traffic.mean_hop_delay));

    let mut sim = Sim::new(config).unwrap();
    sim.run_until(184.0, &mut (), &mut |_| {});
    let simulated: Vec<f64> = sim.stats().latencies.iter().map(|s| s * 1e3).collect();
    assert!(simulated.len() >= 3000, "{} messages", simulated.len());
    assert_eq!(sim.stats().messages_received, sim.stats().messages_sent);

    let real = Summary::of(&measured.latencies_ms).unwrap();
    let model = Summary::of(&simulated).unwrap();
    eprintln!(
        "localnet measured {} ({}, load {:.2}, commit {}):",
        measured.measured,
        measured.machine,
        measured.load_1min,
        measured.commit.as_deref().unwrap_or("unknown"),
    );
    for (name, s) in [("measured", &real), ("simulated", &model)] {
        eprintln!(
            "  {name:>9}: {:>5} messages, mean {:6.1} ms, p50 {:6.1} ms, p90 {:6.1} ms, p99 {:6.1} ms",
            s.count, s.mean, s.median, s.p90, s.p99
        );
    }
    // Two-sample Kolmogorov–Smirnov at LEVEL. The simulation is seeded and the data are a
    // fixed file, so this test is deterministic and cannot flake; the level speaks of the
    // measurement: a fresh one of a network whose distribution were the simulator's would
    // fail it less than once in a thousand. Messages are close to independent (the benchmark
    // sends one at a time, at random; the simulated ones share the pools only through their
    // timing).
    let d = ks_statistic(&measured.latencies_ms, &simulated);
    let critical = ks_critical(LEVEL, real.count, model.count);
    eprintln!("  KS: D = {d:.4}, critical value at {LEVEL}: {critical:.4}");
    assert!(
        d < critical,
        "the simulated latency distribution differs from the measured one: D = {d:.4} ≥ {critical:.4}"
    );
}
