//! One simulation from its settings to its results: the engine's counts, latency and
//! bandwidth, and the anonymity metrics, as one serializable record.

use serde::Serialize;

use crate::config::SimConfig;
use crate::engine::{RunStats, Sim};
use crate::err::SimError;
use crate::trace::Observer;

/// A distribution's summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Values.
    pub count: usize,
    /// Their mean.
    pub mean: f64,
    /// Percentiles 5, 50, 90, 99.
    pub p5: f64,
    /// See `p5`.
    pub p50: f64,
    /// See `p5`.
    pub p90: f64,
    /// See `p5`.
    pub p99: f64,
    /// The largest.
    pub max: f64,
}

impl Summary {
    /// The summary of `values` (any order).
    pub fn of(values: &[f64]) -> Summary {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let Some(&max) = sorted.last() else {
            return Summary::default();
        };
        let at = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
        Summary {
            count: sorted.len(),
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
            p5: at(0.05),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max,
        }
    }
}

/// What a run measured, apart from anonymity.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Performance {
    /// Events the engine processed.
    pub events: u64,
    /// Wall-clock seconds the run took.
    pub wall_seconds: f64,
    /// Events per wall-clock second.
    pub events_per_second: f64,
    /// End-to-end latency of messages sent after the warm-up (seconds): from the sending
    /// application to the receiving one.
    pub latency: Summary,
    /// Messages sent after the warm-up, and the share that arrived by the end.
    pub messages_sent: u64,
    /// See `messages_sent`.
    pub delivered_share: f64,
    /// Bytes per second on one client's link, both directions, on average (the bandwidth
    /// cost of the traffic settings, cover included).
    pub client_link_bytes_per_second: f64,
    /// Packets per second one client sends: real, drop cover, loops.
    pub real_per_client_second: f64,
    /// See `real_per_client_second`.
    pub drop_per_client_second: f64,
    /// See `real_per_client_second`.
    pub loops_per_client_second: f64,
    /// Share of gateway→client frames that carried nothing.
    pub idle_frame_share: f64,
    /// Retransmissions over all clients.
    pub retransmissions: u64,
}

impl Performance {
    /// The summary of a run's counts.
    pub fn of(config: &SimConfig, stats: &RunStats, wall_seconds: f64) -> Performance {
        let total = (config.warmup + config.duration).as_secs_f64();
        let per_client_second = |count: u64| count as f64 / total / f64::from(config.clients);
        Performance {
            events: stats.events,
            wall_seconds,
            events_per_second: stats.events as f64 / wall_seconds.max(1e-9),
            latency: Summary::of(&stats.latencies),
            messages_sent: stats.messages_sent,
            delivered_share: stats.messages_received as f64 / (stats.messages_sent.max(1)) as f64,
            client_link_bytes_per_second: per_client_second(stats.client_link_bytes),
            real_per_client_second: per_client_second(stats.real_packets),
            drop_per_client_second: per_client_second(stats.drop_packets),
            loops_per_client_second: per_client_second(stats.loop_packets),
            idle_frame_share: stats.idle_frames as f64 / (stats.downlink_frames.max(1)) as f64,
            retransmissions: stats.retransmissions,
        }
    }
}

/// Runs `config` to its end, reporting to `observer`; `progress` is called now and then with
/// the share of simulated time done (0 to 1).
pub fn run(
    config: &SimConfig,
    observer: &mut dyn Observer,
    progress: &mut dyn FnMut(f64),
) -> Result<(Sim, Performance), SimError> {
    let started = std::time::Instant::now();
    let mut sim = Sim::new(config.clone())?;
    let end = (config.warmup + config.duration).as_secs_f64();
    sim.run_until(end, observer, &mut |now| progress(now / end));
    progress(1.0);
    let performance = Performance::of(config, sim.stats(), started.elapsed().as_secs_f64());
    Ok((sim, performance))
}
