//! The settings of the monitor's core, with their defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::err::ConfigError;
use crate::evidence::Rules;

/// How the monitor tests the network and judges what it saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Mean time between test routes: the core hands out routes as a Poisson stream of this
    /// mean, which the shell sends as loop packets (default 100 ms: 36,000 routes an hour,
    /// about 18,000 packets per mix node of a 3 × 2 network and 3,600 of a 3 × 10 one).
    #[serde(with = "humantime_serde")]
    pub mean_route_interval: Duration,
    /// A test packet not back this long after it was sent counts as lost (default 20 s: the
    /// mix nodes hold a packet at most 10 s in all, Nym's mean is 15 ms per hop).
    #[serde(with = "humantime_serde")]
    pub loss_deadline: Duration,
    /// How long before an epoch's end its report is due, so that the shell can submit the
    /// scores while the epoch is still current (the ledger takes scores only for the current
    /// epoch). Routes stop `loss_deadline` before that. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub submit_margin: Duration,
    /// The length of the time windows in which the monitor looks for its own faults (nearly
    /// every route failing at once). Default 60 s.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// A window in which at least this share of the routes was lost is the monitor's fault,
    /// not the nodes' (default 0.95). One node dropping everything in a 3 × 2 network loses
    /// half the routes, two in different layers three quarters: neither comes near.
    pub mass_failure_share: f64,
    /// A window with fewer judged routes than this is never called a mass failure (default
    /// 30: with three quarters of routes genuinely lost, 29 or more of 30 fail with
    /// probability 0.002).
    pub mass_failure_min_routes: u32,
    /// The monitor is starved when a timer fires, or a route is sent, later than this after
    /// it was due (default 1 s): routes alive then are not judged.
    #[serde(with = "humantime_serde")]
    pub max_lateness: Duration,
    /// The confidence of each score's interval (default 0.95).
    pub confidence: f64,
    /// A node with fewer judged packets than this in an epoch gets no score (default 100):
    /// the ledger keeps its previous one.
    pub min_packets: u32,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            mean_route_interval: Duration::from_millis(100),
            loss_deadline: Duration::from_secs(20),
            submit_margin: Duration::from_secs(60),
            window: Duration::from_secs(60),
            mass_failure_share: 0.95,
            mass_failure_min_routes: 30,
            max_lateness: Duration::from_secs(1),
            confidence: 0.95,
            min_packets: 100,
        }
    }
}

impl MonitorConfig {
    /// Checks that the settings can work; an error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, reason: String| Err(ConfigError { field, reason });
        if self.mean_route_interval.is_zero() {
            return bad(
                "mean_route_interval",
                "must be above zero (100ms is the default)".into(),
            );
        }
        if self.loss_deadline.is_zero() {
            return bad(
                "loss_deadline",
                "must be above zero (20s is the default)".into(),
            );
        }
        if self.window.as_millis() == 0 {
            return bad("window", "must be at least 1ms (60s is the default)".into());
        }
        if !(self.mass_failure_share > 0.5 && self.mass_failure_share <= 1.0) {
            return bad(
                "mass_failure_share",
                format!(
                    "{} is not in (0.5, 1]: below that, one bad node would void windows",
                    self.mass_failure_share
                ),
            );
        }
        if !(self.confidence > 0.5 && self.confidence < 1.0) {
            return bad(
                "confidence",
                format!("{} is not in (0.5, 1); 0.95 is usual", self.confidence),
            );
        }
        Ok(())
    }

    /// The judging rules these settings give, as the evidence records them.
    pub fn rules(&self) -> Rules {
        let ppm = |share: f64| (share * 1e6).round() as u32;
        Rules {
            loss_deadline_ms: millis(self.loss_deadline),
            window_ms: millis(self.window).max(1),
            mass_failure_ppm: ppm(self.mass_failure_share),
            mass_failure_min_routes: self.mass_failure_min_routes,
            confidence_ppm: ppm(self.confidence),
            min_packets: self.min_packets,
        }
    }
}

/// A duration in whole milliseconds (saturating).
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_is_the_default() {
        let text = include_str!("../monitor.example.toml");
        let config: MonitorConfig = toml::from_str(text).expect("the example parses");
        assert_eq!(config, MonitorConfig::default());
        config.validate().expect("the defaults are valid");
    }

    #[test]
    fn bad_settings_are_named() {
        let config = MonitorConfig {
            mass_failure_share: 0.4,
            ..MonitorConfig::default()
        };
        let error = config.validate().expect_err("0.4 is refused");
        assert_eq!(error.field, "mass_failure_share");
    }
}
