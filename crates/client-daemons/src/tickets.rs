//! The ticket wallet: bandwidth tickets bought on the ledger (docs/tickets.md), kept in
//! `tickets.redb` in the client's data directory until they are spent at a gateway.
//!
//! A purchase pays first and is signed after, so a crash in between must neither lose the
//! payment nor pay twice. Before anything is sent, the purchase's secret seed and its signed
//! `buy_tickets` transaction are committed to the wallet (redb commits are fsynced). From
//! there every step can be done again: the same transaction (same nonce, same hash) is
//! submitted again only if no validator knows it, and the blinded messages rebuilt from the
//! seed are the ones the validators already answered, so they answer the same again. The
//! tickets are stored, and the purchase marked done, in one write transaction.
//!
//! Tickets are bearer tokens: whoever reads the file can spend them. It is 0600, and no ticket,
//! serial or seed is ever logged.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};
use umbra_ledger::api::{IssuerView, IssuersView, PurchaseView, TxStatus};
use umbra_ledger::{Action, Hash, PublicKey, SigningKey, Transaction, TxError};
use umbra_net::NodeError;
use umbra_net::directory::ValidatorUrl;
use umbra_net::ledger::{LedgerClient, LedgerError};
use umbra_tickets::{
    BlindSignature, ChainTag, IssuerPublicKey, MAX_TICKETS_PER_PURCHASE, Partial, PurchaseRequest,
    PurchaseSeed, Serial, TxId,
};

/// Tickets, by key period then serial: `period (u64 BE) || serial` → the ticket's bytes.
const TICKETS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tickets");
/// The key period of each stored ticket, by serial (to find a ticket being spent).
const SERIALS: TableDefinition<&[u8], u64> = TableDefinition::new("serials");
/// Purchases paid, or possibly paid, and not yet stored as tickets: tx hash → JSON
/// [`Pending`]. The only place a purchase seed is kept.
const PENDING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pending");
/// Purchases finished or abandoned: tx hash → JSON [`Finished`].
const HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history");
/// Counters: `spent`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// How long a submitted purchase may take to be committed before `buy` gives up for now (the
/// purchase stays pending and the next `buy` or `resume` picks it up).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A durable wallet of bandwidth tickets. Cheap to clone; every clone is the same wallet.
#[derive(Clone)]
pub struct TicketWallet {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    /// Held while buying or resuming: two purchases at once would sign with the same nonce.
    buying: tokio::sync::Mutex<()>,
}

/// A ticket ready to be presented to a gateway.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredTicket {
    /// Its serial: what the gateway's spent set and the ledger remember.
    pub serial: Serial,
    /// The key period it was signed for.
    pub period: u64,
    /// The ticket, encoded ([`umbra_tickets::Ticket::to_bytes`]).
    pub bytes: Vec<u8>,
}

impl fmt::Debug for StoredTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // a bearer token: never printed
        f.debug_struct("StoredTicket")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

/// A purchase whose tickets were stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bought {
    /// The `buy_tickets` transaction that paid.
    pub tx: Hash,
    /// How many tickets were stored.
    pub count: u32,
    /// Their key period.
    pub period: u64,
}

/// What the wallet holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalletCounts {
    /// Tickets not spent yet.
    pub unspent: u64,
    /// Tickets spent since the wallet was created.
    pub spent: u64,
    /// Purchases paid (or possibly paid) whose tickets are not stored yet.
    pub unfinished: u64,
}

/// Why the wallet's file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    /// The database failed.
    #[error("the ticket wallet {}: {reason}", path.display())]
    Store {
        /// The wallet's file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A record in the file is not one this build wrote.
    #[error(
        "the ticket wallet {} holds an unreadable {what}; restore the file from a backup, or move it away to start an empty wallet (its tickets are then lost)",
        path.display()
    )]
    Corrupt {
        /// The wallet's file.
        path: PathBuf,
        /// What could not be read.
        what: &'static str,
    },
}

/// Why a purchase did not end with tickets in the wallet. Unless the message says that
/// nothing was paid, a paid purchase stays pending in the wallet: buying again (or
/// [`TicketWallet::resume`]) finishes it without paying again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuyError {
    /// The wallet's file failed.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// A count outside 1..=4096.
    #[error("a purchase is of 1 to {max} tickets, not {count}", max = MAX_TICKETS_PER_PURCHASE)]
    Count {
        /// The count asked for.
        count: u32,
    },
    /// No validator was given.
    #[error("no validators to buy from: list their APIs in [ledger] validators")]
    NoValidators,
    /// No validator answered.
    #[error(
        "no validator could be reached ({tried}); check [ledger] validators and that the network is up"
    )]
    Unreachable {
        /// Each validator tried and why it failed.
        tried: String,
    },
    /// A validator serves another chain than the client's genesis names.
    #[error(
        "the validator at {validator} serves chain {served:?}, but the client's genesis is for {expected:?}: list this network's validators in [ledger] validators"
    )]
    WrongChain {
        /// The validator.
        validator: String,
        /// Its chain id.
        served: String,
        /// The genesis file's.
        expected: String,
    },
    /// The ledger refused the `buy_tickets` transaction; nothing was paid.
    #[error("the ledger refused the purchase: {error}; nothing was paid")]
    Refused {
        /// The purchase's transaction.
        tx: Hash,
        /// The ledger's reason.
        error: TxError,
    },
    /// The purchase cannot be finished (recorded as abandoned in the wallet).
    #[error("purchase {tx} was abandoned: {reason}")]
    Abandoned {
        /// The purchase's transaction.
        tx: Hash,
        /// Why.
        reason: String,
    },
    /// The purchase was not committed in time.
    #[error(
        "purchase {tx} was not committed within {waited:?}; it stays pending: buy again later to finish it (it will not pay twice)"
    )]
    NotCommitted {
        /// The purchase's transaction.
        tx: Hash,
        /// How long it was waited for.
        waited: Duration,
    },
    /// No validator announced ticket keys for the purchase's period.
    #[error("no validator lists ticket keys for key period {period} (purchase {tx})")]
    NoIssuers {
        /// The purchase's transaction.
        tx: Hash,
        /// Its key period.
        period: u64,
    },
    /// Two validators list different keys for the same validator and period: blinding for
    /// either could single this client out.
    #[error(
        "the validators at {first} and {second} list different ticket keys of validator {validator} for key period {period}; nothing was sent to be signed (purchase {tx} stays pending)"
    )]
    IssuersDisagree {
        /// The purchase's transaction.
        tx: Hash,
        /// The key period.
        period: u64,
        /// The validator whose key differs.
        validator: u16,
        /// One validator's API.
        first: String,
        /// The other's.
        second: String,
    },
    /// The signatures collected do not make a valid ticket.
    #[error(
        "the validators reached ({reached}) hold {signed} of {total} voting power; a ticket needs more than 2/3: list more validators in [ledger] validators. Purchase {tx} is paid and stays pending: buy again (or resume) to finish it without paying again{problems}"
    )]
    TooFewSigners {
        /// The purchase's transaction.
        tx: Hash,
        /// The validators whose signatures were collected.
        reached: String,
        /// Their voting power.
        signed: u64,
        /// All voting power.
        total: u64,
        /// What went wrong with the others ("; " and a list, or empty).
        problems: String,
    },
    /// An assembled ticket does not verify.
    #[error(
        "a ticket of purchase {tx} does not verify: {reason}; the purchase stays pending (a validator may have answered with a key it did not announce)"
    )]
    BadTicket {
        /// The purchase's transaction.
        tx: Hash,
        /// Why.
        reason: String,
    },
}

/// A purchase paid, or about to be: everything needed to finish it after a crash.
#[derive(Serialize, Deserialize)]
struct Pending {
    /// The seed of the purchase's nonces and blinding factors: secret.
    seed: [u8; 32],
    chain_id: String,
    transaction: Transaction,
}

/// A purchase no longer pending.
#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Finished {
    Done { count: u32, period: u64 },
    Abandoned { reason: String },
}

/// How driving a pending purchase ended, when it ended.
enum Outcome {
    Bought(Bought),
    /// Nothing was paid (or what was paid cannot be signed any more): recorded as abandoned.
    Abandoned {
        reason: String,
        refusal: Option<TxError>,
    },
}

/// Whether a purchase's transaction is committed.
enum Commit {
    /// It is, as this validator says.
    Committed(LedgerClient),
    /// It never will be: nothing was paid.
    Never { reason: String, refusal: TxError },
}

impl Commit {
    fn never(reason: String, refusal: TxError) -> Commit {
        Commit::Never { reason, refusal }
    }
}

/// The signing service's `GET /tickets/signer`.
#[derive(Deserialize)]
struct SignerView {
    validator_key: PublicKey,
}

/// The body of `POST /tickets/sign`.
#[derive(Serialize)]
struct SignRequest {
    tx: String,
    blinded: Vec<String>,
}

/// The answer to `POST /tickets/sign`.
#[derive(Deserialize)]
struct SignAnswer {
    period: u64,
    validator: u16,
    signatures: Vec<String>,
}

impl TicketWallet {
    /// Opens the wallet in `path` (usually `tickets.redb` in a client's data directory),
    /// creating it owner-only if missing.
    pub fn open(path: &Path) -> Result<TicketWallet, NodeError> {
        let fail = |error: &dyn fmt::Display| {
            NodeError::invalid(
                path,
                format!(
                    "cannot open the ticket wallet: {error}. Restore it from a backup, or move it away to start an empty wallet (its tickets are then lost)"
                ),
            )
        };
        umbra_net::files::prepare_private_file(path)?;
        let db = Database::create(path).map_err(|error| match error {
            redb::DatabaseError::DatabaseAlreadyOpen => NodeError::invalid(
                path,
                "the ticket wallet is open in another process (a running client daemon, or another `umbra client buy`); stop it, or wait until it is done",
            ),
            other => fail(&other),
        })?;
        let txn = db.begin_write().map_err(|e| fail(&e))?;
        {
            txn.open_table(TICKETS).map_err(|e| fail(&e))?;
            txn.open_table(SERIALS).map_err(|e| fail(&e))?;
            txn.open_table(PENDING).map_err(|e| fail(&e))?;
            txn.open_table(HISTORY).map_err(|e| fail(&e))?;
            txn.open_table(META).map_err(|e| fail(&e))?;
        }
        txn.commit().map_err(|e| fail(&e))?;
        Ok(TicketWallet {
            inner: Arc::new(Inner {
                db,
                path: path.to_owned(),
                buying: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Buys `count` tickets paid by `account`, from the validators at `validators` (each
    /// validator's signing service is asked; their answers must add up to > 2/3 of all voting
    /// power). First finishes any purchase left unfinished by a crash. Returns what was stored.
    pub async fn buy(
        &self,
        validators: &[ValidatorUrl],
        chain_id: &str,
        account: &SigningKey,
        count: u32,
    ) -> Result<Bought, BuyError> {
        if count == 0 || count > MAX_TICKETS_PER_PURCHASE {
            return Err(BuyError::Count { count });
        }
        let _buying = self.inner.buying.lock().await;
        self.resume_locked(validators, chain_id).await?;
        let reached = reach(validators).await?;
        // the nonce from a validator of this chain: a transaction signed for another chain
        // would be refused for its signature, which says nothing useful
        let mut nonce = None;
        let mut tried = Vec::new();
        for (url, client) in &reached {
            match client.chain_id().await {
                Ok(served) if served != chain_id => {
                    return Err(BuyError::WrongChain {
                        validator: url.to_string(),
                        served,
                        expected: chain_id.to_owned(),
                    });
                }
                Ok(_) => {}
                Err(error) => {
                    tried.push(format!("{url}: {error}"));
                    continue;
                }
            }
            match client.account(&account.public()).await {
                Ok(view) => {
                    nonce = Some(view.next_nonce);
                    break;
                }
                Err(error) => tried.push(format!("{url}: {error}")),
            }
        }
        let nonce = nonce.ok_or_else(|| BuyError::Unreachable {
            tried: tried.join("; "),
        })?;
        let tx = self.record_intent(chain_id, account, nonce, count)?;
        info!(%tx, count, "buying tickets");
        match self.drive(validators, tx).await? {
            Outcome::Bought(bought) => Ok(bought),
            Outcome::Abandoned {
                refusal: Some(error),
                ..
            } => Err(BuyError::Refused { tx, error }),
            Outcome::Abandoned { reason, .. } => Err(BuyError::Abandoned { tx, reason }),
        }
    }

    /// Finishes purchases paid (or possibly paid) but not yet stored as tickets, without
    /// paying again. A purchase the ledger refused, or whose key period expired before it was
    /// signed, is recorded as abandoned (and logged). Purchases made for another chain than
    /// `chain_id` are left alone.
    pub async fn resume(
        &self,
        validators: &[ValidatorUrl],
        chain_id: &str,
    ) -> Result<Vec<Bought>, BuyError> {
        let _buying = self.inner.buying.lock().await;
        self.resume_locked(validators, chain_id).await
    }

    async fn resume_locked(
        &self,
        validators: &[ValidatorUrl],
        chain_id: &str,
    ) -> Result<Vec<Bought>, BuyError> {
        let mut bought = Vec::new();
        for (tx, pending) in self.pending()? {
            if pending.chain_id != chain_id {
                warn!(%tx, chain = %pending.chain_id, "a pending ticket purchase of another chain is left alone");
                continue;
            }
            info!(%tx, "finishing a ticket purchase left unfinished");
            match self.drive(validators, tx).await? {
                Outcome::Bought(done) => bought.push(done),
                Outcome::Abandoned { reason, .. } => {
                    warn!(%tx, %reason, "ticket purchase abandoned")
                }
            }
        }
        Ok(bought)
    }

    /// The next unspent ticket to present (oldest key period first), if any.
    pub fn next_unspent(&self) -> Result<Option<StoredTicket>, WalletError> {
        let txn = self.inner.db.begin_read().map_err(|e| self.store(e))?;
        let table = txn.open_table(TICKETS).map_err(|e| self.store(e))?;
        let Some((key, bytes)) = table.first().map_err(|e| self.store(e))? else {
            return Ok(None);
        };
        let (period, serial) = split_key(key.value()).ok_or_else(|| self.corrupt("ticket key"))?;
        Ok(Some(StoredTicket {
            serial,
            period,
            bytes: bytes.value().to_vec(),
        }))
    }

    /// The first unspent ticket (oldest key period first) that `skip` does not pass over: how
    /// several clients sharing one wallet in a process each take a ticket of their own.
    pub fn first_unspent_except(
        &self,
        skip: impl Fn(&Serial) -> bool,
    ) -> Result<Option<StoredTicket>, WalletError> {
        let txn = self.inner.db.begin_read().map_err(|e| self.store(e))?;
        let table = txn.open_table(TICKETS).map_err(|e| self.store(e))?;
        for entry in table.iter().map_err(|e| self.store(e))? {
            let (key, bytes) = entry.map_err(|e| self.store(e))?;
            let (period, serial) =
                split_key(key.value()).ok_or_else(|| self.corrupt("ticket key"))?;
            if !skip(&serial) {
                return Ok(Some(StoredTicket {
                    serial,
                    period,
                    bytes: bytes.value().to_vec(),
                }));
            }
        }
        Ok(None)
    }

    /// The ticket is gone (presented to a gateway): its bytes are deleted for good. A serial
    /// the wallet does not hold (already marked, or never stored) changes nothing.
    pub fn mark_spent(&self, serial: &Serial) -> Result<(), WalletError> {
        let txn = self.inner.db.begin_write().map_err(|e| self.store(e))?;
        {
            let mut serials = txn.open_table(SERIALS).map_err(|e| self.store(e))?;
            let period = serials
                .remove(&serial.0[..])
                .map_err(|e| self.store(e))?
                .map(|period| period.value());
            let Some(period) = period else {
                return Ok(());
            };
            txn.open_table(TICKETS)
                .map_err(|e| self.store(e))?
                .remove(&ticket_key(period, serial)[..])
                .map_err(|e| self.store(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.store(e))?;
            let spent = meta
                .get("spent")
                .map_err(|e| self.store(e))?
                .map_or(0, |v| v.value());
            meta.insert("spent", spent.saturating_add(1))
                .map_err(|e| self.store(e))?;
        }
        txn.commit().map_err(|e| self.store(e))?;
        debug!("a ticket was marked spent");
        Ok(())
    }

    /// Drops tickets of key periods before `current_period - 1` (expired: no gateway accepts
    /// them any more); returns how many.
    pub fn prune_expired(&self, current_period: u64) -> Result<u64, WalletError> {
        let oldest_live = current_period.saturating_sub(1);
        let txn = self.inner.db.begin_write().map_err(|e| self.store(e))?;
        let mut dropped = Vec::new();
        {
            let mut tickets = txn.open_table(TICKETS).map_err(|e| self.store(e))?;
            tickets
                .retain(|key, _| match split_key(key) {
                    Some((period, serial)) if period < oldest_live => {
                        dropped.push(serial);
                        false
                    }
                    _ => true,
                })
                .map_err(|e| self.store(e))?;
            let mut serials = txn.open_table(SERIALS).map_err(|e| self.store(e))?;
            for serial in &dropped {
                serials.remove(&serial.0[..]).map_err(|e| self.store(e))?;
            }
        }
        txn.commit().map_err(|e| self.store(e))?;
        if !dropped.is_empty() {
            info!(
                count = dropped.len(),
                current_period, "expired tickets dropped from the wallet"
            );
        }
        Ok(dropped.len() as u64)
    }

    /// How many tickets are unspent and spent, and how many purchases are unfinished.
    pub fn counts(&self) -> Result<WalletCounts, WalletError> {
        let txn = self.inner.db.begin_read().map_err(|e| self.store(e))?;
        let len = |definition| -> Result<u64, WalletError> {
            txn.open_table(definition)
                .map_err(|e| self.store(e))?
                .len()
                .map_err(|e| self.store(e))
        };
        let spent = txn
            .open_table(META)
            .map_err(|e| self.store(e))?
            .get("spent")
            .map_err(|e| self.store(e))?
            .map_or(0, |v| v.value());
        Ok(WalletCounts {
            unspent: len(TICKETS)?,
            spent,
            unfinished: len(PENDING)?,
        })
    }

    /// Signs the purchase and commits it, with a fresh seed, as pending: from here on a crash
    /// resumes it.
    fn record_intent(
        &self,
        chain_id: &str,
        account: &SigningKey,
        nonce: u64,
        count: u32,
    ) -> Result<Hash, WalletError> {
        let mut seed = [0u8; 32];
        rand::RngExt::fill(&mut rand::rng(), &mut seed);
        let transaction = Transaction::sign(chain_id, account, nonce, Action::BuyTickets { count });
        let tx = transaction.hash();
        let pending = Pending {
            seed,
            chain_id: chain_id.to_owned(),
            transaction,
        };
        let record =
            zeroize::Zeroizing::new(serde_json::to_vec(&pending).map_err(|e| self.store(e))?);
        // redb's default durability: the commit is on disk when it returns
        let txn = self.inner.db.begin_write().map_err(|e| self.store(e))?;
        txn.open_table(PENDING)
            .map_err(|e| self.store(e))?
            .insert(&tx.0[..], &record[..])
            .map_err(|e| self.store(e))?;
        txn.commit().map_err(|e| self.store(e))?;
        Ok(tx)
    }

    /// The pending purchases, oldest transaction hash first.
    fn pending(&self) -> Result<Vec<(Hash, Pending)>, WalletError> {
        let txn = self.inner.db.begin_read().map_err(|e| self.store(e))?;
        let table = txn.open_table(PENDING).map_err(|e| self.store(e))?;
        let mut all = Vec::new();
        for row in table.iter().map_err(|e| self.store(e))? {
            let (key, value) = row.map_err(|e| self.store(e))?;
            let tx = <[u8; 32]>::try_from(key.value())
                .map(Hash)
                .map_err(|_| self.corrupt("pending purchase key"))?;
            let pending: Pending = serde_json::from_slice(value.value())
                .map_err(|_| self.corrupt("pending purchase"))?;
            all.push((tx, pending));
        }
        Ok(all)
    }

    /// Takes pending purchase `tx` as far as it goes: submitted, committed, signed, stored.
    async fn drive(&self, validators: &[ValidatorUrl], tx: Hash) -> Result<Outcome, BuyError> {
        let pending = self
            .pending()?
            .into_iter()
            .find(|(hash, _)| *hash == tx)
            .map(|(_, pending)| pending)
            .ok_or_else(|| self.corrupt("pending purchase"))?;
        let reached = reach(validators).await?;
        let committed = match self.commit(&reached, &pending.transaction, tx).await? {
            Commit::Committed(client) => client,
            Commit::Never { reason, refusal } => {
                self.abandon(tx, &reason)?;
                return Ok(Outcome::Abandoned {
                    reason,
                    refusal: Some(refusal),
                });
            }
        };
        let purchase: PurchaseView = match committed.get(&format!("/tickets/purchases/{tx}")).await
        {
            Ok(purchase) => purchase,
            Err(LedgerError::Refused { status: 404, .. }) => {
                let reason = "committed, but its key period expired before the validators signed it (what it paid went to the reward pool)".to_owned();
                self.abandon(tx, &reason)?;
                return Ok(Outcome::Abandoned {
                    reason,
                    refusal: None,
                });
            }
            Err(error) => {
                return Err(BuyError::Unreachable {
                    tried: format!("{}: {error}", committed.address()),
                });
            }
        };
        let bought = self
            .sign(&reached, &committed, &pending, tx, purchase)
            .await?;
        Ok(Outcome::Bought(bought))
    }

    /// Makes sure `transaction` is committed: the validator that says so, or why it never
    /// will be (nothing paid).
    async fn commit(
        &self,
        reached: &[(ValidatorUrl, LedgerClient)],
        transaction: &Transaction,
        tx: Hash,
    ) -> Result<Commit, BuyError> {
        let mut tried = Vec::new();
        let mut waiting = None;
        let mut unknown = false;
        for (url, client) in reached {
            match client.get::<TxStatus>(&format!("/tx/{tx}")).await {
                Ok(TxStatus::Committed { error: None, .. }) => {
                    return Ok(Commit::Committed(client.clone()));
                }
                Ok(TxStatus::Committed {
                    error: Some(error), ..
                }) => {
                    return Ok(Commit::never(
                        format!("refused by the ledger: {error}"),
                        error,
                    ));
                }
                Ok(TxStatus::Pending) => waiting = waiting.or(Some(client.clone())),
                Err(LedgerError::Refused { status: 404, .. }) => unknown = true,
                Err(error) => tried.push(format!("{url}: {error}")),
            }
        }
        let client = match waiting {
            Some(client) => client,
            None if !unknown => {
                return Err(BuyError::Unreachable {
                    tried: tried.join("; "),
                });
            }
            // no validator knows it: it was never submitted, or never accepted
            None => {
                let mut accepted = None;
                for (url, client) in reached {
                    match client.submit(transaction).await {
                        Ok(_) => {
                            accepted = Some(client.clone());
                            break;
                        }
                        Err(LedgerError::Failed(error)) => {
                            let reason = match &error {
                                TxError::BadNonce { expected, got } if expected > got => format!(
                                    "its nonce {got} was taken by another transaction of the account; nothing was paid"
                                ),
                                other => format!("refused by the ledger: {other}"),
                            };
                            return Ok(Commit::never(reason, error));
                        }
                        Err(error) => tried.push(format!("{url}: {error}")),
                    }
                }
                accepted.ok_or_else(|| BuyError::Unreachable {
                    tried: tried.join("; "),
                })?
            }
        };
        match client.wait_for(&tx, COMMIT_TIMEOUT).await {
            Ok(_) => Ok(Commit::Committed(client)),
            Err(LedgerError::Failed(error)) => Ok(Commit::never(
                format!("refused by the ledger: {error}"),
                error,
            )),
            Err(LedgerError::Timeout(waited)) => Err(BuyError::NotCommitted { tx, waited }),
            Err(error) => Err(BuyError::Unreachable {
                tried: format!("{}: {error}", client.address()),
            }),
        }
    }

    /// Collects the validators' blind signatures for committed purchase `tx`, makes and checks
    /// the tickets, and stores them.
    async fn sign(
        &self,
        reached: &[(ValidatorUrl, LedgerClient)],
        committed: &LedgerClient,
        pending: &Pending,
        tx: Hash,
        purchase: PurchaseView,
    ) -> Result<Bought, BuyError> {
        let period = purchase.period;
        let view: IssuersView =
            committed
                .get("/tickets/issuers")
                .await
                .map_err(|error| BuyError::Unreachable {
                    tried: format!("{}: {error}", committed.address()),
                })?;
        let issuers: Vec<IssuerView> = view
            .periods
            .iter()
            .find(|p| p.period == period)
            .map(|p| p.issuers.clone())
            .unwrap_or_default();
        if issuers.is_empty() {
            return Err(BuyError::NoIssuers { tx, period });
        }
        // every validator must list the same keys: a key shown to this client alone would
        // tell its tickets apart
        for (url, client) in reached {
            let Ok(other) = client.get::<IssuersView>("/tickets/issuers").await else {
                continue;
            };
            let Some(theirs) = other.periods.iter().find(|p| p.period == period) else {
                continue;
            };
            for mine in &issuers {
                if let Some(their) = theirs
                    .issuers
                    .iter()
                    .find(|i| i.validator == mine.validator)
                    && their.key != mine.key
                {
                    return Err(BuyError::IssuersDisagree {
                        tx,
                        period,
                        validator: mine.validator,
                        first: committed.address().to_string(),
                        second: url.to_string(),
                    });
                }
            }
        }
        let keys: Vec<(u16, IssuerPublicKey)> = issuers
            .iter()
            .filter_map(|i| Some((i.validator, IssuerPublicKey::from_bytes(&i.key).ok()?)))
            .collect();
        let chain = ChainTag::of(&pending.chain_id);
        let seed = PurchaseSeed::from_bytes(pending.seed);
        let request = PurchaseRequest::new(&seed, TxId(tx.0), chain, period, purchase.count, &keys)
            .map_err(|error| BuyError::BadTicket {
                tx,
                reason: error.to_string(),
            })?;
        let mut partials: BTreeMap<u16, Vec<Partial>> = BTreeMap::new();
        let mut signers = Vec::new();
        let mut problems = Vec::new();
        for (url, client) in reached {
            match ask(client, &request, &issuers, tx, period, &partials).await {
                Ok(Some((validator, answer))) => {
                    signers.push(url.to_string());
                    partials.insert(validator, answer);
                }
                Ok(None) => {}
                Err(problem) => problems.push(format!("{url}: {problem}")),
            }
        }
        let signed: u64 = issuers
            .iter()
            .filter(|i| partials.contains_key(&i.validator))
            .map(|i| i.power)
            .sum();
        let total = view.total_power;
        if u128::from(signed) * 3 <= u128::from(total) * 2 {
            return Err(BuyError::TooFewSigners {
                tx,
                reached: if signers.is_empty() {
                    "none".into()
                } else {
                    signers.join(", ")
                },
                signed,
                total,
                problems: if problems.is_empty() {
                    String::new()
                } else {
                    format!("; {}", problems.join("; "))
                },
            });
        }
        let tickets = request.assemble(partials.into_values().flatten());
        let mut stored = Vec::with_capacity(tickets.len());
        for ticket in &tickets {
            let bytes = ticket.to_bytes();
            let serial = view
                .verify(&bytes, chain)
                .map_err(|refusal| BuyError::BadTicket {
                    tx,
                    reason: refusal.to_string(),
                })?;
            stored.push((serial, bytes));
        }
        self.store_tickets(tx, period, &stored)?;
        info!(%tx, count = stored.len(), period, "tickets stored in the wallet");
        Ok(Bought {
            tx,
            count: purchase.count,
            period,
        })
    }

    /// Stores the tickets of purchase `tx` and marks it done (its seed deleted), at once.
    fn store_tickets(
        &self,
        tx: Hash,
        period: u64,
        tickets: &[(Serial, Vec<u8>)],
    ) -> Result<(), WalletError> {
        let done = Finished::Done {
            count: tickets.len() as u32,
            period,
        };
        let done = serde_json::to_vec(&done).map_err(|e| self.store(e))?;
        let txn = self.inner.db.begin_write().map_err(|e| self.store(e))?;
        {
            let mut table = txn.open_table(TICKETS).map_err(|e| self.store(e))?;
            let mut serials = txn.open_table(SERIALS).map_err(|e| self.store(e))?;
            for (serial, bytes) in tickets {
                table
                    .insert(&ticket_key(period, serial)[..], &bytes[..])
                    .map_err(|e| self.store(e))?;
                serials
                    .insert(&serial.0[..], period)
                    .map_err(|e| self.store(e))?;
            }
            txn.open_table(PENDING)
                .map_err(|e| self.store(e))?
                .remove(&tx.0[..])
                .map_err(|e| self.store(e))?;
            txn.open_table(HISTORY)
                .map_err(|e| self.store(e))?
                .insert(&tx.0[..], &done[..])
                .map_err(|e| self.store(e))?;
        }
        txn.commit().map_err(|e| self.store(e))
    }

    /// Records pending purchase `tx` as abandoned, for `reason`.
    fn abandon(&self, tx: Hash, reason: &str) -> Result<(), WalletError> {
        let record = Finished::Abandoned {
            reason: reason.to_owned(),
        };
        let record = serde_json::to_vec(&record).map_err(|e| self.store(e))?;
        let txn = self.inner.db.begin_write().map_err(|e| self.store(e))?;
        {
            txn.open_table(PENDING)
                .map_err(|e| self.store(e))?
                .remove(&tx.0[..])
                .map_err(|e| self.store(e))?;
            txn.open_table(HISTORY)
                .map_err(|e| self.store(e))?
                .insert(&tx.0[..], &record[..])
                .map_err(|e| self.store(e))?;
        }
        txn.commit().map_err(|e| self.store(e))
    }

    fn store(&self, error: impl fmt::Display) -> WalletError {
        WalletError::Store {
            path: self.inner.path.clone(),
            reason: error.to_string(),
        }
    }

    fn corrupt(&self, what: &'static str) -> WalletError {
        WalletError::Corrupt {
            path: self.inner.path.clone(),
            what,
        }
    }
}

impl fmt::Debug for TicketWallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketWallet")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Asks the signing service behind `client` for its blind signatures of `request`: the
/// validator's index and its unblinded answer, `None` if that validator already answered
/// (through another address).
async fn ask(
    client: &LedgerClient,
    request: &PurchaseRequest,
    issuers: &[IssuerView],
    tx: Hash,
    period: u64,
    answered: &BTreeMap<u16, Vec<Partial>>,
) -> Result<Option<(u16, Vec<Partial>)>, String> {
    // whose service this is, before anything is sent: a copy blinded for another validator's
    // key would be signed, and recorded there as this purchase's one answer
    let signer: SignerView = client
        .get("/tickets/signer")
        .await
        .map_err(|e| e.to_string())?;
    let validator = issuers
        .iter()
        .find(|i| i.validator_key == signer.validator_key)
        .map(|i| i.validator)
        .ok_or_else(|| format!("its validator announced no ticket key for period {period}"))?;
    if answered.contains_key(&validator) {
        return Ok(None);
    }
    let blinded = request.blinded(validator).map_err(|e| e.to_string())?;
    let body = SignRequest {
        tx: tx.to_string(),
        blinded: blinded.iter().map(|b| hex::encode(&b.0)).collect(),
    };
    let answer: SignAnswer = client
        .post("/tickets/sign", &body)
        .await
        .map_err(|e| e.to_string())?;
    if answer.validator != validator || answer.period != period {
        return Err(format!(
            "answered as validator {} for period {}, not as validator {validator} for period {period}",
            answer.validator, answer.period
        ));
    }
    let signatures = answer
        .signatures
        .iter()
        .map(|text| hex::decode(text).map(BlindSignature))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "answered signatures that are not hex".to_owned())?;
    let partials = request
        .finish(validator, &signatures)
        .map_err(|e| e.to_string())?;
    Ok(Some((validator, partials)))
}

/// The validators whose address resolves, with a client for each; an error if none does.
async fn reach(validators: &[ValidatorUrl]) -> Result<Vec<(ValidatorUrl, LedgerClient)>, BuyError> {
    if validators.is_empty() {
        return Err(BuyError::NoValidators);
    }
    let mut reached = Vec::new();
    let mut tried = Vec::new();
    for url in validators {
        match url.resolve().await {
            Ok(address) => reached.push((url.clone(), LedgerClient::new(address))),
            Err(error) => tried.push(format!("{url}: {error}")),
        }
    }
    if reached.is_empty() {
        return Err(BuyError::Unreachable {
            tried: tried.join("; "),
        });
    }
    Ok(reached)
}

/// The ledger of the client daemon in `data_dir` (a client, SOCKS5 proxy or exit): its
/// validators and the chain id of its genesis file. A client with a fixed topology file has
/// no ledger to buy tickets on.
pub fn ledger_of(data_dir: &Path) -> Result<(Vec<ValidatorUrl>, String), NodeError> {
    let daemon = crate::daemon::ClientDaemon::load(data_dir)?;
    let Some(ledger) = &daemon.config().ledger else {
        return Err(NodeError::invalid(
            data_dir.join(crate::daemon::CONFIG_FILE),
            "has no [ledger] section: this client reads a fixed topology file, and tickets are bought on a ledger. Add a [ledger] section naming the network's validators and genesis file (docs/tickets.md)",
        ));
    };
    let trust = umbra_net::directory::TrustRoot::read(&data_dir.join(&ledger.genesis))?;
    Ok((ledger.validators.clone(), trust.chain_id))
}

/// The wallet of the client daemon in `data_dir` ([`crate::daemon::TICKETS_FILE`]).
pub fn wallet_of(data_dir: &Path) -> Result<TicketWallet, NodeError> {
    TicketWallet::open(&data_dir.join(crate::daemon::TICKETS_FILE))
}

fn ticket_key(period: u64, serial: &Serial) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..8].copy_from_slice(&period.to_be_bytes());
    key[8..].copy_from_slice(&serial.0);
    key
}

fn split_key(key: &[u8]) -> Option<(u64, Serial)> {
    let period = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let serial = Serial(key.get(8..)?.try_into().ok()?);
    Some((period, serial))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio_util::sync::CancellationToken;
    use umbra_ledger::api::TicketStatsView;
    use umbra_ledger::{Amount, Params};

    const CHAIN: &str = "test";

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("umbra-wallet-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A solo validator run as `umbra validator run` runs it, with 20 ms blocks.
    struct Solo {
        dir: PathBuf,
        url: ValidatorUrl,
        client: LedgerClient,
        account: SigningKey,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<Result<(), umbra_validator::ValidatorError>>,
    }

    impl Solo {
        async fn start(name: &str) -> Solo {
            let dir = temp_dir(name).join("validator");
            let address: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            umbra_validator::init(
                &dir,
                &umbra_validator::InitOptions {
                    listen_address: address,
                    genesis: None,
                    chain_id: CHAIN.into(),
                    params: Params::default(),
                    consensus: None,
                },
            )
            .unwrap();
            let config = dir.join(umbra_validator::CONFIG_FILE);
            let text = std::fs::read_to_string(&config)
                .unwrap()
                .replace("block_interval = \"250ms\"", "block_interval = \"20ms\"");
            std::fs::write(&config, text).unwrap();
            let stop = CancellationToken::new();
            let task = tokio::spawn({
                let (dir, stop) = (dir.clone(), stop.clone());
                async move { umbra_validator::run(&dir, stop).await }
            });
            let client = LedgerClient::new(address);
            let account = SigningKey::from_seed(
                umbra_net::keys::read_key(&dir.join(umbra_validator::ACCOUNT_KEY_FILE)).unwrap(),
            );
            // tickets can be bought once the current period's keys are announced
            for _ in 0..300 {
                if let Ok(view) = client.get::<IssuersView>("/tickets/issuers").await
                    && view
                        .periods
                        .iter()
                        .any(|p| p.period == view.current_period && p.usable)
                {
                    return Solo {
                        dir,
                        url: ValidatorUrl::from_address(address),
                        client,
                        account,
                        stop,
                        task,
                    };
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the validator announced no ticket keys");
        }

        async fn balance(&self, account: &SigningKey) -> Amount {
            self.client
                .account(&account.public())
                .await
                .unwrap()
                .account
                .balance
        }

        async fn price(&self) -> u64 {
            let stats: TicketStatsView = self.client.get("/tickets").await.unwrap();
            stats.price.0
        }

        async fn stop(self) {
            self.stop.cancel();
            self.task.await.unwrap().unwrap();
            let _ = std::fs::remove_dir_all(self.dir.parent().unwrap());
        }
    }

    fn wallet_in(solo: &Solo) -> (PathBuf, TicketWallet) {
        let path = solo.dir.parent().unwrap().join("tickets.redb");
        let wallet = TicketWallet::open(&path).unwrap();
        (path, wallet)
    }

    /// Takes every ticket out of the wallet in order, marking each spent.
    fn spend_all(wallet: &TicketWallet) -> Vec<StoredTicket> {
        let mut spent = Vec::new();
        while let Some(ticket) = wallet.next_unspent().unwrap() {
            // the same ticket until it is marked
            assert_eq!(wallet.next_unspent().unwrap(), Some(ticket.clone()));
            wallet.mark_spent(&ticket.serial).unwrap();
            spent.push(ticket);
        }
        spent
    }

    #[tokio::test]
    async fn bought_tickets_verify_are_paid_once_and_survive_a_reopen() {
        let solo = Solo::start("buy").await;
        let (path, wallet) = wallet_in(&solo);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let price = solo.price().await;
        let before = solo.balance(&solo.account).await;
        let bought = wallet
            .buy(std::slice::from_ref(&solo.url), CHAIN, &solo.account, 3)
            .await
            .unwrap();
        let view: IssuersView = solo.client.get("/tickets/issuers").await.unwrap();
        assert_eq!(bought.count, 3);
        assert_eq!(bought.period, view.current_period);
        assert_eq!(
            solo.balance(&solo.account).await.0,
            before.0 - 3 * price,
            "paid exactly 3 tickets"
        );
        let counts = wallet.counts().unwrap();
        assert_eq!(
            counts,
            WalletCounts {
                unspent: 3,
                spent: 0,
                unfinished: 0
            }
        );
        let first = wallet.next_unspent().unwrap().unwrap();
        assert!(!format!("{first:?}").contains(&first.serial.to_string()));

        // reopened: the same tickets
        drop(wallet);
        let wallet = TicketWallet::open(&path).unwrap();
        assert_eq!(wallet.counts().unwrap(), counts);
        assert_eq!(wallet.next_unspent().unwrap(), Some(first.clone()));
        let tickets = spend_all(&wallet);
        assert_eq!(tickets.len(), 3);
        assert_eq!(tickets[0], first);
        for ticket in &tickets {
            assert_eq!(ticket.period, bought.period);
            assert_eq!(
                view.verify(&ticket.bytes, ChainTag::of(CHAIN)),
                Ok(ticket.serial)
            );
        }
        let mut serials: Vec<_> = tickets.iter().map(|t| t.serial).collect();
        serials.sort();
        serials.dedup();
        assert_eq!(serials.len(), 3);
        // marking again changes nothing
        wallet.mark_spent(&tickets[0].serial).unwrap();
        assert_eq!(
            wallet.counts().unwrap(),
            WalletCounts {
                unspent: 0,
                spent: 3,
                unfinished: 0
            }
        );
        assert_eq!(wallet.next_unspent().unwrap(), None);
        solo.stop().await;
    }

    #[tokio::test]
    async fn a_crash_before_submitting_or_before_signing_resumes_without_paying_twice() {
        let solo = Solo::start("crash").await;
        let (path, wallet) = wallet_in(&solo);
        let urls = [solo.url.clone()];
        let price = solo.price().await;
        let before = solo.balance(&solo.account).await;

        // stopped right after the intent was stored: nothing submitted
        let nonce = solo
            .client
            .account(&solo.account.public())
            .await
            .unwrap()
            .next_nonce;
        let first = wallet
            .record_intent(CHAIN, &solo.account, nonce, 2)
            .unwrap();
        assert_eq!(wallet.counts().unwrap().unfinished, 1);
        assert_eq!(solo.balance(&solo.account).await, before);
        drop(wallet);
        let wallet = TicketWallet::open(&path).unwrap();
        let resumed = wallet.resume(&urls, CHAIN).await.unwrap();
        assert_eq!(resumed.len(), 1);
        assert_eq!(resumed[0].tx, first);
        assert_eq!(resumed[0].count, 2);
        assert_eq!(solo.balance(&solo.account).await.0, before.0 - 2 * price);

        // stopped after it was committed, and after the validator answered, before the
        // tickets were stored
        let nonce = solo
            .client
            .account(&solo.account.public())
            .await
            .unwrap()
            .next_nonce;
        let second = wallet
            .record_intent(CHAIN, &solo.account, nonce, 4)
            .unwrap();
        let (_, pending) = wallet
            .pending()
            .unwrap()
            .into_iter()
            .find(|(tx, _)| *tx == second)
            .unwrap();
        assert_eq!(
            solo.client.submit(&pending.transaction).await.unwrap(),
            second
        );
        solo.client.wait_for(&second, COMMIT_TIMEOUT).await.unwrap();
        let view: IssuersView = solo.client.get("/tickets/issuers").await.unwrap();
        let issuers = view
            .periods
            .iter()
            .find(|p| p.period == view.current_period)
            .unwrap()
            .issuers
            .clone();
        let keys: Vec<_> = issuers
            .iter()
            .map(|i| (i.validator, IssuerPublicKey::from_bytes(&i.key).unwrap()))
            .collect();
        let request = PurchaseRequest::new(
            &PurchaseSeed::from_bytes(pending.seed),
            TxId(second.0),
            ChainTag::of(CHAIN),
            view.current_period,
            4,
            &keys,
        )
        .unwrap();
        let answered = ask(
            &solo.client,
            &request,
            &issuers,
            second,
            view.current_period,
            &BTreeMap::new(),
        )
        .await
        .unwrap();
        assert!(answered.is_some());
        drop(wallet);
        let wallet = TicketWallet::open(&path).unwrap();
        let resumed = wallet.resume(&urls, CHAIN).await.unwrap();
        assert_eq!(resumed.len(), 1);
        assert_eq!(resumed[0].tx, second);
        assert_eq!(solo.balance(&solo.account).await.0, before.0 - 6 * price);
        let counts = wallet.counts().unwrap();
        assert_eq!(
            counts,
            WalletCounts {
                unspent: 6,
                spent: 0,
                unfinished: 0
            }
        );

        // nothing left to do
        assert_eq!(wallet.resume(&urls, CHAIN).await.unwrap(), Vec::new());
        assert_eq!(wallet.counts().unwrap(), counts);
        assert_eq!(solo.balance(&solo.account).await.0, before.0 - 6 * price);
        for ticket in spend_all(&wallet) {
            assert!(view.verify(&ticket.bytes, ChainTag::of(CHAIN)).is_ok());
        }
        solo.stop().await;
    }

    #[tokio::test]
    async fn a_refused_purchase_leaves_nothing_behind_and_bad_counts_are_refused() {
        let solo = Solo::start("refused").await;
        let (_, wallet) = wallet_in(&solo);
        let urls = [solo.url.clone()];
        let poor = SigningKey::from_seed([42; 32]);
        let error = wallet.buy(&urls, CHAIN, &poor, 2).await.unwrap_err();
        assert!(
            matches!(
                error,
                BuyError::Refused {
                    error: TxError::InsufficientBalance { .. },
                    ..
                }
            ),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            message.contains("balance") && message.contains("nothing was paid"),
            "{message}"
        );
        assert_eq!(wallet.counts().unwrap(), WalletCounts::default());
        assert_eq!(wallet.next_unspent().unwrap(), None);

        for count in [0, MAX_TICKETS_PER_PURCHASE + 1] {
            let error = wallet
                .buy(&urls, CHAIN, &solo.account, count)
                .await
                .unwrap_err();
            assert!(matches!(error, BuyError::Count { .. }), "{error}");
            assert!(error.to_string().contains("1 to 4096"), "{error}");
        }
        let error = wallet.buy(&[], CHAIN, &solo.account, 1).await.unwrap_err();
        assert!(error.to_string().contains("[ledger] validators"), "{error}");
        let error = wallet
            .buy(&urls, "other", &solo.account, 1)
            .await
            .unwrap_err();
        assert!(matches!(error, BuyError::WrongChain { .. }), "{error}");
        assert_eq!(wallet.counts().unwrap(), WalletCounts::default());
        solo.stop().await;
    }

    #[test]
    fn expired_periods_are_pruned_and_the_oldest_period_is_spent_first() {
        let dir = temp_dir("prune");
        let wallet = TicketWallet::open(&dir.join("tickets.redb")).unwrap();
        for (tx, period) in [(1u8, 6u64), (2, 3), (3, 5)] {
            let tickets = [
                (Serial([tx; 32]), vec![tx; 10]),
                (Serial([tx + 10; 32]), vec![tx; 11]),
            ];
            wallet
                .store_tickets(Hash([tx; 32]), period, &tickets)
                .unwrap();
        }
        assert_eq!(wallet.counts().unwrap().unspent, 6);
        assert_eq!(wallet.next_unspent().unwrap().unwrap().period, 3);
        assert_eq!(
            wallet.prune_expired(4).unwrap(),
            0,
            "period 3 is still live in period 4"
        );
        assert_eq!(wallet.prune_expired(6).unwrap(), 2);
        assert_eq!(wallet.counts().unwrap().unspent, 4);
        let next = wallet.next_unspent().unwrap().unwrap();
        assert_eq!(next.period, 5);
        // a pruned ticket is not counted as spent
        wallet.mark_spent(&Serial([2; 32])).unwrap();
        assert_eq!(wallet.counts().unwrap().spent, 0);
        let periods: Vec<u64> = spend_all(&wallet).iter().map(|t| t.period).collect();
        assert_eq!(periods, [5, 5, 6, 6]);
        assert_eq!(wallet.prune_expired(100).unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
