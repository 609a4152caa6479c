//! Issuance: the client blinds one message per ticket for each validator, each validator
//! blind-signs, the client unblinds and assembles tickets.
//!
//! Every secret of a purchase is derived from a [`PurchaseSeed`] the client stores before it
//! pays, and the purchase's transaction id: a client that crashed after paying rebuilds exactly
//! the same blinded messages and resumes without paying twice.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use blind_rsa_signatures::BlindingResult;
use hkdf::Hkdf;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::err::IssueError;
use crate::input::{ChainTag, TICKET_VERSION, TicketInput};
use crate::keys::{IssuerPublicKey, IssuerSecretKey, SIGNATURE_LEN};
use crate::ticket::Ticket;

/// The most tickets one purchase may hold.
pub const MAX_TICKETS_PER_PURCHASE: u32 = 4096;

/// HKDF salt of every purchase derivation.
const DERIVATION_SALT: &[u8] = b"umbra-ticket-purchase-v1";

/// The secret from which a purchase's nonces and blinding factors are derived. Store it before
/// paying; unlinkability rests on it staying secret.
#[derive(Clone)]
pub struct PurchaseSeed(Zeroizing<[u8; 32]>);

impl PurchaseSeed {
    /// A fresh seed from the caller's RNG.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        PurchaseSeed(seed)
    }

    /// A stored seed.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PurchaseSeed(Zeroizing::new(bytes))
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for PurchaseSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PurchaseSeed(..)")
    }
}

/// The id of the ledger transaction that paid for a purchase. Issuers see it; it goes into the
/// derivation so that two purchases from one seed share nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TxId(pub [u8; 32]);

/// A blinded message, sent to one validator (what it signs, and all it learns of the ticket).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlindedMessage(pub Vec<u8>);

/// A validator's signature over a blinded message, sent back to the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlindSignature(pub Vec<u8>);

/// One validator's unblinded signature for one ticket of a purchase: what the client stores as
/// the validators answer, before it assembles the tickets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partial {
    /// The ticket's index in the purchase.
    pub index: u32,
    /// The signing validator.
    pub validator: u16,
    /// Its signature over the ticket's message (checked when it was unblinded).
    pub signature: Vec<u8>,
}

/// The client's side of one purchase: the ticket inputs, and for each validator the blinded
/// messages to send and the secrets that unblind the answers.
pub struct PurchaseRequest {
    inputs: Vec<TicketInput>,
    copies: BTreeMap<u16, IssuerCopy>,
}

struct IssuerCopy {
    key: IssuerPublicKey,
    blindings: Vec<BlindingResult>,
}

impl PurchaseRequest {
    /// Derives a purchase of `count` tickets of key period `period` on `chain`, paid by
    /// transaction `tx`, to be signed by each of `issuers` (validator index and its key for
    /// the period). Deterministic: the same arguments give the same blinded messages.
    ///
    /// Ticket `i`'s nonce is HKDF-SHA256(seed; "nonce" || tx || i), and the randomness blinding
    /// it for validator `v` (PSS salt and blinding factor) comes from a ChaCha20 stream keyed
    /// with HKDF-SHA256(seed; "blind" || tx || i || v || key id): independent for every ticket
    /// and every validator copy.
    pub fn new(
        seed: &PurchaseSeed,
        tx: TxId,
        chain: ChainTag,
        period: u64,
        count: u32,
        issuers: &[(u16, IssuerPublicKey)],
    ) -> Result<Self, IssueError> {
        if count == 0 || count > MAX_TICKETS_PER_PURCHASE {
            return Err(IssueError::TicketCount {
                count,
                max: MAX_TICKETS_PER_PURCHASE,
            });
        }
        if issuers.is_empty() {
            return Err(IssueError::NoIssuers);
        }
        let kdf = Hkdf::<Sha256>::new(Some(DERIVATION_SALT), seed.as_bytes());
        let inputs = (0..count)
            .map(|index| {
                let mut nonce = [0u8; 32];
                let info = [b"nonce".as_slice(), &tx.0, &index.to_be_bytes()].concat();
                kdf.expand(&info, &mut nonce)
                    .map_err(|_| IssueError::Derivation)?;
                Ok(TicketInput {
                    version: TICKET_VERSION,
                    chain,
                    period,
                    nonce,
                })
            })
            .collect::<Result<Vec<_>, IssueError>>()?;
        let mut copies = BTreeMap::new();
        for (validator, key) in issuers {
            let validator = *validator;
            let blindings = inputs
                .iter()
                .zip(0u32..)
                .map(|(input, index)| {
                    let mut stream = Zeroizing::new([0u8; 32]);
                    let info = [
                        b"blind".as_slice(),
                        &tx.0,
                        &index.to_be_bytes(),
                        &validator.to_be_bytes(),
                        &key.key_id().0,
                    ]
                    .concat();
                    kdf.expand(&info, stream.as_mut())
                        .map_err(|_| IssueError::Derivation)?;
                    let mut rng = ChaCha20Rng::from_seed(*stream);
                    key.inner()
                        .blind(&mut rng, input.message())
                        .map_err(|_| IssueError::Blinding { validator, index })
                })
                .collect::<Result<Vec<_>, IssueError>>()?;
            let copy = IssuerCopy {
                key: key.clone(),
                blindings,
            };
            if copies.insert(validator, copy).is_some() {
                return Err(IssueError::DuplicateIssuer { validator });
            }
        }
        Ok(PurchaseRequest { inputs, copies })
    }

    /// How many tickets the purchase holds.
    pub fn count(&self) -> u32 {
        // at most MAX_TICKETS_PER_PURCHASE
        self.inputs.len() as u32
    }

    /// The tickets' inputs (secret: they are the tickets' nonces), in index order.
    pub fn inputs(&self) -> &[TicketInput] {
        &self.inputs
    }

    /// The validators asked to sign, in order.
    pub fn validators(&self) -> impl Iterator<Item = u16> + '_ {
        self.copies.keys().copied()
    }

    /// The blinded messages to send to `validator`, in ticket order.
    pub fn blinded(&self, validator: u16) -> Result<Vec<BlindedMessage>, IssueError> {
        let copy = self.copy(validator)?;
        Ok(copy
            .blindings
            .iter()
            .map(|b| BlindedMessage(b.blind_message.0.clone()))
            .collect())
    }

    /// Unblinds `validator`'s answer (one blind signature per blinded message, in order) and
    /// checks every signature under its key. Store the partials; [`assemble`](Self::assemble)
    /// makes the tickets.
    pub fn finish(
        &self,
        validator: u16,
        signatures: &[BlindSignature],
    ) -> Result<Vec<Partial>, IssueError> {
        let copy = self.copy(validator)?;
        if signatures.len() != copy.blindings.len() {
            return Err(IssueError::SignatureCount {
                validator,
                expected: copy.blindings.len(),
                got: signatures.len(),
            });
        }
        self.inputs
            .iter()
            .zip(&copy.blindings)
            .zip(signatures)
            .zip(0u32..)
            .map(|(((input, blinding), blind), index)| {
                let blind = blind_rsa_signatures::BlindSignature(blind.0.clone());
                let signature = copy
                    .key
                    .inner()
                    .finalize(&blind, blinding, input.message())
                    .map_err(|_| IssueError::BadBlindSignature { validator, index })?;
                Ok(Partial {
                    index,
                    validator,
                    signature: signature.0,
                })
            })
            .collect()
    }

    /// The purchase's tickets, in index order, each with the signatures among `partials` for
    /// it (one per validator, sorted by validator). Partials of another index or a validator
    /// not of this purchase are ignored. Whether a ticket has enough signers is
    /// [`verify`](crate::verify)'s question.
    pub fn assemble(&self, partials: impl IntoIterator<Item = Partial>) -> Vec<Ticket> {
        let mut by_index: Vec<BTreeMap<u16, Vec<u8>>> = vec![BTreeMap::new(); self.inputs.len()];
        for p in partials {
            if !self.copies.contains_key(&p.validator) {
                continue;
            }
            if let Some(slot) = usize::try_from(p.index)
                .ok()
                .and_then(|i| by_index.get_mut(i))
            {
                slot.insert(p.validator, p.signature);
            }
        }
        self.inputs
            .iter()
            .zip(by_index)
            .map(|(input, signatures)| Ticket {
                input: *input,
                signatures: signatures.into_iter().collect(),
            })
            .collect()
    }

    fn copy(&self, validator: u16) -> Result<&IssuerCopy, IssueError> {
        self.copies
            .get(&validator)
            .ok_or(IssueError::NotAnIssuer { validator })
    }
}

impl fmt::Debug for PurchaseRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PurchaseRequest")
            .field("count", &self.inputs.len())
            .field("validators", &self.copies.keys().collect::<BTreeSet<_>>())
            .finish_non_exhaustive()
    }
}

/// The issuer's side: blind-signs one blinded message (a validator does this for each message
/// of a paid purchase, after checking the payment covers them). `rng` randomises the RSA
/// computation against timing side channels; the signature does not depend on it.
pub fn sign_blinded<R: CryptoRng + ?Sized>(
    key: &IssuerSecretKey,
    rng: &mut R,
    blinded: &BlindedMessage,
) -> Result<BlindSignature, IssueError> {
    if blinded.0.len() != SIGNATURE_LEN {
        return Err(IssueError::NotBlindedMessage {
            len: blinded.0.len(),
        });
    }
    key.inner()
        .blind_sign_with_rng(rng, &blinded.0)
        .map(|s| BlindSignature(s.0))
        .map_err(|_| IssueError::NotBlindedMessage {
            len: blinded.0.len(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::{PERIOD, answer, chain, issue, issuer_set, keys, request};
    use crate::{HEADER_LEN, verify};

    const SEED: [u8; 32] = [11; 32];
    const TX: [u8; 32] = [22; 32];

    /// Whether `a` and `b` share any `window`-byte run.
    fn share_window(a: &[u8], b: &[u8], window: usize) -> bool {
        let runs: BTreeSet<&[u8]> = a.windows(window).collect();
        b.windows(window).any(|w| runs.contains(w))
    }

    #[test]
    fn issued_tickets_verify() {
        let r = request(SEED, TX, 3);
        let tickets = issue(&r);
        assert_eq!(tickets.len(), 3);
        let set = issuer_set();
        for t in &tickets {
            assert_eq!(t.signatures.len(), 4);
            assert_eq!(verify(t, chain(), &set), Ok(t.serial()));
            let parsed = Ticket::from_bytes(&t.to_bytes()).unwrap();
            assert_eq!(verify(&parsed, chain(), &set), Ok(t.serial()));
        }
        let serials: BTreeSet<_> = tickets.iter().map(Ticket::serial).collect();
        assert_eq!(serials.len(), 3);
    }

    #[test]
    fn three_of_four_validators_answering_is_enough() {
        let r = request(SEED, TX, 2);
        let partials: Vec<_> = [0u16, 1, 3]
            .into_iter()
            .flat_map(|v| r.finish(v, &answer(&r, v)).unwrap())
            .collect();
        for t in r.assemble(partials) {
            assert_eq!(t.signatures.len(), 3);
            assert!(verify(&t, chain(), &issuer_set()).is_ok());
        }
    }

    #[test]
    fn resume_rebuilds_the_same_purchase() {
        let first = request(SEED, TX, 4);
        let again = request(SEED, TX, 4);
        for v in 0..4 {
            assert_eq!(first.blinded(v).unwrap(), again.blinded(v).unwrap());
        }
        assert_eq!(first.inputs(), again.inputs());
        // the validators answer the rebuilt request; its tickets verify
        let tickets = issue(&again);
        assert_eq!(tickets, issue(&first));
        for t in &tickets {
            assert!(verify(t, chain(), &issuer_set()).is_ok());
        }
    }

    #[test]
    fn different_seeds_or_transactions_give_unrelated_purchases() {
        let a = request(SEED, TX, 2);
        let b = request([12; 32], TX, 2);
        let c = request(SEED, [23; 32], 2);
        for v in 0..4 {
            let (a, b, c) = (
                a.blinded(v).unwrap(),
                b.blinded(v).unwrap(),
                c.blinded(v).unwrap(),
            );
            for i in 0..2 {
                assert_ne!(a[i], b[i]);
                assert_ne!(a[i], c[i]);
                assert!(!share_window(&a[i].0, &b[i].0, 16));
            }
        }
        assert_ne!(a.inputs()[0].nonce, b.inputs()[0].nonce);
        assert_ne!(a.inputs()[0].nonce, c.inputs()[0].nonce);
    }

    #[test]
    fn each_ticket_and_each_validator_copy_is_blinded_independently() {
        let r = request(SEED, TX, 2);
        let mut all = Vec::new();
        for v in 0..4 {
            all.extend(r.blinded(v).unwrap());
        }
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert!(!share_window(&x.0, &y.0, 16));
            }
        }
    }

    #[test]
    fn issuers_view_and_gateways_view_share_nothing() {
        let r = request(SEED, TX, 3);
        // everything the issuers see: the transaction id, the blinded messages, their answers
        let mut issuers = TX.to_vec();
        for v in 0..4 {
            for b in r.blinded(v).unwrap() {
                issuers.extend(b.0);
            }
            for s in answer(&r, v) {
                issuers.extend(s.0);
            }
        }
        // everything gateways see: the tickets' bytes and serials
        let tickets = issue(&r);
        for t in &tickets {
            let mut gateway = t.to_bytes();
            gateway.extend(t.serial().0);
            // the chain and period are public context, known to both sides
            let secret = [&t.input.nonce[..], &t.serial().0[..]].concat();
            assert!(!share_window(&issuers, &secret, 16));
            for (_, s) in &t.signatures {
                assert!(!share_window(&issuers, s, 16));
            }
            assert!(!share_window(&issuers, &gateway[HEADER_LEN..], 16));
        }
        // two tickets of one purchase share nothing but the chain and the period
        let strip = |t: &Ticket| {
            let mut b = t.input.nonce.to_vec();
            b.extend(t.serial().0);
            for (_, s) in &t.signatures {
                b.extend(s);
            }
            b
        };
        for (i, a) in tickets.iter().enumerate() {
            for b in &tickets[i + 1..] {
                assert_eq!(a.input.chain, b.input.chain);
                assert_eq!(a.input.period, b.input.period);
                assert!(!share_window(&strip(a), &strip(b), 16));
            }
        }
    }

    #[test]
    fn bad_answers_are_refused() {
        let r = request(SEED, TX, 2);
        let mut sigs = answer(&r, 1);
        assert_eq!(
            r.finish(1, &sigs[..1]),
            Err(IssueError::SignatureCount {
                validator: 1,
                expected: 2,
                got: 1
            })
        );
        sigs[1].0[5] ^= 1;
        assert_eq!(
            r.finish(1, &sigs),
            Err(IssueError::BadBlindSignature {
                validator: 1,
                index: 1
            })
        );
        // validator 2 answering with validator 1's signatures
        assert!(r.finish(2, &answer(&r, 1)).is_err());
        assert_eq!(
            r.finish(9, &[]),
            Err(IssueError::NotAnIssuer { validator: 9 })
        );
        let mut rng = ChaCha20Rng::from_seed([0; 32]);
        assert_eq!(
            sign_blinded(&keys()[0], &mut rng, &BlindedMessage(vec![1; 10])),
            Err(IssueError::NotBlindedMessage { len: 10 })
        );
        assert!(sign_blinded(&keys()[0], &mut rng, &BlindedMessage(vec![0xff; 256])).is_err());
    }

    #[test]
    fn purchase_arguments_are_checked() {
        let seed = PurchaseSeed::from_bytes(SEED);
        let key = keys()[0].public_key().clone();
        let new = |count, issuers: &[(u16, IssuerPublicKey)]| {
            PurchaseRequest::new(&seed, TxId(TX), chain(), PERIOD, count, issuers).map(|_| ())
        };
        assert_eq!(
            new(0, &[(0, key.clone())]),
            Err(IssueError::TicketCount {
                count: 0,
                max: MAX_TICKETS_PER_PURCHASE
            })
        );
        assert_eq!(
            new(MAX_TICKETS_PER_PURCHASE + 1, &[(0, key.clone())]),
            Err(IssueError::TicketCount {
                count: MAX_TICKETS_PER_PURCHASE + 1,
                max: MAX_TICKETS_PER_PURCHASE
            })
        );
        assert_eq!(new(1, &[]), Err(IssueError::NoIssuers));
        assert_eq!(
            new(1, &[(0, key.clone()), (0, key)]),
            Err(IssueError::DuplicateIssuer { validator: 0 })
        );
        assert_eq!(format!("{seed:?}"), "PurchaseSeed(..)");
    }

    #[test]
    fn assemble_ignores_strangers() {
        let r = request(SEED, TX, 1);
        let stray = [
            Partial {
                index: 5,
                validator: 0,
                signature: vec![1],
            },
            Partial {
                index: 0,
                validator: 9,
                signature: vec![1],
            },
        ];
        let tickets = r.assemble(stray);
        assert_eq!(tickets.len(), 1);
        assert!(tickets[0].signatures.is_empty());
    }
}
