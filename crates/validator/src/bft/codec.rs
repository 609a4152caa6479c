//! The bytes of everything Malachite sends between validators or writes to its write-ahead log:
//! borsh, with Umbra's own layout for the types Malachite gives no encoding.
//!
//! Decoding never trusts its input: a malformed message is an error the engine drops and counts.

use borsh::{BorshDeserialize, BorshSerialize};
use bytes::Bytes;
use malachitebft_app::types::streaming::StreamMessage;
use malachitebft_app::types::sync::{RawDecidedValue, Request, Response, Status};
use malachitebft_app::types::{ProposedValue, SignedConsensusMsg};
use malachitebft_codec::{Codec, HasEncodedLen};
use malachitebft_core_consensus::LivenessMsg;
use malachitebft_core_types::{
    ExtendedCommitCertificate, ExtendedCommitSignature, PolkaCertificate, Round, SignedExtension,
    ValidatorProof,
};
use malachitebft_sync::ValueResponse;

use super::context::{Address, BlockHash, Height, ProposalPart, Sig, UmbraContext};

/// A message that could not be encoded or decoded (borsh's error says what was wrong).
#[derive(Debug, thiserror::Error)]
#[error("consensus message encoding: {0}")]
pub struct CodecError(std::io::Error);

impl From<std::io::Error> for CodecError {
    fn from(error: std::io::Error) -> Self {
        CodecError(error)
    }
}

/// Umbra's codec for consensus, sync and the write-ahead log.
#[derive(Clone, Copy, Debug, Default)]
pub struct UmbraCodec;

fn decode<T: BorshDeserialize>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(borsh::from_slice(bytes)?)
}

fn encode<T: BorshSerialize>(value: &T) -> Result<Bytes, CodecError> {
    Ok(Bytes::from(borsh::to_vec(value)?))
}

macro_rules! borsh_codec {
    ($($t:ty),* $(,)?) => {$(
        impl Codec<$t> for UmbraCodec {
            type Error = CodecError;

            fn decode(&self, bytes: Bytes) -> Result<$t, CodecError> {
                decode(&bytes)
            }

            fn encode(&self, message: &$t) -> Result<Bytes, CodecError> {
                encode(message)
            }
        }
    )*};
}

borsh_codec!(
    ProposalPart,
    SignedConsensusMsg<UmbraContext>,
    LivenessMsg<UmbraContext>,
    StreamMessage<ProposalPart>,
    ProposedValue<UmbraContext>,
    PolkaCertificate<UmbraContext>,
    Status<UmbraContext>,
    Request<UmbraContext>,
);

#[derive(BorshSerialize, BorshDeserialize)]
struct WireProof {
    public_key: Vec<u8>,
    peer_id: Vec<u8>,
    signature: Sig,
}

impl Codec<ValidatorProof<UmbraContext>> for UmbraCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<ValidatorProof<UmbraContext>, CodecError> {
        let proof: WireProof = decode(&bytes)?;
        Ok(ValidatorProof::new(
            proof.public_key,
            proof.peer_id,
            proof.signature,
        ))
    }

    fn encode(&self, proof: &ValidatorProof<UmbraContext>) -> Result<Bytes, CodecError> {
        encode(&WireProof {
            public_key: proof.public_key.clone(),
            peer_id: proof.peer_id.clone(),
            signature: proof.signature,
        })
    }
}

/// A commit certificate as stored with its block and sent to a validator catching up.
#[derive(BorshSerialize, BorshDeserialize)]
struct WireCertificate {
    height: Height,
    round: Round,
    value_id: BlockHash,
    signatures: Vec<(Address, Sig, Option<SignedExtension<UmbraContext>>)>,
}

impl From<&ExtendedCommitCertificate<UmbraContext>> for WireCertificate {
    fn from(certificate: &ExtendedCommitCertificate<UmbraContext>) -> Self {
        WireCertificate {
            height: certificate.height,
            round: certificate.round,
            value_id: certificate.value_id,
            signatures: certificate
                .commit_signatures
                .iter()
                .map(|signature| {
                    (
                        signature.address,
                        signature.signature,
                        signature.extension.clone(),
                    )
                })
                .collect(),
        }
    }
}

impl From<WireCertificate> for ExtendedCommitCertificate<UmbraContext> {
    fn from(wire: WireCertificate) -> Self {
        ExtendedCommitCertificate {
            height: wire.height,
            round: wire.round,
            value_id: wire.value_id,
            commit_signatures: wire
                .signatures
                .into_iter()
                .map(|(address, signature, extension)| {
                    ExtendedCommitSignature::new(address, signature, extension)
                })
                .collect(),
        }
    }
}

/// The stored bytes of a commit certificate.
pub fn encode_certificate(
    certificate: &ExtendedCommitCertificate<UmbraContext>,
) -> Result<Vec<u8>, CodecError> {
    Ok(borsh::to_vec(&WireCertificate::from(certificate))?)
}

/// A commit certificate from its stored bytes.
pub fn decode_certificate(
    bytes: &[u8],
) -> Result<ExtendedCommitCertificate<UmbraContext>, CodecError> {
    decode::<WireCertificate>(bytes).map(Into::into)
}

#[derive(BorshSerialize, BorshDeserialize)]
struct WireResponse {
    start_height: Height,
    values: Vec<(Vec<u8>, WireCertificate)>,
}

impl WireResponse {
    fn of(response: &Response<UmbraContext>) -> WireResponse {
        let Response::ValueResponse(response) = response;
        WireResponse {
            start_height: response.start_height,
            values: response
                .values
                .iter()
                .map(|value| {
                    (
                        value.value_bytes.to_vec(),
                        WireCertificate::from(&value.certificate),
                    )
                })
                .collect(),
        }
    }
}

impl Codec<Response<UmbraContext>> for UmbraCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<Response<UmbraContext>, CodecError> {
        let wire: WireResponse = decode(&bytes)?;
        Ok(Response::ValueResponse(ValueResponse::new(
            wire.start_height,
            wire.values
                .into_iter()
                .map(|(value, certificate)| {
                    RawDecidedValue::new(Bytes::from(value), certificate.into())
                })
                .collect(),
        )))
    }

    fn encode(&self, response: &Response<UmbraContext>) -> Result<Bytes, CodecError> {
        encode(&WireResponse::of(response))
    }
}

impl HasEncodedLen<Response<UmbraContext>> for UmbraCodec {
    fn encoded_len(&self, response: &Response<UmbraContext>) -> Result<usize, CodecError> {
        Ok(borsh::object_length(&WireResponse::of(response))?)
    }
}
