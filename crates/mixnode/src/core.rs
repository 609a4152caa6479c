//! The single-threaded state of a mix node: the delay queue, the next-hop rule and the
//! counters. Sans-IO: it is fed what the [`crate::Unwrapper`] made of each frame together
//! with the time, and polled for packets that are due and for when it next wants to be woken.
//!
//! A packet that arrives at `now` asking for a delay `d` is due at `now + min(d, max_delay)`.
//! Packets leave in the order of their due times (arrival order among equal times), and each
//! leaves when polled at or after its due time; how late that was is recorded.
//!
//! With loop cover ([`MixCore::with_cover`]), the core also decides when the node sends its own
//! loops and through which nodes, reports them as [`Event::SendLoop`] for the shell to build,
//! recognises them when they come back, and counts those lost (see [`crate::cover`]).
//!
//! For tests of the network monitor only, [`MixCore::with_insecure_drop`] makes the core lose
//! a share of the packets it should forward, as a faulty or cheating node would.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use umbra_core::TimerQueue;
use umbra_wire::frame::Frame;

use umbra_hop::{Dropped, Outcome, Unwrapped};

use crate::config::{CoverConfig, MixConfig};
use crate::cover::{Event, LoopCounters, LoopCover, LoopRoutes};

/// A packet due to go out.
#[derive(Debug)]
pub struct Transmit {
    /// The next node.
    pub to: SocketAddr,
    /// The frame to send it.
    pub frame: Frame,
    /// When it was due.
    pub due: Instant,
}

/// Everything a mix node counts. Every packet received ends in exactly one of forwarded,
/// replayed, malformed, expired or dropped, or is still queued.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// Frames received.
    pub received: u64,
    /// Packets handed on for sending, when due.
    pub forwarded: u64,
    /// Packets dropped as replays.
    pub replayed: u64,
    /// Packets whose frame named a key rotation the node does not hold.
    pub expired: u64,
    /// Frames and packets refused as malformed, by reason.
    pub malformed: BTreeMap<&'static str, u64>,
    /// Packets dropped for other reasons, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Packets whose requested delay was cut to the maximum.
    pub delays_capped: u64,
    /// How late packets left against their due times.
    pub lateness: Histogram,
    /// The node's own loops.
    pub loops: LoopCounters,
}

/// The number of packets whose lateness fell in each bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    counts: Vec<u64>,
    sum: Duration,
}

impl Histogram {
    /// Upper bounds of the buckets, in seconds (a last bucket takes the rest).
    pub const BOUNDS: [f64; 22] = [
        0.000_01, 0.000_025, 0.000_05, 0.000_075, 0.000_1, 0.000_15, 0.000_2, 0.000_3, 0.000_5,
        0.000_75, 0.001, 0.001_5, 0.002, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0,
    ];

    /// Counts one value.
    pub fn record(&mut self, value: Duration) {
        let seconds = value.as_secs_f64();
        let bucket = Self::BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(Self::BOUNDS.len());
        if let Some(count) = self.counts.get_mut(bucket) {
            *count += 1;
        }
        self.sum += value;
    }

    /// Counts per bucket, [`Histogram::BOUNDS`] order, then the overflow bucket.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The sum of all values recorded.
    pub fn sum(&self) -> Duration {
        self.sum
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; Self::BOUNDS.len() + 1],
            sum: Duration::ZERO,
        }
    }
}

/// The state of a mix node between unwrapping and sending.
#[derive(Debug)]
pub struct MixCore {
    max_delay: Duration,
    next_hops: HashSet<SocketAddr>,
    /// Packets waiting for their time.
    queue: TimerQueue<Instant, Transmit>,
    counters: Counters,
    cover: Option<LoopCover>,
    insecure_drop: Option<InsecureDrop>,
}

impl MixCore {
    /// A core that forwards only to `next_hops` (the next layer's nodes).
    pub fn new(config: &MixConfig, next_hops: impl IntoIterator<Item = SocketAddr>) -> Self {
        MixCore {
            max_delay: config.max_delay,
            next_hops: next_hops.into_iter().collect(),
            queue: TimerQueue::new(),
            counters: Counters::default(),
            cover: None,
            insecure_drop: None,
        }
    }

    /// The core, sending its own loops as `cover` says once it has routes
    /// ([`MixCore::set_loop_routes`]); `seed` seeds their schedule, routes, delays and tokens,
    /// and must be secret (a returning loop is known by its token).
    #[must_use]
    pub fn with_cover(mut self, cover: &CoverConfig, seed: [u8; 32]) -> Self {
        self.cover = Some(LoopCover::new(cover, seed));
        self
    }

    /// The core, for tests only, silently dropping each packet it should forward with
    /// probability `fraction`, independently, as a faulty or cheating node would: after
    /// unwrapping, the replay check and the next-hop check, so only packets it would have
    /// forwarded count, each as dropped with reason `insecure_drop`. Its own loops are not
    /// touched. `seed` seeds the draws. A `fraction` of 0 or below (or NaN) drops nothing, 1
    /// or above drops everything.
    #[must_use]
    pub fn with_insecure_drop(mut self, fraction: f64, seed: [u8; 32]) -> Self {
        self.insecure_drop = Some(InsecureDrop {
            fraction,
            rng: ChaCha20Rng::from_seed(seed),
        });
        self
    }

    /// The nodes the node's loops may take from `now` on (a new topology); none while it is
    /// not in a layer (loops already out are still awaited).
    pub fn set_loop_routes(&mut self, now: Instant, routes: Option<LoopRoutes>) {
        if let Some(cover) = &mut self.cover {
            cover.set_routes(now, routes);
        }
    }

    /// Fires every timer due by `now`: loops to send, loops past their deadline. (Packets due
    /// need no timer: they are polled.)
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(cover) = &mut self.cover {
            cover.handle_timeout(now);
        }
    }

    /// The next event: a loop to send, or news of the loops' recent loss.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.cover.as_mut()?.poll_event()
    }

    /// Replaces the nodes packets may be forwarded to (a new topology).
    pub fn set_next_hops(&mut self, next_hops: impl IntoIterator<Item = SocketAddr>) {
        self.next_hops = next_hops.into_iter().collect();
    }

    /// Takes what the unwrapper made of a frame that arrived at `now`.
    pub fn handle_unwrapped(&mut self, now: Instant, unwrapped: Unwrapped) {
        self.counters.received += 1;
        let forward = match unwrapped {
            Ok(Outcome::Forward(forward)) => forward,
            // the node's own loop, back; nothing else ends at a mix node
            Ok(Outcome::Final(last)) => {
                let plaintext = last.payload.plaintext().unwrap_or_default();
                if let Some(cover) = &mut self.cover
                    && cover.returned(now, plaintext)
                {
                    return;
                }
                return self.count("final_hop");
            }
            Err(dropped) => return self.count_dropped(dropped),
        };
        let to = match umbra_wire::address::decode(&forward.next_hop) {
            Ok(to) if self.next_hops.contains(&to) => to,
            Ok(_) => return self.count("not_next_layer"),
            Err(_) => return self.count("bad_next_hop"),
        };
        if let Some(loss) = &mut self.insecure_drop
            && loss.drops()
        {
            return self.count("insecure_drop");
        }
        let requested = forward.delay.as_duration();
        if requested > self.max_delay {
            self.counters.delays_capped += 1;
        }
        let due = now + requested.min(self.max_delay);
        self.queue.push(
            due,
            Transmit {
                to,
                frame: Frame {
                    header: forward.header,
                    packet: forward.packet,
                },
                due,
            },
        );
    }

    /// The next packet due at `now`, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let (due, transmit) = self.queue.pop_due(now)?;
        self.counters.forwarded += 1;
        self.counters
            .lateness
            .record(now.saturating_duration_since(due));
        Some(transmit)
    }

    /// The earliest of: the next packet due, the next loop to send, the next loop's deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let packet = self.queue.next_at();
        let cover = self.cover.as_ref().and_then(LoopCover::poll_timeout);
        [packet, cover].into_iter().flatten().min()
    }

    /// Packets waiting for their time.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// What has been counted so far. Assembled when asked (the shell publishes it a few times
    /// a second), so that the hot path never copies the loops' histogram.
    pub fn counters(&self) -> Counters {
        let mut counters = self.counters.clone();
        if let Some(cover) = &self.cover {
            counters.loops = cover.counters().clone();
        }
        counters
    }

    /// Counts a packet the shell could not send after all (`reason`, e.g. a full link queue).
    pub fn count_send_failure(&mut self, reason: &'static str) {
        self.count(reason);
    }

    fn count_dropped(&mut self, dropped: Dropped) {
        match dropped {
            Dropped::BadFrame(error) => {
                *self.counters.malformed.entry(error.reason()).or_default() += 1
            }
            Dropped::Malformed(error) => {
                *self.counters.malformed.entry(error.reason()).or_default() += 1
            }
            Dropped::Replayed => self.counters.replayed += 1,
            Dropped::Expired => self.counters.expired += 1,
        }
    }

    fn count(&mut self, reason: &'static str) {
        *self.counters.dropped.entry(reason).or_default() += 1;
    }
}

/// The draws of [`MixCore::with_insecure_drop`].
struct InsecureDrop {
    fraction: f64,
    rng: ChaCha20Rng,
}

impl InsecureDrop {
    /// Whether to drop the next packet: a uniform draw in [0, 1) below the fraction.
    fn drops(&mut self) -> bool {
        // 53 random bits, exactly representable: 0 never drops, 1 always does
        let uniform = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        uniform < self.fraction
    }
}

/// Shows the fraction, not the RNG's state.
impl std::fmt::Debug for InsecureDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsecureDrop")
            .field("fraction", &self.fraction)
            .finish_non_exhaustive()
    }
}

/// A mix node's core: its transmits are the packets due; its timers, its loops'; its events,
/// loops to build and send, and news of their loss.
impl umbra_core::Core for MixCore {
    type Transmit = Transmit;
    type Event = Event;

    fn handle_timeout(&mut self, now: Instant) {
        MixCore::handle_timeout(self, now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        MixCore::poll_transmit(self, now)
    }

    fn poll_event(&mut self) -> Option<Event> {
        MixCore::poll_event(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        MixCore::poll_timeout(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use umbra_hop::Forward;
    use umbra_sphinx::{Delay, Packet, PacketSize};
    use umbra_wire::frame::FrameHeader;

    fn next_hop() -> SocketAddr {
        "10.0.3.1:1789".parse().unwrap()
    }

    /// What the unwrapper makes of a sound packet for `to` (the Sphinx work is not the point).
    fn forward(to: SocketAddr) -> Unwrapped {
        let size = PacketSize::Regular;
        Ok(Outcome::Forward(Forward {
            next_hop: umbra_wire::address::encode(to),
            delay: Delay::ZERO,
            packet: Packet::from_bytes(vec![0; size.packet_len()]).unwrap(),
            header: FrameHeader::v7(size),
        }))
    }

    /// Feeds `packets` sound packets to a core dropping `fraction`; what it forwards, and its
    /// counters.
    fn run(fraction: f64, packets: u64) -> (u64, Counters) {
        let mut core =
            MixCore::new(&MixConfig::default(), [next_hop()]).with_insecure_drop(fraction, [7; 32]);
        let now = Instant::now();
        for _ in 0..packets {
            core.handle_unwrapped(now, forward(next_hop()));
        }
        let mut forwarded = 0;
        while core.poll_transmit(now).is_some() {
            forwarded += 1;
        }
        (forwarded, core.counters())
    }

    #[test]
    fn insecure_drop_of_a_half_forwards_about_half() {
        // Forwarded ~ Binomial(10,000, 0.5): mean 5,000, σ = √(10,000 · 0.5 · 0.5) = 50.
        // ±3.3σ = ±165; P(|Z| > 3.3) ≈ 0.00097, so chance takes a sound drop across the
        // bound less than once in 1,000 seeds.
        let n = 10_000;
        let (forwarded, counters) = run(0.5, n);
        assert!(
            forwarded.abs_diff(n / 2) <= 165,
            "{forwarded} of {n} forwarded"
        );
        assert_eq!(counters.forwarded, forwarded);
        assert_eq!(
            counters.dropped.get("insecure_drop"),
            Some(&(n - forwarded))
        );
        assert_eq!(counters.received, n);
    }

    #[test]
    fn insecure_drop_of_zero_forwards_all() {
        let (forwarded, counters) = run(0.0, 1000);
        assert_eq!(forwarded, 1000);
        assert!(counters.dropped.is_empty(), "{:?}", counters.dropped);
    }

    #[test]
    fn insecure_drop_of_one_forwards_none() {
        let (forwarded, counters) = run(1.0, 1000);
        assert_eq!(forwarded, 0);
        assert_eq!(counters.dropped.get("insecure_drop"), Some(&1000));
    }

    #[test]
    fn insecure_drop_comes_after_the_checks() {
        // replays and packets for the wrong layer keep their own reasons: only what the node
        // would have forwarded is dropped as `insecure_drop`
        let mut core =
            MixCore::new(&MixConfig::default(), [next_hop()]).with_insecure_drop(1.0, [7; 32]);
        let now = Instant::now();
        core.handle_unwrapped(now, Err(Dropped::Replayed));
        core.handle_unwrapped(now, forward("10.0.9.9:1789".parse().unwrap()));
        core.handle_unwrapped(now, forward(next_hop()));
        let counters = core.counters();
        assert_eq!(counters.replayed, 1);
        assert_eq!(counters.dropped.get("not_next_layer"), Some(&1));
        assert_eq!(counters.dropped.get("insecure_drop"), Some(&1));
        assert_eq!(core.queued(), 0);
    }
}
