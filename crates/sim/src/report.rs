//! A simulation's results on disk: `results.json` and the plots.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::attack::Accuracy;
use crate::config::SimConfig;
use crate::engine::Sim;
use crate::err::SimError;
use crate::metrics::{Metrics, MetricsReport};
use crate::plot::{LinePlot, Series};
use crate::run::{self, Performance};
use crate::trials;

/// Everything one simulation measured.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Results {
    /// The settings it ran with.
    pub config: SimConfig,
    /// Latency, bandwidth and the engine's speed.
    pub performance: Performance,
    /// What the adversary is left with (docs/anonymity.md).
    pub anonymity: MetricsReport,
    /// The flow-correlation attack's accuracy over `attack_trials` runs, if asked for.
    pub attack: Option<Accuracy>,
}

/// Runs `config` with the metrics it names, calling `progress` with the share done; the
/// results and the latencies measured (seconds).
pub fn simulate(
    config: &SimConfig,
    progress: &mut dyn FnMut(f64),
) -> Result<(Results, Vec<f64>), SimError> {
    let sim = Sim::new(config.clone())?;
    let mut metrics = Metrics::new(&run::metrics_config(&sim));
    let attack_share = if config.download.is_some() && config.attack_trials > 0 {
        0.5
    } else {
        0.0
    };
    let (sim, performance) = run::run_sim(sim, &mut metrics, &mut |done| {
        progress(done * (1.0 - attack_share))
    })?;
    let attack = if attack_share > 0.0 {
        Some(trials::trials(config, config.attack_trials, &mut |done| {
            progress(1.0 - attack_share + done * attack_share)
        })?)
    } else {
        None
    };
    Ok((
        Results {
            config: config.clone(),
            performance,
            anonymity: metrics.report(),
            attack,
        },
        sim.stats().latencies.clone(),
    ))
}

/// Writes `results.json` and `latency.svg` (the distribution of end-to-end latency) into
/// `dir`; the paths written.
pub fn write(results: &Results, latencies: &[f64], dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let json = serde_json::to_string_pretty(results).map_err(std::io::Error::other)?;
    let path = dir.join("results.json");
    std::fs::write(&path, json)?;
    let plot = LinePlot {
        title: "End-to-end latency of messages".into(),
        x_label: "latency (ms)".into(),
        y_label: "share of messages delivered within".into(),
        log_x: false,
        series: vec![Series {
            name: format!("{} clients", results.config.clients),
            points: cdf(latencies)
                .into_iter()
                .map(|(x, y)| (x * 1e3, y))
                .collect(),
            errors: None,
        }],
    };
    let svg = dir.join("latency.svg");
    std::fs::write(&svg, plot.to_svg())?;
    Ok(vec![path, svg])
}

/// At most 200 points of the empirical distribution function of `values`.
pub fn cdf(values: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let step = n.div_ceil(200).max(1);
    (0..n)
        .step_by(step)
        .chain(n.checked_sub(1))
        .map(|i| (sorted[i], (i + 1) as f64 / n as f64))
        .collect()
}

/// A few lines for a person: what the run measured.
pub fn headline(results: &Results) -> String {
    let p = &results.performance;
    let mut lines = vec![format!(
        "{} clients, {:.0} s simulated in {:.1} s ({:.2} M events/s)",
        results.config.clients,
        results.config.duration.as_secs_f64(),
        p.wall_seconds,
        p.events_per_second / 1e6
    )];
    if let Some(latency) = &p.latency {
        lines.push(format!(
            "latency: median {:.0} ms, p99 {:.0} ms over {} messages; {:.1} KB/s on each client's link",
            latency.median * 1e3,
            latency.p99 * 1e3,
            latency.count,
            p.client_link_bytes_per_second / 1e3
        ));
    }
    let a = &results.anonymity;
    if let Some(entropy) = a.targets.as_ref().and_then(|t| t.entropy.as_ref()) {
        lines.push(format!(
            "entropy of a target message over the last layer's output: {:.2} bits (mean of {})",
            entropy.mean, entropy.count
        ));
    }
    if let Some(senders) = a.senders.as_ref().and_then(|s| s.senders.as_ref()) {
        lines.push(format!(
            "sender of a message: entropy {:.2} bits; the adversary's best guess is right with probability {:.3} (chance {:.3})",
            senders.entropy.mean,
            senders.top_guess_right,
            1.0 / f64::from(results.config.clients)
        ));
    }
    if let Some(challenge) = &a.challenge
        && let Some(epsilon) = challenge.epsilon_mean
    {
        lines.push(format!(
            "ε between two senders: {epsilon:.3} (mean), δ {:.3}",
            challenge.delta
        ));
    }
    if let Some(attack) = &results.attack {
        lines.push(format!(
            "flow correlation: the downloader ranked first in {} of {} runs ({:.2}, 95 % {:.2}–{:.2}; chance {:.2})",
            attack.hits, attack.trials, attack.accuracy, attack.low, attack.high, attack.chance
        ));
    }
    lines.join("\n")
}

/// A real network's latencies, as the end-to-end benchmark records them
/// (`UMBRA_BENCH_SAMPLES=FILE cargo bench -p umbra --bench e2e`) for the simulator's
/// validation to compare with (`tests/data/localnet-latency.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasuredLatencies {
    /// When (UTC, RFC 3339).
    pub measured: String,
    /// The commit measured (`-dirty` if the tree differed from it), if known.
    pub commit: Option<String>,
    /// "CPU model, N cores".
    pub machine: String,
    /// The 1-minute load average at the start.
    pub load_1min: f64,
    /// The traffic preset.
    pub preset: String,
    /// `shaped` or `pushed`.
    pub downlink: String,
    /// The traffic settings measured with (ms).
    pub receive_interval_ms: f64,
    /// Mean time between a client's packets (ms).
    pub mean_send_interval_ms: f64,
    /// Mean delay per mix node (ms).
    pub mean_hop_delay_ms: f64,
    /// Messages measured.
    pub messages: usize,
    /// Each message's latency (ms), in sending order.
    pub latencies_ms: Vec<f64>,
}
