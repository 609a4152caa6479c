//! A ticket: its input and one signature per signing validator; its wire encoding; the
//! issuer set a gateway checks it against.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::err::{DecodeError, IssuerSetError, TicketError};
use crate::input::{ChainTag, Serial, TICKET_VERSION, TicketInput};
use crate::keys::IssuerPublicKey;

/// The most signatures a ticket carries.
pub const MAX_SIGNATURES: usize = 64;

/// The longest signature the encoding admits (room for 4096-bit keys; today's are 256 bytes).
pub const MAX_SIGNATURE_LEN: usize = 512;

/// The fixed part of the encoding: version, chain, period, nonce, signature count.
pub const HEADER_LEN: usize = 1 + 32 + 8 + 32 + 1;

/// One signature's framing: validator index and length, both big-endian u16.
const SIGNATURE_HEADER_LEN: usize = 2 + 2;

/// The longest encoded ticket.
pub const MAX_TICKET_LEN: usize =
    HEADER_LEN + MAX_SIGNATURES * (SIGNATURE_HEADER_LEN + MAX_SIGNATURE_LEN);

/// A bandwidth ticket: the token input, and the signature of each signing validator (by its
/// index in the period's validator set) over the input's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// What was signed.
    pub input: TicketInput,
    /// `(validator index, signature)`, one per signer, in the order the client put them.
    pub signatures: Vec<(u16, Vec<u8>)>,
}

impl Ticket {
    /// The ticket's serial (SHA-256 of its message); the same whoever signed it.
    pub fn serial(&self) -> Serial {
        self.input.serial()
    }

    /// The length of [`to_bytes`](Self::to_bytes).
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + self
                .signatures
                .iter()
                .map(|(_, s)| SIGNATURE_HEADER_LEN + s.len())
                .sum::<usize>()
    }

    /// The wire encoding:
    ///
    /// ```text
    /// u8 version (1) | chain [32] | period u64 BE | nonce [32] | u8 n (1..=64)
    /// n × ( u16 BE validator | u16 BE len (1..=512) | signature [len] )
    /// ```
    ///
    /// A ticket built by this crate always encodes to something [`from_bytes`](Self::from_bytes)
    /// reads back; one built by hand with more than [`MAX_SIGNATURES`] signatures or a
    /// signature outside `1..=MAX_SIGNATURE_LEN` bytes does not.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(self.input.version);
        out.extend_from_slice(&self.input.chain.0);
        out.extend_from_slice(&self.input.period.to_be_bytes());
        out.extend_from_slice(&self.input.nonce);
        out.push(self.signatures.len().min(usize::from(u8::MAX)) as u8);
        for (validator, signature) in &self.signatures {
            out.extend_from_slice(&validator.to_be_bytes());
            out.extend_from_slice(
                &(signature.len().min(usize::from(u16::MAX)) as u16).to_be_bytes(),
            );
            out.extend_from_slice(signature);
        }
        out
    }

    /// Reads a ticket from exactly `bytes`. Never panics; checks the framing only (the
    /// signatures are checked by [`verify`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Ticket, TicketError> {
        if bytes.len() > MAX_TICKET_LEN {
            return Err(DecodeError::TooLong {
                len: bytes.len(),
                max: MAX_TICKET_LEN,
            }
            .into());
        }
        let mut r = Reader { bytes, at: 0 };
        let [version] = r.take::<1>()?;
        if version != TICKET_VERSION {
            return Err(TicketError::UnsupportedVersion(version));
        }
        let chain = ChainTag(r.take::<32>()?);
        let period = u64::from_be_bytes(r.take::<8>()?);
        let nonce = r.take::<32>()?;
        let [count] = r.take::<1>()?;
        let count = usize::from(count);
        if count == 0 {
            return Err(DecodeError::NoSignatures.into());
        }
        if count > MAX_SIGNATURES {
            return Err(DecodeError::TooManySignatures {
                count,
                max: MAX_SIGNATURES,
            }
            .into());
        }
        let mut signatures = Vec::with_capacity(count);
        for _ in 0..count {
            let validator = u16::from_be_bytes(r.take::<2>()?);
            let len = usize::from(u16::from_be_bytes(r.take::<2>()?));
            if len == 0 || len > MAX_SIGNATURE_LEN {
                return Err(DecodeError::SignatureLength {
                    validator,
                    len,
                    max: MAX_SIGNATURE_LEN,
                }
                .into());
            }
            signatures.push((validator, r.slice(len)?.to_vec()));
        }
        let extra = bytes.len() - r.at;
        if extra != 0 {
            return Err(DecodeError::TrailingBytes { extra }.into());
        }
        Ok(Ticket {
            input: TicketInput {
                version,
                chain,
                period,
                nonce,
            },
            signatures,
        })
    }
}

impl Serialize for Ticket {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.to_bytes())
    }
}

impl<'de> Deserialize<'de> for Ticket {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::bytes_serde::deserialize(d, "a ticket's bytes", Ticket::from_bytes)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn slice(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let needed = self.at + len;
        let out = self
            .bytes
            .get(self.at..needed)
            .ok_or(DecodeError::Truncated {
                needed,
                len: self.bytes.len(),
            })?;
        self.at = needed;
        Ok(out)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.slice(N)?);
        Ok(out)
    }
}

/// A validator that issues tickets in a period: its key and voting power.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuer {
    /// Its public ticket key for the period.
    pub key: IssuerPublicKey,
    /// Its voting power in the period.
    pub power: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PeriodIssuers {
    issuers: BTreeMap<u16, Issuer>,
    total: u64,
}

/// The key periods a verifier accepts tickets of, and each period's issuers. The caller
/// decides which periods are live (say the current one and the one before, the overlap of a
/// key rotation) by inserting and removing them: a ticket of any other period is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IssuerSet {
    periods: BTreeMap<u64, PeriodIssuers>,
}

impl IssuerSet {
    /// An empty set, which accepts no ticket.
    pub fn new() -> Self {
        IssuerSet::default()
    }

    /// Accepts tickets of `period`, signed by these `(validator index, key, voting power)`;
    /// replaces what the set held for the period.
    pub fn insert_period(
        &mut self,
        period: u64,
        issuers: impl IntoIterator<Item = (u16, IssuerPublicKey, u64)>,
    ) -> Result<(), IssuerSetError> {
        let mut set = PeriodIssuers::default();
        for (validator, key, power) in issuers {
            set.total = set
                .total
                .checked_add(power)
                .ok_or(IssuerSetError::PowerOverflow { period })?;
            if set
                .issuers
                .insert(validator, Issuer { key, power })
                .is_some()
            {
                return Err(IssuerSetError::DuplicateValidator { period, validator });
            }
        }
        if set.total == 0 {
            return Err(IssuerSetError::NoPower { period });
        }
        self.periods.insert(period, set);
        Ok(())
    }

    /// Stops accepting tickets of `period` (its keys expired).
    pub fn remove_period(&mut self, period: u64) {
        self.periods.remove(&period);
    }

    /// Keeps only the periods for which `live` says so.
    pub fn retain_periods(&mut self, mut live: impl FnMut(u64) -> bool) {
        self.periods.retain(|p, _| live(*p));
    }

    /// The accepted periods, in order.
    pub fn periods(&self) -> impl Iterator<Item = u64> + '_ {
        self.periods.keys().copied()
    }

    /// A validator's key and power in a period.
    pub fn issuer(&self, period: u64, validator: u16) -> Option<&Issuer> {
        self.periods.get(&period)?.issuers.get(&validator)
    }

    /// A period's total voting power.
    pub fn total_power(&self, period: u64) -> Option<u64> {
        self.periods.get(&period).map(|p| p.total)
    }
}

/// Checks a ticket with public keys only, as a gateway does before crediting a session, and
/// returns its serial (which the caller then checks against, and adds to, its spent set).
///
/// The ticket must be of version 1, for `chain`, of a period `issuers` accepts, with each
/// signer listed once, every signer a validator of the period, every signature valid, and the
/// signers holding strictly more than 2/3 of the period's voting power. The cheap checks come
/// first: no RSA verification is done for a ticket whose signers could not reach the
/// threshold.
pub fn verify(
    ticket: &Ticket,
    chain: ChainTag,
    issuers: &IssuerSet,
) -> Result<Serial, TicketError> {
    let input = &ticket.input;
    if input.version != TICKET_VERSION {
        return Err(TicketError::UnsupportedVersion(input.version));
    }
    if input.chain != chain {
        return Err(TicketError::WrongChain {
            expected: chain,
            found: input.chain,
        });
    }
    let period =
        issuers
            .periods
            .get(&input.period)
            .ok_or_else(|| TicketError::PeriodNotAccepted {
                period: input.period,
                accepted: issuers.periods().collect(),
            })?;
    if ticket.signatures.len() > MAX_SIGNATURES {
        return Err(DecodeError::TooManySignatures {
            count: ticket.signatures.len(),
            max: MAX_SIGNATURES,
        }
        .into());
    }
    let mut seen = BTreeSet::new();
    let mut signers = Vec::with_capacity(ticket.signatures.len());
    let mut signed: u64 = 0;
    for (validator, signature) in &ticket.signatures {
        if !seen.insert(*validator) {
            return Err(TicketError::DuplicateSigner {
                validator: *validator,
            });
        }
        let issuer = period
            .issuers
            .get(validator)
            .ok_or(TicketError::UnknownSigner {
                validator: *validator,
                period: input.period,
            })?;
        // distinct validators of one period: their sum is at most the period's total
        signed = signed.saturating_add(issuer.power);
        signers.push((*validator, issuer, signature));
    }
    if u128::from(signed) * 3 <= u128::from(period.total) * 2 {
        return Err(TicketError::TooFewSigners {
            signers: signers.len(),
            signed,
            total: period.total,
        });
    }
    let message = input.message();
    for (validator, issuer, signature) in signers {
        if !issuer.key.verifies(signature, &message) {
            return Err(TicketError::BadSignature { validator });
        }
    }
    Ok(input.serial())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::test_keys::{PERIOD, chain, issue, issuer_set, keys, request};

    fn ticket() -> Ticket {
        issue(&request([1; 32], [2; 32], 1)).remove(0)
    }

    fn without(mut ticket: Ticket, validators: &[u16]) -> Ticket {
        ticket.signatures.retain(|(v, _)| !validators.contains(v));
        ticket
    }

    #[test]
    fn four_signatures_verify_three_verify_two_do_not() {
        let set = issuer_set();
        let t = ticket();
        assert_eq!(t.signatures.len(), 4);
        assert_eq!(verify(&t, chain(), &set), Ok(t.serial()));
        let three = without(t.clone(), &[2]);
        assert_eq!(verify(&three, chain(), &set), Ok(t.serial()));
        let two = without(t, &[0, 3]);
        assert_eq!(
            verify(&two, chain(), &set),
            Err(TicketError::TooFewSigners {
                signers: 2,
                signed: 2,
                total: 4
            })
        );
    }

    #[test]
    fn threshold_is_strictly_more_than_two_thirds_of_power() {
        // powers 2,1,1,2 (total 6): 4 of 6 is exactly 2/3, refused; 5 of 6 passes
        let mut set = IssuerSet::new();
        let powers = [2, 1, 1, 2];
        set.insert_period(
            PERIOD,
            (0..4u16).map(|v| {
                (
                    v,
                    keys()[usize::from(v)].public_key().clone(),
                    powers[usize::from(v)],
                )
            }),
        )
        .unwrap();
        let t = ticket();
        assert_eq!(
            verify(&without(t.clone(), &[1, 2]), chain(), &set),
            Err(TicketError::TooFewSigners {
                signers: 2,
                signed: 4,
                total: 6
            })
        );
        assert!(verify(&without(t, &[1]), chain(), &set).is_ok());
    }

    #[test]
    fn forged_signature_is_refused() {
        let mut t = ticket();
        t.signatures[1].1[100] ^= 1;
        assert_eq!(
            verify(&t, chain(), &issuer_set()),
            Err(TicketError::BadSignature { validator: 1 })
        );
        // a signature of another validator's key under this index
        let mut t = ticket();
        let other = t.signatures[0].1.clone();
        t.signatures[1].1 = other;
        assert_eq!(
            verify(&t, chain(), &issuer_set()),
            Err(TicketError::BadSignature { validator: 1 })
        );
    }

    #[test]
    fn tampered_nonce_is_refused() {
        let mut t = ticket();
        t.input.nonce[0] ^= 1;
        assert_eq!(
            verify(&t, chain(), &issuer_set()),
            Err(TicketError::BadSignature { validator: 0 })
        );
    }

    #[test]
    fn wrong_chain_is_refused() {
        let other = ChainTag::of("another chain");
        assert_eq!(
            verify(&ticket(), other, &issuer_set()),
            Err(TicketError::WrongChain {
                expected: other,
                found: chain()
            })
        );
        // a ticket relabelled to the other chain no longer verifies
        let mut t = ticket();
        t.input.chain = other;
        assert_eq!(
            verify(&t, other, &issuer_set()),
            Err(TicketError::BadSignature { validator: 0 })
        );
    }

    #[test]
    fn expired_period_is_refused() {
        let mut set = issuer_set();
        set.insert_period(PERIOD + 1, [(0, keys()[4].public_key().clone(), 1)])
            .unwrap();
        assert!(verify(&ticket(), chain(), &set).is_ok());
        set.remove_period(PERIOD);
        assert_eq!(
            verify(&ticket(), chain(), &set),
            Err(TicketError::PeriodNotAccepted {
                period: PERIOD,
                accepted: vec![PERIOD + 1]
            })
        );
        // a ticket relabelled to a live period does not verify under its keys
        let mut t = ticket();
        t.input.period = PERIOD + 1;
        assert!(verify(&t, chain(), &set).is_err());
    }

    #[test]
    fn duplicate_signer_is_not_counted_twice() {
        let t = ticket();
        let mut doubled = without(t.clone(), &[2, 3]);
        doubled.signatures.push(t.signatures[0].clone());
        assert_eq!(
            verify(&doubled, chain(), &issuer_set()),
            Err(TicketError::DuplicateSigner { validator: 0 })
        );
    }

    #[test]
    fn signer_outside_the_set_is_refused() {
        let mut t = ticket();
        t.signatures[3].0 = 9;
        assert_eq!(
            verify(&t, chain(), &issuer_set()),
            Err(TicketError::UnknownSigner {
                validator: 9,
                period: PERIOD
            })
        );
        // an outsider's key cannot stand in for a validator
        let mut set = IssuerSet::new();
        set.insert_period(
            PERIOD,
            (0..4u16).map(|v| (v, keys()[usize::from(v) + 1].public_key().clone(), 1)),
        )
        .unwrap();
        assert!(matches!(
            verify(&ticket(), chain(), &set),
            Err(TicketError::BadSignature { .. })
        ));
    }

    #[test]
    fn too_many_signatures_in_memory_are_refused_before_any_rsa() {
        let t = ticket();
        let mut many = t.clone();
        many.signatures = (0..65u16).map(|v| (v, t.signatures[0].1.clone())).collect();
        assert_eq!(
            verify(&many, chain(), &issuer_set()),
            Err(DecodeError::TooManySignatures { count: 65, max: 64 }.into())
        );
    }

    #[test]
    fn live_periods_are_the_callers_choice() {
        let mut set = issuer_set();
        for p in [PERIOD + 1, PERIOD + 2] {
            set.insert_period(p, [(0, keys()[0].public_key().clone(), 1)])
                .unwrap();
        }
        set.retain_periods(|p| p > PERIOD);
        assert_eq!(set.periods().collect::<Vec<_>>(), [PERIOD + 1, PERIOD + 2]);
        assert!(matches!(
            verify(&ticket(), chain(), &set),
            Err(TicketError::PeriodNotAccepted { .. })
        ));
        assert_eq!(set.total_power(PERIOD + 1), Some(1));
        assert!(set.issuer(PERIOD + 1, 0).is_some());
        assert!(set.issuer(PERIOD, 0).is_none());
    }

    #[test]
    fn issuer_set_refuses_bad_periods() {
        let key = keys()[0].public_key().clone();
        let mut set = IssuerSet::new();
        assert_eq!(
            set.insert_period(1, [(0, key.clone(), 1), (0, key.clone(), 1)]),
            Err(IssuerSetError::DuplicateValidator {
                period: 1,
                validator: 0
            })
        );
        assert_eq!(
            set.insert_period(1, [(0, key.clone(), 0)]),
            Err(IssuerSetError::NoPower { period: 1 })
        );
        assert_eq!(
            set.insert_period(1, [(0, key.clone(), u64::MAX), (1, key, 1)]),
            Err(IssuerSetError::PowerOverflow { period: 1 })
        );
        assert_eq!(set.periods().count(), 0);
    }

    #[test]
    fn bytes_round_trip() {
        let t = ticket();
        let bytes = t.to_bytes();
        assert_eq!(bytes.len(), t.encoded_len());
        assert_eq!(bytes.len(), HEADER_LEN + 4 * (4 + 256));
        assert_eq!(Ticket::from_bytes(&bytes), Ok(t.clone()));
        let stored = postcard::to_allocvec(&t).unwrap();
        assert_eq!(postcard::from_bytes::<Ticket>(&stored).unwrap(), t);
    }

    #[test]
    fn truncated_oversized_and_garbage_bytes_are_refused() {
        let bytes = ticket().to_bytes();
        for len in 0..bytes.len() {
            assert!(
                matches!(
                    Ticket::from_bytes(&bytes[..len]),
                    Err(TicketError::Malformed(DecodeError::Truncated { .. }))
                ),
                "{len}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            Ticket::from_bytes(&long),
            Err(DecodeError::TrailingBytes { extra: 1 }.into())
        );
        let huge = vec![1u8; MAX_TICKET_LEN + 1];
        assert!(matches!(
            Ticket::from_bytes(&huge),
            Err(TicketError::Malformed(DecodeError::TooLong { .. }))
        ));
        let mut version = bytes.clone();
        version[0] = 2;
        assert_eq!(
            Ticket::from_bytes(&version),
            Err(TicketError::UnsupportedVersion(2))
        );
        let mut none = bytes.clone();
        none[HEADER_LEN - 1] = 0;
        assert_eq!(
            Ticket::from_bytes(&none[..HEADER_LEN]),
            Err(DecodeError::NoSignatures.into())
        );
        let mut many = bytes.clone();
        many[HEADER_LEN - 1] = 65;
        assert_eq!(
            Ticket::from_bytes(&many),
            Err(DecodeError::TooManySignatures { count: 65, max: 64 }.into())
        );
        let mut sig_len = bytes.clone();
        sig_len[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&513u16.to_be_bytes());
        assert_eq!(
            Ticket::from_bytes(&sig_len),
            Err(DecodeError::SignatureLength {
                validator: 0,
                len: 513,
                max: 512
            }
            .into())
        );
        assert!(postcard::from_bytes::<Ticket>(&[3, 1, 2, 3]).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            if let Ok(t) = Ticket::from_bytes(&bytes) {
                prop_assert_eq!(t.to_bytes(), bytes);
            }
        }

        #[test]
        fn well_framed_tickets_round_trip(
            chain in any::<[u8; 32]>(),
            period in any::<u64>(),
            nonce in any::<[u8; 32]>(),
            signatures in proptest::collection::vec(
                (any::<u16>(), proptest::collection::vec(any::<u8>(), 1..=MAX_SIGNATURE_LEN)),
                1..=8,
            ),
        ) {
            let t = Ticket {
                input: TicketInput { version: TICKET_VERSION, chain: ChainTag(chain), period, nonce },
                signatures,
            };
            let bytes = t.to_bytes();
            prop_assert_eq!(bytes.len(), t.encoded_len());
            prop_assert_eq!(Ticket::from_bytes(&bytes), Ok(t));
        }
    }
}
