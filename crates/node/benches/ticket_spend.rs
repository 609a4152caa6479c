//! A gateway's cost per ticket spent, end to end but for the network: the client's stretches
//! through the core (reassembled, verified with 4 validators' keys as the ledger will, the
//! record asked for, the credit given once recorded), and the durable record itself
//! (`tickets.redb`, one fsynced write per ticket). Prints the bytes a ticket takes on the
//! client's link.

#![allow(clippy::unwrap_used)] // a benchmark: failing loudly is the point

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use umbra_gateway::{AcceptedTicket, Action, ClientId, GatewayConfig, GatewayCore, TicketRules};
use umbra_node::gateway::TicketStore;
use umbra_sphinx::NodeAddress;
use umbra_tickets::{
    ChainTag, IssuerPublicKey, IssuerSecretKey, IssuerSet, PurchaseRequest, PurchaseSeed, Ticket,
    TxId, sign_blinded, verify,
};
use umbra_wire::gateway::{
    ClientFrame, FRAME_LEN, Hello, MAX_SPEND_CHUNK, Schedule, SpendChunk, VERSION,
};

const VALIDATORS: u16 = 4;

fn ticket() -> (Vec<u8>, IssuerSet, ChainTag) {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let keys: Vec<IssuerSecretKey> = (0..VALIDATORS)
        .map(|_| IssuerSecretKey::generate(&mut rng).unwrap())
        .collect();
    let announced: Vec<(u16, IssuerPublicKey)> = (0u16..)
        .zip(keys.iter().map(|k| k.public_key().clone()))
        .collect();
    let chain = ChainTag::of("umbra-bench");
    let request = PurchaseRequest::new(
        &PurchaseSeed::from_bytes([2; 32]),
        TxId([3; 32]),
        chain,
        1,
        1,
        &announced,
    )
    .unwrap();
    let partials = (0..VALIDATORS).flat_map(|v| {
        let blinded = request.blinded(v).unwrap();
        let signed = vec![sign_blinded(&keys[usize::from(v)], &mut rng, &blinded[0]).unwrap()];
        request.finish(v, &signed).unwrap()
    });
    let ticket = request.assemble(partials.collect::<Vec<_>>()).remove(0);
    let mut issuers = IssuerSet::new();
    issuers
        .insert_period(1, announced.iter().map(|(v, k)| (*v, k.clone(), 1)))
        .unwrap();
    (ticket.to_bytes(), issuers, chain)
}

fn bench(c: &mut Criterion) {
    let (bytes, issuers, chain) = ticket();
    let chunks = SpendChunk::split(&bytes);
    println!(
        "a ticket of {} validators: {} bytes, in {} frame(s) of {FRAME_LEN} bytes (+16 of Noise tag) in place of cover packets; {MAX_SPEND_CHUNK} ticket bytes fit a frame",
        VALIDATORS,
        bytes.len(),
        chunks.len()
    );

    let mut g = c.benchmark_group("gateway_spend");
    // the core: stretches in, checked, recorded (as the shell answers), credited
    let now = Instant::now();
    let mut core = GatewayCore::new(
        GatewayConfig::default(),
        now,
        [NodeAddress::new([1; 32])],
        [],
        1,
        [7; 32],
    );
    core.set_ticket_rules(Some(TicketRules {
        ticket_bytes: 200 << 20,
        verify: Box::new(move |bytes: &[u8]| {
            let ticket = Ticket::from_bytes(bytes).map_err(|e| e.to_string())?;
            let serial = verify(&ticket, chain, &issuers).map_err(|e| e.to_string())?;
            Ok(AcceptedTicket {
                serial: serial.0,
                period: ticket.input.period,
            })
        }),
    }));
    let client = ClientId([9; 32]);
    let session = core.client_connected(
        now,
        client,
        Hello {
            version: VERSION,
            schedule: Schedule::InsecurePush,
        },
    );
    while core.poll_transmit(now).is_some() {}
    let mut at = now;
    g.bench_function("core_reassemble_verify_credit_4_sigs", |b| {
        b.iter(|| {
            // a minute apart: the per-session limit on checks does not come into it
            at += Duration::from_secs(60);
            for chunk in &chunks {
                let frame = ClientFrame {
                    spend: Some(chunk.clone()),
                    ..ClientFrame::default()
                };
                core.handle_client(at, client, session, frame);
            }
            let mut serial = None;
            while let Some(action) = core.poll_transmit(at) {
                if let Action::SpendTicket { serial: s, .. } = action {
                    serial = Some(s);
                }
            }
            core.ticket_recorded(client, session, serial.unwrap(), true);
            while let Some(action) = core.poll_transmit(at) {
                black_box(action);
            }
        })
    });

    // the durable record: one fsynced redb write per ticket, each a new serial
    let dir = std::env::temp_dir().join(format!("umbra-bench-spend-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = TicketStore::open(&dir.join("tickets.redb")).unwrap();
    let mut n: u64 = 0;
    g.sample_size(30);
    g.bench_function("record_durable_fsync", |b| {
        b.iter_batched(
            || {
                n += 1;
                let mut serial = [0u8; 32];
                serial[..8].copy_from_slice(&n.to_be_bytes());
                serial
            },
            |serial| black_box(store.spend(serial, 1, &bytes, [9; 32], 1 << 20).unwrap()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
