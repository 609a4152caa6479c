//! A mix node's configuration file, `config.toml` in its data directory.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use umbra_mixnode::{ConfigError, CoverConfig, MixConfig};

use crate::runtime::{HttpConfig, StorageConfig, WorkerConfig};
use umbra_net::NodeError;
use umbra_net::directory::LedgerConfig;
use umbra_net::link::LinkConfig;

/// Everything a mix node can be told. Every field but the addresses has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixnodeConfig {
    /// Where other nodes connect to this one.
    pub listen_address: SocketAddr,
    /// A static topology file, relative to the data directory: for private test networks
    /// without validators (no epochs, no key rotation). Set this or `ledger`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<PathBuf>,
    /// For tests of the network monitor only: the share of the packets this node should
    /// forward that it silently drops instead, each on its own draw, as a faulty or cheating
    /// node would. From 0 (default: none) to 1 (all). Only packets from the network that pass
    /// unwrapping, the replay check and the next-hop check are dropped; the node's own loops
    /// go out as usual. Counted in `umbra_mixnode_packets_dropped_total{reason="insecure_drop"}`;
    /// the node warns at start when it is above 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub insecure_drop_fraction: f64,
    /// Where the ledger is: the validators serving each epoch's topology, and the genesis file
    /// their signatures are checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerConfig>,
    /// The HTTP endpoint.
    #[serde(default)]
    pub http: HttpConfig,
    /// How packets are mixed.
    #[serde(default)]
    pub mixing: MixConfig,
    /// The node's own loops (Loopix λ_M).
    #[serde(default)]
    pub cover: CoverConfig,
    /// How links behave.
    #[serde(default)]
    pub links: LinkConfig,
    /// Sphinx processing threads.
    #[serde(default)]
    pub workers: WorkerConfig,
    /// What is kept on disk.
    #[serde(default)]
    pub storage: StorageConfig,
}

impl MixnodeConfig {
    /// The defaults, listening at the given addresses, with the topology from the ledger.
    pub fn with_ledger(
        listen_address: SocketAddr,
        http_address: SocketAddr,
        ledger: LedgerConfig,
    ) -> Self {
        MixnodeConfig {
            topology: None,
            ledger: Some(ledger),
            ..MixnodeConfig::new(listen_address, http_address)
        }
    }

    /// The defaults, listening at the given addresses, with a static topology file
    /// (`topology.json`; private test networks).
    pub fn new(listen_address: SocketAddr, http_address: SocketAddr) -> Self {
        MixnodeConfig {
            listen_address,
            topology: Some(PathBuf::from(umbra_net::config::TOPOLOGY_FILE)),
            insecure_drop_fraction: 0.0,
            ledger: None,
            http: HttpConfig {
                enabled: true,
                listen_address: http_address,
            },
            mixing: MixConfig::default(),
            cover: CoverConfig::default(),
            links: LinkConfig::default(),
            workers: WorkerConfig::default(),
            storage: StorageConfig::default(),
        }
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<MixnodeConfig, NodeError> {
        crate::runtime::load_config(path, MixnodeConfig::validate)
    }

    fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.insecure_drop_fraction) {
            return Err(ConfigError::new(
                "insecure_drop_fraction",
                format!(
                    "{} is not a share from 0 (drop nothing, the default) to 1 (drop everything)",
                    self.insecure_drop_fraction
                ),
            )
            .to_string());
        }
        self.mixing.validate().map_err(|error| error.to_string())?;
        self.cover
            .validate(self.mixing.max_delay)
            .map_err(|error| error.to_string())?;
        crate::runtime::validate_links_and_workers(&self.links, &self.workers)?;
        umbra_net::config::validate_source(self.topology.as_deref(), self.ledger.as_ref())
            .map_err(|error| error.to_string())
    }

    /// The configuration file `umbra mixnode init` writes: every setting, commented, with
    /// its default.
    pub fn template(
        listen_address: SocketAddr,
        http_address: SocketAddr,
        ledger: Option<&LedgerConfig>,
    ) -> String {
        TEMPLATE
            .replace("{listen_address}", &listen_address.to_string())
            .replace("{source}", &umbra_net::config::source_template(ledger))
            .replace("{http_address}", &http_address.to_string())
            .replace(
                "{runtime}",
                &crate::runtime::template(crate::runtime::TemplateFor::Mixnode),
            )
    }
}

const TEMPLATE: &str = r#"# An Umbra mix node. Written by `umbra mixnode init`; every setting is shown with its
# default. Durations read like "250ms", "10s", "5m", "25h". Paths are relative to this directory.

# Where other nodes connect to this node (Noise over TCP). The node registers on the ledger
# with the address other nodes reach it at (`umbra mixnode register --mix-address`).
listen_address = "{listen_address}"

{source}
[http]
# /metrics (Prometheus text) and /health. Keep it on a private address.
enabled = true
listen_address = "{http_address}"

[mixing]
# The longest a packet is held, whatever delay its sender chose (Nym: 10s).
max_delay = "10s"

[mixing.replay]
# The replay filter of each key rotation remembers every packet's tag, so a replayed packet is
# dropped. It is sized for this many packets per second over this long, wrongly taking a fresh
# packet for a replay at this rate once full. Nym's sizing takes 539 MB per filter; a node
# keeps two (the current and the previous key rotation).
expected_packets_per_second = 2000
retention = "25h"
false_positive_rate = 1e-5

[cover]
# The node's own loops (Loopix λ_M): ordinary Sphinx packets, like clients', that cross the
# other layers and a gateway and come back here. They are cover at every node they cross, and
# the share that does not come back tells whether the network drops this node's packets (an
# attack, or a bad connection). Loops per second, a Poisson stream; 0 sends none. 5 is one
# client's loop rate with Nym's settings: about 12 KB/s sent by this node, and about 5 ms of
# CPU per second and 50 KB/s over all the links of the nodes each loop crosses.
loop_rate = 5.0
# The mean delay each mix node on the way holds a loop: the network's (clients': 15ms).
mean_hop_delay = "15ms"
# A loop not back within this long is lost (a round trip takes well under a second).
loop_deadline = "30s"
# Over the last `loss_window` loops, more than `loss_alarm` of them lost raises the alarm: a
# warning in the log once per window while it lasts, and "degraded" in /health (the node keeps
# serving). It ends when the loss is back to half of that. A healthy network loses a few per
# cent at most; with 200 loops, chance alone crosses 20 % less than once in 10^12 windows.
loss_window = 200
loss_alarm = 0.2

{runtime}"#;

/// A written configuration leaves out a weakening setting that is off.
fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_the_defaults() {
        let listen: SocketAddr = "0.0.0.0:1789".parse().unwrap();
        let http = "127.0.0.1:8000".parse().unwrap();
        let parsed: MixnodeConfig =
            toml::from_str(&MixnodeConfig::template(listen, http, None)).unwrap();
        assert_eq!(parsed, MixnodeConfig::new(listen, http));
        let ledger = LedgerConfig {
            validators: vec!["http://127.0.0.1:7000".parse().unwrap()],
            genesis: "genesis.json".into(),
        };
        let parsed: MixnodeConfig =
            toml::from_str(&MixnodeConfig::template(listen, http, Some(&ledger))).unwrap();
        assert_eq!(
            parsed,
            MixnodeConfig::with_ledger(listen, http, ledger.clone())
        );
        let minimal: MixnodeConfig = toml::from_str(
            "listen_address = \"0.0.0.0:1789\"\n[ledger]\nvalidators = [\"http://127.0.0.1:7000\"]",
        )
        .unwrap();
        assert_eq!(minimal, MixnodeConfig::with_ledger(listen, http, ledger));
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let dir = std::env::temp_dir().join(format!("umbra-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        let cases = [
            ("listen_address = 5", "listen_address"),
            (
                "listen_address = \"0.0.0.0:1\"\n[mixing]\nmax_delay = \"forever\"",
                "max_delay",
            ),
            (
                "listen_address = \"0.0.0.0:1\"\n[links]\nqueue_len = 0",
                "queue_len",
            ),
            (
                "listen_address = \"0.0.0.0:1\"\n[mixing.replay]\nfalse_positive_rate = 2.0",
                "false_positive_rate",
            ),
            (
                "listen_address = \"0.0.0.0:1\"\ncolour = \"blue\"",
                "colour",
            ),
            ("listen_address = \"0.0.0.0:1\"", "[ledger]"),
            (
                "listen_address = \"0.0.0.0:1\"\n[ledger]\nvalidators = []",
                "ledger.validators",
            ),
            (
                "listen_address = \"0.0.0.0:1\"\n[ledger]\nvalidators = [\"https://v:1\"]",
                "plain http",
            ),
            (
                "listen_address = \"0.0.0.0:1\"\n[mixing]\nmax_delay = \"2h\"",
                "over an hour",
            ),
            (
                "listen_address = \"0.0.0.0:1\"\n[cover]\nloop_rate = -1.0",
                "cover.loop_rate",
            ),
            (
                "listen_address = \"0.0.0.0:1\"\n[cover]\nloss_alarm = 1.5",
                "cover.loss_alarm",
            ),
            (
                "listen_address = \"0.0.0.0:1\"\ninsecure_drop_fraction = \"half\"",
                "insecure_drop_fraction",
            ),
        ];
        for (text, expected) in cases {
            std::fs::write(&path, text).unwrap();
            let error = MixnodeConfig::load(&path).unwrap_err().to_string();
            assert!(
                error.contains("config.toml") && error.contains(expected),
                "{error:?} should name {expected:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn insecure_drop_fraction_is_a_share() {
        let dir = std::env::temp_dir().join(format!("umbra-drop-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        let with = |fraction: &str| {
            format!(
                "listen_address = \"0.0.0.0:1\"\ninsecure_drop_fraction = {fraction}\n[ledger]\nvalidators = [\"http://127.0.0.1:7000\"]"
            )
        };
        for refused in ["1.5", "-0.1", "nan", "inf"] {
            std::fs::write(&path, with(refused)).unwrap();
            let error = MixnodeConfig::load(&path).unwrap_err().to_string();
            assert!(
                error.contains("config.toml")
                    && error.contains("insecure_drop_fraction")
                    && error.contains("from 0")
                    && error.contains("to 1"),
                "{refused}: {error:?}"
            );
        }
        for (accepted, fraction) in [("0", 0.0), ("0.25", 0.25), ("1", 1.0)] {
            std::fs::write(&path, with(accepted)).unwrap();
            let config = MixnodeConfig::load(&path).unwrap();
            assert_eq!(config.insecure_drop_fraction, fraction);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
