//! The core on a virtual clock: time is whatever the test says it is.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use umbra_mixnode::{
    MixConfig, MixCore, ReplayFilter, ReplayFilterConfig, RotationKey, Transmit, Unwrapper,
};
use umbra_sphinx::{
    Delay, Destination, DestinationAddress, Hop, Packet, PacketBuilder, PacketSize, PrivateKey,
    SurbId,
};
use umbra_wire::frame::{Frame, FrameHeader, KeyRotation};

/// A layer-2 node between a layer-1 sender and two layer-3 nodes.
struct Net {
    rng: ChaCha20Rng,
    me: PrivateKey,
    me_at: SocketAddr,
    next: Vec<(PrivateKey, SocketAddr)>,
    gateway: (PrivateKey, SocketAddr),
}

fn config() -> MixConfig {
    MixConfig {
        max_delay: Duration::from_secs(10),
        replay: ReplayFilterConfig {
            expected_packets_per_second: 100,
            retention: Duration::from_secs(100),
            false_positive_rate: 1e-6,
        },
    }
}

impl Net {
    fn new(seed: u8) -> Net {
        let mut rng = ChaCha20Rng::from_seed([seed; 32]);
        let me = PrivateKey::generate(&mut rng);
        let next = (0..2)
            .map(|i| {
                (
                    PrivateKey::generate(&mut rng),
                    format!("10.0.3.{i}:1789").parse().unwrap(),
                )
            })
            .collect();
        let gateway = (
            PrivateKey::generate(&mut rng),
            "10.0.9.1:1789".parse().unwrap(),
        );
        Net {
            rng,
            me,
            me_at: "10.0.2.1:1789".parse().unwrap(),
            next,
            gateway,
        }
    }

    fn node(&self, rotation: u32) -> (Unwrapper, MixCore) {
        let filter = Arc::new(ReplayFilter::new(rotation, &config().replay).unwrap());
        let unwrapper = Unwrapper::new(RotationKey::new(self.me.clone(), filter), None);
        let core = MixCore::new(&config(), self.next.iter().map(|(_, at)| *at));
        (unwrapper, core)
    }

    /// A packet through this node (holding it `delay`), then next node `via`, then the gateway.
    fn packet(&mut self, delay: Duration, via: usize) -> Packet {
        let hop = |key: &PrivateKey, at: SocketAddr| {
            Hop::new(umbra_wire::address::encode(at), key.public_key())
        };
        let route = [
            hop(&self.me, self.me_at),
            hop(&self.next[via].0, self.next[via].1),
            hop(&self.gateway.0, self.gateway.1),
        ];
        let delays = [
            Delay::from_duration(delay),
            Delay::from_millis(1),
            Delay::ZERO,
        ];
        let destination = Destination::new(DestinationAddress::new([1; 32]), SurbId::default());
        PacketBuilder::new(PacketSize::Ack)
            .build(&mut self.rng, &route, &delays, &destination, b"hi")
            .unwrap()
    }
}

fn frame(packet: Packet) -> Frame {
    Frame {
        header: FrameHeader::v7(packet.size()),
        packet,
    }
}

/// Runs the clock from `start` to the end of the queue, waking exactly when asked; checks
/// nothing leaves a nanosecond early.
fn drain(core: &mut MixCore) -> Vec<(Instant, Transmit)> {
    let mut sent = Vec::new();
    while let Some(wakeup) = core.poll_timeout() {
        assert!(
            core.poll_transmit(wakeup - Duration::from_nanos(1))
                .is_none(),
            "left early"
        );
        while let Some(transmit) = core.poll_transmit(wakeup) {
            sent.push((wakeup, transmit));
        }
    }
    sent
}

#[test]
fn each_packet_leaves_exactly_when_due() {
    let mut net = Net::new(1);
    let (unwrapper, mut core) = net.node(1);
    let t0 = Instant::now();
    let arrivals = [(0, 30), (5, 10), (7, 0), (12, 25)];
    for (arrives_ms, delay_ms) in arrivals {
        let packet = net.packet(Duration::from_millis(delay_ms), 0);
        core.handle_unwrapped(
            t0 + Duration::from_millis(arrives_ms),
            unwrapper.unwrap(frame(packet)),
        );
    }
    let sent = drain(&mut core);
    let mut expected: Vec<u64> = arrivals.iter().map(|(a, d)| a + d).collect();
    expected.sort();
    let times: Vec<u64> = sent
        .iter()
        .map(|(t, _)| (*t - t0).as_millis() as u64)
        .collect();
    assert_eq!(times, expected);
    for (at, transmit) in &sent {
        assert_eq!(*at, transmit.due);
        assert_eq!(transmit.to, net.next[0].1);
    }
    assert_eq!(core.counters().forwarded, 4);
    assert_eq!(core.counters().lateness.count(), 4);
    assert_eq!(core.counters().lateness.sum(), Duration::ZERO);
}

#[test]
fn order_follows_the_delays_not_the_arrivals() {
    let mut net = Net::new(2);
    let (unwrapper, mut core) = net.node(1);
    let t0 = Instant::now();
    // arriving A, B, C with delays 30, 10, 20 ms: leaving B, C, A
    for (via, delay) in [(0, 30), (1, 10), (0, 20)] {
        let packet = net.packet(Duration::from_millis(delay), via);
        core.handle_unwrapped(t0, unwrapper.unwrap(frame(packet)));
    }
    let order: Vec<(u128, SocketAddr)> = drain(&mut core)
        .iter()
        .map(|(t, tx)| ((*t - t0).as_millis(), tx.to))
        .collect();
    assert_eq!(
        order,
        vec![
            (10, net.next[1].1),
            (20, net.next[0].1),
            (30, net.next[0].1)
        ]
    );
}

#[test]
fn replays_are_dropped_and_counted() {
    let mut net = Net::new(3);
    let (unwrapper, mut core) = net.node(1);
    let now = Instant::now();
    let packet = net.packet(Duration::ZERO, 0);
    core.handle_unwrapped(now, unwrapper.unwrap(frame(packet.clone())));
    core.handle_unwrapped(now, unwrapper.unwrap(frame(packet.clone())));
    // even much later, and under a version 8 frame
    let replay = Frame {
        header: FrameHeader::v8(packet.size(), KeyRotation::of(1)),
        packet,
    };
    core.handle_unwrapped(now + Duration::from_secs(60), unwrapper.unwrap(replay));
    assert_eq!(drain(&mut core).len(), 1);
    assert_eq!(core.counters().replayed, 2);
}

#[test]
fn delays_beyond_the_cap_are_capped() {
    let mut net = Net::new(4);
    let (unwrapper, mut core) = net.node(1);
    let t0 = Instant::now();
    core.handle_unwrapped(
        t0,
        unwrapper.unwrap(frame(net.packet(Duration::from_secs(3600), 0))),
    );
    core.handle_unwrapped(
        t0,
        unwrapper.unwrap(frame(net.packet(Duration::from_secs(10), 0))),
    );
    assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    let sent = drain(&mut core);
    assert!(sent.iter().all(|(t, _)| *t == t0 + Duration::from_secs(10)));
    assert_eq!(core.counters().delays_capped, 1);
}

#[test]
fn bad_input_is_counted_by_reason_and_never_panics() {
    let mut net = Net::new(5);
    let (unwrapper, mut core) = net.node(1);
    let now = Instant::now();
    // garbage of every size
    for size in PacketSize::ALL {
        let garbage = Packet::from_bytes(vec![0x42; size.packet_len()]).unwrap();
        core.handle_unwrapped(now, unwrapper.unwrap(frame(garbage)));
    }
    // a packet for another node
    let mut other = Net::new(6);
    core.handle_unwrapped(
        now,
        unwrapper.unwrap(frame(other.packet(Duration::ZERO, 0))),
    );
    // a packet whose header was tampered with
    let mut bytes = net.packet(Duration::ZERO, 0).into_bytes();
    bytes[100] ^= 1;
    core.handle_unwrapped(
        now,
        unwrapper.unwrap(frame(Packet::from_bytes(bytes).unwrap())),
    );
    // a packet that ends here
    let hop = Hop::new(umbra_wire::address::encode(net.me_at), net.me.public_key());
    let destination = Destination::new(DestinationAddress::new([1; 32]), SurbId::default());
    let last = PacketBuilder::new(PacketSize::Ack)
        .build(&mut net.rng, &[hop], &[Delay::ZERO], &destination, b"x")
        .unwrap();
    core.handle_unwrapped(now, unwrapper.unwrap(frame(last)));
    // a packet whose next hop is not in the next layer: drop the next layer from the core
    core.set_next_hops([net.next[1].1]);
    core.handle_unwrapped(now, unwrapper.unwrap(frame(net.packet(Duration::ZERO, 0))));

    let counters = core.counters();
    assert_eq!(counters.received, 9);
    assert_eq!(
        counters.malformed.values().sum::<u64>(),
        7,
        "{:?}",
        counters.malformed
    );
    assert_eq!(counters.dropped.get("final_hop"), Some(&1));
    assert_eq!(counters.dropped.get("not_next_layer"), Some(&1));
    assert_eq!(core.queued(), 0);
}

#[test]
fn keys_of_two_rotations_are_held_and_a_third_is_expired() {
    let mut old = Net::new(7);
    let (unwrapper, mut core) = old.node(4);
    let built_for_rotation_4 = old.packet(Duration::ZERO, 0);
    let mut new = Net::new(8);
    let filter = Arc::new(ReplayFilter::new(5, &config().replay).unwrap());
    let retired = unwrapper.rotate(RotationKey::new(new.me.clone(), filter));
    assert!(retired.is_none());
    new.me_at = old.me_at;
    new.next = old.next.clone();
    let built_for_rotation_5 = new.packet(Duration::ZERO, 0);
    let now = Instant::now();
    // v8 frames name the rotation; v7 frames are tried with both keys
    let v8 = |packet: &Packet, rotation| Frame {
        header: FrameHeader::v8(packet.size(), KeyRotation::of(rotation)),
        packet: packet.clone(),
    };
    core.handle_unwrapped(now, unwrapper.unwrap(v8(&built_for_rotation_4, 4)));
    core.handle_unwrapped(now, unwrapper.unwrap(v8(&built_for_rotation_5, 5)));
    core.handle_unwrapped(now, unwrapper.unwrap(frame(old.packet(Duration::ZERO, 0))));
    core.handle_unwrapped(now, unwrapper.unwrap(frame(new.packet(Duration::ZERO, 0))));
    // the wrong parity for the packet's key: its MAC fails under the other key
    core.handle_unwrapped(now, unwrapper.unwrap(v8(&new.packet(Duration::ZERO, 0), 4)));
    assert_eq!(drain(&mut core).len(), 4);
    assert_eq!(core.counters().malformed.get("bad_mac"), Some(&1));
    // the next rotation retires rotation 4's key
    let newer = Net::new(9);
    let filter = Arc::new(ReplayFilter::new(6, &config().replay).unwrap());
    assert_eq!(
        unwrapper
            .rotate(RotationKey::new(newer.me.clone(), filter))
            .map(|k| k.rotation()),
        Some(4)
    );
    assert_eq!(
        unwrapper
            .replay_filters()
            .iter()
            .map(|f| f.rotation())
            .collect::<Vec<_>>(),
        vec![6, 5]
    );
    let only_one = Arc::new(ReplayFilter::new(8, &config().replay).unwrap());
    let fresh = Unwrapper::new(RotationKey::new(old.me.clone(), only_one), None);
    // a node holding only rotation 8 (even) has no key of odd parity
    core.handle_unwrapped(now, fresh.unwrap(v8(&built_for_rotation_5, 5)));
    assert_eq!(core.counters().expired, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Under any arrivals and delays: every packet leaves exactly at arrival + min(delay, cap),
    /// in due-time order (arrival order among equals), and the counters add up.
    #[test]
    fn any_schedule_is_kept_exactly(
        seed in any::<u8>(),
        arrivals in prop::collection::vec((0..2000u64, 0..15_000u64, any::<bool>()), 1..25),
    ) {
        let mut net = Net::new(seed);
        let (unwrapper, mut core) = net.node(1);
        let t0 = Instant::now();
        let mut arrivals = arrivals;
        arrivals.sort_by_key(|a| a.0);
        let mut expected = Vec::new();
        let mut frames = Vec::new();
        for (i, (arrives_ms, delay_ms, replay)) in arrivals.iter().enumerate() {
            let packet = net.packet(Duration::from_millis(*delay_ms), i % 2);
            let due = arrives_ms + (*delay_ms).min(10_000);
            expected.push((due, i));
            frames.push((*arrives_ms, frame(packet.clone())));
            if *replay {
                frames.push((*arrives_ms, frame(packet)));
            }
        }
        // feed in batches, as the shell does
        for chunk in frames.chunks(4) {
            let results = unwrapper.unwrap_batch(chunk.iter().map(|(_, f)| f.clone()).collect());
            for ((arrives_ms, _), result) in chunk.iter().zip(results) {
                core.handle_unwrapped(t0 + Duration::from_millis(*arrives_ms), result);
            }
        }
        expected.sort();
        let sent: Vec<u64> = drain(&mut core).iter().map(|(t, _)| (*t - t0).as_millis() as u64).collect();
        prop_assert_eq!(sent, expected.iter().map(|(due, _)| *due).collect::<Vec<_>>());
        let c = core.counters();
        prop_assert_eq!(c.received, frames.len() as u64);
        prop_assert_eq!(c.received, c.forwarded + c.replayed);
    }
}
