//! An epoch's report, off the event loop: the evidence stored (and so served), the scores
//! computed from it, and submitted to the ledger as `SubmitPerformance`.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};
use umbra_ledger::{Action, SigningKey, Transaction};
use umbra_monitor::{Attribution, EpochReport, EvidenceHash, Verdict};
use umbra_net::directory::{Directory, FetchError};
use umbra_net::ledger::LedgerError;

use crate::evidence_store::EvidenceStore;
use crate::status::Status;

/// Why scores did not reach the ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// No validator answered.
    #[error("submitting the scores of epoch {epoch}: {source}")]
    NoValidator {
        /// The epoch.
        epoch: u64,
        /// Each validator's failure.
        source: FetchError,
    },
    /// A validator refused, or the ledger did, or no receipt came.
    #[error("submitting the scores of epoch {epoch}: {source}")]
    Ledger {
        /// The epoch.
        epoch: u64,
        /// Why.
        source: LedgerError,
    },
}

impl SubmitError {
    /// Whether trying again may help: not when the ledger refused the transaction (the
    /// epoch is over, the account is not a monitor, ...).
    fn is_final(&self) -> bool {
        matches!(
            self,
            SubmitError::Ledger {
                source: LedgerError::Failed(_),
                ..
            }
        )
    }
}

/// The scores as the ledger's `SubmitPerformance` takes them: the one place where the
/// monitor's types meet the ledger's. Unscored nodes are left out, so the ledger keeps their
/// previous performance.
pub fn ledger_scores(attribution: &Attribution) -> Vec<(umbra_ledger::NodeId, umbra_ledger::Ppm)> {
    attribution
        .performance()
        .into_iter()
        .map(|(node, ppm)| (umbra_ledger::NodeId(node), umbra_ledger::Ppm(ppm)))
        .collect()
}

/// What reporting needs: where the evidence goes, who signs, which ledger.
pub(crate) struct Reporter {
    pub(crate) store: Arc<EvidenceStore>,
    pub(crate) status: Arc<Status>,
    pub(crate) directory: Arc<Directory>,
    pub(crate) account: SigningKey,
    /// Whether genesis names the account as a monitor (otherwise the evidence is only
    /// published).
    pub(crate) submitting: bool,
    /// How long a submission may take in all: the report comes this long before the epoch
    /// ends, and the ledger takes scores only for the current epoch.
    pub(crate) margin: Duration,
}

/// Attempts at submitting an epoch's scores.
const ATTEMPTS: u32 = 3;

impl Reporter {
    /// Stores the evidence, computes the scores (both on a blocking thread: the attribution of
    /// a large network takes seconds), then submits them.
    pub(crate) async fn report(self: Arc<Self>, report: Box<EpochReport>) {
        let epoch = report.epoch;
        let hash = report.hash;
        let store = Arc::clone(&self.store);
        let worked = tokio::task::spawn_blocking(move || {
            let stored = store.put(&report.evidence, report.hash);
            (stored, report.attribute(), report.evidence.routes.len())
        })
        .await;
        let Ok((stored, attribution, routes)) = worked else {
            warn!(
                epoch,
                "computing the scores failed (a bug: please report it with the log)"
            );
            return;
        };
        if let Err(error) = stored {
            warn!(epoch, %error, "cannot keep the evidence; it is not served");
        }
        let scores = ledger_scores(&attribution);
        let unscored = attribution
            .nodes
            .iter()
            .filter(|node| matches!(node.verdict, Verdict::Unscored(_)))
            .count();
        info!(
            epoch,
            %hash,
            routes,
            judged = attribution.judged,
            lost = attribution.lost,
            scored = scores.len(),
            unscored,
            unattributed_loss = attribution.unattributed_loss,
            voided_gateway_down = attribution.voided.gateway_down,
            voided_starved = attribution.voided.starved,
            voided_mass_failure = attribution.voided.mass_failure,
            "epoch measured; evidence at /evidence/{epoch}"
        );
        for fault in &attribution.mass_failures {
            info!(epoch, reason = ?fault.reason, from_ms = fault.from_ms, to_ms = fault.to_ms, "the monitor's own fault: nearly every route of a window failed; none of them is judged");
        }
        self.status.report(epoch, hash, attribution);
        if !self.submitting {
            return;
        }
        if scores.is_empty() {
            info!(epoch, "no node was scored; nothing to submit");
            return;
        }
        let mut attempt = 1;
        let outcome = loop {
            match self.submit(epoch, scores.clone(), hash).await {
                Ok(height) => break Ok(height),
                Err(error) if error.is_final() || attempt >= ATTEMPTS => break Err(error),
                Err(error) => {
                    warn!(%error, attempt, "submitting the scores failed; trying again");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        match &outcome {
            Ok(height) => info!(epoch, height, nodes = scores.len(), "scores submitted"),
            Err(error) => warn!(%error, "the scores were not submitted"),
        }
        self.status
            .submitted(epoch, outcome.map_err(|error| error.to_string()));
    }

    /// Signs and submits the scores, waiting for the receipt; the block height.
    async fn submit(
        &self,
        epoch: u64,
        scores: Vec<(umbra_ledger::NodeId, umbra_ledger::Ppm)>,
        evidence: EvidenceHash,
    ) -> Result<u64, SubmitError> {
        let ledger = |source| SubmitError::Ledger { epoch, source };
        let client = self
            .directory
            .any_validator()
            .await
            .map_err(|source| SubmitError::NoValidator { epoch, source })?;
        let nonce = client
            .account(&self.account.public())
            .await
            .map_err(ledger)?
            .next_nonce;
        let transaction = Transaction::sign(
            &self.directory.trust().chain_id,
            &self.account,
            nonce,
            Action::SubmitPerformance {
                epoch,
                scores,
                evidence: umbra_ledger::Hash(evidence.0),
            },
        );
        let hash = client.submit(&transaction).await.map_err(ledger)?;
        client.wait_for(&hash, self.margin).await.map_err(ledger)
    }
}
