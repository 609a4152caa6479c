//! The engine drives the real cores: messages arrive, cover flows, runs repeat from their
//! seed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::hash::{Hash, Hasher};
use std::time::Duration;

use umbra_sim::config::SimConfig;
use umbra_sim::engine::Sim;
use umbra_sim::trace::{End, Observer, Origin, PacketId, Place};

fn small(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        clients: 20,
        gateways: 2,
        layer_width: 2,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        ..SimConfig::default()
    }
}

/// Hashes everything reported, in order.
#[derive(Default)]
struct Fingerprint {
    hasher: std::collections::hash_map::DefaultHasher,
    links: u64,
}

impl Observer for Fingerprint {
    fn sent(&mut self, at: f64, from: Place, packet: PacketId, origin: Origin) {
        (at.to_bits(), from, packet, format!("{origin:?}")).hash(&mut self.hasher);
    }
    fn link(&mut self, at: f64, arrives: f64, from: Place, to: Place, packet: PacketId, size: u32) {
        self.links += 1;
        (at.to_bits(), arrives.to_bits(), from, to, packet, size).hash(&mut self.hasher);
    }
    fn ended(&mut self, at: f64, place: Place, packet: PacketId, end: End) {
        (at.to_bits(), place, packet, format!("{end:?}")).hash(&mut self.hasher);
    }
}

fn run(seed: u64) -> (u64, u64, umbra_sim::engine::RunStats) {
    let mut sim = Sim::new(small(seed)).unwrap();
    let mut fingerprint = Fingerprint::default();
    sim.run_until(11.0, &mut fingerprint, &mut |_| {});
    (
        fingerprint.hasher.finish(),
        fingerprint.links,
        sim.stats().clone(),
    )
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let (a, links, stats) = run(7);
    let (b, _, again) = run(7);
    assert_eq!(a, b, "two runs from seed 7 reported different events");
    assert_eq!(stats, again);
    assert!(links > 10_000, "only {links} links crossed");
    let (c, _, _) = run(8);
    assert_ne!(a, c, "seeds 7 and 8 gave the same run");
}

#[test]
fn messages_arrive_and_cover_flows_at_the_configured_rates() {
    let config = small(3);
    let mut sim = Sim::new(config.clone()).unwrap();
    sim.run_until(11.0, &mut (), &mut |_| {});
    let stats = sim.stats();
    // every message sent after the warm-up and more than a few seconds before the end arrives
    assert!(stats.messages_sent > 100, "{stats:?}");
    assert!(
        stats.messages_received + 5 >= stats.messages_sent,
        "sent {} received {}",
        stats.messages_sent,
        stats.messages_received
    );
    // the real stream's slots (Nym: one per 20 ms) carry data or drop cover; loops one per
    // 200 ms. Over 20 clients × 11 s the counts are Poisson with means 11,000 and 1,100:
    // ±5 standard deviations (chance of crossing < 1e-6) is ±525 and ±166.
    let slots = (stats.real_packets + stats.drop_packets) as f64;
    assert!(
        (slots - 11_000.0).abs() < 525.0,
        "{slots} real-stream slots"
    );
    assert!(
        (stats.loop_packets as f64 - 1_100.0).abs() < 166.0,
        "{stats:?}"
    );
    // what the engine follows between a gateway and a client does not grow with the run:
    // about 20,000 deliveries were made (packets and their acks), a few per client remain
    assert!(
        sim.deliveries_followed() < 20 * 20,
        "{} deliveries still followed",
        sim.deliveries_followed()
    );
    // every client's loops came back
    for client in 0..config.clients {
        let client = sim.client_stats(client).unwrap();
        assert!(client.loops_returned + 3 >= client.loops, "{client:?}");
    }
}

#[test]
fn the_example_config_loads_and_says_what_it_runs() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sim.example.toml")).unwrap();
    let config: SimConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    assert_eq!(config.clients, 100);
    assert_eq!(
        config.client_config().traffic,
        umbra_client::TrafficPreset::Nym.config()
    );
    // a mistyped setting is refused, naming it
    let error = toml::from_str::<SimConfig>("client = 3\nclinets = 5\n").unwrap_err();
    assert!(error.to_string().contains("client"), "{error}");
    let bad = SimConfig {
        gateways: 0,
        ..SimConfig::default()
    };
    assert!(bad.validate().unwrap_err().to_string().contains("gateways"));
}
