//! The cost of one ticket with 4 validators, step by step: the client blinds (×4), a
//! validator blind-signs (one of the 4), the client unblinds (×4), a gateway verifies (the
//! threshold check: 3 or 4 RSA verifications), and the encoding both ways.

#![allow(clippy::unwrap_used)] // a benchmark: failing loudly is the point

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use umbra_tickets::{
    ChainTag, IssuerPublicKey, IssuerSecretKey, IssuerSet, PurchaseRequest, PurchaseSeed, Ticket,
    TxId, sign_blinded, verify,
};

const VALIDATORS: u16 = 4;

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let keys: Vec<IssuerSecretKey> = (0..VALIDATORS)
        .map(|_| IssuerSecretKey::generate(&mut rng).unwrap())
        .collect();
    let announced: Vec<(u16, IssuerPublicKey)> = (0u16..)
        .zip(keys.iter().map(|k| k.public_key().clone()))
        .collect();
    let chain = ChainTag::of("umbra-bench");
    let seed = PurchaseSeed::from_bytes([2; 32]);
    let new_request = || PurchaseRequest::new(&seed, TxId([3; 32]), chain, 1, 1, &announced);
    let request = new_request().unwrap();
    let answers: Vec<_> = (0..VALIDATORS)
        .map(|v| {
            let blinded = request.blinded(v).unwrap();
            vec![sign_blinded(&keys[usize::from(v)], &mut rng, &blinded[0]).unwrap()]
        })
        .collect();
    let finish_all = || {
        (0..VALIDATORS)
            .flat_map(|v| request.finish(v, &answers[usize::from(v)]).unwrap())
            .collect::<Vec<_>>()
    };
    let ticket = request.assemble(finish_all()).remove(0);
    let mut three = ticket.clone();
    three.signatures.truncate(3);
    let mut issuers = IssuerSet::new();
    issuers
        .insert_period(1, announced.iter().map(|(v, k)| (*v, k.clone(), 1)))
        .unwrap();
    let bytes = ticket.to_bytes();
    println!(
        "ticket size: {} bytes with 4 signatures, {} bytes with 3",
        bytes.len(),
        three.to_bytes().len()
    );

    let mut g = c.benchmark_group("ticket_4_validators");
    g.bench_function("client_blind_x4", |b| {
        b.iter(|| black_box(new_request().unwrap()))
    });
    let blinded = request.blinded(0).unwrap();
    g.bench_function("issuer_blind_sign_x1", |b| {
        b.iter(|| black_box(sign_blinded(&keys[0], &mut rng, &blinded[0]).unwrap()))
    });
    g.bench_function("client_unblind_x4", |b| b.iter(|| black_box(finish_all())));
    g.bench_function("gateway_verify_4_sigs", |b| {
        b.iter(|| black_box(verify(&ticket, chain, &issuers).unwrap()))
    });
    g.bench_function("gateway_verify_3_sigs", |b| {
        b.iter(|| black_box(verify(&three, chain, &issuers).unwrap()))
    });
    g.bench_function("encode", |b| b.iter(|| black_box(ticket.to_bytes())));
    g.bench_function("parse", |b| {
        b.iter(|| black_box(Ticket::from_bytes(black_box(&bytes)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
