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
