//! The BFT wire and log encodings: what a validator sends decodes to the same thing, a
//! signature covers what it should (and only for its chain), and bytes from a stranger never
//! panic a decoder.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test crate: failing loudly is the point

use bytes::Bytes;
use malachitebft_app::types::streaming::{StreamId, StreamMessage};
use malachitebft_app::types::sync::{Request, Response, Status};
use malachitebft_app::types::{ProposedValue, SignedConsensusMsg};
use malachitebft_codec::Codec;
use malachitebft_core_consensus::LivenessMsg;
use malachitebft_core_types::{
    CommitCertificate, CommitSignature, ExtendedCommitCertificate, NilOrVal, PolkaCertificate,
    Round, ValidatorProof, VoteExtensions,
};
use malachitebft_engine::util::streaming::StreamContent;
use malachitebft_signing::{Signer, Verifier};
use proptest::prelude::*;
use umbra_ledger::{Block, Hash, SigningKey};
use umbra_validator::bft::codec::{UmbraCodec, decode_certificate, encode_certificate};
use umbra_validator::bft::context::{
    Address, BlockHash, Height, Proposal, ProposalPart, UmbraContext, Vote,
};
use umbra_validator::bft::signing::{UmbraSigner, UmbraVerifier};

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed([n; 32])
}

fn vote(n: u8, value: NilOrVal<BlockHash>) -> Vote {
    Vote {
        vote_type: malachitebft_core_types::VoteType::Precommit,
        height: Height(7),
        round: Round::new(1),
        value,
        validator: Address::from(key(n).public()),
        extension: None,
    }
}

fn roundtrip<T>(value: &T) -> T
where
    UmbraCodec: Codec<T>,
{
    let bytes = UmbraCodec.encode(value).unwrap();
    UmbraCodec.decode(bytes).unwrap()
}

#[tokio::test]
async fn votes_and_proposals_are_signed_for_one_chain_and_survive_the_wire() {
    let signer = UmbraSigner::new(key(1), "chain-a".into());
    let verifier = UmbraVerifier {
        chain_id: "chain-a".into(),
    };
    let elsewhere = UmbraVerifier {
        chain_id: "chain-b".into(),
    };
    let value = BlockHash([9; 32]);
    let signed = signer
        .sign_vote(vote(1, NilOrVal::Val(value)))
        .await
        .unwrap();
    let message = SignedConsensusMsg::<UmbraContext>::Vote(signed.clone());
    let back = roundtrip(&message);
    assert_eq!(back, message);
    let public = key(1).public();
    assert!(
        verifier
            .verify_signed_vote(&signed.message, &signed.signature, &public)
            .await
            .unwrap()
            .is_valid()
    );
    // the same vote is worthless on another chain, for another value, or from another key
    assert!(
        elsewhere
            .verify_signed_vote(&signed.message, &signed.signature, &public)
            .await
            .unwrap()
            .is_invalid()
    );
    let other_value = vote(1, NilOrVal::Nil);
    assert!(
        verifier
            .verify_signed_vote(&other_value, &signed.signature, &public)
            .await
            .unwrap()
            .is_invalid()
    );
    assert!(
        verifier
            .verify_signed_vote(&signed.message, &signed.signature, &key(2).public())
            .await
            .unwrap()
            .is_invalid()
    );

    let proposal = Proposal {
        height: Height(7),
        round: Round::new(0),
        value,
        pol_round: Round::Nil,
        proposer: Address::from(public),
    };
    let signed = signer.sign_proposal(proposal.clone()).await.unwrap();
    let message = SignedConsensusMsg::<UmbraContext>::Proposal(signed.clone());
    assert_eq!(roundtrip(&message), message);
    assert!(
        verifier
            .verify_signed_proposal(&proposal, &signed.signature, &public)
            .await
            .unwrap()
            .is_valid()
    );
    let moved = Proposal {
        round: Round::new(1),
        ..proposal
    };
    assert!(
        verifier
            .verify_signed_proposal(&moved, &signed.signature, &public)
            .await
            .unwrap()
            .is_invalid()
    );

    // the network identity proof binds the validator key to its libp2p peer id
    let proof = signer
        .sign_validator_proof(public.0.to_vec(), vec![1, 2, 3])
        .await
        .unwrap();
    let back: ValidatorProof<UmbraContext> = roundtrip(&proof);
    assert!(
        verifier
            .verify_validator_proof(&back)
            .await
            .unwrap()
            .is_valid()
    );
    let stolen = ValidatorProof::new(back.public_key.clone(), vec![4, 5, 6], back.signature);
    assert!(
        verifier
            .verify_validator_proof(&stolen)
            .await
            .unwrap()
            .is_invalid()
    );
}

#[tokio::test]
async fn blocks_certificates_and_sync_answers_roundtrip() {
    let block = Block {
        height: 7,
        time_ms: 1_000,
        parent: Hash([3; 32]),
        transactions: Vec::new(),
    };
    let part = ProposalPart {
        height: Height(7),
        round: Round::new(0),
        valid_round: Round::Nil,
        proposer: Address::from(key(1).public()),
        block: serde_json::to_vec(&block).unwrap(),
    };
    let stream = StreamId::new(Bytes::from_static(b"7-0"));
    for message in [
        StreamMessage::new(stream.clone(), 0, StreamContent::Data(part.clone())),
        StreamMessage::new(stream, 1, StreamContent::Fin),
    ] {
        assert_eq!(roundtrip(&message), message);
    }
    let value = BlockHash::of(&block);
    let mut signatures = Vec::new();
    for n in 1..=3 {
        let signer = UmbraSigner::new(key(n), "c".into());
        let signed = signer
            .sign_vote(vote(n, NilOrVal::Val(value)))
            .await
            .unwrap();
        signatures.push(CommitSignature::new(signed.validator, signed.signature));
    }
    let certificate = CommitCertificate {
        height: Height(7),
        round: Round::new(1),
        value_id: value,
        commit_signatures: signatures,
    };
    let extended = ExtendedCommitCertificate::from_commit_certificate_and_extensions(
        certificate.clone(),
        VoteExtensions::default(),
    );
    let stored = encode_certificate(&extended).unwrap();
    assert_eq!(decode_certificate(&stored).unwrap(), extended);
    assert!(decode_certificate(&stored[..stored.len() - 1]).is_err());

    let proposed = ProposedValue::<UmbraContext> {
        height: Height(7),
        round: Round::new(0),
        valid_round: Round::Nil,
        proposer: Address::from(key(1).public()),
        value,
        validity: malachitebft_core_types::Validity::Valid,
    };
    assert_eq!(roundtrip(&proposed), proposed);
    let response = Response::ValueResponse(malachitebft_sync::ValueResponse::new(
        Height(7),
        vec![malachitebft_app::types::sync::RawDecidedValue::new(
            Bytes::from(serde_json::to_vec(&block).unwrap()),
            extended,
        )],
    ));
    assert_eq!(roundtrip(&response), response);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever a stranger sends, every decoder answers with a value or an error.
    #[test]
    fn garbage_never_panics_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let bytes = Bytes::from(bytes);
        let _: Result<SignedConsensusMsg<UmbraContext>, _> = UmbraCodec.decode(bytes.clone());
        let _: Result<LivenessMsg<UmbraContext>, _> = UmbraCodec.decode(bytes.clone());
        let _: Result<StreamMessage<ProposalPart>, _> = UmbraCodec.decode(bytes.clone());
        let _: Result<ProposalPart, _> = UmbraCodec.decode(bytes.clone());
        let _: Result<ValidatorProof<UmbraContext>, _> = UmbraCodec.decode(bytes.clone());
        let _: Result<ProposedValue<UmbraContext>, _> = UmbraCodec.decode(bytes.clone());
        let _: Result<PolkaCertificate<UmbraContext>, _> = UmbraCodec.decode(bytes.clone());
        let _: Result<Status<UmbraContext>, _> = UmbraCodec.decode(bytes.clone());
        let _: Result<Request<UmbraContext>, _> = UmbraCodec.decode(bytes.clone());
        let _: Result<Response<UmbraContext>, _> = UmbraCodec.decode(bytes.clone());
        let _ = decode_certificate(&bytes);
    }
}
