//! A gateway's configuration file, `config.toml` in its data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use umbra_gateway::GatewayConfig as ClientPolicy;
use umbra_hop::ReplayFilterConfig;

use crate::runtime::{HttpConfig, StorageConfig, WorkerConfig};
use umbra_net::NodeError;
use umbra_net::directory::LedgerConfig;
use umbra_net::link::LinkConfig;

/// Everything a gateway can be told. Every field but the addresses has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayNodeConfig {
    /// Where mix nodes connect to this gateway (Noise over TCP).
    pub listen_address: SocketAddr,
    /// Where clients connect (WebSocket, Noise inside).
    pub client_listen_address: SocketAddr,
    /// A static topology file, relative to the data directory: for private test networks
    /// without validators (no epochs, no key rotation). Set this or `ledger`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<PathBuf>,
    /// Where the ledger is: the validators serving each epoch's topology, and the genesis file
    /// their signatures are checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerConfig>,
    /// The HTTP endpoint.
    #[serde(default)]
    pub http: HttpConfig,
    /// How clients are treated: allowance, inbox limits and expiry.
    #[serde(default)]
    pub clients: ClientPolicy,
    /// Client sessions.
    #[serde(default)]
    pub sessions: SessionConfig,
    /// The replay filter of packets ending here.
    #[serde(default)]
    pub replay: ReplayFilterConfig,
    /// Links to mix nodes.
    #[serde(default)]
    pub links: LinkConfig,
    /// Sphinx processing threads.
    #[serde(default)]
    pub workers: WorkerConfig,
    /// What is kept on disk.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Bandwidth tickets (when the ledger's genesis demands them).
    #[serde(default)]
    pub tickets: TicketConfig,
}

/// Bandwidth tickets: how the gateway claims payment for those its clients spent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TicketConfig {
    /// How often spent tickets are redeemed on the ledger (at once when 256 wait).
    #[serde(with = "humantime_serde")]
    pub redeem_interval: Duration,
}

impl Default for TicketConfig {
    fn default() -> Self {
        TicketConfig {
            redeem_interval: Duration::from_secs(600),
        }
    }
}

/// Client sessions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// How long the WebSocket and Noise handshakes may take.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Sessions open at once, at most.
    pub max_sessions: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            handshake_timeout: Duration::from_secs(10),
            max_sessions: 10_000,
        }
    }
}

impl GatewayNodeConfig {
    /// The defaults, listening at the given addresses, with the topology from the ledger.
    pub fn with_ledger(
        listen_address: SocketAddr,
        client_listen_address: SocketAddr,
        http_address: SocketAddr,
        ledger: LedgerConfig,
    ) -> Self {
        GatewayNodeConfig {
            topology: None,
            ledger: Some(ledger),
            ..GatewayNodeConfig::new(listen_address, client_listen_address, http_address)
        }
    }

    /// The defaults, listening at the given addresses, with a static topology file
    /// (`topology.json`; private test networks).
    pub fn new(
        listen_address: SocketAddr,
        client_listen_address: SocketAddr,
        http_address: SocketAddr,
    ) -> Self {
        GatewayNodeConfig {
            listen_address,
            client_listen_address,
            topology: Some(PathBuf::from(umbra_net::config::TOPOLOGY_FILE)),
            ledger: None,
            http: HttpConfig {
                enabled: true,
                listen_address: http_address,
            },
            clients: ClientPolicy::default(),
            sessions: SessionConfig::default(),
            replay: ReplayFilterConfig::default(),
            links: LinkConfig::default(),
            workers: WorkerConfig::default(),
            storage: StorageConfig::default(),
            tickets: TicketConfig::default(),
        }
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<GatewayNodeConfig, NodeError> {
        crate::runtime::load_config(path, GatewayNodeConfig::validate)
    }

    fn validate(&self) -> Result<(), String> {
        self.replay
            .dimensions()
            .map_err(|error| error.to_string())?;
        crate::runtime::validate_links_and_workers(&self.links, &self.workers)?;
        let clients = &self.clients;
        if clients.max_clients == 0 || clients.max_pending_stores == 0 {
            return Err("settings `clients.max_clients` and `clients.max_pending_stores`: must be at least 1".into());
        }
        if self.tickets.redeem_interval < Duration::from_secs(1) {
            return Err("setting `tickets.redeem_interval`: at least 1s (redeeming is a ledger transaction)".into());
        }
        if clients.max_unconfirmed == 0 {
            return Err("setting `clients.max_unconfirmed`: must be at least 1".into());
        }
        if clients.min_frame_interval.is_zero()
            || clients.min_frame_interval > clients.max_frame_interval
        {
            return Err("settings `clients.min_frame_interval` and `clients.max_frame_interval`: the minimum must be above zero and not above the maximum (defaults 1ms and 10s)".into());
        }
        if clients.inbox_max_messages == 0 || clients.inbox_max_bytes == 0 {
            return Err("settings `clients.inbox_max_messages` and `clients.inbox_max_bytes`: must be above 0 (a client that is away could receive nothing)".into());
        }
        if clients.daily_allowance == Some(0) {
            return Err("setting `clients.daily_allowance`: 0 lets no client send; remove the setting for no limit".into());
        }
        if self.sessions.max_sessions == 0 {
            return Err("setting `sessions.max_sessions`: must be at least 1".into());
        }
        umbra_net::config::validate_source(self.topology.as_deref(), self.ledger.as_ref())
            .map_err(|error| error.to_string())
    }

    /// The configuration file `umbra gateway init` writes: every setting, commented, with its
    /// default.
    pub fn template(
        listen_address: SocketAddr,
        client_listen_address: SocketAddr,
        http_address: SocketAddr,
        ledger: Option<&LedgerConfig>,
    ) -> String {
        TEMPLATE
            .replace("{source}", &umbra_net::config::source_template(ledger))
            .replace("{listen_address}", &listen_address.to_string())
            .replace(
                "{client_listen_address}",
                &client_listen_address.to_string(),
            )
            .replace("{http_address}", &http_address.to_string())
            .replace(
                "{runtime}",
                &crate::runtime::template(crate::runtime::TemplateFor::Gateway),
            )
    }
}

const TEMPLATE: &str = r#"# An Umbra gateway. Written by `umbra gateway init`; every setting is shown with its default.
# Durations read like "250ms", "10s", "5m", "24h". Paths are relative to this directory.

# Where mix nodes connect to this gateway (Noise over TCP). The gateway registers on the
# ledger with the address mix nodes reach it at (`umbra gateway register --mix-address`).
listen_address = "{listen_address}"
# Where clients connect (WebSocket with Noise inside); registered as `--client-address`.
client_listen_address = "{client_listen_address}"

{source}
[http]
# /metrics (Prometheus text) and /health. Keep it on a private address.
enabled = true
listen_address = "{http_address}"

[clients]
# Bytes each client may send into the mixnet per day; over it, its packets are refused and it
# is told why. Leave unset for no limit.
# daily_allowance = 1000000000
# What is kept for a client that is away, at most; beyond it, new messages are not accepted
# (and not acknowledged, so their senders try again later).
inbox_max_messages = 100000
inbox_max_bytes = 268435456
# How long a stored message is kept.
inbox_expiry = "24h"
# Messages waiting for a connected client's frames or sent and not yet confirmed, at most;
# beyond it, new ones are stored as for a client that is away, and sent in their turn.
max_unconfirmed = 1024
# Each client says at the start how often it wants its frames (one size, whether or not
# anything waits, so its link shows nothing of what it receives); a faster or slower request
# is held within these bounds.
min_frame_interval = "1ms"
max_frame_interval = "10s"
# Clients remembered (so what comes for them while they are away is kept), at most: anyone
# can connect with a new key, so beyond it the one seen longest ago with nothing stored is
# forgotten; and one unseen this long with nothing stored is forgotten too.
max_clients = 1000000
forget_clients_after = "30days"
# Deliveries being written to the inbox at once, at most; beyond it, new ones are dropped
# unacknowledged (their senders send them again).
max_pending_stores = 16384

[sessions]
# How long a client's WebSocket and Noise handshakes may take.
handshake_timeout = "10s"
# Client sessions open at once, at most.
max_sessions = 10000

[tickets]
# When the network demands bandwidth tickets (its genesis says so), clients pay with them and
# the gateway claims their price on the ledger, signed with its identity key, in batches:
# this often (and at once when 256 wait). Spent tickets are kept in tickets.redb until then.
redeem_interval = "10m"

[replay]
# The replay filter remembers every packet that ended here, so a replayed one is dropped. It is
# sized for this many packets per second over this long, wrongly taking a fresh packet for a
# replay at this rate once full.
expected_packets_per_second = 2000
retention = "25h"
false_positive_rate = 1e-5

{runtime}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_the_defaults() {
        let (listen, clients, http) = (
            "0.0.0.0:1789".parse().unwrap(),
            "0.0.0.0:9000".parse().unwrap(),
            "127.0.0.1:8000".parse().unwrap(),
        );
        let parsed: GatewayNodeConfig =
            toml::from_str(&GatewayNodeConfig::template(listen, clients, http, None)).unwrap();
        assert_eq!(parsed, GatewayNodeConfig::new(listen, clients, http));
        let ledger = LedgerConfig {
            validators: vec!["http://127.0.0.1:7000".parse().unwrap()],
            genesis: "genesis.json".into(),
        };
        let parsed: GatewayNodeConfig = toml::from_str(&GatewayNodeConfig::template(
            listen,
            clients,
            http,
            Some(&ledger),
        ))
        .unwrap();
        assert_eq!(
            parsed,
            GatewayNodeConfig::with_ledger(listen, clients, http, ledger.clone())
        );
        let minimal: GatewayNodeConfig = toml::from_str(
            "listen_address = \"0.0.0.0:1789\"\nclient_listen_address = \"0.0.0.0:9000\"\n[ledger]\nvalidators = [\"127.0.0.1:7000\"]",
        )
        .unwrap();
        assert_eq!(
            minimal,
            GatewayNodeConfig::with_ledger(listen, clients, http, ledger)
        );
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let dir = std::env::temp_dir().join(format!("umbra-gateway-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        let base = "listen_address = \"0.0.0.0:1\"\nclient_listen_address = \"0.0.0.0:2\"\n";
        let cases = [
            ("listen_address = \"0.0.0.0:1\"", "client_listen_address"),
            ("[clients]\ninbox_expiry = \"soon\"", "inbox_expiry"),
            ("[clients]\nmax_unconfirmed = 0", "max_unconfirmed"),
            ("[clients]\ndaily_allowance = 0", "daily_allowance"),
            (
                "[replay]\nfalse_positive_rate = 2.0",
                "replay.false_positive_rate",
            ),
            ("[links]\nqueue_len = 0", "queue_len"),
            ("[sessions]\nmax_sesions = 5", "max_sesions"),
        ];
        for (text, expected) in cases {
            let text = if text.starts_with("listen") {
                text.to_owned()
            } else {
                format!("{base}{text}")
            };
            std::fs::write(&path, text).unwrap();
            let error = GatewayNodeConfig::load(&path).unwrap_err().to_string();
            assert!(
                error.contains("config.toml") && error.contains(expected),
                "{error:?} should name {expected:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
