//! The stand-in for Sphinx changes nothing the simulator measures: a network run with real
//! Sphinx packets (built, sealed and unwrapped with the nodes' keys) delivers every message
//! and gives the same latency and entropy, within sampling error, as the stand-in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::time::Duration;

use umbra_sim::config::{MetricSettings, SimConfig};
use umbra_sim::engine::Sim;
use umbra_sim::metrics::{Metrics, MetricsReport, ks_critical, ks_statistic};
use umbra_sim::run;

fn network(sphinx: bool) -> SimConfig {
    SimConfig {
        // different seeds: two independent samples of the same network
        seed: if sphinx { 11 } else { 12 },
        clients: 10,
        gateways: 2,
        layer_width: 2,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(16),
        cooldown: Duration::from_secs(2),
        messages_per_second: 2.0,
        metrics: MetricSettings {
            target_clients: (0..10).collect(),
            senders: false,
            challenge: false,
            ..MetricSettings::default()
        },
        sphinx,
        ..SimConfig::default()
    }
}

fn measure(sphinx: bool) -> (Vec<f64>, MetricsReport, Sim) {
    let sim = Sim::new(network(sphinx)).unwrap();
    let mut metrics = Metrics::new(&run::metrics_config(&sim));
    let (sim, _) = run::run_sim(sim, &mut metrics, &mut |_| {}).unwrap();
    (sim.stats().latencies.clone(), metrics.report(), sim)
}

#[test]
fn real_sphinx_gives_the_same_results_as_the_stand_in() {
    let (real, real_report, real_sim) = measure(true);
    let (stand_in, stand_in_report, _) = measure(false);

    // every message sent with real Sphinx arrived, and nothing was unreadable
    let stats = real_sim.stats();
    assert!(stats.messages_sent > 250, "{}", stats.messages_sent);
    assert_eq!(stats.messages_received, stats.messages_sent);
    for client in 0..10 {
        assert_eq!(real_sim.client_stats(client).unwrap().unreadable, 0);
    }

    // latency: the two-sample KS test at level 0.001 (critical value
    // ≈ 1.95·sqrt((n+m)/(n·m))); messages of one run are nearly independent (they share the
    // pools only through their timing)
    let critical = ks_critical(0.001, real.len(), stand_in.len());
    let d = ks_statistic(&real, &stand_in);
    assert!(
        d < critical,
        "latency distributions differ: D = {d:.3} ≥ {critical:.3}"
    );

    // entropy (a): the means over targets agree within 3.3 standard errors (two-sided 0.001
    // under the normal approximation; over 100 targets a run)
    let real = real_report.targets.unwrap().entropy.unwrap();
    let stand_in = stand_in_report.targets.unwrap().entropy.unwrap();
    assert!(
        real.count > 100 && stand_in.count > 100,
        "{real:?} {stand_in:?}"
    );
    // the standard deviation is bounded by the range over 2 for any distribution
    let sd = |s: &umbra_sim::metrics::Summary| (s.max - s.min) / 2.0;
    let se = (sd(&real).powi(2) / real.count as f64
        + sd(&stand_in).powi(2) / stand_in.count as f64)
        .sqrt();
    assert!(
        (real.mean - stand_in.mean).abs() < 3.3 * se,
        "entropy {:.3} bits with Sphinx, {:.3} with the stand-in (se {se:.3})",
        real.mean,
        stand_in.mean
    );
}
