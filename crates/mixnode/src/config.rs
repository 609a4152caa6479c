//! The settings of a mix node's core, with Nym's defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use umbra_hop::{ConfigError, ReplayFilterConfig};

/// How the core mixes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MixConfig {
    /// The longest a packet is held, whatever delay its sender chose (Nym: 10 s). Longer
    /// delays are cut to this.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// The size of each key rotation's replay filter.
    pub replay: ReplayFilterConfig,
}

impl Default for MixConfig {
    fn default() -> Self {
        MixConfig {
            max_delay: Duration::from_secs(10),
            replay: ReplayFilterConfig::default(),
        }
    }
}

impl MixConfig {
    /// Checks that the settings can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_delay > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "mixing.max_delay",
                format!(
                    "{:?} would hold packets for over an hour; Nym uses 10s",
                    self.max_delay
                ),
            ));
        }
        self.replay.dimensions().map(|_| ())
    }
}

/// The loops a mix node sends through the network and back to itself (Loopix λ_M).
///
/// Each loop is an ordinary regular-size Sphinx packet with the usual exponential per-hop
/// delays, so no other hop can tell it from a client's. It leaves the node, crosses the other
/// two layers and a gateway, and comes back: the loops a node sends add cover at every node
/// they cross (Loopix, Theorem 2), and the share that does not come back measures how the
/// network treats this node. A node whose loops vanish is under attack (an (n−1) attack
/// holds or drops what it sends) or badly connected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoverConfig {
    /// Loops per second, sent as a Poisson stream (λ_M); 0 sends none.
    ///
    /// Default 5: a loop every 200 ms on average, the loop rate of one client with Nym's
    /// settings. Each loop costs the network one Sphinx packet built and four hops (two
    /// unwraps at other mix nodes, one at a gateway, and this node's own at the end) — a
    /// tenth of one idle client's packets. Measured (BENCHMARKS.md): about 5 ms of CPU per
    /// second and 50 KB/s over all links per node (12 KB/s leave the node itself), so a
    /// 9-node localnet on 2 cores spends about 2 % of its CPU on it. At 5/s the alarm's window
    /// of 200 loops spans 40 s, so an attack shows within about a minute. (Loopix's mixing
    /// bound improves with λ_M relative to the hop rate 1/15 ms ≈ 67/s; rates near that would
    /// cost ten times as much and are left to networks with idle capacity.)
    pub loop_rate: f64,
    /// The mean delay each mix node on the way holds a loop (exponential; Nym's clients:
    /// 15 ms). It should be the network's own, so that loops look like everyone's packets.
    #[serde(with = "humantime_serde")]
    pub mean_hop_delay: Duration,
    /// A loop not back within this long is counted lost. Its expected round trip is three
    /// hop delays and four links (well under a second); the default of 30 s leaves room for
    /// a busy node or a link reconnecting without counting a slow loop as lost.
    #[serde(with = "humantime_serde")]
    pub loop_deadline: Duration,
    /// The recent loss is measured over this many loops (returned or lost).
    pub loss_window: usize,
    /// When more than this share of the last `loss_window` loops was lost, the node warns
    /// (once per window while it lasts) and `/health` says so; the warning ends when the
    /// share is back to half of it. Default 0.2 over 200 loops: with a healthy network's
    /// occasional losses of up to 5 %, chance crosses it less than once in 10¹² windows
    /// (Chernoff: e^(−200·D(0.2‖0.05)) ≈ 7·10⁻¹³); an attacker dropping a third of the node's
    /// packets crosses it within one window.
    pub loss_alarm: f64,
}

impl Default for CoverConfig {
    fn default() -> Self {
        CoverConfig {
            loop_rate: 5.0,
            mean_hop_delay: Duration::from_millis(15),
            loop_deadline: Duration::from_secs(30),
            loss_window: 200,
            loss_alarm: 0.2,
        }
    }
}

impl CoverConfig {
    /// The most loops per second a node may send.
    pub const MAX_RATE: f64 = 1000.0;

    /// Checks that the settings can work, given that mix nodes cut delays to `max_delay`.
    pub fn validate(&self, max_delay: Duration) -> Result<(), ConfigError> {
        if !(0.0..=Self::MAX_RATE).contains(&self.loop_rate) {
            return Err(ConfigError::new(
                "cover.loop_rate",
                format!(
                    "{} is not a rate from 0 (no loops) to {} loops per second",
                    self.loop_rate,
                    Self::MAX_RATE
                ),
            ));
        }
        if self.mean_hop_delay > max_delay {
            return Err(ConfigError::new(
                "cover.mean_hop_delay",
                format!(
                    "{:?} is above mixing.max_delay ({max_delay:?}): most delays would be cut",
                    self.mean_hop_delay
                ),
            ));
        }
        if self.loop_deadline.is_zero() || self.loop_deadline > Duration::from_secs(600) {
            return Err(ConfigError::new(
                "cover.loop_deadline",
                format!(
                    "{:?} is not between 0 and 10 minutes; the default is 30s",
                    self.loop_deadline
                ),
            ));
        }
        if !(10..=100_000).contains(&self.loss_window) {
            return Err(ConfigError::new(
                "cover.loss_window",
                format!(
                    "{} loops is not from 10 to 100000; too few make the loss noise",
                    self.loss_window
                ),
            ));
        }
        if !(self.loss_alarm > 0.0 && self.loss_alarm < 1.0) {
            return Err(ConfigError::new(
                "cover.loss_alarm",
                format!("{} is not a share between 0 and 1", self.loss_alarm),
            ));
        }
        Ok(())
    }
}
