//! The metrics driven by synthetic event streams: Poisson mixes, where (a) has an exact value,
//! and tiny hand-made streams worked out on paper.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rand_distr::{Distribution, Exp, Poisson};

use super::*;

/// One event of a synthetic trace.
#[derive(Clone, Copy, Debug)]
enum Event {
    Sent(Place, PacketId, Origin),
    Link(f64, Place, Place, PacketId),
    Ended(Place, PacketId, End),
}

/// A trace being built: events with their times, replayed in time order.
#[derive(Default)]
struct Trace {
    events: Vec<(f64, Event)>,
}

impl Trace {
    fn push(&mut self, at: f64, event: Event) {
        self.events.push((at, event));
    }

    /// Replays into `observer` in time order (a stable sort keeps one packet's events at the
    /// same instant in the order they were made).
    fn play(mut self, observer: &mut impl Observer) {
        self.events.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (at, event) in self.events {
            match event {
                Event::Sent(from, p, origin) => observer.sent(at, from, p, origin),
                Event::Link(arrives, from, to, p) => observer.link(at, arrives, from, to, p, 2048),
                Event::Ended(place, p, end) => observer.ended(at, place, p, end),
            }
        }
    }
}

fn mix(layer: u8) -> Place {
    Place::Mix { layer, index: 0 }
}

/// A cascade of `layers` Poisson mixes (one each), played into `observer` as it is simulated:
/// arrivals at rate `rate` per second, delays Exp(`mu`) at each mix. Client 1 sends loops;
/// every `every`-th arrival is instead a real packet of client 0 (a target), up to `targets`;
/// then arrivals stop and the mixes drain. The first mix starts with Poisson(`rate/mu`)
/// packets inside (its stationary law; the delay is memoryless); the others start empty (the
/// first `every` arrivals hold no target: warm-up).
///
/// Targets are chosen by count, not as "the first arrival after time t": that one follows a
/// longer than typical gap (the inspection paradox) and finds a smaller pool than a typical
/// arrival does — Poisson(ρ·λ/(λ+µ)) instead of Poisson(ρ) —, which biases the entropy down.
struct Cascade {
    rng: ChaCha20Rng,
    delay: Exp<f64>,
    layers: u8,
    /// Departures due: (time's bits — positive floats order as their bits —, seq, packet,
    /// layer it leaves).
    due: BinaryHeap<Reverse<(u64, u64, u64, u8)>>,
    seq: u64,
}

impl Cascade {
    fn play(
        seed: u64,
        (layers, rate, mu): (u8, f64, f64),
        (every, targets): (u32, u32),
        observer: &mut impl Observer,
    ) {
        let mut sim = Self {
            rng: ChaCha20Rng::seed_from_u64(seed),
            delay: Exp::new(mu).unwrap(),
            layers,
            due: BinaryHeap::new(),
            seq: 0,
        };
        let gap = Exp::new(rate).unwrap();
        let already = Poisson::new(rate / mu).unwrap().sample(&mut sim.rng) as u32;
        for _ in 0..already {
            sim.send(0.0, false, observer);
        }
        let mut t = 0.0;
        for arrival in 1..=(targets + 1) * every {
            t += gap.sample(&mut sim.rng);
            sim.run_until(t, observer);
            sim.send(
                t,
                arrival % every == 0 && arrival <= targets * every,
                observer,
            );
        }
        sim.run_until(f64::INFINITY, observer);
    }

    fn send(&mut self, at: f64, real: bool, observer: &mut impl Observer) {
        self.seq += 1;
        let (p, client) = (PacketId(self.seq), Place::Client(u32::from(!real)));
        let origin = if real {
            Origin::Real {
                message: self.seq,
                to: 2,
            }
        } else {
            Origin::Loop
        };
        observer.sent(at, client, p, origin);
        observer.link(at, at, client, mix(1), p, 2048);
        self.schedule(at, p.0, 1);
    }

    fn schedule(&mut self, now: f64, packet: u64, layer: u8) {
        let leave = now + self.delay.sample(&mut self.rng);
        self.seq += 1;
        self.due
            .push(Reverse((leave.to_bits(), self.seq, packet, layer)));
    }

    fn run_until(&mut self, until: f64, observer: &mut impl Observer) {
        while let Some(&Reverse((bits, _, packet, layer))) = self.due.peek() {
            let t = f64::from_bits(bits);
            if t > until {
                break;
            }
            self.due.pop();
            let p = PacketId(packet);
            if layer == self.layers {
                observer.link(t, t, mix(layer), Place::Client(2), p, 2048);
                observer.ended(t, Place::Client(2), p, End::Delivered(2));
            } else {
                observer.link(t, t, mix(layer), mix(layer + 1), p, 2048);
                self.schedule(t, packet, layer + 1);
            }
        }
    }
}

fn entropy_of(play: impl FnOnce(&mut TargetEntropy), config: &MetricsConfig) -> TargetReport {
    let mut metric = TargetEntropy::new(config);
    play(&mut metric);
    metric.report()
}

fn one_layer() -> MetricsConfig {
    MetricsConfig {
        last_layer: 1,
        prune_below: 0.0,
        targets: TargetsConfig {
            max: usize::MAX,
            ..TargetsConfig::default()
        },
        ..MetricsConfig::default()
    }
}

/// (d) One Poisson mix, ρ = λ/µ = 4: the mean target entropy measured over K targets against
/// the exact value from the recursion in `analytic.rs`.
///
/// The bound: targets are 400 arrivals (10 mean delays, 1/µ = 40/λ) apart, so a target's mass is gone (all but e^-10)
/// before the next arrives, and the pool sizes they meet are correlated by e^-10 at most: the
/// targets' entropies are independent draws to that precision. The recursion gives their exact
/// variance σ², so by Chebyshev the sample mean of K of them strays more than k·σ/√K from the
/// exact mean with probability at most 1/k²; k = √1000 makes that at most 1 in 1,000 runs
/// whatever the entropy's law (no normal approximation). A wrong definition is far outside:
/// at ρ = 4 the exact mean is 3.43 bits, σ = 0.59 bits, and the bound with K = 20,000 is
/// 0.13 bits; the first arrival after fixed times (see [`Cascade`]) already lands 0.17 bits low.
#[test]
fn one_poisson_mix_matches_the_exact_entropy() {
    let (rate, mu, targets) = (40.0, 10.0, 20_000);
    let exact = pool_entropy(rate / mu).unwrap();
    let play = |m: &mut TargetEntropy| Cascade::play(7, (1, rate, mu), (400, targets), m);
    let report = entropy_of(play, &one_layer());
    let measured = report.entropy.unwrap();
    assert_eq!(measured.count, targets as usize);
    let bound = 1000f64.sqrt() * (exact.variance / f64::from(targets)).sqrt();
    println!("measured {measured:?}, exact {exact:?}, bound {bound}");
    assert!(
        (measured.mean - exact.mean).abs() < bound,
        "measured {} exact {exact:?} bound {bound}",
        measured.mean
    );
    // Every target's mass left the mix (no pruning, nothing ends inside, the mix drained).
    let mass = report.exit_mass.unwrap();
    assert!(
        (mass.min - 1.0).abs() < 1e-9 && (mass.max - 1.0).abs() < 1e-9,
        "{mass:?}"
    );
    assert_eq!(report.entropy_error_bound, 0.0);
}

/// A corrupt mix shows the adversary which input became which output: with the second of two
/// layers corrupt, a target keeps only the first layer's entropy; with both, none.
#[test]
fn corrupt_mixes_lower_the_entropy() {
    let (rate, mu, targets) = (40.0, 10.0, 2_000);
    let trace = || move |m: &mut TargetEntropy| Cascade::play(11, (2, rate, mu), (800, targets), m);
    let mut config = MetricsConfig {
        last_layer: 2,
        ..one_layer()
    };
    let honest = entropy_of(trace(), &config).entropy.unwrap().mean;
    config.corrupt_mixes = vec![MixRef { layer: 2, index: 0 }];
    let one_corrupt = entropy_of(trace(), &config).entropy.unwrap().mean;
    config.corrupt_mixes.push(MixRef { layer: 1, index: 0 });
    let all_corrupt = entropy_of(trace(), &config).entropy.unwrap();
    let single = pool_entropy(rate / mu).unwrap().mean;
    assert!(
        honest > one_corrupt + 0.5,
        "honest {honest}, one corrupt {one_corrupt}"
    );
    // With layer 2 transparent, what is left is one Poisson mix (loose check; the exact one is
    // the test above).
    assert!(
        (one_corrupt - single).abs() < 0.2,
        "one corrupt {one_corrupt}, one mix {single}"
    );
    assert_eq!(
        (all_corrupt.max, all_corrupt.count),
        (0.0, targets as usize)
    );
}

const C: [Place; 6] = [
    Place::Client(0),
    Place::Client(1),
    Place::Client(2),
    Place::Client(3),
    Place::Client(4),
    Place::Client(5),
];
const GATEWAY: Place = Place::Gateway(0);

/// One mix; A (client 0) sends at 0, C (client 2) at 1, B (client 1) at 3; the mix lets out
/// A's packet at 2, C's at 4, B's at 5, to the gateway, which delivers them to clients 3, 4, 5.
///
/// By hand (Piotrowska's rule): after 1 the pool is {A, C}, vector (A ½, C ½). At 2 a packet
/// leaves with (A ½, C ½) — A's. At 3 B enters a pool of one: (A ¼, B ½, C ¼). At 4 and 5 the
/// two left leave with that.
fn hand_trace() -> Trace {
    let mut trace = Trace::default();
    let plan = [(0.0, 0, 2.0, 3), (1.0, 2, 4.0, 4), (3.0, 1, 5.0, 5)];
    for (id, (sent, from, out, to)) in plan.into_iter().enumerate() {
        let p = PacketId(id as u64);
        let origin = Origin::Real {
            message: id as u64,
            to,
        };
        trace.push(sent, Event::Sent(C[from], p, origin));
        trace.push(sent, Event::Link(sent, C[from], mix(1), p));
        trace.push(out, Event::Link(out + 0.1, mix(1), GATEWAY, p));
        trace.push(out + 0.1, Event::Ended(GATEWAY, p, End::Delivered(to)));
        trace.push(
            out + 0.1,
            Event::Link(out + 0.2, GATEWAY, C[to as usize], p),
        );
    }
    trace
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// (b) over senders. A's packet: (½, 0, ½) — 1 bit, A tied with C at the top (½ right), A ½.
/// C's: (¼, ½, ¼) — 1.5 bits, top guess B (wrong), C ¼. B's: the same vector, top guess right,
/// B ½. Means: 4/3 bits, top guess ½, truth (½ + ¼ + ½)/3.
#[test]
fn senders_by_hand() {
    let config = MetricsConfig {
        last_layer: 1,
        senders: SendersConfig {
            clients: 6,
            sampled: vec![],
        },
        ..MetricsConfig::default()
    };
    let mut metric = SenderEntropy::new(&config);
    hand_trace().play(&mut metric);
    let report = metric.report();
    let senders = report.senders.unwrap();
    assert_eq!(senders.entropy.count, 3);
    assert!(close(senders.entropy.mean, 4.0 / 3.0), "{senders:?}");
    assert!(close(senders.top_guess_right, 0.5), "{senders:?}");
    assert!(
        close(senders.truth_probability.mean, 1.25 / 3.0),
        "{senders:?}"
    );
    assert!(report.pruned_mass_max < 1e-12);

    // Sampling A and B only: C becomes "other" (4 unlabelled clients share its ¼ or ½); the
    // truth probabilities stay exact. A's packet: A ½, others ⅛ each: 1 + ½·log2 4 = 2 bits.
    let config = MetricsConfig {
        senders: SendersConfig {
            clients: 6,
            sampled: vec![0, 1],
        },
        ..config
    };
    let mut metric = SenderEntropy::new(&config);
    hand_trace().play(&mut metric);
    let senders = metric.report().senders.unwrap();
    assert_eq!(senders.entropy.count, 2);
    assert!(close(senders.entropy.min, 2.0), "{senders:?}");
    assert!(close(senders.truth_probability.mean, 0.5), "{senders:?}");
}

/// (c) A = 0, B = 1. A's packet carries p_B = 0: excluded (δ). B's carries (A ¼, B ½):
/// ε = ln 2.
#[test]
fn epsilon_by_hand() {
    let config = MetricsConfig {
        challenge: ChallengeConfig {
            enabled: true,
            a: 0,
            b: 1,
        },
        ..MetricsConfig::default()
    };
    let mut metric = Unlinkability::new(&config);
    hand_trace().play(&mut metric);
    let report = metric.report();
    assert_eq!((report.packets, report.excluded), (2, 1));
    assert!(close(report.delta, 0.5));
    assert!(close(report.epsilon_mean.unwrap(), 2f64.ln()));
    assert!(close(report.epsilon_abs.unwrap().max, 2f64.ln()));
}

/// (a) and recipients on the hand trace, target: A's packet. It leaves with ½, then ¼ and ¼:
/// entropy 1.5 bits. Recipients, downlink not shaped: client 3 (the truth) ½, 4 and 5 ¼ each.
/// Shaped, gateway 0 serving clients 3, 4, 5: uniform, log2 3 bits, a three-way tie.
#[test]
fn targets_and_recipients_by_hand() {
    let mut config = MetricsConfig {
        last_layer: 1,
        ..MetricsConfig::default()
    };
    let report = entropy_of(|m| hand_trace().play(m), &config);
    assert!(close(report.entropy.unwrap().mean, 1.5));
    assert_eq!(report.exits, 3);
    let recipients = report.recipients.unwrap();
    assert!(close(recipients.entropy.mean, 1.5) && close(recipients.truth_probability.mean, 0.5));
    assert!(close(recipients.top_guess_right, 1.0));

    config.receivers = ReceiversConfig {
        downlink_shaped: true,
        gateway_clients: vec![vec![3, 4, 5]],
    };
    let recipients = entropy_of(|m| hand_trace().play(m), &config)
        .recipients
        .unwrap();
    assert!(close(recipients.entropy.mean, 3f64.log2()));
    assert!(close(recipients.truth_probability.mean, 1.0 / 3.0));
    assert!(close(recipients.top_guess_right, 1.0 / 3.0));
}

/// Packets a mix makes enter its pool; packets ending inside leave it without a departure.
#[test]
fn mix_loops_dilute_and_endings_lose_mass() {
    let config = MetricsConfig {
        last_layer: 1,
        ..MetricsConfig::default()
    };
    let mut metric = TargetEntropy::new(&config);
    let target = PacketId(1);
    metric.sent(0.0, C[0], target, Origin::Real { message: 1, to: 3 });
    metric.link(0.0, 0.0, C[0], mix(1), target, 2048);
    metric.link(0.0, 0.5, C[1], mix(1), PacketId(2), 2048);
    // At 1 the mix makes a loop (pool of three: ⅓ each) and sends it out at once.
    metric.sent(1.0, mix(1), PacketId(3), Origin::MixLoop);
    metric.link(1.0, 1.0, mix(1), GATEWAY, PacketId(3), 2048);
    // Packet 2 ends inside: the pool keeps ⅓ for what is left (one packet), ⅓ lost.
    metric.ended(2.0, mix(1), PacketId(2), End::AtMix);
    metric.link(3.0, 3.0, mix(1), GATEWAY, target, 2048);
    let report = metric.report();
    let mass = report.exit_mass.unwrap();
    assert!(close(mass.mean, 2.0 / 3.0), "{mass:?}");
    assert!(close(report.entropy.unwrap().mean, 2.0 * plogp_third()));
}

fn plogp_third() -> f64 {
    3f64.log2() / 3.0
}

/// The config is read with unknown fields refused and missing ones defaulted; the report goes
/// to JSON.
#[test]
fn config_and_report_serde() {
    let config: MetricsConfig = toml::from_str("last_layer = 1\n[senders]\nclients = 6\n").unwrap();
    assert_eq!(config.senders.clients, 6);
    assert_eq!(config.targets, TargetsConfig::default());
    assert!(toml::from_str::<MetricsConfig>("lastlayer = 1").is_err());
    assert!(toml::from_str::<MetricsConfig>("[targets]\nmaximum = 3").is_err());

    let mut metrics = Metrics::new(&MetricsConfig {
        challenge: ChallengeConfig {
            enabled: true,
            a: 0,
            b: 1,
        },
        ..config
    });
    hand_trace().play(&mut metrics);
    let report = metrics.report();
    let json = serde_json::to_string(&report).unwrap();
    let back: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(back["targets"]["entropy"]["mean"].is_number(), "{json}");
    assert!(report.targets.is_some() && report.senders.is_some() && report.challenge.is_some());
}
