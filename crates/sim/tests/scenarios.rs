//! Small networks whose metrics can be worked out in advance, through the real cores.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::time::Duration;

use umbra_client::TrafficPreset;
use umbra_sim::config::{MetricSettings, SimConfig};
use umbra_sim::report::{Results, simulate};

fn network(corrupt: f64, push: bool) -> SimConfig {
    let mut config = SimConfig {
        seed: 21,
        clients: 12,
        gateways: 3,
        layer_width: 2,
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(10),
        cooldown: Duration::from_secs(2),
        preset: Some(TrafficPreset::Nym),
        messages_per_second: 2.0,
        corrupt_fraction: corrupt,
        metrics: MetricSettings {
            target_clients: (0..12).collect(),
            ..MetricSettings::default()
        },
        ..SimConfig::default()
    };
    config.client.traffic.insecure_push_deliveries = push;
    config
}

fn run(config: &SimConfig) -> Results {
    simulate(config, &mut |_| {}).unwrap().0
}

#[test]
fn an_adversary_holding_every_mix_node_knows_every_sender_and_with_push_every_recipient() {
    // every node corrupt and gateways transparent: each packet's path is known exactly, so
    // the distribution over senders is a point mass: entropy 0, the guess always right;
    // pushed deliveries show the recipient too
    let results = run(&network(1.0, true));
    let senders = results.anonymity.senders.unwrap().senders.unwrap();
    assert!(senders.entropy.count > 100, "{senders:?}");
    assert!(senders.entropy.max < 1e-9, "{senders:?}");
    assert!((senders.top_guess_right - 1.0).abs() < 1e-9, "{senders:?}");
    let targets = results.anonymity.targets.unwrap();
    assert!(targets.entropy.unwrap().max < 1e-9);
    let recipients = targets.recipients.unwrap();
    assert!(
        (recipients.top_guess_right - 1.0).abs() < 1e-9,
        "{recipients:?}"
    );
    // and ε: one sender excluded outright for every packet
    let challenge = results.anonymity.challenge.unwrap();
    assert!(
        challenge.packets > 10 && (challenge.delta - 1.0).abs() < 1e-9,
        "{challenge:?}"
    );
}

#[test]
fn a_shaped_downlink_hides_the_recipient_among_its_gateways_clients() {
    // the same adversary, but the gateways deliver on a fixed schedule: it knows the
    // recipient's gateway and nothing more, so its guess is right 1 time in 4 (12 clients
    // over 3 gateways), exactly, with entropy log2(4) = 2 bits
    let results = run(&network(1.0, false));
    let recipients = results.anonymity.targets.unwrap().recipients.unwrap();
    assert!(recipients.entropy.count > 100);
    assert!(
        (recipients.top_guess_right - 0.25).abs() < 1e-9,
        "{recipients:?}"
    );
    assert!(
        (recipients.entropy.mean - 2.0).abs() < 1e-9,
        "{recipients:?}"
    );
}

#[test]
fn honest_mix_nodes_leave_the_adversary_near_chance() {
    // no node corrupt: with Nym's cover each pool holds ≈ 0.83·12/2 ≈ 5 packets (docs,
    // definition (d)), and three layers of them mix every client's packets with everyone's.
    // Entropy over 12 senders is at most log2(12) = 3.58 bits; we ask for more than 3 bits
    // on average, i.e. the adversary's distribution is spread over more than 8 senders, and
    // its best guess right at most twice as often as chance (1/12). Seeds 21 to 24 gave
    // 3.46–3.49 bits and 0.066–0.101: both bounds lie over four standard deviations of that
    // spread away.
    let results = run(&network(0.0, false));
    let senders = results.anonymity.senders.unwrap().senders.unwrap();
    assert!(senders.entropy.mean > 3.0, "{senders:?}");
    assert!(senders.entropy.max <= 12f64.log2() + 1e-9, "{senders:?}");
    assert!(senders.top_guess_right < 2.0 / 12.0, "{senders:?}");
}
