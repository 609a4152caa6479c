//! The client daemon: a client of the mixnet running on its own, in one of three roles
//! ([`DaemonRole`]): a client that applications in any language use through a local WebSocket API
//! (see `docs/client-api.md`), a SOCKS5 proxy ([`crate::socks5`]), or an exit service
//! ([`crate::exit`]). The role is the section its `config.toml` has: `[api]` (or none),
//! `[socks5]` or `[exit]`.
//!
//! With a ledger (the `[ledger]` section) the client fetches and verifies each epoch's topology
//! (see [`umbra_net::directory`]) and routes with the new one as each epoch begins; a static
//! topology file is for private test networks.
//!
//! A data directory holds `config.toml`, `identity.key`, `encryption.key`, `genesis.json` (or
//! the topology file), `outbox.redb` (messages sent and not yet delivered, sent again after
//! a restart, each sealed under its key in `outbox.keys`) and, for a client, `api.token` (the
//! WebSocket API's access token). Every file is readable only by its owner.

mod api;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;
use umbra_client::{Client, ClientConfig, ClientKeys, TrafficPreset};
use umbra_topology::{NodeDescriptor, NodeId, NoiseKey, Role, Topology};
use umbra_wire::ClientAddress;

use std::sync::Arc;

use crate::client::{self, ClientSetup, ConnectionConfig};
use crate::exit::service::{ExitConfig, ExitSettings};
use crate::socks5::{ProxySettings, Socks5Config};
use umbra_net::NodeError;
use umbra_net::directory::{self, Directory, LedgerConfig, Refresh};
use umbra_net::files::{copy_private, write_private};
use umbra_net::keys::{read_key, write_new_key};

/// The configuration file in a data directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The identity key file.
pub const IDENTITY_KEY_FILE: &str = "identity.key";
/// The encryption key file.
pub const ENCRYPTION_KEY_FILE: &str = "encryption.key";
/// The outbox.
pub const OUTBOX_FILE: &str = "outbox.redb";
/// The ticket wallet ([`crate::tickets::TicketWallet`]): bandwidth tickets bought and not yet
/// spent, and purchases not yet finished. Bearer tokens: owner-only.
pub const TICKETS_FILE: &str = "tickets.redb";
/// The WebSocket API's access token.
pub const API_TOKEN_FILE: &str = "api.token";
const TOPOLOGY_FILE: &str = "topology.json";

/// Everything a client daemon can be told. Its file has at most one of the role sections
/// `[api]`, `[socks5]` and `[exit]` ([`RoleConfig`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ConfigFile", into = "ConfigFile")]
pub struct ClientDaemonConfig {
    /// The gateway, by its Noise key (base58), as the topology lists it.
    pub gateway: String,
    /// A static topology file, relative to the data directory (private test networks). Set
    /// this or `ledger`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<PathBuf>,
    /// Where the ledger is: the validators serving each epoch's topology, and the genesis file
    /// their signatures are checked against.
    pub ledger: Option<LedgerConfig>,
    /// What the daemon is: the section its file has.
    pub role: RoleConfig,
    /// Whether sent messages are kept on disk until delivered (and sent again after a restart).
    pub keep_outbox: bool,
    /// Bytes of messages accepted and not yet delivered or given up on, at most; a send
    /// beyond is refused.
    pub max_pending_bytes: usize,
    /// How the client behaves: traffic, acknowledgements, messages, SURBs.
    pub client: ClientConfig,
    /// How it reaches its gateway.
    pub connection: ConnectionConfig,
}

/// What a client daemon is, by the one role section its `config.toml` has.
#[derive(Clone, Debug, PartialEq)]
pub enum RoleConfig {
    /// A client serving the WebSocket API: `[api]`, or none of the three sections (the API's
    /// defaults).
    Api(ApiConfig),
    /// A SOCKS5 proxy: `[socks5]`.
    Socks5(Socks5Config),
    /// An exit service: `[exit]`.
    Exit(ExitConfig),
}

impl RoleConfig {
    /// What the daemon does.
    pub fn role(&self) -> DaemonRole {
        match self {
            RoleConfig::Api(_) => DaemonRole::Client,
            RoleConfig::Socks5(_) => DaemonRole::Socks5,
            RoleConfig::Exit(_) => DaemonRole::Exit,
        }
    }
}

/// Role sections of a client daemon's `config.toml` that cannot go together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoleConflict {
    /// Both `[socks5]` and `[exit]`.
    #[error(
        "it has both [socks5] and [exit]: a daemon is one or the other; make the other with its own `umbra ... init` in another directory"
    )]
    Socks5AndExit,
    /// Both `[api]` and `[socks5]`.
    #[error(
        "it has both [api] and [socks5]: [api] is a client's WebSocket API, and a SOCKS5 proxy has none; remove the [api] section"
    )]
    ApiAndSocks5,
    /// Both `[api]` and `[exit]`.
    #[error(
        "it has both [api] and [exit]: [api] is a client's WebSocket API, and an exit service has none; remove the [api] section"
    )]
    ApiAndExit,
}

/// `config.toml` as it is written: the role sections side by side, at most one of them set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    gateway: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topology: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ledger: Option<LedgerConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api: Option<ApiConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    socks5: Option<Socks5Config>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exit: Option<ExitConfig>,
    #[serde(default = "yes")]
    keep_outbox: bool,
    #[serde(default = "default_max_pending_bytes")]
    max_pending_bytes: usize,
    #[serde(default)]
    client: ClientConfig,
    #[serde(default)]
    connection: ConnectionConfig,
}

impl TryFrom<ConfigFile> for ClientDaemonConfig {
    type Error = RoleConflict;

    fn try_from(file: ConfigFile) -> Result<Self, RoleConflict> {
        let role = match (file.api, file.socks5, file.exit) {
            (_, Some(_), Some(_)) => return Err(RoleConflict::Socks5AndExit),
            (Some(_), Some(_), None) => return Err(RoleConflict::ApiAndSocks5),
            (Some(_), None, Some(_)) => return Err(RoleConflict::ApiAndExit),
            (api, None, None) => RoleConfig::Api(api.unwrap_or_default()),
            (None, Some(socks5), None) => RoleConfig::Socks5(socks5),
            (None, None, Some(exit)) => RoleConfig::Exit(exit),
        };
        Ok(ClientDaemonConfig {
            gateway: file.gateway,
            topology: file.topology,
            ledger: file.ledger,
            role,
            keep_outbox: file.keep_outbox,
            max_pending_bytes: file.max_pending_bytes,
            client: file.client,
            connection: file.connection,
        })
    }
}

impl From<ClientDaemonConfig> for ConfigFile {
    fn from(config: ClientDaemonConfig) -> Self {
        let (api, socks5, exit) = match config.role {
            RoleConfig::Api(api) => (Some(api), None, None),
            RoleConfig::Socks5(socks5) => (None, Some(socks5), None),
            RoleConfig::Exit(exit) => (None, None, Some(exit)),
        };
        ConfigFile {
            gateway: config.gateway,
            topology: config.topology,
            ledger: config.ledger,
            api,
            socks5,
            exit,
            keep_outbox: config.keep_outbox,
            max_pending_bytes: config.max_pending_bytes,
            client: config.client,
            connection: config.connection,
        }
    }
}

/// The WebSocket API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Where applications connect. Anyone who can connect can send and read messages as this
    /// client: keep it on loopback.
    pub listen_address: SocketAddr,
    /// Messages kept for applications while none is connected; beyond it the client takes
    /// nothing more from its gateway, which keeps the rest (none is lost).
    pub max_buffered_messages: usize,
    /// Web pages allowed to connect from a browser, by origin (`http://localhost:8080`);
    /// a handshake with any other `Origin` is refused. Applications that are not browsers
    /// send no `Origin`.
    pub allowed_origins: Vec<String>,
    /// Whether applications must present the access token in [`API_TOKEN_FILE`].
    pub require_token: bool,
    /// Applications connected at once, at most; connections beyond are closed at once.
    pub max_connections: usize,
    /// How long an application's WebSocket handshake may take.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

/// Where a client's API listens unless told otherwise.
pub const DEFAULT_API_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1977);

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen_address: DEFAULT_API_ADDRESS,
            max_buffered_messages: 10_000,
            allowed_origins: Vec::new(),
            require_token: false,
            max_connections: 64,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_max_pending_bytes() -> usize {
    client::DEFAULT_MAX_PENDING_BYTES
}

/// What a client daemon does with its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaemonRole {
    /// Serves the WebSocket API to applications.
    Client,
    /// A SOCKS5 proxy carrying applications' connections to an exit.
    Socks5,
    /// An exit service opening the connections proxies ask for.
    Exit,
}

impl DaemonRole {
    /// The `umbra` command that runs it.
    pub fn command(self) -> &'static str {
        match self {
            DaemonRole::Client => "client",
            DaemonRole::Socks5 => "socks5",
            DaemonRole::Exit => "exit",
        }
    }

    /// What it is, in words.
    pub fn name(self) -> &'static str {
        match self {
            DaemonRole::Client => "a client",
            DaemonRole::Socks5 => "a SOCKS5 proxy",
            DaemonRole::Exit => "an exit service",
        }
    }
}

/// What a new client daemon does, for [`init`].
#[derive(Clone, Debug)]
pub enum NewRole<'a> {
    /// A client serving its WebSocket API at this address.
    Client {
        /// Where applications connect.
        api: SocketAddr,
    },
    /// A SOCKS5 proxy listening at `listen`, carrying connections to `exit`.
    Socks5 {
        /// Where applications connect.
        listen: SocketAddr,
        /// The exit service's address.
        exit: ClientAddress,
    },
    /// An exit service.
    Exit {
        /// A file of exit policy rules to copy into the data directory; without one, every
        /// public address and port is accepted.
        policy: Option<&'a Path>,
        /// Let connections through to loopback and private addresses (local testing only).
        insecure_allow_private: bool,
    },
}

impl NewRole<'_> {
    /// What the daemon will be.
    pub fn role(&self) -> DaemonRole {
        match self {
            NewRole::Client { .. } => DaemonRole::Client,
            NewRole::Socks5 { .. } => DaemonRole::Socks5,
            NewRole::Exit { .. } => DaemonRole::Exit,
        }
    }
}

/// The exit policy file in an exit's data directory, when it has one.
pub const EXIT_POLICY_FILE: &str = "exit-policy.txt";

/// What a loaded daemon will serve.
enum Service {
    Api(ApiConfig),
    Socks5(Box<ProxySettings>),
    Exit(Box<ExitSettings>),
}

/// Why [`find_gateway`] found no gateway. Both say which gateways there are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoSuchGateway {
    /// The node asked for is a mix node.
    #[error("node {which} is a mix node, not a gateway; the gateways are: {}", listed(.gateways))]
    MixNode {
        /// The id or Noise key asked for.
        which: String,
        /// The topology's gateways.
        gateways: Vec<(NodeId, NoiseKey)>,
    },
    /// No node has this id or Noise key (or it is neither).
    #[error(
        "no gateway {which:?} in the topology (give its id or its Noise key); the gateways are: {}",
        listed(.gateways)
    )]
    Unknown {
        /// The id or Noise key asked for.
        which: String,
        /// The topology's gateways.
        gateways: Vec<(NodeId, NoiseKey)>,
    },
}

/// Gateways as people name them: `3 (<noise key>), 4 (...)`.
fn listed(gateways: &[(NodeId, NoiseKey)]) -> String {
    let named: Vec<String> = gateways
        .iter()
        .map(|(id, key)| format!("{} ({key})", id.0))
        .collect();
    named.join(", ")
}

/// Finds a gateway in `topology` by its id or its Noise key.
pub fn find_gateway(topology: &Topology, which: &str) -> Result<NodeDescriptor, NoSuchGateway> {
    let which = which.trim();
    let found = match which.parse::<u32>() {
        Ok(id) => topology.node(NodeId(id)),
        Err(_) => bs58::decode(which)
            .into_vec()
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .and_then(|key| topology.node_with_noise_key(&NoiseKey(key))),
    };
    let gateways = || topology.gateways().map(|g| (g.id, g.noise_key)).collect();
    match found {
        Some(node) if node.role == Role::Gateway => Ok(node.clone()),
        Some(_) => Err(NoSuchGateway::MixNode {
            which: which.to_owned(),
            gateways: gateways(),
        }),
        None => Err(NoSuchGateway::Unknown {
            which: which.to_owned(),
            gateways: gateways(),
        }),
    }
}

/// Why a client daemon could not be made, loaded or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// A file, a key or a setting.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The address asked for is taken.
    #[error("cannot listen on {address} ({source}): another program holds it, perhaps another Umbra client or localnet's; choose another with {option}, e.g. {option} {}:0 for any free port", address.ip())]
    AddressTaken {
        /// The address.
        address: SocketAddr,
        /// The command-line option that chooses it.
        option: String,
        /// Why it cannot be bound.
        source: std::io::Error,
    },
    /// The configured address is taken.
    #[error("cannot listen on {address}: another program holds it (another Umbra client, or localnet's?); stop it, or set another port in listen_address in {}", config.display())]
    ConfiguredAddressTaken {
        /// The address.
        address: SocketAddr,
        /// The configuration file.
        config: PathBuf,
    },
    /// The gateway asked for is not one of the topology's.
    #[error(transparent)]
    Gateway(#[from] NoSuchGateway),
    /// The configured gateway is not in the epoch's topology.
    #[error("the gateway {gateway} (setting `gateway` in {}) is not in epoch {epoch:?}'s topology; wait for it to be active, or choose another", config.display())]
    GatewayInactive {
        /// The gateway's key.
        gateway: NoiseKey,
        /// The configuration file.
        config: PathBuf,
        /// The epoch.
        epoch: Option<u64>,
    },
    /// The directory holds a daemon of another role.
    #[error("{} holds {}, not {}: run it with `umbra {} run --data-dir {}`", dir.display(), holds.name(), asked.name(), holds.command(), dir.display())]
    WrongRole {
        /// The data directory.
        dir: PathBuf,
        /// What it holds.
        holds: DaemonRole,
        /// What was asked for.
        asked: DaemonRole,
    },
    /// A role that serves applications was given no socket.
    #[error("{} needs a listening socket", .0.name())]
    NoListener(DaemonRole),
    /// The SOCKS5 proxy stopped.
    #[error(transparent)]
    Proxy(#[from] crate::socks5::ProxyError),
    /// The exit service stopped.
    #[error(transparent)]
    Exit(#[from] crate::exit::service::ExitError),
    /// The role's task panicked (a bug: please report it with the log).
    #[error("the {} panicked; this is a bug, please report it with the log", .0.name())]
    Panicked(DaemonRole),
}

/// Where a new daemon will listen, checked now rather than at its first `run`: `requested`
/// if free (port 0: a free port, chosen now so that applications know where to connect), or
/// else the `default` if free, or else a free port on the same address. The note, for people,
/// says when the default was taken. `option` is the command-line option that chooses.
pub fn choose_listen_address(
    requested: Option<SocketAddr>,
    default: SocketAddr,
    option: &str,
) -> Result<(SocketAddr, Option<String>), DaemonError> {
    let free = |address: SocketAddr| {
        std::net::TcpListener::bind(address).and_then(|listener| listener.local_addr())
    };
    match requested {
        Some(address) => match free(address) {
            Ok(bound) => Ok((bound, None)),
            Err(source) => Err(DaemonError::AddressTaken {
                address,
                option: option.to_owned(),
                source,
            }),
        },
        None => match free(default) {
            Ok(bound) => Ok((bound, None)),
            Err(_) => {
                let bound =
                    free(SocketAddr::new(default.ip(), 0)).map_err(|source| NodeError::Bind {
                        address: default,
                        source,
                    })?;
                Ok((
                    bound,
                    Some(format!(
                        "{default} is taken (by another program, perhaps another Umbra client or localnet's), so this one will listen on {bound}; {option} chooses another"
                    )),
                ))
            }
        },
    }
}

/// Where a new client's topology comes from.
#[derive(Clone, Debug)]
pub enum InitSource<'a> {
    /// A static topology file, copied into the client's folder (private test networks).
    File(&'a Path),
    /// The ledger: `topology` is the current one (fetched and verified), to find the gateway
    /// in; the genesis file is copied into the client's folder.
    Ledger {
        /// The validators and genesis file.
        ledger: &'a LedgerConfig,
        /// The genesis file to copy.
        genesis: &'a Path,
        /// The current topology.
        topology: &'a Topology,
    },
}

/// Creates a client daemon in `data_dir` in `role`: fresh keys, the topology file or genesis
/// (and an exit's policy file), and a commented `config.toml` naming `gateway` (an id or Noise
/// key from the topology). Returns the new client's address.
pub fn init(
    data_dir: &Path,
    source: InitSource<'_>,
    gateway: &str,
    role: NewRole<'_>,
    preset: TrafficPreset,
) -> Result<ClientAddress, DaemonError> {
    let policy = match role {
        NewRole::Exit {
            policy: Some(file), ..
        } => {
            let text = std::fs::read_to_string(file).map_err(|source| NodeError::Read {
                path: file.to_owned(),
                source,
            })?;
            umbra_client::ExitPolicy::parse(&text)
                .map_err(|error| NodeError::invalid(file, error.to_string()))?;
            Some(text)
        }
        _ => None,
    };
    let topology = match source {
        InitSource::File(path) => umbra_net::config::read_topology(path)?,
        InitSource::Ledger { topology, .. } => topology.clone(),
    };
    let gateway = find_gateway(&topology, gateway)?;
    umbra_net::config::ensure_new(
        data_dir,
        &[CONFIG_FILE, IDENTITY_KEY_FILE, ENCRYPTION_KEY_FILE],
    )?;
    if let Some(text) = policy {
        write_private(&data_dir.join(EXIT_POLICY_FILE), text.as_bytes())?;
    }
    let keys = ClientKeys::generate(&mut rand::rng());
    if matches!(role, NewRole::Client { .. }) {
        write_token(&data_dir.join(API_TOKEN_FILE))?;
    }
    write_new_key(&data_dir.join(IDENTITY_KEY_FILE), keys.identity_secret())?;
    write_new_key(
        &data_dir.join(ENCRYPTION_KEY_FILE),
        keys.encryption_secret(),
    )?;
    let source_text = match source {
        InitSource::File(_) => {
            write_private(&data_dir.join(TOPOLOGY_FILE), topology.to_json().as_bytes())?;
            umbra_net::config::source_template(None)
        }
        InitSource::Ledger {
            ledger, genesis, ..
        } => {
            copy_private(genesis, &data_dir.join(&ledger.genesis))?;
            umbra_net::config::source_template(Some(ledger))
        }
    };
    write_private(
        &data_dir.join(CONFIG_FILE),
        template(&gateway.noise_key, &role, preset, &source_text).as_bytes(),
    )?;
    Ok(ClientAddress {
        identity: keys.identity_public(),
        encryption: keys.encryption_public(),
        gateway: gateway.noise_key.0,
    })
}

/// Writes a fresh access token to `path` (readable only by the owner): 32 random bytes in
/// base58, safe in a URL as it is.
fn write_token(path: &Path) -> Result<String, NodeError> {
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    rand::fill(&mut secret[..]);
    let token = bs58::encode(&secret[..]).into_string();
    write_private(path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// The access token in `data_dir`, made there if missing (a client made before tokens were).
fn access_token(data_dir: &Path) -> Result<String, NodeError> {
    let path = data_dir.join(API_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Ok(_) => Err(NodeError::invalid(
            &path,
            "is empty; delete it, and a new token is made at the next start",
        )),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let token = write_token(&path)?;
            info!(file = %path.display(), "made an access token for the API");
            Ok(token)
        }
        Err(source) => Err(NodeError::Read { path, source }),
    }
}

/// Where a client's topology comes from.
enum Source {
    File(Box<(Topology, NodeDescriptor)>),
    Ledger(Arc<Directory>),
}

/// A client daemon read from its data directory, ready to run.
pub struct ClientDaemon {
    data_dir: PathBuf,
    config: ClientDaemonConfig,
    keys: ClientKeys,
    gateway_key: NoiseKey,
    source: Source,
    service: Service,
}

impl ClientDaemon {
    /// Reads the client in `data_dir`; every error names the file and what is wrong.
    pub fn load(data_dir: &Path) -> Result<ClientDaemon, NodeError> {
        let config_path = data_dir.join(CONFIG_FILE);
        umbra_net::config::require_config(&config_path, data_dir, "client")?;
        let config: ClientDaemonConfig = umbra_net::config::read_toml(&config_path)?;
        config
            .client
            .validate()
            .map_err(|error| NodeError::invalid(&config_path, format!("in [client]: {error}")))?;
        umbra_net::config::validate_source(config.topology.as_deref(), config.ledger.as_ref())
            .map_err(|problem| NodeError::invalid(&config_path, problem.to_string()))?;
        let service = match &config.role {
            RoleConfig::Api(api) => {
                if api.max_connections == 0 || api.handshake_timeout.is_zero() {
                    return Err(NodeError::invalid(
                        &config_path,
                        "in [api]: max_connections and handshake_timeout must be more than zero (defaults 64 and \"10s\")",
                    ));
                }
                Service::Api(api.clone())
            }
            RoleConfig::Socks5(socks5) => Service::Socks5(Box::new(socks5.settings(&config_path)?)),
            RoleConfig::Exit(exit) => {
                Service::Exit(Box::new(exit.settings(&config_path, data_dir)?))
            }
        };
        let keys = ClientKeys::from_bytes(
            read_key(&data_dir.join(IDENTITY_KEY_FILE))?,
            read_key(&data_dir.join(ENCRYPTION_KEY_FILE))?,
        );
        let (gateway_key, source) = match (&config.ledger, &config.topology) {
            (Some(ledger), _) => {
                let key = bs58::decode(config.gateway.trim())
                    .into_vec()
                    .ok()
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .map(NoiseKey)
                    .ok_or_else(|| {
                        NodeError::invalid(
                            &config_path,
                            "setting `gateway`: with a ledger, name the gateway by its Noise key (base58), which your address includes",
                        )
                    })?;
                (
                    key,
                    Source::Ledger(Arc::new(Directory::from_config(ledger, data_dir)?)),
                )
            }
            (None, topology) => {
                let topology_path =
                    data_dir.join(topology.clone().unwrap_or_else(|| TOPOLOGY_FILE.into()));
                let topology = umbra_net::config::read_topology(&topology_path)?;
                let gateway = find_gateway(&topology, &config.gateway).map_err(|problem| {
                    NodeError::invalid(&config_path, format!("setting `gateway`: {problem}"))
                })?;
                if gateway.client_address.is_none() {
                    return Err(NodeError::invalid(
                        &topology_path,
                        format!("gateway {} has no client_address", gateway.id),
                    ));
                }
                (
                    gateway.noise_key,
                    Source::File(Box::new((topology, gateway))),
                )
            }
        };
        Ok(ClientDaemon {
            data_dir: data_dir.to_owned(),
            config,
            keys,
            gateway_key,
            source,
            service,
        })
    }

    /// What it does.
    pub fn role(&self) -> DaemonRole {
        match self.service {
            Service::Api(_) => DaemonRole::Client,
            Service::Socks5(_) => DaemonRole::Socks5,
            Service::Exit(_) => DaemonRole::Exit,
        }
    }

    /// Where applications connect: the WebSocket API, or the SOCKS5 proxy (an exit has none).
    pub fn listen_address(&self) -> Option<SocketAddr> {
        match &self.config.role {
            RoleConfig::Api(api) => Some(api.listen_address),
            RoleConfig::Socks5(socks5) => Some(socks5.listen_address),
            RoleConfig::Exit(_) => None,
        }
    }

    /// Refuses, with what to run instead, unless this daemon is a `role`.
    pub fn expect_role(&self, role: DaemonRole) -> Result<(), DaemonError> {
        let actual = self.role();
        if actual == role {
            return Ok(());
        }
        Err(DaemonError::WrongRole {
            dir: self.data_dir.clone(),
            holds: actual,
            asked: role,
        })
    }

    /// The client's address.
    pub fn address(&self) -> ClientAddress {
        ClientAddress {
            identity: self.keys.identity_public(),
            encryption: self.keys.encryption_public(),
            gateway: self.gateway_key.0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientDaemonConfig {
        &self.config
    }

    /// Binds the [`listen_address`](Self::listen_address) (if any) and runs until `shutdown`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), DaemonError> {
        let listener = match self.listen_address() {
            Some(address) => Some(TcpListener::bind(address).await.map_err(|source| {
                if source.kind() == std::io::ErrorKind::AddrInUse {
                    DaemonError::ConfiguredAddressTaken {
                        address,
                        config: self.data_dir.join(CONFIG_FILE),
                    }
                } else {
                    DaemonError::Node(NodeError::Bind { address, source })
                }
            })?),
            None => None,
        };
        self.run_with(listener, shutdown).await
    }

    /// Runs with applications connecting on `listener` (a client's API or a proxy's SOCKS5
    /// port; an exit needs none) until `shutdown`, then closes the session (confirming what it
    /// received) and returns. With a ledger, it first fetches and verifies the topology, and
    /// refuses to run when every validator answers with one that does not verify against its
    /// genesis file.
    pub async fn run_with(
        self,
        listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), DaemonError> {
        if listener.is_none() && self.role() != DaemonRole::Exit {
            return Err(DaemonError::NoListener(self.role()));
        }
        let address = self.address();
        let token = match &self.service {
            Service::Api(_) => Some(access_token(&self.data_dir)?),
            _ => None,
        };
        let mut shutdown = std::pin::pin!(shutdown);
        let stop = CancellationToken::new();
        let (topology, gateway, topologies, follower) = match &self.source {
            Source::File(file) => (file.0.clone(), file.1.clone(), None, None),
            Source::Ledger(directory) => {
                let first = tokio::select! {
                    first = directory.first(&stop) => first?,
                    () = &mut shutdown => return Ok(()),
                };
                let gateway = first
                    .topology
                    .node_with_noise_key(&self.gateway_key)
                    .filter(|node| node.client_address.is_some())
                    .cloned()
                    .ok_or_else(|| DaemonError::GatewayInactive {
                        gateway: self.gateway_key,
                        config: self.data_dir.join(CONFIG_FILE),
                        epoch: first.epoch_number(),
                    })?;
                let refresh = Refresh::client(directory.trust());
                let topology = first.topology.clone();
                let (updates, task) =
                    directory::follow(Arc::clone(directory), first, refresh, stop.clone());
                (topology, gateway, Some(updates), Some(task))
            }
        };
        let core = Client::new(
            self.config.client.clone(),
            self.keys.clone(),
            self.gateway_key.0,
            topology,
            rand::random(),
            std::time::Instant::now(),
        )
        .map_err(|error| NodeError::invalid(self.data_dir.join(CONFIG_FILE), error.to_string()))?;
        let setup = ClientSetup {
            gateway_address: gateway.client_address.unwrap_or(gateway.mix_address),
            gateway_key: self.gateway_key,
            connection: self.config.connection.clone(),
            outbox: self
                .config
                .keep_outbox
                .then(|| self.data_dir.join(OUTBOX_FILE)),
            max_pending_bytes: self.config.max_pending_bytes,
            tickets: match &topologies {
                // following a ledger: its gateways may demand tickets, paid from the wallet
                Some(_) => Some(Arc::new(crate::spending::SharedWallet::new(
                    crate::tickets::TicketWallet::open(&self.data_dir.join(TICKETS_FILE))?,
                )) as Arc<dyn crate::spending::TicketSource>),
                None => None,
            },
            topologies,
        };
        let (handle, events, task) = client::start(core, &self.keys, setup, stop.clone())?;
        let listening = listener.as_ref().and_then(|l| l.local_addr().ok());
        let role = self.role();
        info!(listening = ?listening, gateway = %gateway.id, "{} running; its address is {address}", role.name());
        let stopped = stop.clone().cancelled_owned();
        let api_stop = stop.clone();
        let mut service = match (self.service, listener) {
            (Service::Api(api), Some(listener)) => {
                let settings = api::ApiSettings {
                    max_buffered: api.max_buffered_messages,
                    access: api::Access {
                        allowed_origins: api.allowed_origins,
                        token: token.unwrap_or_default(),
                        require_token: api.require_token,
                    },
                    max_connections: api.max_connections,
                    handshake_timeout: api.handshake_timeout,
                };
                tokio::spawn(async move {
                    api::serve(listener, handle, events, settings, api_stop).await;
                    Ok(())
                })
            }
            (Service::Socks5(settings), Some(listener)) => tokio::spawn(async move {
                crate::socks5::run(listener, handle, events, *settings, stopped)
                    .await
                    .map_err(DaemonError::from)
            }),
            (Service::Exit(settings), _) => tokio::spawn(async move {
                crate::exit::service::run(handle, events, *settings, stopped)
                    .await
                    .map_err(DaemonError::from)
            }),
            // refused above
            (_, None) => tokio::spawn(async move { Err(DaemonError::NoListener(role)) }),
        };
        let outcome = tokio::select! {
            () = shutdown => None,
            ended = &mut service => Some(ended),
        };
        info!("stopping");
        stop.cancel();
        let _ = task.await;
        let outcome = match outcome {
            Some(ended) => ended,
            None => service.await,
        };
        if let Some(follower) = follower {
            let _ = follower.await;
        }
        match outcome {
            Ok(result) => result,
            Err(_) => Err(DaemonError::Panicked(role)),
        }
    }
}

fn template(gateway: &NoiseKey, role: &NewRole<'_>, preset: TrafficPreset, source: &str) -> String {
    let traffic = preset.config();
    let ms = |d: std::time::Duration| format!("{}ms", d.as_millis());
    let (what, service) = match role {
        NewRole::Client { api } => ("client", API_TEMPLATE.replace("{api}", &api.to_string())),
        NewRole::Socks5 { listen, exit } => (
            "SOCKS5 proxy",
            SOCKS5_TEMPLATE
                .replace("{listen}", &listen.to_string())
                .replace("{exit}", &exit.to_string())
                + &STREAMS_TEMPLATE.replace("{section}", "socks5"),
        ),
        NewRole::Exit {
            policy,
            insecure_allow_private,
        } => (
            "exit service",
            EXIT_TEMPLATE
                .replace(
                    "{file}",
                    &if policy.is_some() {
                        format!("file = \"{EXIT_POLICY_FILE}\"")
                    } else {
                        format!("# file = \"{EXIT_POLICY_FILE}\"")
                    },
                )
                .replace("{private}", &insecure_allow_private.to_string())
                + &STREAMS_TEMPLATE.replace("{section}", "exit"),
        ),
    };
    let command = role.role().command();
    TEMPLATE
        .replace("{what}", what)
        .replace("{command}", command)
        .replace("{gateway}", &gateway.to_string())
        .replace(
            "{outbox_note}",
            match role {
                NewRole::Client { .. } => "",
                _ => "# Off for a SOCKS5 proxy or exit: their streams end with a restart, and the stream layer\n# sends again what it needs while it runs.\n",
            },
        )
        .replace(
            "{keep_outbox}",
            if matches!(role, NewRole::Client { .. }) { "true" } else { "false" },
        )
        .replace("{source}", source)
        .replace("{service}", &service)
        .replace("{hop}", &ms(traffic.mean_hop_delay))
        .replace("{send}", &ms(traffic.mean_send_interval))
        .replace("{loop}", &ms(traffic.mean_loop_interval))
}

const TEMPLATE: &str = r#"# An Umbra {what}. Written by `umbra {command} init`; every setting is shown with its default.
# Durations read like "20ms", "1.5s", "30m". Paths are relative to this directory.

# The gateway this client connects through, by its Noise key in the topology. Your address
# names it: changing it changes your address.
gateway = "{gateway}"

# Keep sent messages on disk until they are delivered, and send them again after a restart.
{outbox_note}keep_outbox = {keep_outbox}
# Bytes of messages accepted and not yet delivered or given up on, at most (64 MiB): a send
# beyond is refused with an error, so memory and the outbox stay bounded.
max_pending_bytes = 67108864

{source}
{service}
[client.traffic]
# The client sends a packet every `mean_send_interval` on average (Poisson), real or cover,
# whether or not you send anything: an observer learns nothing from your link. Each mix node
# holds each packet for `mean_hop_delay` on average (exponential). Shorter intervals send
# faster and cost bandwidth when idle; shorter delays lower latency and mix less.
# Presets (`umbra client init --traffic`): nym (15ms, 20ms, 200ms), low-latency (5ms, 10ms,
# 100ms), bulk (15ms, 1ms, 200ms).
mean_hop_delay = "{hop}"
mean_ack_delay = "{hop}"
mean_send_interval = "{send}"
mean_loop_interval = "{loop}"
# The gateway sends this client a frame of one size every `receive_interval` (`constant`) or
# in a Poisson stream of that mean (`poisson`), with what waits for it or padding, so your
# link shows nothing of what you receive either. A frame carries about one packet's payload:
# the interval caps how fast you receive, and costs bandwidth when idle (2.5 kB a frame).
receive_interval = "{send}"
receive_schedule = "constant"
# Weakens anonymity badly; for tests and measurements only. `insecure_push_deliveries` has
# the gateway push each delivery at once, unpadded (an observer sees what you receive).
insecure_no_cover = false
insecure_zero_delays = false
insecure_push_deliveries = false

[client.acks]
# A packet is sent again if its acknowledgement has not come after the route's delays there
# and back times `wait_factor`, plus `extra_wait`.
wait_factor = 1.5
extra_wait = "1500ms"
# How long a reply waits for its acknowledgement before going out through another SURB.
reply_wait = "5s"
# A message not delivered by then is reported failed.
give_up_after = "30m"
# Avoid mix nodes that lose this client's packets (what comes back of its traffic and cover
# tells) until their record fades, a minute or so later. Route choice then depends on what
# this client saw; the choice among the other nodes stays uniform.
route_around_failures = true

[client.messages]
# The largest message sent or received.
max_message_size = 16777216
# Memory for messages partly received; the stalest are dropped beyond it.
reassembly_budget = 67108864
# A partly received message getting nothing for this long is dropped.
reassembly_timeout = "2m"

[client.surbs]
# SURBs (single-use reply blocks) attached when a message asks for replies and says no count;
# a replier with fewer than `refill_below` asks for `request` more; at most `max_kept` are
# kept per sender (the newest are used first), and the keys of twice as many per peer this
# client gave SURBs to.
attach = 20
refill_below = 10
request = 20
max_kept = 200
# Anyone can send this client SURBs under ever new sender tags, or ask it for more again and
# again: at most `max_senders` senders' SURBs are kept (the least recently used go first,
# and replies to them fail), `max_held` SURBs in all (about 500 bytes each; the least
# recently used senders' oldest go first), and the keys of `max_issued` SURBs this client
# gave out (the oldest go first). All expire after `lifetime`.
max_senders = 1024
max_held = 50000
max_issued = 50000
lifetime = "24h"
# SURBs work only with the topology they were made for (give or take an epoch). When it
# changes, peers this client gave SURBs to or had replies from within `top_up_within` get
# `refill_below` fresh ones, and senders it replied to within that time are asked for some.
top_up_within = "5m"

[connection]
# How long the WebSocket and Noise handshakes with the gateway may take.
handshake_timeout = "10s"
# After a failed connection: wait this long, doubling per failure up to the maximum.
reconnect_initial = "500ms"
reconnect_max = "30s"
"#;

const API_TEMPLATE: &str = r#"[api]
# Where applications connect (WebSocket; see docs/client-api.md). Anyone who can connect reads
# and sends your messages: keep it on loopback.
listen_address = "{api}"
# Messages kept while no application is connected; beyond this the client takes nothing
# more from its gateway, which keeps the rest in its inbox until an application connects.
max_buffered_messages = 10000
# Web pages allowed to use the API from a browser, by origin, e.g. ["http://localhost:8080"].
# A browser names the page opening a connection; any page not listed is refused, so a site
# you visit cannot read or send your messages. Applications that are not browsers send no
# origin and are not concerned.
allowed_origins = []
# The access token is in api.token, in this directory (readable only by you). With
# require_token, applications must present it, as ws://HOST:PORT/?token=TOKEN or an
# "Authorization: Bearer TOKEN" header, and other users of this machine cannot connect.
# A wrong token is refused either way.
require_token = false
# Applications connected at once, at most; more are turned away. A WebSocket handshake not
# done within handshake_timeout is cut.
max_connections = 64
handshake_timeout = "10s"
"#;

const SOCKS5_TEMPLATE: &str = r#"[socks5]
# Where applications connect (SOCKS5 with names resolved at the exit, i.e. socks5h; SOCKS4a
# too). Anyone who can connect uses your mixnet client: keep it on loopback, or set a username
# and password.
listen_address = "{listen}"
# The exit service that opens the connections, by its address (`umbra exit address`). It
# answers only through SURBs: it never learns this proxy's address.
exit = "{exit}"
# With both set, applications must log in with them (SOCKS5 username/password); SOCKS4 and
# unauthenticated SOCKS5 are then refused.
# username = "me"
# password = "a long secret"
# Accept SOCKS4 and SOCKS4a (no password) when no username/password is set.
allow_socks4 = true
# SURBs sent with each message to the exit; about 9 carry one full 16 KiB answer.
surbs_per_message = 10
# Each username applications give (SOCKS5 username/password, with any password when none is
# set here; the SOCKS4 user id) is its own anonymous client to the exit, with its own sender
# tag and SURBs, so the exit cannot link connections of different usernames (as Tor isolates
# streams); applications giving none share one. Give a wallet and a browser different
# usernames (socks5h://wallet:x@127.0.0.1:1080). A username unused for the streams'
# `idle_timeout` comes back as a new client.
# Streams open at once per username, usernames at once, and streams in all. Keep them below
# what the exit grants one client and in all (its `streams_per_client`, 64, and `max_clients`,
# 1024, by default): the proxy then refuses the extra connections itself, at once, and says
# why in its log, and one application cannot use up what the exit grants the others.
streams_per_username = 48
max_usernames = 64
max_streams = 256
"#;

const EXIT_TEMPLATE: &str = r#"[exit]
# Streams open at once for one client (its proxy); opens beyond it are refused.
streams_per_client = 64
# Clients (proxies) served at once; messages from more are dropped.
max_clients = 1024
# How long resolving a name, connecting to one of its addresses, and the whole open may take.
resolve_timeout = "10s"
connect_timeout = "10s"
open_timeout = "30s"

[exit.policy]
# Which destinations the exit connects to: Tor-style accept/reject rules, first match wins
# (docs/exit-policy.md). Without a file, every public address and port is accepted.
# Special-purpose ranges (loopback, private, link-local, multicast, ...) are always refused.
{file}
# Lets connections through to loopback and private addresses (127.0.0.0/8, 10.0.0.0/8,
# 192.168.0.0/16, ...), if the rules accept them: anyone who can reach the exit then reaches
# its own machine and network. For local test networks only.
insecure_allow_private = {private}
"#;

const STREAMS_TEMPLATE: &str = r#"
[{section}.streams]
# Connections are carried as streams over mixnet messages, ordered and flow-controlled.
# Streams open at once with one peer.
max_streams = 128
# Bytes a stream holds received but not yet read by its application, and written but not yet
# acknowledged. A stream moves at most about one window per round trip through the mixnet.
receive_window = 262144
send_buffer = 262144
# The largest message sent (about ten Sphinx packets).
max_message_size = 16384
# Unacknowledged bytes are sent again after this long (doubling, up to 8 times).
retransmit_after = "20s"
# An open not answered in this long fails (SOCKS5 reply "TTL expired").
open_timeout = "60s"
# A stream with no progress for this long fails on both sides.
idle_timeout = "5m"
# With streams open and nothing heard from the other side for this long, ask: a side that
# restarted and lost its streams answers with a reset, and the application gets an error.
keepalive = "15s"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_the_defaults() {
        let key = NoiseKey([9; 32]);
        let api = &NewRole::Client {
            api: SocketAddr::from(([127, 0, 0, 1], 1977)),
        };
        let ledger = LedgerConfig {
            validators: vec!["http://127.0.0.1:7000".parse().unwrap()],
            genesis: "genesis.json".into(),
        };
        let source = umbra_net::config::source_template(Some(&ledger));
        let parsed: ClientDaemonConfig =
            toml::from_str(&template(&key, api, TrafficPreset::Nym, &source)).unwrap();
        let minimal: ClientDaemonConfig = toml::from_str(&format!(
            "gateway = \"{key}\"\n[ledger]\nvalidators = [\"127.0.0.1:7000\"]"
        ))
        .unwrap();
        // no role section: a client with the API's defaults, as the template's [api] says
        assert_eq!(minimal.role, RoleConfig::Api(ApiConfig::default()));
        assert_eq!(parsed, minimal);
        assert_eq!(parsed.client, ClientConfig::default());
        let file: ClientDaemonConfig = toml::from_str(&template(
            &key,
            api,
            TrafficPreset::Nym,
            &umbra_net::config::source_template(None),
        ))
        .unwrap();
        assert_eq!(file.topology, Some(PathBuf::from("topology.json")));
        let bulk: ClientDaemonConfig =
            toml::from_str(&template(&key, api, TrafficPreset::Bulk, &source)).unwrap();
        assert_eq!(bulk.client.traffic, TrafficPreset::Bulk.config());

        let exit_address = ClientAddress {
            identity: [1; 32],
            encryption: [2; 32],
            gateway: [3; 32],
        };
        let socks5: ClientDaemonConfig = toml::from_str(&template(
            &key,
            &NewRole::Socks5 {
                listen: crate::socks5::DEFAULT_LISTEN_ADDRESS,
                exit: exit_address,
            },
            TrafficPreset::Nym,
            &source,
        ))
        .unwrap();
        let RoleConfig::Socks5(section) = socks5.role else {
            panic!("not a proxy: {:?}", socks5.role)
        };
        let minimal: Socks5Config = toml::from_str(&format!("exit = \"{exit_address}\"")).unwrap();
        assert_eq!(section, minimal);
        assert!(!socks5.keep_outbox, "a proxy's streams end with a restart");
        let settings = section.settings(Path::new("config.toml")).unwrap();
        assert_eq!(settings.exit, exit_address);
        assert!(settings.credentials.is_none() && settings.socks.allow_no_auth);

        let exit: ClientDaemonConfig = toml::from_str(&template(
            &key,
            &NewRole::Exit {
                policy: None,
                insecure_allow_private: false,
            },
            TrafficPreset::Nym,
            &source,
        ))
        .unwrap();
        assert_eq!(exit.role, RoleConfig::Exit(ExitConfig::default()));
        let with_file: ClientDaemonConfig = toml::from_str(&template(
            &key,
            &NewRole::Exit {
                policy: Some(Path::new("rules")),
                insecure_allow_private: true,
            },
            TrafficPreset::Nym,
            &source,
        ))
        .unwrap();
        let RoleConfig::Exit(ExitConfig { policy, .. }) = with_file.role else {
            panic!("not an exit: {:?}", with_file.role)
        };
        assert_eq!(policy.file, Some(PathBuf::from(EXIT_POLICY_FILE)));
        assert!(policy.insecure_allow_private);
    }

    #[test]
    fn role_sections_that_conflict_are_named() {
        let key = NoiseKey([9; 32]);
        let file = |sections: &str| {
            format!("gateway = \"{key}\"\ntopology = \"topology.json\"\n{sections}")
        };
        let socks5 = "[socks5]\nexit = \"x\"\n";
        let refused = |sections: &str| {
            toml::from_str::<ClientDaemonConfig>(&file(sections))
                .unwrap_err()
                .to_string()
        };
        for (sections, conflict) in [
            (format!("{socks5}[exit]\n"), RoleConflict::Socks5AndExit),
            (
                format!("[api]\n{socks5}[exit]\n"),
                RoleConflict::Socks5AndExit,
            ),
            (format!("[api]\n{socks5}"), RoleConflict::ApiAndSocks5),
            ("[api]\n[exit]\n".into(), RoleConflict::ApiAndExit),
        ] {
            let error = refused(&sections);
            assert!(error.contains(&conflict.to_string()), "{error}");
        }
        assert_eq!(
            RoleConflict::ApiAndSocks5.to_string(),
            "it has both [api] and [socks5]: [api] is a client's WebSocket API, and a SOCKS5 proxy has none; remove the [api] section"
        );
        // one section, or none, is a role; the file comes back as it was written
        for (sections, role) in [
            ("", DaemonRole::Client),
            ("[api]\n", DaemonRole::Client),
            (socks5, DaemonRole::Socks5),
            ("[exit]\n", DaemonRole::Exit),
        ] {
            let config: ClientDaemonConfig = toml::from_str(&file(sections)).unwrap();
            assert_eq!(config.role.role(), role);
            let again: ClientDaemonConfig =
                toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
            assert_eq!(again, config);
        }
        // an unknown section is still refused by name
        assert!(refused("[socks]\n").contains("socks"));
    }

    #[test]
    fn a_gateway_is_found_by_id_or_key_and_a_miss_lists_the_gateways() {
        let node = |id: u8, layer: Option<u8>| {
            let sphinx = umbra_sphinx::PrivateKey::from_bytes([id; 32]);
            NodeDescriptor::from_entry(umbra_topology::Entry {
                id: u32::from(id),
                kind: if layer.is_some() {
                    umbra_topology::Kind::Mix
                } else {
                    umbra_topology::Kind::Gateway
                },
                layer,
                mix_address: SocketAddr::from(([127, 0, 0, 1], 2000 + u16::from(id))),
                client_address: layer
                    .is_none()
                    .then(|| SocketAddr::from(([127, 0, 0, 1], 3000 + u16::from(id)))),
                sphinx_key: *sphinx.public_key().as_bytes(),
                noise_key: [id; 32],
            })
            .unwrap()
        };
        let topology = Topology::new(
            1,
            vec![
                node(1, Some(1)),
                node(2, Some(2)),
                node(3, Some(3)),
                node(4, None),
            ],
        )
        .unwrap();
        let key = NoiseKey([4; 32]);
        assert_eq!(find_gateway(&topology, "4").unwrap().id, NodeId(4));
        assert_eq!(
            find_gateway(&topology, &format!(" {key} ")).unwrap().id,
            NodeId(4)
        );
        let gateways = vec![(NodeId(4), key)];
        let mix = find_gateway(&topology, "2").unwrap_err();
        assert_eq!(
            mix,
            NoSuchGateway::MixNode {
                which: "2".into(),
                gateways: gateways.clone()
            }
        );
        assert_eq!(
            mix.to_string(),
            format!("node 2 is a mix node, not a gateway; the gateways are: 4 ({key})")
        );
        let unknown = find_gateway(&topology, "999").unwrap_err();
        assert_eq!(
            unknown.to_string(),
            format!(
                "no gateway \"999\" in the topology (give its id or its Noise key); the gateways are: 4 ({key})"
            )
        );
        assert!(matches!(
            find_gateway(&topology, "not-a-key"),
            Err(NoSuchGateway::Unknown { .. })
        ));
    }

    #[test]
    fn a_taken_default_port_is_replaced_and_a_taken_chosen_one_refused() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = held.local_addr().unwrap();
        let (chosen, note) = choose_listen_address(None, taken, "--api").unwrap();
        assert_ne!(chosen, taken);
        assert_ne!(
            chosen.port(),
            0,
            "a real port, for applications to connect to"
        );
        let note = note.unwrap();
        assert!(
            note.contains(&taken.to_string()) && note.contains(&chosen.to_string()),
            "{note}"
        );
        let refused = choose_listen_address(Some(taken), taken, "--api")
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(&taken.to_string()) && refused.contains("--api 127.0.0.1:0"),
            "{refused}"
        );
        let (any, note) =
            choose_listen_address(Some("127.0.0.1:0".parse().unwrap()), taken, "--api").unwrap();
        assert!(any.port() != 0 && note.is_none());
        drop(held);
        assert_eq!(
            choose_listen_address(None, taken, "--api").unwrap(),
            (taken, None)
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_new_client_is_private_and_has_an_access_token() {
        let root = std::env::temp_dir().join(format!("umbra-client-init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let gateway = NodeDescriptor::from_entry(umbra_topology::Entry {
            id: 1,
            kind: umbra_topology::Kind::Gateway,
            layer: None,
            mix_address: SocketAddr::from(([127, 0, 0, 1], 1)),
            client_address: Some(SocketAddr::from(([127, 0, 0, 1], 2))),
            sphinx_key: *umbra_sphinx::PrivateKey::from_bytes([1; 32])
                .public_key()
                .as_bytes(),
            noise_key: [9; 32],
        })
        .unwrap();
        let topology = root.join("topology.json");
        std::fs::write(
            &topology,
            Topology::new(0, vec![gateway]).unwrap().to_json(),
        )
        .unwrap();
        let dir = root.join("me");
        init(
            &dir,
            InitSource::File(&topology),
            "1",
            NewRole::Client {
                api: DEFAULT_API_ADDRESS,
            },
            TrafficPreset::Nym,
        )
        .unwrap();
        let token = std::fs::read_to_string(dir.join(API_TOKEN_FILE)).unwrap();
        assert!(token.trim().len() >= 40, "{token}");
        assert_eq!(access_token(&dir).unwrap(), token.trim());
        umbra_net::testing::assert_private_tree(&dir);

        // a client made before tokens gets one at its next start
        std::fs::remove_file(dir.join(API_TOKEN_FILE)).unwrap();
        let made = access_token(&dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join(API_TOKEN_FILE))
                .unwrap()
                .trim(),
            made
        );
        assert_ne!(made, token.trim());
        umbra_net::testing::assert_private_tree(&dir);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn proxy_settings_refuse_what_cannot_work() {
        let exit = ClientAddress {
            identity: [1; 32],
            encryption: [2; 32],
            gateway: [3; 32],
        };
        let config = |extra: &str| -> Socks5Config {
            toml::from_str(&format!("exit = \"{exit}\"\n{extra}")).unwrap()
        };
        let file = Path::new("proxy/config.toml");
        let refused = |extra: &str| config(extra).settings(file).unwrap_err().to_string();
        assert!(refused("username = \"me\"").contains("set both `username` and `password`"));
        assert!(refused("listen_address = \"0.0.0.0:1080\"").contains("not on loopback"));
        assert!(refused("surbs_per_message = 0").contains("at least 1"));
        let bad_exit: Socks5Config = toml::from_str("exit = \"nonsense\"").unwrap();
        let message = bad_exit.settings(file).unwrap_err().to_string();
        assert!(
            message.contains("proxy/config.toml") && message.contains("umbra exit address"),
            "{message}"
        );
        let locked =
            config("username = \"me\"\npassword = \"secret\"\nlisten_address = \"0.0.0.0:1080\"")
                .settings(file)
                .unwrap();
        assert!(!locked.socks.allow_no_auth && !locked.socks.allow_socks4);
        assert!(locked.credentials.is_some());
        assert!(refused("streams_per_username = 0").contains("streams_per_username"));
        assert!(refused("max_streams = 10").contains("max_streams"));
    }

    #[test]
    fn the_proxys_limits_are_below_what_an_exit_grants() {
        // issue 13.9: the proxy allowed 128 streams where the exit grants 64, so the extra
        // ones were refused by the exit, after a round trip, for every application alike
        use crate::exit::service::ExitLimits;
        use crate::socks5::ProxyLimits;
        let (proxy, exit) = (ProxyLimits::default(), ExitLimits::default());
        assert!(proxy.streams_per_username < exit.streams_per_client);
        assert!(proxy.usernames < exit.clients);
        assert!(proxy.streams_per_username <= proxy.streams);
        // and what a new proxy's config.toml says is that
        let exit_address = ClientAddress {
            identity: [1; 32],
            encryption: [2; 32],
            gateway: [3; 32],
        };
        let settings: Socks5Config = toml::from_str(&format!("exit = \"{exit_address}\"")).unwrap();
        let settings = settings.settings(Path::new("config.toml")).unwrap();
        assert_eq!(settings.limits, proxy);
    }
}
