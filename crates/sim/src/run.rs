//! One simulation from its settings to its results: the engine's counts, latency and
//! bandwidth, and the anonymity metrics, as one serializable record.

use serde::Serialize;

use crate::config::SimConfig;
use crate::engine::{RunStats, Sim};
use crate::err::SimError;
use crate::metrics::{
    ChallengeConfig, MetricsConfig, MixRef, ReceiversConfig, SendersConfig, Summary, TargetsConfig,
};
use crate::trace::Observer;

/// What a run measured, apart from anonymity.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Performance {
    /// Events the engine processed.
    pub events: u64,
    /// Wall-clock seconds the run took.
    pub wall_seconds: f64,
    /// Events per wall-clock second.
    pub events_per_second: f64,
    /// End-to-end latency of messages sent after the warm-up (seconds): from the sending
    /// application to the receiving one.
    pub latency: Option<Summary>,
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

/// Runs `config` to its end (the measured run, then the cool-down), reporting to `observer`;
/// `progress` is called now and then with the share of simulated time done (0 to 1).
pub fn run(
    config: &SimConfig,
    observer: &mut dyn Observer,
    progress: &mut dyn FnMut(f64),
) -> Result<(Sim, Performance), SimError> {
    let sim = Sim::new(config.clone())?;
    run_sim(sim, observer, progress)
}

/// [`run`] for a network already set up.
pub fn run_sim(
    mut sim: Sim,
    observer: &mut dyn Observer,
    progress: &mut dyn FnMut(f64),
) -> Result<(Sim, Performance), SimError> {
    let started = std::time::Instant::now();
    let config = sim.config().clone();
    let end = (config.warmup + config.duration + config.cooldown).as_secs_f64();
    sim.run_until(end, observer, &mut |now| progress(now / end));
    progress(1.0);
    let performance = Performance::of(&config, sim.stats(), started.elapsed().as_secs_f64());
    Ok((sim, performance))
}

/// The metrics' settings for a run of `sim`: the window scored, the adversary's nodes, what
/// it sees of the gateways' downlinks.
pub fn metrics_config(sim: &Sim) -> MetricsConfig {
    let config = sim.config();
    let settings = &config.metrics;
    let warm_up = config.warmup.as_secs_f64();
    let mut gateway_clients = vec![Vec::new(); config.gateways as usize];
    for client in 0..config.clients {
        if let Some(list) = gateway_clients.get_mut(sim.gateway_of(client) as usize) {
            list.push(client);
        }
    }
    let sampled = if settings.senders && config.clients > settings.sampled_senders {
        let step = f64::from(config.clients) / f64::from(settings.sampled_senders.max(1));
        (0..settings.sampled_senders)
            .map(|i| (f64::from(i) * step) as u32)
            .collect()
    } else {
        Vec::new()
    };
    MetricsConfig {
        warm_up,
        until: Some(warm_up + config.duration.as_secs_f64()),
        corrupt_mixes: sim
            .corrupt_mixes()
            .iter()
            .map(|&(layer, index)| MixRef { layer, index })
            .collect(),
        targets: TargetsConfig {
            enabled: settings.targets,
            clients: settings.target_clients.clone(),
            max: settings.max_targets,
        },
        receivers: ReceiversConfig {
            downlink_shaped: config
                .client_config()
                .traffic
                .downlink_schedule()
                .is_shaped(),
            gateway_clients,
        },
        senders: SendersConfig {
            clients: if settings.senders { config.clients } else { 0 },
            sampled,
        },
        challenge: ChallengeConfig {
            enabled: settings.challenge,
            a: 0,
            b: 1,
        },
        ..MetricsConfig::default()
    }
}
