//! The BFT sequencer: several validators, each its own process, agree on every block with
//! Malachite (Tendermint-style BFT: a block is decided once validators with more than 2/3 of
//! the voting power precommit it, and nothing decided is ever undone while more than 2/3 are
//! honest).
//!
//! How Umbra uses it:
//! - The value consensus decides is a block's hash. The proposer streams the block itself to
//!   the others as one proposal part; each validator checks it against its own chain (height,
//!   parent, time) before voting for its hash.
//! - A decided block is committed to redb with its commit certificate. A validator that was
//!   down asks the others for the blocks it missed, with their certificates (value sync), and
//!   after a restart rebuilds its state from its own stored blocks first.
//! - Transactions a validator accepts (from its API or its own duties) are relayed to the other
//!   validators' APIs (`POST /relay`), so whichever validator proposes next includes them.
//! - A proposer with nothing to include waits up to `idle_block_interval` for a transaction
//!   before proposing an empty block, so an idle chain makes a block every few seconds instead
//!   of as fast as it can.

pub mod codec;
pub mod context;
pub mod signing;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::ValidatorError;
use bytes::Bytes;
use malachitebft_app::config::{
    ConsensusConfig, NodeConfig, P2pConfig, PubSubProtocol, ValueSyncConfig,
};
use malachitebft_app::types::streaming::{StreamId, StreamMessage};
use malachitebft_app::types::sync::RawDecidedValue;
use malachitebft_app::types::{Keypair, LocallyProposedValue, PeerId, ProposedValue};
use malachitebft_app_channel::{
    AppMsg, Channels, ConsensusContext, NetworkContext, NetworkIdentity, NetworkMsg,
    RequestContext, SyncContext, WalContext,
};
use malachitebft_codec::Codec;
use malachitebft_core_types::{
    ExtendedCommitCertificate, HeightParams, LinearTimeouts, Round, Validity,
};
use malachitebft_engine::host::{Next, SyncedValueOutcome};
use malachitebft_engine::network::Multiaddr;
use malachitebft_engine::util::streaming::StreamContent;
use malachitebft_signing::Signer;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use umbra_ledger::{Block, SigningKey, Transaction};

use crate::Sequencer;
use crate::api::Counters;
use crate::chain::Chain;
use crate::duties::Duties;
use codec::{UmbraCodec, decode_certificate, encode_certificate};
use context::{Address, BlockHash, Height, ProposalPart, UmbraContext, ValidatorSet};
use signing::{UmbraSigner, UmbraVerifier};

/// How far ahead of this validator's clock a proposed block's time may be.
const MAX_CLOCK_DRIFT_MS: u64 = 10_000;
/// How many undecided proposals are kept at most (a flood of them is dropped, oldest first).
const MAX_PENDING: usize = 1_024;
/// How many blocks one sync answer carries at most.
const MAX_SYNC_BATCH: u64 = 100;

/// The `[consensus]` section of a BFT validator's `config.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusSettings {
    /// Where this validator listens for the other validators (TCP).
    pub p2p_address: SocketAddr,
    /// The other validators' p2p addresses.
    #[serde(default)]
    pub peers: Vec<SocketAddr>,
    /// The other validators' HTTP APIs, to relay transactions to.
    #[serde(default)]
    pub relay_to: Vec<SocketAddr>,
    /// How long a proposer with no transaction waits for one before proposing an empty block.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_block_interval: Duration,
    /// How long validators wait for a round's proposal before voting nil (grows by half a
    /// second each round).
    #[serde(default = "default_propose_timeout", with = "humantime_serde")]
    pub propose_timeout: Duration,
}

fn default_idle() -> Duration {
    Duration::from_secs(2)
}

fn default_propose_timeout() -> Duration {
    Duration::from_secs(3)
}

impl ConsensusSettings {
    /// Settings with the defaults for everything but the addresses.
    pub fn new(p2p_address: SocketAddr) -> ConsensusSettings {
        ConsensusSettings {
            p2p_address,
            peers: Vec::new(),
            relay_to: Vec::new(),
            idle_block_interval: default_idle(),
            propose_timeout: default_propose_timeout(),
        }
    }
}

fn multiaddr(address: SocketAddr) -> Multiaddr {
    use malachitebft_engine::network::Multiaddr as M;
    let text = match address {
        SocketAddr::V4(v4) => format!("/ip4/{}/tcp/{}", v4.ip(), v4.port()),
        SocketAddr::V6(v6) => format!("/ip6/{}/tcp/{}", v6.ip(), v6.port()),
    };
    // both forms always parse
    text.parse::<M>().unwrap_or_else(|_| M::empty())
}

#[derive(Clone, Debug)]
struct EngineConfig {
    moniker: String,
    consensus: ConsensusConfig,
    value_sync: ValueSyncConfig,
}

impl NodeConfig for EngineConfig {
    fn moniker(&self) -> &str {
        &self.moniker
    }

    fn consensus(&self) -> &ConsensusConfig {
        &self.consensus
    }

    fn consensus_mut(&mut self) -> &mut ConsensusConfig {
        &mut self.consensus
    }

    fn value_sync(&self) -> &ValueSyncConfig {
        &self.value_sync
    }

    fn value_sync_mut(&mut self) -> &mut ValueSyncConfig {
        &mut self.value_sync
    }
}

/// Several validators agree on each block with Malachite.
pub struct Bft {
    /// This validator's consensus key (its validator key).
    pub key: SigningKey,
    /// Networking and timing.
    pub settings: ConsensusSettings,
    /// Where the engine keeps its write-ahead log.
    pub wal: PathBuf,
    /// The most transactions in one block.
    pub max_block_transactions: usize,
}

impl Sequencer for Bft {
    async fn run(
        self,
        chain: Arc<Chain>,
        duties: Duties,
        counters: Arc<Counters>,
        shutdown: CancellationToken,
    ) -> Result<(), ValidatorError> {
        let chain_id = chain.genesis().chain_id.clone();
        let ctx = UmbraContext {
            chain_id: chain_id.clone(),
        };
        let address = Address::from(self.key.public());
        let mut seed = self.key.seed();
        let keypair = Keypair::ed25519_from_bytes(&mut seed)
            .map_err(|error| ValidatorError::NetworkIdentity(error.to_string()))?;
        let peer_id = keypair.public().to_peer_id();
        let signer = UmbraSigner::new(SigningKey::from_seed(self.key.seed()), chain_id.clone());
        let proof = signer
            .sign_validator_proof(self.key.public().0.to_vec(), peer_id.to_bytes())
            .await
            .map_err(|error| ValidatorError::NetworkIdentity(error.to_string()))?;
        let proof_bytes = UmbraCodec
            .encode(&proof)
            .map_err(|error| ValidatorError::Encode {
                what: "the validator proof",
                problem: error.to_string(),
            })?;
        let identity = NetworkIdentity::new_validator(
            address.to_string(),
            keypair,
            address.to_string(),
            proof_bytes,
        );

        // validators of a test or local network share one IP address
        let discovery = malachitebft_app::config::DiscoveryConfig {
            max_connections_per_ip: 64,
            ..Default::default()
        };
        let config = EngineConfig {
            moniker: address.to_string(),
            consensus: ConsensusConfig {
                p2p: P2pConfig {
                    listen_addr: multiaddr(self.settings.p2p_address),
                    persistent_peers: self.settings.peers.iter().copied().map(multiaddr).collect(),
                    discovery,
                    protocol: PubSubProtocol::Broadcast,
                    ..P2pConfig::default()
                },
                ..ConsensusConfig::default()
            },
            value_sync: ValueSyncConfig {
                status_update_interval: Duration::from_secs(1),
                request_timeout: Duration::from_secs(5),
                ..ValueSyncConfig::default()
            },
        };
        let (mut channels, engine) = malachitebft_app_channel::start_engine(
            ctx,
            config,
            WalContext::new(self.wal.clone(), UmbraCodec),
            NetworkContext::new(identity, UmbraCodec),
            ConsensusContext::new_validator(
                address,
                Box::new(UmbraVerifier {
                    chain_id: chain_id.clone(),
                }),
                Box::new(signer),
            ),
            SyncContext::new(UmbraCodec),
            RequestContext::new(100),
        )
        .await
        .map_err(|error| ValidatorError::EngineStart(format!("{error:#}")))?;
        // the engine made its log with the default mode
        umbra_net::files::prepare_private_file(&self.wal)?;
        info!(
            p2p = %self.settings.p2p_address,
            peers = self.settings.peers.len(),
            "consensus engine started"
        );

        let (relay_tx, relay_rx) = tokio::sync::mpsc::unbounded_channel();
        chain.relay_to(relay_tx);
        let relay = tokio::spawn(relay(
            relay_rx,
            self.settings.relay_to.clone(),
            shutdown.clone(),
        ));
        let duty_task = tokio::spawn(submit_duties(Arc::clone(&chain), duties, shutdown.clone()));

        let timeouts = LinearTimeouts {
            propose: self.settings.propose_timeout,
            ..LinearTimeouts::default()
        };
        let mut app = App {
            validators: ValidatorSet::from_genesis(chain.genesis()),
            timeouts,
            chain,
            counters,
            address,
            settings: self.settings,
            max_block_transactions: self.max_block_transactions,
            pending: BTreeMap::new(),
            streams: HashMap::new(),
            missing: None,
        };
        let result = loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => break Ok(()),
                message = channels.consensus.recv() => message,
            };
            let Some(message) = message else {
                break Err(ValidatorError::EngineStopped("engine"));
            };
            if let Err(error) = app.handle(message, &mut channels, &shutdown).await {
                break Err(error);
            }
        };
        shutdown.cancel();
        engine.actor.stop(None);
        let _ = engine.handle.await;
        let _ = relay.await;
        let _ = duty_task.await;
        result
    }
}

/// Submits this validator's duties (beacon reveal, topology signature, the end of an epoch) as
/// they fall due. The epoch's end is first the turn of one validator; the others step in if
/// it has not happened a few seconds later.
async fn submit_duties(chain: Arc<Chain>, duties: Duties, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        duties.prepare_issuer_keys(&chain).await;
        let now = crate::now_ms();
        let nonce = chain.next_nonce(&duties.key());
        let due = chain.read(|state| duties.due(state, now, nonce, 5_000));
        for transaction in due {
            if chain.is_queued(&transaction.hash()) {
                continue;
            }
            if let Err(rejected) = chain.submit(transaction, now) {
                debug!(%rejected, "own duty transaction not queued");
            }
        }
    }
}

/// Sends the transactions this validator accepted to the other validators, in batches.
async fn relay(
    mut accepted: tokio::sync::mpsc::UnboundedReceiver<Transaction>,
    peers: Vec<SocketAddr>,
    shutdown: CancellationToken,
) {
    let clients: Vec<_> = peers
        .iter()
        .map(|peer| umbra_net::ledger::LedgerClient::new(*peer))
        .collect();
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => return,
            first = accepted.recv() => first,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < 1_000 {
            match accepted.try_recv() {
                Ok(transaction) => batch.push(transaction),
                Err(_) => break,
            }
        }
        let sends = clients.iter().map(|client| {
            let batch = &batch;
            async move {
                let relayed: Result<crate::api::Relayed, _> = client.post("/relay", batch).await;
                if let Err(error) = relayed {
                    debug!(%error, "relaying transactions to a validator failed");
                }
            }
        });
        futures_util::future::join_all(sends).await;
    }
}

/// An undecided block this validator has seen, with what consensus needs to know about it.
struct Pending {
    block: Block,
    round: Round,
    valid_round: Round,
    proposer: Address,
    /// Whether this validator checked it at its height (future blocks wait for their height).
    checked: Option<Validity>,
}

struct App {
    validators: ValidatorSet,
    timeouts: LinearTimeouts,
    chain: Arc<Chain>,
    counters: Arc<Counters>,
    address: Address,
    settings: ConsensusSettings,
    max_block_transactions: usize,
    /// Undecided blocks by hash.
    pending: BTreeMap<BlockHash, Pending>,
    /// Proposal streams being received: the part, once it came, and whether the end did.
    streams: HashMap<(PeerId, StreamId), (Option<ProposalPart>, bool)>,
    /// A height decided without this validator having the block.
    missing: Option<Height>,
}

impl App {
    fn params(&self) -> HeightParams<UmbraContext> {
        HeightParams::new(self.validators.clone(), self.timeouts, None)
    }

    fn next_height(&self) -> Height {
        Height(self.chain.read(|state| state.height()) + 1)
    }

    /// Whether `block` can follow this validator's chain.
    fn check(&self, block: &Block) -> Validity {
        let now = crate::now_ms();
        let ok = self.chain.read(|state| {
            block.height == state.height() + 1
                && block.parent == state.last_block()
                && block.time_ms >= state.time_ms()
                && block.time_ms <= now + MAX_CLOCK_DRIFT_MS
                && block.transactions.len() <= self.max_block_transactions
        });
        Validity::from_bool(ok)
    }

    fn remember(
        &mut self,
        block: Block,
        round: Round,
        valid_round: Round,
        proposer: Address,
    ) -> BlockHash {
        let hash = BlockHash::of(&block);
        if self.pending.len() >= MAX_PENDING {
            // the oldest heights go first
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, pending)| pending.block.height)
                .map(|(hash, _)| *hash);
            if let Some(oldest) = oldest {
                self.pending.remove(&oldest);
            }
        }
        self.pending.entry(hash).or_insert(Pending {
            block,
            round,
            valid_round,
            proposer,
            checked: None,
        });
        hash
    }

    /// The proposed value for a pending block checked at the current height (`None` for a
    /// block of a later height, which waits).
    fn proposed(&mut self, hash: BlockHash) -> Option<ProposedValue<UmbraContext>> {
        let next = self.next_height();
        let pending = self.pending.get(&hash)?;
        if Height(pending.block.height) != next {
            return None;
        }
        let validity = match pending.checked {
            Some(validity) => validity,
            None => {
                let validity = self.check(&pending.block);
                if let Some(pending) = self.pending.get_mut(&hash) {
                    pending.checked = Some(validity);
                }
                validity
            }
        };
        let pending = self.pending.get(&hash)?;
        if validity == Validity::Invalid {
            warn!(height = next.0, proposer = %pending.proposer, "refused an invalid proposed block");
        }
        Some(ProposedValue {
            height: next,
            round: pending.round,
            valid_round: pending.valid_round,
            proposer: pending.proposer,
            value: hash,
            validity,
        })
    }

    async fn publish(
        &self,
        channels: &mut Channels<UmbraContext>,
        block: &Block,
        round: Round,
        valid_round: Round,
    ) -> Result<(), ValidatorError> {
        let bytes = serde_json::to_vec(block).map_err(|error| ValidatorError::Encode {
            what: "a proposed block",
            problem: error.to_string(),
        })?;
        let mut id = block.height.to_be_bytes().to_vec();
        id.extend_from_slice(&round.as_i64().to_be_bytes());
        let stream = StreamId::new(Bytes::from(id));
        let part = ProposalPart {
            height: Height(block.height),
            round,
            valid_round,
            proposer: self.address,
            block: bytes,
        };
        for message in [
            StreamMessage::new(stream.clone(), 0, StreamContent::Data(part)),
            StreamMessage::new(stream, 1, StreamContent::Fin),
        ] {
            channels
                .network
                .send(NetworkMsg::PublishProposalPart(message))
                .await
                .map_err(|_| ValidatorError::EngineStopped("network"))?;
        }
        Ok(())
    }

    async fn handle(
        &mut self,
        message: AppMsg<UmbraContext>,
        channels: &mut Channels<UmbraContext>,
        shutdown: &CancellationToken,
    ) -> Result<(), ValidatorError> {
        match message {
            AppMsg::ConsensusReady { reply } => {
                let height = self.next_height();
                info!(height = height.0, "consensus ready");
                let _ = reply.send((height, self.params()));
            }
            AppMsg::StartedRound {
                height,
                round,
                reply_value,
                ..
            } => {
                // blocks that arrived before this validator reached their height
                let waiting: Vec<BlockHash> = self
                    .pending
                    .iter()
                    .filter(|(_, pending)| {
                        Height(pending.block.height) == height && pending.round == round
                    })
                    .map(|(hash, _)| *hash)
                    .collect();
                let values = waiting
                    .into_iter()
                    .filter_map(|hash| self.proposed(hash))
                    .collect();
                let _ = reply_value.send(values);
            }
            AppMsg::GetValue {
                height,
                round,
                timeout,
                reply,
            } => {
                if self.chain.queued() == 0 {
                    let wait = self.settings.idle_block_interval.min(timeout / 2);
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = self.chain.arrived() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                let block = self
                    .chain
                    .propose(crate::now_ms(), self.max_block_transactions);
                if Height(block.height) != height {
                    warn!(
                        height = height.0,
                        "asked to propose for a height this validator is not at"
                    );
                    return Ok(());
                }
                self.publish(channels, &block, round, Round::Nil).await?;
                let hash = self.remember(block, round, Round::Nil, self.address);
                if let Some(pending) = self.pending.get_mut(&hash) {
                    pending.checked = Some(Validity::Valid);
                }
                let _ = reply.send(LocallyProposedValue::new(height, round, hash));
            }
            AppMsg::RestreamProposal {
                round,
                valid_round,
                value_id,
                ..
            } => {
                if let Some(pending) = self.pending.get(&value_id) {
                    let block = pending.block.clone();
                    self.publish(channels, &block, round, valid_round).await?;
                }
            }
            AppMsg::ReceivedProposalPart {
                from,
                published_by,
                part,
                reply,
            } => {
                let key = (published_by.unwrap_or(from), part.stream_id.clone());
                if !self.streams.contains_key(&key) && self.streams.len() >= MAX_PENDING {
                    self.streams.clear();
                }
                let entry = self.streams.entry(key.clone()).or_insert((None, false));
                match part.content {
                    StreamContent::Data(data) => entry.0 = Some(data),
                    StreamContent::Fin => entry.1 = true,
                }
                let complete = matches!(entry, (Some(_), true));
                let mut answer = None;
                if complete && let Some((Some(part), _)) = self.streams.remove(&key) {
                    match serde_json::from_slice::<Block>(&part.block) {
                        Ok(block) if block.height == part.height.0 => {
                            if block.height >= self.next_height().0 {
                                let hash = self.remember(
                                    block,
                                    part.round,
                                    part.valid_round,
                                    part.proposer,
                                );
                                answer = self.proposed(hash);
                            }
                        }
                        _ => {
                            self.counters
                                .malformed_proposals
                                .fetch_add(1, Ordering::Relaxed);
                            debug!("a malformed proposed block was dropped");
                        }
                    }
                }
                let _ = reply.send(answer);
            }
            AppMsg::ExtendVote { reply, .. } => {
                let _ = reply.send(None);
            }
            AppMsg::VerifyVoteExtensions {
                extensions, reply, ..
            } => {
                let _ = reply.send(
                    extensions
                        .into_iter()
                        .map(|(address, _)| (address, Ok(())))
                        .collect(),
                );
            }
            AppMsg::Decided {
                certificate,
                extensions,
                reply,
            } => {
                let Some(pending) = self.pending.get(&certificate.value_id) else {
                    // decided from votes this validator saw (e.g. replayed from its write-ahead
                    // log after a restart) without the block itself: restart the height, and
                    // value sync fetches the block with its certificate from the others
                    warn!(
                        height = certificate.height.0,
                        "a block was decided that this validator does not have; fetching it"
                    );
                    self.missing = Some(certificate.height);
                    let _ = reply.send(());
                    return Ok(());
                };
                let block = pending.block.clone();
                let extended = ExtendedCommitCertificate::from_commit_certificate_and_extensions(
                    certificate,
                    extensions,
                );
                let bytes =
                    encode_certificate(&extended).map_err(|error| ValidatorError::Encode {
                        what: "a commit certificate",
                        problem: error.to_string(),
                    })?;
                let chain = Arc::clone(&self.chain);
                let committed = block.clone();
                let outcomes = tokio::task::spawn_blocking(move || {
                    chain.commit_certified(&committed, Some(&bytes))
                })
                .await
                .map_err(|_| ValidatorError::Panicked("task committing a block"))??;
                let failed = outcomes.iter().filter(|outcome| outcome.is_err()).count();
                self.counters.blocks.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .applied
                    .fetch_add((outcomes.len() - failed) as u64, Ordering::Relaxed);
                self.counters
                    .failed
                    .fetch_add(failed as u64, Ordering::Relaxed);
                self.pending
                    .retain(|_, pending| pending.block.height > block.height);
                debug!(
                    height = block.height,
                    transactions = outcomes.len(),
                    failed,
                    "block committed"
                );
                if block.transactions.iter().any(|transaction| {
                    matches!(transaction.action, umbra_ledger::Action::AdvanceEpoch)
                }) {
                    let epoch = self.chain.read(|state| state.epoch().number);
                    info!(height = block.height, epoch, "epoch started");
                }
                let _ = reply.send(());
            }
            AppMsg::Finalized { reply, .. } => {
                let next = match self.missing.take() {
                    Some(height) => Next::Restart(height, self.params()),
                    None => Next::Start(self.next_height(), self.params()),
                };
                let _ = reply.send(next);
            }
            AppMsg::GetHistoryMinHeight { reply } => {
                let _ = reply.send(Height(1));
            }
            AppMsg::GetDecidedValues { range, reply } => {
                let chain = Arc::clone(&self.chain);
                let (start, end) = (range.start().0, range.end().0);
                let values = tokio::task::spawn_blocking(move || decided(&chain, start, end))
                    .await
                    .map_err(|_| ValidatorError::Panicked("task reading decided blocks"))?;
                let _ = reply.send(values);
            }
            AppMsg::ProcessSyncedValue {
                height,
                round,
                proposer,
                value_bytes,
                reply,
            } => {
                let outcome = match serde_json::from_slice::<Block>(&value_bytes) {
                    Ok(block) if block.height == height.0 => {
                        let hash = self.remember(block, round, Round::Nil, proposer);
                        match self.proposed(hash) {
                            Some(value) => SyncedValueOutcome::Verdict(value),
                            None => SyncedValueOutcome::LocalTransientError,
                        }
                    }
                    _ => SyncedValueOutcome::PeerFault,
                };
                let _ = reply.send(outcome);
            }
        }
        Ok(())
    }
}

/// The stored blocks `start..=end` (at most [`MAX_SYNC_BATCH`]) with their certificates, for a
/// validator catching up. Stops at the first height without both.
fn decided(chain: &Chain, start: u64, end: u64) -> Vec<RawDecidedValue<UmbraContext>> {
    let mut values = Vec::new();
    for height in start..=end.min(start.saturating_add(MAX_SYNC_BATCH - 1)) {
        let (Ok(Some(block)), Ok(Some(certificate))) = (
            chain.store().block_bytes(height),
            chain.store().certificate(height),
        ) else {
            break;
        };
        let Ok(certificate) = decode_certificate(&certificate) else {
            break;
        };
        values.push(RawDecidedValue::new(Bytes::from(block), certificate));
    }
    values
}
