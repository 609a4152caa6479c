//! Issuer keys for the tests, made once per test binary (RSA key generation is slow).

use std::sync::OnceLock;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::IssuerSecretKey;

/// Five keys: validators 0..4 of the tests, and one outsider.
pub(crate) fn keys() -> &'static [IssuerSecretKey; 5] {
    static KEYS: OnceLock<[IssuerSecretKey; 5]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = ChaCha20Rng::from_seed([42; 32]);
        std::array::from_fn(|_| IssuerSecretKey::generate(&mut rng).unwrap())
    })
}

use crate::{
    BlindSignature, ChainTag, IssuerSet, Partial, PurchaseRequest, PurchaseSeed, Ticket, TxId,
    sign_blinded,
};

/// The tests' chain.
pub(crate) fn chain() -> ChainTag {
    ChainTag::of("umbra-test")
}

/// The tests' key period.
pub(crate) const PERIOD: u64 = 7;

/// Validators 0..4 with keys 0..4, power 1 each, for `PERIOD`.
pub(crate) fn issuer_set() -> IssuerSet {
    let mut set = IssuerSet::new();
    set.insert_period(
        PERIOD,
        (0..4u16).map(|v| (v, keys()[usize::from(v)].public_key().clone(), 1)),
    )
    .unwrap();
    set
}

/// A purchase of `count` tickets from validators 0..4.
pub(crate) fn request(seed: [u8; 32], tx: [u8; 32], count: u32) -> PurchaseRequest {
    let issuers: Vec<_> = (0..4u16)
        .map(|v| (v, keys()[usize::from(v)].public_key().clone()))
        .collect();
    PurchaseRequest::new(
        &PurchaseSeed::from_bytes(seed),
        TxId(tx),
        chain(),
        PERIOD,
        count,
        &issuers,
    )
    .unwrap()
}

/// What `validator` answers to `request`.
pub(crate) fn answer(request: &PurchaseRequest, validator: u16) -> Vec<BlindSignature> {
    let mut rng = ChaCha20Rng::from_seed([u8::try_from(validator).unwrap(); 32]);
    request
        .blinded(validator)
        .unwrap()
        .iter()
        .map(|b| sign_blinded(&keys()[usize::from(validator)], &mut rng, b).unwrap())
        .collect()
}

/// The purchase's tickets, signed by all four validators.
pub(crate) fn issue(request: &PurchaseRequest) -> Vec<Ticket> {
    let partials: Vec<Partial> = (0..4u16)
        .flat_map(|v| request.finish(v, &answer(request, v)).unwrap())
        .collect();
    request.assemble(partials)
}
