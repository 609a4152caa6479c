//! The client daemon: a client of the mixnet running on its own, which applications in any
//! language use through a local WebSocket API (see `docs/client-api.md`).
//!
//! With a ledger (the `[ledger]` section) the client fetches and verifies each epoch's topology
//! (see [`crate::directory`]) and routes with the new one as each epoch begins; a static
//! topology file is for private test networks.
//!
//! A data directory holds `config.toml`, `identity.key`, `encryption.key`, `genesis.json` (or
//! the topology file) and `outbox.redb` (messages sent and not yet delivered, sent again after
//! a restart).

mod api;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;
use umbra_client::{Client, ClientConfig, ClientKeys, TrafficPreset};
use umbra_topology::{NodeDescriptor, NodeId, NoiseKey, Role, Topology};
use umbra_wire::ClientAddress;

use std::sync::Arc;

use crate::client::{self, ClientSetup, ConnectionConfig};
use crate::directory::{self, Directory, LedgerConfig, Refresh};
use crate::err::NodeError;
use crate::keys::{read_key, write_new_key};
use crate::node;

/// The configuration file in a data directory.
pub const CONFIG_FILE: &str = "config.toml";
/// The identity key file.
pub const IDENTITY_KEY_FILE: &str = "identity.key";
/// The encryption key file.
pub const ENCRYPTION_KEY_FILE: &str = "encryption.key";
/// The outbox.
pub const OUTBOX_FILE: &str = "outbox.redb";
const TOPOLOGY_FILE: &str = "topology.json";

/// Everything a client daemon can be told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientDaemonConfig {
    /// The gateway, by its Noise key (base58), as the topology lists it.
    pub gateway: String,
    /// A static topology file, relative to the data directory (private test networks). Set
    /// this or `ledger`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<PathBuf>,
    /// Where the ledger is: the validators serving each epoch's topology, and the genesis file
    /// their signatures are checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerConfig>,
    /// The WebSocket API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Whether sent messages are kept on disk until delivered (and sent again after a restart).
    #[serde(default = "yes")]
    pub keep_outbox: bool,
    /// How the client behaves: traffic, acknowledgements, messages, SURBs.
    #[serde(default)]
    pub client: ClientConfig,
    /// How it reaches its gateway.
    #[serde(default)]
    pub connection: ConnectionConfig,
}

/// The WebSocket API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Where applications connect. Anyone who can connect can send and read messages as this
    /// client: keep it on loopback.
    pub listen_address: SocketAddr,
    /// Messages kept for applications while none is connected; the oldest go beyond it.
    pub max_buffered_messages: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen_address: SocketAddr::from(([127, 0, 0, 1], 1977)),
            max_buffered_messages: 10_000,
        }
    }
}

fn yes() -> bool {
    true
}

/// Finds a gateway in `topology` by its id or its Noise key.
pub fn find_gateway(topology: &Topology, which: &str) -> Result<NodeDescriptor, String> {
    let which = which.trim();
    let found = match which.parse::<u32>() {
        Ok(id) => topology.node(NodeId(id)),
        Err(_) => bs58::decode(which)
            .into_vec()
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .and_then(|key| topology.node_with_noise_key(&NoiseKey(key))),
    };
    let gateways: Vec<String> = topology
        .gateways()
        .map(|g| format!("{} ({})", g.id.0, g.noise_key))
        .collect();
    match found {
        Some(node) if node.role == Role::Gateway => Ok(node.clone()),
        Some(_) => Err(format!(
            "node {which} is a mix node, not a gateway; the gateways are: {}",
            gateways.join(", ")
        )),
        None => Err(format!(
            "no gateway {which:?} in the topology (give its id or its Noise key); the gateways are: {}",
            gateways.join(", ")
        )),
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

/// Creates a client in `data_dir`: fresh keys, the topology file or genesis, and a commented
/// `config.toml` naming `gateway` (an id or Noise key from the topology). Returns the new
/// client's address.
pub fn init(
    data_dir: &Path,
    source: InitSource<'_>,
    gateway: &str,
    api: SocketAddr,
    preset: TrafficPreset,
) -> Result<ClientAddress, NodeError> {
    let topology = match source {
        InitSource::File(path) => node::read_topology(path)?,
        InitSource::Ledger { topology, .. } => topology.clone(),
    };
    let gateway = find_gateway(&topology, gateway).map_err(NodeError::Other)?;
    node::ensure_new(
        data_dir,
        &[CONFIG_FILE, IDENTITY_KEY_FILE, ENCRYPTION_KEY_FILE],
    )?;
    let keys = ClientKeys::generate(&mut rand::rng());
    write_new_key(&data_dir.join(IDENTITY_KEY_FILE), keys.identity_secret())?;
    write_new_key(
        &data_dir.join(ENCRYPTION_KEY_FILE),
        keys.encryption_secret(),
    )?;
    let source_text = match source {
        InitSource::File(_) => {
            let copy = data_dir.join(TOPOLOGY_FILE);
            std::fs::write(&copy, topology.to_json()).map_err(|source| NodeError::Write {
                path: copy.clone(),
                source,
            })?;
            node::source_template(None)
        }
        InitSource::Ledger {
            ledger, genesis, ..
        } => {
            let copy = data_dir.join(&ledger.genesis);
            std::fs::copy(genesis, &copy).map_err(|source| NodeError::Write {
                path: copy.clone(),
                source,
            })?;
            node::source_template(Some(ledger))
        }
    };
    let config = data_dir.join(CONFIG_FILE);
    std::fs::write(
        &config,
        template(&gateway.noise_key, api, preset, &source_text),
    )
    .map_err(|source| NodeError::Write {
        path: config.clone(),
        source,
    })?;
    Ok(ClientAddress {
        identity: keys.identity_public(),
        encryption: keys.encryption_public(),
        gateway: gateway.noise_key.0,
    })
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
}

impl ClientDaemon {
    /// Reads the client in `data_dir`; every error names the file and what is wrong.
    pub fn load(data_dir: &Path) -> Result<ClientDaemon, NodeError> {
        let config_path = data_dir.join(CONFIG_FILE);
        node::require_config(&config_path, data_dir, "client")?;
        let config: ClientDaemonConfig = node::read_toml(&config_path)?;
        config
            .client
            .validate()
            .map_err(|error| NodeError::invalid(&config_path, format!("in [client]: {error}")))?;
        node::validate_source(config.topology.as_deref(), config.ledger.as_ref())
            .map_err(|problem| NodeError::invalid(&config_path, problem))?;
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
                let topology = node::read_topology(&topology_path)?;
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

    /// Binds the API address and runs until `shutdown`.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), NodeError> {
        let address = self.config.api.listen_address;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| NodeError::Bind { address, source })?;
        self.run_with(listener, shutdown).await
    }

    /// Runs with the API on `listener` until `shutdown`, then closes the session (confirming
    /// what it received) and returns. With a ledger, it first fetches and verifies the
    /// topology, and refuses to run when every validator answers with one that does not verify
    /// against its genesis file.
    pub async fn run_with(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), NodeError> {
        let address = self.address();
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
                    .ok_or_else(|| {
                        NodeError::Other(format!(
                            "the gateway {} (setting `gateway` in {}) is not in epoch {:?}'s topology; wait for it to be active, or choose another",
                            self.gateway_key,
                            self.data_dir.join(CONFIG_FILE).display(),
                            first.epoch_number()
                        ))
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
            topologies,
        };
        let (handle, events, task) = client::start(core, &self.keys, setup, stop.clone())?;
        let api_address = listener.local_addr().ok();
        info!(api = ?api_address, gateway = %gateway.id, "client running; its address is {address}");
        let api = tokio::spawn(api::serve(
            listener,
            handle,
            events,
            self.config.api.max_buffered_messages,
            stop.clone(),
        ));
        shutdown.await;
        info!("stopping");
        stop.cancel();
        let _ = task.await;
        let _ = api.await;
        if let Some(follower) = follower {
            let _ = follower.await;
        }
        Ok(())
    }
}

fn template(gateway: &NoiseKey, api: SocketAddr, preset: TrafficPreset, source: &str) -> String {
    let traffic = preset.config();
    let ms = |d: std::time::Duration| format!("{}ms", d.as_millis());
    TEMPLATE
        .replace("{gateway}", &gateway.to_string())
        .replace("{source}", source)
        .replace("{api}", &api.to_string())
        .replace("{hop}", &ms(traffic.mean_hop_delay))
        .replace("{send}", &ms(traffic.mean_send_interval))
        .replace("{loop}", &ms(traffic.mean_loop_interval))
}

const TEMPLATE: &str = r#"# An Umbra client. Written by `umbra client init`; every setting is shown with its default.
# Durations read like "20ms", "1.5s", "30m". Paths are relative to this directory.

# The gateway this client connects through, by its Noise key in the topology. Your address
# names it: changing it changes your address.
gateway = "{gateway}"

# Keep sent messages on disk until they are delivered, and send them again after a restart.
keep_outbox = true

{source}
[api]
# Where applications connect (WebSocket; see docs/client-api.md). Anyone who can connect reads
# and sends your messages: keep it on loopback.
listen_address = "{api}"
# Messages kept while no application is connected; the oldest are dropped beyond this.
max_buffered_messages = 10000

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
# Weakens anonymity badly; for tests and measurements only.
insecure_no_cover = false
insecure_zero_delays = false

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
# kept per sender.
attach = 20
refill_below = 10
request = 20
max_kept = 200

[connection]
# How long the WebSocket and Noise handshakes with the gateway may take.
handshake_timeout = "10s"
# After a failed connection: wait this long, doubling per failure up to the maximum.
reconnect_initial = "500ms"
reconnect_max = "30s"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_the_defaults() {
        let key = NoiseKey([9; 32]);
        let api = SocketAddr::from(([127, 0, 0, 1], 1977));
        let ledger = LedgerConfig {
            validators: vec!["http://127.0.0.1:7000".parse().unwrap()],
            genesis: "genesis.json".into(),
        };
        let source = node::source_template(Some(&ledger));
        let parsed: ClientDaemonConfig =
            toml::from_str(&template(&key, api, TrafficPreset::Nym, &source)).unwrap();
        let minimal: ClientDaemonConfig = toml::from_str(&format!(
            "gateway = \"{key}\"\n[ledger]\nvalidators = [\"127.0.0.1:7000\"]"
        ))
        .unwrap();
        assert_eq!(parsed, minimal);
        assert_eq!(parsed.client, ClientConfig::default());
        let file: ClientDaemonConfig = toml::from_str(&template(
            &key,
            api,
            TrafficPreset::Nym,
            &node::source_template(None),
        ))
        .unwrap();
        assert_eq!(file.topology, Some(PathBuf::from("topology.json")));
        let bulk: ClientDaemonConfig =
            toml::from_str(&template(&key, api, TrafficPreset::Bulk, &source)).unwrap();
        assert_eq!(bulk.client.traffic, TrafficPreset::Bulk.config());
    }
}
