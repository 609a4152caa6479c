//! The simulator against the real network: the end-to-end latency it gives for the
//! parameters of BENCHMARKS.md's measurement of a whole localnet ("A whole network on
//! loopback", 2026-11-21: Nym's settings, deliveries pushed as they were then, 300 messages:
//! p50 63.8 ms, mean 67.9 ms) agrees with that measurement within its sampling error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::time::Duration;

use umbra_client::TrafficPreset;
use umbra_sim::config::{MetricSettings, SimConfig};
use umbra_sim::engine::Sim;

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
        metrics: MetricSettings {
            targets: false,
            senders: false,
            challenge: false,
            ..MetricSettings::default()
        },
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
