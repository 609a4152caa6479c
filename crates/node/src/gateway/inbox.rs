//! The gateway's inbox on disk: deliveries kept for clients that are away, in redb.
//!
//! One thread owns the database. It takes what the core asks (register a client, store,
//! delete, read a window) in batches: every write waiting goes into one transaction, committed
//! durably (fsync) before the core hears that anything was stored, so a delivery acknowledged
//! to its sender is on disk. Reads follow the commit. Expired deliveries are swept out about
//! once a minute.
//!
//! Tables: `deliveries`, keyed by client ‖ id (big-endian, so a client's deliveries are in
//! order), holding the time stored ‖ the delivery as the gateway protocol encodes it;
//! `expiry`, keyed by time stored ‖ client ‖ id, to find expired ones without a scan; `clients`,
//! the clients remembered, with when each last connected (Unix seconds); `meta`, the next
//! delivery id.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use tracing::{error, info, warn};
use umbra_gateway::{ClientId, KnownClient, SessionId};
use umbra_wire::gateway::Delivery;

use umbra_net::NodeError;

const DELIVERIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("deliveries");
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");
const CLIENTS: TableDefinition<&[u8], u64> = TableDefinition::new("clients");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_DELIVERY: &str = "next_delivery";

/// How often expired deliveries are removed.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Writes taken into one transaction, at most.
const BATCH: usize = 4096;

/// What the core asks of the inbox.
#[derive(Debug)]
pub(crate) enum InboxOp {
    /// A client connected: remember it, seen now.
    Register(ClientId),
    /// Forget these clients.
    Forget(Vec<ClientId>),
    Store(ClientId, Delivery),
    Delete(ClientId, Vec<u64>),
    Load {
        client: ClientId,
        session: SessionId,
        after: Option<u64>,
        limit: usize,
    },
}

/// What the inbox did.
#[derive(Debug)]
pub(crate) enum InboxEvent {
    /// Written and synced.
    Stored(Vec<(ClientId, u64)>),
    /// Not written (client, id, payload bytes).
    Failed(Vec<(ClientId, u64, u64)>),
    /// Gone (confirmed or expired): how many, how many payload bytes.
    Removed(ClientId, u64, u64),
    Loaded {
        client: ClientId,
        session: SessionId,
        deliveries: Vec<Delivery>,
        more: bool,
    },
}

/// What the inbox holds when the gateway starts.
pub(crate) struct Recovered {
    /// The clients remembered, with what is stored for each and when each was last seen.
    pub(crate) clients: Vec<KnownClient>,
    /// Above every id ever given out.
    pub(crate) next_delivery: u64,
}

/// The inbox database.
pub(crate) struct Inbox {
    db: Database,
    path: PathBuf,
    expiry: Duration,
}

fn key(client: &ClientId, id: u64) -> [u8; 40] {
    let mut key = [0; 40];
    key[..32].copy_from_slice(&client.0);
    key[32..].copy_from_slice(&id.to_be_bytes());
    key
}

fn expiry_key(stored_at: u64, client: &ClientId, id: u64) -> [u8; 48] {
    let mut key = [0; 48];
    key[..8].copy_from_slice(&stored_at.to_be_bytes());
    key[8..].copy_from_slice(&self::key(client, id));
    key
}

fn split_key(key: &[u8]) -> Option<(ClientId, u64)> {
    let client: [u8; 32] = key.get(..32)?.try_into().ok()?;
    let id: [u8; 8] = key.get(32..40)?.try_into().ok()?;
    Some((ClientId(client), u64::from_be_bytes(id)))
}

/// A stored value: when stored, and the delivery.
fn decode_value(value: &[u8]) -> Option<(u64, Delivery)> {
    let stored_at = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
    Delivery::from_stored(value.get(8..)?)
        .ok()
        .map(|delivery| (stored_at, delivery))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Inbox {
    /// Opens (or creates) the inbox at `path` and reads what it holds.
    pub(crate) fn open(path: &Path, expiry: Duration) -> Result<(Inbox, Recovered), NodeError> {
        let fail = |what: &str, error: &dyn std::fmt::Display| {
            NodeError::invalid(
                path,
                format!(
                    "{what}: {error}. If the file is damaged beyond repair, move it away to start with an empty inbox (the messages in it are then lost)"
                ),
            )
        };
        umbra_net::files::prepare_private_file(path)?;
        let db = Database::create(path).map_err(|e| fail("cannot open the inbox database", &e))?;
        let inbox = Inbox {
            db,
            path: path.to_owned(),
            expiry,
        };
        let recovered = inbox
            .recover()
            .map_err(|e| fail("cannot read the inbox database", &e))?;
        let stored: u64 = recovered.clients.iter().map(|known| known.stored).sum();
        info!(clients = recovered.clients.len(), stored, "inbox opened");
        Ok((inbox, recovered))
    }

    fn recover(&self) -> Result<Recovered, redb::Error> {
        // create the tables on first use, so reads find them
        let write = self.db.begin_write()?;
        write.open_table(DELIVERIES)?;
        write.open_table(EXPIRY)?;
        write.open_table(CLIENTS)?;
        write.open_table(META)?;
        write.commit()?;

        let read = self.db.begin_read()?;
        let now = unix_now();
        // (stored, bytes, last seen)
        let mut clients: BTreeMap<ClientId, (u64, u64, u64)> = BTreeMap::new();
        for entry in read.open_table(CLIENTS)?.iter()? {
            let (key, seen) = entry?;
            if let Ok(client) = <[u8; 32]>::try_from(key.value()) {
                clients.insert(ClientId(client), (0, 0, seen.value()));
            }
        }
        let mut highest = 0;
        let mut unreadable = 0u64;
        for entry in read.open_table(DELIVERIES)?.iter()? {
            let (key, value) = entry?;
            match (split_key(key.value()), decode_value(value.value())) {
                (Some((client, id)), Some((_, delivery))) => {
                    let (count, bytes, _) = clients.entry(client).or_insert((0, 0, now));
                    *count += 1;
                    *bytes += delivery.payload.len() as u64;
                    highest = highest.max(id);
                }
                _ => unreadable += 1,
            }
        }
        if unreadable > 0 {
            warn!(
                unreadable,
                "stored deliveries that cannot be read are skipped"
            );
        }
        let next = read
            .open_table(META)?
            .get(NEXT_DELIVERY)?
            .map_or(1, |v| v.value());
        Ok(Recovered {
            clients: clients
                .into_iter()
                .map(|(client, (stored, stored_bytes, seen))| KnownClient {
                    client,
                    stored,
                    stored_bytes,
                    last_seen_ago: Duration::from_secs(now.saturating_sub(seen)),
                })
                .collect(),
            next_delivery: next.max(highest + 1),
        })
    }

    /// The inbox thread: serves `ops` until the channel closes, telling `events` what it did.
    pub(crate) fn run(self, ops: Receiver<InboxOp>, events: impl Fn(InboxEvent)) {
        let mut next_sweep = Instant::now();
        loop {
            let wait = next_sweep.saturating_duration_since(Instant::now());
            let mut batch = Vec::new();
            match ops.recv_timeout(wait) {
                Ok(op) => batch.push(op),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < BATCH {
                let Ok(op) = ops.try_recv() else { break };
                batch.push(op);
            }
            let sweep = Instant::now() >= next_sweep;
            if sweep {
                next_sweep = Instant::now() + SWEEP_EVERY;
            }
            self.serve(batch, sweep, &events);
        }
    }

    fn serve(&self, batch: Vec<InboxOp>, sweep: bool, events: &impl Fn(InboxEvent)) {
        let mut loads = Vec::new();
        let mut stores = Vec::new();
        let mut writes = Vec::new();
        for op in batch {
            match op {
                InboxOp::Load { .. } => loads.push(op),
                InboxOp::Store(client, ref delivery) => {
                    stores.push((client, delivery.id, delivery.payload.len() as u64));
                    writes.push(op);
                }
                op => writes.push(op),
            }
        }
        if !writes.is_empty() || sweep {
            match self.write(writes, sweep) {
                Ok(removed) => {
                    if !stores.is_empty() {
                        events(InboxEvent::Stored(
                            stores.iter().map(|(c, id, _)| (*c, *id)).collect(),
                        ));
                    }
                    for (client, (count, bytes)) in removed {
                        events(InboxEvent::Removed(client, count, bytes));
                    }
                }
                Err(error) => {
                    error!(%error, path = %self.path.display(), "writing the inbox failed; deliveries not stored are left unacknowledged for their senders to send again");
                    if !stores.is_empty() {
                        events(InboxEvent::Failed(stores));
                    }
                }
            }
        }
        for load in loads {
            let InboxOp::Load {
                client,
                session,
                after,
                limit,
            } = load
            else {
                continue;
            };
            let (deliveries, more) = self.read(&client, after, limit).unwrap_or_else(|error| {
                error!(%error, "reading the inbox failed");
                (Vec::new(), false)
            });
            events(InboxEvent::Loaded {
                client,
                session,
                deliveries,
                more,
            });
        }
    }

    /// One transaction for the batch's writes (and the sweep); what was removed, per client.
    fn write(
        &self,
        writes: Vec<InboxOp>,
        sweep: bool,
    ) -> Result<BTreeMap<ClientId, (u64, u64)>, redb::Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let removed = apply(&txn, writes, sweep.then_some(self.expiry))?;
        txn.commit()?;
        Ok(removed)
    }

    fn read(
        &self,
        client: &ClientId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, bool), redb::Error> {
        let read = self.db.begin_read()?;
        let table = read.open_table(DELIVERIES)?;
        let start = key(client, after.map_or(0, |id| id.saturating_add(1)));
        let end = key(client, u64::MAX);
        let mut deliveries = Vec::new();
        let mut more = false;
        for entry in table.range::<&[u8]>(&start[..]..=&end[..])? {
            let (_, value) = entry?;
            if deliveries.len() == limit {
                more = true;
                break;
            }
            if let Some((_, delivery)) = decode_value(value.value()) {
                deliveries.push(delivery);
            }
        }
        Ok((deliveries, more))
    }
}

fn apply(
    txn: &WriteTransaction,
    writes: Vec<InboxOp>,
    sweep: Option<Duration>,
) -> Result<BTreeMap<ClientId, (u64, u64)>, redb::Error> {
    let mut deliveries = txn.open_table(DELIVERIES)?;
    let mut expiry = txn.open_table(EXPIRY)?;
    let mut clients = txn.open_table(CLIENTS)?;
    let mut meta = txn.open_table(META)?;
    let mut removed: BTreeMap<ClientId, (u64, u64)> = BTreeMap::new();
    let now = unix_now();
    let mut next = meta.get(NEXT_DELIVERY)?.map_or(1, |v| v.value());
    for op in writes {
        match op {
            InboxOp::Register(client) => {
                clients.insert(&client.0[..], now)?;
            }
            InboxOp::Forget(gone) => {
                for client in gone {
                    clients.remove(&client.0[..])?;
                }
            }
            InboxOp::Store(client, delivery) => {
                let id = delivery.id;
                let mut value = now.to_be_bytes().to_vec();
                value.extend_from_slice(&delivery.to_stored());
                deliveries.insert(&key(&client, id)[..], &value[..])?;
                expiry.insert(&expiry_key(now, &client, id)[..], ())?;
                next = next.max(id + 1);
            }
            InboxOp::Delete(client, ids) => {
                for id in ids {
                    let gone = deliveries
                        .remove(&key(&client, id)[..])?
                        .and_then(|v| decode_value(v.value()));
                    if let Some((stored_at, delivery)) = gone {
                        expiry.remove(&expiry_key(stored_at, &client, id)[..])?;
                        let entry = removed.entry(client).or_default();
                        entry.0 += 1;
                        entry.1 += delivery.payload.len() as u64;
                    }
                }
            }
            InboxOp::Load { .. } => {}
        }
    }
    meta.insert(NEXT_DELIVERY, next)?;
    if let Some(keep) = sweep {
        let cutoff = now.saturating_sub(keep.as_secs());
        // expired: stored at least `keep` ago
        let end = expiry_key(cutoff.saturating_add(1), &ClientId([0; 32]), 0);
        let expired: Vec<Vec<u8>> = expiry
            .range::<&[u8]>(..&end[..])?
            .map(|entry| entry.map(|(key, _)| key.value().to_vec()))
            .collect::<Result<_, _>>()?;
        let mut count = 0;
        for expired_key in expired {
            expiry.remove(&expired_key[..])?;
            let Some((client, id)) = expired_key.get(8..).and_then(split_key) else {
                continue;
            };
            if let Some(value) = deliveries.remove(&key(&client, id)[..])?
                && let Some((_, delivery)) = decode_value(value.value())
            {
                let entry = removed.entry(client).or_default();
                entry.0 += 1;
                entry.1 += delivery.payload.len() as u64;
                count += 1;
            }
        }
        if count > 0 {
            info!(count, "expired deliveries removed from the inbox");
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use umbra_wire::gateway::DeliveryKind;

    fn delivery(id: u64) -> Delivery {
        Delivery {
            id,
            kind: DeliveryKind::Data,
            payload: vec![id as u8; 10],
        }
    }

    fn drive(inbox: &Inbox, ops: Vec<InboxOp>, sweep: bool) -> Vec<InboxEvent> {
        let events = std::sync::Mutex::new(Vec::new());
        inbox.serve(ops, sweep, &|event| events.lock().unwrap().push(event));
        events.into_inner().unwrap()
    }

    #[test]
    fn deliveries_survive_reopening_in_order_and_expire() {
        let dir = std::env::temp_dir().join(format!("umbra-inbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("inbox.redb");
        let alice = ClientId([1; 32]);
        let bob = ClientId([2; 32]);
        {
            let (inbox, recovered) = Inbox::open(&path, Duration::from_secs(3600)).unwrap();
            assert!(recovered.clients.is_empty());
            assert_eq!(recovered.next_delivery, 1);
            #[cfg(unix)]
            assert_eq!(umbra_net::testing::mode(&path), 0o600, "readable by others");
            let mut ops = vec![InboxOp::Register(alice), InboxOp::Register(bob)];
            for id in [3, 1, 2] {
                ops.push(InboxOp::Store(alice, delivery(id)));
            }
            ops.push(InboxOp::Store(bob, delivery(7)));
            let events = drive(&inbox, ops, false);
            assert!(matches!(&events[..], [InboxEvent::Stored(ids)] if ids.len() == 4));
            let events = drive(&inbox, vec![InboxOp::Delete(alice, vec![2, 99])], false);
            assert!(matches!(&events[..], [InboxEvent::Removed(c, 1, 10)] if *c == alice));
        }
        let (inbox, recovered) = Inbox::open(&path, Duration::from_secs(3600)).unwrap();
        assert_eq!(stored(&recovered), vec![(alice, 2, 20), (bob, 1, 10)]);
        assert!(
            recovered
                .clients
                .iter()
                .all(|known| known.last_seen_ago < Duration::from_secs(60))
        );
        assert_eq!(recovered.next_delivery, 8);
        let load = |after, limit| InboxOp::Load {
            client: alice,
            session: SessionId(1),
            after,
            limit,
        };
        let events = drive(&inbox, vec![load(None, 1), load(Some(1), 5)], false);
        let pages: Vec<(Vec<u64>, bool)> = events
            .into_iter()
            .map(|event| match event {
                InboxEvent::Loaded {
                    deliveries, more, ..
                } => (deliveries.iter().map(|d| d.id).collect(), more),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(pages, vec![(vec![1], true), (vec![3], false)]);
        drop(inbox);

        // with no time to keep them, the sweep removes everything
        let (inbox, _) = Inbox::open(&path, Duration::ZERO).unwrap();
        let mut events = drive(&inbox, vec![], true);
        events.sort_by_key(|e| match e {
            InboxEvent::Removed(client, ..) => client.0[0],
            _ => 0,
        });
        assert!(
            matches!(
                &events[..],
                [InboxEvent::Removed(_, 2, 20), InboxEvent::Removed(_, 1, 10)]
            ),
            "{events:?}"
        );
        drop(inbox);
        let (inbox, recovered) = Inbox::open(&path, Duration::ZERO).unwrap();
        assert_eq!(stored(&recovered), vec![(alice, 0, 0), (bob, 0, 0)]);
        // a client forgotten is not remembered after a restart
        drive(&inbox, vec![InboxOp::Forget(vec![alice])], false);
        drop(inbox);
        let (_, recovered) = Inbox::open(&path, Duration::ZERO).unwrap();
        assert_eq!(stored(&recovered), vec![(bob, 0, 0)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn stored(recovered: &Recovered) -> Vec<(ClientId, u64, u64)> {
        recovered
            .clients
            .iter()
            .map(|known| (known.client, known.stored, known.stored_bytes))
            .collect()
    }
}
