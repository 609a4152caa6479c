//! The monitor's `config.toml`: where the ledger is, where the evidence is served, how long it
//! is kept, the core's settings (`[monitor]`) and the traffic of its clients; and `init`,
//! which writes a commented file with every setting at its value.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use umbra_client::ClientConfig;
use umbra_client_daemons::client::ConnectionConfig;
use umbra_http::HttpLimits;
use umbra_ledger::{PublicKey, SigningKey};
use umbra_monitor::MonitorConfig;
use umbra_net::NodeError;
use umbra_net::directory::{LedgerConfig, TrustRoot};
use umbra_net::files::{copy_private, create_private_dir, write_private};
use umbra_net::keys::write_new_key;

/// The configuration file in a data directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The monitor's ledger account key (ed25519 seed): it signs `SubmitPerformance`, and genesis
/// names its public key in `monitors`.
pub const ACCOUNT_KEY_FILE: &str = "account.key";
/// The folder of the monitor's client identities, one folder per gateway (by Noise key).
pub const CLIENTS_DIR: &str = "clients";
/// The folder of kept evidence, one `<epoch>.json` per epoch.
pub const EVIDENCE_DIR: &str = "evidence";

/// Where `/metrics`, `/health` and the evidence are served unless told otherwise.
pub const DEFAULT_HTTP_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8090);

/// Everything a monitor can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorDaemonConfig {
    /// The validators, and the genesis file their topologies are checked against.
    pub ledger: LedgerConfig,
    /// Where `/metrics`, `/health` and the evidence are served.
    #[serde(default)]
    pub http: HttpConfig,
    /// How much evidence is kept.
    #[serde(default)]
    pub evidence: EvidenceConfig,
    /// How the core tests the network and judges (`umbra_monitor::MonitorConfig`).
    #[serde(default)]
    pub monitor: MonitorConfig,
    /// The monitor's clients: their traffic is an ordinary client's, so its test packets
    /// look like any client's loop cover.
    #[serde(default)]
    pub client: ClientConfig,
    /// How its clients reach their gateways.
    #[serde(default)]
    pub connection: ConnectionConfig,
}

/// The HTTP port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// The address.
    pub listen_address: SocketAddr,
    /// Limits on its connections.
    pub limits: HttpLimits,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen_address: DEFAULT_HTTP_ADDRESS,
            limits: HttpLimits::status_port(),
        }
    }
}

/// The evidence kept on disk and served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    /// Epochs whose evidence is kept (the newest); older files are deleted.
    pub keep_epochs: usize,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        // a week of hourly epochs
        EvidenceConfig { keep_epochs: 168 }
    }
}

impl MonitorDaemonConfig {
    /// The defaults, following `ledger`.
    pub fn new(ledger: LedgerConfig) -> MonitorDaemonConfig {
        MonitorDaemonConfig {
            ledger,
            http: HttpConfig::default(),
            evidence: EvidenceConfig::default(),
            monitor: MonitorConfig::default(),
            client: ClientConfig::default(),
            connection: ConnectionConfig::default(),
        }
    }

    /// Reads `path`; an error names the file and the setting.
    pub fn load(path: &Path) -> Result<MonitorDaemonConfig, NodeError> {
        let config: MonitorDaemonConfig = umbra_net::config::read_toml(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks the settings that cannot work; the error names the file and the setting.
    pub fn validate(&self, path: &Path) -> Result<(), NodeError> {
        self.ledger
            .validate()
            .map_err(|problem| NodeError::invalid(path, problem.to_string()))?;
        self.monitor
            .validate()
            .map_err(|error| NodeError::invalid(path, format!("in [monitor]: {error}")))?;
        self.client
            .validate()
            .map_err(|error| NodeError::invalid(path, format!("in [client]: {error}")))?;
        if self.evidence.keep_epochs == 0 {
            return Err(NodeError::invalid(
                path,
                "setting `evidence.keep_epochs`: must be at least 1 (168 is the default): the evidence is what lets anyone check the scores",
            ));
        }
        let limits = &self.http.limits;
        if limits.max_connections == 0
            || limits.header_timeout.is_zero()
            || limits.request_timeout.is_zero()
        {
            return Err(NodeError::invalid(
                path,
                "in [http.limits]: max_connections, header_timeout and request_timeout must be more than zero (defaults 64, \"10s\", \"30s\")",
            ));
        }
        Ok(())
    }
}

/// Core settings that fit epochs of `epoch_length`: loss deadline, report margin and fault
/// windows shrink with the epoch (never above the defaults), so that short test epochs still
/// leave most of each epoch for measuring. For an hour-long epoch they are the defaults.
pub fn monitor_config_for_epoch(epoch_length: Duration) -> MonitorConfig {
    let defaults = MonitorConfig::default();
    let scaled = |fraction: u32, floor: Duration, default: Duration| {
        (epoch_length / fraction).clamp(floor, default.max(floor))
    };
    MonitorConfig {
        // a loop crosses 4 hops of tens of milliseconds: seconds are plenty on one machine
        loss_deadline: scaled(20, Duration::from_secs(2), defaults.loss_deadline),
        // a solo validator commits in a block or two; the attribution of a small network
        // takes milliseconds
        submit_margin: scaled(8, Duration::from_secs(3), defaults.submit_margin),
        window: scaled(6, Duration::from_secs(1), defaults.window),
        ..defaults
    }
}

/// What [`init`] made.
#[derive(Clone, Debug)]
pub struct Initialised {
    /// The account's public key: genesis must name it in `monitors`.
    pub account: PublicKey,
    /// The configuration file written.
    pub config: PathBuf,
}

/// What a new monitor needs.
#[derive(Clone, Debug)]
pub struct InitOptions<'a> {
    /// The validators (and the genesis file's name in the data directory).
    pub ledger: LedgerConfig,
    /// The genesis file to copy into the data directory.
    pub genesis: &'a Path,
    /// Where `/metrics`, `/health` and the evidence are served.
    pub http: SocketAddr,
    /// The core's settings.
    pub monitor: MonitorConfig,
    /// The account key's secret seed, when it exists already (localnet makes it with the
    /// genesis); otherwise a fresh one is made.
    pub account_seed: Option<[u8; 32]>,
}

/// Creates a monitor in `data_dir`: its account key, the genesis file and a commented
/// `config.toml`. Its client identities are made as it meets each gateway.
pub fn init(data_dir: &Path, options: InitOptions<'_>) -> Result<Initialised, NodeError> {
    // a genesis file that cannot be read is refused before anything is written
    TrustRoot::read(options.genesis)?;
    let mut config = MonitorDaemonConfig::new(options.ledger);
    config.http.listen_address = options.http;
    config.monitor = options.monitor;
    let config_path = data_dir.join(CONFIG_FILE);
    config.validate(&config_path)?;
    umbra_net::config::ensure_new(data_dir, &[CONFIG_FILE, ACCOUNT_KEY_FILE])?;
    let key = match options.account_seed {
        Some(seed) => SigningKey::from_seed(seed),
        None => SigningKey::generate(&mut rand::rng()),
    };
    write_new_key(&data_dir.join(ACCOUNT_KEY_FILE), &key.seed())?;
    copy_private(options.genesis, &data_dir.join(&config.ledger.genesis))?;
    create_private_dir(&data_dir.join(CLIENTS_DIR))?;
    create_private_dir(&data_dir.join(EVIDENCE_DIR))?;
    write_private(&config_path, template(&config).as_bytes())?;
    Ok(Initialised {
        account: key.public(),
        config: config_path,
    })
}

/// The commented `config.toml` of `config` (every setting shown at its value).
pub fn template(config: &MonitorDaemonConfig) -> String {
    let duration = |d: Duration| humantime::format_duration(d).to_string();
    let monitor = &config.monitor;
    let traffic = &config.client.traffic;
    let limits = &config.http.limits;
    let connection = &config.connection;
    TEMPLATE
        .replace(
            "{source}",
            &umbra_net::config::source_template(Some(&config.ledger)),
        )
        .replace("{http}", &config.http.listen_address.to_string())
        .replace("{max_connections}", &limits.max_connections.to_string())
        .replace("{header_timeout}", &duration(limits.header_timeout))
        .replace("{request_timeout}", &duration(limits.request_timeout))
        .replace("{keep_epochs}", &config.evidence.keep_epochs.to_string())
        .replace(
            "{mean_route_interval}",
            &duration(monitor.mean_route_interval),
        )
        .replace("{loss_deadline}", &duration(monitor.loss_deadline))
        .replace("{submit_margin}", &duration(monitor.submit_margin))
        .replace("{window}", &duration(monitor.window))
        .replace(
            "{mass_failure_share}",
            &format!("{:?}", monitor.mass_failure_share),
        )
        .replace(
            "{mass_failure_min_routes}",
            &monitor.mass_failure_min_routes.to_string(),
        )
        .replace("{max_lateness}", &duration(monitor.max_lateness))
        .replace("{confidence}", &format!("{:?}", monitor.confidence))
        .replace("{min_packets}", &monitor.min_packets.to_string())
        .replace("{hop}", &duration(traffic.mean_hop_delay))
        .replace("{ack}", &duration(traffic.mean_ack_delay))
        .replace("{send}", &duration(traffic.mean_send_interval))
        .replace("{loop}", &duration(traffic.mean_loop_interval))
        .replace("{receive}", &duration(traffic.receive_interval))
        .replace("{handshake}", &duration(connection.handshake_timeout))
        .replace(
            "{reconnect_initial}",
            &duration(connection.reconnect_initial),
        )
        .replace("{reconnect_max}", &duration(connection.reconnect_max))
}

const TEMPLATE: &str = r#"# An Umbra network monitor. Written by `umbra monitor init`; every setting is shown with its
# value. Durations read like "20ms", "1.5s", "30m". Paths are relative to this directory.
# See docs/monitor.md.
#
# The monitor is a client of every gateway: it sends test packets (ordinary loop packets of
# the regular size, in the slots of a client's stream) over routes through every active node,
# works out each node's reliability at the end of each epoch, submits the scores to the ledger
# signed with account.key (genesis must name its public key in `monitors`), and publishes the
# evidence they were computed from.

{source}
[http]
# /metrics, /health, and the evidence: GET /evidence (the epochs kept, with their hashes)
# and GET /evidence/<epoch> (JSON). The evidence is meant to be public, so that operators
# can recompute their scores; /metrics and /health are served on the same port.
listen_address = "{http}"

[http.limits]
# Connections at once (more are closed as they come), and how long a request's headers and
# the whole request may take.
max_connections = {max_connections}
header_timeout = "{header_timeout}"
request_timeout = "{request_timeout}"

[evidence]
# The evidence of this many epochs (the newest) is kept in evidence/ and served; older
# files are deleted. An hour of routes at the default rate is a few megabytes.
keep_epochs = {keep_epochs}

[monitor]
# Mean time between test routes, handed out as a Poisson stream and sent as loop packets in
# the slots of the clients' real streams (keep it well above client.traffic's
# mean_send_interval divided by the number of gateways).
mean_route_interval = "{mean_route_interval}"
# A test packet not back this long after it was sent counts as lost.
loss_deadline = "{loss_deadline}"
# The report is due this long before the epoch ends, so the scores reach the ledger while the
# epoch is current. loss_deadline + submit_margin must be well under the epoch's length.
submit_margin = "{submit_margin}"
# Windows in which the monitor looks for its own faults (nearly every route failing at once).
window = "{window}"
# A window in which at least this share of routes was lost is the monitor's fault...
mass_failure_share = {mass_failure_share}
# ...unless it judged fewer routes than this.
mass_failure_min_routes = {mass_failure_min_routes}
# A timer or a send this late means the monitor was starved: what was in flight is not judged.
max_lateness = "{max_lateness}"
# The confidence of each score's interval.
confidence = {confidence}
# Nodes with fewer judged packets than this in an epoch get no score (the ledger keeps their
# previous one).
min_packets = {min_packets}

[client.traffic]
# The monitor's clients send like any client (`umbra client init` explains each setting), so
# that a node cannot tell a test packet from a client's. Other [client] settings take the
# client's defaults.
mean_hop_delay = "{hop}"
mean_ack_delay = "{ack}"
mean_send_interval = "{send}"
mean_loop_interval = "{loop}"
receive_interval = "{receive}"

[connection]
# How long the WebSocket and Noise handshakes with a gateway may take; after a failed
# connection, wait this long, doubling per failure up to the maximum.
handshake_timeout = "{handshake}"
reconnect_initial = "{reconnect_initial}"
reconnect_max = "{reconnect_max}"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> LedgerConfig {
        LedgerConfig {
            validators: vec!["http://127.0.0.1:7000".parse().unwrap()],
            genesis: "genesis.json".into(),
        }
    }

    #[test]
    fn the_template_is_the_defaults() {
        let defaults = MonitorDaemonConfig::new(ledger());
        let parsed: MonitorDaemonConfig = toml::from_str(&template(&defaults)).unwrap();
        assert_eq!(parsed, defaults);
        // and the least a file can say is the same
        let minimal: MonitorDaemonConfig =
            toml::from_str("[ledger]\nvalidators = [\"127.0.0.1:7000\"]\n").unwrap();
        assert_eq!(minimal, defaults);
        defaults.validate(Path::new("config.toml")).unwrap();
    }

    #[test]
    fn the_template_keeps_other_values_too() {
        let mut config = MonitorDaemonConfig::new(ledger());
        config.monitor = monitor_config_for_epoch(Duration::from_secs(20));
        config.monitor.mass_failure_share = 1.0;
        config.monitor.mean_route_interval = Duration::from_millis(1500);
        config.http.listen_address = "0.0.0.0:9999".parse().unwrap();
        config.evidence.keep_epochs = 3;
        let parsed: MonitorDaemonConfig = toml::from_str(&template(&config)).unwrap();
        assert_eq!(parsed, config);
    }

    #[test]
    fn settings_scale_with_short_epochs_and_are_the_defaults_for_long_ones() {
        assert_eq!(
            monitor_config_for_epoch(Duration::from_secs(3600)),
            MonitorConfig::default()
        );
        for seconds in [15, 20, 30, 60, 600] {
            let epoch = Duration::from_secs(seconds);
            let config = monitor_config_for_epoch(epoch);
            config.validate().unwrap();
            // at least half of each epoch is left for measuring
            assert!(
                (config.loss_deadline + config.submit_margin) * 2 <= epoch,
                "{seconds} s: {config:?}"
            );
        }
    }

    #[test]
    fn bad_settings_are_named() {
        let refused = |text: &str| {
            let config: MonitorDaemonConfig = toml::from_str(text).unwrap();
            config
                .validate(Path::new("m/config.toml"))
                .unwrap_err()
                .to_string()
        };
        let ledger = "[ledger]\nvalidators = [\"127.0.0.1:7000\"]\n";
        assert!(refused(&format!("{ledger}[evidence]\nkeep_epochs = 0\n")).contains("keep_epochs"));
        let error = refused(&format!("{ledger}[monitor]\nconfidence = 2.0\n"));
        assert!(
            error.contains("m/config.toml") && error.contains("confidence"),
            "{error}"
        );
        assert!(refused("[ledger]\nvalidators = []\n").contains("ledger.validators"));
        let unknown = toml::from_str::<MonitorDaemonConfig>(&format!("{ledger}[monitr]\n"))
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("monitr"), "{unknown}");
    }
}
