//! A mix node's own loops on a virtual clock: when they leave, which way they go, which come
//! back, which are lost, and the alarm on recent loss. Packets are real Sphinx packets, built
//! from the core's orders and unwrapped hop by hop with each node's key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use umbra_hop::{Final, Outcome, Unwrapped};
use umbra_mixnode::{
    CoverConfig, Event, LoopOrder, LoopRoutes, MixConfig, MixCore, RecentLoss, ReplayFilter,
    ReplayFilterConfig, RotationKey, Unwrapper,
};
use umbra_sphinx::{
    Delay, Destination, DestinationAddress, Hop, NodeAddress, PacketBuilder, PacketSize,
    PrivateKey, Processed, SurbId,
};
use umbra_topology::{Layer, NodeDescriptor, NodeId, NoiseKey, Role, Topology};
use umbra_wire::frame::{Frame, FrameHeader, KeyRotation};

/// Two nodes per layer and two gateways, with their keys; "me" is the first node of `layer`.
struct Net {
    topology: Topology,
    keys: HashMap<NodeAddress, PrivateKey>,
    me: NodeDescriptor,
    rng: ChaCha20Rng,
}

impl Net {
    fn new(seed: u8, layer: u8) -> Net {
        let mut rng = ChaCha20Rng::from_seed([seed; 32]);
        let mut nodes = Vec::new();
        let mut keys = HashMap::new();
        let roles = [1u8, 1, 2, 2, 3, 3, 0, 0];
        for (i, layer) in roles.into_iter().enumerate() {
            let key = PrivateKey::generate(&mut rng);
            let node = NodeDescriptor {
                id: NodeId(i as u32 + 1),
                role: Layer::new(layer).map_or(Role::Gateway, Role::Mix),
                mix_address: format!("10.0.{layer}.{i}:1789").parse().unwrap(),
                sphinx_key: key.public_key(),
                noise_key: NoiseKey([i as u8; 32]),
                client_address: (layer == 0).then(|| "10.0.0.99:9000".parse().unwrap()),
            };
            keys.insert(node.routing_address(), key);
            nodes.push(node);
        }
        let topology = Topology::new(1, nodes).unwrap();
        let me = topology
            .layer(Layer::new(layer).unwrap())
            .next()
            .unwrap()
            .clone();
        Net {
            topology,
            keys,
            me,
            rng,
        }
    }

    fn core(&self, cover: &CoverConfig, now: Instant) -> (MixCore, Unwrapper) {
        let config = MixConfig {
            replay: ReplayFilterConfig {
                expected_packets_per_second: 100,
                retention: Duration::from_secs(100),
                false_positive_rate: 1e-6,
            },
            ..MixConfig::default()
        };
        let mut core = MixCore::new(&config, []).with_cover(cover, [9; 32]);
        core.set_loop_routes(now, LoopRoutes::new(&self.topology, &self.me));
        let filter = Arc::new(ReplayFilter::new(1, &config.replay).unwrap());
        let key = self.keys[&self.me.routing_address()].clone();
        (core, Unwrapper::new(RotationKey::new(key, filter), None))
    }

    /// Carries a loop around the network: built from the order, unwrapped by every hop but
    /// the last, then by the node's own unwrapper, as its Sphinx threads would.
    fn carry(&mut self, order: &LoopOrder, unwrapper: &Unwrapper) -> Unwrapped {
        let mut packet = order.build(&mut self.rng).unwrap();
        assert_eq!(packet.size(), PacketSize::Regular);
        for hop in &order.route[..order.route.len() - 1] {
            match self.keys[&hop.address].process(packet).unwrap() {
                Processed::Forward { packet: next, .. } => packet = next,
                Processed::Final { .. } => panic!("a loop ends at its sender"),
            }
        }
        unwrapper.unwrap(Frame {
            header: FrameHeader::v8(packet.size(), KeyRotation::of(1)),
            packet,
        })
    }

    fn layer_of(&self, address: &NodeAddress) -> Option<u8> {
        let node = self
            .topology
            .nodes()
            .iter()
            .find(|n| n.routing_address() == *address)
            .unwrap();
        node.layer().map(Layer::number)
    }
}

fn cover() -> CoverConfig {
    CoverConfig {
        loop_rate: 5.0,
        mean_hop_delay: Duration::from_millis(15),
        loop_deadline: Duration::from_secs(2),
        loss_window: 20,
        loss_alarm: 0.2,
    }
}

/// Runs the core's timers up to `until`, waking exactly when it asks (and checking it never
/// asks again for a time already passed); returns its events with their times.
fn run(core: &mut MixCore, now: &mut Instant, until: Instant) -> Vec<(Instant, Event)> {
    let mut events = Vec::new();
    while let Some(wake) = core.poll_timeout().filter(|wake| *wake <= until) {
        assert!(wake >= *now, "asked to be woken in the past");
        *now = wake;
        core.handle_timeout(wake);
        while let Some(event) = core.poll_event() {
            events.push((wake, event));
        }
        assert!(core.poll_timeout().is_none_or(|next| next > wake), "spins");
    }
    *now = until;
    events
}

fn orders(events: &[(Instant, Event)]) -> Vec<(Instant, LoopOrder)> {
    events
        .iter()
        .filter_map(|(at, event)| match event {
            Event::SendLoop(order) => Some((*at, order.clone())),
            _ => None,
        })
        .collect()
}

/// The schedule is a Poisson process of rate λ_M = 5/s: 10,000 intervals are checked against
/// the exponential law of mean 200 ms by their mean and by Kolmogorov–Smirnov. Each check is
/// sized to fail by chance with probability 5·10⁻⁴ for a random seed, so both together fail
/// less than once in 1,000 runs: the mean of n = 10,000 exponentials has a standard deviation
/// of mean/√n = 1 %, and |z| > 3.48 has probability 5·10⁻⁴; the KS statistic exceeds
/// √(−ln(α/2)/2)/√n = 2.036/√n with probability α = 5·10⁻⁴. (The seed here is fixed, so
/// the test is deterministic; any seed passes with that probability.)
#[test]
fn loops_leave_as_a_poisson_stream_of_the_configured_rate() {
    let net = Net::new(1, 2);
    let t0 = Instant::now();
    let (mut core, _) = net.core(&cover(), t0);
    let mut now = t0;
    let n = 10_000;
    // 10,000 intervals of 200 ms on average: 2,000 s, and then some
    let sent = orders(&run(&mut core, &mut now, t0 + Duration::from_secs(2_200)));
    assert!(sent.len() > n, "{} loops", sent.len());
    let mut intervals: Vec<f64> = sent
        .windows(2)
        .take(n)
        .map(|pair| (pair[1].0 - pair[0].0).as_secs_f64())
        .collect();
    let mean = intervals.iter().sum::<f64>() / n as f64;
    let z = (mean - 0.2) / (0.2 / (n as f64).sqrt());
    assert!(z.abs() < 3.48, "mean interval {mean} s (z = {z})");
    intervals.sort_by(f64::total_cmp);
    let ks = intervals
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let cdf = 1.0 - (-x / 0.2).exp();
            (cdf - i as f64 / n as f64).max((i + 1) as f64 / n as f64 - cdf)
        })
        .fold(0.0, f64::max);
    assert!(ks < 2.036 / (n as f64).sqrt(), "KS statistic {ks}");
    // every loop is counted out and, never coming back, lost after its deadline
    let counters = &core.counters().loops;
    assert_eq!(counters.sent, sent.len() as u64);
    assert_eq!(counters.lost + counters.pending, counters.sent);
}

/// Each loop goes through the later layers, a gateway, the earlier layers, and back to its
/// sender; each mix hop holds it for an exponential delay of the configured mean, the gateway
/// and the sender for none.
#[test]
fn loops_take_every_other_layer_then_a_gateway_and_come_home() {
    for layer in 1..=3u8 {
        let net = Net::new(layer, layer);
        let t0 = Instant::now();
        let (mut core, _) = net.core(&cover(), t0);
        let mut now = t0;
        let sent = orders(&run(&mut core, &mut now, t0 + Duration::from_secs(400)));
        let expected: Vec<Option<u8>> = match layer {
            1 => vec![Some(2), Some(3), None, Some(1)],
            2 => vec![Some(3), None, Some(1), Some(2)],
            _ => vec![None, Some(1), Some(2), Some(3)],
        };
        let mut mix_delays = Vec::new();
        for (_, order) in &sent {
            let layers: Vec<Option<u8>> = order
                .route
                .iter()
                .map(|h| net.layer_of(&h.address))
                .collect();
            assert_eq!(layers, expected, "layer {layer}");
            assert_eq!(
                order.route.last().unwrap().address,
                net.me.routing_address()
            );
            assert_eq!(
                umbra_wire::address::encode(order.first_hop),
                order.route[0].address
            );
            for (hop, delay) in layers.iter().zip(&order.delays) {
                match hop {
                    Some(l) if *l != layer => mix_delays.push(delay.as_duration().as_secs_f64()),
                    _ => assert_eq!(*delay, Delay::ZERO),
                }
            }
        }
        // 3 × ~2,000 delays of mean 15 ms: within 10 % is over 7 standard deviations
        let mean = mix_delays.iter().sum::<f64>() / mix_delays.len() as f64;
        assert!((mean - 0.015).abs() < 0.0015, "mean hop delay {mean}");
        // both nodes of each layer are used
        let firsts: std::collections::HashSet<_> = sent.iter().map(|(_, o)| o.first_hop).collect();
        assert_eq!(firsts.len(), 2);
    }
}

/// Loops that come back are matched to what was sent; the others are lost once their deadline
/// passes, not before; a packet that merely ends here (someone else's, or carrying a wrong
/// token) counts for nothing.
#[test]
fn returning_loops_are_matched_and_the_others_lost_after_their_deadline() {
    let mut net = Net::new(2, 1);
    let t0 = Instant::now();
    let config = CoverConfig {
        loop_deadline: Duration::from_secs(10),
        ..cover()
    };
    let (mut core, unwrapper) = net.core(&config, t0);
    let mut now = t0;
    let sent = orders(&run(&mut core, &mut now, t0 + Duration::from_secs(4)));
    assert!(sent.len() >= 10, "{} loops", sent.len());
    // every other loop comes back 100 ms after it left, the rest never do
    let mut back = 0;
    for (i, (at, order)) in sent.iter().enumerate() {
        if i % 2 == 0 {
            let unwrapped = net.carry(order, &unwrapper);
            core.handle_unwrapped(*at + Duration::from_millis(100), unwrapped);
            back += 1;
        }
    }
    let loops = &core.counters().loops;
    assert_eq!(loops.returned, back);
    assert_eq!(loops.round_trip.count(), back);
    assert_eq!(
        loops.round_trip.sum(),
        Duration::from_millis(100) * back as u32
    );
    // lost only once the deadline of 10 s has passed...
    let first_lost = sent[1].0 + Duration::from_secs(10);
    run(&mut core, &mut now, first_lost - Duration::from_nanos(1));
    let lost_before = core.counters().loops.lost;
    run(&mut core, &mut now, first_lost);
    assert_eq!(core.counters().loops.lost, lost_before + 1);
    // ... and all of them 10 s after the last was sent (once the node stops sending)
    let sent_meanwhile = core.counters().loops.sent - sent.len() as u64;
    core.set_loop_routes(now, None);
    run(&mut core, &mut now, t0 + Duration::from_secs(30));
    let loops = core.counters().loops.clone();
    assert_eq!(loops.lost, sent.len() as u64 - back + sent_meanwhile);
    assert_eq!(loops.returned + loops.lost, loops.sent);
    assert_eq!(loops.pending, 0);
    assert_eq!(core.poll_timeout(), None, "no loops out, none to send");

    // a loop back twice counts once; forged returns count for nothing
    core.set_loop_routes(now, LoopRoutes::new(&net.topology, &net.me));
    let sent = orders(&run(&mut core, &mut now, t0 + Duration::from_secs(32)));
    let (at, order) = &sent[0];
    let mut forged = order.clone();
    forged.message[20] ^= 1;
    let forged = net.carry(&forged, &unwrapper);
    core.handle_unwrapped(*at, forged);
    let stranger = {
        let hop = Hop::new(net.me.routing_address(), net.me.sphinx_key);
        let destination = Destination::new(DestinationAddress::new([0; 32]), SurbId::default());
        let packet = PacketBuilder::new(PacketSize::Regular)
            .build(&mut net.rng, &[hop], &[Delay::ZERO], &destination, &[0; 24])
            .unwrap();
        unwrapper.unwrap(Frame {
            header: FrameHeader::v8(packet.size(), KeyRotation::of(1)),
            packet,
        })
    };
    core.handle_unwrapped(*at, stranger);
    let genuine = net.carry(order, &unwrapper);
    let Ok(Outcome::Final(Final { payload, .. })) = &genuine else {
        panic!("{genuine:?}")
    };
    let again = Ok(Outcome::Final(Final {
        destination: DestinationAddress::new([0; 32]),
        surb_id: SurbId::default(),
        payload: payload.clone(),
        size: PacketSize::Regular,
    }));
    core.handle_unwrapped(*at, genuine);
    core.handle_unwrapped(*at, again);
    assert_eq!(core.counters().loops.returned, back + 1);
    assert_eq!(core.counters().dropped.get("final_hop"), Some(&3));
}

/// More than 20 % lost over the last 20 loops raises the alarm, reported once per window while
/// it lasts; back to 10 % or less, it clears.
#[test]
fn the_loss_alarm_fires_once_per_window_and_clears() {
    let mut net = Net::new(3, 3);
    let t0 = Instant::now();
    let (mut core, unwrapper) = net.core(&cover(), t0);
    let mut alarms = Vec::new();
    // phase 1: every third loop lost (a third), until 60 loops are settled; phase 2: all back,
    // each 50 ms after it left
    let mut returns: Vec<(Instant, Unwrapped)> = Vec::new();
    let settled = |core: &MixCore| {
        let loops = &core.counters().loops;
        loops.returned + loops.lost
    };
    while settled(&core) < 120 {
        let timer = core.poll_timeout().unwrap();
        match returns.first() {
            Some((at, _)) if *at < timer => {
                let (at, unwrapped) = returns.remove(0);
                core.handle_unwrapped(at, unwrapped);
            }
            _ => core.handle_timeout(timer),
        }
        while let Some(event) = core.poll_event() {
            match event {
                Event::SendLoop(order) => {
                    if settled(&core) >= 60 || order.id.0 % 3 != 0 {
                        returns.push((
                            timer + Duration::from_millis(50),
                            net.carry(&order, &unwrapper),
                        ));
                    }
                }
                alarm => alarms.push((core.counters().loops.clone(), alarm)),
            }
        }
    }
    let kinds: Vec<&str> = alarms
        .iter()
        .map(|(_, event)| match event {
            Event::LoopLossHigh(_) => "high",
            Event::LoopLossNormal(_) => "normal",
            Event::SendLoop(_) => unreachable!(),
        })
        .collect();
    // raised once the window is full, repeated once 20 loops later, cleared in phase 2
    assert_eq!(kinds[..2], ["high", "high"], "{alarms:?}");
    assert_eq!(kinds.last(), Some(&"normal"), "{alarms:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "normal").count(), 1);
    let (first, Event::LoopLossHigh(loss)) = &alarms[0] else {
        panic!()
    };
    assert!(loss.ratio() > 0.2 && loss.of == 20, "{loss:?}");
    let (second, _) = &alarms[1];
    assert_eq!(
        (second.returned + second.lost) - (first.returned + first.lost),
        20,
        "once per window"
    );
    let (_, Event::LoopLossNormal(loss)) = alarms.last().unwrap() else {
        panic!()
    };
    assert!(loss.ratio() <= 0.1);
    assert!(!core.counters().loops.alarm);
    assert_eq!(core.counters().loops.recent, RecentLoss { lost: 0, of: 20 });
}

/// A rate of 0 sends nothing and asks for no wakeup.
#[test]
fn a_rate_of_zero_sends_nothing() {
    let net = Net::new(4, 2);
    let t0 = Instant::now();
    let (mut core, _) = net.core(
        &CoverConfig {
            loop_rate: 0.0,
            ..cover()
        },
        t0,
    );
    assert_eq!(core.poll_timeout(), None);
    let mut now = t0;
    assert!(run(&mut core, &mut now, t0 + Duration::from_secs(60)).is_empty());
    assert_eq!(core.counters().loops.sent, 0);
    // nor does a node whose topology lacks a layer
    let lonely = Topology::new(1, vec![net.me.clone()]).unwrap();
    assert_eq!(LoopRoutes::new(&lonely, &net.me), None);
}
