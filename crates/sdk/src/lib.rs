#![doc = include_str!("../README.md")]

pub mod http;

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use umbra_client_daemons::client::{self as shell, ClientSetup};
use umbra_client_daemons::daemon::{
    ENCRYPTION_KEY_FILE, IDENTITY_KEY_FILE, OUTBOX_FILE, find_gateway,
};
use umbra_client_daemons::spending::{SharedWallet, TicketSource};
use umbra_net::keys::{read_key, write_new_key};

use umbra_net::directory::{self, Directory, Refresh, TrustRoot};
use umbra_topology::Topology;

pub use umbra_net::directory::ValidatorUrl;

pub use umbra_client::stream::{OpenFailure, StreamConfig};
pub use umbra_client::{
    ClientConfig, ClientKeys, ClientStats, NoRoute, SendError, SenderTag, TrafficConfig,
    TrafficPreset,
};
pub use umbra_client_daemons::client::{
    ClientEvent, ClientHandle, ClientStatus, CommandError, ConnectionConfig,
};
pub use umbra_client_daemons::streams::{
    DEFAULT_MAX_STREAMS, MixnetStream, MixnetStreams, OpenError, StreamSettings, StreamsStatus,
};
pub use umbra_client_daemons::tickets::{
    Bought, BuyError, StoredTicket, TicketWallet, WalletCounts, WalletError,
};
pub use umbra_ledger::SigningKey;
pub use umbra_wire::{AddressParseError, ClientAddress};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or setting (named in the message) is wrong.
    #[error(transparent)]
    Setup(#[from] umbra_net::NodeError),
    /// The client's settings cannot work.
    #[error(transparent)]
    Client(#[from] umbra_client::ClientError),
    /// A send or reply did not go through.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// An address could not be read.
    #[error(transparent)]
    Address(#[from] AddressParseError),
    /// A validator's address could not be read.
    #[error(transparent)]
    ValidatorUrl(#[from] umbra_net::directory::ValidatorUrlError),
    /// The gateway could not be chosen.
    #[error("{0}")]
    Gateway(String),
    /// Buying tickets failed (the message says whether anything was paid).
    #[error(transparent)]
    Tickets(#[from] BuyError),
    /// The ticket wallet could not be opened.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// The stream settings cannot work.
    #[error("stream settings: {0}")]
    StreamSettings(#[source] umbra_client::ConfigError),
    /// The gateway did not answer in time.
    #[error("no session with the gateway after {0:?}; is the network running?")]
    Timeout(Duration),
}

/// Buys `count` bandwidth tickets (1 to 4,096), paid by `account`, into the ticket wallet of
/// the client daemon in `data_dir` (`tickets.redb`; a client, SOCKS5 proxy or exit made by
/// `umbra … init` with a ledger). The validators and chain are the ones its `config.toml`
/// (`[ledger]`) and genesis file name. Purchases left unfinished by a crash are finished first,
/// without paying again (see docs/tickets.md).
///
/// ```no_run
/// # async fn example() -> Result<(), umbra_sdk::Error> {
/// let account = umbra_sdk::account_key("alice.key".as_ref())?;
/// let bought = umbra_sdk::buy_tickets("my-client".as_ref(), &account, 10).await?;
/// println!("{} tickets of key period {}", bought.count, bought.period);
/// # Ok(())
/// # }
/// ```
pub async fn buy_tickets(
    data_dir: &Path,
    account: &SigningKey,
    count: u32,
) -> Result<Bought, Error> {
    let (validators, chain_id) = umbra_client_daemons::tickets::ledger_of(data_dir)?;
    let wallet = umbra_client_daemons::tickets::wallet_of(data_dir)?;
    Ok(wallet.buy(&validators, &chain_id, account, count).await?)
}

/// Buys `count` bandwidth tickets (1 to 4,096), paid by `account`, into the ticket wallet of
/// an SDK client kept in `storage` (what [`ClientBuilder::storage`] names; made, private,
/// if missing), from `validators` of the chain whose genesis file is `genesis`. Call it
/// before [`ClientBuilder::connect`]: the running client spends from the same wallet.
///
/// ```no_run
/// # async fn example(validators: Vec<umbra_sdk::ValidatorUrl>) -> Result<(), umbra_sdk::Error> {
/// let account = umbra_sdk::account_key("alice.key".as_ref())?;
/// let storage = std::path::Path::new("my-wallet");
/// umbra_sdk::buy_tickets_into(storage, &validators, "genesis.json".as_ref(), &account, 10).await?;
/// let client = umbra_sdk::ClientBuilder::from_ledger(validators, "genesis.json".as_ref())?
///     .storage(storage)
///     .connect()
///     .await?;
/// # drop(client);
/// # Ok(())
/// # }
/// ```
pub async fn buy_tickets_into(
    storage: &Path,
    validators: &[ValidatorUrl],
    genesis: &Path,
    account: &SigningKey,
    count: u32,
) -> Result<Bought, Error> {
    let trust = TrustRoot::read(genesis)?;
    umbra_net::files::create_private_dir(storage)?;
    let wallet = TicketWallet::open(&storage.join(umbra_client_daemons::daemon::TICKETS_FILE))?;
    Ok(wallet
        .buy(validators, &trust.chain_id, account, count)
        .await?)
}

/// Reads an account's key file (as `umbra account new --out FILE` writes it).
pub fn account_key(path: &Path) -> Result<SigningKey, Error> {
    Ok(SigningKey::from_seed(read_key(path)?))
}

/// Sets a client up; [`ClientBuilder::connect`] starts it.
pub struct ClientBuilder {
    topology: Option<Topology>,
    directory: Option<Arc<Directory>>,
    gateway: Option<String>,
    keys: Option<ClientKeys>,
    storage: Option<PathBuf>,
    config: ClientConfig,
    connection: ConnectionConfig,
    connect_timeout: Duration,
    max_pending_bytes: usize,
}

impl ClientBuilder {
    /// A client of the network `topology` describes (a static topology: private test
    /// networks).
    pub fn new(topology: Topology) -> Self {
        ClientBuilder {
            topology: Some(topology),
            directory: None,
            gateway: None,
            keys: None,
            storage: None,
            config: ClientConfig::default(),
            connection: ConnectionConfig::default(),
            connect_timeout: Duration::from_secs(30),
            max_pending_bytes: umbra_client_daemons::client::DEFAULT_MAX_PENDING_BYTES,
        }
    }

    /// A client of the network whose validators are `validators` and whose genesis file (the
    /// trust root: the chain id and the validator set) is `genesis`. The client fetches each
    /// epoch's topology, checks its signatures against the genesis validators (refusing one
    /// that does not verify) and routes with the new one as each epoch begins.
    pub fn from_ledger(validators: Vec<ValidatorUrl>, genesis: &Path) -> Result<Self, Error> {
        let trust = TrustRoot::read(genesis)?;
        Ok(ClientBuilder {
            topology: None,
            directory: Some(Arc::new(Directory::new(validators, trust))),
            ..ClientBuilder::new(
                Topology::new(0, Vec::new())
                    .map_err(|error| Error::Setup(umbra_net::NodeError::Topology(error)))?,
            )
        })
    }

    /// A client of the network described in a topology file.
    pub fn from_topology_file(path: &Path) -> Result<Self, Error> {
        let json = std::fs::read_to_string(path).map_err(|source| umbra_net::NodeError::Read {
            path: path.to_owned(),
            source,
        })?;
        let topology = Topology::from_json(&json).map_err(|error| {
            Error::Setup(umbra_net::NodeError::invalid(path, error.to_string()))
        })?;
        Ok(ClientBuilder::new(topology))
    }

    /// The gateway to connect through, by id or Noise key (default: one at random). A
    /// client's address names its gateway: keep the same one to keep the address.
    pub fn gateway(mut self, gateway: impl Into<String>) -> Self {
        self.gateway = Some(gateway.into());
        self
    }

    /// The client's keys (default: fresh ones, or those in [`ClientBuilder::storage`]).
    pub fn keys(mut self, keys: ClientKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    /// A folder for the client's keys (made there the first time) and its outbox, so its
    /// address and the messages it has not yet delivered survive a restart. It is laid out
    /// as `umbra client init` does.
    pub fn storage(mut self, dir: &Path) -> Self {
        self.storage = Some(dir.to_owned());
        self
    }

    /// All the client's settings.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// The traffic settings alone.
    pub fn traffic(mut self, traffic: TrafficConfig) -> Self {
        self.config.traffic = traffic;
        self
    }

    /// How the client reaches its gateway.
    pub fn connection(mut self, connection: ConnectionConfig) -> Self {
        self.connection = connection;
        self
    }

    /// Bytes of messages sent and not yet delivered or given up on, at most (default 64 MiB);
    /// a send beyond is refused with [`CommandError::TooMuchPending`].
    pub fn max_pending_bytes(mut self, bytes: usize) -> Self {
        self.max_pending_bytes = bytes;
        self
    }

    /// How long [`ClientBuilder::connect`] waits for the gateway (default 30 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Starts the client and waits until its gateway has welcomed it.
    pub async fn connect(mut self) -> Result<MixnetClient, Error> {
        let stop = CancellationToken::new();
        // whatever fails below stops what was started
        let started = stop.clone().drop_guard();
        let (topology, topologies) = match (&self.directory, self.topology.take()) {
            (Some(directory), _) => {
                let first = tokio::time::timeout(self.connect_timeout, directory.first(&stop))
                    .await
                    .map_err(|_| Error::Timeout(self.connect_timeout))??;
                let topology = first.topology.clone();
                let refresh = Refresh::client(directory.trust());
                let (updates, _task) =
                    directory::follow(Arc::clone(directory), first, refresh, stop.clone());
                (topology, Some(updates))
            }
            (None, Some(topology)) => (topology, None),
            (None, None) => {
                return Err(Error::Gateway("the builder has no topology".into()));
            }
        };
        let gateway = match &self.gateway {
            Some(which) => {
                find_gateway(&topology, which).map_err(|error| Error::Gateway(error.to_string()))?
            }
            None => {
                let gateways: Vec<_> = topology.gateways().collect();
                if gateways.is_empty() {
                    return Err(Error::Gateway("the topology lists no gateway".into()));
                }
                gateways[rand::random_range(0..gateways.len())].clone()
            }
        };
        let gateway_address = gateway.client_address.ok_or_else(|| {
            Error::Gateway(format!("gateway {} has no client address", gateway.id))
        })?;
        let keys = match (self.keys, &self.storage) {
            (Some(keys), _) => keys,
            (None, Some(dir)) => stored_keys(dir)?,
            (None, None) => ClientKeys::generate(&mut rand::rng()),
        };
        let core = umbra_client::Client::new(
            self.config,
            keys.clone(),
            gateway.noise_key.0,
            topology,
            rand::random(),
            std::time::Instant::now(),
        )?;
        let setup = ClientSetup {
            gateway_address,
            gateway_key: gateway.noise_key,
            connection: self.connection,
            outbox: self.storage.as_ref().map(|dir| dir.join(OUTBOX_FILE)),
            max_pending_bytes: self.max_pending_bytes,
            // with storage and a ledger, the client pays gateways that demand tickets from its
            // wallet (`buy_tickets` fills it)
            tickets: match (&self.storage, &topologies) {
                (Some(dir), Some(_)) => Some(Arc::new(SharedWallet::new(TicketWallet::open(
                    &dir.join(umbra_client_daemons::daemon::TICKETS_FILE),
                )?)) as Arc<dyn TicketSource>),
                _ => None,
            },
            topologies,
        };
        let (handle, mut events, task) = shell::start(core, &keys, setup, stop.clone())?;
        // wait for the welcome, keeping what comes before it
        let mut early = Vec::new();
        let welcomed = tokio::time::timeout(self.connect_timeout, async {
            while let Some(event) = events.recv().await {
                let connected = matches!(event, ClientEvent::Connected { .. });
                early.push(event);
                if connected {
                    return true;
                }
            }
            false
        })
        .await;
        if !matches!(welcomed, Ok(true)) {
            stop.cancel();
            let _ = task.await;
            return Err(Error::Timeout(self.connect_timeout));
        }
        started.disarm();
        Ok(MixnetClient {
            sender: MixnetSender { handle },
            events,
            early: early.into(),
            stop,
            task,
        })
    }
}

/// The keys in `dir`, made there the first time.
fn stored_keys(dir: &Path) -> Result<ClientKeys, Error> {
    let identity = dir.join(IDENTITY_KEY_FILE);
    let encryption = dir.join(ENCRYPTION_KEY_FILE);
    if !identity.exists() && !encryption.exists() {
        umbra_net::files::create_private_dir(dir)?;
        let keys = ClientKeys::generate(&mut rand::rng());
        write_new_key(&identity, keys.identity_secret())?;
        write_new_key(&encryption, keys.encryption_secret())?;
        return Ok(keys);
    }
    Ok(ClientKeys::from_bytes(
        read_key(&identity)?,
        read_key(&encryption)?,
    ))
}

/// A message for the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// A message; with `reply_to`, its sender attached SURBs and can be replied to (without
    /// anyone learning who it is).
    Message {
        /// The message.
        data: Vec<u8>,
        /// The anonymous sender's tag, for [`MixnetClient::reply`].
        reply_to: Option<SenderTag>,
    },
    /// A reply through SURBs this client sent.
    Reply {
        /// Whom the SURBs were sent to.
        from: ClientAddress,
        /// The reply.
        data: Vec<u8>,
    },
}

/// Sends through a running client; clone it to send from several tasks.
#[derive(Clone, Debug)]
pub struct MixnetSender {
    handle: ClientHandle,
}

impl MixnetSender {
    /// The client's address.
    pub fn address(&self) -> ClientAddress {
        self.handle.address()
    }

    /// Sends a message; returns its id ([`ClientEvent::Sent`] carries it once delivered).
    pub async fn send(
        &self,
        to: &ClientAddress,
        message: impl Into<Vec<u8>>,
    ) -> Result<u64, Error> {
        Ok(self.handle.send(*to, message.into(), 0).await?)
    }

    /// Sends a message with `surbs` SURBs, so `to` can reply without learning who sent it.
    pub async fn send_with_surbs(
        &self,
        to: &ClientAddress,
        message: impl Into<Vec<u8>>,
        surbs: u16,
    ) -> Result<u64, Error> {
        Ok(self.handle.send(*to, message.into(), surbs).await?)
    }

    /// Replies to an anonymous sender through its SURBs.
    pub async fn reply(&self, to: SenderTag, message: impl Into<Vec<u8>>) -> Result<u64, Error> {
        Ok(self.handle.reply(to, message.into()).await?)
    }

    /// The client's state and counters.
    pub async fn status(&self) -> Result<ClientStatus, Error> {
        Ok(self.handle.status().await?)
    }
}

/// A running client of the mixnet.
pub struct MixnetClient {
    sender: MixnetSender,
    events: mpsc::Receiver<ClientEvent>,
    early: std::collections::VecDeque<ClientEvent>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl MixnetClient {
    /// The client's address, for others to send to.
    pub fn address(&self) -> ClientAddress {
        self.sender.address()
    }

    /// A sender to use from other tasks.
    pub fn sender(&self) -> MixnetSender {
        self.sender.clone()
    }

    /// Sends a message; see [`MixnetSender::send`].
    pub async fn send(
        &self,
        to: &ClientAddress,
        message: impl Into<Vec<u8>>,
    ) -> Result<u64, Error> {
        self.sender.send(to, message).await
    }

    /// Sends a message with SURBs; see [`MixnetSender::send_with_surbs`].
    pub async fn send_with_surbs(
        &self,
        to: &ClientAddress,
        message: impl Into<Vec<u8>>,
        surbs: u16,
    ) -> Result<u64, Error> {
        self.sender.send_with_surbs(to, message, surbs).await
    }

    /// Replies to an anonymous sender; see [`MixnetSender::reply`].
    pub async fn reply(&self, to: SenderTag, message: impl Into<Vec<u8>>) -> Result<u64, Error> {
        self.sender.reply(to, message).await
    }

    /// The client's state and counters.
    pub async fn status(&self) -> Result<ClientStatus, Error> {
        self.sender.status().await
    }

    /// The next event of any kind; `None` once the client has stopped.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        match self.early.pop_front() {
            Some(event) => Some(event),
            None => self.events.recv().await,
        }
    }

    /// The next message or reply, skipping other events; `None` once the client has stopped.
    pub async fn receive(&mut self) -> Option<Received> {
        loop {
            match self.next_event().await? {
                ClientEvent::Received { message, reply_to } => {
                    return Some(Received::Message {
                        data: message,
                        reply_to,
                    });
                }
                ClientEvent::Reply { from, message, .. } => {
                    return Some(Received::Reply {
                        from,
                        data: message,
                    });
                }
                _ => continue,
            }
        }
    }

    /// The client as the drivers in `umbra_net` take it (the SOCKS5 proxy,
    /// `umbra_client_daemons::socks5::run`, and the exit service, `umbra_client_daemons::exit::service::run`): a
    /// handle to send with, its events, and the task to stop it with. Only status events
    /// came before the gateway's welcome, so none that matter are left behind.
    pub fn into_parts(self) -> (ClientHandle, mpsc::Receiver<ClientEvent>, ClientTask) {
        let task = ClientTask {
            stop: self.stop,
            task: self.task,
        };
        (self.sender.handle, self.events, task)
    }

    /// Turns the client into byte streams to the exit service at `settings.exit`: TCP-like
    /// connections (tokio `AsyncRead + AsyncWrite`) to hosts and ports the exit connects to,
    /// as a SOCKS5 proxy would carry them, but inside this process. [`http::MixnetConnector`]
    /// puts `hyper` on them. Host names are resolved by the exit, never here.
    ///
    /// The client carries nothing else from then on. Streams end in an error (never a quiet
    /// end of data) once the client stops: [`ClientTask::disconnect`] stops it.
    ///
    /// ```no_run
    /// # async fn example(client: umbra_sdk::MixnetClient, exit: umbra_sdk::ClientAddress) -> Result<(), Box<dyn std::error::Error>> {
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// use umbra_sdk::StreamSettings;
    ///
    /// let (streams, client) = client.into_streams(StreamSettings::new(exit))?;
    /// let mut stream = streams.open("example.org", 80).await?;
    /// stream.write_all(b"GET / HTTP/1.0\r\nHost: example.org\r\n\r\n").await?;
    /// stream.shutdown().await?; // a half-close: the answer still comes
    /// let mut answer = Vec::new();
    /// stream.read_to_end(&mut answer).await?; // an error, not a short answer, if it broke
    /// client.disconnect().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_streams(
        self,
        settings: StreamSettings,
    ) -> Result<(MixnetStreams, ClientTask), Error> {
        let (handle, events, task) = self.into_parts();
        let (streams, _driver) = umbra_client_daemons::streams::start(handle, events, settings)
            .map_err(Error::StreamSettings)?;
        // the driver ends by itself when the client stops, or when nothing uses it
        Ok((streams, task))
    }

    /// Stops the client: confirms what it received to the gateway and closes the session.
    /// Messages not yet delivered stay in the outbox (with [`ClientBuilder::storage`]) and
    /// go out at the next start.
    pub async fn disconnect(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// A running client taken apart by [`MixnetClient::into_parts`].
pub struct ClientTask {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ClientTask {
    /// Stops the client, as [`MixnetClient::disconnect`] does.
    pub async fn disconnect(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
