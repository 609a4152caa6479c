//! Umbra's types for Malachite: heights, validator addresses, the value decided (a block's
//! hash — the block itself travels as a proposal part), proposals, votes and the ed25519
//! signing scheme, with the bytes each signature covers.
//!
//! Every signed message starts with a domain tag and the chain id, so a vote or proposal of one
//! chain is worthless on another.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use malachitebft_core_types::{
    Context, LinearTimeouts, NilOrVal, Round, SignedExtension, VoteType, VotingPower,
};
use umbra_ledger::{Block, Genesis, Hash, PublicKey, Signature, canonical};

/// A block height.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl malachitebft_core_types::Height for Height {
    const ZERO: Self = Height(0);
    const INITIAL: Self = Height(1);

    fn increment_by(&self, n: u64) -> Self {
        Height(self.0.saturating_add(n))
    }

    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }

    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// A validator's address: its ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Address(pub [u8; 32]);

impl Address {
    /// The validator's key.
    pub fn key(&self) -> PublicKey {
        PublicKey(self.0)
    }
}

impl From<PublicKey> for Address {
    fn from(key: PublicKey) -> Self {
        Address(key.0)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.key().fmt(f)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.key().fmt(f)
    }
}

impl malachitebft_core_types::Address for Address {}

/// The value consensus decides: a block's hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct BlockHash(pub [u8; 32]);

impl BlockHash {
    /// The hash of `block`.
    pub fn of(block: &Block) -> BlockHash {
        BlockHash(block.hash().0)
    }
}

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Hash(self.0).fmt(f)
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Hash(self.0).fmt(f)
    }
}

impl malachitebft_core_types::Value for BlockHash {
    type Id = BlockHash;

    fn id(&self) -> BlockHash {
        *self
    }
}

/// A proposal: the proposer's signed choice of a block hash for a height and round.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    /// The height.
    pub height: Height,
    /// The round.
    pub round: Round,
    /// The block proposed.
    pub value: BlockHash,
    /// The proof-of-lock round.
    pub pol_round: Round,
    /// The proposer.
    pub proposer: Address,
}

impl Proposal {
    /// The bytes the proposer signs.
    pub fn signing_bytes(&self, chain_id: &str) -> Vec<u8> {
        canonical(&(
            "umbra-bft-proposal-v1",
            chain_id,
            self.height.0,
            self.round.as_i64(),
            self.value.0,
            self.pol_round.as_i64(),
            self.proposer.0,
        ))
    }
}

impl malachitebft_core_types::Proposal<UmbraContext> for Proposal {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &BlockHash {
        &self.value
    }

    fn take_value(self) -> BlockHash {
        self.value
    }

    fn pol_round(&self) -> Round {
        self.pol_round
    }

    fn validator_address(&self) -> &Address {
        &self.proposer
    }
}

/// A prevote or precommit.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    /// Prevote or precommit.
    pub vote_type: VoteType,
    /// The height.
    pub height: Height,
    /// The round.
    pub round: Round,
    /// The block voted for, or nil.
    pub value: NilOrVal<BlockHash>,
    /// The voter.
    pub validator: Address,
    /// A vote extension (Umbra uses none).
    pub extension: Option<SignedExtension<UmbraContext>>,
}

impl Vote {
    /// The bytes the voter signs (the extension is signed separately).
    pub fn signing_bytes(&self, chain_id: &str) -> Vec<u8> {
        let kind: u8 = match self.vote_type {
            VoteType::Prevote => 1,
            VoteType::Precommit => 2,
        };
        let value = match self.value {
            NilOrVal::Nil => None,
            NilOrVal::Val(hash) => Some(hash.0),
        };
        canonical(&(
            "umbra-bft-vote-v1",
            chain_id,
            kind,
            self.height.0,
            self.round.as_i64(),
            value,
            self.validator.0,
        ))
    }
}

impl malachitebft_core_types::Vote<UmbraContext> for Vote {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &NilOrVal<BlockHash> {
        &self.value
    }

    fn take_value(self) -> NilOrVal<BlockHash> {
        self.value
    }

    fn vote_type(&self) -> VoteType {
        self.vote_type
    }

    fn validator_address(&self) -> &Address {
        &self.validator
    }

    fn extension(&self) -> Option<&SignedExtension<UmbraContext>> {
        self.extension.as_ref()
    }

    fn take_extension(&mut self) -> Option<SignedExtension<UmbraContext>> {
        self.extension.take()
    }

    fn extend(self, extension: SignedExtension<UmbraContext>) -> Self {
        Vote {
            extension: Some(extension),
            ..self
        }
    }
}

/// The one part of a proposal's stream: the whole block, as JSON (the block store's encoding).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProposalPart {
    /// The height.
    pub height: Height,
    /// The round.
    pub round: Round,
    /// The round the proposer's lock dates from (nil for a new block).
    pub valid_round: Round,
    /// Who proposes it.
    pub proposer: Address,
    /// The block, JSON-encoded.
    pub block: Vec<u8>,
}

impl malachitebft_core_types::ProposalPart<UmbraContext> for ProposalPart {
    fn is_first(&self) -> bool {
        true
    }

    fn is_last(&self) -> bool {
        true
    }
}

/// A validator: its key and voting power.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    address: Address,
    key: PublicKey,
    power: VotingPower,
}

impl malachitebft_core_types::Validator<UmbraContext> for Validator {
    fn address(&self) -> &Address {
        &self.address
    }

    fn public_key(&self) -> &PublicKey {
        &self.key
    }

    fn voting_power(&self) -> VotingPower {
        self.power
    }
}

/// The validators of genesis, in genesis order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
}

impl ValidatorSet {
    /// The set genesis names.
    pub fn from_genesis(genesis: &Genesis) -> ValidatorSet {
        ValidatorSet {
            validators: genesis
                .validators
                .iter()
                .map(|validator| Validator {
                    address: Address::from(validator.key),
                    key: validator.key,
                    power: validator.power,
                })
                .collect(),
        }
    }
}

impl malachitebft_core_types::ValidatorSet<UmbraContext> for ValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }

    fn total_voting_power(&self) -> VotingPower {
        self.validators
            .iter()
            .map(|validator| validator.power)
            .sum()
    }

    fn get_by_address(&self, address: &Address) -> Option<&Validator> {
        self.validators
            .iter()
            .find(|validator| validator.address == *address)
    }

    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
}

/// An ed25519 signature.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Sig(pub [u8; 64]);

/// Ed25519 signatures over the bytes the `signing_bytes` functions give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ed25519;

/// A key or signature of the wrong length.
#[derive(Debug)]
pub struct WrongLength(usize);

impl fmt::Display for WrongLength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wrong length: {} bytes", self.0)
    }
}

impl malachitebft_core_types::SigningScheme for Ed25519 {
    type DecodingError = WrongLength;
    type Signature = Sig;
    type PublicKey = PublicKey;
    type PrivateKey = [u8; 32];

    fn decode_signature(bytes: &[u8]) -> Result<Sig, WrongLength> {
        <[u8; 64]>::try_from(bytes)
            .map(Sig)
            .map_err(|_| WrongLength(bytes.len()))
    }

    fn encode_signature(signature: &Sig) -> Vec<u8> {
        signature.0.to_vec()
    }

    fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, WrongLength> {
        <[u8; 32]>::try_from(bytes)
            .map(PublicKey)
            .map_err(|_| WrongLength(bytes.len()))
    }

    fn encode_public_key(key: &PublicKey) -> Vec<u8> {
        key.0.to_vec()
    }
}

impl From<Signature> for Sig {
    fn from(signature: Signature) -> Self {
        Sig(signature.0)
    }
}

impl From<Sig> for Signature {
    fn from(signature: Sig) -> Self {
        Signature(signature.0)
    }
}

/// Umbra's consensus context: the chain id, which every signature covers.
#[derive(Clone, Debug)]
pub struct UmbraContext {
    /// The chain.
    pub chain_id: String,
}

impl Context for UmbraContext {
    type Address = Address;
    type Height = Height;
    type ProposalPart = ProposalPart;
    type Proposal = Proposal;
    type Validator = Validator;
    type ValidatorSet = ValidatorSet;
    type Timeouts = LinearTimeouts;
    type Value = BlockHash;
    type Vote = Vote;
    type Extension = ();
    type SigningScheme = Ed25519;

    /// Round robin over genesis order, moved on by height and round, so a silent proposer
    /// costs one round and the next height starts with the next validator.
    fn select_proposer<'a>(
        &self,
        validator_set: &'a ValidatorSet,
        height: Height,
        round: Round,
    ) -> &'a Validator {
        let count = validator_set.validators.len().max(1) as u64;
        let round = round.as_u32().unwrap_or(0) as u64;
        let index = (height.0.wrapping_add(round) % count) as usize;
        // the engine never asks with an empty set: genesis refuses one
        &validator_set.validators[index]
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockHash,
        pol_round: Round,
        proposer: Address,
    ) -> Proposal {
        Proposal {
            height,
            round,
            value,
            pol_round,
            proposer,
        }
    }

    fn new_prevote(
        &self,
        height: Height,
        round: Round,
        value: NilOrVal<BlockHash>,
        validator: Address,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Prevote,
            height,
            round,
            value,
            validator,
            extension: None,
        }
    }

    fn new_precommit(
        &self,
        height: Height,
        round: Round,
        value: NilOrVal<BlockHash>,
        validator: Address,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Precommit,
            height,
            round,
            value,
            validator,
            extension: None,
        }
    }
}
