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
