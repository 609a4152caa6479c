//! What a simulation runs: the network's shape, the daemons' own settings, the workload.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use umbra_client::{ClientConfig, TrafficPreset};
use umbra_gateway::GatewayConfig;
use umbra_mixnode::{CoverConfig, MixConfig};

use crate::err::SimError;

/// A simulation's settings. Every field has a default; the commented example is
/// `crates/sim/sim.example.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Seeds every random choice: the same seed and settings give the same run.
    pub seed: u64,
    /// Clients.
    pub clients: u32,
    /// Gateways (clients are spread over them evenly).
    pub gateways: u32,
    /// Mix nodes in each of the three layers.
    pub layer_width: u32,
    /// Simulated time to run, after the warm-up.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Simulated time run first and not measured: the pools of the mix nodes fill.
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,
    /// One-way latency of every link.
    #[serde(with = "humantime_serde")]
    pub link_latency: Duration,
    /// Sets `client.traffic` to a named preset (`nym`, `low-latency`, `bulk`) before the
    /// `insecure_*` switches below `[client.traffic]` are applied.
    pub preset: Option<TrafficPreset>,
    /// The clients' settings: the daemon's own `[client]` section.
    pub client: ClientConfig,
    /// The gateways' settings.
    pub gateway: GatewayConfig,
    /// The mix nodes' settings.
    pub mixing: MixConfig,
    /// The mix nodes' own loops (Loopix λ_M); `loop_rate = 0` for none.
    pub mix_cover: CoverConfig,
    /// Messages each client's application sends per second (a Poisson stream), each to a
    /// client chosen uniformly among the others.
    pub messages_per_second: f64,
    /// Bytes of each message (one packet carries up to about 2 KB).
    pub message_size: usize,
    /// A download for the flow-correlation attack: client 0 is an exit that sends one other
    /// client (the target, drawn from the seed) a stream of messages; none if not set.
    pub download: Option<DownloadConfig>,
    /// With a download: how many runs (seeds `seed`, `seed + 1`, …) the flow-correlation
    /// attack is tried on, for its accuracy (docs/anonymity.md). 0: none.
    pub attack_trials: u32,
    /// Share of the mix nodes the adversary controls (0 to 1): that many nodes of each layer,
    /// rounded to the nearest, drawn from the seed. It sees which packet a corrupt node's
    /// output was.
    pub corrupt_fraction: f64,
    /// Simulated time run after the measured run, in which nothing new is scored, so that the
    /// packets scored get through.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Which anonymity metrics to compute (docs/anonymity.md).
    pub metrics: MetricSettings,
    /// Real Sphinx packets, sealing and unwrapping with the nodes' keys, instead of the
    /// simulator's stand-in — about a hundred times slower: to check, on a small network,
    /// that the stand-in changes none of the results.
    pub sphinx: bool,
}

/// Which anonymity metrics a run computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricSettings {
    /// (a) The entropy of each target message over the packets leaving the last layer
    /// (Piotrowska's simulator's figure), and its recipient. Targets: the real packets of
    /// `target_clients`.
    pub targets: bool,
    /// Whose real packets are targets.
    pub target_clients: Vec<u32>,
    /// At most this many targets.
    pub max_targets: usize,
    /// (b) Per real packet delivered, the adversary's distribution over its sender.
    pub senders: bool,
    /// With more clients than this, (b) labels only this many of them, evenly spread (the
    /// probability of the true sender stays exact; the entropy is then an upper bound).
    pub sampled_senders: u32,
    /// (c) ε and δ between clients 0 and 1 (Loopix §4.3).
    pub challenge: bool,
}

impl Default for MetricSettings {
    fn default() -> Self {
        MetricSettings {
            targets: true,
            target_clients: vec![0],
            max_targets: 1000,
            senders: true,
            sampled_senders: 100,
            challenge: true,
        }
    }
}

impl MetricSettings {
    /// No anonymity metric: a run for latency, bandwidth or the attack alone (the fastest).
    pub fn none() -> Self {
        MetricSettings {
            targets: false,
            senders: false,
            challenge: false,
            ..MetricSettings::default()
        }
    }
}

/// A download: the exit (client 0) relays what a server sends it to the target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DownloadConfig {
    /// When the download starts, from the start of the run.
    #[serde(with = "humantime_serde")]
    pub start: Duration,
    /// Messages it carries (each `message_size` bytes).
    pub messages: u32,
    /// Messages the server sends the exit per second, in on-off bursts: `burst` messages at
    /// this rate, then a pause as long as the burst took.
    pub rate: f64,
    /// Messages per burst.
    pub burst: u32,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig {
            start: Duration::from_secs(10),
            messages: 400,
            rate: 40.0,
            burst: 40,
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            clients: 100,
            gateways: 4,
            layer_width: 3,
            duration: Duration::from_secs(60),
            warmup: Duration::from_secs(5),
            link_latency: Duration::from_micros(500),
            preset: None,
            client: ClientConfig::default(),
            gateway: GatewayConfig::default(),
            mixing: MixConfig::default(),
            mix_cover: CoverConfig::default(),
            messages_per_second: 1.0,
            message_size: 1000,
            download: None,
            attack_trials: 0,
            corrupt_fraction: 0.0,
            cooldown: Duration::from_secs(5),
            metrics: MetricSettings::default(),
            sphinx: false,
        }
    }
}

impl SimConfig {
    /// The clients' settings with the preset applied (keeping the `insecure_*` switches).
    pub fn client_config(&self) -> ClientConfig {
        let mut client = self.client.clone();
        if let Some(preset) = self.preset {
            let own = &self.client.traffic;
            client.traffic = TrafficPreset::config(preset);
            client.traffic.insecure_no_cover = own.insecure_no_cover;
            client.traffic.insecure_push_deliveries = own.insecure_push_deliveries;
            client.traffic.insecure_zero_delays = own.insecure_zero_delays;
        }
        client
    }

    /// Checks that the settings can run.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |field: &'static str, why: String| Err(SimError::Config { field, why });
        if self.clients < 2 {
            return bad("clients", format!("{} — give at least 2", self.clients));
        }
        if self.gateways == 0 || self.gateways > self.clients {
            return bad(
                "gateways",
                format!("{} — give 1 to `clients` ({})", self.gateways, self.clients),
            );
        }
        if self.layer_width == 0 {
            return bad("layer_width", "0 — give at least 1".into());
        }
        if !(self.messages_per_second >= 0.0 && self.messages_per_second.is_finite()) {
            return bad(
                "messages_per_second",
                format!("{} — give 0 or more", self.messages_per_second),
            );
        }
        if self.message_size < 16 || self.message_size > 1800 {
            return bad(
                "message_size",
                format!("{} — give 16 to 1800 bytes (one packet)", self.message_size),
            );
        }
        if !(0.0..=1.0).contains(&self.corrupt_fraction) {
            return bad(
                "corrupt_fraction",
                format!("{} — give a share from 0 to 1", self.corrupt_fraction),
            );
        }
        if let Some(&client) = self
            .metrics
            .target_clients
            .iter()
            .find(|&&c| c >= self.clients)
        {
            return bad(
                "metrics.target_clients",
                format!(
                    "client {client} does not exist (clients are 0 to {})",
                    self.clients - 1
                ),
            );
        }
        if let Some(download) = &self.download
            && !(download.rate > 0.0 && download.rate.is_finite() && download.burst > 0)
        {
            return bad(
                "download",
                "give a rate above 0 and a burst of at least 1 message".into(),
            );
        }
        self.client_config()
            .validate()
            .map_err(|error| SimError::Config {
                field: "client",
                why: error.to_string(),
            })?;
        self.mixing.validate().map_err(|error| SimError::Config {
            field: "mixing",
            why: error.to_string(),
        })
    }
}
