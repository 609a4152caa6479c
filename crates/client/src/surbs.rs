//! Single-use reply blocks, on both sides (issue 13.3, 13.4, 13.8).
//!
//! A client that lets others reply without learning who it is gives them SURBs under a
//! **sender tag**: one tag per recipient and [`Isolation`] group, so a recipient cannot link
//! what it gets under two groups (Tor's stream isolation: a SOCKS5 proxy makes a group per
//! username). It keeps the reply key of each SURB it issued ([`Issued`]). A client that
//! replies keeps the SURBs it received, per sender tag ([`Stores`]).
//!
//! Whatever peers send, both stay bounded: every new sender tag adds a store, so stores are
//! capped in number and in SURBs held (the least recently used store goes first); a replier
//! may ask for SURBs again and again, so the keys kept per tag and in all are capped (the
//! oldest go first); and everything expires after `surbs.lifetime`.
//!
//! A SURB is good only while its route is: the gateway takes packets to the first layer of
//! the current and the previous epoch, and a mix node keeps its previous Sphinx key one epoch
//! past a rotation. So stored SURBs are used **newest first**, and dropped once their first
//! hop is not a first-layer node of the current or the previous topology, or they arrived
//! before the previous topology change (two changes ago: made for a topology no node serves
//! any more).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use rand_core::Rng;
use umbra_sphinx::{NodeAddress, ReplyKey, Surb, SurbId};
use umbra_wire::ClientAddress;

use crate::message::SenderTag;

/// An isolation group. What a client sends with SURBs under different groups carries
/// different sender tags and SURBs, so the recipient sees unrelated anonymous senders and
/// cannot link them; its replies come back naming the group ([`crate::Event::Reply`]).
/// Groups are local: they never leave the client. [`Isolation::DEFAULT`] is the group of
/// [`crate::Client::send`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Isolation(pub u64);

impl Isolation {
    /// The group of everything sent without one.
    pub const DEFAULT: Isolation = Isolation(0);
}

/// How many SURBs a client keeps, and for how long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SurbLimits {
    /// SURBs kept for one sender tag.
    pub(crate) per_sender: usize,
    /// Sender tags whose SURBs are kept.
    pub(crate) senders: usize,
    /// SURBs kept for all sender tags together.
    pub(crate) held: usize,
    /// Keys of SURBs issued under one tag.
    pub(crate) issued_per_tag: usize,
    /// Keys of issued SURBs in all.
    pub(crate) issued: usize,
    /// How long a SURB is kept, either side.
    pub(crate) lifetime: Duration,
}

// ---------------------------------------------------------------------------------------------
// The replier's side

/// A SURB received, and when.
struct Held {
    surb: Surb,
    /// The topology generation it arrived in.
    generation: u64,
    received: Instant,
}

/// The SURBs of one sender tag, oldest first.
struct Store {
    surbs: VecDeque<Held>,
    /// When more were last asked for, if they have not come since.
    requested: Option<Instant>,
    /// When SURBs last came, or one was used: least recently used stores go first.
    last_used: Instant,
    /// When a reply last went out through one.
    last_reply: Option<Instant>,
}

/// The SURBs received from anonymous senders, by sender tag.
pub(crate) struct Stores {
    limits: SurbLimits,
    stores: HashMap<SenderTag, Store>,
    /// SURBs in all stores.
    held: usize,
    /// Topology changes seen.
    generation: u64,
    /// The nodes a SURB may start at: the first layers of the current and previous topology.
    first_hops: HashSet<NodeAddress>,
    /// SURBs dropped as no longer valid (or made for another topology).
    pub(crate) stale: u64,
    /// Stores dropped for room (`surbs.max_senders`).
    pub(crate) evicted: u64,
    /// SURBs dropped for room (`surbs.max_held`).
    pub(crate) trimmed: u64,
}

impl Stores {
    pub(crate) fn new(limits: SurbLimits, first_hops: HashSet<NodeAddress>) -> Self {
        Stores {
            limits,
            stores: HashMap::new(),
            held: 0,
            generation: 0,
            first_hops,
            stale: 0,
            evicted: 0,
            trimmed: 0,
        }
    }

    pub(crate) fn contains(&self, tag: &SenderTag) -> bool {
        self.stores.contains_key(tag)
    }

    /// SURBs held for `tag`, all valid.
    pub(crate) fn len(&self, tag: &SenderTag) -> usize {
        self.stores.get(tag).map_or(0, |store| store.surbs.len())
    }

    /// SURBs held for every tag.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Sender tags with a store.
    pub(crate) fn senders(&self) -> usize {
        self.stores.len()
    }

    /// Keeps `surbs` from `tag`; returns the tags whose stores were dropped to make room.
    pub(crate) fn keep(
        &mut self,
        now: Instant,
        tag: SenderTag,
        surbs: Vec<Surb>,
    ) -> Vec<SenderTag> {
        let mut evicted = Vec::new();
        if !self.stores.contains_key(&tag) {
            while self.stores.len() >= self.limits.senders.max(1) {
                let Some(lru) = self.least_recently_used() else {
                    break;
                };
                self.remove(&lru);
                self.evicted += 1;
                evicted.push(lru);
            }
        }
        let generation = self.generation;
        let store = self.stores.entry(tag).or_insert_with(|| Store {
            surbs: VecDeque::new(),
            requested: None,
            last_used: now,
            last_reply: None,
        });
        store.last_used = now;
        store.requested = None;
        // (a first hop not in this client's first layers is kept: the sender may have the
        // next epoch's topology before this client does)
        for surb in surbs {
            store.surbs.push_back(Held {
                surb,
                generation,
                received: now,
            });
            self.held += 1;
        }
        let per_sender = self.limits.per_sender.max(1);
        while store.surbs.len() > per_sender {
            store.surbs.pop_front();
            self.held -= 1;
        }
        // over the total: the oldest SURBs of the least recently used stores go (the stores
        // stay, so replies to them wait for more rather than fail)
        while self.held > self.limits.held.max(1) {
            let excess = self.held - self.limits.held.max(1);
            let lru = self
                .stores
                .iter()
                .filter(|(t, store)| **t != tag && !store.surbs.is_empty())
                .min_by_key(|(t, store)| (store.last_used, **t))
                .map(|(t, _)| *t)
                .unwrap_or(tag);
            let Some(store) = self.stores.get_mut(&lru) else {
                break;
            };
            let n = excess.min(store.surbs.len());
            if n == 0 {
                break;
            }
            store.surbs.drain(..n);
            self.held -= n;
            self.trimmed += n as u64;
        }
        evicted
    }

    /// The newest SURB of `tag`, for a reply.
    pub(crate) fn take(&mut self, now: Instant, tag: &SenderTag) -> Option<Surb> {
        let lifetime = self.limits.lifetime;
        let store = self.stores.get_mut(tag)?;
        store.last_used = now;
        while let Some(held) = store.surbs.pop_back() {
            self.held -= 1;
            if now.saturating_duration_since(held.received) < lifetime {
                store.last_reply = Some(now);
                return Some(held.surb);
            }
            self.stale += 1;
        }
        None
    }

    /// Gives back a SURB taken and not used (nothing could be made of it).
    pub(crate) fn put_back(&mut self, tag: &SenderTag, surb: Surb, now: Instant) {
        if let Some(store) = self.stores.get_mut(tag) {
            store.surbs.push_back(Held {
                surb,
                generation: self.generation,
                received: now,
            });
            self.held += 1;
        }
    }

    /// Whether to ask `tag`'s owner for more now: fewer than `below` are left and none were
    /// asked for within `wait`. Marks them asked for.
    pub(crate) fn should_request(
        &mut self,
        now: Instant,
        tag: &SenderTag,
        below: usize,
        wait: Duration,
    ) -> bool {
        let Some(store) = self.stores.get_mut(tag) else {
            return false;
        };
        let ask = store.surbs.len() < below
            && store
                .requested
                .is_none_or(|asked| now.saturating_duration_since(asked) > wait);
        if ask {
            store.requested = Some(now);
        }
        ask
    }

    /// The topology changed: SURBs that can no longer work are dropped.
    pub(crate) fn change_topology(&mut self, first_hops: HashSet<NodeAddress>) {
        self.generation += 1;
        self.first_hops = first_hops;
        let (generation, first_hops) = (self.generation, &self.first_hops);
        let mut dropped = 0;
        for store in self.stores.values_mut() {
            let before = store.surbs.len();
            store.surbs.retain(|held| {
                held.generation + 1 >= generation && first_hops.contains(&held.surb.first_hop())
            });
            dropped += before - store.surbs.len();
        }
        self.held -= dropped;
        self.stale += dropped as u64;
    }

    /// Tags a reply went to within `within`.
    pub(crate) fn replied_recently(&self, now: Instant, within: Duration) -> Vec<SenderTag> {
        let mut tags: Vec<SenderTag> = self
            .stores
            .iter()
            .filter(|(_, store)| {
                store
                    .last_reply
                    .is_some_and(|at| now.saturating_duration_since(at) < within)
            })
            .map(|(tag, _)| *tag)
            .collect();
        tags.sort();
        tags
    }

    /// Drops SURBs older than the lifetime, and stores unused for as long; returns the tags
    /// whose stores went.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<SenderTag> {
        let lifetime = self.limits.lifetime;
        let old = |at: Instant| now.saturating_duration_since(at) >= lifetime;
        let mut dropped = 0;
        let mut gone = Vec::new();
        for (tag, store) in &mut self.stores {
            while store.surbs.front().is_some_and(|held| old(held.received)) {
                store.surbs.pop_front();
                dropped += 1;
            }
            if store.surbs.is_empty() && old(store.last_used) {
                gone.push(*tag);
            }
        }
        self.held -= dropped;
        self.stale += dropped as u64;
        for tag in &gone {
            self.stores.remove(tag);
        }
        gone.sort();
        gone
    }

    fn remove(&mut self, tag: &SenderTag) {
        if let Some(store) = self.stores.remove(tag) {
            self.held -= store.surbs.len();
        }
    }

    /// The tags with a store.
    #[cfg(test)]
    pub(crate) fn tags(&self) -> Vec<SenderTag> {
        let mut tags: Vec<SenderTag> = self.stores.keys().copied().collect();
        tags.sort();
        tags
    }

    fn least_recently_used(&self) -> Option<SenderTag> {
        self.stores
            .iter()
            .min_by_key(|(tag, store)| (store.last_used, **tag))
            .map(|(tag, _)| *tag)
    }
}

// ---------------------------------------------------------------------------------------------
// The owner's side

/// The key of a SURB this client issued.
struct Key {
    key: ReplyKey,
    tag: SenderTag,
    created: Instant,
    seq: u64,
}

/// A sender tag of this client's.
pub(crate) struct OwnTag {
    /// Whom its SURBs went to.
    pub(crate) to: ClientAddress,
    /// The group it stands for.
    pub(crate) isolation: Isolation,
    /// Its SURBs' keys, oldest first (by creation number).
    surbs: BTreeMap<u64, SurbId>,
    /// When the application last sent under it, or a reply came through it.
    last_used: Instant,
    /// The last top-up sent under it (internal message number), so that only one is under
    /// way at a time.
    pub(crate) top_up: Option<u64>,
}

/// What a reply through an issued SURB is for.
pub(crate) struct Used {
    pub(crate) key: ReplyKey,
    pub(crate) tag: SenderTag,
    pub(crate) to: ClientAddress,
    pub(crate) isolation: Isolation,
}

/// The SURBs this client issued: their keys, and its sender tags.
pub(crate) struct Issued {
    limits: SurbLimits,
    keys: HashMap<SurbId, Key>,
    /// Every key, oldest first.
    order: BTreeMap<u64, SurbId>,
    tags: HashMap<SenderTag, OwnTag>,
    by_peer: HashMap<(ClientAddress, Isolation), SenderTag>,
    next_seq: u64,
    /// Keys dropped for room before their SURB was used (`surbs.max_issued`, and twice
    /// `surbs.max_kept` per tag).
    pub(crate) evicted: u64,
}

impl Issued {
    pub(crate) fn new(limits: SurbLimits) -> Self {
        Issued {
            limits,
            keys: HashMap::new(),
            order: BTreeMap::new(),
            tags: HashMap::new(),
            by_peer: HashMap::new(),
            next_seq: 0,
            evicted: 0,
        }
    }

    /// Keys kept.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Sender tags kept.
    pub(crate) fn tags(&self) -> usize {
        self.tags.len()
    }

    /// The tag this client uses towards `to` in group `isolation`, made on first use.
    pub(crate) fn tag(
        &mut self,
        now: Instant,
        to: &ClientAddress,
        isolation: Isolation,
        rng: &mut impl Rng,
    ) -> SenderTag {
        if let Some(tag) = self.by_peer.get(&(*to, isolation)).copied()
            && let Some(own) = self.tags.get_mut(&tag)
        {
            own.last_used = now;
            return tag;
        }
        let mut tag = SenderTag([0; 16]);
        while tag.0 == [0; 16] || self.tags.contains_key(&tag) {
            rng.fill_bytes(&mut tag.0);
        }
        self.tags.insert(
            tag,
            OwnTag {
                to: *to,
                isolation,
                surbs: BTreeMap::new(),
                last_used: now,
                top_up: None,
            },
        );
        self.by_peer.insert((*to, isolation), tag);
        tag
    }

    pub(crate) fn own(&mut self, tag: &SenderTag) -> Option<&mut OwnTag> {
        self.tags.get_mut(tag)
    }

    /// Keeps the key of a SURB issued under `tag` (which must be one of ours).
    pub(crate) fn insert(&mut self, now: Instant, id: SurbId, key: ReplyKey, tag: SenderTag) {
        if !self.tags.contains_key(&tag) {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(old) = self.keys.insert(
            id,
            Key {
                key,
                tag,
                created: now,
                seq,
            },
        ) {
            // a SURB id drawn twice (2^-128): the older key is lost
            self.order.remove(&old.seq);
            if let Some(old_own) = self.tags.get_mut(&old.tag) {
                old_own.surbs.remove(&old.seq);
            }
        }
        self.order.insert(seq, id);
        let Some(own) = self.tags.get_mut(&tag) else {
            return;
        };
        own.surbs.insert(seq, id);
        // a replier keeps at most its `max_kept` newest; older ones are not worth a key
        let per_tag = self.limits.issued_per_tag.max(1);
        let mut extra = Vec::new();
        while own.surbs.len() > per_tag {
            let Some((old_seq, old_id)) = own.surbs.pop_first() else {
                break;
            };
            extra.push((old_seq, old_id));
        }
        for (old_seq, old_id) in extra {
            self.order.remove(&old_seq);
            self.keys.remove(&old_id);
            self.evicted += 1;
        }
        while self.order.len() > self.limits.issued.max(1) {
            let Some((_, oldest)) = self.order.first_key_value() else {
                break;
            };
            let oldest = *oldest;
            self.forget(&oldest);
            self.evicted += 1;
        }
    }

    /// The key of SURB `id`, which is used up.
    pub(crate) fn take(&mut self, now: Instant, id: &SurbId) -> Option<Used> {
        let key = self.keys.remove(id)?;
        self.order.remove(&key.seq);
        let own = self.tags.get_mut(&key.tag)?;
        own.surbs.remove(&key.seq);
        own.last_used = now;
        Some(Used {
            key: key.key,
            tag: key.tag,
            to: own.to,
            isolation: own.isolation,
        })
    }

    /// Tags used within `within`, with whom they are for.
    pub(crate) fn used_recently(
        &self,
        now: Instant,
        within: Duration,
    ) -> Vec<(SenderTag, ClientAddress)> {
        let mut tags: Vec<(SenderTag, ClientAddress)> = self
            .tags
            .iter()
            .filter(|(_, own)| now.saturating_duration_since(own.last_used) < within)
            .map(|(tag, own)| (*tag, own.to))
            .collect();
        tags.sort_by_key(|(tag, _)| *tag);
        tags
    }

    /// Forgets keys older than the lifetime, and tags with none left unused for as long.
    pub(crate) fn expire(&mut self, now: Instant) {
        let lifetime = self.limits.lifetime;
        while let Some((_, id)) = self.order.first_key_value() {
            let id = *id;
            let old = self
                .keys
                .get(&id)
                .is_none_or(|key| now.saturating_duration_since(key.created) >= lifetime);
            if !old {
                break;
            }
            self.forget(&id);
        }
        let by_peer = &mut self.by_peer;
        self.tags.retain(|_, own| {
            let keep =
                !own.surbs.is_empty() || now.saturating_duration_since(own.last_used) < lifetime;
            if !keep {
                by_peer.remove(&(own.to, own.isolation));
            }
            keep
        });
    }

    /// SURBs issued so far.
    #[cfg(test)]
    pub(crate) fn minted(&self) -> u64 {
        self.next_seq
    }

    /// The most keys kept for one tag.
    #[cfg(test)]
    pub(crate) fn largest_tag(&self) -> usize {
        self.tags
            .values()
            .map(|own| own.surbs.len())
            .max()
            .unwrap_or(0)
    }

    fn forget(&mut self, id: &SurbId) {
        match self.keys.remove(id) {
            Some(key) => {
                self.order.remove(&key.seq);
                if let Some(own) = self.tags.get_mut(&key.tag) {
                    own.surbs.remove(&key.seq);
                }
            }
            None => {
                // not in `keys`: drop its place in the order, wherever it is
                self.order.retain(|_, kept| kept != id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use umbra_sphinx::{Delay, Destination, DestinationAddress, Hop, PrivateKey, Version};

    use super::*;

    fn limits() -> SurbLimits {
        SurbLimits {
            per_sender: 5,
            senders: 3,
            held: 12,
            issued_per_tag: 4,
            issued: 10,
            lifetime: Duration::from_secs(3600),
        }
    }

    fn node(n: u8) -> NodeAddress {
        NodeAddress::new([n; 32])
    }

    /// A SURB starting at node `first`, and its reply key; `n` makes it unique.
    fn surb(rng: &mut ChaCha20Rng, first: u8, n: u8) -> (Surb, ReplyKey) {
        let route: Vec<Hop> = [first, 20, 30, 40]
            .iter()
            .map(|&a| Hop::new(node(a), PrivateKey::from_bytes([a; 32]).public_key()))
            .collect();
        let destination =
            Destination::new(DestinationAddress::new([9; 32]), SurbId::new([n + 1; 16]));
        Surb::new(rng, &route, &[Delay::ZERO; 4], &destination, Version::V260).unwrap()
    }

    fn tag(n: u8) -> SenderTag {
        SenderTag([n; 16])
    }

    #[test]
    fn the_newest_surbs_go_first_and_stale_ones_are_dropped() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let t0 = Instant::now();
        let mut stores = Stores::new(limits(), [node(1)].into());
        let made: Vec<Surb> = (0..7).map(|n| surb(&mut rng, 1, n).0).collect();
        stores.keep(t0, tag(1), made[..4].to_vec());
        stores.keep(t0, tag(1), made[4..].to_vec());
        // five kept, the oldest two gone; the newest used first
        assert_eq!(stores.len(&tag(1)), 5);
        let first = stores.take(t0, &tag(1)).unwrap();
        assert_eq!(first.to_bytes(), made[6].to_bytes());

        // one made by a sender that has the next epoch's topology already is kept (a first
        // hop this client does not know as first-layer)
        stores.keep(t0, tag(1), vec![surb(&mut rng, 2, 9).0]);
        assert_eq!(stores.len(&tag(1)), 5);

        // a new epoch with node 2 in the first layer: node 1's SURBs still work (the
        // gateway takes the previous epoch's first layer), and node 2's too
        stores.change_topology([node(2), node(1)].into());
        assert_eq!(stores.len(&tag(1)), 5);
        stores.keep(t0, tag(1), vec![surb(&mut rng, 2, 10).0]);
        assert_eq!(stores.len(&tag(1)), 5);
        // another epoch: what came before the last change goes, whatever its first hop
        stores.change_topology([node(3), node(2)].into());
        assert_eq!((stores.len(&tag(1)), stores.held()), (1, 1));
        assert_eq!(stores.stale, 4);
        assert_eq!(stores.take(t0, &tag(1)).unwrap().first_hop(), node(2));
        assert!(stores.take(t0, &tag(1)).is_none());
        // and at a change, one whose first hop is in neither first layer goes at once
        stores.keep(
            t0,
            tag(1),
            vec![surb(&mut rng, 1, 11).0, surb(&mut rng, 3, 12).0],
        );
        stores.change_topology([node(4), node(3)].into());
        assert_eq!(stores.len(&tag(1)), 1);
        assert_eq!(stores.take(t0, &tag(1)).unwrap().first_hop(), node(3));
    }

    #[test]
    fn stores_are_capped_and_the_least_recently_used_goes_first() {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut stores = Stores::new(limits(), [node(1)].into());
        let five = |rng: &mut ChaCha20Rng| (0..5).map(|n| surb(rng, 1, n).0).collect::<Vec<_>>();
        assert!(stores.keep(at(1), tag(1), five(&mut rng)).is_empty());
        assert!(stores.keep(at(2), tag(2), five(&mut rng)).is_empty());
        // 15 > 12 held: the least recently used (tag 1) gives up its oldest three
        assert!(stores.keep(at(3), tag(3), five(&mut rng)).is_empty());
        assert_eq!(stores.held(), 12);
        assert_eq!((stores.len(&tag(1)), stores.len(&tag(3))), (2, 5));
        // tag 1 used since: tag 2 is the least recently used when a fourth sender comes,
        // one more than the three kept
        stores.take(at(4), &tag(1));
        let evicted = stores.keep(at(5), tag(4), five(&mut rng));
        assert_eq!(evicted, vec![tag(2)]);
        assert!(!stores.contains(&tag(2)));
        assert!(stores.held() <= 12 && stores.senders() == 3);
        // everything expires
        assert_eq!(
            stores.expire(at(5) + Duration::from_secs(3600)),
            vec![tag(1), tag(3), tag(4)]
        );
        assert_eq!((stores.held(), stores.senders()), (0, 0));
    }

    #[test]
    fn issued_keys_are_capped_per_tag_and_in_all() {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let t0 = Instant::now();
        let mut issued = Issued::new(limits());
        let peer = |n: u8| ClientAddress {
            identity: [n; 32],
            encryption: [n; 32],
            gateway: [n; 32],
        };
        let a = issued.tag(t0, &peer(1), Isolation(1), &mut rng);
        let b = issued.tag(t0, &peer(1), Isolation(2), &mut rng);
        assert_ne!(a, b);
        assert_eq!(issued.tag(t0, &peer(1), Isolation(1), &mut rng), a);
        let mut ids = Vec::new();
        for n in 0..6 {
            let (_, key) = surb(&mut rng, 1, n);
            ids.push(key.surb_id());
            issued.insert(t0, key.surb_id(), key, a);
        }
        // four per tag: the two oldest went
        assert_eq!(issued.len(), 4);
        assert!(issued.take(t0, &ids[0]).is_none());
        let used = issued.take(t0, &ids[5]).unwrap();
        assert_eq!(
            (used.tag, used.to, used.isolation),
            (a, peer(1), Isolation(1))
        );
        for n in 10..20 {
            let (_, key) = surb(&mut rng, 1, n);
            let tag = if n % 2 == 0 { a } else { b };
            issued.insert(t0 + Duration::from_secs(1), key.surb_id(), key, tag);
        }
        assert!(issued.len() <= 10 && issued.largest_tag() <= 4);
        // keys expire, then their tags
        issued.expire(t0 + Duration::from_secs(3601));
        assert_eq!((issued.len(), issued.tags()), (0, 0));
    }
}
