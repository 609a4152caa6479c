//! The monitor core through whole epochs on a virtual clock (`umbra_core::Pair`), against a
//! network in memory whose nodes forward each packet with a set probability: the shell's
//! part (send on the entry gateway's session, report sent and received) is the closures.

#![allow(clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use umbra_core::{Core, Pair};
use umbra_monitor::{
    Attribution, EpochReport, EpochSchedule, Event, Evidence, Fault, FaultReason, Monitor,
    MonitorConfig, Roster, RouteId, TestRoute, Verdict, attribute,
};
use umbra_topology::NodeId;

/// What the network tells the shell: a packet left, or one came back.
enum Notice {
    Sent(RouteId),
    Returned(RouteId),
}

/// Mix nodes and gateways in memory: each hop forwards with its node's reliability, a
/// gateway down (or the whole network, in an outage) forwards nothing.
struct Network {
    rng: ChaCha20Rng,
    reliability: BTreeMap<NodeId, f64>,
    down: Vec<NodeId>,
    outage: Option<(Instant, Instant)>,
    queue: BTreeMap<(Instant, u64), Notice>,
    sequence: u64,
}

impl Network {
    fn new(seed: u8) -> Network {
        Network {
            rng: ChaCha20Rng::from_seed([seed; 32]),
            reliability: BTreeMap::new(),
            down: Vec::new(),
            outage: None,
            queue: BTreeMap::new(),
            sequence: 0,
        }
    }

    fn push(&mut self, at: Instant, notice: Notice) {
        self.sequence += 1;
        self.queue.insert((at, self.sequence), notice);
    }

    fn carry(&mut self, now: Instant, route: TestRoute) {
        self.push(now, Notice::Sent(route.id));
        let in_outage = self
            .outage
            .is_some_and(|(from, to)| from <= now && now < to);
        let mut forwarded = !in_outage;
        for hop in route.hops {
            let p = self.reliability.get(&hop).copied().unwrap_or(1.0);
            let uniform = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            forwarded &= uniform < p && !self.down.contains(&hop);
        }
        if forwarded {
            // three mix delays and the links: 50 ms to 1 s
            let latency = Duration::from_millis(50 + self.rng.next_u64() % 950);
            self.push(now + latency, Notice::Returned(route.id));
        }
    }
}

impl Core for Network {
    type Transmit = Notice;
    type Event = ();

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_transmit(&mut self, now: Instant) -> Option<Notice> {
        let (&key, _) = self.queue.first_key_value()?;
        (key.0 <= now).then(|| self.queue.remove(&key)).flatten()
    }

    fn poll_event(&mut self) -> Option<()> {
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|((at, _), _)| *at)
    }
}

fn roster() -> Roster {
    let ids = |from: u32| vec![NodeId(from), NodeId(from + 1)];
    Roster::new(
        [ids(100), ids(200), ids(300)],
        vec![NodeId(900), NodeId(901), NodeId(902)],
    )
}

const EPOCH: Duration = Duration::from_secs(20 * 60);
const MINUTE: Duration = Duration::from_secs(60);

/// A monitor with every gateway up, starting epoch 1 now, against `network`.
fn start(network: Network) -> (Pair<Monitor, Network>, Instant) {
    let start = Instant::now();
    let mut monitor = Monitor::new(MonitorConfig::default(), [7; 32]).expect("valid config");
    for gateway in roster().gateways() {
        monitor.handle_gateway_up(start, *gateway);
    }
    monitor
        .handle_epoch(
            start,
            EpochSchedule {
                number: 1,
                roster: roster(),
                start,
                end: start + EPOCH,
            },
        )
        .expect("epoch accepted");
    (Pair::new(monitor, network, start, Duration::ZERO), start)
}

fn run(pair: &mut Pair<Monitor, Network>, until: Instant) {
    pair.run_until(
        until,
        |network, now, route| network.carry(now, route),
        |monitor, now, notice| match notice {
            Notice::Sent(id) => monitor.handle_sent(now, id),
            Notice::Returned(id) => monitor.handle_received(now, id),
        },
    );
}

/// The epoch's one report and its scores.
fn report(pair: &Pair<Monitor, Network>) -> (&EpochReport, Attribution) {
    let reports: Vec<&EpochReport> = pair
        .events_a
        .iter()
        .filter_map(|event| match event {
            Event::Report(report) => Some(&**report),
            Event::Fault { .. } => None,
        })
        .collect();
    assert_eq!(reports.len(), 1, "one report per epoch");
    (reports[0], reports[0].attribute())
}

/// Every fault of the monitor's: those it claims and the mass failures in the routes.
fn faults(report: &EpochReport, attribution: &Attribution) -> Vec<Fault> {
    report
        .evidence
        .faults
        .iter()
        .chain(&attribution.mass_failures)
        .copied()
        .collect()
}

fn score(attribution: &Attribution, node: u32) -> f64 {
    match attribution
        .nodes
        .iter()
        .find(|score| score.node == NodeId(node))
        .map(|score| score.verdict)
    {
        Some(Verdict::Scored(score)) => score.reliability,
        other => panic!("node {node}: {other:?}"),
    }
}

#[test]
fn an_epoch_on_a_virtual_clock() {
    // node 100 forwards half of what it gets. Routes are drawn for 20 min − 80 s = 1,120 s, a
    // Poisson stream of mean 100 ms: 11,200 ± 106 routes (±5 % is 5 standard deviations),
    // each mix node on half of them: node 100's estimate has a standard deviation of about
    // 0.007, so ±0.05 is 7 of them; the good nodes' estimates are exactly 1.
    let mut network = Network::new(1);
    network.reliability.insert(NodeId(100), 0.5);
    let (mut pair, start) = start(network);
    run(&mut pair, start + EPOCH);
    let (report, attribution) = report(&pair);
    // due 60 s before the end, so that the scores reach the ledger within the epoch
    let routes = report.evidence.routes.len();
    assert!((10_640..=11_760).contains(&routes), "{routes} routes");
    assert!((score(&attribution, 100) - 0.5).abs() < 0.05);
    for node in [101, 200, 201, 300, 301, 900, 901, 902] {
        assert!(score(&attribution, node) >= 0.95, "node {node}");
    }
    assert_eq!(attribution.performance().len(), 9);
    assert_eq!(faults(report, &attribution), Vec::new());
    // anyone can check: the published evidence gives the same hash and the same scores
    let published = Evidence::from_json(&report.evidence.to_json()).expect("reads back");
    assert_eq!(published.hash(), report.hash);
    assert_eq!(attribute(&published), attribution);
    // and the monitor has nothing left to wake for
    assert_eq!(pair.a.poll_timeout(), None);
    let stats = pair.a.stats();
    assert_eq!(stats.sent, stats.returned + stats.lost);
    assert_eq!(stats.unsent + stats.unknown + stats.late, 0);
}

#[test]
fn the_monitors_gateway_killed_mid_epoch_blames_no_node() {
    // gateway 900 dies at 5 min (everything through it is lost from then); the monitor's
    // session notices 2 s later, and it is back at 10 min
    let (mut pair, start) = start(Network::new(2));
    run(&mut pair, start + 5 * MINUTE);
    pair.b.down.push(NodeId(900));
    run(&mut pair, start + 5 * MINUTE + Duration::from_secs(2));
    pair.a.handle_gateway_down(pair.now, NodeId(900));
    run(&mut pair, start + 10 * MINUTE);
    pair.b.down.clear();
    pair.a.handle_gateway_up(pair.now, NodeId(900));
    run(&mut pair, start + EPOCH);
    let (report, attribution) = report(&pair);
    assert!(attribution.voided.gateway_down > 0);
    assert!(
        faults(report, &attribution)
            .iter()
            .any(|fault| fault.reason == FaultReason::GatewayDown { gateway: 900 })
    );
    // every node is perfect, and every packet lost went through the dead gateway while it
    // was dead: nobody loses a point
    for node in [100, 101, 200, 201, 300, 301, 900, 901, 902] {
        assert!(
            score(&attribution, node) >= 0.99,
            "node {node}: {}",
            score(&attribution, node)
        );
    }
}

#[test]
fn a_starved_monitor_judges_nothing_while_it_was() {
    // the monitor's process stops for 5 s at 5 min: what was in flight then is not judged
    let mut network = Network::new(3);
    network.reliability.insert(NodeId(201), 0.8);
    let (mut pair, start) = start(network);
    run(&mut pair, start + 5 * MINUTE);
    pair.now += Duration::from_secs(5);
    run(&mut pair, start + EPOCH);
    let (report, attribution) = report(&pair);
    assert!(
        faults(report, &attribution).iter().any(
            |fault| matches!(fault.reason, FaultReason::Starved { late_ms } if late_ms >= 4000)
        )
    );
    assert!(attribution.voided.starved > 0);
    assert!(
        pair.events_a
            .iter()
            .any(|event| matches!(event, Event::Fault { epoch: 1, .. }))
    );
    assert!((score(&attribution, 201) - 0.8).abs() < 0.05);
    assert!(score(&attribution, 200) >= 0.95);
}

#[test]
fn the_monitors_network_failing_blames_no_node() {
    // everything is lost for 3 minutes from 6 min: windows 6, 7 and 8 are mass failures
    let mut network = Network::new(4);
    let (mut pair, start) = start({
        network.reliability.insert(NodeId(300), 0.9);
        network
    });
    pair.b.outage = Some((start + 6 * MINUTE, start + 9 * MINUTE));
    run(&mut pair, start + EPOCH);
    let (_, attribution) = report(&pair);
    let windows: Vec<u64> = attribution
        .mass_failures
        .iter()
        .map(|fault| fault.from_ms / 60_000)
        .collect();
    // (the outage loses what is sent during it: windows 5 and 9 are untouched)
    assert_eq!(windows, vec![6, 7, 8]);
    assert!((score(&attribution, 300) - 0.9).abs() < 0.05);
    for node in [100, 101, 200, 201, 301, 900, 901, 902] {
        assert!(score(&attribution, node) >= 0.95, "node {node}");
    }
}
