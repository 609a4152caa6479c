//! The validator's signer and every validator's verifier for consensus messages.

use async_trait::async_trait;
use malachitebft_core_types::{SignedMessage, ValidatorProof, VoteExtensionScope};
use malachitebft_signing::{Error, Signer, VerificationResult, Verifier};
use umbra_ledger::{PublicKey, Signature, SigningKey, canonical};

use super::context::{Proposal, Sig, UmbraContext, Vote};

fn extension_bytes(chain_id: &str, scope: &VoteExtensionScope<UmbraContext>) -> Vec<u8> {
    canonical(&(
        "umbra-bft-extension-v1",
        chain_id,
        scope.height.0,
        scope.round.as_i64(),
        scope.value_id.0,
        scope.validator_address.0,
    ))
}

fn verdict(key: &PublicKey, message: &[u8], signature: &Sig) -> VerificationResult {
    VerificationResult::from_bool(key.verifies(message, &Signature::from(*signature)))
}

/// Checks consensus signatures for one chain.
#[derive(Clone, Debug)]
pub struct UmbraVerifier {
    /// The chain.
    pub chain_id: String,
}

#[async_trait]
impl Verifier<UmbraContext> for UmbraVerifier {
    async fn verify_signed_vote(
        &self,
        vote: &Vote,
        signature: &Sig,
        key: &PublicKey,
    ) -> Result<VerificationResult, Error> {
        Ok(verdict(key, &vote.signing_bytes(&self.chain_id), signature))
    }

    async fn verify_signed_proposal(
        &self,
        proposal: &Proposal,
        signature: &Sig,
        key: &PublicKey,
    ) -> Result<VerificationResult, Error> {
        Ok(verdict(
            key,
            &proposal.signing_bytes(&self.chain_id),
            signature,
        ))
    }

    async fn verify_signed_vote_extension(
        &self,
        scope: &VoteExtensionScope<UmbraContext>,
        _extension: &(),
        signature: &Sig,
        key: &PublicKey,
    ) -> Result<VerificationResult, Error> {
        Ok(verdict(
            key,
            &extension_bytes(&self.chain_id, scope),
            signature,
        ))
    }

    async fn verify_validator_proof(
        &self,
        proof: &ValidatorProof<UmbraContext>,
    ) -> Result<VerificationResult, Error> {
        let Ok(key) = <[u8; 32]>::try_from(proof.public_key.as_slice()) else {
            return Ok(VerificationResult::Invalid);
        };
        let message =
            ValidatorProof::<UmbraContext>::signing_bytes(&proof.public_key, &proof.peer_id);
        Ok(verdict(&PublicKey(key), &message, &proof.signature))
    }
}

/// Signs this validator's proposals, votes and network identity proof.
pub struct UmbraSigner {
    key: SigningKey,
    chain_id: String,
}

impl UmbraSigner {
    /// A signer with `key` for the chain `chain_id`.
    pub fn new(key: SigningKey, chain_id: String) -> UmbraSigner {
        UmbraSigner { key, chain_id }
    }

    fn sign(&self, message: &[u8]) -> Sig {
        Sig::from(self.key.sign(message))
    }
}

#[async_trait]
impl Signer<UmbraContext> for UmbraSigner {
    async fn sign_vote(&self, vote: Vote) -> Result<SignedMessage<UmbraContext, Vote>, Error> {
        let signature = self.sign(&vote.signing_bytes(&self.chain_id));
        Ok(SignedMessage::new(vote, signature))
    }

    async fn sign_proposal(
        &self,
        proposal: Proposal,
    ) -> Result<SignedMessage<UmbraContext, Proposal>, Error> {
        let signature = self.sign(&proposal.signing_bytes(&self.chain_id));
        Ok(SignedMessage::new(proposal, signature))
    }

    async fn sign_vote_extension(
        &self,
        scope: VoteExtensionScope<UmbraContext>,
        extension: (),
    ) -> Result<SignedMessage<UmbraContext, ()>, Error> {
        let signature = self.sign(&extension_bytes(&self.chain_id, &scope));
        Ok(SignedMessage::new(extension, signature))
    }

    async fn sign_validator_proof(
        &self,
        public_key: Vec<u8>,
        peer_id: Vec<u8>,
    ) -> Result<ValidatorProof<UmbraContext>, Error> {
        let signature = self.sign(&ValidatorProof::<UmbraContext>::signing_bytes(
            &public_key,
            &peer_id,
        ));
        Ok(ValidatorProof::new(public_key, peer_id, signature))
    }
}
