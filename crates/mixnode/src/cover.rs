//! A mix node's own loop cover (Loopix λ_M, §4.2 of the paper): when to send a loop, through
//! which nodes, which loops came back, and how many were lost recently.
//!
//! The node decides here and the shell does the Sphinx work: a [`LoopOrder`] names the route,
//! the per-hop delays and the message, and [`LoopOrder::build`] makes the packet wherever the
//! shell runs it (the daemon, on a thread of its own). The packet comes back through the
//! ordinary unwrapping, and the core recognises it here as one of its own.
//!
//! The route of a node in layer i: one node of each later layer, a gateway, one node of each
//! earlier layer, then the node itself as the final hop — for layer 2,
//! `L3 → gateway → L1 → me`. Every link it uses is one the network already has (each layer
//! sends to the next, the last to the gateways, a gateway to the first layer), and every
//! route has four hops, so loops of every layer look alike.
//!
//! The message a loop carries is its number and a 16-byte token drawn from the core's RNG;
//! only this node decrypts the last layer, and a returning packet counts only if its token
//! matches the one sent under that number (compared in constant time), so nobody can forge
//! a return without having the loop.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, Rng, SeedableRng};
use subtle::ConstantTimeEq;
use umbra_sphinx::{
    BuildError, Delay, Destination, DestinationAddress, Hop, Packet, PacketBuilder, PacketSize,
    SurbId,
};
use umbra_topology::{Layer, NodeDescriptor, Topology};

use crate::config::CoverConfig;
use crate::core::Histogram;

/// The size of every loop: the regular packet, as clients send.
pub const LOOP_SIZE: PacketSize = PacketSize::Regular;
/// The bytes of a loop's message: its number and its token.
pub const LOOP_MESSAGE_LEN: usize = 8 + 16;
/// A stream far behind (the process slept this long) restarts from now rather than bursting.
const CATCH_UP: Duration = Duration::from_secs(1);

/// A loop's number, unique for the life of the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoopId(pub u64);

/// One node a loop may pass: where to send to it, and its Sphinx hop.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RouteNode {
    address: SocketAddr,
    hop: Hop,
}

impl RouteNode {
    fn of(node: &NodeDescriptor) -> Self {
        RouteNode {
            address: node.mix_address,
            hop: node.hop(),
        }
    }
}

/// The nodes a mix node's loops may take in one topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopRoutes {
    me: RouteNode,
    layer: Layer,
    /// The nodes of each layer, first layer first.
    layers: [Vec<RouteNode>; 3],
    gateways: Vec<RouteNode>,
}

impl LoopRoutes {
    /// The routes of node `me` in `topology`: none unless it is a mix node there and every
    /// other layer and the gateways have a node.
    pub fn new(topology: &Topology, me: &NodeDescriptor) -> Option<LoopRoutes> {
        let layer = me.layer()?;
        let layers = Layer::ALL.map(|l| topology.layer(l).map(RouteNode::of).collect::<Vec<_>>());
        let gateways: Vec<RouteNode> = topology.gateways().map(RouteNode::of).collect();
        let others_empty = Layer::ALL
            .iter()
            .zip(&layers)
            .any(|(l, nodes)| *l != layer && nodes.is_empty());
        if others_empty || gateways.is_empty() {
            return None;
        }
        Some(LoopRoutes {
            me: RouteNode::of(me),
            layer,
            layers,
            gateways,
        })
    }

    /// The node's layer.
    pub fn layer(&self) -> Layer {
        self.layer
    }

    /// A route as the module documentation describes, each node drawn uniformly from its
    /// layer; with it, the per-hop delays: exponential at mix nodes, none at the gateway (it
    /// forwards at once) and none at the end.
    fn draw<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        mean_delay: Duration,
    ) -> (Vec<RouteNode>, Vec<Delay>) {
        let mine = usize::from(self.layer.number()) - 1;
        let mut route = Vec::with_capacity(4);
        let mut delays = Vec::with_capacity(4);
        let pick = |nodes: &[RouteNode], rng: &mut R| {
            // the modulo bias is below len / 2^64: nil for any real layer
            nodes[(rng.next_u64() % nodes.len() as u64) as usize].clone()
        };
        for nodes in &self.layers[mine + 1..] {
            route.push(pick(nodes, rng));
            delays.push(exponential(rng, mean_delay));
        }
        route.push(pick(&self.gateways, rng));
        delays.push(Delay::ZERO);
        for nodes in &self.layers[..mine] {
            route.push(pick(nodes, rng));
            delays.push(exponential(rng, mean_delay));
        }
        route.push(self.me.clone());
        delays.push(Delay::ZERO);
        (route, delays)
    }
}

/// What the core asks the shell to build and send: a loop, now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopOrder {
    /// Its number.
    pub id: LoopId,
    /// Where to send the packet: the first hop's node.
    pub first_hop: SocketAddr,
    /// The route, ending at this node.
    pub route: Vec<Hop>,
    /// Each hop's delay.
    pub delays: Vec<Delay>,
    /// The message only this node will read.
    pub message: [u8; LOOP_MESSAGE_LEN],
}

impl LoopOrder {
    /// The loop's Sphinx packet (the costly part: one shared secret per hop).
    pub fn build<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Result<Packet, BuildError> {
        // only this node reads the destination: it says nothing
        let destination = Destination::new(DestinationAddress::new([0; 32]), SurbId::default());
        PacketBuilder::new(LOOP_SIZE).build(
            rng,
            &self.route,
            &self.delays,
            &destination,
            &self.message,
        )
    }
}

/// What the core reports about its loops.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Build this loop ([`LoopOrder::build`]) and send it to its first hop now.
    SendLoop(LoopOrder),
    /// More than the alarm's share of the recent loops was lost: the node is under attack or
    /// badly connected. Reported when it starts and once per window while it lasts.
    LoopLossHigh(RecentLoss),
    /// The recent loss is back to half the alarm's share or less.
    LoopLossNormal(RecentLoss),
}

/// Loops lost among the most recent ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecentLoss {
    /// Lost.
    pub lost: u64,
    /// Returned or lost (at most the window).
    pub of: u64,
}

impl RecentLoss {
    /// The share lost (0 with nothing counted yet).
    pub fn ratio(&self) -> f64 {
        if self.of == 0 {
            0.0
        } else {
            self.lost as f64 / self.of as f64
        }
    }
}

/// What a node counts of its loops.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoopCounters {
    /// Loops ordered sent.
    pub sent: u64,
    /// Loops back in time.
    pub returned: u64,
    /// Loops not back by their deadline.
    pub lost: u64,
    /// Loops out, neither back nor past their deadline.
    pub pending: u64,
    /// The loss over the most recent loops.
    pub recent: RecentLoss,
    /// Whether the recent loss is high (see [`Event::LoopLossHigh`]).
    pub alarm: bool,
    /// How long returned loops took, sent to back.
    pub round_trip: Histogram,
}

/// A loop out.
struct Pending {
    sent: Instant,
    token: [u8; 16],
}

/// The loop cover of a mix node: schedule, loops out, recent loss.
pub(crate) struct LoopCover {
    config: CoverConfig,
    rng: ChaCha20Rng,
    routes: Option<LoopRoutes>,
    /// When the next loop is due (none while the node has no routes or sends none).
    next: Option<Instant>,
    next_id: u64,
    pending: HashMap<LoopId, Pending>,
    /// Loops in the order sent, with their deadlines (loops already back are skipped).
    deadlines: VecDeque<(Instant, LoopId)>,
    /// The outcomes of the most recent loops, oldest first (true: lost), and how many of
    /// them were lost.
    window: VecDeque<bool>,
    window_lost: u64,
    /// Outcomes since the alarm was last reported.
    since_report: usize,
    counters: LoopCounters,
    events: VecDeque<Event>,
}

/// Shows the counters, never the tokens.
impl std::fmt::Debug for LoopCover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopCover")
            .field("config", &self.config)
            .field("next", &self.next)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl LoopCover {
    pub(crate) fn new(config: &CoverConfig, seed: [u8; 32]) -> Self {
        LoopCover {
            config: config.clone(),
            rng: ChaCha20Rng::from_seed(seed),
            routes: None,
            next: None,
            next_id: 0,
            pending: HashMap::new(),
            deadlines: VecDeque::new(),
            window: VecDeque::with_capacity(config.loss_window),
            window_lost: 0,
            since_report: 0,
            counters: LoopCounters::default(),
            events: VecDeque::new(),
        }
    }

    /// The nodes loops may take from `now` on; none stops sending (loops out still count).
    pub(crate) fn set_routes(&mut self, now: Instant, routes: Option<LoopRoutes>) {
        self.routes = routes.filter(|_| self.config.loop_rate > 0.0);
        match (&self.routes, self.next) {
            (Some(_), None) => self.next = Some(now + self.interval()),
            (None, _) => self.next = None,
            (Some(_), Some(_)) => {}
        }
    }

    /// Fires every timer due by `now`: loops to send, loops past their deadline.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some(due) = self.next.filter(|due| *due <= now) {
            self.send(due);
            let base = if now.saturating_duration_since(due) > CATCH_UP {
                now
            } else {
                due
            };
            self.next = Some(base + self.interval());
        }
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if self.pending.remove(&id).is_some() {
                self.counters.lost += 1;
                self.record(true);
            }
        }
        self.counters.pending = self.pending.len() as u64;
    }

    /// A packet ended at this node at `now` with `plaintext`: whether it is one of its loops
    /// (then counted as returned).
    pub(crate) fn returned(&mut self, now: Instant, plaintext: &[u8]) -> bool {
        let Ok(message) = <&[u8; LOOP_MESSAGE_LEN]>::try_from(plaintext) else {
            return false;
        };
        let (number, token) = message.split_at(8);
        let mut id = [0; 8];
        id.copy_from_slice(number);
        let id = LoopId(u64::from_le_bytes(id));
        let ours = self
            .pending
            .get(&id)
            .is_some_and(|pending| bool::from(pending.token.ct_eq(token)));
        if !ours {
            return false;
        }
        let Some(pending) = self.pending.remove(&id) else {
            return false;
        };
        self.counters.returned += 1;
        self.counters.pending = self.pending.len() as u64;
        self.counters
            .round_trip
            .record(now.saturating_duration_since(pending.sent));
        self.record(false);
        // loops mostly come back in order: keep the front of the deadlines live
        while let Some((_, front)) = self.deadlines.front() {
            if self.pending.contains_key(front) {
                break;
            }
            self.deadlines.pop_front();
        }
        true
    }

    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next loop due or the next deadline, whichever is first.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self.deadlines.front().map(|(deadline, _)| *deadline);
        [self.next, deadline].into_iter().flatten().min()
    }

    pub(crate) fn counters(&self) -> &LoopCounters {
        &self.counters
    }

    /// Orders a loop, as due at `at`.
    fn send(&mut self, at: Instant) {
        let Some(routes) = &self.routes else {
            return;
        };
        let (route, delays) = routes.draw(&mut self.rng, self.config.mean_hop_delay);
        let id = LoopId(self.next_id);
        self.next_id += 1;
        let mut token = [0; 16];
        self.rng.fill_bytes(&mut token);
        let mut message = [0; LOOP_MESSAGE_LEN];
        message[..8].copy_from_slice(&id.0.to_le_bytes());
        message[8..].copy_from_slice(&token);
        self.pending.insert(id, Pending { sent: at, token });
        self.deadlines
            .push_back((at + self.config.loop_deadline, id));
        self.counters.sent += 1;
        self.counters.pending = self.pending.len() as u64;
        self.events.push_back(Event::SendLoop(LoopOrder {
            id,
            first_hop: route[0].address,
            route: route.into_iter().map(|node| node.hop).collect(),
            delays,
            message,
        }));
    }

    /// Counts one loop's outcome into the recent window, and raises or clears the alarm.
    fn record(&mut self, lost: bool) {
        self.window.push_back(lost);
        self.window_lost += u64::from(lost);
        if self.window.len() > self.config.loss_window {
            let oldest = self.window.pop_front();
            self.window_lost -= u64::from(oldest == Some(true));
        }
        let recent = RecentLoss {
            lost: self.window_lost,
            of: self.window.len() as u64,
        };
        self.counters.recent = recent;
        self.since_report += 1;
        // a window not yet full is too few loops to judge
        if self.window.len() < self.config.loss_window {
            return;
        }
        let ratio = recent.ratio();
        if !self.counters.alarm && ratio > self.config.loss_alarm {
            self.counters.alarm = true;
            self.since_report = 0;
            self.events.push_back(Event::LoopLossHigh(recent));
        } else if self.counters.alarm && ratio <= self.config.loss_alarm / 2.0 {
            self.counters.alarm = false;
            self.events.push_back(Event::LoopLossNormal(recent));
        } else if self.counters.alarm && self.since_report >= self.config.loss_window {
            self.since_report = 0;
            self.events.push_back(Event::LoopLossHigh(recent));
        }
    }

    /// The time to the next loop: exponential, of mean 1/λ_M.
    fn interval(&mut self) -> Duration {
        exponential_duration(
            &mut self.rng,
            Duration::from_secs_f64(1.0 / self.config.loop_rate),
        )
    }
}

/// An exponential delay of mean `mean`.
fn exponential<R: Rng + ?Sized>(rng: &mut R, mean: Duration) -> Delay {
    Delay::from_duration(exponential_duration(rng, mean))
}

fn exponential_duration<R: Rng + ?Sized>(rng: &mut R, mean: Duration) -> Duration {
    // inverse transform of a uniform in (0, 1]: 53 random bits
    let uniform = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
    mean.mul_f64(-uniform.ln())
}
