//! The gateway's bandwidth tickets on disk, and the task that redeems them on the ledger
//! (docs/ledger.md, "Bandwidth tickets").
//!
//! A ticket a client presents is recorded here ([`TicketStore::spend`]) in one durable write,
//! with the client's credit after it, before the core credits the client: a ticket the gateway
//! served is on disk, so it is redeemed even if the gateway is killed right after. The
//! [`redeem`] task takes what waits, in batches of at most [`MAX_REDEEM_TICKETS`], and submits
//! `Redeem` transactions signed with the gateway's identity key (the ledger pays its owner).
//!
//! Crash safety of a redemption: the exact signed transaction and the tickets it covers are
//! written here before it is submitted. Until the ledger has decided it, no other transaction
//! carries those tickets; after a restart the task asks the ledger about that transaction
//! (`GET /tx/{hash}`): committed → done; refused → see below; unknown and its nonce still free →
//! the same transaction again; unknown and its nonce used by another transaction → it can never
//! be committed, and its tickets go into a new one. So a serial is never in two committed
//! transactions, which the ledger would record as a double spend by this very gateway.
//!
//! A redemption the ledger refuses whole because of one ticket (`BadTicket { index }`, e.g. a
//! key period that expired while it waited) drops that ticket and retries the rest; tickets of
//! periods older than the ledger's `current_period − 1` are dropped before submitting.
//!
//! Tables: `spent`, keyed by key period (big-endian) ‖ serial, with the ticket's state
//! (waiting, redeemed, dropped): the double-spend check, pruned once a period can no longer be
//! presented; `tickets`, the bytes of the waiting ones, same key, deleted once redeemed or
//! dropped; `credits`, each client's remaining bytes, with `by_credit` (credit ‖ client) to
//! find the smallest when the map is full; `pending`, the one redemption in flight; `meta`,
//! counters.

// The gateway runtime starts using this module with issue 17's metering; until then only the
// tests call it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use umbra_ledger::api::{IssuersView, TicketStatsView, TxStatus};
use umbra_ledger::{
    Action, Amount, Hash, MAX_REDEEM_TICKETS, NodeId, PPM, SigningKey, Transaction, TxError,
};

use umbra_net::NodeError;
use umbra_net::directory::{Directory, FetchError};
use umbra_net::ledger::{LedgerClient, LedgerError};

/// The ticket database in a gateway's data directory.
pub const TICKETS_FILE: &str = "tickets.redb";
/// The most clients whose credit is kept; beyond it the smallest credits are dropped.
pub const MAX_CREDITS: usize = 1_000_000;
/// How long a submitted redemption may take to be committed before the task looks again.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

const SPENT: TableDefinition<&[u8], u8> = TableDefinition::new("spent");
const TICKETS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tickets");
const CREDITS: TableDefinition<&[u8], u64> = TableDefinition::new("credits");
const BY_CREDIT: TableDefinition<&[u8], ()> = TableDefinition::new("by_credit");
const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("pending");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const PENDING_KEY: &str = "redeem";
const SPENT_COUNT: &str = "spent";
const REDEEMED_COUNT: &str = "redeemed";
const DROPPED_COUNT: &str = "dropped";

/// The states of a spent serial.
const WAITING: u8 = 0;
const REDEEMED: u8 = 1;
const DROPPED: u8 = 2;

/// Why the ticket store could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed.
    #[error("ticket store: {doing}: {source}")]
    Database {
        /// What the store was doing.
        doing: &'static str,
        /// Why it failed.
        source: redb::Error,
    },
    /// The redemption in flight is stored in a form this version cannot read.
    #[error("ticket store: the redemption in flight cannot be read: {0}")]
    Garbled(String),
}

fn database<E: Into<redb::Error>>(doing: &'static str) -> impl FnOnce(E) -> StoreError {
    move |source| StoreError::Database {
        doing,
        source: source.into(),
    }
}

/// What the store has seen, for metrics and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Tickets spent here since the store was made.
    pub spent: u64,
    /// Tickets committed in a redemption (a double spend among them is recorded by the ledger
    /// and not paid).
    pub redeemed: u64,
    /// Tickets waiting to be redeemed (the redemption in flight included).
    pub waiting: u64,
    /// Tickets dropped: their period expired before they were redeemed, or the ledger refused
    /// them.
    pub dropped: u64,
}

/// A ticket's key in `spent` and `tickets`: period (big-endian, so periods are in order) ‖
/// serial.
type TicketKey = (u64, [u8; 32]);

fn encode_key((period, serial): TicketKey) -> [u8; 40] {
    let mut key = [0; 40];
    key[..8].copy_from_slice(&period.to_be_bytes());
    key[8..].copy_from_slice(&serial);
    key
}

fn decode_key(key: &[u8]) -> Option<TicketKey> {
    let period = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let serial: [u8; 32] = key.get(8..40)?.try_into().ok()?;
    Some((period, serial))
}

fn credit_key(credit: u64, client: &[u8; 32]) -> [u8; 40] {
    let mut key = [0; 40];
    key[..8].copy_from_slice(&credit.to_be_bytes());
    key[8..].copy_from_slice(client);
    key
}

/// The redemption in flight: the exact signed transaction, and the tickets it carries in its
/// order (so that a refusal naming a ticket by index names one of these).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    transaction: Transaction,
    tickets: Vec<TicketKey>,
}

/// The gateway's spent tickets and its clients' credit, in `tickets.redb`. Cheap to clone;
/// every call is a blocking database transaction (the runtime calls them in `spawn_blocking`).
#[derive(Clone)]
pub struct TicketStore {
    db: Arc<Database>,
    max_credits: usize,
    /// Wakes the redeemer when a full batch waits.
    full: Arc<Notify>,
}

impl TicketStore {
    /// Opens (or creates, owner-only) the store at `path`.
    pub fn open(path: &Path) -> Result<TicketStore, NodeError> {
        let fail = |what: &str, error: &dyn std::fmt::Display| {
            NodeError::invalid(
                path,
                format!(
                    "{what}: {error}. If the file is damaged beyond repair, move it away to start with an empty ticket store (the tickets in it are then never redeemed, and clients' remaining credit is lost)"
                ),
            )
        };
        umbra_net::files::prepare_private_file(path)?;
        let db = Database::create(path).map_err(|e| fail("cannot open the ticket database", &e))?;
        let store = TicketStore {
            db: Arc::new(db),
            max_credits: MAX_CREDITS,
            full: Arc::new(Notify::new()),
        };
        store
            .create_tables()
            .map_err(|e| fail("cannot set up the ticket database", &e))?;
        Ok(store)
    }

    /// The same store keeping at most `max_credits` clients' credit (tests use a small one).
    #[cfg(test)]
    pub(crate) fn with_max_credits(mut self, max_credits: usize) -> TicketStore {
        self.max_credits = max_credits;
        self
    }

    fn create_tables(&self) -> Result<(), redb::Error> {
        let write = self.db.begin_write()?;
        write.open_table(SPENT)?;
        write.open_table(TICKETS)?;
        write.open_table(CREDITS)?;
        write.open_table(BY_CREDIT)?;
        write.open_table(PENDING)?;
        write.open_table(META)?;
        write.commit()?;
        Ok(())
    }

    fn begin(&self) -> Result<WriteTransaction, redb::Error> {
        let mut write = self.db.begin_write()?;
        write.set_durability(Durability::Immediate)?;
        Ok(write)
    }

    /// Records a spent ticket for `client` (32-byte client id) and sets that client's credit
    /// to `credit_after`, in one durable (fsynced) write. `Ok(true)` if the serial was new,
    /// `Ok(false)` if it was already spent here (then nothing is written).
    pub fn spend(
        &self,
        serial: [u8; 32],
        period: u64,
        ticket: &[u8],
        client: [u8; 32],
        credit_after: u64,
    ) -> Result<bool, StoreError> {
        let doing = "recording a spent ticket";
        let key = encode_key((period, serial));
        let write = self.begin().map_err(database(doing))?;
        let waiting = {
            let mut spent = write.open_table(SPENT).map_err(database(doing))?;
            if spent
                .get(key.as_slice())
                .map_err(database(doing))?
                .is_some()
            {
                return Ok(false); // the transaction is dropped unwritten
            }
            spent
                .insert(key.as_slice(), WAITING)
                .map_err(database(doing))?;
            let mut tickets = write.open_table(TICKETS).map_err(database(doing))?;
            tickets
                .insert(key.as_slice(), ticket)
                .map_err(database(doing))?;
            let mut credits = write.open_table(CREDITS).map_err(database(doing))?;
            let mut by_credit = write.open_table(BY_CREDIT).map_err(database(doing))?;
            set_credit(&mut credits, &mut by_credit, &client, credit_after)
                .map_err(database(doing))?;
            trim_credits(
                &mut credits,
                &mut by_credit,
                self.max_credits,
                Some(&client),
            )
            .map_err(database(doing))?;
            add(&write, SPENT_COUNT, 1).map_err(database(doing))?;
            tickets.len().map_err(database(doing))?
        };
        write.commit().map_err(database(doing))?;
        if waiting >= MAX_REDEEM_TICKETS as u64 {
            self.full.notify_one();
        }
        Ok(true)
    }

    /// Saves clients' remaining credit (bytes) in one write (0 removes the entry). Beyond the
    /// cap, the smallest credits are dropped.
    pub fn save_credits(&self, credits: &[([u8; 32], u64)]) -> Result<(), StoreError> {
        let doing = "saving clients' credit";
        let write = self.begin().map_err(database(doing))?;
        {
            let mut table = write.open_table(CREDITS).map_err(database(doing))?;
            let mut by_credit = write.open_table(BY_CREDIT).map_err(database(doing))?;
            for (client, credit) in credits {
                set_credit(&mut table, &mut by_credit, client, *credit).map_err(database(doing))?;
            }
            trim_credits(&mut table, &mut by_credit, self.max_credits, None)
                .map_err(database(doing))?;
        }
        write.commit().map_err(database(doing))
    }

    /// Every client's remaining credit, at start.
    pub fn credits(&self) -> Result<Vec<([u8; 32], u64)>, StoreError> {
        let doing = "reading clients' credit";
        let read = self.db.begin_read().map_err(database(doing))?;
        let table = read.open_table(CREDITS).map_err(database(doing))?;
        let mut credits = Vec::new();
        for entry in table.iter().map_err(database(doing))? {
            let (client, credit) = entry.map_err(database(doing))?;
            if let Ok(client) = <[u8; 32]>::try_from(client.value()) {
                credits.push((client, credit.value()));
            }
        }
        Ok(credits)
    }

    /// Counts for metrics and reports.
    pub fn counts(&self) -> Result<StoreCounts, StoreError> {
        let doing = "reading the ticket counts";
        let read = self.db.begin_read().map_err(database(doing))?;
        let meta = read.open_table(META).map_err(database(doing))?;
        let count = |name: &str| -> Result<u64, StoreError> {
            Ok(meta
                .get(name)
                .map_err(database(doing))?
                .map_or(0, |value| value.value()))
        };
        let waiting = read
            .open_table(TICKETS)
            .map_err(database(doing))?
            .len()
            .map_err(database(doing))?;
        Ok(StoreCounts {
            spent: count(SPENT_COUNT)?,
            redeemed: count(REDEEMED_COUNT)?,
            waiting,
            dropped: count(DROPPED_COUNT)?,
        })
    }

    /// The redemption in flight, if any.
    fn pending(&self) -> Result<Option<Pending>, StoreError> {
        let doing = "reading the redemption in flight";
        let read = self.db.begin_read().map_err(database(doing))?;
        let table = read.open_table(PENDING).map_err(database(doing))?;
        let Some(value) = table.get(PENDING_KEY).map_err(database(doing))? else {
            return Ok(None);
        };
        serde_json::from_slice(value.value())
            .map(Some)
            .map_err(|error| StoreError::Garbled(error.to_string()))
    }

    /// Drops the waiting tickets of periods before `oldest` (they can no longer be redeemed)
    /// and forgets the serials of those periods (they can no longer be presented); how many
    /// were dropped. Only while no redemption is in flight.
    fn expire(&self, oldest: u64) -> Result<u64, StoreError> {
        let doing = "dropping expired tickets";
        let bound = oldest.to_be_bytes();
        let write = self.begin().map_err(database(doing))?;
        let dropped = {
            let mut tickets = write.open_table(TICKETS).map_err(database(doing))?;
            let expired: Vec<Vec<u8>> = tickets
                .range(..bound.as_slice())
                .map_err(database(doing))?
                .map(|entry| entry.map(|(key, _)| key.value().to_vec()))
                .collect::<Result<_, _>>()
                .map_err(database(doing))?;
            for key in &expired {
                tickets.remove(key.as_slice()).map_err(database(doing))?;
            }
            let mut spent = write.open_table(SPENT).map_err(database(doing))?;
            let old: Vec<Vec<u8>> = spent
                .range(..bound.as_slice())
                .map_err(database(doing))?
                .map(|entry| entry.map(|(key, _)| key.value().to_vec()))
                .collect::<Result<_, _>>()
                .map_err(database(doing))?;
            for key in &old {
                spent.remove(key.as_slice()).map_err(database(doing))?;
            }
            add(&write, DROPPED_COUNT, expired.len() as u64).map_err(database(doing))?;
            expired.len() as u64
        };
        write.commit().map_err(database(doing))?;
        Ok(dropped)
    }

    /// Up to `limit` waiting tickets, oldest period first.
    fn batch(&self, limit: usize) -> Result<Vec<(TicketKey, Vec<u8>)>, StoreError> {
        let doing = "reading the tickets waiting";
        let read = self.db.begin_read().map_err(database(doing))?;
        let tickets = read.open_table(TICKETS).map_err(database(doing))?;
        let mut batch = Vec::new();
        for entry in tickets.iter().map_err(database(doing))? {
            if batch.len() >= limit {
                break;
            }
            let (key, bytes) = entry.map_err(database(doing))?;
            // a key this version did not write is skipped (never redeemed)
            if let Some(key) = decode_key(key.value()) {
                batch.push((key, bytes.value().to_vec()));
            }
        }
        Ok(batch)
    }

    /// Writes the redemption about to be submitted.
    fn set_pending(&self, pending: &Pending) -> Result<(), StoreError> {
        let doing = "recording a redemption before submitting it";
        let bytes =
            serde_json::to_vec(pending).map_err(|error| StoreError::Garbled(error.to_string()))?;
        let write = self.begin().map_err(database(doing))?;
        write
            .open_table(PENDING)
            .map_err(database(doing))?
            .insert(PENDING_KEY, bytes.as_slice())
            .map_err(database(doing))?;
        write.commit().map_err(database(doing))
    }

    /// Ends the redemption in flight: its tickets redeemed (`Settled::Redeemed`), one of them
    /// dropped and the rest waiting again (`Settled::Dropped`), or all waiting again
    /// (`Settled::Abandoned`).
    fn settle(&self, pending: &Pending, settled: Settled) -> Result<(), StoreError> {
        let doing = "recording the end of a redemption";
        let write = self.begin().map_err(database(doing))?;
        {
            let mut spent = write.open_table(SPENT).map_err(database(doing))?;
            let mut tickets = write.open_table(TICKETS).map_err(database(doing))?;
            let (done, state, counter): (Vec<TicketKey>, u8, &str) = match settled {
                Settled::Redeemed => (pending.tickets.clone(), REDEEMED, REDEEMED_COUNT),
                Settled::Dropped(index) => (
                    pending.tickets.get(index).copied().into_iter().collect(),
                    DROPPED,
                    DROPPED_COUNT,
                ),
                Settled::Abandoned => (Vec::new(), WAITING, REDEEMED_COUNT),
            };
            let mut count = 0;
            for key in done {
                let key = encode_key(key);
                // idempotent: a ticket settled before is not counted again
                if tickets
                    .remove(key.as_slice())
                    .map_err(database(doing))?
                    .is_some()
                {
                    count += 1;
                }
                spent
                    .insert(key.as_slice(), state)
                    .map_err(database(doing))?;
            }
            add(&write, counter, count).map_err(database(doing))?;
            write
                .open_table(PENDING)
                .map_err(database(doing))?
                .remove(PENDING_KEY)
                .map_err(database(doing))?;
        }
        write.commit().map_err(database(doing))
    }
}

/// How a redemption in flight ended.
#[derive(Clone, Copy, Debug)]
enum Settled {
    /// Committed: every ticket in it is done.
    Redeemed,
    /// Refused because of the ticket at this index: it is dropped, the others wait again.
    Dropped(usize),
    /// Never to be committed (refused for another reason, or its nonce went to another
    /// transaction): its tickets wait again.
    Abandoned,
}

fn add(write: &WriteTransaction, name: &str, count: u64) -> Result<(), redb::Error> {
    if count == 0 {
        return Ok(());
    }
    let mut meta = write.open_table(META)?;
    let before = meta.get(name)?.map_or(0, |value| value.value());
    meta.insert(name, before.saturating_add(count))?;
    Ok(())
}

fn set_credit(
    credits: &mut Table<'_, &'static [u8], u64>,
    by_credit: &mut Table<'_, &'static [u8], ()>,
    client: &[u8; 32],
    credit: u64,
) -> Result<(), redb::Error> {
    let before = credits.get(client.as_slice())?.map(|value| value.value());
    if let Some(before) = before {
        by_credit.remove(credit_key(before, client).as_slice())?;
    }
    if credit == 0 {
        credits.remove(client.as_slice())?;
    } else {
        credits.insert(client.as_slice(), credit)?;
        by_credit.insert(credit_key(credit, client).as_slice(), ())?;
    }
    Ok(())
}

/// Drops the smallest credits beyond `max` entries (never `keep`'s: the client that just paid).
fn trim_credits(
    credits: &mut Table<'_, &'static [u8], u64>,
    by_credit: &mut Table<'_, &'static [u8], ()>,
    max: usize,
    keep: Option<&[u8; 32]>,
) -> Result<(), redb::Error> {
    let excess = usize::try_from(credits.len()?)
        .unwrap_or(usize::MAX)
        .saturating_sub(max);
    if excess == 0 {
        return Ok(());
    }
    let mut victims = Vec::with_capacity(excess);
    for entry in by_credit.iter()? {
        if victims.len() >= excess {
            break;
        }
        let (key, _) = entry?;
        let key = key.value();
        let Some(client) = key.get(8..40).and_then(|c| <[u8; 32]>::try_from(c).ok()) else {
            continue;
        };
        if Some(&client) != keep {
            victims.push((key.to_vec(), client));
        }
    }
    for (key, client) in &victims {
        by_credit.remove(key.as_slice())?;
        credits.remove(client.as_slice())?;
    }
    warn!(
        dropped = victims.len(),
        max, "too many clients hold credit; the smallest credits were dropped"
    );
    Ok(())
}

/// Why a round of redemption stopped; it is tried again after the interval.
#[derive(Debug, thiserror::Error)]
enum RedeemError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Unreachable(FetchError),
    #[error("{doing}: {source}")]
    Ledger {
        doing: &'static str,
        source: LedgerError,
    },
    #[error("a ticket store task panicked; this is a bug, please report it with the log")]
    Panicked,
}

fn ledger(doing: &'static str) -> impl FnOnce(LedgerError) -> RedeemError {
    move |source| RedeemError::Ledger { doing, source }
}

/// What a round asks of the next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Go on at once.
    Now,
    /// Wait for the interval (or a full batch).
    Later,
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    store: &TicketStore,
    call: impl FnOnce(&TicketStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, RedeemError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || call(&store))
        .await
        .map_err(|_| RedeemError::Panicked)?
        .map_err(RedeemError::Store)
}

/// The redeemer's view of the ledger and of itself.
struct Redeemer {
    store: TicketStore,
    directory: Arc<Directory>,
    identity: SigningKey,
    /// This gateway on the ledger, once found.
    node: Option<NodeId>,
    /// Whether "not registered" was said already.
    told_unregistered: bool,
}

/// Redeems what the store holds, until `stop`. Every `interval` (and at once when a full batch
/// of [`MAX_REDEEM_TICKETS`] waits) it takes up to that many waiting tickets of live periods,
/// signs a `Redeem` with the gateway's identity key, and submits it. A failure (no validator,
/// a database error) is logged and tried again after `interval`.
pub(crate) async fn redeem(
    store: TicketStore,
    directory: Arc<Directory>,
    identity: SigningKey,
    interval: Duration,
    stop: CancellationToken,
) {
    let full = Arc::clone(&store.full);
    let mut redeemer = Redeemer {
        store,
        directory,
        identity,
        node: None,
        told_unregistered: false,
    };
    loop {
        let round = tokio::select! {
            () = stop.cancelled() => return,
            round = redeemer.round() => round,
        };
        let wait = match round {
            Ok(Next::Now) => continue,
            Ok(Next::Later) => interval,
            Err(error) => {
                warn!(%error, "redeeming tickets failed; trying again later");
                interval
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            () = full.notified() => {}
        }
    }
}

/// What the ledger says of a transaction.
enum Status {
    Committed { height: u64 },
    Refused(TxError),
    Pending,
    Unknown,
}

impl Redeemer {
    /// One round: settles the redemption in flight, or starts one with what waits.
    async fn round(&mut self) -> Result<Next, RedeemError> {
        let client = self
            .directory
            .any_validator()
            .await
            .map_err(RedeemError::Unreachable)?;
        let Some(node) = self.node(&client).await? else {
            return Ok(Next::Later);
        };
        if let Some(pending) = blocking(&self.store, TicketStore::pending).await? {
            return self.settle(&client, node, pending).await;
        }
        let issuers: IssuersView = client
            .get("/tickets/issuers")
            .await
            .map_err(ledger("reading the ticket key periods"))?;
        let oldest = issuers.current_period.saturating_sub(1);
        let dropped = blocking(&self.store, move |store| store.expire(oldest)).await?;
        if dropped > 0 {
            warn!(
                dropped,
                oldest_live_period = oldest,
                "tickets expired before they were redeemed; dropped"
            );
        }
        let Some(pending) = self.prepare(&client, node).await? else {
            return Ok(Next::Later);
        };
        self.settle(&client, node, pending).await
    }

    /// This gateway's node id; none (said once at info) while it is not registered.
    async fn node(&mut self, client: &LedgerClient) -> Result<Option<NodeId>, RedeemError> {
        if self.node.is_some() {
            return Ok(self.node);
        }
        let found = client
            .node_with_identity(&self.identity.public())
            .await
            .map_err(ledger("looking this gateway up"))?;
        match found {
            Some(view) => self.node = Some(view.id),
            None if !self.told_unregistered => {
                info!(
                    identity = %self.identity.public(),
                    "this gateway is not registered on the ledger; tickets will be redeemed once it is"
                );
                self.told_unregistered = true;
            }
            None => {}
        }
        Ok(self.node)
    }

    /// Signs a redemption of the oldest waiting tickets and records it; none if nothing waits.
    async fn prepare(
        &self,
        client: &LedgerClient,
        node: NodeId,
    ) -> Result<Option<Pending>, RedeemError> {
        let batch = blocking(&self.store, |store| store.batch(MAX_REDEEM_TICKETS)).await?;
        if batch.is_empty() {
            return Ok(None);
        }
        let nonce = client
            .account(&self.identity.public())
            .await
            .map_err(ledger("reading this gateway's account"))?
            .next_nonce;
        let (keys, tickets): (Vec<TicketKey>, Vec<Vec<u8>>) = batch.into_iter().unzip();
        let transaction = Transaction::sign(
            &self.directory.trust().chain_id,
            &self.identity,
            nonce,
            Action::Redeem {
                gateway: node,
                tickets,
            },
        );
        let pending = Pending {
            transaction,
            tickets: keys,
        };
        let record = pending.clone();
        blocking(&self.store, move |store| store.set_pending(&record)).await?;
        Ok(Some(pending))
    }

    /// Brings the redemption in flight to an end if the ledger allows: see the module docs.
    async fn settle(
        &self,
        client: &LedgerClient,
        node: NodeId,
        pending: Pending,
    ) -> Result<Next, RedeemError> {
        let hash = pending.transaction.hash();
        let status = match status(client, &hash).await? {
            Status::Unknown => {
                let account = client
                    .account(&self.identity.public())
                    .await
                    .map_err(ledger("reading this gateway's account"))?;
                if account.account.nonce > pending.transaction.nonce {
                    // its nonce is used: asked after the account, the ledger's answer is final
                    match status(client, &hash).await? {
                        Status::Unknown | Status::Pending => {
                            info!(
                                tickets = pending.tickets.len(),
                                "a redemption's nonce went to another transaction; its tickets go into a new one"
                            );
                            return self.end(pending, Settled::Abandoned, Next::Now).await;
                        }
                        decided => decided,
                    }
                } else {
                    match client.submit(&pending.transaction).await {
                        Ok(_) => self.wait(client, &hash).await?,
                        Err(LedgerError::Failed(TxError::BadNonce { expected, got }))
                            if expected > got =>
                        {
                            // another transaction of this key holds the nonce in the mempool;
                            // once it is committed this one is abandoned (above)
                            return Ok(Next::Later);
                        }
                        // refused by the validator's check: not in its mempool
                        Err(LedgerError::Failed(error)) => Status::Refused(error),
                        Err(error) => return Err(ledger("submitting a redemption")(error)),
                    }
                }
            }
            Status::Pending => self.wait(client, &hash).await?,
            decided => decided,
        };
        match status {
            Status::Committed { height } => {
                self.report(client, node, &pending, height).await;
                let more = blocking(&self.store, TicketStore::counts).await?.waiting
                    >= MAX_REDEEM_TICKETS as u64;
                let next = if more { Next::Now } else { Next::Later };
                self.end(pending, Settled::Redeemed, next).await
            }
            Status::Refused(TxError::BadTicket { index, reason }) => {
                let period = usize::try_from(index)
                    .ok()
                    .and_then(|index| pending.tickets.get(index))
                    .map(|(period, _)| *period);
                warn!(
                    index,
                    period, %reason,
                    "the ledger refused a ticket of a redemption; it is dropped and the others are redeemed again"
                );
                match usize::try_from(index) {
                    Ok(index) if index < pending.tickets.len() => {
                        self.end(pending, Settled::Dropped(index), Next::Now).await
                    }
                    // a ledger naming a ticket the redemption does not have: not again at once
                    _ => self.end(pending, Settled::Abandoned, Next::Later).await,
                }
            }
            Status::Refused(error) => {
                warn!(%error, tickets = pending.tickets.len(), "the ledger refused a redemption; its tickets are tried again later");
                self.end(pending, Settled::Abandoned, Next::Later).await
            }
            Status::Pending | Status::Unknown => Ok(Next::Later),
        }
    }

    async fn end(
        &self,
        pending: Pending,
        settled: Settled,
        next: Next,
    ) -> Result<Next, RedeemError> {
        blocking(&self.store, move |store| store.settle(&pending, settled)).await?;
        Ok(next)
    }

    /// Waits for a submitted redemption; pending still after the timeout is looked at again
    /// next round.
    async fn wait(&self, client: &LedgerClient, hash: &Hash) -> Result<Status, RedeemError> {
        match client.wait_for(hash, COMMIT_TIMEOUT).await {
            Ok(height) => Ok(Status::Committed { height }),
            Err(LedgerError::Failed(error)) => Ok(Status::Refused(error)),
            Err(LedgerError::Timeout(_)) => Ok(Status::Pending),
            Err(error) => Err(ledger("waiting for a redemption")(error)),
        }
    }

    /// Logs a committed redemption: how many tickets, how many the ledger found spent before,
    /// and what the owner was paid (never the serials).
    async fn report(&self, client: &LedgerClient, node: NodeId, pending: &Pending, height: u64) {
        let count = pending.tickets.len() as u64;
        let Ok(stats) = client.get::<TicketStatsView>("/tickets").await else {
            info!(tickets = count, "tickets redeemed");
            return;
        };
        let ours: std::collections::BTreeSet<[u8; 32]> =
            pending.tickets.iter().map(|(_, serial)| *serial).collect();
        let double_spends = stats
            .recent_double_spends
            .iter()
            .filter(|event| {
                event.second == node && event.height == height && ours.contains(&event.serial.0)
            })
            .count() as u64;
        let to_pool =
            u128::from(stats.price.0) * u128::from(stats.pool_share.0) / u128::from(PPM.0);
        let each = stats
            .price
            .0
            .saturating_sub(u64::try_from(to_pool).unwrap_or(u64::MAX));
        let paid = Amount(each.saturating_mul(count.saturating_sub(double_spends)));
        if double_spends > 0 {
            warn!(
                double_spends,
                "the ledger found tickets of this redemption redeemed before: not paid"
            );
        }
        info!(tickets = count, double_spends, paid = %paid, height, "tickets redeemed");
    }
}

/// `GET /tx/{hash}`, with "no such transaction" as [`Status::Unknown`].
async fn status(client: &LedgerClient, hash: &Hash) -> Result<Status, RedeemError> {
    match client.get::<TxStatus>(&format!("/tx/{hash}")).await {
        Ok(TxStatus::Pending) => Ok(Status::Pending),
        Ok(TxStatus::Committed {
            height,
            error: None,
            ..
        }) => Ok(Status::Committed { height }),
        Ok(TxStatus::Committed {
            error: Some(error), ..
        }) => Ok(Status::Refused(error)),
        Err(LedgerError::Refused { status: 404, .. }) => Ok(Status::Unknown),
        Err(error) => Err(ledger("asking the ledger about a redemption")(error)),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{SocketAddr, TcpListener};
    use std::path::PathBuf;

    use rand_core::SeedableRng;
    use tokio::task::JoinHandle;
    use umbra_ledger::{NodeKind, Params};
    use umbra_net::directory::{TrustRoot, ValidatorUrl};
    use umbra_net::keys::{read_key, write_new_key};
    use umbra_tickets::{
        BlindSignature, ChainTag, IssuerPublicKey, PurchaseRequest, PurchaseSeed, Ticket, TxId,
    };
    use umbra_validator::signing::{SignAnswer, SignRequest};
    use umbra_validator::{InitOptions, ValidatorError};

    use super::*;
    use crate::registration::{Registration, register};

    const CHAIN: &str = "test";
    /// How long the tests wait for the ledger or the redeemer, at most.
    const PATIENCE: Duration = Duration::from_secs(20);

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("umbra-node-tickets-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        umbra_net::files::create_private_dir(&dir).unwrap();
        dir
    }

    fn free_port() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_spent_ticket_is_refused_again_and_survives_a_reopen_with_the_credits() {
        let dir = temp_dir("store");
        let path = dir.join(TICKETS_FILE);
        let store = TicketStore::open(&path).unwrap();
        let (alice, bob) = ([1; 32], [2; 32]);
        assert!(store.spend([7; 32], 4, b"ticket one", alice, 500).unwrap());
        // the same serial again, even for another client: refused, nothing written
        assert!(!store.spend([7; 32], 4, b"ticket one", bob, 900).unwrap());
        assert_eq!(store.credits().unwrap(), vec![(alice, 500)]);
        assert!(store.spend([8; 32], 4, b"ticket two", bob, 300).unwrap());
        store.save_credits(&[(alice, 0), (bob, 250)]).unwrap();
        let counts = store.counts().unwrap();
        assert_eq!((counts.spent, counts.waiting, counts.redeemed), (2, 2, 0));
        drop(store);

        let store = TicketStore::open(&path).unwrap();
        assert!(!store.spend([7; 32], 4, b"ticket one", alice, 1).unwrap());
        assert!(!store.spend([8; 32], 4, b"ticket two", alice, 1).unwrap());
        assert_eq!(store.credits().unwrap(), vec![(bob, 250)]);
        let batch = store.batch(10).unwrap();
        assert_eq!(
            batch,
            vec![
                ((4, [7; 32]), b"ticket one".to_vec()),
                ((4, [8; 32]), b"ticket two".to_vec())
            ]
        );
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        // a file another user could read is made owner-only when opened
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            drop(store);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let _store = TicketStore::open(&path).unwrap();
            assert_eq!(mode(&path), 0o600);
        }
    }

    #[test]
    fn beyond_the_cap_the_smallest_credits_are_dropped_but_never_the_payers() {
        let dir = temp_dir("cap");
        let store = TicketStore::open(&dir.join(TICKETS_FILE))
            .unwrap()
            .with_max_credits(3);
        store
            .save_credits(&[([1; 32], 10), ([2; 32], 20), ([3; 32], 30), ([4; 32], 40)])
            .unwrap();
        let mut credits = store.credits().unwrap();
        credits.sort_unstable();
        assert_eq!(credits, vec![([2; 32], 20), ([3; 32], 30), ([4; 32], 40)]);
        // a client paying for a little credit is kept: the next smallest goes
        assert!(store.spend([9; 32], 0, b"t", [5; 32], 5).unwrap());
        let mut credits = store.credits().unwrap();
        credits.sort_unstable();
        assert_eq!(credits, vec![([3; 32], 30), ([4; 32], 40), ([5; 32], 5)]);
        // a changed credit moves in the order: 4 now holds the least
        store.save_credits(&[([4; 32], 1), ([6; 32], 100)]).unwrap();
        let mut credits = store.credits().unwrap();
        credits.sort_unstable();
        assert_eq!(credits, vec![([3; 32], 30), ([5; 32], 5), ([6; 32], 100)]);
    }

    #[test]
    fn expired_periods_are_dropped_and_their_serials_forgotten() {
        let dir = temp_dir("expire");
        let store = TicketStore::open(&dir.join(TICKETS_FILE)).unwrap();
        assert!(store.spend([1; 32], 2, b"old", [1; 32], 1).unwrap());
        assert!(store.spend([2; 32], 3, b"live", [1; 32], 2).unwrap());
        assert_eq!(store.expire(3).unwrap(), 1);
        let counts = store.counts().unwrap();
        assert_eq!((counts.waiting, counts.dropped), (1, 1));
        assert_eq!(store.batch(10).unwrap().len(), 1);
        // period 2's serial is forgotten (it can no longer be presented), period 3's is not
        assert!(store.spend([1; 32], 2, b"old", [1; 32], 1).unwrap());
        assert!(!store.spend([2; 32], 3, b"live", [1; 32], 2).unwrap());
    }

    /// A solo validator, run as `umbra validator run` runs it, with the genesis account.
    struct Ledger {
        dir: PathBuf,
        stop: CancellationToken,
        running: JoinHandle<Result<(), ValidatorError>>,
        directory: Arc<Directory>,
        client: LedgerClient,
        owner: SigningKey,
    }

    impl Ledger {
        async fn start(name: &str) -> Ledger {
            let dir = temp_dir(name);
            let validator = dir.join("validator");
            let api = free_port();
            umbra_validator::init(
                &validator,
                &InitOptions {
                    listen_address: api,
                    genesis: None,
                    chain_id: CHAIN.into(),
                    params: Params::default(),
                    consensus: None,
                },
            )
            .unwrap();
            let stop = CancellationToken::new();
            let running = tokio::spawn({
                let (validator, stop) = (validator.clone(), stop.clone());
                async move { umbra_validator::run(&validator, stop).await }
            });
            let trust = TrustRoot::read(&validator.join(umbra_validator::GENESIS_FILE)).unwrap();
            let directory = Arc::new(Directory::new(vec![ValidatorUrl::from_address(api)], trust));
            let owner = SigningKey::from_seed(
                read_key(&validator.join(umbra_validator::ACCOUNT_KEY_FILE)).unwrap(),
            );
            let ledger = Ledger {
                dir,
                stop,
                running,
                directory,
                client: LedgerClient::new(api),
                owner,
            };
            // tickets can be bought once the validator's key for the period is committed
            ledger
                .until("the ticket keys are announced", async || {
                    let issuers: IssuersView = ledger.client.get("/tickets/issuers").await.ok()?;
                    issuers
                        .periods
                        .iter()
                        .any(|p| p.period == issuers.current_period && p.usable)
                        .then_some(())
                })
                .await;
            ledger
        }

        /// Polls `check` until it gives something.
        async fn until<T>(&self, what: &str, check: impl AsyncFn() -> Option<T>) -> T {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            loop {
                if let Some(found) = check().await {
                    return found;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{what}: not within {PATIENCE:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        /// Registers and bonds a gateway owned by the genesis account; its identity key.
        async fn gateway(&self) -> (SigningKey, NodeId) {
            let dir = self.dir.join("gateway");
            umbra_net::files::create_private_dir(&dir).unwrap();
            let identity = SigningKey::generate(&mut rand::rng());
            write_new_key(&dir.join(crate::epoch::IDENTITY_KEY_FILE), &identity.seed()).unwrap();
            write_new_key(&dir.join(crate::runtime::NOISE_KEY_FILE), &[3; 32]).unwrap();
            write_new_key(&dir.join(crate::runtime::SPHINX_KEY_FILE), &[4; 32]).unwrap();
            let registered = register(
                &dir,
                &self.client,
                &self.owner,
                &Registration {
                    kind: NodeKind::Gateway,
                    mix_address: SocketAddr::from(([127, 0, 0, 1], 9001)),
                    client_address: Some(SocketAddr::from(([127, 0, 0, 1], 9002))),
                    moniker: "tickets".into(),
                    pledge: Params::default().minimum_pledge,
                },
            )
            .await
            .unwrap();
            (identity, registered.node)
        }

        /// Buys `count` tickets with the genesis account, as a client does.
        async fn buy(&self, count: u32, seed: u8) -> Vec<Ticket> {
            let nonce = self
                .client
                .account(&self.owner.public())
                .await
                .unwrap()
                .next_nonce;
            let purchase =
                Transaction::sign(CHAIN, &self.owner, nonce, Action::BuyTickets { count });
            let tx = self.client.submit(&purchase).await.unwrap();
            self.client.wait_for(&tx, PATIENCE).await.unwrap();
            let issuers: IssuersView = self.client.get("/tickets/issuers").await.unwrap();
            let period = issuers.current_period;
            let key = issuers
                .periods
                .iter()
                .find(|p| p.period == period)
                .and_then(|p| p.issuers.first())
                .map(|issuer| IssuerPublicKey::from_bytes(&issuer.key).unwrap())
                .unwrap();
            let mut rng = rand_chacha::ChaCha20Rng::from_seed([seed; 32]);
            let request = PurchaseRequest::new(
                &PurchaseSeed::generate(&mut rng),
                TxId(tx.0),
                ChainTag::of(CHAIN),
                period,
                count,
                &[(0, key)],
            )
            .unwrap();
            let blinded = request.blinded(0).unwrap();
            let answer: SignAnswer = self
                .client
                .post(
                    "/tickets/sign",
                    &SignRequest {
                        tx: tx.to_string(),
                        blinded: blinded.iter().map(|b| hex::encode(&b.0)).collect(),
                    },
                )
                .await
                .unwrap();
            let signatures: Vec<BlindSignature> = answer
                .signatures
                .iter()
                .map(|text| BlindSignature(hex::decode(text).unwrap()))
                .collect();
            let partials = request.finish(0, &signatures).unwrap();
            request.assemble(partials)
        }

        async fn stats(&self) -> TicketStatsView {
            self.client.get("/tickets").await.unwrap()
        }

        async fn balance(&self) -> u64 {
            let account = self.client.account(&self.owner.public()).await.unwrap();
            account.account.balance.0
        }

        async fn applied(&self, identity: &SigningKey) -> u64 {
            let account = self.client.account(&identity.public()).await.unwrap();
            account.account.nonce
        }

        async fn stop(self) {
            self.stop.cancel();
            self.running.await.unwrap().unwrap();
        }
    }

    fn spend_all(store: &TicketStore, tickets: &[Ticket]) {
        for (client, ticket) in (1u8..).zip(tickets) {
            let spent = store
                .spend(
                    ticket.serial().0,
                    ticket.input.period,
                    &ticket.to_bytes(),
                    [client; 32],
                    1_000,
                )
                .unwrap();
            assert!(spent);
        }
    }

    /// Runs the redeemer until `stop` (returned with its task).
    fn start_redeemer(
        store: &TicketStore,
        ledger: &Ledger,
        identity: &SigningKey,
    ) -> (CancellationToken, JoinHandle<()>) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(redeem(
            store.clone(),
            Arc::clone(&ledger.directory),
            SigningKey::from_seed(identity.seed()),
            Duration::from_millis(100),
            stop.clone(),
        ));
        (stop, task)
    }

    async fn settled(ledger: &Ledger, store: &TicketStore, redeemed: u64) -> StoreCounts {
        ledger
            .until("the store settles", async || {
                let counts = store.counts().unwrap();
                (counts.redeemed == redeemed && counts.waiting == 0).then_some(counts)
            })
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spent_tickets_are_redeemed_and_the_owner_is_paid() {
        let ledger = Ledger::start("redeem").await;
        let (identity, _) = ledger.gateway().await;
        let tickets = ledger.buy(3, 1).await;
        let dir = ledger.dir.join("gateway");
        let store = TicketStore::open(&dir.join(TICKETS_FILE)).unwrap();
        spend_all(&store, &tickets);
        // a ticket the ledger refuses: dropped, the others redeemed all the same
        let period = tickets[0].input.period;
        assert!(
            store
                .spend([0; 32], period, b"not a ticket", [9; 32], 1)
                .unwrap()
        );
        let before = ledger.balance().await;

        let (stop, task) = start_redeemer(&store, &ledger, &identity);
        let counts = settled(&ledger, &store, 3).await;
        assert_eq!(counts.dropped, 1);
        assert_eq!(counts.spent, 4);
        let stats = ledger.stats().await;
        assert_eq!((stats.redeemed, stats.double_spends), (3, 0));
        let to_pool = stats.price.0 * u64::from(stats.pool_share.0) / u64::from(PPM.0);
        assert_eq!(
            ledger.balance().await - before,
            3 * (stats.price.0 - to_pool)
        );
        assert_eq!(ledger.applied(&identity).await, 1, "one redemption");
        stop.cancel();
        task.await.unwrap();
        ledger.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redemption_committed_before_a_crash_is_marked_from_the_ledger_not_sent_again() {
        let ledger = Ledger::start("crash").await;
        let (identity, node) = ledger.gateway().await;
        let tickets = ledger.buy(3, 2).await;
        let path = ledger.dir.join("gateway").join(TICKETS_FILE);
        let store = TicketStore::open(&path).unwrap();
        spend_all(&store, &tickets);
        // the redeemer's first steps: record the redemption, submit it, see it committed...
        let redeemer = Redeemer {
            store: store.clone(),
            directory: Arc::clone(&ledger.directory),
            identity: SigningKey::from_seed(identity.seed()),
            node: Some(node),
            told_unregistered: false,
        };
        let pending = redeemer
            .prepare(&ledger.client, node)
            .await
            .unwrap()
            .unwrap();
        let hash = ledger.client.submit(&pending.transaction).await.unwrap();
        ledger.client.wait_for(&hash, PATIENCE).await.unwrap();
        // ...and the gateway is killed before it marks the tickets redeemed
        drop((redeemer, store));
        let store = TicketStore::open(&path).unwrap();
        assert_eq!(store.counts().unwrap().waiting, 3);

        let (stop, task) = start_redeemer(&store, &ledger, &identity);
        let counts = settled(&ledger, &store, 3).await;
        assert_eq!(counts.dropped, 0);
        // a few more rounds: nothing else is sent
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
        task.await.unwrap();
        let stats = ledger.stats().await;
        assert_eq!((stats.redeemed, stats.double_spends), (3, 0));
        assert_eq!(ledger.applied(&identity).await, 1, "no second redemption");
        assert!(store.pending().unwrap().is_none());
        ledger.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ticket_redeemed_before_is_a_double_spend_and_is_not_retried() {
        let ledger = Ledger::start("double").await;
        let (identity, node) = ledger.gateway().await;
        let tickets = ledger.buy(2, 3).await;
        // the first ticket redeemed already, outside this store
        let first = Transaction::sign(
            CHAIN,
            &identity,
            0,
            Action::Redeem {
                gateway: node,
                tickets: vec![tickets[0].to_bytes()],
            },
        );
        let hash = ledger.client.submit(&first).await.unwrap();
        ledger.client.wait_for(&hash, PATIENCE).await.unwrap();
        let store = TicketStore::open(&ledger.dir.join("gateway").join(TICKETS_FILE)).unwrap();
        spend_all(&store, &tickets);

        let (stop, task) = start_redeemer(&store, &ledger, &identity);
        settled(&ledger, &store, 2).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
        task.await.unwrap();
        let stats = ledger.stats().await;
        assert_eq!((stats.redeemed, stats.double_spends), (2, 1));
        let event = stats.recent_double_spends.first().unwrap();
        assert_eq!(event.serial.0, tickets[0].serial().0);
        assert_eq!((event.first, event.second), (node, node));
        assert_eq!(ledger.applied(&identity).await, 2, "no retry");
        ledger.stop().await;
    }
}
