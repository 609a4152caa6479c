//! Real bandwidth tickets for the tests: issuer keys made once per test binary (RSA-2048 key
//! generation is slow) and tickets issued as validators and a client would.

use std::sync::OnceLock;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use umbra_ledger::{Action, Hash};
use umbra_tickets::{
    ChainTag, IssuerSecretKey, Partial, PurchaseRequest, PurchaseSeed, Ticket, TxId, sign_blinded,
};

use super::CHAIN;

/// Four issuer keys: key `i` is validator `i`'s in the tests (the last is also an outsider's).
pub fn issuer_keys() -> &'static [IssuerSecretKey] {
    static KEYS: OnceLock<Vec<IssuerSecretKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = ChaCha20Rng::from_seed([42; 32]);
        (0..4)
            .map(|_| IssuerSecretKey::generate(&mut rng).unwrap())
            .collect()
    })
}

/// The announcement of issuer key `key` for `period`.
pub fn announce(period: u64, key: usize) -> Action {
    Action::AnnounceIssuer {
        period,
        key: issuer_keys()[key].public_key().as_bytes().to_vec(),
    }
}

/// `count` tickets of `period` on `chain`, for the purchase paid by `tx`, each signed by every
/// `(validator index, key)` of `signers`; `seed` makes the client's secrets.
pub fn issue_on(
    chain: ChainTag,
    tx: Hash,
    period: u64,
    count: u32,
    signers: &[(u16, &IssuerSecretKey)],
    seed: u8,
) -> Vec<Ticket> {
    let announced: Vec<_> = signers
        .iter()
        .map(|(validator, key)| (*validator, key.public_key().clone()))
        .collect();
    let request = PurchaseRequest::new(
        &PurchaseSeed::from_bytes([seed; 32]),
        TxId(tx.0),
        chain,
        period,
        count,
        &announced,
    )
    .unwrap();
    let mut rng = ChaCha20Rng::from_seed([seed.wrapping_add(1); 32]);
    let mut partials: Vec<Partial> = Vec::new();
    for (validator, key) in signers {
        let answer: Vec<_> = request
            .blinded(*validator)
            .unwrap()
            .iter()
            .map(|blinded| sign_blinded(key, &mut rng, blinded).unwrap())
            .collect();
        partials.extend(request.finish(*validator, &answer).unwrap());
    }
    request.assemble(partials)
}

/// `count` tickets on the tests' chain signed by validators `validators` with their keys
/// (validator `v` holds issuer key `v`), as bytes.
pub fn issue(tx: Hash, period: u64, count: u32, validators: &[u16], seed: u8) -> Vec<Vec<u8>> {
    let signers: Vec<(u16, &IssuerSecretKey)> = validators
        .iter()
        .map(|&v| (v, &issuer_keys()[usize::from(v)]))
        .collect();
    issue_on(ChainTag::of(CHAIN), tx, period, count, &signers, seed)
        .iter()
        .map(Ticket::to_bytes)
        .collect()
}
