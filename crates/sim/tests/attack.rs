//! The flow-correlation attack against the real cores: without cover and with deliveries
//! pushed, it finds who downloads; with Nym's cover and shaped downlinks, it does no better
//! than chance.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::time::Duration;

use umbra_client::TrafficPreset;
use umbra_sim::attack::{binomial_at_least, binomial_cdf};
use umbra_sim::config::{DownloadConfig, MetricSettings, SimConfig};

fn network(seed: u64, cover: bool) -> SimConfig {
    let mut config = SimConfig {
        seed,
        clients: 10,
        gateways: 2,
        layer_width: 2,
        warmup: Duration::from_secs(1),
        duration: Duration::from_secs(8),
        cooldown: Duration::from_secs(1),
        preset: Some(TrafficPreset::Nym),
        messages_per_second: 1.0,
        download: Some(DownloadConfig {
            start: Duration::from_secs(2),
            messages: 200,
            rate: 40.0,
            burst: 40,
        }),
        metrics: MetricSettings::none(),
        ..SimConfig::default()
    };
    config.client.traffic.insecure_no_cover = !cover;
    config.client.traffic.insecure_push_deliveries = !cover;
    config
}

#[test]
fn without_cover_the_attack_finds_the_downloader() {
    // 30 trials among 9 candidates (chance 1/9). A working attack is right nearly always; we
    // ask for at least 21 hits, which an attack right 90 % of the time misses with
    // probability P(Bin(30, 0.9) < 21) < 1e-4, and which a guesser reaches with probability
    // P(Bin(30, 1/9) ≥ 21) < 1e-12.
    let trials = 30;
    let need = 21;
    assert!(binomial_cdf(need - 1, trials, 0.9) < 1e-3);
    assert!(binomial_at_least(need, trials, 1.0 / 9.0) < 1e-9);
    let accuracy =
        umbra_sim::trials::trials(&network(100, false), trials as u32, &mut |_| {}).unwrap();
    assert!(
        accuracy.hits >= need,
        "the attack found the downloader {} times in {trials}: {accuracy:?}",
        accuracy.hits
    );
}

#[test]
fn with_cover_and_shaped_downlinks_the_attack_is_chance() {
    // 150 trials among 9 candidates: under chance the hits are Bin(150, 1/9) (mean 16.7).
    // Accept the central region whose tails each hold at most 1/2000 of it, so chance alone
    // fails the test less than once in 1,000 runs.
    let trials = 150u64;
    let p = 1.0 / 9.0;
    let low = (0..=trials)
        .find(|&k| binomial_cdf(k, trials, p) > 0.0005)
        .unwrap();
    let high = (0..=trials)
        .rev()
        .find(|&k| binomial_at_least(k, trials, p) > 0.0005)
        .unwrap();
    let accuracy =
        umbra_sim::trials::trials(&network(1000, true), trials as u32, &mut |_| {}).unwrap();
    assert!(
        (low..=high).contains(&accuracy.hits),
        "with cover the attack was right {} times in {trials}, outside chance's {low}..={high}: {accuracy:?}",
        accuracy.hits
    );
}
