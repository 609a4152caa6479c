//! Reading the ledger: the latest snapshot, refreshed every `refresh.interval` and right after
//! each epoch's end, from the first validator that answers. Pages are served from the cache,
//! so a validator that stops answering leaves the last snapshot in place, marked stale.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use umbra_ledger::api::{DelegationView, EpochView, NodeView, StatusView};
use umbra_ledger::state::EpochReport;
use umbra_ledger::{Genesis, SignedTopology};
use umbra_net::directory::ValidatorUrl;
use umbra_net::ledger::{LedgerClient, LedgerError};

use crate::render::html::Freshness;
use crate::snapshot::{EpochSeen, LedgerData, Snapshot};

/// The time now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// The latest snapshot and how fresh it is, shared by the poller and the pages.
#[derive(Default)]
pub struct Cache {
    inner: Mutex<Inner>,
    /// Reads of the ledger that succeeded.
    pub refreshes_ok: AtomicU64,
    /// Reads that failed (every validator).
    pub refreshes_failed: AtomicU64,
}

#[derive(Default)]
struct Inner {
    snapshot: Option<Arc<Snapshot>>,
    freshness: Freshness,
    /// The validator that answered last, for on-demand reads (an account's balance).
    answering: Option<LedgerClient>,
}

impl Cache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The latest snapshot, if any was ever fetched, and how fresh it is.
    pub fn current(&self) -> (Option<Arc<Snapshot>>, Freshness) {
        let inner = self.lock();
        (inner.snapshot.clone(), inner.freshness.clone())
    }

    /// The validator that answered last.
    pub fn answering(&self) -> Option<LedgerClient> {
        self.lock().answering.clone()
    }

    /// Puts a new snapshot in place.
    pub fn store(&self, snapshot: Snapshot, client: LedgerClient) {
        let mut inner = self.lock();
        inner.freshness = Freshness {
            validator: snapshot.validator.clone(),
            last_answer_ms: Some(snapshot.fetched_ms),
            failing: None,
        };
        inner.snapshot = Some(Arc::new(snapshot));
        inner.answering = Some(client);
        self.refreshes_ok.fetch_add(1, Ordering::Relaxed);
    }

    /// The ledger is where it was: the snapshot is fresh as of `now_ms`.
    pub fn confirm(&self, validator: String, client: LedgerClient, now_ms: u64) {
        let mut inner = self.lock();
        inner.freshness = Freshness {
            validator,
            last_answer_ms: Some(now_ms),
            failing: None,
        };
        inner.answering = Some(client);
        self.refreshes_ok.fetch_add(1, Ordering::Relaxed);
    }

    /// No validator answered: `validator` is the one asked last, `reason` why it failed.
    pub fn failed(&self, validator: String, reason: String) {
        let mut inner = self.lock();
        inner.freshness.validator = validator;
        inner.freshness.failing = Some(reason);
        self.refreshes_failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads the ledger until `stop`, keeping `cache` up to date.
pub async fn poll(
    validators: Vec<ValidatorUrl>,
    genesis: Arc<Genesis>,
    interval: Duration,
    cache: Arc<Cache>,
    stop: CancellationToken,
) {
    let mut seen: BTreeMap<u64, EpochSeen> = BTreeMap::new();
    let mut was_failing = false;
    loop {
        let previous = cache.current().0;
        match refresh(&validators, &genesis, previous.as_deref(), &mut seen).await {
            Ok(Refreshed::Same { validator, client }) => {
                cache.confirm(validator, client, now_ms());
                was_failing = false;
            }
            Ok(Refreshed::New { snapshot, client }) => {
                debug!(height = snapshot.data.status.height, "the ledger moved");
                if was_failing {
                    info!(validator = %snapshot.validator, "the validator answers again");
                }
                cache.store(*snapshot, client);
                was_failing = false;
            }
            Err((validator, reason)) => {
                if !was_failing {
                    warn!(%validator, %reason, "no validator answered; the pages show the last snapshot");
                }
                cache.failed(validator, reason);
                was_failing = true;
            }
        }
        // the next read: after the interval, or just after the epoch's end if sooner
        let mut wait = interval;
        if let Some(snapshot) = cache.current().0 {
            let until_end = snapshot.data.epoch.end_ms.saturating_sub(now_ms()) + 500;
            wait = wait.min(Duration::from_millis(until_end));
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

enum Refreshed {
    /// The chain is at the height of the cached snapshot.
    Same {
        validator: String,
        client: LedgerClient,
    },
    /// A new snapshot.
    New {
        snapshot: Box<Snapshot>,
        client: LedgerClient,
    },
}

/// Reads the ledger from the first validator of `validators` that answers. On failure, the
/// last validator asked and why.
async fn refresh(
    validators: &[ValidatorUrl],
    genesis: &Arc<Genesis>,
    previous: Option<&Snapshot>,
    seen: &mut BTreeMap<u64, EpochSeen>,
) -> Result<Refreshed, (String, String)> {
    let mut failure = (String::new(), "no validator is configured".to_owned());
    for url in validators {
        let validator = url.to_string();
        let client = match url.resolve().await {
            Ok(address) => LedgerClient::new(address),
            Err(error) => {
                failure = (validator, error.to_string());
                continue;
            }
        };
        match read(&client, &validator, genesis, previous, seen).await {
            Ok(Some(snapshot)) => {
                return Ok(Refreshed::New {
                    snapshot: Box::new(snapshot),
                    client,
                });
            }
            Ok(None) => return Ok(Refreshed::Same { validator, client }),
            Err(error) => failure = (validator, error),
        }
    }
    Err(failure)
}

/// One validator's answers: `None` if the chain has not moved since `previous`.
async fn read(
    client: &LedgerClient,
    validator: &str,
    genesis: &Arc<Genesis>,
    previous: Option<&Snapshot>,
    seen: &mut BTreeMap<u64, EpochSeen>,
) -> Result<Option<Snapshot>, String> {
    let text = |error: LedgerError| error.to_string();
    let status: StatusView = client.get("/status").await.map_err(text)?;
    if status.chain_id != genesis.chain_id {
        return Err(format!(
            "it serves chain {:?}, but the genesis file is for {:?}: wrong validator, or wrong genesis file",
            status.chain_id, genesis.chain_id
        ));
    }
    if let Some(previous) = previous
        && previous.data.status.height == status.height
        && previous.data.status.last_block == status.last_block
    {
        return Ok(None);
    }
    let nodes: Vec<NodeView> = client.get("/nodes").await.map_err(text)?;
    let delegations: Vec<DelegationView> = client.get("/delegations").await.map_err(text)?;
    let epoch: EpochView = client.get("/epoch").await.map_err(text)?;
    // past epochs change only at an epoch's end: read them again only then
    let history: Vec<EpochReport> = match previous {
        Some(previous) if previous.data.epoch.epoch == epoch.epoch => previous.data.history.clone(),
        _ => client.get("/epochs").await.map_err(text)?,
    };
    let topology = match client.get::<SignedTopology>("/topology").await {
        Ok(signed) => match signed.verify(&genesis.chain_id, &genesis.validator_keys()) {
            Ok(()) => Some(signed),
            Err(error) => {
                warn!(%validator, %error, "the validator serves a topology whose certificate does not hold: not shown");
                None
            }
        },
        // 503 before the first epoch is certified
        Err(LedgerError::Refused { status: 503, .. }) => None,
        Err(error) => return Err(error.to_string()),
    };
    record(seen, &epoch, topology.as_ref(), genesis);
    let data = LedgerData {
        status,
        nodes,
        delegations,
        epoch,
        history,
        topology,
    };
    Ok(Some(Snapshot::new(
        Arc::clone(genesis),
        data,
        seen.clone(),
        now_ms(),
        validator.to_owned(),
    )))
}

/// Notes what the ledger forgets: the current epoch's seed and who signed its topology.
/// (Public for the benchmark, which replays what a poller would have seen epoch by epoch.)
pub fn record(
    seen: &mut BTreeMap<u64, EpochSeen>,
    epoch: &EpochView,
    topology: Option<&SignedTopology>,
    genesis: &Genesis,
) {
    seen.entry(epoch.epoch).or_default().seed = Some(epoch.seed);
    if let Some(signed) = topology {
        seen.entry(signed.document.epoch).or_default().signers = signed
            .certificate
            .signatures
            .iter()
            .map(|(key, _)| *key)
            .collect();
    }
    // as many epochs as the ledger reports, and the current one
    let keep = u64::from(genesis.params.history_epochs) + 1;
    seen.retain(|&number, _| number + keep > epoch.epoch);
}
