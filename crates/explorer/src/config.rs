//! The explorer's `config.toml`: where the ledger is, where the pages are served, how often
//! the ledger is read, and where the monitors publish their evidence; and `init`, which
//! writes a commented file with every setting at its value.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use umbra_http::HttpLimits;
use umbra_ledger::PublicKey;
use umbra_net::NodeError;
use umbra_net::directory::{LedgerConfig, TrustRoot};
use umbra_net::files::{copy_private, write_private};

/// The configuration file in a data directory.
pub const CONFIG_FILE: &str = "config.toml";

/// Where the pages are served unless told otherwise.
pub const DEFAULT_HTTP_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8070);

/// Everything an explorer can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplorerConfig {
    /// The validators (tried in turn) and the genesis file.
    pub ledger: LedgerConfig,
    /// Where the pages are served.
    #[serde(default)]
    pub http: HttpConfig,
    /// How often the ledger is read.
    #[serde(default)]
    pub refresh: RefreshConfig,
    /// Where monitors publish their evidence.
    #[serde(default)]
    pub monitors: Vec<MonitorLink>,
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
            // a public site: as many connections as a validator's API
            limits: HttpLimits::default(),
        }
    }
}

/// How often the ledger is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefreshConfig {
    /// The time between two reads (and right after each epoch's end).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        RefreshConfig {
            interval: Duration::from_secs(5),
        }
    }
}

/// A monitor's public HTTP base, where it serves `GET /evidence/{epoch}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorLink {
    /// The monitor's account (as genesis names it in `monitors`).
    pub account: PublicKey,
    /// Its HTTP base, e.g. `http://monitor.example:8090`.
    pub evidence_url: String,
}

impl ExplorerConfig {
    /// The defaults, following `ledger`.
    pub fn new(ledger: LedgerConfig) -> ExplorerConfig {
        ExplorerConfig {
            ledger,
            http: HttpConfig::default(),
            refresh: RefreshConfig::default(),
            monitors: Vec::new(),
        }
    }

    /// Reads `path`; an error names the file and the setting.
    pub fn load(path: &Path) -> Result<ExplorerConfig, NodeError> {
        let config: ExplorerConfig = umbra_net::config::read_toml(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks the settings that cannot work; the error names the file and the setting.
    pub fn validate(&self, path: &Path) -> Result<(), NodeError> {
        self.ledger
            .validate()
            .map_err(|problem| NodeError::invalid(path, problem.to_string()))?;
        if self.refresh.interval < Duration::from_millis(100) {
            return Err(NodeError::invalid(
                path,
                "setting `refresh.interval`: must be at least 100ms (\"5s\" is the default)",
            ));
        }
        for monitor in &self.monitors {
            let url = &monitor.evidence_url;
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains('"') {
                return Err(NodeError::invalid(
                    path,
                    format!(
                        "in [[monitors]]: evidence_url {url:?} is not an http:// or https:// URL (e.g. \"http://monitor.example:8090\")"
                    ),
                ));
            }
        }
        let limits = &self.http.limits;
        if limits.max_connections == 0
            || limits.header_timeout.is_zero()
            || limits.request_timeout.is_zero()
        {
            return Err(NodeError::invalid(
                path,
                "in [http.limits]: max_connections, header_timeout and request_timeout must be more than zero (defaults 1024, \"10s\", \"30s\")",
            ));
        }
        Ok(())
    }
}

/// What a new explorer needs.
#[derive(Clone, Debug)]
pub struct InitOptions<'a> {
    /// The validators (and the genesis file's name in the data directory).
    pub ledger: LedgerConfig,
    /// The genesis file to copy into the data directory.
    pub genesis: &'a Path,
    /// Where the pages will be served.
    pub http: SocketAddr,
    /// Where monitors publish their evidence.
    pub monitors: Vec<MonitorLink>,
}

/// Creates an explorer in `data_dir`: the genesis file and a commented `config.toml`.
/// Returns the configuration file's path.
pub fn init(data_dir: &Path, options: InitOptions<'_>) -> Result<PathBuf, NodeError> {
    // a genesis file that cannot be read is refused before anything is written
    TrustRoot::read(options.genesis)?;
    let mut config = ExplorerConfig::new(options.ledger);
    config.http.listen_address = options.http;
    config.monitors = options.monitors;
    let config_path = data_dir.join(CONFIG_FILE);
    config.validate(&config_path)?;
    umbra_net::config::ensure_new(data_dir, &[CONFIG_FILE])?;
    copy_private(options.genesis, &data_dir.join(&config.ledger.genesis))?;
    write_private(&config_path, template(&config).as_bytes())?;
    Ok(config_path)
}

/// The commented `config.toml` of `config` (every setting shown at its value).
pub fn template(config: &ExplorerConfig) -> String {
    let duration = |d: Duration| humantime::format_duration(d).to_string();
    let limits = &config.http.limits;
    let monitors = if config.monitors.is_empty() {
        "# [[monitors]]\n# account = \"<the monitor's account, as genesis names it>\"\n# evidence_url = \"http://monitor.example:8090\"\n".to_owned()
    } else {
        config
            .monitors
            .iter()
            .map(|monitor| {
                format!(
                    "[[monitors]]\naccount = \"{}\"\nevidence_url = \"{}\"\n",
                    monitor.account, monitor.evidence_url
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    TEMPLATE
        .replace(
            "{source}",
            &umbra_net::config::source_template(Some(&config.ledger)),
        )
        .replace("{http}", &config.http.listen_address.to_string())
        .replace("{max_connections}", &limits.max_connections.to_string())
        .replace("{header_timeout}", &duration(limits.header_timeout))
        .replace("{request_timeout}", &duration(limits.request_timeout))
        .replace("{interval}", &duration(config.refresh.interval))
        .replace("{monitors}", &monitors)
}

const TEMPLATE: &str = r#"# An Umbra explorer. Written by `umbra explorer init`; every setting is shown with its value.
# Durations read like "500ms", "5s", "1m". Paths are relative to this directory.
# See docs/explorer.md.
#
# The explorer reads the ledger from the validators' API and serves it as web pages (and their
# JSON twins under /api/): the network, its nodes, stake, performance and rewards. It signs
# nothing and keeps nothing on disk but this file and the genesis file.

{source}
[http]
# The pages, their JSON twins, /metrics and /health. Put it where its readers can reach it.
listen_address = "{http}"

[http.limits]
# Connections at once (more are closed as they come), and how long a request's headers and
# the whole request may take.
max_connections = {max_connections}
header_timeout = "{header_timeout}"
request_timeout = "{request_timeout}"

[refresh]
# How often the ledger is read (and once right after each epoch's end). A read that finds
# the chain where it was asks for one small answer only.
interval = "{interval}"

# Where each monitor publishes its evidence (its HTTP port: GET /evidence/<epoch>), so that a
# node's page links every score to the evidence behind it and shows what that evidence says
# (the explorer fetches the last 3 finished epochs' over plain http). Repeat for each monitor.
{monitors}"#;

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
        let defaults = ExplorerConfig::new(ledger());
        let parsed: ExplorerConfig = toml::from_str(&template(&defaults)).unwrap();
        assert_eq!(parsed, defaults);
        let minimal: ExplorerConfig =
            toml::from_str("[ledger]\nvalidators = [\"127.0.0.1:7000\"]\n").unwrap();
        assert_eq!(minimal, defaults);
        defaults.validate(Path::new("config.toml")).unwrap();
    }

    #[test]
    fn the_template_keeps_other_values_too() {
        let mut config = ExplorerConfig::new(ledger());
        config.http.listen_address = "0.0.0.0:9999".parse().unwrap();
        config.refresh.interval = Duration::from_millis(1500);
        config.monitors = vec![
            MonitorLink {
                account: umbra_ledger::SigningKey::from_seed([1; 32]).public(),
                evidence_url: "http://127.0.0.1:8090".into(),
            },
            MonitorLink {
                account: umbra_ledger::SigningKey::from_seed([2; 32]).public(),
                evidence_url: "https://monitor.example".into(),
            },
        ];
        let parsed: ExplorerConfig = toml::from_str(&template(&config)).unwrap();
        assert_eq!(parsed, config);
    }

    #[test]
    fn bad_settings_are_named() {
        let refused = |text: &str| {
            let config: ExplorerConfig = toml::from_str(text).unwrap();
            config
                .validate(Path::new("e/config.toml"))
                .unwrap_err()
                .to_string()
        };
        let ledger = "[ledger]\nvalidators = [\"127.0.0.1:7000\"]\n";
        let error = refused(&format!("{ledger}[refresh]\ninterval = \"1ms\"\n"));
        assert!(
            error.contains("e/config.toml") && error.contains("refresh.interval"),
            "{error}"
        );
        let key = umbra_ledger::SigningKey::from_seed([1; 32]).public();
        let error = refused(&format!(
            "{ledger}[[monitors]]\naccount = \"{key}\"\nevidence_url = \"ftp://x\"\n"
        ));
        assert!(error.contains("evidence_url"), "{error}");
        assert!(refused("[ledger]\nvalidators = []\n").contains("ledger.validators"));
    }
}
