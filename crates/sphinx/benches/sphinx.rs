//! Umbra and Nym's `sphinx-packet` 0.8.0 side by side, in the same run, on the same inputs.
//!
//! Run: `cargo bench -p umbra-sphinx --bench sphinx`, then
//! `python3 crates/sphinx/benches/summary.py` for the table of ratios in BENCHMARKS.md.

#![allow(missing_docs, clippy::unwrap_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sphinx_packet as nym;
use sphinx_packet::header::delays::Delay as NymDelay;
use sphinx_packet::route::{
    Destination as NymDestination, DestinationAddressBytes, Node as NymNode, NodeAddressBytes,
};
use umbra_sphinx::{
    CheckedPacket, Delay, Destination, DestinationAddress, Hop, NodeAddress, Packet, PacketBuilder,
    PacketSize, PrivateKey, Processed, Surb, SurbId, Version,
};
use x25519_dalek::{PublicKey as NymPublicKey, StaticSecret};

const NYM: &str = "sphinx-packet 0.8.0";
const UMBRA: &str = "umbra";
const UMBRA_BATCH: &str = "umbra, batches of 32";
const BATCH: usize = 32;

struct Setup {
    keys: Vec<PrivateKey>,
    nym_keys: Vec<StaticSecret>,
    route: Vec<Hop>,
    nym_route: Vec<NymNode>,
    delays: Vec<Delay>,
    nym_delays: Vec<NymDelay>,
    destination: Destination,
    nym_destination: NymDestination,
    message: Vec<u8>,
}

fn setup() -> Setup {
    let mut rng = ChaCha20Rng::from_seed([5; 32]);
    let keys: Vec<PrivateKey> = (0..3).map(|_| PrivateKey::generate(&mut rng)).collect();
    let nym_keys: Vec<StaticSecret> = keys
        .iter()
        .map(|k| StaticSecret::from(*k.as_bytes()))
        .collect();
    let route = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Hop::new(NodeAddress::new([i as u8; 32]), k.public_key()))
        .collect();
    let nym_route = nym_keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            NymNode::new(
                NodeAddressBytes::from_bytes([i as u8; 32]),
                NymPublicKey::from(k),
            )
        })
        .collect();
    Setup {
        keys,
        nym_keys,
        route,
        nym_route,
        delays: vec![Delay::from_millis(15); 3],
        nym_delays: vec![NymDelay::new_from_millis(15); 3],
        destination: Destination::new(DestinationAddress::new([9; 32]), SurbId::new([7; 16])),
        nym_destination: NymDestination::new(DestinationAddressBytes::from_bytes([9; 32]), [7; 16]),
        message: vec![0x42; PacketSize::Regular.plaintext_capacity()],
    }
}

impl Setup {
    fn umbra_packet(&self, rng: &mut ChaCha20Rng) -> Packet {
        PacketBuilder::new(PacketSize::Regular)
            .build(
                rng,
                &self.route,
                &self.delays,
                &self.destination,
                &self.message,
            )
            .unwrap()
    }

    fn nym_packet(&self) -> nym::SphinxPacket {
        nym::SphinxPacketBuilder::new()
            .with_payload_size(PacketSize::Regular.payload_len())
            .build_packet(
                &self.message,
                &self.nym_route,
                &self.nym_destination,
                &self.nym_delays,
            )
            .unwrap()
    }
}

fn build(c: &mut Criterion) {
    let s = setup();
    let mut rng = ChaCha20Rng::from_seed([6; 32]);
    let mut group = c.benchmark_group("build 3-hop regular packet");
    group.throughput(Throughput::Elements(1));
    group.bench_function(UMBRA, |b| b.iter(|| s.umbra_packet(&mut rng)));
    group.bench_function(NYM, |b| b.iter(|| s.nym_packet()));
    group.finish();
}

/// Both sides start from the bytes off the wire and end with the next packet (Umbra's in the
/// same buffer, sphinx-packet's in new ones).
fn hops(c: &mut Criterion) {
    let s = setup();
    let mut rng = ChaCha20Rng::from_seed([6; 32]);
    let first = s.umbra_packet(&mut rng).into_bytes();
    let Processed::Forward { packet, .. } = s.keys[0]
        .process(Packet::from_bytes(first.clone()).unwrap())
        .unwrap()
    else {
        panic!("first hop is a forward hop");
    };
    let Processed::Forward { packet: last, .. } = s.keys[1].process(packet).unwrap() else {
        panic!("second hop is a forward hop");
    };
    let last = last.into_bytes();

    let mut group = c.benchmark_group("forward hop");
    group.throughput(Throughput::Elements(1));
    group.bench_function(UMBRA, |b| {
        b.iter_batched(
            || first.clone(),
            |bytes| {
                s.keys[0]
                    .process(Packet::from_bytes(black_box(bytes)).unwrap())
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function(NYM, |b| {
        b.iter(|| {
            nym::SphinxPacket::from_bytes(black_box(&first))
                .unwrap()
                .process(&s.nym_keys[0])
                .unwrap()
        })
    });
    // what a loaded node does: distinct packets, checked and finished in batches
    let batch: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| s.umbra_packet(&mut rng).into_bytes())
        .collect();
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(UMBRA_BATCH, |b| {
        b.iter_batched(
            || {
                batch
                    .iter()
                    .map(|bytes| Packet::from_bytes(bytes.clone()).unwrap())
                    .collect::<Vec<_>>()
            },
            |packets| {
                let checked = s.keys[0].check_batch(black_box(packets));
                CheckedPacket::finish_batch(checked.into_iter().map(Result::unwrap).collect())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("final hop");
    group.throughput(Throughput::Elements(1));
    group.bench_function(UMBRA, |b| {
        b.iter_batched(
            || last.clone(),
            |bytes| {
                let Processed::Final { payload, .. } = s.keys[2]
                    .process(Packet::from_bytes(black_box(bytes)).unwrap())
                    .unwrap()
                else {
                    panic!("last hop is final");
                };
                payload.into_plaintext().unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function(NYM, |b| {
        b.iter(|| {
            let out = nym::SphinxPacket::from_bytes(black_box(&last))
                .unwrap()
                .process(&s.nym_keys[2])
                .unwrap();
            let nym::ProcessedPacketData::FinalHop { payload, .. } = out.data else {
                panic!("last hop is final");
            };
            payload.recover_plaintext().unwrap()
        })
    });
    group.finish();
}

fn surbs(c: &mut Criterion) {
    let s = setup();
    let mut rng = ChaCha20Rng::from_seed([8; 32]);
    let nym_material = || {
        nym::SURBMaterial::new(
            s.nym_route.clone(),
            s.nym_delays.clone(),
            s.nym_destination.clone(),
            nym::version::Version::new(260),
        )
    };

    let mut group = c.benchmark_group("make 3-hop SURB");
    group.throughput(Throughput::Elements(1));
    group.bench_function(UMBRA, |b| {
        b.iter(|| Surb::new(&mut rng, &s.route, &s.delays, &s.destination, Version::V260).unwrap())
    });
    group.bench_function(NYM, |b| {
        b.iter(|| nym_material().construct_recoverable_SURB().unwrap())
    });
    group.finish();

    let (surb, reply_key) =
        Surb::new(&mut rng, &s.route, &s.delays, &s.destination, Version::V260).unwrap();
    let surb_bytes = surb.to_bytes();
    let mut group = c.benchmark_group("use SURB (wrap a regular reply)");
    group.throughput(Throughput::Elements(1));
    group.bench_function(UMBRA, |b| {
        b.iter(|| {
            Surb::from_bytes(black_box(&surb_bytes))
                .unwrap()
                .wrap(PacketSize::Regular, &s.message)
                .unwrap()
        })
    });
    group.bench_function(NYM, |b| {
        b.iter(|| {
            nym::SURB::from_bytes(black_box(&surb_bytes))
                .unwrap()
                .use_surb(&s.message, PacketSize::Regular.payload_len())
                .unwrap()
        })
    });
    group.finish();

    // the reply as it reaches its creator, and the creator's unsealing of it
    let (_, mut packet) = surb.wrap(PacketSize::Regular, &s.message).unwrap();
    let payload = loop {
        match s
            .keys
            .iter()
            .find_map(|k| k.check(packet.clone()).ok())
            .unwrap()
            .finish()
            .unwrap()
        {
            Processed::Forward { packet: next, .. } => packet = next,
            Processed::Final { payload, .. } => break payload,
        }
    };
    let (nym_surb, recovery) = nym_material().construct_recoverable_SURB().unwrap();
    let (mut nym_packet, _) = nym_surb
        .use_surb(&s.message, PacketSize::Regular.payload_len())
        .unwrap();
    let nym_payload = {
        let mut hop = 0;
        loop {
            match nym_packet.process(&s.nym_keys[hop]).unwrap().data {
                nym::ProcessedPacketData::ForwardHop {
                    next_hop_packet, ..
                } => nym_packet = next_hop_packet,
                nym::ProcessedPacketData::FinalHop { payload, .. } => break payload.into_bytes(),
            }
            hop += 1;
        }
    };
    let mut group = c.benchmark_group("open SURB reply");
    group.throughput(Throughput::Elements(1));
    group.bench_function(UMBRA, |b| {
        b.iter_batched(
            || payload.clone(),
            |p| reply_key.open(p).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.bench_function(NYM, |b| {
        b.iter(|| {
            recovery
                .recover_plaintext(
                    nym::payload::Payload::from_bytes(black_box(&nym_payload)).unwrap(),
                )
                .unwrap()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = build, hops, surbs
}
criterion_main!(benches);
